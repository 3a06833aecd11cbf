"""linsam.stats: t intervals, paired differences, bootstrap, Spearman, checked against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from linsam import stats

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- t intervals


def test_mean_ci_matches_a_hand_computed_t_interval():
    # 2 degrees of freedom: the t quantile has the closed form t_p = (2p - 1) / sqrt(2 p (1 - p));
    # [1, 2, 3] has s = 1
    t2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    ci = stats.mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.lo == pytest.approx(2 - t2 / math.sqrt(3), rel=1e-12)
    assert ci.hi == pytest.approx(2 + t2 / math.sqrt(3), rel=1e-12)
    # 3 degrees of freedom: t_{0.975} = 3.182446305284263 (table value); s = sqrt(5/3)
    ci = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert ci.hi - ci.mean == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2, rel=1e-12)
    assert ci.excludes_zero and not stats.mean_ci([-1.0, 1.0, 0.5]).excludes_zero


@pytest.mark.parametrize("n,level", [(2, 0.95), (5, 0.9), (20, 0.95), (64, 0.99)])
def test_mean_ci_matches_scipy_ttest(n, level):
    x = RNG.normal(0.3, 2.0, n)
    want = sps.ttest_1samp(x, 0.0).confidence_interval(level)
    ci = stats.mean_ci(x, level)
    np.testing.assert_allclose([ci.lo, ci.hi], [want.low, want.high], rtol=1e-12)
    assert ci.mean == pytest.approx(np.mean(x), rel=1e-14)


def test_mean_ci_edge_cases():
    assert tuple(stats.mean_ci([5.0])) == (5.0, -math.inf, math.inf, 1)  # one seed: no interval
    assert all(math.isnan(v) for v in stats.mean_ci([])[:3]) and stats.mean_ci([]).n == 0
    assert tuple(stats.mean_ci([2.0, 2.0, 2.0])[:3]) == (2.0, 2.0, 2.0)  # zero spread
    assert stats.mean_ci([1.0, np.nan, 2.0, np.inf, 3.0]) == stats.mean_ci([1.0, 2.0, 3.0])  # non-finite dropped
    ci32 = stats.mean_ci(np.asarray([1.0, 2.0, 3.0], np.float32))
    assert ci32.lo == pytest.approx(stats.mean_ci([1.0, 2.0, 3.0]).lo, rel=1e-12)
    with pytest.raises(ValueError, match="level"):
        stats.mean_ci([1.0, 2.0], level=95)


def test_mean_ci_along_an_axis_equals_the_scalar_one_per_column():
    Y = RNG.normal(size=(6, 4))
    Y[0, 1] = np.nan
    Y[1:, 3] = np.nan  # one seed left in the last column
    ci = stats.mean_ci(Y, axis=0)
    for j in range(4):
        one = stats.mean_ci(Y[:, j])
        np.testing.assert_allclose([ci.mean[j], ci.lo[j], ci.hi[j]], one[:3], rtol=1e-12)
        assert ci.n[j] == one.n
    assert ci.n.tolist() == [6, 5, 6, 1] and np.isinf(ci.hi[3])
    np.testing.assert_allclose(stats.mean_ci(Y.T, axis=1).lo, ci.lo, rtol=1e-12)


def test_paired_diff_ci_matches_scipy_ttest_rel():
    a, b = RNG.normal(1.0, 1.0, 12), RNG.normal(0.5, 1.0, 12)
    want = sps.ttest_rel(a, b).confidence_interval(0.95)
    ci = stats.paired_diff_ci(a, b)
    np.testing.assert_allclose([ci.lo, ci.hi], [want.low, want.high], rtol=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        stats.paired_diff_ci(a, b[:-1])


# ----------------------------------------------------------------------------- bootstrap


def _reference_bootstrap(stat, *samples, level=0.95, n_resamples=4000, seed=0):
    """Percentile bootstrap written out: resample seed indices, nearest-rank quantiles."""
    arrs = [np.asarray(s, float) for s in samples]
    n = arrs[0].size
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    vals = np.sort([stat(*[a[i] for a in arrs]) for i in idx])
    rank = lambda q: vals[min(max(int(math.floor(q * (vals.size - 1) + 0.5)), 0), vals.size - 1)]  # noqa: E731
    return stat(*arrs), rank(0.5 - level / 2), rank(0.5 + level / 2)


def test_bootstrap_ci_is_the_percentile_bootstrap_and_reproducible():
    a, b = RNG.normal(0.6, 0.2, 20), RNG.normal(1.0, 0.1, 20)
    got = stats.ratio_of_means_ci(a, b)
    want = _reference_bootstrap(lambda x, y: np.mean(x) / np.mean(y), a, b)
    np.testing.assert_allclose(got[:3], want, rtol=1e-12)
    assert got == stats.ratio_of_means_ci(a, b) and got != stats.ratio_of_means_ci(a, b, seed=1)
    assert got.lo < got.estimate < got.hi and got.n == 20
    # the interval is scipy's percentile interval up to how a quantile is read between two resamples
    res = sps.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis) / np.mean(y, axis), paired=True,
                        n_resamples=4000, method="percentile", rng=np.random.default_rng(0))
    np.testing.assert_allclose([got.lo, got.hi], [res.confidence_interval.low, res.confidence_interval.high],
                               atol=0.01)


def test_bootstrap_ci_of_a_difference_of_ratios():
    a, b, c = RNG.normal(0.8, 0.2, 16), RNG.normal(0.3, 0.2, 16), RNG.normal(1.0, 0.1, 16)

    def stat(x, y, z, axis=-1):
        return stats.ratio_of_means(x, z, axis) - stats.ratio_of_means(y, z, axis)

    got = stats.bootstrap_ci(stat, a, b, c, n_resamples=500, seed=3)
    np.testing.assert_allclose(got[:3], _reference_bootstrap(stat, a, b, c, n_resamples=500, seed=3), rtol=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        stats.bootstrap_ci(stat, a, b, c[:-1])
    with pytest.raises(ValueError, match="n_resamples"):
        stats.bootstrap_ci(stat, a, b, c, n_resamples=0)


def test_ratio_of_means_is_unbounded_when_the_denominator_may_vanish():
    assert stats.ratio_of_means([1.0, 3.0], [1.0, 1.0]) == 2.0
    assert stats.ratio_of_means([1.0], [0.0]) == math.inf and stats.ratio_of_means([-1.0], [-2.0]) == -math.inf
    est, lo, hi, n = stats.ratio_of_means_ci([0.1, 0.2], [0.0, -0.1])  # no 1-SAM gain: unbounded, not hidden
    assert math.isinf(est) and math.isinf(hi) and n == 2
    assert stats.ratio_of_means_ci([0.1, np.nan, 0.2], [1.0, 1.0, 2.0]).n == 2  # a pair with a NaN is dropped
    assert tuple(stats.ratio_of_means_ci([0.5], [1.0])[:3]) == (0.5, -math.inf, math.inf)


# ----------------------------------------------------------------------------- Spearman


def test_spearman_matches_scipy_and_is_nan_when_undefined():
    x, y = RNG.normal(size=9), RNG.normal(size=9)
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, rel=1e-14)
    assert stats.spearman([0, 1, 2], [1.0, 4.0, 9.0]) == pytest.approx(1.0)
    assert math.isnan(stats.spearman([0, 1, 2], [1.0, 1.0, 1.0]))
    assert math.isnan(stats.spearman([0, 1, 2], [1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        stats.spearman([0, 1], [0, 1, 2])
