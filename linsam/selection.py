"""Selection on the validation split (public API; code in :mod:`linsam._src.selection`):
validation-selected / oracle / final numbers per run, knobs tuned on validation accuracy with
stability and grid-edge flags, and TOST verdicts."""

from linsam._src.selection import (  # noqa: F401
    EDGES,
    VAL_METRIC,
    Equivalence,
    Stopped,
    Tuned,
    curve_of,
    early_stop,
    next_rho,
    select_from_curve,
    tost,
    tune,
    unstable,
)

__all__ = ["EDGES", "VAL_METRIC", "Equivalence", "Stopped", "Tuned", "curve_of", "early_stop", "next_rho",
           "select_from_curve", "tost", "tune", "unstable"]
