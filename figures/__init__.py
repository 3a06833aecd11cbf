r"""Figures F1..F7: analytic predictions (lines) over measurements (markers), mean with a band over seeds.

One module per figure. Each has ``ID``, ``TITLE``, ``compute(ctx, cfg) -> dict`` (the numbers,
from library functions: :mod:`linsam.logreg`, :mod:`linsam.simulate` sweeps through the shared
:class:`paper_checks.Context` cache, :mod:`reproduction.measure` for autodiff measurements),
``draw(data, cfg) -> matplotlib Figure`` (drawing only) and ``caption(data, cfg) -> str``.
Settings: ``linsam/configs/paper/figures_fk.toml`` (modes tiny / quick / full; the tiny mode is
what the test suite draws).

====  ==========================================================================
F1    Lemma 3.1: 1-SAM weight vs margin for several C (lines analytic, dots autodiff)
F2    linear: test accuracy vs step, GD and 1-SAM over rho, peaks marked
F3    linear: clean/noisy gradient-norm ratio vs step (closed form lines, autodiff markers)
F4    linear: clean and noisy train accuracy vs step (the paper's Figure 1 reading)
F5    DLN: test accuracy vs step for SGD, 1-SAM, L-SAM, J-SAM, J-reg
F6    DLN: ||v||, mean ||Wx|| and the Prop. 4.1 penalty vs step
F7    1-SAM's peak-accuracy gain over GD for random and structured noise, with CIs
====  ==========================================================================

>>> import figures, paper_checks
>>> out = figures.make("F1", paper_checks.Context(mode="tiny"), "out/figures")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from pathlib import Path

__all__ = ["FIGURES", "FigureOutput", "module", "make", "make_all"]

#: Figure id -> module name.
FIGURES = {
    "F1": "f1_lemma31",
    "F2": "f2_linear_accuracy",
    "F3": "f3_grad_ratio",
    "F4": "f4_train_accuracy",
    "F5": "f5_dln_accuracy",
    "F6": "f6_dln_norms",
    "F7": "f7_noise_types",
}


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
