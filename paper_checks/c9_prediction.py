r"""C9: the a-priori theory predicts 1-SAM's early-stopped gain over GD before any simulation.

Prediction (from the config alone: data model, noise rate, n, d, init scale, lr, steps, rho):
:func:`linsam.theory.predict_curves` for GD and for 1-SAM at the pre-registered
``headline_rho`` (discrete-time DMFT, docs/theory.md); the predicted gain is the difference
of the two predicted peaks (max over the record steps of the predicted mean test accuracy).
It is computed *before* the sweep is fetched (nothing of the sweep feeds it), with the options
of the ``predict`` settings table (Monte Carlo paths, grid size; stated in the measured text),
and recorded with the time it took.

Measurement: the same sweep as C4 (``sweep`` of checks.toml, shared through the context's
cache: no extra run). Like with like: per seed, the test accuracy at the validation-selected
step (the stopping rule a user has, :mod:`linsam.selection`), for GD and 1-SAM; their mean
estimates the mean validation-selected accuracy, which in the DMFT limit (every seed's curve on
the mean curve, the stopping step that curve's argmax) is the predicted curve's peak. The paired
per-seed gain minus the predicted gain gets a two one-sided test (TOST, :func:`linsam.stats.tost`)
at the margin ``margin`` fixed in checks.toml before the run (default 1 point): the claim holds
iff the prediction is *equivalent* to the measurement within it (the 90% interval of the error
inside +-margin). More seeds make this test stricter, not easier. Per method, predicted peak
minus the mean validation-selected accuracy is reported with its TOST too, and the oracle peak
of the mean curve (the statistic the prediction targets without selection noise) beside it.
"""

from __future__ import annotations

import time

import numpy as np

from linsam.theory import predict_curves
from linsam.stats import mean_ci
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec, fmt_pct_ci
from linsam import selection
from linsam.stats import tost
from reproduction._sweepstats import regime_text

SPEC = ClaimSpec(
    id="C9",
    claim="A-priori theory (DMFT of the linear model) predicts 1-SAM's early-stopped gain over GD before any "
          "simulation.",
    where="issue 13 (linsam's own claim; anchor: Mignacco et al. 2020 DMFT, Lemma 3.1 for 1-SAM)",
    expected="predicted gain equivalent to the measured mean gain (validation-selected, paired per seed) within the "
             "pre-set margin (TOST)",
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
    gd, sam = res.index("method", "gd"), res.index("method", "one_sam")
    es = selection.early_stop(res)  # (method, rho, seed)
    curves = np.asarray(res.metrics["test_acc"], float)  # (method, rho, seed, step)
    mean_gd, mean_sam = curves[gd, j].mean(0), curves[sam, j].mean(0)
    return dict(
        headline_rho=rho, predict_seconds=t_pred, predict_options=opts,
        pred_peak_gd=float(pred["gd"].max()), pred_peak_sam=float(pred["one_sam"].max()),
        pred_gain=float(pred["one_sam"].max() - pred["gd"].max()),
        gain=(es.selected[sam, j] - es.selected[gd, j]).tolist(),
        selected_gd=es.selected[gd, j].tolist(), selected_sam=es.selected[sam, j].tolist(),
        margin=float(cfg.get("margin", 0.01)),
        mean_curve_peak_gd=float(mean_gd.max()), mean_curve_peak_sam=float(mean_sam.max()),
        max_err_gd=float(np.max(np.abs(pred["gd"] - mean_gd))),
        max_err_sam=float(np.max(np.abs(pred["one_sam"] - mean_sam))),
        regime=regime_text(res),
    )


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    margin = float(m.get("margin", cfg.get("margin", 0.01)))
    gain = mean_ci(m["gain"])
    pg = m["pred_gain"]
    err = tost(np.asarray(m["gain"]) - pg, margin)  # measured minus predicted, per seed
    ok = err.verdict == "equivalent"
    per = []
    for name, key, pred in (("GD", "selected_gd", m["pred_peak_gd"]), ("1-SAM", "selected_sam", m["pred_peak_sam"])):
        if key in m:
            e = tost(np.asarray(m[key]) - pred, margin)
            word = {"better": "measured above the prediction", "worse": "measured below the prediction"}.get(
                e.verdict, e.verdict)
            per.append(f"{name}: predicted {100 * pred:.1f}%, measured {100 * e.mean + 100 * pred:.1f}% (predicted minus "
                       f"measured {100 * -e.mean:+.2f} pp: {word})")
    mean_gain = m["mean_curve_peak_sam"] - m["mean_curve_peak_gd"]
    how = ", ".join(f"{k} = {v}" for k, v in sorted((m.get("predict_options") or {}).items())) or "default options"
    measured = (f"rho={m['headline_rho']:g}: predicted gain {100 * pg:+.2f} pp ({how}; {m['predict_seconds']:.1f} s, "
                f"before the sweep); measured (validation-selected, paired, {err.n} seeds) {fmt_pct_ci(gain, 2)}; "
                f"measured minus predicted {100 * err.mean:+.2f} pp, 90% CI [{100 * err.lo90:+.2f}, {100 * err.hi90:+.2f}] "
                f"against a margin of +-{100 * margin:g} pp: **{err.verdict}**; per method: " + "; ".join(per)
                + f"; oracle: gain of the mean curves' peaks {100 * mean_gain:+.2f} pp (GD {100 * m['mean_curve_peak_gd']:.1f}%, "
                f"1-SAM {100 * m['mean_curve_peak_sam']:.1f}%); max |pred - meas| along the mean trajectory: GD "
                f"{100 * m['max_err_gd']:.2f} pp, 1-SAM {100 * m['max_err_sam']:.2f} pp")
    return ClaimResult.from_spec(SPEC, regime=m["regime"], measured=measured, estimate=pg, ci=(gain.lo, gain.hi),
                                 verdict=HOLDS if ok else FAILS,
                                 details=dict(m, error=-err.mean, tost=err._asdict()))
