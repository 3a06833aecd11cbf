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
methods of one seed share them, so differences are *paired*), from :mod:`linsam.stats`:
Student-t intervals for means and paired differences, percentile bootstrap (fixed generator,
so reproducible) for ratios of means such as "fraction of 1-SAM's gain".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = [
    "HOLDS", "FAILS", "NOT_RUN", "NOT_COMPARABLE", "VERDICTS", "ClaimSpec", "ClaimResult", "fmt_ci", "fmt_pct_ci",
]

HOLDS = "holds"
FAILS = "fails"
NOT_RUN = "not run here"
#: A measurement exists but in a setting other than the paper's (the text says why): never holds or fails.
NOT_COMPARABLE = "not comparable"
VERDICTS = (HOLDS, FAILS, NOT_RUN, NOT_COMPARABLE)


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


def _fmt(x: float, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def fmt_ci(ci, digits: int = 3, unit: str = "") -> str:
    """``"0.123 [0.100, 0.150]"``: an interval ``(estimate, lo, hi, ...)`` (a
    :class:`linsam.stats.MeanCI` or :class:`~linsam.stats.BootstrapCI`), 95% CI in brackets."""
    est, lo, hi = ci[:3]
    return f"{_fmt(est, digits)}{unit} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def fmt_pct_ci(ci, digits: int = 1) -> str:
    """Accuracy differences in percentage points: ``"+8.2 pp [6.9, 9.5]"`` (``ci`` as in :func:`fmt_ci`)."""
    est, lo, hi = ci[:3]

    def p(x):
        return _fmt(100 * x, digits) if x is not None and math.isfinite(x) else _fmt(x, digits)

    sign = "+" if est is not None and math.isfinite(est) and est >= 0 else ""
    return f"{sign}{p(est)} pp [{p(lo)}, {p(hi)}]"
