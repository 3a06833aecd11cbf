r"""C6: 1-SAM and J-SAM reduce the last-layer norm ||v|| and the activation norm ||Wx|| vs SGD.

Proposition 4.1: for the DLN, J-SAM is SGD plus the gradient of
:math:`\rho\,\mathrm{sg}(\sigma(-tf))\,J`, an L2-type penalty on :math:`\|v\|` and on the
hidden activations :math:`\|Wx\|` with weight :math:`\rho\sigma(-tf)/J`. So the trajectories
of J-SAM (and of 1-SAM, whose Jacobian part is J-SAM's) should carry smaller norms than SGD's.

Statistic: at the configured step (``at``, default the end of training), per seed the ratio
``norm(method) / norm(SGD)`` of ``v_norm`` (:math:`\|v\|`) and ``act_norm`` (mean over
training examples of :math:`\|Wx_i\|`), same data and initialisation (paired); the geometric
mean over seeds with a Student-t 95% CI on the log ratio. Holds iff all four upper CI limits
(1-SAM and J-SAM, both norms) lie below 1. L-SAM is reported as the contrast (no Jacobian
term).
"""

from __future__ import annotations

import math

import numpy as np

from linsam.stats import mean_ci
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec
from reproduction._sweepstats import at_step, regime_text

SPEC = ClaimSpec(
    id="C6",
    claim="1-SAM and J-SAM reduce the last-layer weight norm ||v|| and the intermediate activation norm "
          "||Wx|| relative to SGD (DLN).",
    where="Sec. 4, Proposition 4.1 (J-SAM = SGD + penalty on ||v|| and ||Wx||)",
    expected="norm ratio method/SGD < 1 for ||v|| and mean ||Wx||, 1-SAM and J-SAM (95% CI below 1)",
    must_hold=True,
)

NORMS = {"v_norm": "||v||", "act_norm": "mean ||Wx||"}


def measure(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"])
    rho = float(cfg["rho"])
    j = res.index("rho", rho)
    at = cfg.get("at", "final")
    gd = res.index("rule", "gd")
    out = {}
    for metric in NORMS:
        vals = at_step(res, metric, at)
        out[metric] = {m: dict(value=vals[i, j].tolist(), log_ratio=np.log(vals[i, j] / vals[gd, j]).tolist())
                       for i, m in enumerate(res.axes["rule"])}
    step = int(res.axes["step"][-1]) if at == "final" else int(at)
    return dict(rho=rho, step=step, norms=out, methods=list(cfg.get("methods", ["one_sam", "jsam"])),
                contrast=list(cfg.get("contrast", ["lsam"])), regime=regime_text(res, f"rho = {rho:g}, at step {step}"))


def _ratio_ci(log_ratios):
    ci = mean_ci(log_ratios)
    return (math.exp(ci.mean), math.exp(ci.lo) if np.isfinite(ci.lo) else 0.0,
            math.exp(ci.hi) if np.isfinite(ci.hi) else math.inf)


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    ok = True
    parts, worst = [], (None, -math.inf, None)
    names = {"one_sam": "1-SAM", "jsam": "J-SAM", "lsam": "L-SAM", "jreg": "J-reg", "jreg_fixed": "J-reg fixed"}
    for metric, label in NORMS.items():
        row = []
        for meth in m["methods"] + m["contrast"]:
            if meth not in m["norms"][metric]:
                if meth in m["methods"]:
                    ok = False
                continue
            r, lo, hi = _ratio_ci(m["norms"][metric][meth]["log_ratio"])
            row.append(f"{names.get(meth, meth)} {r:.2f} [{lo:.2f}, {hi:.2f}]")
            if meth in m["methods"]:
                ok &= bool(hi < 1.0)
                if hi > worst[1]:
                    worst = (r, hi, lo)
        parts.append(f"{label} / SGD: " + ", ".join(row))
    measured = f"at step {m['step']}: " + "; ".join(parts) + " (L-SAM: contrast, no Jacobian term)"
    est, hi, lo = worst
    return ClaimResult.from_spec(SPEC, regime=m["regime"], measured=measured, estimate=est,
                                 ci=None if est is None else (lo, hi), verdict=HOLDS if ok else FAILS, details=m)
