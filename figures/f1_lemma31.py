r"""F1. Lemma 3.1: the 1-SAM weight against the margin, for several shifts C.

Lines: :math:`g(z) = \sigma(-z + C)/\sigma(-z)` (:func:`linsam.logreg.one_sam_weight`, the
closed form proved by derivation D2). Dots: the weight *measured* by autodiff on a random
logistic-regression problem with inputs of norm 1 (so :math:`C = \rho`):
:math:`\|\nabla\ell_i(w + \epsilon_i)\|/\|\nabla\ell_i(w)\|` with the per-example 1-SAM
perturbation (:func:`reproduction.measure.one_sam_weights_autodiff`). Dashed: the limits 1 and
:math:`e^C`.
"""

from __future__ import annotations

import numpy as np

from figures._style import OKABE_ITO, new_figure

ID = "F1"
NAME = "lemma31"
TITLE = "Lemma 3.1: 1-SAM up-weights low-loss (large-margin) examples"


def lemma31_problem(seed: int, n: int, d: int, w_scale: float):
    """A random logistic-regression problem with inputs of norm 1 (NumPy generator ``seed``):
    ``(w, X, t)`` in float64, margins spread by ``w_scale``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # ||x_i|| = 1, so C = rho ||x_i|| = rho
    t = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    w = w_scale * rng.standard_normal(d)
    return w, X, t


def compute(ctx, cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from linsam import logreg
    from reproduction.measure import one_sam_weights_autodiff

    Cs = [float(c) for c in cfg["C_values"]]
    z = np.linspace(cfg["z_min"], cfg["z_max"], int(cfg["num_z"]))
    n, d = int(cfg["n"]), int(cfg["d"])
    out = dict(C=Cs, z=z, analytic=[], measured_z=[], measured=[])
    with jax.enable_x64(True):
        for k, C in enumerate(Cs):
            out["analytic"].append(np.asarray(logreg.one_sam_weight(jnp.asarray(z), C)))
            w, X, t = lemma31_problem(int(cfg.get("seed", 0)) + 1000 * ctx.seed + k, n, d, float(cfg["w_scale"]))
            zs = t * (X @ w)  # NumPy float64 margins
            keep = (zs >= cfg["z_min"]) & (zs <= cfg["z_max"])
            meas = np.asarray(one_sam_weights_autodiff(logreg.MODEL, jnp.asarray(w), jnp.asarray(X), jnp.asarray(t), C))
            out["measured_z"].append(zs[keep])
            out["measured"].append(meas[keep])
    # largest relative gap between the measured dots and the analytic curve at the same margins
    gaps = []
    for C, zs, ms in zip(Cs, out["measured_z"], out["measured"]):
        pred = np.exp(np.logaddexp(0, zs) - np.logaddexp(0, zs - C))  # (1 + e^z)/(1 + e^(z-C))
        gaps.append(float(np.max(np.abs(ms / pred - 1))) if ms.size else 0.0)
    out["max_rel_gap"] = max(gaps) if gaps else float("nan")
    return out


def draw(data: dict, cfg: dict):
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullFormatter

    fig, axes = new_figure(1, 1, width=5.6, height=4.0)
    ax = axes[0, 0]
    seq = [OKABE_ITO[c] for c in ("blue", "green", "orange", "vermillion", "purple", "sky")]
    handles, labels = [], []
    for k, C in enumerate(data["C"]):
        col = seq[k % len(seq)]
        (line,) = ax.plot(data["z"], data["analytic"][k], color=col, lw=1.8)
        (dots,) = ax.plot(data["measured_z"][k], data["measured"][k], "o", color=col, ms=3.5, mfc="none", mew=0.9)
        ax.axhline(np.exp(C), color=col, ls=":", lw=0.9)
        handles.append((line, dots))
        labels.append(f"C = {C:g}  (limit $e^C$ = {np.exp(C):.3g}, dotted)")
    ax.axhline(1.0, color="0.3", ls="--", lw=0.9)
    handles += [Line2D([], [], color="0.2", lw=1.8), Line2D([], [], color="0.2", marker="o", ls="", mfc="none"),
                Line2D([], [], color="0.3", ls="--", lw=0.9)]
    labels += ["analytic (Lemma 3.1)", "measured: autodiff per example", "limit 1 (z -> -inf)"]
    ax.set_yscale("log")
    ticks = [1, 1.5, 2, 3, 5, 10, 20, 50]
    ax.yaxis.set_major_locator(FixedLocator([t for t in ticks if t <= 1.2 * np.exp(max(data["C"]))]))
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"margin $z = t\,\langle w, x\rangle$ (dimensionless; $z<0$: misclassified, high loss)")
    ax.set_ylabel(r"1-SAM weight $\sigma(-z+C)/\sigma(-z)$ (x SGD gradient)")
    ax.set_title("Lemma 3.1: weight increases with the margin, from 1 to $e^{C}$ ($C=\\rho\\|x\\|$)")
    ax.legend(handles, labels, loc="upper left", fontsize=7, handlelength=2.5)
    return fig


def caption(data: dict, cfg: dict) -> str:
    return (f"F1. Lemma 3.1: the 1-SAM weight sigma(-z+C)/sigma(-z) is increasing in the margin z, from 1 to e^C "
            f"(lines: closed form; circles: measured by autodiff at w and w+eps_i on inputs of norm 1, C = rho in "
            f"{', '.join(f'{c:g}' for c in data['C'])}; largest relative gap between the two "
            f"{data['max_rel_gap']:.1e}). Low-loss (large-margin, mostly clean) examples keep more weight.")


def summary(data: dict) -> dict:
    return {"max_rel_gap": data["max_rel_gap"]}
