r"""Statistics over seeds: Student-t intervals, paired differences, the bootstrap, Spearman.

Every interval is over independent seeds (each seed: its own data, initialisation and noise;
the methods of one seed share them, so method comparisons are *paired* differences).
Built on :mod:`scipy.stats`:

- :func:`mean_ci`: :math:`\bar x \pm t_{n-1,(1+\ell)/2}\, s/\sqrt n` (``scipy.stats.t``),
  over all values or along an axis;
- :func:`paired_diff_ci`: :func:`mean_ci` of the per-seed differences :math:`a_i - b_i`;
- :func:`bootstrap_ci`: a statistic of paired samples with a percentile bootstrap interval
  (``scipy.stats.bootstrap``, seeds resampled jointly, fixed generator, so reproducible);
- :func:`ratio_of_means_ci`: :math:`\bar a / \bar b` ("fraction of 1-SAM's gain recovered");
- :func:`spearman`: rank correlation (``scipy.stats.spearmanr``), NaN where it is undefined.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Interval", "MeanCI", "BootstrapCI", "Equivalence", "mean_ci", "paired_diff_ci", "bootstrap_ci",
           "ratio_of_means", "ratio_of_means_ci", "spearman", "tost", "VERDICTS"]


class Interval(NamedTuple):
    """An estimate with its two-sided confidence interval from ``n`` seeds (arrays when taken
    along an axis)."""

    estimate: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)


class MeanCI(Interval):
    """A mean (``mean``, the estimate) with its Student-t interval; NaNs dropped before ``n``
    is counted. ``n == 1``: the interval is unbounded (``-inf, inf``); ``n == 0``: all NaN."""

    __slots__ = ()

    @property
    def mean(self):
        return self.estimate


class BootstrapCI(Interval):
    """A statistic's value on the sample with its percentile bootstrap interval (``n`` seeds)."""

    __slots__ = ()


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def mean_ci(values, level: float = 0.95, *, axis: int | None = None) -> MeanCI:
    r"""Mean and Student-t confidence interval of independent values (NaNs and infinities dropped).

    .. math::  \bar x \pm t_{n-1,\,(1+\ell)/2}\; s / \sqrt{n},\qquad
               s^2 = \tfrac{1}{n-1}\textstyle\sum_i (x_i - \bar x)^2.

    Args:
      values: array; with ``axis=None`` all of it, else the values along ``axis``.
      level: confidence level :math:`\ell \in (0, 1)`.
      axis: the seed axis, or None.

    Returns:
      :class:`MeanCI` of floats (``axis=None``) or of arrays (the other axes). One value gives
      the unbounded interval ``(-inf, inf)``, none gives NaNs; zero spread gives ``lo = hi = mean``.
    """
    from scipy import stats

    level = _check_level(level)
    x = np.asarray(values, dtype=float)
    if axis is None:
        x, axis = x.ravel(), 0
    x = np.moveaxis(x, axis, -1)
    ok = np.isfinite(x)
    n = ok.sum(-1)
    xs = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xs.sum(-1) / n
        var = np.where(ok, (x - mean[..., None]) ** 2, 0.0).sum(-1) / (n - 1)
        half = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * np.sqrt(var) / np.sqrt(n)
    half = np.where(n == 1, np.inf, np.where(n == 0, np.nan, half))
    mean = np.where(n == 0, np.nan, mean)
    lo, hi = mean - half, mean + half
    if np.ndim(mean) == 0:
        return MeanCI(float(mean), float(lo), float(hi), int(n))
    return MeanCI(mean, lo, hi, n)


def paired_diff_ci(a, b, level: float = 0.95, *, axis: int | None = None) -> MeanCI:
    """:func:`mean_ci` of the paired differences ``a - b`` (same shape: one pair per seed); a
    pair with a NaN is dropped."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same shape, got {a.shape} and {b.shape}")
    return mean_ci(a - b, level, axis=axis)


#: The four verdicts of :func:`tost`.
VERDICTS = ("better", "equivalent", "worse", "inconclusive")


class Equivalence(NamedTuple):
    """A paired comparison's verdict (:func:`tost`): ``verdict`` (one of :data:`VERDICTS`), the mean
    difference with its 95% (``lo``, ``hi``) and 90% (``lo90``, ``hi90``) Student-t intervals,
    the TOST p-value (the larger of the two one-sided p-values), the ``margin`` and ``n``."""

    verdict: str
    mean: float
    lo: float
    hi: float
    lo90: float
    hi90: float
    p_tost: float
    margin: float
    n: int


def tost(diffs, margin: float, alpha: float = 0.05) -> Equivalence:
    r"""Paired two one-sided tests (TOST) of equivalence within ``margin``, and the direction.

    With per-seed differences :math:`d_i` (treatment minus comparator), :math:`ar d` and its
    standard error :math:`s/\sqrt n`:

    - **equivalent** iff both one-sided tests reject at level ``alpha``,
      :math:`H_0^-: \mu \le -\delta` and :math:`H_0^+: \mu \ge \delta`; i.e. the
      :math:`1 - 2lpha` (90%) t-interval lies inside :math:`(-\delta, \delta)` (Schuirmann 1987).
      A difference smaller than the margin is "equivalent" even when a 95% interval excludes 0;
    - else **better** iff the two-sided :math:`1 - \alpha` (95%) t-interval lies above 0;
    - else **worse** iff it lies below 0;
    - else **inconclusive** (the data cannot tell: more seeds needed).

    ``margin`` (:math:`\delta`, in the units of ``diffs``, e.g. 0.005 = 0.5 points of accuracy) must be
    fixed before the data are seen: it is a config value, never fitted. NaNs are dropped; fewer
    than 2 values are inconclusive."""
    from scipy import stats

    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or not (
            np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0 (the equivalence margin, fixed in advance), got {margin!r}")
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    d = np.asarray(diffs, dtype=float).ravel()
    d = d[np.isfinite(d)]
    n = int(d.size)
    c95, c90 = mean_ci(d, 1 - alpha), mean_ci(d, 1 - 2 * alpha)
    if n < 2:
        return Equivalence("inconclusive", c95.mean, c95.lo, c95.hi, c90.lo, c90.hi, float("nan"), float(margin), n)
    se = np.std(d, ddof=1) / np.sqrt(n)
    if se > 0:
        p_lo = stats.t.sf((c95.mean + margin) / se, n - 1)  # H0: mu <= -margin
        p_hi = stats.t.cdf((c95.mean - margin) / se, n - 1)  # H0: mu >= +margin
        p = float(max(p_lo, p_hi))
    else:
        p = 0.0 if abs(c95.mean) < margin else 1.0
    if p < alpha:
        verdict = "equivalent"
    elif c95.lo > 0:
        verdict = "better"
    elif c95.hi < 0:
        verdict = "worse"
    else:
        verdict = "inconclusive"
    return Equivalence(verdict, c95.mean, c95.lo, c95.hi, c90.lo, c90.hi, p, float(margin), n)


def ratio_of_means(a, b, axis: int = -1):
    r""":math:`\bar a / \bar b` along ``axis``; :math:`\pm\infty` (the sign of :math:`\bar a`,
    + for 0) where :math:`\bar b \le 0`, so a denominator that may vanish widens an interval
    instead of flipping its sign."""
    ma, mb = np.mean(a, axis=axis), np.mean(b, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(mb > 0, ma / np.where(mb > 0, mb, 1.0), np.where(ma >= 0, np.inf, -np.inf))
    return float(r) if np.ndim(r) == 0 else r


def _nearest_rank(sorted_values: np.ndarray, q: float) -> float:
    """The order statistic nearest to the ``q`` quantile (rank ``q (N - 1)`` rounded half up):
    defined even when values are infinite, where interpolating between two of them is not."""
    k = min(max(int(math.floor(q * (sorted_values.size - 1) + 0.5)), 0), sorted_values.size - 1)
    return float(sorted_values[k])


def bootstrap_ci(statistic: Callable, *samples, level: float = 0.95, n_resamples: int = 4000,
                 seed: int = 0) -> BootstrapCI:
    r"""Statistic of paired per-seed samples with a percentile bootstrap interval.

    The seeds are resampled jointly (``scipy.stats.bootstrap(..., paired=True)``, generator
    ``numpy.random.default_rng(seed)``, so the interval is reproducible); the interval is the
    :math:`(1 \mp \ell)/2` quantiles of the resampled statistic, read as the nearest order
    statistics (so an infinite resample, e.g. a ratio whose denominator vanished, keeps the
    interval defined and unbounded; a NaN counts as :math:`-\infty`).

    Args:
      statistic: ``statistic(*samples, axis=-1)``, vectorised over leading axes (e.g.
        :func:`ratio_of_means`).
      samples: 1-D arrays of equal length, entry i from seed i.
      level: confidence level in (0, 1).
      n_resamples: bootstrap resamples (>= 1).
      seed: generator seed.

    Returns:
      :class:`BootstrapCI`; one seed gives the unbounded interval, none NaNs.
    """
    from scipy import stats

    level = _check_level(level)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    arrs = [np.asarray(s, dtype=float).ravel() for s in samples]
    if not arrs:
        raise ValueError("bootstrap_ci needs at least one sample")
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError(f"bootstrap_ci: samples must have equal length (paired by seed), got {[a.size for a in arrs]}")
    if n == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0)
    est = float(statistic(*arrs, axis=-1))
    if n == 1:
        return BootstrapCI(est, -math.inf, math.inf, 1)
    with warnings.catch_warnings():  # scipy's own (interpolated) interval is not used: see above
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(arrs, statistic, n_resamples=int(n_resamples), paired=True, vectorized=True,
                              method="percentile", confidence_level=level, rng=np.random.default_rng(seed))
    dist = np.sort(np.where(np.isnan(res.bootstrap_distribution), -np.inf, res.bootstrap_distribution))
    return BootstrapCI(est, _nearest_rank(dist, 0.5 - level / 2), _nearest_rank(dist, 0.5 + level / 2), n)


def ratio_of_means_ci(num, den, level: float = 0.95, *, n_resamples: int = 4000, seed: int = 0) -> BootstrapCI:
    r""":math:`\bar a / \bar b` of paired per-seed samples (:func:`ratio_of_means`) with its
    percentile bootstrap interval (:func:`bootstrap_ci`); pairs with a non-finite value are dropped.

    Used for the fraction of 1-SAM's gain a method recovers: ``num`` = the method's gain over
    SGD per seed, ``den`` = 1-SAM's gain over SGD per seed.
    """
    a, b = np.asarray(num, dtype=float).ravel(), np.asarray(den, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return bootstrap_ci(ratio_of_means, a[ok], b[ok], level=level, n_resamples=n_resamples, seed=seed)


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (``scipy.stats.spearmanr``); NaN when a
    value is not finite or either is constant (the correlation is undefined)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"spearman: x and y must have the same shape, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)
