"""Identities of the SAM family: rho = 0, the linear model, Proposition 4.1, zero gradients,
float32, and overflow safety (the optax.contrib.sam cross-check is in test_optax.py).

All problems use the (n, d, h) = (7, 5, 3) shape so the compiled kernels are shared with
test_rules_closed_vs_autodiff.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import dln, logreg, rules
from linsam.models import DLN, DLNParams, LogReg, Softmax

from core_cases import MODELS, autodiff_direction, closed_direction, make_problem, tree_rel_err

RTOL = 1e-10  # exact-identity tier (see test_rules_closed_vs_autodiff.py)
SAM = ("nsam", "one_sam", "lsam", "jsam", "jreg")


@pytest.mark.parametrize("model_name", MODELS)
def test_rho_zero_is_gd(model_name, getkey):
    model, params, X, t = make_problem(model_name, getkey(), 7, 5, 3)
    gd_closed = closed_direction(model, "gd", params, X, t, 0.0)
    gd_auto = autodiff_direction(model, "gd", params, X, t, 0.0)
    for method in SAM:
        closed = closed_direction(model, method, params, X, t, 0.0)
        if model_name == "dln":
            # DLN closed forms at rho = 0 use the per-example (v'_i x_i^T) contraction instead of
            # GD's outer(v, sum_i c_i x_i): same numbers, different summation order (ulps).
            assert tree_rel_err(closed, gd_closed) <= 1e-13, f"{model_name}/{method} closed form at rho=0"
        else:
            # Linear closed forms: rho = 0 enters as an exact 0 shift, so the result is bitwise GD.
            for a, b in zip(jax.tree_util.tree_leaves(closed), jax.tree_util.tree_leaves(gd_closed)):
                np.testing.assert_array_equal(a, b, err_msg=f"{model_name}/{method} closed form at rho=0")
        # Autodiff: per-example mean vs batch-mean gradient differ in summation order only.
        auto = autodiff_direction(model, method, params, X, t, 0.0)
        assert tree_rel_err(auto, gd_auto) <= 1e-13, f"{model_name}/{method} autodiff at rho=0"


@pytest.mark.parametrize("model_name", ["logreg", "softmax"])
def test_linear_models_lsam_is_one_sam_and_jsam_is_gd(model_name, getkey):
    """For f linear in the weights the Jacobian is constant: L-SAM = 1-SAM, J-SAM = GD = J-reg."""
    for _ in range(3):
        model, params, X, t = make_problem(model_name, getkey(), 7, 5, 3)
        for rho in (0.1, 1.5):
            one = rules.OneSAM(rho).autodiff(model, params, X, t)
            assert tree_rel_err(rules.LSAM(rho).autodiff(model, params, X, t), one) <= RTOL
            g = rules.GD().autodiff(model, params, X, t)
            assert tree_rel_err(rules.JSAM(rho).autodiff(model, params, X, t), g) <= RTOL
            assert tree_rel_err(rules.JReg(rho).autodiff(model, params, X, t), g) <= RTOL
            # and 1-SAM really differs from GD (the identities above are not vacuous)
            assert tree_rel_err(one, g) > 1e-3


def test_dln_jsam_equals_jreg_and_penalty_gradient(getkey):
    """Proposition 4.1: J-SAM = GD + grad of rho sg(sigmoid(-t f)) J, exactly for the DLN."""
    for _ in range(3):
        model, p, X, t = make_problem("dln", getkey(), 7, 5, 3)
        for rho in (0.05, 0.8):
            js = rules.direction(rules.JSAM(rho), model, p, X, t)
            assert tree_rel_err(rules.direction(rules.JReg(rho), model, p, X, t), js) <= RTOL
            assert tree_rel_err(rules.JReg(rho).autodiff(model, p, X, t), js) <= RTOL
            pen_grad = jax.grad(model.jsam_penalty)(p, X, t, rho)
            g = rules.direction(rules.GD(), model, p, X, t)
            diff = jax.tree_util.tree_map(jnp.subtract, js, g)
            assert tree_rel_err(pen_grad, diff) <= RTOL
            assert tree_rel_err(js, g) > 1e-4  # not vacuous


def test_dln_perturbed_logit_formula(getkey):
    """f(w + eps) = f - rho t J + rho^2 ||x||^2 f / J^2 (the exact second-order term)."""
    model, p, X, t = make_problem("dln", getkey(), 7, 5, 3)
    rho = 0.6
    f = model.apply_batch(p, X)
    J = model.jacobian_norm(p, X)
    formula = f - rho * t * J + rho**2 * jnp.sum(X * X, axis=1) * f / J**2
    np.testing.assert_allclose(dln.perturbed_logit(p, X, t, rho), formula, rtol=1e-12)
    # and against an autodiff perturbation
    def pert(x, ti):
        eps = rules.safe_normalize(jax.grad(rules.example_loss, argnums=1)(model, p, x, ti))
        return model.apply(jax.tree_util.tree_map(lambda a, e: a + rho * e, p, eps), x)
    np.testing.assert_allclose(jax.vmap(pert)(X, t), formula, rtol=1e-12)


def _zero_gradient_cases(key):
    n, d, h = 7, 5, 3
    X = jax.random.normal(key, (n, d))
    t = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0)
    yield "dln at v=0, W=0", DLN(), DLNParams(jnp.zeros(h), jnp.zeros((h, d))), X, t
    # saturated sigmoids: margins ~1e3 give sigmoid(-z) == 0 exactly in float64
    w = 1e3 * jnp.ones(d)
    Xs = jnp.sign(t)[:, None] * jnp.ones((n, d))
    yield "logreg saturated", LogReg(), w, Xs, t
    yield "logreg zero inputs", LogReg(), jnp.ones(d), jnp.zeros((n, d)), t
    yield "softmax zero inputs", Softmax(3), jnp.ones((3, d)), jnp.zeros((n, d)), jnp.arange(n) % 3


@pytest.mark.parametrize("case", [0, 1, 2, 3], ids=["dln-zero-init", "logreg-saturated", "logreg-zero-x", "softmax-zero-x"])
def test_zero_gradient_gives_zero_direction_not_nan(case, getkey):
    """Convention: eps = 0 where ||grad l_i|| = 0; every rule then returns GD's exact 0, never NaN.
    (The controls change the loss or add a decay, so only "never NaN" applies to them: GD on the
    linear loss does not saturate, weight decay pulls non-zero weights; tested below.)"""
    name, model, params, X, t = list(_zero_gradient_cases(getkey()))[case]
    for method in [m for m in rules.METHODS if m not in rules.CONTROLS]:
        for impl, out in (
            ("closed", closed_direction(model, method, params, X, t, 0.5, lam_last=0.0, lam_act=0.0)),
            ("autodiff", autodiff_direction(model, method, params, X, t, 0.5, lam_last=0.0, lam_act=0.0)),
        ):
            for leaf in jax.tree_util.tree_leaves(out):
                assert np.all(np.isfinite(leaf)), f"{name}: {impl} {method} produced NaN/inf"
                np.testing.assert_array_equal(leaf, 0.0, err_msg=f"{name}: {impl} {method}")


@pytest.mark.parametrize("case", [0, 1, 2, 3], ids=["dln-zero-init", "logreg-saturated", "logreg-zero-x", "softmax-zero-x"])
def test_controls_stay_finite_where_the_gradient_is_zero(case, getkey):
    name, model, params, X, t = list(_zero_gradient_cases(getkey()))[case]
    for method in rules.CONTROLS:
        for impl, out in (("closed", closed_direction(model, method, params, X, t, 0.5)),
                          ("autodiff", autodiff_direction(model, method, params, X, t, 0.5))):
            for leaf in jax.tree_util.tree_leaves(out):
                assert np.all(np.isfinite(leaf)), f"{name}: {impl} {method} produced NaN/inf"


def test_partly_zero_gradient_uses_eps_zero_only_there(getkey):
    """One example with x = 0 (zero gradient) among normal ones: its eps is 0, others move."""
    model, w, X, t = make_problem("logreg", getkey(), 7, 5, 3)
    X = X.at[0].set(0.0)
    a = logreg.one_sam(w, X, t, 0.5)
    b = rules.OneSAM(0.5).autodiff(model, w, X, t)
    assert np.all(np.isfinite(a)) and tree_rel_err(a, b) <= RTOL


def test_safe_norm_gradient_at_zero_is_zero():
    g = jax.grad(lambda x: rules.safe_norm(x))(jnp.zeros(3))
    np.testing.assert_array_equal(g, 0.0)
    x = jnp.array([3.0, -4.0])
    np.testing.assert_allclose(jax.grad(rules.safe_norm)(x), x / 5.0, rtol=1e-15)
    # scaled normalisation keeps a direction for tiny, non-zero gradients
    tiny = jnp.array([1e-200, 0.0])
    np.testing.assert_array_equal(rules.safe_normalize(tiny), jnp.array([1.0, 0.0]))


# float32: the library works in float32 and stays close to float64. Tolerance tier:
# float32 rounding (eps32 ~ 6e-8) amplified by the condition of the rules; 1e-4 relative.
F32_RTOL = 1e-4


@pytest.mark.parametrize("model_name", [pytest.param(m, marks=pytest.mark.slow) if m == "softmax" else m
                                        for m in MODELS])  # softmax: -m slow (suite budget)
def test_float32_close_to_float64(model_name, getkey):
    key = getkey()
    worst = 0.0
    m64 = make_problem(model_name, key, 7, 5, 3)
    model, p64, X64, t64 = m64
    cast = lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a
    p32 = jax.tree_util.tree_map(cast, p64)
    X32, t32 = cast(X64), cast(t64)
    for method in rules.METHODS:
        for impl in ("closed", "autodiff"):
            if impl == "closed":
                a32 = closed_direction(model, method, p32, X32, t32, 0.3)
                a64 = closed_direction(model, method, p64, X64, t64, 0.3)
            else:
                a32 = autodiff_direction(model, method, p32, X32, t32, 0.3)
                a64 = autodiff_direction(model, method, p64, X64, t64, 0.3)
            for leaf in jax.tree_util.tree_leaves(a32):
                assert leaf.dtype == jnp.float32, f"{model_name}/{method}/{impl} promoted to {leaf.dtype}"
            err = tree_rel_err(a32, a64)
            worst = max(worst, err)
            assert err <= F32_RTOL, f"{model_name}/{method}/{impl}: float32 vs float64 rel err {err:.2e}"
    print(f"\n{model_name}: worst float32-vs-float64 relative deviation {worst:.2e}")


def test_init_respects_dtype(getkey):
    """init in float32 stays float32 even with x64 enabled (no numpy float64 scalar upcast)."""
    assert logreg.init(getkey(), 4, scale=1.0, dtype=jnp.float32).dtype == jnp.float32
    p = dln.init(getkey(), 4, 3, scale=1.0, dtype=jnp.float32)
    assert p.v.dtype == jnp.float32 and p.W.dtype == jnp.float32
    assert Softmax(3).init(getkey(), 4, scale=1.0, dtype=jnp.float32).dtype == jnp.float32
