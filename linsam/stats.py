"""Statistics over seeds: t intervals, paired differences, bootstrap, Spearman (public API;
code in :mod:`linsam._src.stats`)."""

from linsam._src.stats import (  # noqa: F401
    BootstrapCI,
    Equivalence,
    Interval,
    MeanCI,
    bootstrap_ci,
    mean_ci,
    paired_diff_ci,
    ratio_of_means,
    ratio_of_means_ci,
    spearman,
    tost,
    VERDICTS,
)

__all__ = [
    "BootstrapCI",
    "Equivalence",
    "Interval",
    "MeanCI",
    "bootstrap_ci",
    "mean_ci",
    "paired_diff_ci",
    "ratio_of_means",
    "ratio_of_means_ci",
    "spearman",
    "tost",
    "VERDICTS",
]
