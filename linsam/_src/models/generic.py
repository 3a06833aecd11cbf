r"""Any pytree model, defined by its per-example function and loss; every member by autodiff.

For a model given only as :math:`f(\theta, x)` and :math:`\ell(f, t)`, the members of a model
definition come from ``jax``:

.. math::

    J_i = \|\partial f(\theta, x_i)/\partial\theta\|_{\mathrm{op}}
        = \sqrt{\lambda_{\max}(J_i J_i^\top)}, \qquad
    \epsilon_i = \rho\,\frac{\nabla\ell_i(\theta)}{\|\nabla\ell_i(\theta)\|}\ (0 \text{ where } \nabla\ell_i = 0),

(for a scalar output :math:`J_i = \|\nabla_\theta f(x_i)\|`), the 1-SAM point
:math:`(f(\theta + \epsilon_i, x_i), J_i(\theta + \epsilon_i))`, and margins :math:`t_i f_i`
(binary) or :math:`f_{t_i} - \max_{k\ne t_i} f_k` (K classes). It has no closed forms: every
rule runs by generic autodiff (:mod:`linsam.rules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from linsam._src import rules as R
from linsam._src.models._common import SAMPoint, binary_margins, class_margins


def _jacobian_norm_one(apply, params, x):
    """Operator norm of d f(params, x)/d params for one example (scalar or (K,) output)."""
    out = apply(params, x)
    if jnp.ndim(out) == 0:
        return R.safe_norm(jax.grad(apply)(params, x))
    _, pullback = jax.vjp(lambda p: apply(p, x), params)
    rows = jax.vmap(lambda e: pullback(e)[0])(jnp.eye(out.shape[-1], dtype=out.dtype))  # J^T e_k, leading K
    flat = jnp.concatenate([jnp.reshape(a, (a.shape[0], -1)) for a in jax.tree_util.tree_leaves(rows)], axis=1)
    gram = flat @ flat.T
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 0.0))


@dataclasses.dataclass(frozen=True)
class Generic:
    """A model given by its per-example function and loss (a pytree of parameters of any shape).

    Attributes:
      apply: ``apply(params, x) -> logits`` for ONE example: a scalar (binary) or (K,).
      loss_from_logits: ``(logits, t) -> scalar`` per-example loss
        (:func:`linsam.rules.binary_logistic_loss`, :func:`linsam.rules.softmax_cross_entropy`).
      num_classes: None for binary (labels in {-1, +1}), else K (labels int in [0, K)).
      features: ``features(params, x)``, penultimate activations (``JRegFixed``), or None.
      last_layer: ``last_layer(params)``, last-layer weights (``JRegFixed``), or None.
      apply_batch: ``apply_batch(params, X) -> (n,) or (n, K)``; None means ``vmap(apply)``.
        Only GD/n-SAM use it (so batch-coupled layers such as BatchNorm can be used there).
      init: ``init(key, d, *, scale, dtype)`` or None.

    Hashable (callables compare by identity), so it can be a static argument of ``jit``: build
    it once and reuse it, or every new instance recompiles.
    """

    apply: Callable
    loss_from_logits: Callable
    num_classes: int | None = None
    features: Callable | None = None
    last_layer: Callable | None = None
    apply_batch: Callable | None = None
    init: Callable | None = None

    end_to_end = None  # nonlinear in general: no end-to-end linear map

    @property
    def closed_forms(self) -> dict:
        """None: every rule runs by generic autodiff."""
        return {}

    def logits(self, params, X):
        """Batch logits: ``apply_batch`` or ``vmap(apply)``."""
        return R.batch_logits(self, params, X)

    def loss(self, params, X, t):
        """Mean loss over the batch."""
        return R.batch_loss(self, params, X, t)

    def margins(self, params, X, t):
        """Binary :math:`t_i f_i`, or K-class :math:`f_{t_i} - \\max_{k\\ne t_i} f_k`, shape (n,)."""
        logits = self.logits(params, X)
        return binary_margins(logits, t) if self.num_classes is None else class_margins(logits, t)

    def jacobian_norm(self, params, X):
        """Operator norm of each example's Jacobian, shape (n,)."""
        return jax.vmap(lambda x: _jacobian_norm_one(self.apply, params, x))(X)

    def one_sam_point(self, params, X, t, rho) -> SAMPoint:
        """Logits and Jacobian norm at each example's 1-SAM point, by autodiff."""

        def one(x, ti):
            eps = R.perturbation(self, params, x, ti, rho)
            p = R.tree_add(params, eps)
            return self.apply(p, x), _jacobian_norm_one(self.apply, p, x)

        return SAMPoint(*jax.vmap(one)(X, t))

    def norms(self, params, X) -> dict:
        """``w_norm``: the norm of all parameters."""
        return dict(w_norm=R.safe_norm(params))
