r"""Selection on the validation split: stopping steps and knobs a user could choose.

A user training on noisy labels has no clean test set to stop on. Every sweep records
``val_acc``, the accuracy on a validation sample drawn from the training distribution with the
*same* label noise (:attr:`linsam.simulate.SimConfig.val_size`, never trained on). This module
turns a sweep into the three numbers a referee asks for, per run (method, rho, seed):

* **selected** (the headline): the test accuracy at the record step with the highest validation
  accuracy (the first such step: ties go to the earlier stop), :math:`k^\star = \arg\max_k
  \mathrm{val}_k`, :math:`\mathrm{acc}_{\rm test}(k^\star)`;
* **oracle**: :math:`\max_k \mathrm{acc}_{\rm test}(k)`, the peak of the test curve (the paper's
  "best test accuracy"; optimistic, and not equally so for every method), labelled as such;
* **final**: the test accuracy at the last step.

Knobs (:func:`tune`): a method's radius (or a control's knob on the rho axis) is the grid value
with the highest mean over the *selection* seeds of the validation accuracy at each run's own
validation-selected step, :math:`\rho^\star = \arg\max_\rho \overline{\max_k \mathrm{val}_k(\rho)}`.
A setting any of whose selection runs is **unstable** (a non-finite value, or the weight norm
above ``blowup_norm``: :func:`unstable`) is a failure of that setting and is not selected. A
selected value at either end of its grid is flagged (``edge``); :func:`next_rho` gives the value
that extends the grid there (x2 up, /2 down), so a caller can re-select on an extended grid
(:func:`reproduction.controls.tune_extended` does, up to a stated cap).

Comparisons use :func:`linsam.stats.tost`: better / equivalent / worse / inconclusive at a
margin fixed in advance.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from linsam._src.stats import Equivalence, tost

__all__ = ["Stopped", "Tuned", "early_stop", "unstable", "tune", "curve_of", "select_from_curve", "next_rho",
           "tost", "Equivalence", "VAL_METRIC", "EDGES"]

#: The metric the protocol selects on.
VAL_METRIC = "val_acc"
#: Where a selected value can sit on its grid.
EDGES = ("low", "high")


class Stopped(NamedTuple):
    """Per run (the leading axes of the metric, the step axis removed): ``selected`` (test
    accuracy at the validation-selected step), ``step`` (that record step), ``val`` (the
    validation accuracy there), ``oracle`` and ``oracle_step`` (the test curve's peak), ``final``
    (the last record)."""

    selected: np.ndarray
    step: np.ndarray
    val: np.ndarray
    oracle: np.ndarray
    oracle_step: np.ndarray
    final: np.ndarray


def _first_argmax(a: np.ndarray) -> np.ndarray:
    """Index of the first maximum along the last axis, NaN never the maximum (all-NaN: 0)."""
    return np.argmax(np.where(np.isnan(a), -np.inf, a), axis=-1)


def early_stop(res, metric: str = "test_acc", by: str = VAL_METRIC) -> Stopped:
    """The three numbers of every run of a sweep result ``res`` (anything with ``metrics`` and
    ``axes["step"]``, e.g. :class:`linsam.simulate.SweepResult`): ``metric`` at the step where
    ``by`` is highest (selected), its own maximum (oracle) and its last value (final)."""
    if by not in res.metrics:
        raise ValueError(f"the sweep has no {by!r} metric to select on (results saved before the validation split: "
                         "rerun the sweep)")
    v = np.asarray(res.metrics[by], float)
    a = np.asarray(res.metrics[metric], float)
    if v.shape != a.shape:
        raise ValueError(f"{by!r} and {metric!r} must have the same shape, got {v.shape} and {a.shape}")
    steps = np.asarray(res.axes["step"])
    k = _first_argmax(v)[..., None]
    ko = _first_argmax(a)[..., None]
    take = lambda x, i: np.take_along_axis(x, i, axis=-1)[..., 0]  # noqa: E731
    return Stopped(selected=take(a, k), step=steps[k[..., 0]], val=take(v, k), oracle=take(a, ko),
                   oracle_step=steps[ko[..., 0]], final=a[..., -1])


def unstable(res, blowup_norm: float = np.inf) -> np.ndarray:
    """Per run, True where training blew up: a non-finite test or validation accuracy or weight
    norm at any record, or a weight norm (``w_norm``: the end-to-end / all-parameter norm) above
    ``blowup_norm``. Shape: the metric's without the step axis."""
    v = np.asarray(res.metrics[VAL_METRIC], float)
    bad = ~np.isfinite(v).all(-1)
    if "test_acc" in res.metrics:
        bad |= ~np.isfinite(np.asarray(res.metrics["test_acc"], float)).all(-1)
    if "w_norm" in res.metrics:
        w = np.asarray(res.metrics["w_norm"], float)
        bad |= ~np.isfinite(w).all(-1) | (np.nanmax(np.where(np.isfinite(w), w, np.inf), axis=-1) > blowup_norm)
    return bad


class Tuned(NamedTuple):
    """A tuned knob: ``rho`` (the grid value selected), ``edge`` (``"low"``/``"high"`` when at an
    end of the grid it was selected from, else None), ``curve`` (rho -> mean validation accuracy
    at the validation-selected step over the selection seeds), ``unstable`` (rho -> number of
    unstable selection runs, only where > 0), ``seeds`` (how many selection seeds)."""

    method: str
    rho: float
    edge: str | None
    curve: dict
    unstable: dict
    seeds: int


def curve_of(res, method: str, blowup_norm: float = np.inf) -> tuple[dict, dict]:
    """``(curve, unstable)`` of ``method`` in the sweep ``res``: rho -> mean over seeds of the
    validation accuracy at each run's validation-selected step, and rho -> count of unstable runs."""
    mi = list(res.axes["method"]).index(method)
    es = early_stop(res)
    bad = unstable(res, blowup_norm)
    rhos = [float(r) for r in res.axes["rho"]]
    curve = {r: float(np.nanmean(es.val[mi, j])) for j, r in enumerate(rhos)}
    unst = {r: int(bad[mi, j].sum()) for j, r in enumerate(rhos) if bad[mi, j].any()}
    return curve, unst


def select_from_curve(curve: dict, unstable_counts: dict | None = None) -> tuple[float, str | None]:
    """``(rho*, edge)`` from a selection curve (rho -> mean validation accuracy): the best stable
    value (ties: the smaller rho); ``edge`` when it is the smallest or largest value of the grid."""
    unstable_counts = unstable_counts or {}
    grid = sorted(curve)
    if not grid:
        raise ValueError("an empty selection curve: the grid has no value")
    ok = [r for r in grid if not unstable_counts.get(r) and np.isfinite(curve[r])]
    pool = ok or [r for r in grid if np.isfinite(curve[r])] or grid
    best = max(pool, key=lambda r: (curve[r] if np.isfinite(curve[r]) else -np.inf, -r))
    edge = None if len(grid) < 2 else ("low" if best == grid[0] else "high" if best == grid[-1] else None)
    return float(best), edge


def tune(res, method: str, *, blowup_norm: float = np.inf, extra=()) -> Tuned:
    """Select ``method``'s knob on the selection sweep ``res`` (and on the sweeps ``extra``, e.g.
    grid extensions, whose curves are merged by rho) from the validation accuracy (module doc)."""
    curve, unst = curve_of(res, method, blowup_norm)
    for r in extra:
        c, u = curve_of(r, method, blowup_norm)
        curve.update(c)
        unst.update(u)
    rho, edge = select_from_curve(curve, unst)
    return Tuned(method, rho, edge, dict(sorted(curve.items())), dict(sorted(unst.items())),
                 int(len(res.axes["seed"])))


def next_rho(grid, edge: str | None) -> float | None:
    """The value that extends ``grid`` past its ``edge``: twice the largest (``"high"``), half the
    smallest (``"low"``; None when that is 0, the end of the axis), None when ``edge`` is None."""
    grid = sorted(float(r) for r in grid)
    if edge == "high":
        return 2.0 * grid[-1] if grid[-1] > 0 else None
    if edge == "low":
        return grid[0] / 2.0 if grid[0] > 0 else None
    if edge is None:
        return None
    raise ValueError(f"edge must be one of {EDGES} or None, got {edge!r}")
