"""Paper checks C1..C10: every verdict can come out false, the statistics, the settings.

The verdict step of each claim (``evaluate``) is a pure function of the measured numbers, so
these tests feed it measurements that agree with the claim (verdict "holds") and measurements
that contradict it (verdict "fails"; C8 without a results file: "not run here", never "holds").
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

import paper_checks
from reproduction import _config
from reproduction._result import FAILS, HOLDS, NOT_RUN

RNG = np.random.default_rng(0)


def settings(cid: str, mode: str = "quick") -> dict:
    return _config.load_settings("checks", cid, mode)


def verdict(cid: str, m: dict, mode: str = "quick") -> str:
    return paper_checks.evaluate(cid, m, settings(cid, mode)).verdict


# ----------------------------------------------------------------------------- C1, C2: exact claims


def c1_measurement(**over):
    m = dict(
        symbolic={"D1": dict(holds=True, claims=7, proved=7, failed=[]), "D2": dict(holds=True, claims=10, proved=10, failed=[])},
        numeric=dict(C_values=[1.0], z_range=[-40, 60], num_z=11, worst_relative_step=-1e-15, below_one=0.0,
                     above_eC=1e-15, limit_minus_inf_err=0.0, limit_plus_inf_err=1e-15),
        autodiff=dict(n=4, d=2, rhos=[1.0], autodiff_vs_closed=1e-15, sympy_vs_closed=1e-15),
    )
    for k, v in over.items():
        m[k] = {**m[k], **v}
    return m


def test_c1_verdict_holds_and_fails():
    assert verdict("C1", c1_measurement()) == HOLDS
    failed_proof = c1_measurement(symbolic={"D2": dict(holds=False, claims=10, proved=9, failed=["g' > 0"])})
    assert verdict("C1", failed_proof) == FAILS
    assert verdict("C1", c1_measurement(numeric={"worst_relative_step": -1e-3})) == FAILS  # a step down in z
    assert verdict("C1", c1_measurement(numeric={"above_eC": 1e-3})) == FAILS  # weight above e^C
    assert verdict("C1", c1_measurement(autodiff={"autodiff_vs_closed": 1e-6})) == FAILS
    assert verdict("C1", c1_measurement(symbolic={})) == HOLDS  # merge keeps D1, D2
    assert verdict("C1", dict(c1_measurement(), symbolic={})) == FAILS  # no proof at all is not a proof


def test_c1_numeric_parts_really_measure():
    cfg = dict(settings("C1", "tiny"), num_z=201)
    num = paper_checks.module("C1").numeric_sweep(cfg)
    assert num["worst_relative_step"] >= -1e-13 and num["below_one"] >= -1e-13 and num["above_eC"] <= 1e-13
    ad = paper_checks.module("C1").autodiff_agreement(cfg)
    assert ad["autodiff_vs_closed"] < 1e-12 and ad["sympy_vs_closed"] < 1e-12


def c2_measurement(**over):
    m = dict(worst={"logreg/gd": 1e-16, "dln/jsam": 3e-15}, comparisons=4, nonfinite=[], zero_gradient_ok=True,
             models=["logreg", "dln"], methods=["gd", "jsam"], shapes=[[3, 2, 1]], rhos=[0.1])
    m.update(over)
    return m


def test_c2_verdict_holds_and_fails():
    assert verdict("C2", c2_measurement()) == HOLDS
    assert verdict("C2", c2_measurement(worst={"logreg/gd": 1e-16, "dln/jsam": 1e-6})) == FAILS
    assert verdict("C2", c2_measurement(worst={"dln/jsam": math.inf}, nonfinite=["dln/jsam"])) == FAILS
    assert verdict("C2", c2_measurement(zero_gradient_ok=False)) == FAILS
    assert verdict("C2", c2_measurement(worst={})) == FAILS


@pytest.mark.slow  # ~14 compilations; the end-to-end reproduce test runs compare() in its background process
def test_c2_compare_measures_real_rules():
    m = paper_checks.module("C2").compare(dict(models=["logreg"], shapes=[[4, 3, 2]], rhos=[0.3], margin_scales=[1.0]))
    assert m["comparisons"] == 7 and m["zero_gradient_ok"] and not m["nonfinite"]
    assert max(m["worst"].values()) < 1e-12
    assert paper_checks.evaluate("C2", m, settings("C2")).verdict == HOLDS


# ----------------------------------------------------------------------------- C3, C4: linear model


def c3_measurement(increasing: bool):
    rhos = [0.0, 1.0, 5.0]
    sign = 1 if increasing else -1
    per_step = {str(k): dict(spearman=list(sign * (0.9 + 0.05 * RNG.random(8))),
                             mean_ratio=list(np.array([0.6, 0.7, 0.9])[::sign])) for k in (5, 10, 20)}
    return dict(rhos=rhos, steps=[5, 10, 20], per_step=per_step, regime="synthetic")


def test_c3_verdict_holds_and_fails():
    assert verdict("C3", c3_measurement(True)) == HOLDS
    assert verdict("C3", c3_measurement(False)) == FAILS
    m = c3_measurement(True)
    m["per_step"]["10"]["mean_ratio"] = [0.6, 0.8, 0.7]  # means not monotone at one step
    assert verdict("C3", m) == FAILS
    m = c3_measurement(True)
    m["per_step"]["20"]["spearman"] = [1.0, -1.0, 0.5, -0.5]  # CI straddles 0
    assert verdict("C3", m) == FAILS


def c4_measurement(gain: float, spread: float = 0.005, n: int = 12):
    g = list(gain + spread * RNG.standard_normal(n))
    zero = [0.0] * n
    doc = {"0": dict(gain=zero, peak_gd=[0.65] * n, peak_sam=[0.65] * n, step_gd=[20] * n, step_sam=[20] * n),
           "5": dict(gain=g, peak_gd=[0.65] * n, peak_sam=list(0.65 + np.array(g)), step_gd=[20] * n, step_sam=[12] * n)}
    return dict(headline_rho=5.0, documented=doc, regime="synthetic", negative=doc, negative_regime="synthetic 0-init")


def test_c4_verdict_holds_and_fails():
    assert verdict("C4", c4_measurement(0.08)) == HOLDS
    assert verdict("C4", c4_measurement(-0.03)) == FAILS  # GD better
    assert verdict("C4", c4_measurement(0.001, spread=0.05)) == FAILS  # CI includes 0
    m = c4_measurement(0.08)
    m["headline_rho"] = 3.0
    with pytest.raises(ValueError, match="headline_rho"):
        paper_checks.evaluate("C4", m, settings("C4"))


# ----------------------------------------------------------------------------- C5..C7: deep linear network


def dln_gains(fractions: dict, sam_gain: float = 0.04, n: int = 16, noise: float = 0.003):
    out = {"gd": dict(acc=[0.7] * n, gain=[0.0] * n, step=[20] * n)}
    sam = sam_gain + noise * RNG.standard_normal(n)
    out["one_sam"] = dict(acc=list(0.7 + sam), gain=list(sam), step=[30] * n)
    for m, f in fractions.items():
        g = f * sam + noise * RNG.standard_normal(n)
        out[m] = dict(acc=list(0.7 + g), gain=list(g), step=[30] * n)
    return out


def c5_measurement(fj: float, fl: float):
    g = dln_gains({"jsam": fj, "lsam": fl})
    return dict(rho=0.1, peak=g, final=g, statistic="peak", regime="synthetic")


def test_c5_verdict_holds_and_fails():
    assert verdict("C5", c5_measurement(0.9, 0.2)) == HOLDS
    assert verdict("C5", c5_measurement(0.2, 0.9)) == FAILS  # L-SAM keeps the gain, not J-SAM
    assert verdict("C5", c5_measurement(0.3, 0.1)) == FAILS  # J-SAM keeps less than half
    m = c5_measurement(0.9, 0.2)
    for meth in m["peak"]:  # 1-SAM has no gain to recover
        m["peak"][meth]["gain"] = list(0.0 * np.asarray(m["peak"][meth]["gain"]) + 0.01 * RNG.standard_normal(16))
    assert verdict("C5", m) == FAILS


def test_c5_verdict_per_model_with_undefined_where_1sam_does_not_gain():
    """One verdict per model: a model where 1-SAM's gain CI contains 0 is "undefined (no gain)" and does not
    sink the others; with no model defined, the claim does not hold."""
    good = c5_measurement(0.9, 0.2)
    flat = c5_measurement(0.9, 0.2)
    for meth in flat["peak"]:
        flat["peak"][meth]["gain"] = list(np.tile([0.01, -0.01], 8))  # mean 0 exactly: no gain, deterministic
    r = paper_checks.evaluate("C5", dict(models={"dln": good, "xor": flat}, statistic="peak", regime="x"),
                              settings("C5"))
    assert r.verdict == HOLDS and r.details["verdicts"] == {"dln": "holds", "xor": "undefined (no gain)"}
    assert "xor: **undefined (no gain)**" in r.measured
    only = paper_checks.evaluate("C5", dict(models={"xor": flat}, statistic="peak", regime="x"), settings("C5"))
    assert only.verdict == FAILS


def c6_measurement(log_ratio: float):
    n = 10
    norms = {}
    for metric in ("v_norm", "act_norm"):
        norms[metric] = {m: dict(value=[1.0] * n, log_ratio=list((0.0 if m == "gd" else log_ratio)
                                                                 + 0.01 * RNG.standard_normal(n)))
                         for m in ("gd", "one_sam", "jsam", "lsam")}
        norms[metric]["gd"]["log_ratio"] = [0.0] * n
    return dict(rho=0.1, step=300, norms=norms, methods=["one_sam", "jsam"], contrast=["lsam"], regime="synthetic")


def test_c6_verdict_holds_and_fails():
    assert verdict("C6", c6_measurement(-0.5)) == HOLDS
    assert verdict("C6", c6_measurement(+0.5)) == FAILS  # larger norms than SGD
    assert verdict("C6", c6_measurement(0.0)) == FAILS  # no reduction
    m = c6_measurement(-0.5)
    del m["norms"]["act_norm"]["jsam"]  # a required method missing
    assert verdict("C6", m) == FAILS


def test_c7_verdict_holds_and_fails():
    good = dict(rho=0.1, gains=dln_gains({"jreg_fixed": 0.6, "jreg": 0.8, "jsam": 0.8}), statistic="peak",
                lam_last=0.4, lam_act=0.004, jreg_vs_jsam_max_acc_diff=1e-7, regime="synthetic")
    assert verdict("C7", good) == HOLDS
    bad = dict(good, gains=dln_gains({"jreg_fixed": -0.5, "jreg": 0.8, "jsam": 0.8}))
    assert verdict("C7", bad) == FAILS
    with pytest.raises(ValueError, match="jreg_fixed"):
        paper_checks.evaluate("C7", dict(good, gains=dln_gains({"jsam": 0.8})), settings("C7"))


# ----------------------------------------------------------------------------- C8: CIFAR-10 results file


def cifar_file(tmp_path, sgd: float, one_sam: float | None, extra: dict | None = None):
    methods = {"sgd": dict(peak_test_acc=sgd, peak_epoch=40, completed_epochs=200, status="completed",
                           config=dict(noise_rate=0.3, epochs=200, rho=0.01), data=dict(realised_rate=0.3))}
    if one_sam is not None:
        methods["one_sam"] = dict(peak_test_acc=one_sam, peak_epoch=150, completed_epochs=200, status="completed",
                                  config=dict(noise_rate=0.3, epochs=200, rho=0.01))
    methods.update(extra or {})
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"schema": "linsam.cifar.results/1+aggregate", "methods": methods, "gaps": {}}))
    return p


def run_c8(path):
    ctx = paper_checks.Context(mode="tiny", cifar_results=path)
    return paper_checks.run_claim("C8", ctx)


def test_c8_not_run_without_results_never_holds(tmp_path):
    r = run_c8(None)
    assert r.verdict == NOT_RUN and not r.must_hold and r.ci is None
    for named in (tmp_path / "missing.json", tmp_path / "bad.json"):  # a named file that cannot be read: an error
        if named.name == "bad.json":
            named.write_text("{not json")
        r = run_c8(named)
        assert r.verdict == FAILS and r.must_hold and r.measured.startswith("error: --cifar-results"), r.measured
    assert run_c8(cifar_file(tmp_path, 0.52, None)).verdict == NOT_RUN  # no one_sam run


def test_c8_reads_results_and_can_fail(tmp_path):
    r = run_c8(cifar_file(tmp_path, 0.525, 0.695, {"jsam": dict(peak_test_acc=0.692, peak_epoch=140)}))
    assert r.verdict == HOLDS and r.estimate == pytest.approx(0.17)
    assert "J-SAM 69.2%" in r.measured
    r = run_c8(cifar_file(tmp_path, 0.60, 0.62))
    assert r.verdict == FAILS and r.estimate == pytest.approx(0.02)


# ----------------------------------------------------------------------------- C9: a-priori prediction


def c9_measurement(pred_gain: float, gain: float = 0.08, spread: float = 0.01, n: int = 16):
    g = list(gain + spread * RNG.standard_normal(n))
    return dict(headline_rho=5.0, predict_seconds=0.3, predict_options=dict(num_samples=1024),
                pred_peak_gd=0.65, pred_peak_sam=0.65 + pred_gain, pred_gain=pred_gain, gain=g,
                mean_curve_peak_gd=0.65, mean_curve_peak_sam=0.65 + gain, max_err_gd=0.01, max_err_sam=0.01,
                regime="synthetic")


def test_c9_verdict_is_a_tost_at_the_preset_margin():
    """Holds iff the 90% interval of measured minus predicted gain lies inside +-margin (1 point)."""
    assert not paper_checks.module("C9").SPEC.must_hold
    m = c9_measurement(0.08)
    r = paper_checks.evaluate("C9", m, settings("C9"))
    assert r.verdict == HOLDS and r.estimate == 0.08 and "equivalent" in r.measured
    assert "predicted gain +8.00 pp" in r.measured and "num_samples = 1024" in r.measured
    t = r.details["tost"]
    assert t["margin"] == 0.01 and -0.01 < t["lo90"] < t["hi90"] < 0.01
    # a prediction 1.5 points off: the error's interval sits outside the margin
    off = paper_checks.evaluate("C9", dict(m, pred_gain=0.095), settings("C9"))
    assert off.verdict == FAILS and "**worse**" in off.measured
    assert off.details["error"] == pytest.approx(0.095 - np.mean(m["gain"]))
    assert verdict("C9", c9_measurement(0.0, gain=0.0)) == HOLDS  # no gain predicted, none measured (zero init)
    assert verdict("C9", dict(m, gain=[0.08])) == FAILS  # one seed: no interval, inconclusive
    # inside the 95% CI of a noisy measurement is not enough: few, spread seeds cannot show equivalence
    # (fixed values, not the module's RNG: its draws depend on which tests ran before)
    wide = dict(m, gain=[0.05, 0.11, 0.06, 0.10])  # mean 0.08, sd 0.029: 90% CI half-width 3.4 points
    assert verdict("C9", wide) == FAILS


def test_c9_runs_on_c4s_sweep_and_predicts_before_it():
    ctx = paper_checks.Context(mode="tiny")
    r = paper_checks.run_claim("C9", ctx)
    assert r.verdict in (HOLDS, FAILS) and len(ctx.sweeps_run()) == 1
    assert ctx.sweeps_run()[0] == ctx.sweep_config(settings("C9", "tiny")["sweep"])
    assert settings("C9", "tiny")["sweep"] == settings("C4", "tiny")["sweep"]  # the same sweep as C4
    assert ctx.sweep(settings("C4", "tiny")["sweep"], keep_params=True) is ctx.sweep(settings("C9", "tiny")["sweep"])
    d = r.details
    assert d["pred_gain"] == pytest.approx(d["pred_peak_sam"] - d["pred_peak_gd"])
    assert 0.5 <= d["pred_peak_gd"] < 1 and 0.5 <= d["pred_peak_sam"] < 1 and d["predict_seconds"] > 0
    json.dumps(r.to_dict(), allow_nan=False)


# ----------------------------------------------------------------------------- result type, statistics


def test_claim_result_refuses_unknown_verdict():
    spec = paper_checks.module("C3").SPEC
    with pytest.raises(ValueError, match="verdict"):
        paper_checks.ClaimResult.from_spec(spec, regime="", measured="", estimate=None, ci=None, verdict="maybe")
    r = paper_checks.ClaimResult.from_spec(spec, regime="", measured="", estimate=float("nan"), ci=(0.1, math.inf),
                                           verdict=FAILS, details={"a": np.arange(3), "b": np.float32(1.5)})
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["details"]["a"] == [0, 1, 2] and d["estimate"] is None and d["ci"][1] is None
    assert not r.ok and r.must_hold


# ----------------------------------------------------------------------------- settings


def test_every_claim_has_settings_in_every_mode():
    for cid in paper_checks.CLAIMS:
        for mode in _config.MODES:
            s = _config.load_settings("checks", cid, mode)
            assert s["_source"].endswith(f"checks.toml [{cid}]")
        assert paper_checks.module(cid).SPEC.id == cid


def test_user_settings_override_and_unknown_keys_are_refused(tmp_path):
    flat = tmp_path / "c4.toml"
    flat.write_text("headline_rho = 2.0\n")
    assert _config.load_settings("checks", "C4", "quick", flat)["headline_rho"] == 2.0
    moded = tmp_path / "c4m.toml"
    moded.write_text("[common]\nheadline_rho = 1.0\n[full]\nheadline_rho = 10.0\n")
    assert _config.load_settings("checks", "C4", "quick", moded)["headline_rho"] == 1.0
    assert _config.load_settings("checks", "C4", "full", moded)["headline_rho"] == 10.0
    bad = tmp_path / "bad.toml"
    bad.write_text("headline_rhoo = 2.0\n")
    with pytest.raises(ValueError, match="headline_rhoo"):
        _config.load_settings("checks", "C4", "quick", bad)
    with pytest.raises(ValueError, match="mode"):
        _config.load_settings("checks", "C4", "medium")
    with pytest.raises(ValueError, match="unknown claim"):
        paper_checks.module("C42")


def test_context_seed_shifts_every_sweep():
    from reproduction.context import SEED_STRIDE

    base = paper_checks.Context(mode="tiny").sweep_config("reproduce_linear_tiny")
    shifted = paper_checks.Context(mode="tiny", seed=2).sweep_config("reproduce_linear_tiny")
    assert shifted.seed_offset == base.seed_offset + 2 * SEED_STRIDE
    with pytest.raises(ValueError, match="seed"):
        paper_checks.Context(mode="tiny", seed=-1)


@pytest.mark.slow  # recompiles the samplers with x64 off (~10 s); run when the DLN configs change
@pytest.mark.parametrize("mode", ["tiny", "quick", "full"])
def test_shipped_jreg_fixed_coefficients_are_prop41_at_init(mode):
    from linsam import simulate

    from reproduction.context import prop41_coefficients

    cfg = simulate.load_config(f"reproduce_dln_{mode}")
    with jax.enable_x64(False):  # as `linsam reproduce` runs (float32 arithmetic; the draws do not depend on the flag)
        lam_last, lam_act = prop41_coefficients(cfg)
    assert cfg.lam_last == pytest.approx(lam_last, rel=1e-3) and cfg.lam_act == pytest.approx(lam_act, rel=1e-3)


def test_tiny_sweep_claims_run_end_to_end():
    """C3..C7, C9 measure on the tiny sweeps (statistically meaningless: only that they run and report)."""
    ctx = paper_checks.Context(mode="tiny")
    for cid in ("C3", "C4", "C5", "C6", "C7", "C9"):
        r = paper_checks.run_claim(cid, ctx)
        assert r.verdict in (HOLDS, FAILS) and r.measured and r.regime
        json.dumps(r.to_dict(), allow_nan=False)
    # linear, linear zero-init, DLN: shared between the claims; C5 adds its selection sweep
    # (1-SAM's rho* on disjoint seeds; in tiny mode its report sweep is the shared DLN one)
    assert len(ctx.sweeps_run()) == 4
