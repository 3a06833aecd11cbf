"""Closed form == generic autodiff for every (model, rule), float64.

Tolerance tier: exact identity. Both sides compute the same real number by different
float64 operation orders, so the relative error (pytree norm) is a few ulps times the
condition of the sum; 1e-10 leaves 5 orders of margin.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import logreg, rules

from core_cases import (
    MODELS, RHOS, SHAPES, autodiff_direction, closed_direction, make_method, make_problem, tree_rel_err,
)

RTOL = 1e-10


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n%d-d%d-h%d" % s)
def test_closed_form_equals_autodiff(model_name, shape, getkey):
    n, d, h = shape
    # Two moderate-margin trials and one large-margin trial (|z| up to ~50) per shape.
    for trial, margin_scale in enumerate((1.0, 1.0, 8.0)):
        model, params, X, t = make_problem(model_name, getkey(), n, d, h, margin_scale)
        # every method has a closed form here, so the comparison below is closed vs autodiff
        assert set(model.closed_forms) == set(rules.METHOD_CLASSES.values())
        for rho in RHOS:
            for method in rules.METHODS:
                a = closed_direction(model, method, params, X, t, rho)
                b = autodiff_direction(model, method, params, X, t, rho)
                err = tree_rel_err(a, b)
                assert err <= RTOL, (
                    f"closed form vs autodiff differ for model={model_name} method={method} "
                    f"n,d,h={shape} rho={rho} trial={trial} {getkey!r}: rel err {err:.3e}"
                )


def test_large_margins_are_really_large(getkey):
    """The 'large-margin' cases reach sigmoid(-|z|) ~ 1e-10 territory (guards the test itself)."""
    model, w, X, t = make_problem("logreg", getkey(), 7, 5, 3, 8.0)
    assert float(jnp.max(jnp.abs(model.margins(w, X, t)))) > 20


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("method", ["one_sam", "lsam", "jsam", "jreg"])
def test_chunked_equals_unchunked(model_name, method, getkey):
    """Memory-bounded chunking (vmap inside lax.map, padded last chunk) changes only rounding."""
    model, params, X, t = make_problem(model_name, getkey(), 7, 4, 2)
    full = autodiff_direction(model, method, params, X, t, 0.3)
    for chunk in (1, 3, 7, 50):
        chunked = autodiff_direction(model, method, params, X, t, 0.3, chunk_size=chunk)
        assert tree_rel_err(full, chunked) <= RTOL, (model_name, method, chunk)


def test_a_wrong_closed_form_is_caught(getkey):
    """The comparison can fail: perturbing the closed form's rho by 1e-6 is detected."""
    model, w, X, t = make_problem("logreg", getkey(), 7, 5, 3)
    a = logreg.one_sam(w, X, t, 0.3 + 1e-6)
    b = rules.OneSAM(0.3).autodiff(model, w, X, t)
    assert tree_rel_err(a, b) > RTOL


def test_per_example_weights_reproduce_rules(getkey):
    """rule(w) = (1/n) sum_i a_i grad l_i(w) with the Lemma 3.1 / n-SAM weights."""
    model, w, X, t = make_problem("logreg", getkey(), 9, 4, 1)
    grads = rules.per_example_grads(model, w, X, t)  # (n, d)
    for method, rule in (("one_sam", logreg.one_sam), ("nsam", logreg.nsam)):
        a = logreg.per_example_weights(w, X, t, 0.4, method=method)
        recon = jnp.mean(a[:, None] * grads, axis=0)
        assert tree_rel_err(recon, rule(w, X, t, 0.4)) <= RTOL, method


def test_one_sam_weight_matches_definition():
    z = jnp.linspace(-30.0, 30.0, 61)
    for C in (0.1, 1.0, 3.0):
        direct = jax.nn.sigmoid(-z + C) / jax.nn.sigmoid(-z)
        np.testing.assert_allclose(logreg.one_sam_weight(z, C), direct, rtol=1e-12)
    # Stable where the naive ratio is 0/0: z = 800 gives sigmoid(-z) = 0 in float64.
    assert np.isclose(float(logreg.one_sam_weight(800.0, 2.0)), np.exp(2.0), rtol=1e-12)


def test_per_example_weight_at_underflowed_sigmoid():
    """Lemma 3.1's weight tends to e^C even where sigmoid(-z) underflows to 0 (z = 1000)."""
    X = jnp.array([[1000.0, 0.0], [0.0, 0.0]])
    t = jnp.array([1.0, 1.0])
    w = jnp.array([1.0, 0.0])
    a = logreg.per_example_weights(w, X, t, 0.005, method="one_sam")  # C = 5 for x_0; x_1 = 0
    np.testing.assert_allclose(a, [np.exp(5.0), 1.0], rtol=1e-12)


@pytest.mark.parametrize("model_name", MODELS)
def test_generic_model_dispatches_to_autodiff(model_name, getkey):
    """A Generic built from a model's f and loss has no closed forms: direction == autodiff, bitwise."""
    from linsam.models import Generic

    model, params, X, t = make_problem(model_name, getkey(), 7, 5, 3)
    generic = Generic(model.apply, model.loss_from_logits, model.num_classes, model.features, model.last_layer)
    for name in rules.METHODS:
        m = make_method(name, 0.3)
        a = rules.direction(m, generic, params, X, t)
        b = m.autodiff(model, params, X, t)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(x, y, err_msg=f"{model_name}/{name}")
        assert tree_rel_err(a, rules.direction(m, model, params, X, t)) <= RTOL, (model_name, name)
