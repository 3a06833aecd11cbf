r"""2-layer deep linear network as plain functions (a thin face over :class:`linsam.models.DLN`).

Every formula (f, J, the 1-SAM point, Proposition 4.1's penalty, the closed-form rules) lives
in :mod:`linsam._src.models.dln`; the rules are the method values of :mod:`linsam.rules`
(``OneSAM(rho).direction(DLN(), params, X, t)``). This module keeps the functional spelling of
the model's quantities, with input checks.
"""

from __future__ import annotations

import jax.numpy as jnp

from linsam._src import rules as _rules
from linsam._src.models.dln import DLN, DLNParams

__all__ = ["DLNParams", "MODEL", "f", "hidden", "loss", "margins", "init", "jacobian_norm", "jsam_penalty",
           "perturbed_logit"]

#: The model definition (any width).
MODEL = DLN()
f = MODEL.apply
hidden = MODEL.features


def _check(params, X, t=None, rho=None):
    if t is None:
        t = jnp.ones((jnp.shape(X)[0],) if jnp.ndim(X) >= 1 else (1,), getattr(X, "dtype", None))
    _rules.validate_inputs(MODEL, params, X, t, None if rho is None else _rules.OneSAM(rho))


def init(key, d: int, h: int, scale: float = 1.0, dtype=None) -> DLNParams:
    r"""Initial params :math:`v \sim \mathrm{scale}\cdot\mathcal N(0, I_h/h)`, :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, I/d)`."""
    return DLN(hidden=h).init(key, d, scale=scale, dtype=dtype)


def margins(params, X, t):
    """Margins :math:`z_i = t_i f(x_i)`, shape (n,)."""
    _check(params, X, t)
    return MODEL.margins(params, X, t)


def loss(params, X, t):
    """Mean logistic loss."""
    _check(params, X, t)
    return MODEL.loss(params, X, t)


def jacobian_norm(params, X):
    r""":math:`J_i = \sqrt{\|W x_i\|^2 + \|x_i\|^2\|v\|^2}`, shape (n,)."""
    _check(params, X)
    return MODEL.jacobian_norm(params, X)


def jsam_penalty(params, X, t, rho):
    r"""Proposition 4.1 penalty :math:`\frac{\rho}{n}\sum_i \mathrm{sg}(\sigma(-t_i f_i))\, J_i` (gradient = J-SAM - GD)."""
    _check(params, X, t, rho)
    return MODEL.jsam_penalty(params, X, t, rho)


def perturbed_logit(params, X, t, rho):
    r"""Exact :math:`f(w + \epsilon_i, x_i) = f_i - \rho t_i J_i + \rho^2\|x_i\|^2 f_i/J_i^2`, shape (n,).

    Computed from the perturbed weights (not the formula), so tests can compare the two.
    """
    _check(params, X, t, rho)
    return MODEL.one_sam_point(params, X, t, rho).logits


