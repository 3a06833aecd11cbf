"""The noise-robust loss controls of the CIFAR study (:class:`linsam.rules.LabelSmoothing`,
:class:`linsam.rules.GCE`): float64 exact tier against closed forms written here from the
papers' definitions, their limits (eps = 0 and q = 0 are GD), and their input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import rules
from linsam.models import Generic


def _softmax_linear(K=4, d=3):
    """f = W x (K classes), the softmax cross-entropy: J_i^T r = r x^T, so every direction is
    (1/n) sum_i r_i x_i^T with r_i = dl/df, written here by hand."""
    return Generic(apply=lambda W, x: W @ x, loss_from_logits=rules.softmax_cross_entropy, num_classes=K)


def _data(K=4, d=3, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((K, d))), jnp.asarray(rng.standard_normal((n, d))),
            jnp.asarray(rng.integers(0, K, n)))


def test_gce_and_label_smoothing_equal_their_closed_forms_float64():
    """Exact tier (rtol 1e-12): GCE's logit gradient is p_t^q (p - e_t) (Zhang and Sabuncu 2018,
    eq. 7's gradient), label smoothing's p - (1 - eps) e_t - eps/K; the limits are GD."""
    K = 4
    model = _softmax_linear(K)
    W, X, t = _data(K)
    P = jax.nn.softmax(X @ W.T, axis=-1)
    E = jax.nn.one_hot(t, K, dtype=jnp.float64)
    pt = jnp.sum(P * E, axis=-1)
    for q in (0.3, 0.7, 1.0):
        want = ((pt ** q)[:, None] * (P - E)).T @ X / X.shape[0]
        got = rules.GCE(q).direction(model, W, X, t)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"GCE q={q}")
    for eps in (0.1, 0.5):
        want = (P - (1 - eps) * E - eps / K).T @ X / X.shape[0]
        got = rules.LabelSmoothing(eps).direction(model, W, X, t)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"label smoothing eps={eps}")
    gd = rules.GD().direction(model, W, X, t)
    np.testing.assert_allclose(rules.GCE(0.0).direction(model, W, X, t), gd, rtol=1e-12, err_msg="GCE q=0 vs GD")
    np.testing.assert_allclose(rules.LabelSmoothing(0.0).direction(model, W, X, t), gd, rtol=1e-12)
    assert float(jnp.max(jnp.abs(rules.GCE(0.7).direction(model, W, X, t) - gd))) > 1e-3  # the knob matters


def test_gce_binary_is_reweighted_logistic_gradient():
    """Binary model: p_t = sigmoid(t f), the gradient p_t^q times the logistic one."""
    model = Generic(apply=lambda w, x: w @ x, loss_from_logits=rules.binary_logistic_loss)
    rng = np.random.default_rng(1)
    w, X = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal((5, 3)))
    t = jnp.asarray([1.0, -1.0, 1.0, 1.0, -1.0])
    z = t * (X @ w)
    want = ((jax.nn.sigmoid(z) ** 0.5) * (-t * jax.nn.sigmoid(-z))) @ X / 5
    np.testing.assert_allclose(rules.GCE(0.5).direction(model, w, X, t), want, rtol=1e-12)


def test_loss_controls_refuse_bad_knobs_and_are_values():
    with pytest.raises(ValueError, match="eps"):
        rules.LabelSmoothing(1.5)
    with pytest.raises(ValueError, match="q"):
        rules.GCE(2.0)
    with pytest.raises(ValueError):
        rules.GCE(-0.1)
    assert rules.LOSS_CONTROLS == {"label_smoothing": rules.LabelSmoothing, "gce": rules.GCE}
    leaves = jax.tree_util.tree_leaves(rules.GCE(0.3))
    assert leaves == [0.3]  # the knob is a pytree leaf (traced, not compiled in)
