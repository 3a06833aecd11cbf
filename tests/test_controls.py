"""Controls (issue 11): identities of the control rules, their fast backend, the comparison.

Tolerance tiers: exact identities in float64 (rtol 1e-12: a few ulps times the condition of
the sums); the backend comparison float64 (1e-12: the same trajectory by two float orders);
the comparison logic on synthetic sweeps (exact).
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import rules
from linsam._src.data import MixtureSpec, isotropic_mixture, population_accuracy, with_example_norms
from linsam._src.engine.config import SimConfig, method_value, trains_with_rho
from linsam.models import DLN, LogReg, Softmax

from core_cases import make_problem, tree_rel_err

RTOL = 1e-12


def _equal_norm_problem(key, n=9, d=5, r=1.7):
    kx, kt, kw = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), jnp.float64)
    X = r * X / jnp.linalg.norm(X, axis=1, keepdims=True)  # every ||x_i|| = r
    t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0)
    w = 2.0 * jax.random.normal(kw, (d,), jnp.float64)
    return X, t, w


def test_shifted_loss_is_one_sam_when_every_norm_is_equal(getkey):
    """D1: in the linear model 1-SAM is GD on softplus(rho ||x|| - z) when all ||x_i|| = r."""
    X, t, w = _equal_norm_problem(getkey(), r=1.7)
    model = LogReg()
    for rho in (0.1, 1.0, 4.0):
        a = rules.direction(rules.OneSAM(rho), model, w, X, t)
        for path in ("direction", "autodiff"):
            b = getattr(rules.ShiftedLoss(rho * 1.7), path)(model, w, X, t)
            assert tree_rel_err(a, b) <= RTOL, (rho, path, getkey)


def test_shifted_loss_differs_from_one_sam_when_norms_differ(getkey):
    """The identity needs equal norms: with two norms no single C reproduces 1-SAM (the test can fail)."""
    X, t, w = _equal_norm_problem(getkey())
    X = X.at[:3].multiply(3.0)
    model = LogReg()
    a = rules.OneSAM(1.0).direction(model, w, X, t)
    errs = [tree_rel_err(a, rules.ShiftedLoss(C).direction(model, w, X, t)) for C in np.linspace(0.5, 6.0, 23)]
    assert min(errs) > 1e-3


@pytest.mark.parametrize("model_name", ["logreg", "dln"])
def test_linear_loss_is_the_large_rho_limit_of_the_shifted_loss(model_name, getkey):
    """sigma(-z + C) -> 1: the shifted loss at C = 800 is the linear loss to float64 rounding."""
    model, params, X, t = make_problem(model_name, getkey(), 7, 5, 3)
    a = rules.LinearLoss().direction(model, params, X, t)
    b = rules.ShiftedLoss(800.0).direction(model, params, X, t)
    assert tree_rel_err(a, b) <= RTOL


def test_linear_loss_is_one_sams_large_rho_limit_in_the_linear_model(getkey):
    model, w, X, t = make_problem("logreg", getkey(), 7, 5, 3)
    a = rules.LinearLoss().direction(model, w, X, t)
    b = rules.OneSAM(1e3).direction(model, w, X, t)
    assert tree_rel_err(a, b) <= RTOL


@pytest.mark.parametrize("model_name", ["logreg", "softmax", "dln"])
def test_step_and_decay_controls_are_gd_plus_what_they_say(model_name, getkey):
    model, params, X, t = make_problem(model_name, getkey(), 6, 4, 2)
    g = rules.GD().direction(model, params, X, t)
    big = rules.LargeStep(3.0).direction(model, params, X, t)
    wd = rules.WeightDecay(0.25).direction(model, params, X, t)
    assert tree_rel_err(big, rules.tree_scale(3.0, g)) <= RTOL
    assert tree_rel_err(wd, rules.tree_add(g, rules.tree_scale(0.25, params))) <= RTOL
    # at their neutral values the controls are GD exactly
    for m in (rules.LargeStep(1.0), rules.WeightDecay(0.0), rules.ShiftedLoss(0.0)):
        assert tree_rel_err(m.direction(model, params, X, t), g) <= RTOL, m


@pytest.mark.parametrize("cls, field", [(rules.ShiftedLoss, "shift"), (rules.LargeStep, "lr_mult"),
                                        (rules.WeightDecay, "decay")])
def test_bad_knobs_are_refused_naming_the_field(cls, field):
    with pytest.raises(ValueError, match=field):
        cls(-1.0)
    with pytest.raises(ValueError, match=field):
        cls(float("nan"))
    with pytest.raises(ValueError, match="unexpected"):
        rules.method(cls.name, rho=0.1)


def test_knobs_ride_on_the_rho_axis():
    cfg = SimConfig(methods=("gd", "one_sam") + rules.CONTROLS, rhos=(0.5, 2.0),
                    knob_scale=(("large_step", 2.0), ("weight_decay", 0.01)))
    assert method_value(cfg, "shifted_loss", 2.0) == rules.ShiftedLoss(2.0)
    assert method_value(cfg, "large_step", 2.0) == rules.LargeStep(4.0)
    assert method_value(cfg, "weight_decay", 2.0) == rules.WeightDecay(0.02)
    assert method_value(cfg, "linear_loss", 2.0) == rules.LinearLoss()
    assert not trains_with_rho(cfg, "linear_loss") and trains_with_rho(cfg, "weight_decay")
    with pytest.raises(ValueError, match="knob_scale"):
        SimConfig.from_dict(dict(methods=["gd"], knob_scale={"one_sam": 2.0}))
    with pytest.raises(ValueError, match="knob_scale.weight_decay"):
        SimConfig.from_dict(dict(methods=["gd"], knob_scale={"weight_decay": -1.0}))
    assert SimConfig.from_dict(cfg.to_dict()) == cfg


def test_heterogeneous_norms_keep_accuracy_and_mean_square_norm(getkey):
    base = isotropic_mixture(50, 1.0, 0.2)
    mix = with_example_norms(base, 4.0, 0.3)
    p, lo, hi = np.asarray(mix.norm_mix)
    assert hi / lo == pytest.approx(4.0) and (1 - p) * lo**2 + p * hi**2 == pytest.approx(1.0)
    w = jax.random.normal(getkey(), (50,))
    assert float(population_accuracy(mix, w)) == float(population_accuracy(base, w))
    key = getkey()
    X, _ = mix.sample(key, 4000, jnp.float64)
    X0, _ = base.sample(key, 4000, jnp.float64)
    ratio = np.linalg.norm(X, axis=1) / np.linalg.norm(X0, axis=1)  # same key: same g, so the ratio is s_i
    assert set(np.round(np.unique(np.round(ratio, 6)), 4)) <= {round(lo, 4), round(hi, 4)}
    assert abs(np.mean(np.isclose(ratio, hi)) - 0.3) < 0.03
    with pytest.raises(ValueError, match="norm_frac"):
        MixtureSpec(norm_frac=1.5, norm_ratio=2.0).build()


def test_spiked_spectrum_spec():
    mix = MixtureSpec("spiked", d=20, sigma=1.0, num_spikes=2, spike=9.0, mean_coords=(0, 10)).build()
    var = np.asarray(mix.scale) ** 2
    assert var[0] == pytest.approx(9 * var[5]) and var.sum() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="num_spikes"):
        MixtureSpec("spiked", d=20, num_spikes=30).build()


def _backend_config(form_data):
    return SimConfig(methods=("gd", "one_sam", "linear_loss", "shifted_loss", "large_step", "weight_decay"),
                     rhos=(0.5, 2.0), num_seeds=2, n=10, steps=20, lr=0.5, init_scale=1.0, record_every=5,
                     record_dense=5, dtype="float64", knob_scale=(("weight_decay", 0.1),), data=form_data)


def _check_backends(cfg, form):
    from linsam._src.engine.sweep import simulate

    with jax.enable_x64(True):
        a = simulate(cfg, form=form)
        b = simulate(cfg, backend="scan")
    assert set(a.backend.values()) == {"linear"}
    for k in ("test_acc", "val_acc", "w_norm", "train_acc_noisy", "grad_norm_ratio"):
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], rtol=1e-10, atol=1e-12, err_msg=f"{form} {k}")


def test_linear_backend_step_is_each_controls_closed_form(getkey):
    """Fast version of the backend tests below: one step of the linear backend's update,
    (1 - lr decay) w - lr mult (1/n) X^T(-t a) with a = example_weights(z; rho, shift) from
    :func:`linear.run_parameters`, equals w - lr * (the control's closed-form direction)."""
    from linsam._src.engine import linear

    model, w, X, t = make_problem("logreg", getkey(), 8, 5, 3)
    lr = 0.7
    z, xn = model.margins(w, X, t), jnp.linalg.norm(X, axis=1)
    for m in (rules.GD(), rules.OneSAM(0.8), rules.LinearLoss(), rules.ShiftedLoss(1.3), rules.LargeStep(2.5),
              rules.WeightDecay(0.2), rules.JSAM(0.4), rules.LSAM(0.8)):
        kind = linear.kind(model, type(m))
        rho, shift, mult, decay = linear.run_parameters(kind, m)
        a = model.example_weights(z, xn, rho=rho, shift=shift)
        step = (1 - lr * decay) * w + lr * mult * (X.T @ (t * a)) / X.shape[0]
        want = w - lr * m.direction(model, w, X, t)
        assert tree_rel_err(step, want) <= RTOL, (m, kind)
    assert linear.kind(model, rules.NSAM) is None and linear.kind(model, rules.JRegFixed) is None
    assert linear.kind(DLN(hidden=2), rules.GD) is None


@pytest.mark.slow
def test_linear_backend_runs_the_controls_exactly():
    """The fast backend's controls (primal form, anisotropic data) == the generic backend, float64."""
    data = MixtureSpec("anisotropic", d=12, mean_norm=1.0, sigma=0.3, alpha=1.0, mean_coords=(5,))
    _check_backends(_backend_config(data), "primal")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["isotropic", "anisotropic"])
def test_linear_backend_dual_form_runs_the_controls_exactly(kind):
    """The dual form carries w = a w0 + s X^T A under weight decay; every moment must follow."""
    data = (MixtureSpec("anisotropic", d=12, mean_norm=1.0, sigma=0.3, alpha=1.0, mean_coords=(5,))
            if kind == "anisotropic" else MixtureSpec("isotropic", d=12, mean_norm=1.0, sigma=0.3))
    _check_backends(_backend_config(data), "dual")


# ----------------------------------------------------------------------------- the comparison


def _fake_sweep(name, seeds, peaks_by_method, rhos, knob_scale=(), val_by_method=None):
    """A sweep whose curves of (method, rho, seed) have one record after the start: test accuracy
    at the given value, validation accuracy at ``val_by_method`` (default: the same)."""
    methods = list(peaks_by_method)
    acc = np.stack([np.asarray(peaks_by_method[m], float) for m in methods])  # (method, rho, seed)
    val = acc if val_by_method is None else np.stack([np.asarray(val_by_method[m], float) for m in methods])
    curve = np.stack([np.full_like(acc, 0.5), acc], axis=-1)
    vcurve = np.stack([np.full_like(val, 0.5), val], axis=-1)
    cfg = SimConfig(name=name, methods=tuple(methods), rhos=tuple(rhos), num_seeds=len(seeds),
                    seed_offset=int(seeds[0]), knob_scale=knob_scale, meta=(("regime", "synthetic"),))
    axes = dict(method=methods, rho=np.asarray(rhos, float), seed=np.asarray(seeds), step=np.array([0, 1]))

    def index(axis, value):
        vals = list(axes[axis])
        if axis == "method":
            return vals.index(value)
        hits = np.flatnonzero(np.isclose(axes[axis], value))
        if hits.size == 0:
            raise KeyError(value)
        return int(hits[0])

    return SimpleNamespace(config=cfg, axes=axes, metrics={"test_acc": curve, "val_acc": vcurve}, index=index)


def _runs(rng, n, sam, shift, lin, noise=0.002):
    e = lambda: noise * rng.standard_normal((3, n))  # noqa: E731
    return {"gd": 0.70 + np.zeros((3, n)), "one_sam": np.array(sam)[:, None] + e(),
            "shifted_loss": np.array(shift)[:, None] + e(), "linear_loss": lin + np.zeros((3, n)) + e()[:1]}


def test_compare_picks_knobs_and_the_best_control_on_the_selection_seeds():
    from reproduction import controls as C

    rng = np.random.default_rng(0)
    rhos = (1.0, 2.0, 4.0)
    # on the selection seeds the shifted loss is best at rho = 2; 1-SAM's best is rho = 4 (grid edge)
    sel = _fake_sweep("sel", range(8), _runs(rng, 8, [0.72, 0.74, 0.76], [0.73, 0.78, 0.75], 0.71), rhos)
    rep = _fake_sweep("rep", range(100, 120), _runs(rng, 20, [0.72, 0.74, 0.80], [0.73, 0.75, 0.79], 0.90), rhos)
    comp = C.compare(sel, rep)
    assert comp["methods"]["one_sam"]["rho"] == 4.0 and comp["methods"]["one_sam"]["edge"] == "high"
    assert comp["methods"]["shifted_loss"]["rho"] == 2.0 and comp["methods"]["shifted_loss"]["edge"] is None
    # the linear loss is far better on the report seeds, but it was not the best on the selection seeds
    assert comp["best_control"] == "shifted_loss"
    assert comp["gain"]["mean"] == pytest.approx(0.05, abs=0.003) and C.verdict(comp) == "better"
    assert comp["versus"]["linear_loss"]["verdict"] == "worse"
    # matched radius: the shifted loss at 1-SAM's rho* = 4
    assert np.mean(comp["methods"]["shifted_loss"]["selected_matched"]) == pytest.approx(0.79, abs=0.003)
    lines = "\n".join(C.table_lines(comp))
    assert "at grid edge: high" in lines and "(best simple control)" in lines
    with pytest.raises(ValueError, match="reuses selection seeds"):
        C.compare(sel, _fake_sweep("rep", range(4, 24), _runs(rng, 20, [0.7] * 3, [0.7] * 3, 0.7), rhos))


def test_compare_selects_on_validation_not_on_test():
    """Validation prefers 1-SAM's rho = 1, the test curve rho = 2: the protocol must follow validation."""
    from reproduction import controls as C

    rng = np.random.default_rng(1)
    rhos = (1.0, 2.0, 4.0)
    test = _runs(rng, 8, [0.72, 0.80, 0.71], [0.73, 0.74, 0.75], 0.71)
    val = dict(test, one_sam=np.array([0.75, 0.70, 0.69])[:, None] + np.zeros((3, 8)))
    sel = _fake_sweep("sel", range(8), test, rhos, val_by_method=val)
    rep = _fake_sweep("rep", range(100, 110), _runs(rng, 10, [0.72, 0.80, 0.71], [0.73, 0.74, 0.75], 0.71), rhos)
    assert C.compare(sel, rep)["methods"]["one_sam"]["rho"] == 1.0


def test_compare_runs_extends_an_edge_until_interior():
    """1-SAM's selection curve rises to the grid's top: the protocol runs x2 extensions until it turns."""
    from reproduction import controls as C

    rng = np.random.default_rng(2)
    rhos = (1.0, 2.0)
    level = {1.0: 0.72, 2.0: 0.74, 4.0: 0.78, 8.0: 0.76, 16.0: 0.70}
    runs_seen = []

    def run(cfg):
        runs_seen.append(cfg.name)
        seeds = list(cfg.seeds)
        n = len(seeds)
        peaks = {m: np.array([[level[r] if m == "one_sam" else 0.7] * n for r in cfg.rhos])
                 + 1e-4 * rng.standard_normal((len(cfg.rhos), n)) for m in cfg.methods}
        return _fake_sweep(cfg.name, seeds, peaks, cfg.rhos)

    sel_cfg = SimConfig(name="sel", methods=("gd", "one_sam"), rhos=rhos, num_seeds=4, seed_offset=0)
    rep_cfg = SimConfig(name="rep", methods=("gd", "one_sam"), rhos=rhos, num_seeds=6, seed_offset=100)
    comp = C.compare_runs(run, sel_cfg, rep_cfg)
    r = comp["methods"]["one_sam"]
    assert r["rho"] == 4.0 and r["edge"] is None and r["extended"] == 2
    assert runs_seen == ["sel", "sel-x-one_sam-4", "sel-x-one_sam-8", "rep"]
    assert "interior after 2 grid extension(s)" in C.rho_text(r)
    # capped: a curve that keeps rising stops after max_extend extensions, flagged
    level.update({8.0: 0.80, 16.0: 0.81, 32.0: 0.82})
    comp = C.compare_runs(run, sel_cfg.replace(name="sel2"), rep_cfg, max_extend=2)
    r = comp["methods"]["one_sam"]
    assert r["rho"] == 8.0 and r["edge"] == "high" and r["capped"] and "cap of 2 extensions" in C.rho_text(r)


def test_c10_verdict_counts_regimes():
    import paper_checks

    def comp(lo, hi, mean, verdict):
        m = {"one_sam": dict(selected=[0.8] * 3, oracle=[0.81] * 3, final=[0.7] * 3, rho=1.0, knob="rho", edge=None,
                             capped=False, extended=0),
             "linear_loss": dict(selected=[0.79] * 3, oracle=[0.8] * 3, final=[0.79] * 3, rho=0.5, knob="-")}
        g = dict(mean=mean, lo=lo, hi=hi, n=3, verdict=verdict, margin=0.005)
        return dict(regime="r", treatment="one_sam", baseline="gd", best_control="linear_loss", methods=m,
                    gain=g, versus={"linear_loss": g}, sam_comparators=[], select="s", report="p")

    ok = paper_checks.evaluate("C10", dict(regimes=[comp(-0.01, 0.01, 0.0, "inconclusive"),
                                                    comp(0.01, 0.02, 0.015, "better")], regime="x"),
                               {"min_regimes": 1})
    assert ok.verdict == "holds" and "1 of 2" in ok.measured and "unhinged" in ok.measured
    bad = paper_checks.evaluate("C10", dict(regimes=[comp(-0.03, -0.01, -0.02, "worse")], regime="x"), {})
    assert bad.verdict == "fails" and "worse (margin 0.5 pp)" in bad.measured


def test_models_have_every_control_in_closed_form():
    for model in (LogReg(), Softmax(num_classes=3), DLN(hidden=2)):
        for name in rules.CONTROLS:
            assert rules.METHOD_CLASSES[name] in model.closed_forms, (model, name)


def test_regime_answer_flags_a_win_over_a_control_that_is_below_gd():
    """A 'better' verdict against the best simple control is no gain when 1-SAM does not beat GD."""
    from reproduction import regimes

    def comp(over, ctl_mean):
        g = lambda v: dict(verdict=v, mean=0.0, lo=-0.01, hi=0.01, margin=0.005)  # noqa: E731
        return dict(regime="r", treatment="one_sam", baseline="gd", best_control="large_step",
                    gain=g("better"), over_baseline=g(over), versus={},
                    methods={"gd": dict(selected=[0.70] * 3), "large_step": dict(selected=[ctl_mean] * 3)})

    text = "\n".join(regimes._answer([comp("inconclusive", 0.66)]))
    assert "Caution (r)" in text and "scores below GD" in text
    assert "not that 1-SAM gains" in "\n".join(regimes._answer([comp("inconclusive", 0.72)]))
    assert "Caution" not in "\n".join(regimes._answer([comp("better", 0.66)]))


def test_best_simple_control_is_gd_or_a_non_sam_control_never_a_sam_comparator():
    """The pool of the best simple control: GD itself (the zero-knob member of every family) and the
    non-SAM controls; n-SAM, however good on the selection seeds, is a SAM-family comparator."""
    from reproduction import controls as C

    rng = np.random.default_rng(3)
    rhos = (1.0, 2.0, 4.0)

    def runs(n):
        e = lambda: 0.002 * rng.standard_normal((3, n))  # noqa: E731
        return {"gd": 0.75 + np.zeros((3, n)), "one_sam": np.array([0.72, 0.74, 0.73])[:, None] + e(),
                "nsam": 0.90 + e(), "shifted_loss": np.array([0.70, 0.71, 0.70])[:, None] + e()}

    comp = C.compare(_fake_sweep("sel", range(8), runs(8), rhos), _fake_sweep("rep", range(100, 110), runs(10), rhos))
    assert comp["best_control"] == "gd"  # above every non-SAM control; n-SAM is higher but not a candidate
    assert comp["sam_comparators"] == ["nsam"] and comp["versus"]["nsam"]["verdict"] == "worse"
