"""Never NaN silently (issue 14 item 6) and one error rule for rho and X (item 7).

Each test failed before the fix: no checked mode existed (jit returned NaN or a different
direction); the DLN closed forms returned NaN for huge finite X; per_example_weights returned
inf; rho=None / rho=[1, 2] raised a TypeError not naming rho; rules.one_sam accepted integer X.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import logreg, rules
from linsam.models import DLN, DLNParams, Generic, LogReg

from core_cases import make_problem


# ----------------------------------------------------------------------------- checked mode


@pytest.mark.parametrize("rho, match", [(float("nan"), "rho must be a finite number >= 0"),
                                        (float("inf"), "rho must be a finite number >= 0"),
                                        (-0.5, "rho must be a finite number >= 0")])
def test_checked_mode_refuses_bad_rho_inside_jit(rho, match, getkey):
    model, p, X, t = make_problem("dln", getkey(), 6, 3, 2)
    run = lambda r: rules.OneSAM(r).direction(model, p, X, t, checked=True)  # noqa: E731
    with pytest.raises(ValueError, match=match):
        rules.checked(run)(rho)
    # the unchecked traced call says nothing (what the checked mode is for)
    jax.jit(lambda r: rules.OneSAM(r).direction(model, p, X, t))(rho)
    # a good rho passes and gives the plain direction
    np.testing.assert_array_equal(rules.checked(run)(0.3).W, rules.OneSAM(0.3).direction(model, p, X, t).W)


def test_checked_mode_refuses_nan_inputs_and_bad_labels_inside_jit(getkey):
    model, w, X, t = make_problem("logreg", getkey(), 6, 3, 1)
    run = rules.checked(lambda w, X, t: rules.NSAM(0.2).direction(model, w, X, t, checked=True))
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        run(w, X.at[1, 1].set(jnp.nan), t)
    with pytest.raises(ValueError, match="params contain NaN or inf"):
        run(w.at[0].set(jnp.nan), X, t)
    with pytest.raises(ValueError, match=r"t \(binary labels\) must be -1 or \+1"):
        run(w, X, t.at[0].set(0.0))
    assert np.all(np.isfinite(run(w, X, t)))


def test_checked_mode_reports_an_overflowing_direction(getkey):
    """A direction that is not representable (inf) is an error in checked mode, not a silent inf."""
    model, w, X, t = make_problem("logreg", getkey(), 4, 3, 1)
    big = jnp.full_like(X, 1e308) * jnp.where(t > 0, -1.0, 1.0)[:, None]  # every example misclassified
    run = rules.checked(lambda X: rules.GD().direction(model, jnp.ones(3), X, t, checked=True))
    with pytest.raises(ValueError, match="the gd direction is not finite"):
        run(big)


# ----------------------------------------------------------------------------- overflow


@pytest.mark.parametrize("dtype, scale", [(jnp.float64, 1e160), pytest.param(jnp.float32, 1e20, marks=pytest.mark.slow)])
def test_dln_closed_forms_finite_for_huge_finite_inputs(dtype, scale, getkey):
    """||x||^2 overflows the dtype but the rules, J and the 1-SAM point stay finite (scaled norms)."""
    model, p, X, t = make_problem("dln", getkey(), 6, 4, 3, dtype=dtype)
    X = X * jnp.asarray(scale, dtype)
    assert not np.isfinite(np.asarray(jnp.sum(X * X, axis=1))).all()  # the naive square overflows
    p = DLNParams(p.v * 1e-3, p.W * jnp.asarray(1.0 / scale, dtype))  # moderate logits
    for name, cls in rules.METHOD_CLASSES.items():
        m = cls() if name in ("gd", "linear_loss") else cls(0.0, 0.0) if name == "jreg_fixed" else cls(0.3)
        for leaf in jax.tree_util.tree_leaves(rules.direction(m, model, p, X, t)):
            assert np.all(np.isfinite(leaf)), f"{name} {dtype.__name__}"
    J = model.jacobian_norm(p, X)
    sp = model.one_sam_point(p, X, t, 0.3)
    assert np.all(np.isfinite(J)) and np.all(np.isfinite(sp.logits)) and np.all(np.isfinite(sp.jacobian_norm))
    np.testing.assert_allclose(J / scale, model.jacobian_norm(p, X / scale), rtol=1e-5 if dtype == jnp.float32 else 1e-12)


def test_per_example_weights_name_the_overflow_limit(getkey):
    model, w, X, t = make_problem("logreg", getkey(), 6, 3, 1)
    with pytest.raises(ValueError, match=r"per-example weights overflow float64: .*log\(float max\) = 709.8"):
        logreg.per_example_weights(w, X * 1e3, t, 1.0)
    log_a = logreg.per_example_weights(w, X * 1e3, t, 1.0, log=True)
    assert np.all(np.isfinite(log_a)) and float(jnp.max(log_a)) > 709.8
    np.testing.assert_allclose(jnp.exp(logreg.per_example_weights(w, X, t, 1.0, log=True)),
                               logreg.per_example_weights(w, X, t, 1.0), rtol=1e-14)


# ----------------------------------------------------------------------------- rho and X errors


@pytest.mark.parametrize("bad", [None, [1, 2], "0.1"])
def test_bad_rho_types_name_rho(bad, getkey):
    model, w, X, t = make_problem("logreg", getkey(), 4, 3, 1)
    for call in (lambda: logreg.one_sam(w, X, t, bad),
                 lambda: rules.one_sam(model, w, X, t, bad),
                 lambda: rules.method("one_sam", rho=bad),
                 lambda: rules.OneSAM(bad)):
        with pytest.raises(ValueError, match=r"^rho must be a real number"):
            call()


def test_one_dtype_rule_for_integer_X(getkey):
    """Integer X is refused by the closed-form face, the generic rules and a Generic model alike."""
    model, w, X, t = make_problem("logreg", getkey(), 4, 3, 1)
    Xi = jnp.round(X * 3).astype(jnp.int32)
    generic = Generic(LogReg().apply, rules.binary_logistic_loss)
    for call in (lambda: logreg.one_sam(w, Xi, t, 0.1),
                 lambda: rules.one_sam(model, w, Xi, t, 0.1),
                 lambda: rules.one_sam(generic, w, Xi, t, 0.1),
                 lambda: rules.direction(rules.GD(), DLN(), DLNParams(jnp.ones(2), jnp.ones((2, 3))), Xi, t)):
        with pytest.raises(ValueError, match="X must be a floating-point array, got dtype int32"):
            call()
