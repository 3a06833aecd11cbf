"""linsam.optax: the rules as optax transformations equal the rules, and n-SAM equals optax.contrib.sam.

Tolerance tier: exact identity in float64 (the same floating-point operations, or the same
real number by a different operation order: rtol 1e-12).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

optax = pytest.importorskip("optax")

import linsam.optax as lo  # noqa: E402
from linsam import rules  # noqa: E402
from linsam.models import DLN  # noqa: E402

from core_cases import make_problem, tree_rel_err  # noqa: E402


def _optax_loop(tx, params, X, t, steps):
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(None, state, params, batch=(X, t))
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.mark.parametrize("model_name", ["logreg", "dln"])
def test_optax_one_sam_loop_equals_hand_loop(model_name, getkey):
    """optax.chain(linsam.optax.one_sam, optax.sgd) == w <- w - lr * OneSAM(rho).direction(...)."""
    model, params, X, t = make_problem(model_name, getkey(), 9, 4, 3)
    lr, rho, steps = 0.5, 0.3, 20
    ours = _optax_loop(optax.chain(lo.one_sam(rho, model), optax.sgd(lr)), params, X, t, steps)
    hand = params
    for _ in range(steps):
        d = rules.OneSAM(rho).direction(model, hand, X, t)
        hand = jax.tree_util.tree_map(lambda p, u: p - lr * u, hand, d)
    assert tree_rel_err(ours, hand) <= 1e-12
    assert tree_rel_err(ours, params) > 1e-2  # it trained


@pytest.mark.parametrize("name", rules.METHODS)
def test_every_transform_returns_the_rule_direction(name, getkey):
    model, p, X, t = make_problem("dln", getkey(), 7, 5, 3)
    hyper = {"gd": (), "linear_loss": (), "jreg_fixed": (0.3, 0.2)}.get(name, (0.4,))
    tx = getattr(lo, name)(*hyper, model)
    u, _ = tx.update(None, tx.init(p), p, batch=(X, t))
    m = rules.METHOD_CLASSES[name](*hyper)
    assert tree_rel_err(u, m.direction(model, p, X, t)) <= 1e-14
    assert tree_rel_err(lo.from_method(m, model).update(None, None, p, batch=(X, t))[0], u) <= 1e-14


def _optax_sam(lr, rho):
    # optax negates the adversarial optimizer's update, so sgd(rho) on the normalized gradient
    # is an ascent step of size rho: w + rho g/||g||.
    return optax.contrib.sam(
        optimizer=optax.sgd(lr), adv_optimizer=optax.chain(optax.contrib.normalize(), optax.sgd(rho)), sync_period=2
    )


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("model_name", ["logreg", "dln"])
def test_nsam_equals_optax_contrib_sam(model_name, steps, getkey):
    """Outside cross-check: k n-SAM steps == optax.contrib.sam's 2k calls (ascent, then SGD from w)."""
    model, p0, X, t = make_problem(model_name, getkey(), 7, 5, 3)
    lr, rho = 0.1, 0.3
    loss = lambda p: rules.batch_loss(model, p, X, t)  # noqa: E731
    opt = _optax_sam(lr, rho)
    state, params = opt.init(p0), p0
    for _ in range(2 * steps):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    ours = _optax_loop(optax.chain(lo.nsam(rho, model), optax.sgd(lr)), p0, X, t, steps)
    assert tree_rel_err(params, ours) <= 1e-12
    gd = _optax_loop(optax.chain(lo.gd(model), optax.sgd(lr)), p0, X, t, steps)
    assert tree_rel_err(params, gd) > 1e-6  # and it is not plain SGD


def test_update_without_batch_is_refused(getkey):
    model, w, X, t = make_problem("logreg", getkey(), 5, 3, 1)
    tx = lo.one_sam(0.1, model)
    with pytest.raises(ValueError, match=r"needs params and the batch: tx.update\(None, state, params, batch=\(X, t\)\)"):
        tx.update(None, tx.init(w), w)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        lo.one_sam(-1.0, model)
    with pytest.raises(ValueError, match="method must be a linsam.rules method value"):
        lo.from_method("one_sam", model)


def test_checked_transform_raises_under_jit(getkey):
    """The checked mode reaches through optax: a NaN batch inside jit raises instead of training on NaN."""
    model, p, X, t = make_problem("dln", getkey(), 5, 3, 2)
    tx = lo.one_sam(0.2, DLN(), checked=True)
    step = rules.checked(lambda p, X: tx.update(None, optax.EmptyState(), p, batch=(X, t))[0])
    assert tree_rel_err(step(p, X), rules.OneSAM(0.2).direction(model, p, X, t)) <= 1e-14
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        step(p, X.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="X contains 1 NaN"):  # concrete (no jit): the entry's value checks see it
        lo.one_sam(0.2, DLN()).update(None, None, p, batch=(X.at[0, 0].set(jnp.nan), t))
