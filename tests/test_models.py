"""One definition per model: each member against an independent computation (float64).

Tolerance tier: exact identity (rtol 1e-10 or tighter): the closed-form members against the
Generic model's autodiff members, which never use the closed formulas.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import rules
from linsam.models import DLN, DLNParams, Generic, LogReg, SAMPoint, Softmax

from core_cases import MODELS, make_problem, tree_rel_err

MEMBERS = ("apply", "apply_batch", "loss_from_logits", "num_classes", "init", "margins", "jacobian_norm",
           "one_sam_point", "end_to_end", "features", "last_layer", "norms", "closed_forms", "loss")
RTOL = 1e-10


def _generic(model):
    return Generic(model.apply, model.loss_from_logits, model.num_classes, model.features, model.last_layer)


@pytest.mark.parametrize("model", [LogReg(), Softmax(3), DLN(hidden=2), _generic(LogReg())], ids=repr)
def test_every_model_has_the_members(model):
    for name in MEMBERS:
        assert hasattr(model, name), name
    assert hash(model) == hash(model)  # a static argument of jit


@pytest.mark.parametrize("model_name", MODELS)
# the n = 1 and d = 1 edge shapes run with -m slow here (suite budget); the rule identities of
# test_rules_closed_vs_autodiff cover all three shapes in the fast suite
@pytest.mark.parametrize("shape", [(7, 5, 3)] + [pytest.param(s, marks=pytest.mark.slow) for s in [(1, 3, 1), (5, 1, 2)]],
                         ids=lambda s: "n%d-d%d-h%d" % s)
def test_closed_members_equal_autodiff_members(model_name, shape, getkey):
    n, d, h = shape
    model, p, X, t = make_problem(model_name, getkey(), n, d, h)
    g = _generic(model)
    np.testing.assert_allclose(model.apply_batch(p, X), g.logits(p, X), rtol=1e-13)
    np.testing.assert_allclose(model.margins(p, X, t), g.margins(p, X, t), rtol=1e-13)
    np.testing.assert_allclose(model.loss(p, X, t), rules.batch_loss(g, p, X, t), rtol=1e-13)
    np.testing.assert_allclose(model.jacobian_norm(p, X), g.jacobian_norm(p, X), rtol=RTOL)
    for rho in (0.0, 0.05, 0.9):
        a, b = model.one_sam_point(p, X, t, rho), g.one_sam_point(p, X, t, rho)
        assert isinstance(a, SAMPoint)
        np.testing.assert_allclose(a.logits, b.logits, rtol=RTOL, atol=1e-13, err_msg=f"rho={rho}")
        np.testing.assert_allclose(a.jacobian_norm, b.jacobian_norm, rtol=RTOL, err_msg=f"rho={rho}")


@pytest.mark.parametrize("model_name", MODELS)
def test_one_sam_point_gives_the_1sam_gradient_norm(model_name, getkey):
    """||grad l_i(theta + eps_i)|| = |dl/df'| J' (binary) or ||r'|| J' (linear softmax): the engine's metric."""
    model, p, X, t = make_problem(model_name, getkey(), 7, 5, 3)
    sp = model.one_sam_point(p, X, t, 0.4)
    r = jax.vmap(jax.grad(model.loss_from_logits))(sp.logits, t)
    predicted = (jnp.abs(r) if r.ndim == 1 else jnp.linalg.norm(r, axis=1)) * sp.jacobian_norm
    measured = jax.vmap(lambda x, ti: rules.safe_norm(jax.grad(rules.example_loss, argnums=1)(
        model, rules.tree_add(p, rules.perturbation(model, p, x, ti, 0.4)), x, ti)))(X, t)
    np.testing.assert_allclose(predicted, measured, rtol=RTOL)


def test_logreg_and_dln_end_to_end_is_the_linear_map(getkey):
    for name in ("logreg", "dln"):
        model, p, X, t = make_problem(name, getkey(), 6, 4, 3)
        np.testing.assert_allclose(X @ model.end_to_end(p), model.apply_batch(p, X), rtol=1e-13)
    assert Generic(LogReg().apply, rules.binary_logistic_loss).end_to_end is None


def test_softmax_margins_by_hand():
    W = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    X = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    # logits: [2, 0, 1] and [0, 1, 0.5]; labels 0 and 2
    np.testing.assert_allclose(Softmax(3).margins(W, X, jnp.array([0, 2])), [2.0 - 1.0, 0.5 - 1.0])


def test_norms_by_hand():
    p = DLNParams(v=jnp.array([3.0, 4.0]), W=jnp.array([[1.0, 0.0], [0.0, 2.0]]))
    X = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    out = DLN().norms(p, X)
    np.testing.assert_allclose(out["w_norm"], np.hypot(3.0, 8.0))
    np.testing.assert_allclose(out["v_norm"], 5.0)
    np.testing.assert_allclose(out["W_norm"], np.sqrt(5.0))
    np.testing.assert_allclose(out["act_norm"], np.sqrt(5.0) / 2)
    np.testing.assert_allclose(LogReg().norms(jnp.array([3.0, 4.0]), X)["w_norm"], 5.0)


def test_dln_prop41_coefficients_are_the_jsam_minus_gd_direction(getkey):
    """J-SAM - GD = (1/n) sum_i (lam_last_i v, lam_act_i z_i x_i^T) with the model's coefficients."""
    model, p, X, t = make_problem("dln", getkey(), 7, 5, 3)
    lam_last, lam_act = model.prop41_coefficients(p, X, t, 0.6)
    diff = jax.tree_util.tree_map(jnp.subtract, rules.JSAM(0.6).direction(model, p, X, t), rules.GD().direction(model, p, X, t))
    Z = X @ p.W.T
    expect = DLNParams(v=jnp.mean(lam_last) * p.v, W=(lam_act[:, None] * Z).T @ X / X.shape[0])
    assert tree_rel_err(diff, expect) <= RTOL


def test_init_shapes_dtypes_and_errors(getkey):
    assert LogReg().init(getkey(), 4).shape == (4,)
    np.testing.assert_array_equal(LogReg().init(getkey(), 4), 0.0)  # default scale 0
    p = DLN(hidden=3).init(getkey(), 4, dtype=jnp.float32)
    assert p.v.shape == (3,) and p.W.shape == (3, 4) and p.W.dtype == jnp.float32
    assert Softmax(5).init(getkey(), 2, scale=1.0).shape == (5, 2)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1 to initialise a DLN"):
        DLN().init(getkey(), 3)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        DLN(hidden=0)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        Softmax(1)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        LogReg().init(getkey(), 0)


def test_zero_rows_give_zero_norm_and_zero_gradient():
    from linsam.models import row_norms

    A = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(row_norms(A), [0.0, 5.0])
    g = jax.grad(lambda A: jnp.sum(row_norms(A)))(A)
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_allclose(g[1], [0.6, 0.8], rtol=1e-15)
