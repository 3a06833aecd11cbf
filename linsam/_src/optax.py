r"""The SAM family as optax transformations: drop 1-SAM, L-SAM or J-SAM into any optax loop.

Each transformation's ``update`` returns the rule's direction :math:`u` (the same number as
``method.direction(model, params, X, t)``, :mod:`linsam.rules`); the caller chains the step,
e.g. ``optax.chain(linsam.optax.one_sam(rho, model), optax.sgd(lr))`` gives

.. math::

    \theta_{k+1} = \theta_k - \eta\, u(\theta_k; X_k, t_k) .

Per-example rules need the model's per-example function and the batch: the model is bound
when the transformation is built and the batch is an extra argument of ``update``:

>>> tx = optax.chain(linsam.optax.one_sam(0.1, LogReg()), optax.sgd(0.5))
>>> state = tx.init(w)
>>> updates, state = tx.update(grads, state, w, batch=(X, t))   # grads may be None
>>> w = optax.apply_updates(w, updates)

The incoming ``updates`` (gradients) are replaced by the direction, so put the transformation
first in a chain. The state is ``optax.EmptyState()``: the rules are memoryless. Unlike
``optax.contrib.sam`` this offers the per-example rules (1-SAM, L-SAM, J-SAM, J-reg), and a
zero gradient gives :math:`\epsilon = 0` (never NaN; ``optax.contrib.normalize`` has no epsilon).
"""

from __future__ import annotations

import optax

from linsam._src import rules as R

__all__ = ["from_method", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed", "linear_loss", "shifted_loss",
           "large_step", "weight_decay"]


def from_method(method: R.Method, model, *, checked: bool = False) -> optax.GradientTransformationExtraArgs:
    """The optax transformation of a method value with its model bound.

    Args:
      method: a :mod:`linsam.rules` method value (``OneSAM(0.1)``, ...): checked once, here.
      model: a model definition (:mod:`linsam.models`) or any object the rules accept.
      checked: run the traced value checks (:func:`linsam.rules.checked` must wrap the step).

    Returns:
      ``GradientTransformationExtraArgs``; ``update(updates, state, params, *, batch=(X, t))``
      returns ``(direction, state)``.
    """
    if not isinstance(method, R.Method):
        raise ValueError(f"method must be a linsam.rules method value such as OneSAM(0.1), got {method!r}")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, batch=None, **extra_args):
        del updates, extra_args
        if params is None or batch is None:
            raise ValueError(
                f"linsam.optax.{method.name} needs params and the batch: "
                "tx.update(grads, state, params, batch=(X, t))"
            )
        X, t = batch
        return method.direction(model, params, X, t, checked=checked), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def gd(model, **kw):
    r""":class:`~linsam.rules.GD`: :math:`u = \nabla L(\theta)`."""
    return from_method(R.GD(), model, **kw)


def nsam(rho, model, **kw):
    r""":class:`~linsam.rules.NSAM`: :math:`u = \nabla L(\theta + \rho g/\|g\|)` (optax.contrib.sam's step, one call)."""
    return from_method(R.NSAM(rho), model, **kw)


def one_sam(rho, model, *, chunk_size=None, **kw):
    r""":class:`~linsam.rules.OneSAM`: :math:`u = \frac1n\sum_i\nabla\ell_i(\theta + \epsilon_i)`."""
    return from_method(R.OneSAM(rho, chunk_size), model, **kw)


def lsam(rho, model, *, chunk_size=None, **kw):
    r""":class:`~linsam.rules.LSAM`: logit scale at :math:`\theta + \epsilon_i`, Jacobian at :math:`\theta`."""
    return from_method(R.LSAM(rho, chunk_size), model, **kw)


def jsam(rho, model, *, chunk_size=None, **kw):
    r""":class:`~linsam.rules.JSAM`: logit scale at :math:`\theta`, Jacobian at :math:`\theta + \epsilon_i`."""
    return from_method(R.JSAM(rho, chunk_size), model, **kw)


def jreg(rho, model, *, chunk_size=None, **kw):
    r""":class:`~linsam.rules.JReg`: GD on :math:`L + \frac{\rho}{n}\sum_i\|J_i^\top \mathrm{sg}(r_i)\|`."""
    return from_method(R.JReg(rho, chunk_size), model, **kw)


def jreg_fixed(lam_last, lam_act, model, **kw):
    r""":class:`~linsam.rules.JRegFixed`: GD plus fixed last-layer and activation penalties."""
    return from_method(R.JRegFixed(lam_last, lam_act), model, **kw)


def linear_loss(model, **kw):
    r"""GD on the linear loss :math:`-tf` (:class:`linsam.rules.LinearLoss`), a control."""
    return from_method(R.LinearLoss(), model, **kw)


def shifted_loss(shift, model, **kw):
    r"""GD on :math:`\mathrm{softplus}(C - tf)` (:class:`linsam.rules.ShiftedLoss`), a control."""
    return from_method(R.ShiftedLoss(shift), model, **kw)


def large_step(lr_mult, model, **kw):
    r"""GD with the step times ``lr_mult`` (:class:`linsam.rules.LargeStep`), a control."""
    return from_method(R.LargeStep(lr_mult), model, **kw)


def weight_decay(decay, model, **kw):
    r"""GD + weight decay (:class:`linsam.rules.WeightDecay`), a control."""
    return from_method(R.WeightDecay(decay), model, **kw)
