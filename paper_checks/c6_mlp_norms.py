r"""C6-MLP: C6's norm claim on the ReLU MLP, at 1-SAM's rho*: do 1-SAM and J-SAM end with a
smaller last-layer weight norm :math:`\|v\|` and feature norm (mean :math:`\|a_L(x_i)\|`, the
penultimate ReLU activations) than SGD?

For the DLN, Proposition 4.1 makes J-SAM exactly SGD plus a penalty on :math:`\|v\|` and on
:math:`\|Wx\|`. For the MLP the same first-order penalty reads (linsam.models.MLP, J-reg):
:math:`\frac\rho n\sum_i \mathrm{sg}(s_i)\,J_i` with
:math:`J^2 = \|a_L\|^2 + \sum_l\|\delta_l\|^2\|a_{l-1}\|^2`: for one hidden layer its gradient
shrinks :math:`v` on the active units (weight :math:`\rho s\|x\|^2/J`) and the features
:math:`a_1` (weight :math:`\rho s/J`); J-SAM equals it where no unit switches at the perturbed
point. So the expectation transfers, but is not implied.

Radius: 1-SAM's :math:`\rho^\star` as chosen by C5 for the same sweep (its selection seeds
and rho grid, :func:`paper_checks.c5_dln_jacobian.measure_model`; the sweeps are shared through
the run's cache). Statistic: C6's (paired per-seed ratio method / SGD at the end of training,
geometric mean with a Student-t 95% CI on the log ratio); holds iff every upper CI limit (1-SAM
and J-SAM, both norms, every sweep) lies below 1. L-SAM is reported as the contrast.
"""

from __future__ import annotations

import math

import numpy as np

from paper_checks import c5_dln_jacobian as c5
from paper_checks.c6_dln_norms import NORMS, _ratio_ci
from reproduction._result import FAILS, HOLDS, NOT_RUN, ClaimResult, ClaimSpec
from reproduction._sweepstats import at_step, regime_text

SPEC = ClaimSpec(
    id="C6-MLP",
    claim="In a ReLU MLP, at 1-SAM's rho*, 1-SAM and J-SAM end with a smaller last-layer weight norm ||v|| and "
          "feature norm (mean ||penultimate activation||) than SGD.",
    where="Sec. 4, Proposition 4.1 (J-SAM = SGD + penalty on last-layer weights and activations), "
          "carried to a nonlinear network",
    expected="norm ratio method/SGD < 1 for ||v|| and mean ||a_L(x)||, 1-SAM and J-SAM (95% CI below 1)",
    must_hold=False,
)

LABELS = {"v_norm": "||v||", "act_norm": "feature norm"}


def _replace(c5cfg: dict) -> dict:
    """The method/rho replacement C5 applies to its sweeps (so the same cached sweep is read)."""
    out = {}
    if c5cfg.get("methods"):
        out["methods"] = tuple(c5cfg["methods"])
    if c5cfg.get("rhos"):
        out["rhos"] = tuple(float(r) for r in c5cfg["rhos"])
    return out


def measure(ctx, cfg: dict) -> dict:
    c5cfg = ctx.settings("checks", "C5")
    at = cfg.get("at", "final")
    models = {}
    for label, ref in (cfg.get("sweeps") or {}).items():
        rho = c5.measure_model(ctx, ref, c5cfg, label)["rho"]
        explicit = label in (c5cfg.get("select_sweeps") or {})  # C5 then reads the configs as they are
        res = ctx.sweep(ref, **({} if explicit else _replace(c5cfg)))
        j, gd = res.index("rho", rho), res.index("rule", "gd")
        norms = {}
        for metric in NORMS:
            vals = at_step(res, metric, at)
            norms[metric] = {m: dict(value=vals[i, j].tolist(), log_ratio=np.log(vals[i, j] / vals[gd, j]).tolist())
                             for i, m in enumerate(res.axes["rule"])}
        step = int(res.axes["step"][-1]) if at == "final" else int(at)
        models[label] = dict(rho=rho, step=step, norms=norms,
                             regime=regime_text(res, f"1-SAM's rho* = {rho:g} (C5's selection), at step {step}"))
    return dict(models=models, methods=list(cfg.get("methods", ["one_sam", "jsam"])),
                contrast=list(cfg.get("contrast", ["lsam"])),
                regime="; ".join(f"{k}: {v['regime']}" for k, v in models.items()))


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    if not m["models"]:  # tiny and quick run no MLP sweep (their time budgets)
        return ClaimResult.from_spec(SPEC, regime="no MLP sweep in this mode", measured="not run in this mode "
                                     "(linsam reproduce --full runs it)", estimate=None, ci=None,
                                     verdict=NOT_RUN, details=m)
    names = {"one_sam": "1-SAM", "jsam": "J-SAM", "lsam": "L-SAM"}
    ok, parts, worst = True, [], (None, -math.inf, None)
    for label, mm in m["models"].items():
        rows = []
        for metric in NORMS:
            row = []
            for meth in m["methods"] + m["contrast"]:
                if meth not in mm["norms"][metric]:
                    ok = ok and meth not in m["methods"]
                    continue
                r, lo, hi = _ratio_ci(mm["norms"][metric][meth]["log_ratio"])
                row.append(f"{names.get(meth, meth)} {r:.2f} [{lo:.2f}, {hi:.2f}]")
                if meth in m["methods"]:
                    ok = ok and bool(hi < 1.0)
                    if hi > worst[1]:
                        worst = (r, hi, lo)
            rows.append(f"{LABELS[metric]} / SGD: " + ", ".join(row))
        parts.append(f"{label}, at 1-SAM's rho* = {mm['rho']:g}, step {mm['step']}: " + "; ".join(rows))
    est, hi, lo = worst
    measured = ". ".join(parts) + " (L-SAM: contrast)"
    return ClaimResult.from_spec(SPEC, regime=m["regime"], measured=measured, estimate=est,
                                 ci=None if est is None else (lo, hi), verdict=HOLDS if ok else FAILS, details=m)
