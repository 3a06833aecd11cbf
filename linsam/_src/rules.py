r"""Generic, model-agnostic SAM-family update rules built only from ``f`` and the loss.

Every rule returns the *update direction* :math:`u` (the optimizer applies
:math:`\theta \leftarrow \theta - \eta\, u`), a pytree shaped like ``params``.

Notation: per-example loss :math:`\ell_i(\theta) = \ell(f(\theta, x_i), t_i)`, logit scale
:math:`r_i(\theta) = \partial \ell / \partial f\,(f(\theta, x_i), t_i)` (binary:
:math:`-t_i\,\sigma(-t_i f)`; softmax: :math:`p_i - e_{t_i}`), Jacobian
:math:`J_i(\theta) = \partial f(\theta, x_i)/\partial\theta`, so
:math:`\nabla \ell_i = J_i^\top r_i`.

.. math::

    \epsilon_i &= \rho\, \nabla\ell_i(\theta) / \|\nabla\ell_i(\theta)\|
        \quad (\epsilon_i = 0 \text{ where } \nabla\ell_i = 0) \\
    u_{\mathrm{1\text{-}SAM}} &= \tfrac1n \textstyle\sum_i \nabla\ell_i(\theta + \epsilon_i) \\
    u_{\mathrm{L\text{-}SAM}} &= \tfrac1n \textstyle\sum_i J_i(\theta)^\top r_i(\theta + \epsilon_i) \\
    u_{\mathrm{J\text{-}SAM}} &= \tfrac1n \textstyle\sum_i J_i(\theta + \epsilon_i)^\top r_i(\theta) \\
    u_{\mathrm{n\text{-}SAM}} &= \nabla L(\theta + \rho\, g/\|g\|), \quad g = \nabla L(\theta) \\
    u_{\mathrm{J\text{-}reg}} &= \nabla_\theta \tfrac1n \textstyle\sum_i \big[\ell_i(\theta)
        + \rho\, \| J_i(\theta)^\top \mathrm{sg}(r_i(\theta)) \| \big]

``J-reg`` is the explicit regulariser that J-SAM induces to first order in :math:`\rho`
(Proposition 4.1 of Baek et al., ICLR 2024); for the 2-layer deep linear network it equals
J-SAM exactly. ``jreg_fixed`` is the cheap practitioner's variant with fixed coefficients,

.. math::

    u = \nabla_\theta \Big[ L(\theta) + \tfrac{\lambda_{\mathrm{last}}}{2}\|\theta_{\mathrm{last}}\|^2
        + \tfrac{\lambda_{\mathrm{act}}}{2}\, \tfrac1n \textstyle\sum_i \|\phi(\theta, x_i)\|^2 \Big],

with :math:`\theta_{\mathrm{last}}` the last-layer weights and :math:`\phi` the penultimate
activations (``Model.last_layer`` and ``Model.features``).

Zero-gradient convention: where :math:`\|\nabla\ell_i\| = 0` (or :math:`\|g\| = 0` for
n-SAM) the perturbation is :math:`\epsilon = 0`, so the rule reduces to GD there; no NaN or
inf is produced. Normalisation is scaled (divide by the max-abs entry first), so a tiny but
non-zero gradient still gives a unit direction instead of underflowing to zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import validate

Params = Any
Array = jax.Array

METHODS = ("gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed")
#: Methods whose direction needs a perturbation radius rho.
SAM_METHODS = ("nsam", "one_sam", "lsam", "jsam", "jreg")


def binary_logistic_loss(logit: Array, t: Array) -> Array:
    r"""Binary logistic loss :math:`\ell = -\log\sigma(t f) = \mathrm{softplus}(-t f)`, t in {-1, +1}."""
    return jax.nn.softplus(-t * logit)


def softmax_cross_entropy(logits: Array, t: Array) -> Array:
    r"""Softmax cross-entropy :math:`\ell = \log\sum_k e^{f_k} - f_t` for one example, t an int class id."""
    return jax.nn.logsumexp(logits) - jnp.take(logits, t)


class Model(NamedTuple):
    """A model as the rules see it.

    Attributes:
      apply: ``apply(params, x) -> logits`` for ONE example; a scalar for binary models,
        shape (K,) for K-class models.
      loss_from_logits: ``(logits, t) -> scalar`` per-example loss.
      num_classes: None for binary (labels in {-1, +1}), else K (labels int in [0, K)).
      features: ``features(params, x) -> array``, penultimate activations (for ``jreg_fixed``).
      last_layer: ``last_layer(params) -> pytree`` of last-layer weights (for ``jreg_fixed``).
      apply_batch: ``apply_batch(params, X) -> (n,) or (n, K)``; default ``vmap(apply)``.
        Only ``gd``/``nsam`` use it (so batch-coupled layers such as BatchNorm can be used there).
    """

    apply: Callable
    loss_from_logits: Callable
    num_classes: int | None = None
    features: Callable | None = None
    last_layer: Callable | None = None
    apply_batch: Callable | None = None


# ----------------------------------------------------------------------------- pytree helpers


def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def tree_scale(c, a):
    return jax.tree_util.tree_map(lambda x: c * x, a)


def _tree_maxabs(a):
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(a)]))


def safe_norm(a) -> Array:
    r"""Euclidean norm of a pytree, scaled against underflow; differentiable, gradient 0 at 0.

    Computed as :math:`m \|a/m\|` with :math:`m = \mathrm{sg}(\max|a|)`, so the gradient is
    :math:`a/\|a\|` where :math:`a \ne 0` and 0 (not NaN) at :math:`a = 0`.
    """
    m = jax.lax.stop_gradient(_tree_maxabs(a))
    nonzero = m > 0
    m_safe = jnp.where(nonzero, m, 1.0)
    sq = sum(jnp.sum(jnp.square(x / m_safe)) for x in jax.tree_util.tree_leaves(a))
    sq_safe = jnp.where(nonzero, sq, 1.0)
    return jnp.where(nonzero, m_safe * jnp.sqrt(sq_safe), 0.0)


def safe_normalize(a):
    r"""Unit direction :math:`a/\|a\|` of a pytree; exactly 0 where :math:`a = 0` (the eps = 0 convention)."""
    m = _tree_maxabs(a)
    nonzero = m > 0
    m_safe = jnp.where(nonzero, m, 1.0)
    u = jax.tree_util.tree_map(lambda x: x / m_safe, a)
    nrm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(u)))
    nrm_safe = jnp.where(nonzero, nrm, 1.0)
    return jax.tree_util.tree_map(lambda x: jnp.where(nonzero, x / nrm_safe, jnp.zeros_like(x)), u)


# ----------------------------------------------------------------------------- building blocks


def example_loss(model: Model, params: Params, x: Array, t: Array) -> Array:
    """Per-example loss l(f(params, x), t)."""
    return model.loss_from_logits(model.apply(params, x), t)


def _batch_logits(model: Model, params: Params, X: Array) -> Array:
    if model.apply_batch is not None:
        return model.apply_batch(params, X)
    return jax.vmap(model.apply, in_axes=(None, 0))(params, X)


def batch_loss(model: Model, params: Params, X: Array, t: Array) -> Array:
    """Mean loss L(params) over the batch."""
    logits = _batch_logits(model, params, X)
    return jnp.mean(jax.vmap(model.loss_from_logits)(logits, t))


def _logit_scale(model: Model, logits: Array, t: Array) -> Array:
    """dl/dlogits at the given logits (binary: -t sigmoid(-t f); softmax: p - e_t)."""
    return jax.grad(model.loss_from_logits)(logits, t)


def _vjp_apply(model: Model, params: Params, x: Array, cotangent: Array):
    """J(params)^T cotangent for one example."""
    _, pullback = jax.vjp(lambda p: model.apply(p, x), params)
    return pullback(cotangent)[0]


def _perturbation(model: Model, params: Params, x: Array, t: Array, rho) -> Params:
    g = jax.grad(example_loss, argnums=1)(model, params, x, t)
    return tree_scale(rho, safe_normalize(g))


def _one_sam_example(model, params, x, t, rho):
    eps = _perturbation(model, params, x, t, rho)
    return jax.grad(example_loss, argnums=1)(model, tree_add(params, eps), x, t)


def _lsam_example(model, params, x, t, rho):
    eps = _perturbation(model, params, x, t, rho)
    r = _logit_scale(model, model.apply(tree_add(params, eps), x), t)
    return _vjp_apply(model, params, x, r)


def _jsam_example(model, params, x, t, rho):
    eps = _perturbation(model, params, x, t, rho)
    r = _logit_scale(model, model.apply(params, x), t)
    return _vjp_apply(model, tree_add(params, eps), x, r)


def jacobian_penalty(model: Model, params: Params, x: Array, t: Array, rho) -> Array:
    r"""Per-example J-reg penalty :math:`\rho\,\|J(\theta)^\top \mathrm{sg}(r(\theta))\|`."""
    r = jax.lax.stop_gradient(_logit_scale(model, model.apply(params, x), t))
    jt_r = jax.grad(lambda p: jnp.sum(r * model.apply(p, x)))(params)
    return rho * safe_norm(jt_r)


def _jreg_example(model, params, x, t, rho):
    return jax.grad(lambda p: example_loss(model, p, x, t) + jacobian_penalty(model, p, x, t, rho))(params)


def _mean_over_examples(fn: Callable, X: Array, t: Array, chunk_size: int | None):
    """mean_i fn(x_i, t_i) through vmap, or chunks of vmap through lax.map (memory-bounded)."""
    n = X.shape[0]
    if chunk_size is None or chunk_size >= n:
        out = jax.vmap(fn)(X, t)
        return jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), out)
    c = int(chunk_size)
    m = -(-n // c)
    pad = m * c - n
    # Pad by repeating the last example with weight 0 (never NaN: a real example).
    Xp = jnp.concatenate([X, jnp.repeat(X[-1:], pad, axis=0)]) if pad else X
    tp = jnp.concatenate([t, jnp.repeat(t[-1:], pad, axis=0)]) if pad else t
    wts = jnp.concatenate([jnp.ones((n,), X.dtype), jnp.zeros((pad,), X.dtype)])

    def chunk(args):
        Xc, tc, wc = args
        out = jax.vmap(fn)(Xc, tc)
        return jax.tree_util.tree_map(lambda a: jnp.tensordot(wc.astype(a.dtype), a, axes=1), out)

    sums = jax.lax.map(chunk, (Xp.reshape((m, c) + X.shape[1:]), tp.reshape((m, c)), wts.reshape((m, c))))
    return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0) / n, sums)


# ----------------------------------------------------------------------------- kernels (no validation)


@functools.partial(jax.jit, static_argnames=("model",))
def _gd(model, params, X, t):
    return jax.grad(batch_loss, argnums=1)(model, params, X, t)


@functools.partial(jax.jit, static_argnames=("model",))
def _nsam(model, params, X, t, rho):
    g = _gd(model, params, X, t)
    eps = tree_scale(rho, safe_normalize(g))
    return _gd(model, tree_add(params, eps), X, t)


def _per_example_rule(example_fn):
    @functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
    def kernel(model, params, X, t, rho, chunk_size=None):
        return _mean_over_examples(lambda x, ti: example_fn(model, params, x, ti, rho), X, t, chunk_size)

    return kernel


_one_sam = _per_example_rule(_one_sam_example)
_lsam = _per_example_rule(_lsam_example)
_jsam = _per_example_rule(_jsam_example)
_jreg = _per_example_rule(_jreg_example)


@functools.partial(jax.jit, static_argnames=("model",))
def _jreg_fixed(model, params, X, t, lam_last, lam_act):
    def objective(p):
        total = batch_loss(model, p, X, t)
        if model.last_layer is not None:
            total = total + 0.5 * lam_last * sum(
                jnp.sum(jnp.square(w)) for w in jax.tree_util.tree_leaves(model.last_layer(p))
            )
        if model.features is not None:
            feats = jax.vmap(model.features, in_axes=(None, 0))(p, X)
            total = total + 0.5 * lam_act * jnp.sum(jnp.square(feats)) / X.shape[0]
        return total

    return jax.grad(objective)(params)


@functools.partial(jax.jit, static_argnames=("model",))
def per_example_grads(model: Model, params: Params, X: Array, t: Array):
    """Per-example gradients grad l_i(params), a pytree with leading axis n."""
    return jax.vmap(jax.grad(example_loss, argnums=1), in_axes=(None, None, 0, 0))(model, params, X, t)


# ----------------------------------------------------------------------------- public, validated


def _validate(model: Model, params, X, t, rho=None):
    X_shape = np.shape(X)
    if len(X_shape) < 2 or X_shape[0] < 1:
        raise ValueError(f"X must have shape (n, ...) with n >= 1 examples, got shape {X_shape}")
    n = int(X_shape[0])
    validate.check_finite(X, "X")
    validate.check_finite(params, "params")
    if model.num_classes is None:
        validate.check_binary_labels(t, n)
    else:
        validate.check_class_labels(t, n, model.num_classes)
    if rho is not None:
        validate.check_rho(rho)


def gd(model: Model, params: Params, X: Array, t: Array):
    r"""(S)GD direction :math:`\nabla L(\theta) = \frac1n\sum_i \nabla \ell_i(\theta)`."""
    _validate(model, params, X, t)
    return _gd(model, params, X, t)


def nsam(model: Model, params: Params, X: Array, t: Array, rho):
    r"""n-SAM: :math:`\nabla L(\theta + \rho g/\|g\|)`, one perturbation for the batch (0 if g = 0)."""
    _validate(model, params, X, t, rho)
    return _nsam(model, params, X, t, rho)


def one_sam(model: Model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""1-SAM: :math:`\frac1n\sum_i \nabla\ell_i(\theta + \epsilon_i)`, :math:`\epsilon_i = \rho\nabla\ell_i/\|\nabla\ell_i\|`."""
    _validate(model, params, X, t, rho)
    validate.check_chunk_size(chunk_size, np.shape(X)[0])
    return _one_sam(model, params, X, t, rho, chunk_size=chunk_size)


def lsam(model: Model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""L-SAM: logit scale at :math:`\theta+\epsilon_i`, Jacobian at :math:`\theta`."""
    _validate(model, params, X, t, rho)
    validate.check_chunk_size(chunk_size, np.shape(X)[0])
    return _lsam(model, params, X, t, rho, chunk_size=chunk_size)


def jsam(model: Model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""J-SAM: logit scale at :math:`\theta`, Jacobian at :math:`\theta+\epsilon_i`."""
    _validate(model, params, X, t, rho)
    validate.check_chunk_size(chunk_size, np.shape(X)[0])
    return _jsam(model, params, X, t, rho, chunk_size=chunk_size)


def jreg(model: Model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""J-reg: GD on :math:`L + \frac{\rho}{n}\sum_i \|J_i^\top \mathrm{sg}(r_i)\|` (Prop. 4.1's penalty)."""
    _validate(model, params, X, t, rho)
    validate.check_chunk_size(chunk_size, np.shape(X)[0])
    return _jreg(model, params, X, t, rho, chunk_size=chunk_size)


def jreg_fixed(model: Model, params: Params, X: Array, t: Array, *, lam_last, lam_act):
    r"""GD plus fixed last-layer weight decay and penultimate-activation penalty (see module doc)."""
    _validate(model, params, X, t)
    validate.check_nonnegative(lam_last, "lam_last")
    validate.check_nonnegative(lam_act, "lam_act")
    return _jreg_fixed(model, params, X, t, lam_last, lam_act)


def direction(
    method: str,
    model: Model,
    params: Params,
    X: Array,
    t: Array,
    *,
    rho=0.0,
    lam_last=0.0,
    lam_act=0.0,
    chunk_size: int | None = None,
):
    """Dispatch by method name (one of :data:`METHODS`), validating the inputs first."""
    validate.check_method(method, METHODS)
    _validate(model, params, X, t, rho if method in SAM_METHODS else None)
    if method == "jreg_fixed":
        validate.check_nonnegative(lam_last, "lam_last")
        validate.check_nonnegative(lam_act, "lam_act")
    validate.check_chunk_size(chunk_size, np.shape(X)[0])
    return unvalidated_direction(
        method, model, params, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act, chunk_size=chunk_size
    )


def unvalidated_direction(method: str, model: Model, params, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0, chunk_size=None):
    """Same as :func:`direction` without input checks, for hot loops inside jit/scan."""
    if method == "gd":
        return _gd(model, params, X, t)
    if method == "nsam":
        return _nsam(model, params, X, t, rho)
    if method == "jreg_fixed":
        return _jreg_fixed(model, params, X, t, lam_last, lam_act)
    kernel = {"one_sam": _one_sam, "lsam": _lsam, "jsam": _jsam, "jreg": _jreg}[method]
    return kernel(model, params, X, t, rho, chunk_size=chunk_size)


def dispatch(rules: dict, method: str, params, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0):
    """Call a closed-form module's validated rule by name (shared by logreg, softmax, dln)."""
    validate.check_method(method, METHODS)
    if method == "gd":
        return rules["gd"](params, X, t)
    if method == "jreg_fixed":
        return rules["jreg_fixed"](params, X, t, lam_last=lam_last, lam_act=lam_act)
    return rules[method](params, X, t, rho)


def dispatch_kernel(kernels: dict, method: str, params, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0):
    """Call a closed-form module's unvalidated kernel by name (for scan loops and vmap sweeps).

    ``method`` must be a Python string (static); ``rho`` and the lambdas may be traced.
    """
    if method == "gd":
        return kernels["gd"](params, X, t)
    if method == "jreg_fixed":
        return kernels["jreg_fixed"](params, X, t, lam_last, lam_act)
    return kernels[method](params, X, t, rho)
