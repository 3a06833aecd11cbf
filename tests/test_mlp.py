"""The ReLU MLP (linsam.models.MLP): closed forms == autodiff for every rule, float64.

Tolerance tier: exact identity (both sides compute the same real number in float64 by
different operation orders; 1e-10 leaves about five orders of margin over the ~1e-15 seen).
The ReLU kink: the data are Gaussian, so no pre-activation is exactly 0 (at theta or at any
1-SAM point); each test asserts it (min |u| well above 0), since at u = 0 the closed forms
and autodiff may legitimately differ.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import rules
from linsam.models import MLP, Generic, MLPParams
from linsam._src.models import mlp as mlp_src

from core_cases import autodiff_direction, closed_direction, make_method, tree_rel_err

RTOL = 1e-10
HIDDEN = [(3,), (4, 3)]
RHOS = [0.05, 0.7, 3.0]


def make_problem(key, hidden, n=7, d=5, scale=1.0, rhos=RHOS):
    """(model, params, X, t) with no pre-activation within 1e-6 of the kink, at theta and at every
    1-SAM point of ``rhos`` (a dead first layer makes a second-layer pre-activation exactly 0:
    such a draw is replaced by the next one, ``fold_in(key, attempt)``; deterministic)."""
    model = MLP(hidden=hidden)
    for attempt in range(50):
        p, X, t = _draw(jax.random.fold_in(key, attempt), scale, model=model, n=n, d=d)
        if all(min_abs_preactivation(model, p, X, t, rho) > 1e-6 for rho in rhos):
            return model, p, X, t
    raise AssertionError("no draw without a pre-activation at the kink")  # pragma: no cover


@functools.partial(jax.jit, static_argnames=("model", "n", "d"))
def _draw(key, scale, *, model, n, d):
    """Gaussian X (n, d), uniform +-1 labels, He-initialised parameters times ``scale`` (compiled once)."""
    kx, kt, kp = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), jnp.float64)
    t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0)
    return model.init(kp, d, scale=scale, dtype=jnp.float64), X, t


def preactivations(p, X):
    """Pre-activations u_l of every layer, rows: examples."""
    out, a = [], X
    for W in p.Ws:
        u = a @ W.T
        out.append(u)
        a = jax.nn.relu(u)
    return out


SAM_FAMILY = ("gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed")


@jax.jit
def _patterns(p, X, t, rho):
    """Pre-activations at theta and at each example's own 1-SAM point theta + eps_i (autodiff
    perturbation): two lists of (n, h_l) arrays."""
    model = MLP(hidden=tuple(W.shape[0] for W in p.Ws))

    def at_point(x, ti):
        pi = rules.tree_add(p, rules.perturbation(model, p, x, ti, rho))
        return [u[0] for u in preactivations(pi, x[None, :])]

    return preactivations(p, X), jax.vmap(at_point)(X, t)


def min_abs_preactivation(model, p, X, t, rho):
    """min |u| over every layer, at theta and at every example's 1-SAM point (the kink guard)."""
    before, after = _patterns(p, X, t, rho)
    return min(float(np.min(np.abs(u))) for u in before + after)


def num_switches(model, p, X, t, rho):
    """Units whose on/off state differs between theta and the example's own 1-SAM point."""
    before, after = _patterns(p, X, t, rho)
    return sum(int(np.sum((np.asarray(b) > 0) != (np.asarray(a) > 0))) for b, a in zip(before, after))


# The two-layer net runs every code path of the closed forms but one: the one-layer branch of
# J-reg's v term. So in CI: every rule on (4, 3), J-reg and 1-SAM on (3,); the rest on (3,) is
# marked slow (the suite's time budget).
CASES = [((4, 3), m) for m in SAM_FAMILY] + [
    ((3,), m) if m in ("jreg", "one_sam") else pytest.param((3,), m, marks=pytest.mark.slow) for m in SAM_FAMILY]


@pytest.mark.parametrize("hidden,method", CASES, ids=lambda v: "h" + "x".join(map(str, v)) if isinstance(v, tuple) else v)
def test_closed_form_equals_autodiff(hidden, method, getkey):
    """One test per rule (each compiles two paths: about 1 s). make_problem guarantees no
    pre-activation at the kink (checked there for every rho)."""
    assert rules.METHOD_CLASSES[method] in MLP(hidden=hidden).closed_forms
    # two moderate-margin trials and one large-margin trial (init scale 3: |f| up to ~20)
    for trial, scale in enumerate((1.0, 1.0, 3.0)):
        model, p, X, t = make_problem(getkey(), hidden, scale=scale)
        for rho in RHOS:
            a = closed_direction(model, method, p, X, t, rho)
            b = autodiff_direction(model, method, p, X, t, rho)
            err = tree_rel_err(a, b)
            assert err <= RTOL, (f"MLP{hidden} closed form vs autodiff differ: method={method} rho={rho} "
                                 f"trial={trial} {getkey!r}: rel err {err:.3e}")


@pytest.mark.parametrize("hidden", [(4, 3), pytest.param((3,), marks=pytest.mark.slow)],
                         ids=lambda h: "h" + "x".join(map(str, h)))
def test_members_equal_generic_autodiff(hidden, getkey):
    """J_i and the 1-SAM point (f', J') equal the Generic model's autodiff members."""
    model, p, X, t = make_problem(getkey(), hidden)
    generic = Generic(model.apply, model.loss_from_logits, None, model.features, model.last_layer)
    np.testing.assert_allclose(jax.jit(model.jacobian_norm)(p, X), jax.jit(generic.jacobian_norm)(p, X), rtol=RTOL)
    np.testing.assert_allclose(jax.jit(model.margins)(p, X, t), jax.jit(generic.margins)(p, X, t), rtol=RTOL)
    point, closed = jax.jit(generic.one_sam_point), jax.jit(model.one_sam_point)
    for rho in RHOS:
        a, b = closed(p, X, t, rho), point(p, X, t, rho)
        np.testing.assert_allclose(a.logits, b.logits, rtol=RTOL, atol=1e-13)
        np.testing.assert_allclose(a.jacobian_norm, b.jacobian_norm, rtol=RTOL)


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: "h" + "x".join(map(str, h)))
def test_units_switch_at_the_perturbed_point(hidden, getkey):
    """Guards the test above: at rho = 0.7 and 3 units do switch on/off at the 1-SAM points, so the
    exact handling of the perturbed activation pattern is exercised."""
    model, p, X, t = make_problem(getkey(), hidden)
    assert num_switches(model, p, X, t, 3.0) > 0
    assert num_switches(model, p, X, t, 0.7) > 0


def test_a_frozen_activation_pattern_is_caught(getkey):
    """The comparison can fail: the 1-SAM logits computed with theta's activation pattern
    (a'_1 = D_1 u'_1 instead of relu(u'_1)) differ from autodiff where units switch."""
    model, p, X, t = make_problem(getkey(), (3,))
    rho = 3.0
    assert num_switches(model, p, X, t, rho) > 0
    q = mlp_src._pass(p, X)
    J = model.jacobian_norm(p, X)
    c = jnp.where(J > 0, rho * t / jnp.where(J > 0, J, 1.0), 0.0)  # eps = 0 where J = 0 (all units off)
    u1p = X @ p.Ws[0].T - (c * jnp.sum(X * X, axis=1))[:, None] * q.deltas[0]
    frozen = jnp.sum((p.v[None, :] - c[:, None] * q.As[1]) * (q.Ds[0] * u1p), axis=1)
    exact = jax.jit(Generic(model.apply, model.loss_from_logits).one_sam_point)(p, X, t, rho).logits
    assert np.max(np.abs(frozen - exact)) > 1e-3
    np.testing.assert_allclose(model.one_sam_point(p, X, t, rho).logits, exact, rtol=RTOL, atol=1e-13)


def test_jsam_equals_jreg_iff_no_unit_switches(getkey):
    """One hidden layer: J-SAM == J-reg exactly where no unit switches (Prop. 4.1 on the active
    units); a switch makes them differ."""
    model, p, X, t = make_problem(getkey(), (3,))
    small = 1e-4
    assert num_switches(model, p, X, t, small) == 0
    a, b = rules.direction(rules.JSAM(small), model, p, X, t), rules.direction(rules.JReg(small), model, p, X, t)
    assert tree_rel_err(a, b) <= RTOL
    big = 3.0
    assert num_switches(model, p, X, t, big) > 0
    a, b = rules.direction(rules.JSAM(big), model, p, X, t), rules.direction(rules.JReg(big), model, p, X, t)
    assert tree_rel_err(a, b) > 1e-3


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: "h" + "x".join(map(str, h)))
def test_rho_zero_is_gd_and_zero_init_is_stationary(hidden, getkey):
    model, p, X, t = make_problem(getkey(), hidden)
    gd = rules.direction(rules.GD(), model, p, X, t)
    for name in ("nsam", "one_sam", "lsam", "jsam", "jreg"):
        assert tree_rel_err(rules.direction(make_method(name, 0.0), model, p, X, t), gd) <= RTOL, name
    zero = model.init(getkey(), X.shape[1], scale=0.0, dtype=jnp.float64)
    np.testing.assert_array_equal(model.jacobian_norm(zero, X), 0.0)
    for name in SAM_FAMILY:
        u = rules.direction(make_method(name, 0.5), model, zero, X, t)
        for leaf in jax.tree_util.tree_leaves(u):
            assert np.all(np.isfinite(leaf)) and np.all(leaf == 0), name  # eps = 0 convention, no NaN


def test_norms_and_features(getkey):
    model, p, X, t = make_problem(getkey(), (4, 3))
    norms = model.norms(p, X)
    a2 = jax.nn.relu(jax.nn.relu(X @ p.Ws[0].T) @ p.Ws[1].T)
    np.testing.assert_allclose(norms["act_norm"], np.mean(np.linalg.norm(a2, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(norms["v_norm"], np.linalg.norm(p.v), rtol=1e-12)
    np.testing.assert_allclose(norms["W_norm"], np.sqrt(sum(np.sum(np.square(W)) for W in p.Ws)), rtol=1e-12)
    np.testing.assert_allclose(model.apply_batch(p, X), a2 @ p.v, rtol=1e-12)
    assert model.end_to_end is None


@pytest.mark.parametrize("hidden", [0, (), (1, 2, 3), (2.5,), (True,), "8", (4, -1)])
def test_bad_hidden_is_refused(hidden):
    with pytest.raises(ValueError, match="hidden"):
        MLP(hidden=hidden)


def test_hidden_forms_and_bad_params(getkey):
    assert MLP(hidden=5) == MLP(hidden=(5,)) == MLP(hidden=[5])
    assert hash(MLP(hidden=[4, 3])) == hash(MLP(hidden=(4, 3)))
    model, p, X, t = make_problem(getkey(), (4, 3))
    with pytest.raises(ValueError, match=r"params.Ws\[1\]"):
        rules.direction(rules.GD(), model, MLPParams(p.v, (p.Ws[0], p.Ws[1].T)), X, t)
    with pytest.raises(ValueError, match="params.Ws"):
        rules.direction(rules.GD(), model, MLPParams(p.v, p.Ws[:1]), X, t)
    with pytest.raises(ValueError, match="params.v"):
        rules.direction(rules.GD(), model, MLPParams(p.v[:2], p.Ws), X, t)
