r"""The SAM family in optax's terms: a gradient function (:func:`grad`) and transformations.

:func:`grad` is the rule as ``jax.grad`` is the loss's gradient: ``grad(method, model)`` returns
``sam_grad(params, batch) -> u``, the rule's direction (the same number as
``method.direction(model, params, X, t)``, :mod:`linsam.rules`) with the pytree of ``params``.
Hand it to any optax optimizer, wrapped as you like, in place of the gradient:

.. math::

    \theta_{k+1} = \theta_k - \eta\, u(\theta_k; X_k, t_k) .

>>> sam_grad = linsam.grad(OneSAM(0.1), LogReg())
>>> opt = optax.MultiSteps(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5)), every_k_schedule=4)
>>> updates, state = opt.update(sam_grad(w, (X, t)), state, w)

Every wrapper then sees the direction: ``clip_by_global_norm`` clips it, ``apply_if_finite``
skips a step whose direction is not finite, ``MultiSteps`` averages the directions of the k
micro-batches. For the per-example rules (GD, 1-SAM, L-SAM, J-SAM, J-reg and the controls)
the direction is a mean over examples of a term that depends on one example only, so the
average over k equal micro-batches *is* the direction of their union. n-SAM's perturbation
:math:`\rho g/\|g\|` uses the gradient of the batch it sees, so accumulated n-SAM is the mean
of the micro-batches' n-SAM steps (m-sharpness with m the micro-batch size), not the n-SAM step
of the union.

The transformations (``one_sam(rho, model)``, ``from_method(method, model)``, ...) are the same
directions as ``optax.GradientTransformationExtraArgs`` for ``optax.chain``; rho and the other
hyper-parameters are ordinary arguments, so ``optax.inject_hyperparams(linsam.optax.one_sam)(
rho=schedule, model=model)`` follows a schedule:

>>> tx = optax.chain(linsam.optax.one_sam(0.1, LogReg()), optax.sgd(0.5))
>>> state = tx.init(w)
>>> updates, state = tx.update(None, state, w, batch=(X, t))
>>> w = optax.apply_updates(w, updates)

A transformation computes the direction from ``params`` and the batch, so it must be first in
the chain and receive ``updates=None``: anything else is refused, since it would be discarded
(clipping placed before it would silently do nothing). Put clipping after it. ``MultiSteps``
and ``apply_if_finite`` wrap what they are handed, the incoming gradient, never a direction
computed inside: use :func:`grad` with them. The state is ``optax.EmptyState()`` (the rules are
memoryless). Unlike ``optax.contrib.sam`` this offers the per-example rules (1-SAM, L-SAM,
J-SAM, J-reg), and a zero gradient gives :math:`\epsilon = 0` (never NaN; optax's
``normalize()`` has no epsilon).

Every entry checks its inputs while tracing (free under jit): integer X, label dtypes,
label shapes; label values and rho's sign where they are concrete, and under
:func:`linsam.rules.checked` with ``checked=True`` where they are traced.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from linsam._src import rules as R

__all__ = ["grad", "from_method", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed", "linear_loss",
           "shifted_loss", "large_step", "weight_decay"]


def _method_value(method, where: str) -> R.Method:
    if not isinstance(method, R.Method):
        raise ValueError(f"{where}: method must be a linsam.rules method value such as OneSAM(0.1) (parse a name "
                         f"with linsam.rules.method(name, **hyper)), got {method!r}")
    return method


def _unpack(batch, where: str):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{where}: batch must be the pair (X, t), got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    return batch


def grad(method: R.Method, model, *, checked: bool = False) -> Callable:
    r"""The rule's direction as a gradient function, like ``jax.grad(loss)``.

    Args:
      method: a :mod:`linsam.rules` method value (``OneSAM(0.1)``, ``NSAM(rho)`` with rho traced, ...).
      model: a model definition (:mod:`linsam.models`; ``Generic`` for a Flax module's apply).
      checked: add the traced value checks (run the caller under :func:`linsam.rules.checked`).

    Returns:
      ``sam_grad(params, batch) -> u``: ``batch = (X, t)``, ``u`` a pytree like ``params``,
      :math:`u = ` ``method.direction(model, params, X, t)``. Inputs are checked on each call
      (shapes and dtypes while tracing; values where concrete).

    >>> sam_grad = grad(OneSAM(0.1), LogReg())
    >>> u = sam_grad(w, (X, t))          # same pytree as w
    """
    method = _method_value(method, "linsam.grad")

    def sam_grad(params, batch):
        X, t = _unpack(batch, f"linsam.grad({method.name})")
        R.validate_inputs(model, params, X, t, method)
        return method.direction(model, params, X, t, checked=checked)

    sam_grad.__name__ = f"{method.name}_grad"
    return sam_grad


def from_method(method: R.Method, model, *, checked: bool = False) -> optax.GradientTransformationExtraArgs:
    """The optax transformation of a method value with its model bound.

    Args:
      method: a :mod:`linsam.rules` method value (``OneSAM(0.1)``, ...): checked once, here.
      model: a model definition (:mod:`linsam.models`) or any object the rules accept.
      checked: run the traced value checks (:func:`linsam.rules.checked` must wrap the step).

    Returns:
      ``GradientTransformationExtraArgs``; ``update(None, state, params, *, batch=(X, t))``
      returns ``(direction, state)``. Incoming updates other than None are refused (they
      would be discarded): put the transformation first in a chain.
    """
    method = _method_value(method, "linsam.optax.from_method")
    sam_grad = grad(method, model, checked=checked)
    where = f"linsam.optax.{method.name}"

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, batch=None, **extra_args):
        del extra_args
        if updates is not None:
            raise ValueError(
                f"{where} computes the update direction from params and the batch and would discard the incoming "
                "updates: call tx.update(None, state, params, batch=(X, t)) with it first in optax.chain (put "
                "clipping after it); to accumulate micro-batches (optax.MultiSteps) or skip non-finite steps "
                "(optax.apply_if_finite), hand those wrappers linsam.grad(method, model)(params, (X, t)) instead"
            )
        if params is None or batch is None:
            raise ValueError(f"{where} needs params and the batch: tx.update(None, state, params, batch=(X, t))")
        return sam_grad(params, batch), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _static_chunk(chunk_size):
    if isinstance(chunk_size, (jax.Array, jax.core.Tracer)):
        raise ValueError("chunk_size is static (it shapes the program); with optax.inject_hyperparams pass "
                         "static_args=('chunk_size',)")
    return chunk_size


def gd(model, checked: bool = False):
    r""":class:`~linsam.rules.GD`: :math:`u = \nabla L(\theta)`."""
    return from_method(R.GD(), model, checked=checked)


def nsam(rho, model, checked: bool = False):
    r""":class:`~linsam.rules.NSAM`: :math:`u = \nabla L(\theta + \rho g/\|g\|)` (optax.contrib.sam's step, one call)."""
    return from_method(R.NSAM(rho), model, checked=checked)


def one_sam(rho, model, chunk_size=None, checked: bool = False):
    r""":class:`~linsam.rules.OneSAM`: :math:`u = \frac1n\sum_i\nabla\ell_i(\theta + \epsilon_i)`.

    rho is an ordinary argument: ``optax.inject_hyperparams(one_sam)(rho=schedule, model=model)``
    (add ``static_args=('chunk_size',)`` when giving a chunk size).
    """
    return from_method(R.OneSAM(rho, _static_chunk(chunk_size)), model, checked=checked)


def lsam(rho, model, chunk_size=None, checked: bool = False):
    r""":class:`~linsam.rules.LSAM`: logit scale at :math:`\theta + \epsilon_i`, Jacobian at :math:`\theta`."""
    return from_method(R.LSAM(rho, _static_chunk(chunk_size)), model, checked=checked)


def jsam(rho, model, chunk_size=None, checked: bool = False):
    r""":class:`~linsam.rules.JSAM`: logit scale at :math:`\theta`, Jacobian at :math:`\theta + \epsilon_i`."""
    return from_method(R.JSAM(rho, _static_chunk(chunk_size)), model, checked=checked)


def jreg(rho, model, chunk_size=None, checked: bool = False):
    r""":class:`~linsam.rules.JReg`: GD on :math:`L + \frac{\rho}{n}\sum_i\|J_i^\top \mathrm{sg}(r_i)\|`."""
    return from_method(R.JReg(rho, _static_chunk(chunk_size)), model, checked=checked)


def jreg_fixed(lam_last, lam_act, model, checked: bool = False):
    r""":class:`~linsam.rules.JRegFixed`: GD plus fixed last-layer and activation penalties."""
    return from_method(R.JRegFixed(lam_last, lam_act), model, checked=checked)


def linear_loss(model, checked: bool = False):
    r"""GD on the linear loss :math:`-tf` (:class:`linsam.rules.LinearLoss`), a control."""
    return from_method(R.LinearLoss(), model, checked=checked)


def shifted_loss(shift, model, checked: bool = False):
    r"""GD on :math:`\mathrm{softplus}(C - tf)` (:class:`linsam.rules.ShiftedLoss`), a control."""
    return from_method(R.ShiftedLoss(shift), model, checked=checked)


def large_step(lr_mult, model, checked: bool = False):
    r"""GD with the step times ``lr_mult`` (:class:`linsam.rules.LargeStep`), a control."""
    return from_method(R.LargeStep(lr_mult), model, checked=checked)


def weight_decay(decay, model, checked: bool = False):
    r"""GD + weight decay (:class:`linsam.rules.WeightDecay`), a control."""
    return from_method(R.WeightDecay(decay), model, checked=checked)
