"""Statistics over seeds: t intervals, paired differences, bootstrap, Spearman (public API;
code in :mod:`linsam._src.stats`)."""

from linsam._src.stats import (  # noqa: F401
    BootstrapCI,
    Interval,
    MeanCI,
    bootstrap_ci,
    mean_ci,
    paired_diff_ci,
    ratio_of_means,
    ratio_of_means_ci,
    spearman,
)

__all__ = [
    "BootstrapCI",
    "Interval",
    "MeanCI",
    "bootstrap_ci",
    "mean_ci",
    "paired_diff_ci",
    "ratio_of_means",
    "ratio_of_means_ci",
    "spearman",
]
