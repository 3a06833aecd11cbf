r"""Measurements by generic autodiff (``jax.grad`` through :mod:`linsam.rules`), to put next to
the closed-form predictions.

The predictions (lines in the figures) come from closed forms: the Lemma 3.1 weight
:func:`linsam.logreg.one_sam_weight` and the per-example quantities that
:func:`linsam.simulate.record_metrics` computes from margins. The measurements here (markers)
never use those formulas: they differentiate the per-example loss at :math:`\theta` and at the
1-SAM point :math:`\theta + \epsilon_i`, :math:`\epsilon_i = \rho\,\nabla\ell_i/\|\nabla\ell_i\|`
(:math:`\epsilon_i = 0` where the gradient is 0).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from linsam import rules

__all__ = ["per_example_sam_grads", "one_sam_weights_autodiff", "sam_grad_norms_autodiff", "clean_noisy_ratio"]


@partial(jax.jit, static_argnames=("model",))
def per_example_sam_grads(model, params, X, t, rho):
    r"""Per-example :math:`(\nabla\ell_i(\theta), \nabla\ell_i(\theta + \epsilon_i))`, pytrees with leading axis n."""

    def one(x, ti):
        g = jax.grad(rules.example_loss, argnums=1)(model, params, x, ti)
        eps = rules.perturbation(model, params, x, ti, rho)  # rho grad/||grad||, 0 where grad = 0
        g_sam = jax.grad(rules.example_loss, argnums=1)(model, rules.tree_add(params, eps), x, ti)
        return g, g_sam

    return jax.vmap(one)(X, t)


def _tree_norms(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(a.reshape(a.shape[0], -1) ** 2, axis=1) for a in leaves))


def one_sam_weights_autodiff(model, params, X, t, rho):
    r"""Measured 1-SAM weight :math:`\|\nabla\ell_i(\theta+\epsilon_i)\|/\|\nabla\ell_i(\theta)\|`, shape (n,).

    For logistic regression the two gradients are parallel (both along :math:`t_i x_i`) and
    this is the Lemma 3.1 weight :math:`\sigma(-z_i + \rho\|x_i\|)/\sigma(-z_i)`.
    """
    g, g_sam = per_example_sam_grads(model, params, X, t, rho)
    return _tree_norms(g_sam) / _tree_norms(g)


def sam_grad_norms_autodiff(model, params, X, t, rho):
    r"""Measured :math:`\|\nabla\ell_i(\theta + \epsilon_i)\|`, shape (n,)."""
    _, g_sam = per_example_sam_grads(model, params, X, t, rho)
    return _tree_norms(g_sam)


def clean_noisy_ratio(values, mask):
    """Mean of ``values`` over clean examples divided by the mean over noisy ones (``mask`` True = noisy)."""
    values = jnp.asarray(values)
    clean = jnp.sum(jnp.where(mask, 0.0, values)) / jnp.maximum(jnp.sum(~mask), 1)
    noisy = jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
    return clean / noisy
