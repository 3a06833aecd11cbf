"""Small statistics of a :class:`linsam.simulate.SweepResult` shared by checks and figures."""

from __future__ import annotations

import numpy as np

__all__ = ["peak", "at_step", "regime_text", "rho_index"]


def peak(res, metric: str = "test_acc"):
    """Early-stopped (best over the record steps) value and its step: arrays ``(rule, rho, seed)``
    (:func:`linsam.theory.early_stopping`).

    The paper's "best test accuracy" is this oracle early stopping on the test curve; the
    test accuracy here is exact (population), so the maximum has no test-sampling bias.
    """
    from linsam import theory

    es = theory.early_stopping(np.asarray(res.axes["step"]), np.asarray(res.metrics[metric]))
    return np.asarray(es.peak_acc), np.asarray(es.peak_step)


def at_step(res, metric: str, step: int | str = "final"):
    """``metric`` at a record step (``"final"`` = the last), shape ``(rule, rho, seed)``."""
    arr = np.asarray(res.metrics[metric])
    if step == "final":
        return arr[..., -1]
    steps = np.asarray(res.axes["step"])
    hits = np.flatnonzero(steps == int(step))
    if hits.size == 0:
        raise ValueError(f"step {step} is not a record step of {res.config.name} (record steps: "
                         f"{steps[:5].tolist()} ... {steps[-3:].tolist()})")
    return arr[..., int(hits[0])]


def rho_index(res, rho: float) -> int:
    return res.index("rho", float(rho))


def regime_text(res, extra: str = "") -> str:
    """One line naming the setting of a sweep (model, data, noise, init, optimiser, seeds)."""
    c = res.config
    data = c.data
    noise = c.noise
    nz = f"{noise.kind} {noise.rate:g}" + (f"/{noise.rate_neg:g}" if noise.kind == "class_conditional" else "")
    model = "logistic regression" if c.model == "logreg" else f"DLN (h={c.hidden})"
    opt = "full-batch GD" if c.batch_size == 0 else f"SGD batch {c.batch_size}"
    init = "zero init" if c.init_scale == 0 else f"random init (scale {c.init_scale:g})"
    text = (f"{model}, {data.kind} mixture d={data.d}, n={c.n}, {nz} noise (realised "
            f"{float(np.mean(res.noise_rate)):.3f}), {init}, {opt} lr {c.lr:g}, {c.steps} steps, "
            f"{c.num_seeds} seeds [`{c.name}`]")
    return text + (f"; {extra}" if extra else "")
