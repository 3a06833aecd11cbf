"""The validation split (issue 19): a sample of the training distribution with the same label
noise, never trained on; ``val_acc`` is the accuracy on its noisy labels, and the selection
protocol (linsam.selection) stops and tunes on it, never on ``test_acc``."""

import numpy as np
import pytest

from linsam import selection
from linsam import simulate as sim
from linsam.data import MixtureSpec, NoiseSpec
from simcases import TINY, TINY_DLN, dln_result, logreg_result


def _acc(z):
    return np.mean((z > 0) + 0.5 * (z == 0))


@pytest.mark.parametrize("which", ["logreg", "dln"])
def test_val_acc_is_the_noisy_label_accuracy_of_the_recorded_parameters(which):
    """Recomputed in NumPy from the recorded parameters and the public validation sample."""
    cfg, res = (TINY, logreg_result()) if which == "logreg" else (TINY_DLN, dln_result())
    for si, seed in enumerate(res.axes["seed"]):
        val = sim.validation_sample(cfg, int(seed))
        Xv, tv = np.asarray(val.X), np.asarray(val.noisy)
        assert Xv.shape == (cfg.validation_size, cfg.data.d) == (max(1, cfg.n // 4), cfg.data.d)
        for mi in range(len(res.axes["method"])):
            for ri in range(len(res.axes["rho"])):
                for k in range(len(res.axes["step"])):
                    if which == "logreg":
                        f = Xv @ np.asarray(res.params[mi, ri, si, k])
                    else:
                        W, v = np.asarray(res.params.W[mi, ri, si, k]), np.asarray(res.params.v[mi, ri, si, k])
                        f = (Xv @ W.T) @ v
                    np.testing.assert_allclose(res.metrics["val_acc"][mi, ri, si, k], _acc(tv * f), atol=1e-12)


@pytest.mark.parametrize("form", ["dual", "primal"])
def test_val_acc_under_weight_decay_in_both_linear_forms(form):
    """The dual form carries w = a w0 + s X^T A (a = (1 - lr decay)^k): its validation logits
    a X_v w0 + s (X_v X^T) A must follow the decayed start too."""
    cfg = TINY.replace(methods=("weight_decay",), rhos=(0.3,), num_seeds=1, seed_chunk=0, init_scale=3.0,
                       knob_scale=(("weight_decay", 1.0),))
    res = sim.simulate(cfg, keep_params=True, backend="linear", form=form)
    val = sim.validation_sample(cfg, int(res.axes["seed"][0]))
    Xv, tv = np.asarray(val.X), np.asarray(val.noisy)
    want = [_acc(tv * (Xv @ np.asarray(w))) for w in res.params[0, 0, 0]]
    np.testing.assert_allclose(res.metrics["val_acc"][0, 0, 0], want, atol=1e-12)


def test_validation_sample_has_the_training_noise_and_leaves_the_training_draw_alone():
    cfg = TINY.replace(n=400, val_size=200, noise=NoiseSpec("symmetric", 0.3))
    val = sim.validation_sample(cfg, 3)
    assert val.rate == pytest.approx(0.3, abs=1 / 200)  # exactly floor(0.3 m) flips
    np.testing.assert_array_equal(np.asarray(val.noisy) != np.asarray(val.clean), np.asarray(val.mask))
    a, b = sim.training_data(cfg, 3), sim.training_data(cfg.replace(val_size=50), 3)
    np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))  # the validation size does not move it
    assert not np.any(np.isclose(np.asarray(val.X)[:, None, :], np.asarray(a.X)[None, :, :]).all(-1))
    assert cfg.replace(val_size=0).validation_size == 100


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_val_size_is_validated(bad):
    with pytest.raises(ValueError, match="val_size"):
        TINY.replace(val_size=bad)


# ----------------------------------------------------------------------------- selection


class _Res:
    """A minimal sweep result (what linsam.selection reads)."""

    def __init__(self, val, test, steps=None, **metrics):
        self.metrics = dict(val_acc=np.asarray(val, float), test_acc=np.asarray(test, float), **metrics)
        self.axes = dict(step=np.arange(self.metrics["val_acc"].shape[-1]) if steps is None else np.asarray(steps))


def test_early_stop_reads_test_at_the_first_validation_argmax():
    val = [[[[0.5, 0.7, 0.7, 0.6]]]]
    test = [[[[0.5, 0.8, 0.9, 0.95]]]]
    s = selection.early_stop(_Res(val, test, steps=[0, 10, 20, 30]))
    assert float(s.selected[0, 0, 0]) == 0.8  # first of the tied validation maxima (step 10)
    assert float(s.step[0, 0, 0]) == 10
    assert float(s.oracle[0, 0, 0]) == 0.95 and float(s.oracle_step[0, 0, 0]) == 30
    assert float(s.final[0, 0, 0]) == 0.95
    assert float(s.val[0, 0, 0]) == 0.7


def test_early_stop_never_reads_a_nan_validation_value_as_best():
    s = selection.early_stop(_Res([[[[np.nan, 0.6, np.nan]]]], [[[[0.9, 0.7, 0.99]]]]))
    assert float(s.selected[0, 0, 0]) == 0.7


def test_tune_picks_the_validation_best_and_flags_edges():
    # 2 rhos x 3 seeds: validation prefers rho index 1 although the test peak prefers 0
    val = np.array([[[[0.6, 0.61]] * 3, [[0.6, 0.7]] * 3]])  # (method 1, rho 2, seed 3, step 2)
    test = np.array([[[[0.5, 0.99]] * 3, [[0.5, 0.6]] * 3]])
    res = _Res(val, test)
    res.axes.update(method=["one_sam"], rho=np.array([1.0, 2.0]), seed=np.arange(3))
    t = selection.tune(res, "one_sam")
    assert t.rho == 2.0 and t.edge == "high"
    assert t.curve == pytest.approx({1.0: 0.61, 2.0: 0.7})


def test_tune_skips_unstable_settings():
    val = np.array([[[[0.6, 0.61]] * 2, [[0.6, 0.9]] * 2, [[0.6, 0.62]] * 2]])
    w = np.ones_like(val)
    w[0, 1, 1, -1] = 1e9  # one seed of the best-looking setting blows up
    res = _Res(val, val, w_norm=w)
    res.axes.update(method=["one_sam"], rho=np.array([1.0, 2.0, 4.0]), seed=np.arange(2))
    t = selection.tune(res, "one_sam", blowup_norm=1e3)
    assert t.rho == 4.0
    assert t.unstable == {2.0: 1}
    assert t.edge == "high"


@pytest.mark.parametrize("diffs,margin,expected", [
    (np.full(20, 0.001) + np.linspace(-1e-3, 1e-3, 20), 0.005, "equivalent"),
    (np.full(20, 0.03) + np.linspace(-1e-3, 1e-3, 20), 0.005, "better"),
    (np.full(20, -0.03) + np.linspace(-1e-3, 1e-3, 20), 0.005, "worse"),
    (np.linspace(-0.05, 0.05, 20), 0.005, "inconclusive"),
])
def test_tost_verdicts(diffs, margin, expected):
    v = selection.tost(diffs, margin)
    assert v.verdict == expected
    assert v.lo < v.mean < v.hi
    assert v.lo90 > v.lo and v.hi90 < v.hi


def test_tost_equivalence_needs_the_whole_90_interval_inside_the_margin():
    rng = np.random.default_rng(0)
    d = 0.004 + 0.002 * rng.standard_normal(8)  # mean inside the margin, but the interval reaches past it
    v = selection.tost(d, 0.005)
    assert v.hi90 > 0.005 and v.verdict != "equivalent"
    with pytest.raises(ValueError, match="margin"):
        selection.tost(d, -0.1)


def test_extend_grid_doubles_up_and_halves_down_to_a_cap():
    assert selection.next_rho([1.0, 2.0, 4.0], "high") == 8.0
    assert selection.next_rho([1.0, 2.0, 4.0], "low") == 0.5
    assert selection.next_rho([0.0, 2.0], "low") is None  # rho = 0 is the end of the axis


@pytest.mark.slow  # ~30 s of compilations (each grid extension is a sweep); compare_runs' logic is tested fast
def test_regime_map_runs_extends_saves_and_reports_from_the_saved_sweeps(tmp_path):
    """The regime map end to end on a tiny regime: --run through the Store (selection, grid
    extensions, report on the extended grid, all saved), then the report from the saved sweeps
    alone; a missing sweep is refused with the command that makes it."""
    from reproduction import regimes

    meta = lambda role: (("regime", "tinyreg"), ("role", role), ("table", "linear"), ("title", "tiny regime"))  # noqa: E731
    base = TINY.replace(methods=("gd", "one_sam", "shifted_loss"), rhos=(0.7, 1.5), seed_chunk=0, n=16, val_size=8)
    sel = base.replace(name="tinyreg_select", num_seeds=3, seed_offset=0, meta=meta("select"))
    rep = base.replace(name="tinyreg_report", num_seeds=3, seed_offset=100, meta=meta("report"))
    store = regimes.Store(tmp_path, run=True, log=lambda msg: None)
    ev = regimes.evaluate(store, configs=[sel, rep])
    (regime, _, comps), = ev["regimes"]
    comp = comps[0]
    assert regime == "tinyreg" and comp["best_control"] in ("gd", "shifted_loss")
    for m in ("one_sam", "shifted_loss"):
        r = comp["methods"][m]
        assert r["edge"] is None or r["capped"] or r["extended"] == 0  # extended until interior, or capped
        assert set(r) >= {"selected", "oracle", "final", "curve"} and len(r["selected"]) == 3
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert "tinyreg_select" in saved and "tinyreg_report" in saved
    assert all(n.startswith("tinyreg_select-x-") for n in saved if n not in ("tinyreg_select", "tinyreg_report"))
    text = regimes.write_report(tmp_path, tmp_path / "map.md")
    assert "TOST verdict" in text and "validation-selected" in text and "tiny regime" in text
    with pytest.raises(ValueError, match="regimes --run"):
        regimes.Store(tmp_path / "empty")(sel)
