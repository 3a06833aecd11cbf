"""linsam.grad and the transformations under optax's wrappers and schedules, and the trace-time input checks.

Tolerance tier: exact identity in float64 (the same real number, possibly another operation
order: rtol 1e-12), except where a difference is the point (n-SAM accumulated is not n-SAM).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linsam
import linsam.optax as lo
from linsam import rules
from linsam.models import Generic, LogReg, Softmax

from core_cases import make_problem, tree_rel_err


def test_grad_is_the_rule_direction_under_jit(getkey):
    model, p, X, t = make_problem("dln", getkey(), 8, 4, 3)
    for m in (rules.OneSAM(0.3), rules.NSAM(0.3), rules.JSAM(0.2, chunk_size=3)):
        u = jax.jit(linsam.grad(m, model))(p, (X, t))
        assert jax.tree.structure(u) == jax.tree.structure(p)
        assert tree_rel_err(u, m.direction(model, p, X, t)) <= 1e-14
    assert linsam.grad is lo.grad


def test_inject_hyperparams_follows_a_rho_schedule(getkey):
    """optax.inject_hyperparams(one_sam)(rho=schedule, model=model): step k uses rho = schedule(k)."""
    model, p, X, t = make_problem("dln", getkey(), 9, 4, 3)
    lr, steps = 0.3, 6
    schedule = optax.linear_schedule(0.0, 0.5, transition_steps=5)
    tx = optax.chain(optax.inject_hyperparams(lo.one_sam)(rho=schedule, model=model), optax.sgd(lr))
    state = tx.init(p)

    @jax.jit
    def step(p, state):
        u, state = tx.update(None, state, p, batch=(X, t))
        return optax.apply_updates(p, u), state

    ours, hand, seen = p, p, []
    for k in range(steps):
        ours, state = step(ours, state)
        seen.append(float(state[0].hyperparams["rho"]))  # the rho step k used
        d = rules.OneSAM(seen[-1]).direction(model, hand, X, t)
        hand = jax.tree.map(lambda a, b: a - lr * b, hand, d)
    np.testing.assert_allclose(seen, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)  # the schedule is float32
    assert tree_rel_err(ours, hand) <= 1e-12
    # a constant rho == the plain transformation's; a chunk size is a static argument
    tx2 = optax.inject_hyperparams(lo.one_sam, static_args=("chunk_size",))(rho=0.2, model=model, chunk_size=4)
    u2, _ = tx2.update(None, tx2.init(p), p, batch=(X, t))
    assert tree_rel_err(u2, rules.OneSAM(0.2).direction(model, p, X, t)) <= 1e-12
    with pytest.raises(ValueError, match="static_args=\\('chunk_size',\\)"):
        optax.inject_hyperparams(lo.one_sam)(rho=0.2, model=model, chunk_size=4).init(p)


def _accumulated(method, model, p, X, t, k, lr):
    """The update of optax.MultiSteps(sgd(lr), k) after k micro-batches of linsam.grad directions."""
    sam_grad = linsam.grad(method, model)
    opt = optax.MultiSteps(optax.sgd(lr), every_k_schedule=k, accumulator_dtype=jnp.float64)  # default: float32
    state = opt.init(p)
    for Xb, tb in zip(jnp.split(X, k), jnp.split(t, k)):
        u, state = opt.update(sam_grad(p, (Xb, tb)), state, p)
    return u


@pytest.mark.parametrize("name", ["gd", "one_sam", "lsam", "jsam", "jreg"])
def test_multisteps_of_a_per_example_rule_is_the_full_batch_direction(name, getkey):
    """Per-example rules are a mean of one-example terms: k equal micro-batches give the union's direction."""
    model, p, X, t = make_problem("dln", getkey(), 12, 4, 3)
    m, lr = rules.method(name, rho=0.4, ignore_extra=True), 0.5
    u = _accumulated(m, model, p, X, t, 4, lr)
    full = jax.tree.map(lambda a: -lr * a, m.direction(model, p, X, t))
    assert tree_rel_err(u, full) <= 1e-12


def test_multisteps_of_nsam_is_the_mean_of_micro_batch_steps_not_nsam(getkey):
    """n-SAM's perturbation uses its batch's gradient: accumulated n-SAM is m-sharpness with m = n/k."""
    model, p, X, t = make_problem("dln", getkey(), 12, 4, 3)
    m, lr, k = rules.NSAM(0.4), 0.5, 4
    u = _accumulated(m, model, p, X, t, k, lr)
    parts = [m.direction(model, p, Xb, tb) for Xb, tb in zip(jnp.split(X, k), jnp.split(t, k))]
    mean = jax.tree.map(lambda *a: -lr * sum(a) / k, *parts)
    assert tree_rel_err(u, mean) <= 1e-12
    full = jax.tree.map(lambda a: -lr * a, m.direction(model, p, X, t))
    assert tree_rel_err(u, full) > 1e-3


def test_clipping_sees_the_direction_and_clipping_before_is_refused(getkey):
    model, p, X, t = make_problem("logreg", getkey(), 10, 5, 1, margin_scale=0.0)
    d = rules.OneSAM(0.5).direction(model, p, X, t)
    c = 0.5 * float(optax.tree.norm(d))
    tx = optax.chain(lo.one_sam(0.5, model), optax.clip_by_global_norm(c), optax.sgd(1.0))
    u, _ = tx.update(None, tx.init(p), p, batch=(X, t))
    np.testing.assert_allclose(float(optax.tree.norm(u)), c, rtol=1e-12)
    clip_sgd = optax.chain(optax.clip_by_global_norm(c), optax.sgd(1.0))
    u2, _ = clip_sgd.update(linsam.grad(rules.OneSAM(0.5), model)(p, (X, t)), clip_sgd.init(p), p)
    assert tree_rel_err(u, u2) <= 1e-14
    before = optax.chain(optax.clip_by_global_norm(c), lo.one_sam(0.5, model))
    with pytest.raises(ValueError, match="would discard the incoming updates"):
        before.update(jax.grad(model.loss)(p, X, t), before.init(p), p, batch=(X, t))


def test_apply_if_finite_sees_the_direction(getkey):
    model, p, X, t = make_problem("logreg", getkey(), 6, 3, 1)
    sam_grad = linsam.grad(rules.OneSAM(0.3), model)
    opt = optax.apply_if_finite(optax.sgd(1.0), max_consecutive_errors=3)

    @jax.jit
    def step(p, state, X):
        return opt.update(sam_grad(p, (X, t)), state, p)

    u, state = step(p, opt.init(p), X)
    assert int(state.notfinite_count) == 0 and float(jnp.abs(u).max()) > 0
    bad = X.at[0, 0].set(jnp.nan)  # traced: the value checks cannot see it; apply_if_finite does
    u, state = step(p, state, bad)
    assert int(state.notfinite_count) == 1 and float(jnp.abs(u).max()) == 0.0


# ----------------------------------------------------------------------------- bad input


def _entries(model, p, m):
    """Every public entry, as f(X, t): the validated rule, linsam.grad, the optax transformation."""
    tx = lo.from_method(m, model)
    return {
        "rules.direction": lambda X, t: rules.direction(m, model, p, X, t),
        "method.direction": lambda X, t: m.direction(model, p, X, t),
        "linsam.grad": lambda X, t: linsam.grad(m, model)(p, (X, t)),
        "linsam.optax": lambda X, t: tx.update(None, tx.init(p), p, batch=(X, t)),
        "linsam.grad under jit": lambda X, t: jax.jit(linsam.grad(m, model))(p, (X, t)),
    }


TRACE_TIME = ("rules.direction", "method.direction", "linsam.grad", "linsam.optax", "linsam.grad under jit")
CONCRETE = ("rules.direction", "linsam.grad", "linsam.optax")


@pytest.mark.parametrize("case", ["integer X", "bool t", "float class ids", "0/1 labels", "class id 10",
                                  "class id -1"])
def test_bad_input_is_refused_naming_the_argument(case):
    X = jnp.ones((4, 3))
    if case in ("integer X", "bool t", "0/1 labels"):
        model, p, t = LogReg(), jnp.zeros(3), jnp.array([1.0, -1.0, 1.0, -1.0])
    else:
        model, p, t = Softmax(10), jnp.zeros((10, 3)), jnp.array([0, 3, 9, 2])
    bad_X, bad_t, pattern, where = X, t, None, TRACE_TIME
    if case == "integer X":
        bad_X, pattern = jnp.ones((4, 3), jnp.int32), "X must be a floating-point array, got dtype int32"
    elif case == "bool t":
        bad_t, pattern = jnp.array([True, False, True, True]), r"t \(binary labels\) must be -1 or \+1 .*dtype bool"
    elif case == "float class ids":
        bad_t, pattern = t.astype(jnp.float64), r"t \(class ids\) must be integers in \[0, 10\), got dtype float64"
    elif case == "0/1 labels":
        bad_t, pattern, where = jnp.array([1.0, 0.0, 1.0, 0.0]), r"t \(binary labels\) must be -1 or \+1", CONCRETE
    else:
        bad = 10 if case == "class id 10" else -1
        bad_t, pattern, where = t.at[0].set(bad), r"t \(class ids\) must be in \[0, 10\)", CONCRETE
    entries = _entries(model, p, rules.OneSAM(0.1))
    for name in where:
        with pytest.raises(ValueError, match=pattern):
            entries[name](bad_X, bad_t)
    for name in entries:  # and the good input passes every entry
        entries[name](X, t)


def test_traced_label_values_and_rho_are_caught_under_checked():
    model, p, X = LogReg(), jnp.zeros(3), jnp.ones((4, 3))

    def step(t, rho):
        return linsam.grad(rules.OneSAM(rho), model, checked=True)(p, (X, t))

    run = rules.checked(step)
    run(jnp.array([1.0, -1.0, 1.0, -1.0]), 0.1)
    with pytest.raises(ValueError, match=r"t \(binary labels\) must be -1 or \+1"):
        run(jnp.array([1.0, 0.0, 1.0, 0.0]), 0.1)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        run(jnp.array([1.0, -1.0, 1.0, -1.0]), -1.0)
    soft = Softmax(10)
    run_k = rules.checked(lambda t: lo.from_method(rules.OneSAM(0.1), soft, checked=True).update(
        None, optax.EmptyState(), jnp.zeros((10, 3)), batch=(X, t))[0])
    with pytest.raises(ValueError, match=r"t \(class ids\) must be in \[0, 10\)"):
        run_k(jnp.array([0, 10, 1, 2]))


def test_negative_rho_is_refused_on_every_entry():
    model = LogReg()
    with pytest.raises(ValueError, match="rho must be a finite number >= 0, got -1"):
        lo.one_sam(-1.0, model)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        linsam.grad(rules.OneSAM(-1.0), model)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        optax.inject_hyperparams(lo.one_sam)(rho=-1.0, model=model).init(jnp.zeros(3))


def test_jreg_fixed_refuses_a_model_without_features_or_last_layer():
    gen = Generic(apply=lambda w, x: jnp.dot(w, x), loss_from_logits=rules.binary_logistic_loss)
    p, X, t = jnp.zeros(3), jnp.ones((4, 3)), jnp.array([1.0, -1.0, 1.0, -1.0])
    m = rules.JRegFixed(0.1, 0.1)
    for call in (lambda: m.direction(gen, p, X, t), lambda: linsam.grad(m, gen)(p, (X, t)),
                 lambda: lo.jreg_fixed(0.1, 0.1, gen).update(None, optax.EmptyState(), p, batch=(X, t))):
        with pytest.raises(ValueError, match="jreg_fixed needs the model's last_layer"):
            call()
    with_last = Generic(apply=gen.apply, loss_from_logits=gen.loss_from_logits, last_layer=lambda w: w)
    u = m.direction(with_last, p + 1.0, X, t)
    assert tree_rel_err(u, rules.GD().direction(with_last, p + 1.0, X, t)) > 1e-3  # the penalty acts
