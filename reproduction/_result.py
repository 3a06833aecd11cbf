r"""The claim-result type, the verdicts, and the statistics behind the confidence intervals.

A check is split in two so that its verdict can be tested:

- ``measure(ctx, cfg) -> dict``: runs the experiment (sweeps, proofs) and returns plain
  numbers (JSON-serialisable);
- ``evaluate(measurement, cfg) -> ClaimResult``: a *pure* function of those numbers that
  writes the "measured" text, the 95% CI and the verdict. A test feeds it numbers that
  contradict the claim and sees ``verdict == "fails"``.

Verdicts: ``"holds"`` (the measurement establishes the claim: for a statistical claim,
the 95% CI lies on the claim's side), ``"fails"`` (it does not: the estimate contradicts the
claim, *or* the CI is too wide to tell; the measured text says which), ``"not run here"``
(no measurement on this machine, e.g. the CIFAR-10 claim without a results file). "Not run
here" never counts as holding.

Confidence intervals are over seeds (each seed: its own data, initialisation and noise; all
methods of one seed share them, so differences are *paired*): Student-t intervals for means
and paired differences, percentile bootstrap (fixed generator, so reproducible) for ratios
of means such as "fraction of 1-SAM's gain".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "HOLDS", "FAILS", "NOT_RUN", "VERDICTS", "ClaimSpec", "ClaimResult", "mean_ci", "fraction_ci",
    "fmt_ci", "fmt_pct_ci", "bootstrap_ci", "ratio_of_means",
]

HOLDS = "holds"
FAILS = "fails"
NOT_RUN = "not run here"
VERDICTS = (HOLDS, FAILS, NOT_RUN)


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """What a claim says (fixed text; the measurement fills the rest).

    Attributes:
      id: "C1" .. "C8".
      claim: one sentence.
      where: where in the paper (section, lemma, figure).
      expected: what the claim predicts for the measured statistic.
      must_hold: True if ``linsam reproduce`` must exit non-zero when it does not hold.
    """

    id: str
    claim: str
    where: str
    expected: str
    must_hold: bool


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """The outcome of one paper check.

    Attributes:
      id, claim, where, expected, must_hold: from the :class:`ClaimSpec`.
      regime: the setting that was measured (data, model, rho, seeds, ...).
      measured: the measured statistic(s), as text with units.
      estimate: the headline number (or None).
      ci: its 95% confidence interval ``(low, high)`` (or None: exact checks, not run).
      verdict: one of :data:`VERDICTS`.
      details: every number behind the verdict (JSON-serialisable), including regimes where
        the claim is *not* expected to hold.
      seconds: wall time of the measurement.
    """

    id: str
    claim: str
    where: str
    regime: str
    expected: str
    measured: str
    estimate: float | None
    ci: tuple[float, float] | None
    verdict: str
    must_hold: bool
    details: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def ok(self) -> bool:
        """True when the claim holds, or when it does not have to (not must-hold)."""
        return self.verdict == HOLDS or not self.must_hold

    @classmethod
    def from_spec(cls, spec: ClaimSpec, **fields) -> "ClaimResult":
        return cls(id=spec.id, claim=spec.claim, where=spec.where, expected=fields.pop("expected", spec.expected),
                   must_hold=fields.pop("must_hold", spec.must_hold), **fields)

    def to_dict(self) -> dict:
        """JSON-ready: NaN and +-inf (e.g. an unbounded bootstrap limit) become None."""
        d = dataclasses.asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return _jsonable(d)

    def with_seconds(self, seconds: float) -> "ClaimResult":
        return dataclasses.replace(self, seconds=float(seconds))


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def mean_ci(samples, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t CI of the mean of ``samples`` (1-D, NaNs dropped).

    Returns ``(mean, low, high)``; a single sample gives an infinite interval, an empty
    one NaNs. Use it on per-seed *paired differences* for method comparisons.
    """
    x = np.asarray(samples, float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(np.mean(x))
    if x.size == 1:
        return m, -math.inf, math.inf
    se = float(np.std(x, ddof=1)) / math.sqrt(x.size)
    if se == 0.0:
        return m, m, m
    q = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1))
    return m, m - q * se, m + q * se


def fraction_ci(num, den, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    r"""Ratio of means :math:`\bar a / \bar b` of paired per-seed samples, with a percentile
    bootstrap CI (seeds resampled jointly; fixed generator ``seed``, so reproducible).

    Used for "fraction of 1-SAM's gain recovered": ``num`` = method's gain over SGD per seed,
    ``den`` = 1-SAM's gain over SGD per seed. Resamples whose denominator is <= 0 count as
    an unbounded fraction (+inf/-inf by the numerator's sign), so a gain that may be zero
    widens the CI instead of being hidden.
    """
    a = np.asarray(num, float).ravel()
    b = np.asarray(den, float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    return bootstrap_ci(ratio_of_means, a[ok], b[ok], level=level, n_boot=n_boot, seed=seed)


def ratio_of_means(a, b) -> float:
    """``mean(a) / mean(b)``; +-inf (by the sign of ``mean(a)``) when ``mean(b) <= 0``."""
    ma, mb = float(np.mean(a)), float(np.mean(b))
    if mb > 0:
        return ma / mb
    return math.inf if ma >= 0 else -math.inf


def bootstrap_ci(stat, *samples, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Statistic ``stat(*samples)`` of paired per-seed samples (equal length), with a percentile
    bootstrap CI: seeds resampled jointly, fixed generator ``seed`` (reproducible)."""
    arrs = [np.asarray(s, float).ravel() for s in samples]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise ValueError("bootstrap_ci: samples must have equal length (paired by seed)")
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    est = float(stat(*arrs))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    vals = np.array([stat(*[a[i] for a in arrs]) for i in idx], float)
    vals = np.where(np.isnan(vals), -np.inf, vals)
    return est, _quantile_inf(vals, 0.5 - level / 2), _quantile_inf(vals, 0.5 + level / 2)


def _quantile_inf(r: np.ndarray, q: float) -> float:
    s = np.sort(r)
    k = min(max(int(math.floor(q * (s.size - 1) + 0.5)), 0), s.size - 1)
    return float(s[k])


def _fmt(x: float, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def fmt_ci(est: float, lo: float, hi: float, digits: int = 3, unit: str = "") -> str:
    """``"0.123 [0.100, 0.150]"`` (95% CI in brackets)."""
    return f"{_fmt(est, digits)}{unit} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def fmt_pct_ci(est: float, lo: float, hi: float, digits: int = 1) -> str:
    """Accuracy differences in percentage points: ``"+8.2 pp [6.9, 9.5]"``."""
    def p(x):
        return _fmt(100 * x, digits) if x is not None and math.isfinite(x) else _fmt(x, digits)

    sign = "+" if est is not None and math.isfinite(est) and est >= 0 else ""
    return f"{sign}{p(est)} pp [{p(lo)}, {p(hi)}]"
