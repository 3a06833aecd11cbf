r"""C9: the a-priori theory predicts 1-SAM's early-stopped gain over GD before any simulation.

Prediction (from the config alone: data model, noise rate, n, d, init scale, lr, steps, rho):
:func:`linsam.theory.predict_curves` for GD and for 1-SAM at the pre-registered
``headline_rho`` (discrete-time DMFT, docs/theory.md); the predicted gain is the difference
of the two predicted peaks (max over the record steps of the predicted mean test accuracy).
It is computed *before* the sweep is fetched (nothing of the sweep feeds it), with the options
of the ``predict`` settings table (Monte Carlo paths, grid size; stated in the measured text),
and recorded with the time it took.

Measurement: the same sweep as C4 (``sweep`` of checks.toml, shared through the context's
cache: no extra run), the per-seed peak gain (1-SAM minus GD, paired on the same data, noise
and initialisation; as in C4), mean over seeds with a Student-t 95% CI. The claim holds iff
the predicted gain lies inside that interval; otherwise it fails and the error (predicted
minus measured mean gain, and the distance to the interval) is the reported number. The difference of the peaks of the *mean*
curves (the statistic the prediction targets directly) and the per-method peak errors are
reported too.
"""

from __future__ import annotations

import time

import numpy as np

from linsam.theory import predict_curves
from linsam.stats import mean_ci
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec, fmt_pct_ci
from reproduction._sweepstats import peak, regime_text

SPEC = ClaimSpec(
    id="C9",
    claim="A-priori theory (DMFT of the linear model) predicts 1-SAM's early-stopped gain over GD before any "
          "simulation.",
    where="issue 13 (linsam's own claim; anchor: Mignacco et al. 2020 DMFT, Lemma 3.1 for 1-SAM)",
    expected="the predicted peak-accuracy gain lies inside the measured 95% CI of the paired per-seed gain",
    must_hold=False,
)


def measure(ctx, cfg: dict) -> dict:
    rho = float(cfg["headline_rho"])
    sim_cfg = ctx.sweep_config(cfg["sweep"])
    t0 = time.perf_counter()
    opts = dict(cfg.get("predict", {}))
    pred = {m: predict_curves(sim_cfg, m, rho, **opts)["test_acc"].astype(float) for m in ("gd", "one_sam")}
    t_pred = time.perf_counter() - t0
    # after the prediction: nothing of it feeds the prediction. keep_params as C4, so the two
    # claims share one cached sweep whichever runs first
    res = ctx.sweep(cfg["sweep"], keep_params=True)
    if rho not in [float(r) for r in res.axes["rho"]]:
        raise ValueError(f"headline_rho {rho:g} is not on the sweep's rho grid {list(res.axes['rho'])}")
    j = [float(r) for r in res.axes["rho"]].index(rho)
    gd, sam = res.index("rule", "gd"), res.index("rule", "one_sam")
    pk, _ = peak(res, "test_acc")  # (rule, rho, seed)
    curves = np.asarray(res.metrics["test_acc"], float)  # (rule, rho, seed, step)
    mean_gd, mean_sam = curves[gd, j].mean(0), curves[sam, j].mean(0)
    return dict(
        headline_rho=rho, predict_seconds=t_pred, predict_options=opts,
        pred_peak_gd=float(pred["gd"].max()), pred_peak_sam=float(pred["one_sam"].max()),
        pred_gain=float(pred["one_sam"].max() - pred["gd"].max()),
        gain=(pk[sam, j] - pk[gd, j]).tolist(),
        mean_curve_peak_gd=float(mean_gd.max()), mean_curve_peak_sam=float(mean_sam.max()),
        max_err_gd=float(np.max(np.abs(pred["gd"] - mean_gd))),
        max_err_sam=float(np.max(np.abs(pred["one_sam"] - mean_sam))),
        regime=regime_text(res),
    )


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    gain = mean_ci(m["gain"])
    pg = m["pred_gain"]
    ok = bool(np.isfinite(gain.lo) and gain.lo <= pg <= gain.hi)
    mean_gain = m["mean_curve_peak_sam"] - m["mean_curve_peak_gd"]
    err = pg - gain.estimate
    outside = max(gain.lo - pg, pg - gain.hi, 0.0) if np.isfinite(gain.lo) else float("nan")
    how = ", ".join(f"{k} = {v}" for k, v in sorted((m.get("predict_options") or {}).items())) or "default options"
    measured = (f"rho={m['headline_rho']:g}: predicted gain {100 * pg:+.2f} pp (GD peak {100 * m['pred_peak_gd']:.1f}%, "
                f"1-SAM {100 * m['pred_peak_sam']:.1f}%; {how}; {m['predict_seconds']:.1f} s, before the sweep); "
                f"error {100 * err:+.2f} pp against the measured mean gain"
                + ("" if ok else f", {100 * outside:.2f} pp outside its 95% CI") + "; measured "
                f"paired gain {fmt_pct_ci(gain, 2)}, gain of the mean curves' peaks {100 * mean_gain:+.2f} pp "
                f"(GD {100 * m['mean_curve_peak_gd']:.1f}%, 1-SAM {100 * m['mean_curve_peak_sam']:.1f}%); "
                f"max |pred - meas| along the trajectory: GD {100 * m['max_err_gd']:.2f} pp, "
                f"1-SAM {100 * m['max_err_sam']:.2f} pp")
    return ClaimResult.from_spec(SPEC, regime=m["regime"], measured=measured, estimate=pg, ci=(gain.lo, gain.hi),
                                 verdict=HOLDS if ok else FAILS, details=dict(m, error=err, outside_ci=outside))
