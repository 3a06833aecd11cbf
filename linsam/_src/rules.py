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
activations (the model's ``last_layer`` and ``features``).

Methods are values: :class:`GD`, :class:`NSAM`, :class:`OneSAM`, :class:`LSAM`,
:class:`JSAM`, :class:`JReg`, :class:`JRegFixed` and the controls :class:`LinearLoss`
(GD on :math:`-tf`), :class:`ShiftedLoss` (GD on :math:`\mathrm{softplus}(C - tf)`),
:class:`LargeStep` (GD, step times ``lr_mult``), :class:`WeightDecay` (GD + :math:`\frac\lambda2
\|\theta\|^2`) are frozen dataclasses registered as pytrees
(``rho``, ``lam_last``, ``lam_act``, ``shift``, ``lr_mult``, ``decay`` are leaves, so a sweep vmaps over them; ``chunk_size`` is
static), checked once when built from concrete numbers. ``method.direction(model, params, X,
t)`` is the one dispatch: the model's closed form where ``model.closed_forms`` has one for the
method's class, generic autodiff otherwise. :func:`direction` is the validated entry (checks
the inputs once, then dispatches); :func:`method` parses a name (``"one_sam"``) at the edge.

Zero-gradient convention: where :math:`\|\nabla\ell_i\| = 0` (or :math:`\|g\| = 0` for
n-SAM) the perturbation is :math:`\epsilon = 0`, so the rule reduces to GD there; no NaN or
inf is produced. Normalisation is scaled (divide by the max-abs entry first), so a tiny but
non-zero gradient still gives a unit direction instead of underflowing to zero.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from linsam._src import validate

Params = Any
Array = jax.Array



def binary_logistic_loss(logit: Array, t: Array) -> Array:
    r"""Binary logistic loss :math:`\ell = -\log\sigma(t f) = \mathrm{softplus}(-t f)`, t in {-1, +1}.

    ``optax.losses.sigmoid_binary_cross_entropy`` with the 0/1 label :math:`(1 + t)/2`.
    """
    return optax.losses.sigmoid_binary_cross_entropy(logit, (1 + t) / 2)


def softmax_cross_entropy(logits: Array, t: Array) -> Array:
    r"""Softmax cross-entropy :math:`\ell = \log\sum_k e^{f_k} - f_t` for one example, t an int class id.

    ``optax.losses.softmax_cross_entropy_with_integer_labels``.
    """
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, t)


# ----------------------------------------------------------------------------- pytree helpers
#
# The tree arithmetic is optax.tree's; only the norm is scaled here (optax.tree.norm squares the
# raw entries, so it underflows to 0 for tiny gradients and has a NaN gradient at 0).


def tree_add(a, b):
    """``a + b`` leaf by leaf (``optax.tree.add``)."""
    return optax.tree.add(a, b)


def tree_scale(c, a):
    """``c * a`` leaf by leaf (``optax.tree.scale``)."""
    return optax.tree.scale(c, a)


def _tree_maxabs(a):
    return optax.tree.norm(a, ord=jnp.inf)


def safe_norm(a) -> Array:
    r"""Euclidean norm of a pytree, scaled against underflow; differentiable, gradient 0 at 0.

    Computed as :math:`m \|a/m\|` with :math:`m = \mathrm{sg}(\max|a|)`, so the gradient is
    :math:`a/\|a\|` where :math:`a \ne 0` and 0 (not NaN) at :math:`a = 0`.
    """
    m = jax.lax.stop_gradient(_tree_maxabs(a))
    nonzero = m > 0
    m_safe = jnp.where(nonzero, m, 1.0)
    sq = optax.tree.norm(jax.tree.map(lambda x: x / m_safe, a), squared=True)
    sq_safe = jnp.where(nonzero, sq, 1.0)
    return jnp.where(nonzero, m_safe * jnp.sqrt(sq_safe), 0.0)


def safe_normalize(a):
    r"""Unit direction :math:`a/\|a\|` of a pytree; exactly 0 where :math:`a = 0` (the eps = 0 convention)."""
    m = _tree_maxabs(a)
    nonzero = m > 0
    m_safe = jnp.where(nonzero, m, 1.0)
    u = jax.tree.map(lambda x: x / m_safe, a)
    nrm = jnp.sqrt(optax.tree.norm(u, squared=True))
    nrm_safe = jnp.where(nonzero, nrm, 1.0)
    return jax.tree_util.tree_map(lambda x: jnp.where(nonzero, x / nrm_safe, jnp.zeros_like(x)), u)


# ----------------------------------------------------------------------------- building blocks


def example_loss(model, params: Params, x: Array, t: Array) -> Array:
    """Per-example loss l(f(params, x), t)."""
    return model.loss_from_logits(model.apply(params, x), t)


def batch_logits(model, params: Params, X: Array) -> Array:
    """Logits of a batch: ``model.apply_batch`` where given, else ``vmap(model.apply)``."""
    if model.apply_batch is not None:
        return model.apply_batch(params, X)
    return jax.vmap(model.apply, in_axes=(None, 0))(params, X)


def batch_loss(model, params: Params, X: Array, t: Array) -> Array:
    """Mean loss L(params) over the batch."""
    logits = batch_logits(model, params, X)
    return jnp.mean(jax.vmap(model.loss_from_logits)(logits, t))


def _logit_scale(model, logits: Array, t: Array) -> Array:
    """dl/dlogits at the given logits (binary: -t sigmoid(-t f); softmax: p - e_t)."""
    return jax.grad(model.loss_from_logits)(logits, t)


def _vjp_apply(model, params: Params, x: Array, cotangent: Array):
    """J(params)^T cotangent for one example."""
    _, pullback = jax.vjp(lambda p: model.apply(p, x), params)
    return pullback(cotangent)[0]


def perturbation(model, params: Params, x: Array, t: Array, rho) -> Params:
    r"""1-SAM perturbation of one example, :math:`\epsilon = \rho\nabla\ell/\|\nabla\ell\|` (0 where the gradient is 0)."""
    g = jax.grad(example_loss, argnums=1)(model, params, x, t)
    return tree_scale(rho, safe_normalize(g))


def _one_sam_example(model, params, x, t, rho):
    eps = perturbation(model, params, x, t, rho)
    return jax.grad(example_loss, argnums=1)(model, tree_add(params, eps), x, t)


def _lsam_example(model, params, x, t, rho):
    eps = perturbation(model, params, x, t, rho)
    r = _logit_scale(model, model.apply(tree_add(params, eps), x), t)
    return _vjp_apply(model, params, x, r)


def _jsam_example(model, params, x, t, rho):
    eps = perturbation(model, params, x, t, rho)
    r = _logit_scale(model, model.apply(params, x), t)
    return _vjp_apply(model, tree_add(params, eps), x, r)


def jacobian_penalty(model, params: Params, x: Array, t: Array, rho) -> Array:
    r"""Per-example J-reg penalty :math:`\rho\,\|J(\theta)^\top \mathrm{sg}(r(\theta))\|`."""
    r = jax.lax.stop_gradient(_logit_scale(model, model.apply(params, x), t))
    jt_r = jax.grad(lambda p: jnp.sum(r * model.apply(p, x)))(params)
    return rho * safe_norm(jt_r)


def _jreg_example(model, params, x, t, rho):
    return jax.grad(lambda p: example_loss(model, p, x, t) + jacobian_penalty(model, p, x, t, rho))(params)


def _mean_over_examples(fn: Callable, X: Array, t: Array, chunk_size: int | None):
    """mean_i fn(x_i, t_i) through vmap, or, with ``chunk_size``, memory-bounded chunks of vmap.

    The chunks are summed inside ``jax.lax.map``, so at most ``chunk_size`` per-example results
    are alive at once (the remainder n mod chunk_size is one more vmap). ``jax.lax.map(fn, xs,
    batch_size=chunk_size)`` computes the same numbers but stacks all n per-example results
    before the mean: for a 1M-parameter model, n = 256 and chunk_size = 32 XLA's temp memory is
    977 MiB against 31 MiB here (``compiled.memory_analysis()``), which is what chunk_size is for.
    """
    n = X.shape[0]
    if chunk_size is None or chunk_size >= n:
        out = jax.vmap(fn)(X, t)
        return jax.tree.map(lambda a: jnp.mean(a, axis=0), out)
    c = int(chunk_size)
    m, full = n // c, (n // c) * c

    def chunk_sum(args):
        return jax.tree.map(lambda a: jnp.sum(a, axis=0), jax.vmap(fn)(*args))

    sums = jax.lax.map(chunk_sum, (X[:full].reshape((m, c) + X.shape[1:]), t[:full].reshape((m, c) + t.shape[1:])))
    total = jax.tree.map(lambda a: jnp.sum(a, axis=0), sums)
    if full < n:
        total = tree_add(total, chunk_sum((X[full:], t[full:])))
    return jax.tree.map(lambda a: a / n, total)


# ----------------------------------------------------------------------------- autodiff kernels


def _gd(model, params, X, t):
    return jax.grad(batch_loss, argnums=1)(model, params, X, t)


def _nsam(model, params, X, t, rho):
    g = _gd(model, params, X, t)
    eps = tree_scale(rho, safe_normalize(g))
    return _gd(model, tree_add(params, eps), X, t)


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


def shifted_logits(logits: Array, t: Array, shift, *, multiclass: bool = False) -> Array:
    r"""Logits with the true class's margin lowered by ``shift``: binary :math:`f - C t`
    (so :math:`\ell = \mathrm{softplus}(C - t f)`), K classes (``multiclass``) :math:`f - C e_t`."""
    if not multiclass:
        return logits - shift * t
    return logits - shift * jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)


def linear_loss_from_logits(model, logits: Array, t: Array) -> Array:
    r"""The linear loss, the :math:`C \to \infty` limit of the shifted loss's gradient:
    binary :math:`-t f`; K classes :math:`\log\sum_{k \ne t} e^{f_k} - f_t`."""
    if model.num_classes is None:
        return -t * logits
    own = jax.nn.one_hot(t, logits.shape[-1], dtype=bool)
    return jax.nn.logsumexp(jnp.where(own, -jnp.inf, logits)) - jnp.take(logits, t)


def _linear_loss(model, params, X, t):
    def objective(p):
        logits = batch_logits(model, p, X)
        return jnp.mean(jax.vmap(lambda f, ti: linear_loss_from_logits(model, f, ti))(logits, t))

    return jax.grad(objective)(params)


def _shifted_loss(model, params, X, t, shift):
    def objective(p):
        logits = batch_logits(model, p, X)
        multi = model.num_classes is not None
        return jnp.mean(jax.vmap(lambda f, ti: model.loss_from_logits(shifted_logits(f, ti, shift, multiclass=multi),
                                                                      ti))(logits, t))

    return jax.grad(objective)(params)


def _weight_decay(model, params, X, t, decay):
    def objective(p):
        return batch_loss(model, p, X, t) + 0.5 * decay * sum(
            jnp.sum(jnp.square(w)) for w in jax.tree_util.tree_leaves(p))

    return jax.grad(objective)(params)


@functools.partial(jax.jit, static_argnames=("model",))
def per_example_grads(model, params: Params, X: Array, t: Array):
    """Per-example gradients grad l_i(params), a pytree with leading axis n."""
    return jax.vmap(jax.grad(example_loss, argnums=1), in_axes=(None, None, 0, 0))(model, params, X, t)


# ----------------------------------------------------------------------------- methods as values


def _check_hyper(value, name: str) -> None:
    """A hyper-parameter leaf: a real number >= 0, or an array of them (a vmapped sweep).

    Tracers (inside jit/vmap) are skipped; None, strings, lists and other non-numbers are
    refused with a message naming the field.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if value is None or isinstance(value, (str, bytes, list, tuple, dict, set)):
        raise ValueError(
            f"{name} must be a real number >= 0 (or an array of them, for a vmapped sweep), "
            f"got {type(value).__name__} {value!r}"
        )
    validate.check_rho(value, name)


def _register(cls):
    """Register a method dataclass as a pytree: ``_leaves`` are children, ``_static`` aux data.

    Unflattening bypasses ``__init__`` (JAX rebuilds trees with tracers and placeholder
    objects), so a value is checked exactly once: when a user builds it.
    """
    leaves, static = cls._leaves, cls._static

    def flatten_with_keys(m):
        return [(jax.tree_util.GetAttrKey(k), getattr(m, k)) for k in leaves], tuple(getattr(m, k) for k in static)

    def flatten(m):
        return [getattr(m, k) for k in leaves], tuple(getattr(m, k) for k in static)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for k, v in zip(leaves, children):
            object.__setattr__(obj, k, v)
        for k, v in zip(static, aux):
            object.__setattr__(obj, k, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class Method:
    """Base of the method values. Subclasses are frozen dataclasses.

    Class attributes: ``name`` (the one string name, used only at the edge), ``uses_rho``
    (whether the direction depends on ``rho``), ``knob`` (the one hyper-parameter a sweep
    tunes, riding on the engine's rho axis: ``"rho"`` for the SAM family, the control's knob
    for the controls, None for a method with nothing to tune), ``_leaves (pytree children: the
    hyper-parameters), ``_static`` (aux data: ``chunk_size``).
    """

    name: ClassVar[str] = ""
    uses_rho: ClassVar[bool] = False
    knob: ClassVar[str | None] = None
    _leaves: ClassVar[tuple[str, ...]] = ()
    _static: ClassVar[tuple[str, ...]] = ()
    #: Upper bounds of bounded leaves: field -> (bound, what the leaf is), checked like the lower bound 0.
    _upper: ClassVar[dict[str, tuple[float, str]]] = {}

    def __post_init__(self):
        for field in self._leaves:
            value = getattr(self, field)
            _check_hyper(value, field)
            if field in self._upper and not isinstance(value, jax.core.Tracer):
                top, what = self._upper[field]
                if np.any(np.asarray(value) > top):
                    raise ValueError(f"{field} ({what}) must be in [0, {top:g}], got {value!r}")
        if "chunk_size" in self._static and self.chunk_size is not None:
            validate.check_positive_int(self.chunk_size, "chunk_size")

    @property
    def hyper(self) -> dict:
        """The hyper-parameters as a dict (leaves and static fields)."""
        return {k: getattr(self, k) for k in self._leaves + self._static}

    def direction(self, model, params: Params, X: Array, t: Array, *, checked: bool = False):
        r"""The update direction :math:`u` of this rule (no input checks: the hot path).

        The one dispatch: ``model.closed_forms[type(self)]`` where the model has it, generic
        autodiff (:meth:`autodiff`) otherwise. Only the checks that read no values run here
        (:func:`check_structure`: shapes and dtypes, at trace time). ``checked=True`` adds traced
        value checks
        (``jax.experimental.checkify``; run the caller under :func:`checked`).
        """
        check_structure(model, params, X, t)
        self._check_model(model)
        if checked:
            _traced_checks(self, model, params, X, t)
        out = _dispatch(self, model, params, X, t)
        if checked:
            _traced_finite(out, f"the {self.name} direction")
        return out

    def _check_model(self, model) -> None:
        """Refuse a model this method cannot use (runs while tracing)."""

    def autodiff(self, model, params: Params, X: Array, t: Array):
        """The generic autodiff direction (ignores the model's closed forms): the reference."""
        check_structure(model, params, X, t)
        self._check_model(model)
        return _autodiff(self, model, params, X, t)

    def _autodiff_kernel(self, model, params, X, t):  # pragma: no cover - abstract
        raise NotImplementedError


def _closed_form(model, cls):
    forms = getattr(model, "closed_forms", None)
    return None if not forms else forms.get(cls)


@functools.partial(jax.jit, static_argnames=("model",))
def _dispatch(method: Method, model, params, X, t):
    kernel = _closed_form(model, type(method))
    if kernel is not None:
        return kernel(method, params, X, t)
    return method._autodiff_kernel(model, params, X, t)


@functools.partial(jax.jit, static_argnames=("model",))
def _autodiff(method: Method, model, params, X, t):
    return method._autodiff_kernel(model, params, X, t)


@_register
@dataclasses.dataclass(frozen=True)
class GD(Method):
    r"""(S)GD: :math:`u = \nabla L(\theta) = \frac1n\sum_i \nabla \ell_i(\theta)`."""

    name: ClassVar[str] = "gd"

    def _autodiff_kernel(self, model, params, X, t):
        return _gd(model, params, X, t)


@dataclasses.dataclass(frozen=True)
class _Radius(Method):
    rho: Any
    uses_rho: ClassVar[bool] = True
    knob: ClassVar[str] = "rho"
    _leaves: ClassVar[tuple[str, ...]] = ("rho",)


@_register
@dataclasses.dataclass(frozen=True)
class NSAM(_Radius):
    r"""n-SAM: :math:`u = \nabla L(\theta + \rho\, g/\|g\|)`, :math:`g = \nabla L(\theta)` (0 if g = 0).

    Args:
      rho: radius >= 0 (a pytree leaf: may be traced, or an array for a vmapped sweep).
    """

    name: ClassVar[str] = "nsam"

    def _autodiff_kernel(self, model, params, X, t):
        return _nsam(model, params, X, t, self.rho)


@dataclasses.dataclass(frozen=True)
class _PerExample(_Radius):
    chunk_size: int | None = None
    _static: ClassVar[tuple[str, ...]] = ("chunk_size",)
    _example: ClassVar[Callable | None] = None

    def _autodiff_kernel(self, model, params, X, t):
        example = type(self)._example
        return _mean_over_examples(lambda x, ti: example(model, params, x, ti, self.rho), X, t, self.chunk_size)


@_register
@dataclasses.dataclass(frozen=True)
class OneSAM(_PerExample):
    r"""1-SAM: :math:`u = \frac1n\sum_i \nabla\ell_i(\theta + \epsilon_i)`,
    :math:`\epsilon_i = \rho\nabla\ell_i/\|\nabla\ell_i\|` (0 where the gradient is 0).

    Args:
      rho: radius >= 0 (pytree leaf).
      chunk_size: examples per ``vmap`` chunk of the autodiff path (static; None = all).
    """

    name: ClassVar[str] = "one_sam"
    _example: ClassVar[Callable] = staticmethod(_one_sam_example)


@_register
@dataclasses.dataclass(frozen=True)
class LSAM(_PerExample):
    r"""L-SAM: :math:`u = \frac1n\sum_i J_i(\theta)^\top r_i(\theta + \epsilon_i)` (logit scale perturbed)."""

    name: ClassVar[str] = "lsam"
    _example: ClassVar[Callable] = staticmethod(_lsam_example)


@_register
@dataclasses.dataclass(frozen=True)
class JSAM(_PerExample):
    r"""J-SAM: :math:`u = \frac1n\sum_i J_i(\theta + \epsilon_i)^\top r_i(\theta)` (Jacobian perturbed)."""

    name: ClassVar[str] = "jsam"
    _example: ClassVar[Callable] = staticmethod(_jsam_example)


@_register
@dataclasses.dataclass(frozen=True)
class JReg(_PerExample):
    r"""J-reg: GD on :math:`L + \frac{\rho}{n}\sum_i \|J_i^\top \mathrm{sg}(r_i)\|` (Prop. 4.1's penalty)."""

    name: ClassVar[str] = "jreg"
    _example: ClassVar[Callable] = staticmethod(_jreg_example)


@_register
@dataclasses.dataclass(frozen=True)
class JRegFixed(Method):
    r"""GD on :math:`L + \frac{\lambda_{\mathrm{last}}}2\|\theta_{\mathrm{last}}\|^2
    + \frac{\lambda_{\mathrm{act}}}{2n}\sum_i\|\phi(\theta, x_i)\|^2` (fixed coefficients).

    Args:
      lam_last, lam_act: coefficients >= 0 (pytree leaves).
    """

    lam_last: Any = 0.0
    lam_act: Any = 0.0
    name: ClassVar[str] = "jreg_fixed"
    _leaves: ClassVar[tuple[str, ...]] = ("lam_last", "lam_act")

    def _check_model(self, model) -> None:
        if getattr(model, "features", None) is None and getattr(model, "last_layer", None) is None:
            raise ValueError(
                "jreg_fixed needs the model's last_layer(params) and/or features(params, x) (the penalised "
                f"weights and activations); {type(model).__name__} has neither, so jreg_fixed would be GD. "
                "Build Generic(..., last_layer=..., features=...)"
            )

    def _autodiff_kernel(self, model, params, X, t):
        return _jreg_fixed(model, params, X, t, self.lam_last, self.lam_act)


# ----------------------------------------------------------------------------- controls
#
# Simpler explanations of 1-SAM's gain, as methods of the same engine (Baek et al.'s Sec. 3:
# in the linear model 1-SAM is the reweighting sigma(-z_i + rho ||x_i||); derivation D1).
# Each has at most one knob, tuned on the selection seeds exactly like 1-SAM's rho.


@_register
@dataclasses.dataclass(frozen=True)
class LinearLoss(Method):
    r"""GD on the linear loss :math:`\ell = -t f` (K classes: :math:`\log\sum_{k\ne t}e^{f_k} - f_t`):

    .. math::  u = -\tfrac1n \textstyle\sum_i t_i \nabla_\theta f(\theta, x_i),

    every logit scale flat at 1: the :math:`\rho \to \infty` limit of 1-SAM in the linear
    model (every weight :math:`\sigma(-z_i + \rho\|x_i\|) \to 1`). No hyper-parameter.
    """

    name: ClassVar[str] = "linear_loss"

    def _autodiff_kernel(self, model, params, X, t):
        return _linear_loss(model, params, X, t)


@_register
@dataclasses.dataclass(frozen=True)
class ShiftedLoss(Method):
    r"""GD on the shifted logistic loss :math:`\ell = \mathrm{softplus}(C - t f)` (K classes: the
    cross-entropy of :math:`f - C e_t`):

    .. math::  u = -\tfrac1n \textstyle\sum_i t_i\,\sigma(-z_i + C)\,\nabla_\theta f(\theta, x_i).

    In the linear model this is 1-SAM exactly when :math:`C = \rho\|x_i\|` for every i (all
    :math:`\|x_i\|` equal; derivation D1), so a 1-SAM gain beyond it needs per-example norms.

    Args:
      shift: C >= 0 (pytree leaf; the knob).
    """

    shift: Any = 1.0
    name: ClassVar[str] = "shifted_loss"
    knob: ClassVar[str] = "shift"
    _leaves: ClassVar[tuple[str, ...]] = ("shift",)

    def _autodiff_kernel(self, model, params, X, t):
        return _shifted_loss(model, params, X, t, self.shift)


@_register
@dataclasses.dataclass(frozen=True)
class LargeStep(Method):
    r"""GD with the step multiplied by ``lr_mult``: :math:`u = m\,\nabla L(\theta)`.

    1-SAM's linear-model weights are :math:`\ge 1`, so part of its gain could be a larger
    effective step; this control tunes the step itself.

    Args:
      lr_mult: m >= 0 (pytree leaf; the knob).
    """

    lr_mult: Any = 2.0
    name: ClassVar[str] = "large_step"
    knob: ClassVar[str] = "lr_mult"
    _leaves: ClassVar[tuple[str, ...]] = ("lr_mult",)

    def _autodiff_kernel(self, model, params, X, t):
        return tree_scale(self.lr_mult, _gd(model, params, X, t))


@_register
@dataclasses.dataclass(frozen=True)
class WeightDecay(Method):
    r"""GD + L2 weight decay on every parameter: :math:`u = \nabla L(\theta) + \lambda\theta`.

    Args:
      decay: :math:`\lambda \ge 0` (pytree leaf; the knob).
    """

    decay: Any = 0.0
    name: ClassVar[str] = "weight_decay"
    knob: ClassVar[str] = "decay"
    _leaves: ClassVar[tuple[str, ...]] = ("decay",)

    def _autodiff_kernel(self, model, params, X, t):
        return _weight_decay(model, params, X, t, self.decay)


# ----------------------------------------------------------------------------- loss controls
#
# Noise-robust losses from the literature, used as controls on CIFAR-10 (linsam.cifar.study).
# They are method values like the rest, but not on the toy engine's method axis (METHODS):
# the engine has closed forms of every member of CONTROLS on its models, these have none there.


def label_smoothing_loss(model, logits: Array, t: Array, eps) -> Array:
    r"""Label-smoothed loss: :math:`(1-\varepsilon)\,\ell(f, t) + \varepsilon\,\frac1K\sum_k \ell(f, k)`
    (Szegedy et al., CVPR 2016), i.e. K classes the cross-entropy against
    :math:`(1-\varepsilon)e_t + \varepsilon/K`, so :math:`\partial\ell/\partial f = p - (1-\varepsilon)e_t - \varepsilon/K`;
    binary (labels :math:`\pm1`, K = 2) :math:`(1-\varepsilon)\,\mathrm{softplus}(-tf) + \tfrac{\varepsilon}{2}
    (\mathrm{softplus}(f) + \mathrm{softplus}(-f))`."""
    own = model.loss_from_logits(logits, t)
    if model.num_classes is None:
        every = 0.5 * (jax.nn.softplus(logits) + jax.nn.softplus(-logits))
    else:
        every = jax.nn.logsumexp(logits) - jnp.mean(logits)
    return (1.0 - eps) * own + eps * every


def gce_loss(model, logits: Array, t: Array, q) -> Array:
    r"""Generalized cross-entropy (Zhang and Sabuncu, NeurIPS 2018):
    :math:`\ell_q = (1 - p_t^q)/q` with :math:`p_t = e^{-\ell(f, t)}` the probability of the
    label (softmax, or :math:`\sigma(tf)` for a binary model), computed as
    :math:`-\mathrm{expm1}(-q\ell)/q`; :math:`q \to 0` is the cross-entropy (used at q = 0),
    q = 1 the mean absolute error :math:`1 - p_t`. Its gradient is the cross-entropy's
    reweighted by :math:`p_t^q`: :math:`\partial\ell_q/\partial f = p_t^q\,\partial\ell/\partial f`
    (examples the model finds unlikely, e.g. mislabelled ones, count less)."""
    ce = model.loss_from_logits(logits, t)
    q_safe = jnp.where(q > 0, q, 1.0)
    return jnp.where(q > 0, -jnp.expm1(-q_safe * ce) / q_safe, ce)


def _loss_gd(model, params, X, t, per_example):
    def objective(p):
        logits = batch_logits(model, p, X)
        return jnp.mean(jax.vmap(per_example)(logits, t))

    return jax.grad(objective)(params)


@_register
@dataclasses.dataclass(frozen=True)
class LabelSmoothing(Method):
    r"""GD on the label-smoothed loss (:func:`label_smoothing_loss`):

    .. math::  u = \tfrac1n \textstyle\sum_i J_i^\top\big(p_i - (1-\varepsilon)e_{t_i} - \varepsilon\mathbf 1/K\big).

    Args:
      eps: :math:`\varepsilon \in [0, 1]` (pytree leaf; the knob). 0 is GD.
    """

    eps: Any = 0.1
    name: ClassVar[str] = "label_smoothing"
    knob: ClassVar[str] = "eps"
    _leaves: ClassVar[tuple[str, ...]] = ("eps",)
    _upper: ClassVar[dict[str, tuple[float, str]]] = {"eps": (1.0, "label smoothing")}

    def _autodiff_kernel(self, model, params, X, t):
        return _loss_gd(model, params, X, t, lambda f, ti: label_smoothing_loss(model, f, ti, self.eps))


@_register
@dataclasses.dataclass(frozen=True)
class GCE(Method):
    r"""GD on the generalized cross-entropy (:func:`gce_loss`; Zhang and Sabuncu, NeurIPS 2018):

    .. math::  u = \tfrac1n \textstyle\sum_i p_{t_i}^{\,q}\,\nabla_\theta \ell_i(\theta),

    the per-example reweighting by the label's own probability (cf. 1-SAM's reweighting of the
    linear model, Lemma 3.1). q = 0 is GD; q = 1 the mean absolute error.

    Args:
      q: q in [0, 1] (pytree leaf; the knob).
    """

    q: Any = 0.7
    name: ClassVar[str] = "gce"
    knob: ClassVar[str] = "q"
    _leaves: ClassVar[tuple[str, ...]] = ("q",)
    _upper: ClassVar[dict[str, tuple[float, str]]] = {"q": (1.0, "generalized cross-entropy")}

    def _autodiff_kernel(self, model, params, X, t):
        return _loss_gd(model, params, X, t, lambda f, ti: gce_loss(model, f, ti, self.q))


#: Noise-robust loss controls (method values; not on the toy engine's method axis, see above).
LOSS_CONTROLS: dict[str, type] = {c.name: c for c in (LabelSmoothing, GCE)}


#: The method classes by name, in the canonical order (the names exist only at the edge).
METHOD_CLASSES: dict[str, type] = {c.name: c for c in (GD, NSAM, OneSAM, LSAM, JSAM, JReg, JRegFixed, LinearLoss,
                                                       ShiftedLoss, LargeStep, WeightDecay)}
#: The controls: simpler explanations of 1-SAM's gain (no per-example perturbation).
CONTROLS = ("linear_loss", "shifted_loss", "large_step", "weight_decay")
METHODS = tuple(METHOD_CLASSES)
#: Methods whose direction needs a perturbation radius rho.
SAM_METHODS = tuple(name for name, c in METHOD_CLASSES.items() if c.uses_rho)


def method(name: str, *, ignore_extra: bool = False, **hyper) -> Method:
    """Parse a method name and its hyper-parameters (a config entry, a command line) into a value.

    >>> method("one_sam", rho=0.1)
    OneSAM(rho=0.1, chunk_size=None)
    >>> method("gd", rho=0.1, ignore_extra=True)   # a sweep's shared settings
    GD()

    Unknown names are refused with a ValueError; so are hyper-parameters the method does not
    take, unless ``ignore_extra`` (then they are dropped: one settings dict for every method).
    """
    validate.check_method(name, METHODS)
    cls = METHOD_CLASSES[name]
    allowed = cls._leaves + cls._static
    if ignore_extra:
        hyper = {k: v for k, v in hyper.items() if k in allowed}
    extra = sorted(set(hyper) - set(allowed))
    if extra:
        takes = ", ".join(allowed) or "no hyper-parameters"
        raise ValueError(f"method {name!r} takes {takes}; got unexpected {', '.join(extra)}")
    return cls(**hyper)


# ----------------------------------------------------------------------------- validated entry


def check_structure(model, params: Params, X: Array, t: Array) -> int:
    """The checks that read no values (shapes and dtypes): they run while tracing, free under jit.

    X: a float array (n, ...) with n >= 1 (integer X refused); params: floating-point leaves;
    t: shape (n,), binary labels an integer or float array (bool refused), class ids an
    integer array. Returns n.
    """
    X_shape = np.shape(X)
    if len(X_shape) < 2 or X_shape[0] < 1:
        raise ValueError(f"X must have shape (n, ...) with n >= 1 examples (one row per example), got shape {X_shape}")
    validate.check_float(X, "X")
    validate.check_float_tree(params, "params")
    n = int(X_shape[0])
    if model.num_classes is None:
        if np.shape(t) != (n,):
            raise ValueError(f"t must have shape ({n},) to match X, got shape {np.shape(t)}")
        dtype = validate._dtype(t)
        if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
            raise ValueError(f"t (binary labels) must be -1 or +1 as an integer or float array, got dtype {dtype}")
    else:
        if np.shape(t) != (n,):
            raise ValueError(f"t must have shape ({n},) to match X, got shape {np.shape(t)}")
        dtype = validate._dtype(t)
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"t (class ids) must be integers in [0, {model.num_classes}), got dtype {dtype}")
    return n


def validate_inputs(model, params: Params, X: Array, t: Array, method_value: Method | None = None) -> int:
    """Check a problem once, before any work: :func:`check_structure` (while tracing) plus the
    value checks where the arrays are concrete (tracers skip them: the checked mode covers jit).

    X: float array (n, ...) with n >= 1, finite (the same dtype rule for every model and
    rule: integer X is refused); params finite and of the model's shapes
    (``model.check_params`` where the model has it); labels binary (+-1) or class ids in
    [0, K); the method's hyper-parameters scalar, finite and >= 0. Returns n.
    """
    check_params = getattr(model, "check_params", None)
    if check_params is not None:
        check_params(params, X)
    n = check_structure(model, params, X, t)
    validate.check_finite(X, "X")
    validate.check_finite(params, "params")
    if model.num_classes is None:
        validate.check_binary_labels(t, n)
    else:
        validate.check_class_labels(t, n, model.num_classes)
    if method_value is not None:
        if not isinstance(method_value, Method):
            raise ValueError(
                f"method must be a linsam.rules method value ({', '.join(c.__name__ for c in METHOD_CLASSES.values())})"
                f" or a name ({', '.join(METHODS)}); got {method_value!r}"
            )
        for field in method_value._leaves:
            value = getattr(method_value, field)
            _check_hyper(value, field)
            if validate.is_concrete(value) and np.ndim(value) != 0:
                raise ValueError(
                    f"{field} must be a scalar for one direction, got shape {np.shape(value)}; "
                    "to sweep, jax.vmap over a method built with an array"
                )
        method_value._check_model(model)
    return n


def direction(method: "Method", model, params: Params, X: Array, t: Array, *, checked: bool = False):
    """The validated entry: check the inputs once, then ``method.direction(model, params, X, t)``.

    ``method`` is a method value (``OneSAM(0.1)``); a name is parsed at the edge with
    :func:`method` (``method("one_sam", rho=0.1)``), never here.
    """
    if not isinstance(method, Method):
        raise ValueError(f"method must be a linsam.rules method value such as OneSAM(rho=0.1) (parse names with "
                         f"linsam.rules.method(name, **hyper)), got {method!r}")
    validate_inputs(model, params, X, t, method)
    return method.direction(model, params, X, t, checked=checked)


# ----------------------------------------------------------------------------- functional shorthands


def gd(model, params: Params, X: Array, t: Array):
    r"""Validated :class:`GD` direction :math:`\nabla L(\theta)`."""
    return direction(GD(), model, params, X, t)


def nsam(model, params: Params, X: Array, t: Array, rho):
    r"""Validated :class:`NSAM` direction."""
    return direction(NSAM(rho), model, params, X, t)


def one_sam(model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""Validated :class:`OneSAM` direction."""
    return direction(OneSAM(rho, chunk_size), model, params, X, t)


def lsam(model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""Validated :class:`LSAM` direction."""
    return direction(LSAM(rho, chunk_size), model, params, X, t)


def jsam(model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""Validated :class:`JSAM` direction."""
    return direction(JSAM(rho, chunk_size), model, params, X, t)


def jreg(model, params: Params, X: Array, t: Array, rho, *, chunk_size: int | None = None):
    r"""Validated :class:`JReg` direction."""
    return direction(JReg(rho, chunk_size), model, params, X, t)


def jreg_fixed(model, params: Params, X: Array, t: Array, *, lam_last, lam_act):
    r"""Validated :class:`JRegFixed` direction."""
    return direction(JRegFixed(lam_last, lam_act), model, params, X, t)


def linear_loss(model, params: Params, X: Array, t: Array):
    r"""Validated :class:`LinearLoss` direction."""
    return direction(LinearLoss(), model, params, X, t)


def shifted_loss(model, params: Params, X: Array, t: Array, shift):
    r"""Validated :class:`ShiftedLoss` direction."""
    return direction(ShiftedLoss(shift), model, params, X, t)


# ----------------------------------------------------------------------------- checked mode


def _traced_checks(method_value: Method, model, params, X, t) -> None:
    """checkify checks of the values that validation cannot see under jit."""
    from jax.experimental import checkify

    for field in method_value._leaves:
        v = jnp.asarray(getattr(method_value, field))
        checkify.check(jnp.all(jnp.isfinite(v) & (v >= 0)), f"{field} must be a finite number >= 0, got {{}}", v)
    checkify.check(jnp.all(jnp.isfinite(X)), "X contains NaN or inf value(s); all entries must be finite")
    for leaf in jax.tree_util.tree_leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            checkify.check(jnp.all(jnp.isfinite(leaf)), "params contain NaN or inf value(s); all entries must be finite")
    if model.num_classes is None:
        checkify.check(jnp.all((t == 1) | (t == -1)), "t (binary labels) must be -1 or +1")
    else:
        checkify.check(jnp.all((t >= 0) & (t < model.num_classes)),
                       f"t (class ids) must be in [0, {model.num_classes})")


def _traced_finite(tree, what: str) -> None:
    from jax.experimental import checkify

    for leaf in jax.tree_util.tree_leaves(tree):
        checkify.check(jnp.all(jnp.isfinite(leaf)), f"{what} is not finite (overflow or NaN): the inputs exceed "
                       f"the float range of {leaf.dtype}")


def checked(fn: Callable, *, jit: bool = True) -> Callable:
    """Run ``fn`` with its traced checks on (the opt-in checked mode).

    ``fn`` calls ``method.direction(..., checked=True)`` (or a ``linsam.optax`` transform
    built with ``checked=True``) somewhere inside; ``checked(fn)(*args)`` runs it under
    ``jax.experimental.checkify`` (and ``jax.jit`` unless ``jit=False``) and raises
    ValueError with the first failed check's message, else returns ``fn``'s result.

    >>> step = checked(lambda rho: OneSAM(rho).direction(model, w, X, t, checked=True))
    >>> step(-1.0)   # ValueError: rho must be a finite number >= 0, got -1.0
    """
    from jax.experimental import checkify

    run = checkify.checkify(fn)
    if jit:
        run = jax.jit(run)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        err, out = run(*args, **kwargs)
        msg = err.get()
        if msg is not None:
            raise ValueError(msg.split(" (check failed at")[0])
        return out

    return wrapper
