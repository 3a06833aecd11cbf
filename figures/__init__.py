r"""Figures F1..F9: analytic predictions (lines) over measurements (markers), mean with a band over seeds.

One module per figure. Each has ``ID``, ``TITLE``, ``compute(ctx, cfg) -> dict`` (the numbers,
from library functions: :mod:`linsam.logreg`, :mod:`linsam.simulate` sweeps through the shared
:class:`reproduction.Context` cache, :mod:`reproduction.measure` for autodiff measurements),
``draw(data, cfg) -> matplotlib Figure`` (drawing only) and ``caption(data, cfg) -> str``.
Settings: the ``[Fk]`` entries of ``linsam/configs/paper/figures.toml`` (modes tiny / quick / full; the tiny mode is
what the test suite draws).

====  ==========================================================================
F1    Lemma 3.1: 1-SAM weight vs margin for several C (lines analytic, dots autodiff)
F2    linear: test accuracy vs step, GD and 1-SAM over rho, peaks marked
F3    linear: clean/noisy gradient-norm ratio vs step (closed form lines, autodiff markers)
F4    linear: clean and noisy train accuracy vs step (the paper's Figure 1 reading)
F5    DLN: test accuracy vs step for SGD, 1-SAM, L-SAM, J-SAM, J-reg
F6    DLN: ||v||, mean ||Wx|| and the Prop. 4.1 penalty vs step
F7    1-SAM's peak-accuracy gain over GD for random and structured noise, with CIs
F8    each regime's early-stopped peak of GD, 1-SAM and every control, with CIs
F9    the a-priori (DMFT) prediction's error against n at fixed d/n
====  ==========================================================================

F2, F3 and F9 draw the a-priori prediction :func:`linsam.theory.predict_curves` (from the
config alone); :func:`predicted` is its memo, so F2 and F3 share one prediction per
(config, method, rho). Its options (``num_samples``, ``num_response``, ``max_grid``, ``seed``)
are each figure's ``predict`` table in ``figures.toml``.

>>> import figures, paper_checks
>>> out = figures.make("F1", paper_checks.Context(mode="tiny"), "out/figures")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from pathlib import Path

__all__ = ["FIGURES", "FigureOutput", "PREDICT_OPTIONS", "module", "make", "make_all", "predicted"]

#: Figure id -> module name.
FIGURES = {
    "F1": "f1_lemma31",
    "F2": "f2_linear_accuracy",
    "F3": "f3_grad_ratio",
    "F4": "f4_train_accuracy",
    "F5": "f5_dln_accuracy",
    "F6": "f6_dln_norms",
    "F7": "f7_noise_types",
    "F8": "f8_controls",
    "F9": "f9_prediction_error",
}

#: Options of :func:`linsam.theory.predict_curves` a figure's ``predict`` table may set.
PREDICT_OPTIONS = ("num_samples", "num_response", "max_grid", "seed")


@functools.lru_cache(maxsize=128)
def _predicted(config, method: str, rho: float, options: tuple) -> dict:
    import numpy as np

    from linsam.theory import predict_curves

    out = {k: np.array(v, copy=True) for k, v in predict_curves(config, method, rho, **dict(options)).items()}
    for v in out.values():
        v.setflags(write=False)  # shared between callers: read-only
    return out


def predicted(config, method: str, rho: float, options: dict | None = None) -> dict:
    """:func:`linsam.theory.predict_curves` ``(config, method, rho, **options)``, memoised.

    The prediction is a deterministic function of its arguments (its Monte Carlo has a fixed
    seed), so one computation serves every figure that draws it. GD-like calls are keyed as
    ``("gd", 0.0)``: ``one_sam`` at rho = 0 is GD. The returned arrays are read-only.
    """
    options = dict(options or {})
    bad = sorted(set(options) - set(PREDICT_OPTIONS))
    if bad:
        raise ValueError(f"predict: unknown option(s) {bad}; allowed: {list(PREDICT_OPTIONS)}")
    rho = float(rho)
    if method == "gd" or (method == "one_sam" and rho == 0.0):
        method, rho = "gd", 0.0
    return _predicted(config, method, rho, tuple(sorted(options.items())))


@dataclasses.dataclass(frozen=True)
class FigureOutput:
    """A drawn figure: its id, title, one-line caption, written files and wall time."""

    id: str
    title: str
    caption: str
    paths: tuple[str, ...]
    seconds: float
    summary: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def module(fig_id: str):
    key = fig_id.strip().upper()
    if key not in FIGURES:
        raise ValueError(f"unknown figure {fig_id!r}; choose from {', '.join(FIGURES)}")
    return importlib.import_module(f"figures.{FIGURES[key]}")


def make(fig_id: str, ctx, out_dir) -> FigureOutput:
    """Compute, draw and save figure ``fig_id`` as ``out_dir/<id>_<name>.png`` and ``.pdf``."""
    from figures._style import save_figure

    key = fig_id.strip().upper()
    mod = module(key)
    cfg = ctx.settings("figures", key)
    t0 = time.perf_counter()
    data = mod.compute(ctx, cfg)
    fig = mod.draw(data, cfg)
    cap = mod.caption(data, cfg)
    paths = save_figure(fig, Path(out_dir), f"{key.lower()}_{mod.NAME}", title=f"{key}. {mod.TITLE}", caption=cap,
                        config=dict(cfg, mode=ctx.mode, seed=ctx.seed))
    summary = mod.summary(data) if hasattr(mod, "summary") else {}
    return FigureOutput(key, mod.TITLE, cap, tuple(str(p) for p in paths), time.perf_counter() - t0, summary)


def make_all(ctx, out_dir, which=None) -> list[FigureOutput]:
    return [make(f, ctx, out_dir) for f in (which or FIGURES)]
