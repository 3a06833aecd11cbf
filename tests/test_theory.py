"""Tests of linsam.theory: predictions equal the simulator's measurements.

Tolerance tiers: exact identities in float64 (rtol 1e-10, or 1e-8 where a difference of
two updates divided by lr cancels digits); a sign argument (monotonicity of Lemma 3.1 on a
grid); no statistical checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linsam import dln, logreg, rules, theory
from linsam import simulate as sim
from simcases import TINY, TINY_DLN, dln_result, logreg_result

EXACT = dict(rtol=1e-10, atol=1e-12)

CFG = TINY  # logreg, methods (gd, one_sam), rhos (0, 0.7, 1.5), records at steps 0, 1, 2, 4, 6
SAM = 1  # method index of one_sam


@pytest.fixture(scope="module")
def logreg_run():
    return logreg_result()


# ----------------------------------------------------------------------------- Lemma 3.1


@settings(max_examples=15, deadline=None)
@given(C=st.floats(0.01, 20.0))
def test_lemma31_weight_increasing_from_1_to_eC(C):
    z = jnp.linspace(-40.0, 40.0, 801)
    g = theory.one_sam_weights(z, jnp.ones_like(z), C)
    # nondecreasing up to rounding (at saturation exp(log-sigmoid difference) jitters by ~1 ulp)
    assert np.all(np.diff(np.asarray(g)) >= -1e-13 * np.asarray(g)[1:]), "g(z) must be nondecreasing in z"
    # strictly increasing where it is not saturated
    mid = (z > -5) & (z < 5 + C)
    assert np.all(np.diff(np.asarray(g)[np.asarray(mid)]) > 0)
    # the closed form (1 + e^z) / (1 + e^(z - C)) and its limits 1 (z -> -inf), e^C (z -> inf)
    zz = np.asarray(z)
    np.testing.assert_allclose(g, (1 + np.exp(zz)) / (1 + np.exp(zz - C)), rtol=1e-12)
    np.testing.assert_allclose(g[0], 1.0, rtol=1e-12)
    np.testing.assert_allclose(g[-1], np.exp(C), rtol=2 * np.exp(-(40.0 - C)) + 1e-14)
    np.testing.assert_allclose(g, logreg.one_sam_weight(z, C), **EXACT)


def test_predicted_ratio_equals_measured_ratio(logreg_run):
    """Lemma 3.1 prediction from margins == simulator's measured 1-SAM grad-norm ratio."""
    res = logreg_run
    for si, seed in enumerate(res.axes["seed"]):
        ds = sim.training_data(CFG, int(seed))
        xn = jnp.linalg.norm(ds.X, axis=1)
        for ri, rho in enumerate(res.axes["rho"]):
            W = jnp.asarray(res.params[SAM, ri, si])  # (T, d): the whole recorded 1-SAM trajectory
            z = theory.logreg_margins(W, ds.X, ds.noisy)  # (T, n)
            pred = theory.clean_noisy_grad_ratio(z, xn, ds.mask, rho)  # (T,)
            np.testing.assert_allclose(pred, res.metrics["sam_grad_norm_ratio"][SAM, ri, si], **EXACT)
            plain = theory.clean_noisy_grad_ratio(z, xn, ds.mask, 0.0)
            np.testing.assert_allclose(plain, res.metrics["grad_norm_ratio"][SAM, ri, si], **EXACT)
            w = theory.one_sam_weights(z, xn, rho)
            np.testing.assert_allclose(w[:, ~ds.mask].mean(-1), res.metrics["sam_weight_clean"][SAM, ri, si], **EXACT)


def test_one_sam_step_is_the_lemma_reweighting(logreg_run):
    """The recorded 1-SAM step equals GD with the predicted per-example weights."""
    ds = sim.training_data(CFG, int(logreg_run.axes["seed"][0]))
    xn = jnp.linalg.norm(ds.X, axis=1)
    W = jnp.asarray(logreg_run.params[SAM, 2, 0])  # rho = 1.5; records at steps 0, 1, 2, 4, 6
    steps = logreg_run.axes["step"]
    for k in range(W.shape[0] - 1):
        w = W[k]
        for _ in range(steps[k + 1] - steps[k]):
            z = theory.logreg_margins(w, ds.X, ds.noisy)
            a = theory.one_sam_weights(z, xn, 1.5)
            w = w - CFG.lr * (-(ds.noisy * a * jax.nn.sigmoid(-z)) @ ds.X / CFG.n)
        np.testing.assert_allclose(w, W[k + 1], **EXACT)


def test_larger_rho_keeps_clean_gradients_larger(getkey):
    """Lemma 3.1's consequence: when every clean margin exceeds every noisy one (clean points
    fitted first), the predicted clean/noisy ratio grows with rho on the same state."""
    z = jnp.concatenate([jax.random.uniform(getkey(), (30,), minval=0.5, maxval=4.0),
                         jax.random.uniform(getkey(), (10,), minval=-3.0, maxval=0.4)])
    mask = jnp.arange(40) >= 30
    xn = jax.random.uniform(getkey(), (40,), minval=0.8, maxval=1.2)
    ratios = np.array([float(theory.clean_noisy_grad_ratio(z, xn, mask, r)) for r in (0.0, 0.5, 1.0, 2.0, 4.0)])
    assert np.all(np.diff(ratios) > 0), ratios


# ----------------------------------------------------------------------------- Proposition 4.1


@pytest.fixture(scope="module")
def dln_runs():
    return TINY_DLN, dln_result()


@pytest.mark.slow  # suite budget; test_penalty_value_matches_simulator_and_core keeps the fast check
def test_penalty_gradient_equals_measured_jsam_minus_sgd(dln_runs):
    """grad P (Prop. 4.1) == (theta_SGD - theta_JSAM) / lr after one simulator step from the same state."""
    cfg, res = dln_runs
    gi, ji = res.axes["rule"].index("gd"), res.axes["rule"].index("jsam")
    assert res.axes["step"][1] == 1
    for si, seed in enumerate(res.axes["seed"]):
        ds = sim.training_data(cfg, int(seed))
        for ri, rho in enumerate(res.axes["rho"]):
            p0 = dln.DLNParams(*(jnp.asarray(a[gi, ri, si, 0]) for a in res.params))
            gd1 = [np.asarray(a[gi, ri, si, 1]) for a in res.params]
            js1 = [np.asarray(a[ji, ri, si, 1]) for a in res.params]
            measured = [(g - j) / cfg.lr for g, j in zip(gd1, js1)]
            pred = theory.jsam_penalty_grad(p0, ds.X, ds.noisy, rho)
            for m, p, name in zip(measured, pred, ("v", "W")):
                np.testing.assert_allclose(m, p, rtol=1e-8, atol=1e-12, err_msg=f"{name}, rho={rho}")
            # and against the core's closed form and generic autodiff
            model = dln.MODEL
            diff = jax.tree_util.tree_map(jnp.subtract, rules.direction(rules.JSAM(rho), model, p0, ds.X, ds.noisy),
                                          rules.direction(rules.GD(), model, p0, ds.X, ds.noisy))
            auto = jax.tree_util.tree_map(jnp.subtract, rules.JSAM(rho).autodiff(model, p0, ds.X, ds.noisy),
                                          rules.GD().autodiff(model, p0, ds.X, ds.noisy))
            for a, b, c in zip(pred, diff, auto):
                np.testing.assert_allclose(a, b, **EXACT)
                np.testing.assert_allclose(a, c, **EXACT)


def test_penalty_value_matches_simulator_and_core(dln_runs):
    cfg, res = dln_runs
    ji = res.axes["rule"].index("jsam")
    ds = sim.training_data(cfg, int(res.axes["seed"][1]))
    traj = dln.DLNParams(*(jnp.asarray(a[ji, 2, 1]) for a in res.params))  # (T, ...) leading axis
    pen = theory.jsam_penalty(traj, ds.X, ds.noisy, 1.5)
    assert pen.shape == (5,)
    np.testing.assert_allclose(pen, res.metrics["jsam_penalty"][ji, 2, 1], **EXACT)
    p0 = dln.DLNParams(traj.v[0], traj.W[0])
    np.testing.assert_allclose(pen[0], dln.jsam_penalty(p0, ds.X, ds.noisy, 1.5), **EXACT)


def test_dln_one_sam_margin_formula(dln_runs):
    cfg, res = dln_runs
    ds = sim.training_data(cfg, int(res.axes["seed"][0]))
    oi = res.axes["rule"].index("one_sam")
    p = dln.DLNParams(*(jnp.asarray(a[oi, 1, 0, 2]) for a in res.params))  # rho = 0.7, step 2
    z = dln.margins(p, ds.X, ds.noisy)
    J = dln.jacobian_norm(p, ds.X)
    pred = theory.dln_one_sam_margins(z, J, jnp.linalg.norm(ds.X, axis=1), 0.7)
    np.testing.assert_allclose(pred, ds.noisy * dln.perturbed_logit(p, ds.X, ds.noisy, 0.7), **EXACT)
    # ... and the simulator's DLN sam weights are sigma(-z') / sigma(-z) with this z'
    w = jnp.exp(jax.nn.log_sigmoid(-pred) - jax.nn.log_sigmoid(-z))
    np.testing.assert_allclose(w[~ds.mask].mean(), res.metrics["sam_weight_clean"][oi, 1, 0, 2], **EXACT)
    # no NaN at the all-zero network (J = 0: eps = 0)
    zero = theory.dln_one_sam_margins(jnp.zeros(3), jnp.zeros(3), jnp.ones(3), 0.3)
    np.testing.assert_array_equal(zero, 0.0)


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_reading():
    steps = np.array([0, 1, 2, 3, 4, 5])
    test = np.array([[0.5, 0.7, 0.8, 0.75, 0.7, 0.65], [0.5, 0.6, 0.6, 0.9, 0.8, 0.8]])
    clean = np.array([[0.5, 0.8, 0.9, 0.95, 0.99, 1.0], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]])
    noisy = np.array([[0.55, 0.2, 0.3, 0.45, 0.6, 0.9], [0.5, 0.4, 0.3, 0.2, 0.1, 0.05]])
    es = theory.early_stopping(steps, test, clean, noisy)
    np.testing.assert_array_equal(es.peak_acc, [0.8, 0.9])
    np.testing.assert_array_equal(es.peak_step, [2, 3])
    np.testing.assert_array_equal(es.final_acc, [0.65, 0.8])
    # row 0: 0.55 > chance at step 0 is before the minimum (step 1): onset is step 4
    assert es.memorize_step[0] == 4 and es.clean_acc_at_memorize[0] == 0.99 and es.test_acc_at_memorize[0] == 0.7
    assert np.isnan(es.memorize_step[1]) and np.isnan(es.clean_acc_at_memorize[1])
    # leading axes are kept
    es3 = theory.early_stopping(steps, np.stack([test] * 3), np.stack([clean] * 3), np.stack([noisy] * 3))
    assert es3.peak_acc.shape == (3, 2)
    with pytest.raises(ValueError, match="trailing axis"):
        theory.early_stopping(steps[:-1], test)


def test_early_stopping_on_simulated_trajectories(logreg_run):
    res = logreg_run
    es = theory.early_stopping(res.axes["step"], res.metrics["test_acc"], res.metrics["train_acc_clean"],
                               res.metrics["train_acc_noisy"])
    assert es.peak_acc.shape == (2, 3, 2)
    np.testing.assert_array_equal(es.peak_acc, res.metrics["test_acc"].max(-1))


def test_bad_rho_refused():
    with pytest.raises(ValueError, match="rho"):
        theory.one_sam_weights(jnp.zeros(3), jnp.ones(3), -1.0)
    with pytest.raises(ValueError, match="trailing"):
        theory.clean_noisy_grad_ratio(jnp.zeros(3), jnp.ones(3), jnp.zeros(4, bool), 0.1)
