r"""Multi-class linear softmax model: closed-form SAM-family rules.

Model :math:`f(W, x) = W x \in \mathbb R^K`, :math:`W \in \mathbb R^{K\times d}`, labels
:math:`t \in \{0, \dots, K-1\}`, loss :math:`\ell = \log\sum_k e^{f_k} - f_t`. With
:math:`p = \mathrm{softmax}(Wx)` and logit scale :math:`r = p - e_t`:

.. math::

    \nabla_W \ell = r\, x^\top, \qquad \|\nabla_W\ell\| = \|r\|\,\|x\|, \qquad
    \epsilon = \rho\,\frac{r\,x^\top}{\|r\|\,\|x\|},

so the perturbed logits are :math:`f(W + \epsilon, x) = W x + \rho\|x\|\, r/\|r\|` and

.. math::

    \nabla\ell(W + \epsilon) = \big(\mathrm{softmax}(Wx + \rho\|x\|\, r/\|r\|) - e_t\big)\, x^\top .

The labelled logit drops by :math:`\rho\|x\|(1 - p_t)/\|r\|` and each other logit rises by
:math:`\rho\|x\| p_k/\|r\|`. As in the binary case the Jacobian :math:`x^\top` does not depend
on W: L-SAM equals 1-SAM, J-SAM equals GD, J-reg equals GD.
"""

from __future__ import annotations

import functools

import math

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import rules as _rules
from linsam._src import validate

__all__ = [
    "MODEL", "RULES", "KERNELS", "f", "loss", "init", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed",
    "direction", "logit_scale", "perturbed_logits", "make_model",
]


def f(W, x):
    r""":math:`f(W, x) = W x`; x of shape (d,) gives (K,), X of shape (n, d) gives (n, K)."""
    return jnp.dot(x, W.T)


@functools.lru_cache(maxsize=None)
def make_model(num_classes: int) -> _rules.Model:
    """The :class:`linsam.rules.Model` of the K-class linear softmax model."""
    validate.check_positive_int(num_classes, "num_classes", minimum=2)
    return _rules.Model(
        apply=f,
        loss_from_logits=_rules.softmax_cross_entropy,
        num_classes=num_classes,
        features=None,
        last_layer=lambda W: W,
    )


#: The 2-class model. For K classes use ``make_model(K)``: the generic rules validate labels
#: against ``Model.num_classes`` (the closed forms here validate against ``W.shape[0]``).
MODEL = make_model(2)


def _check(W, X, t, rho=None):
    n, d = validate.check_inputs(X)
    if np.ndim(W) != 2 or np.shape(W)[1] != d or np.shape(W)[0] < 2:
        raise ValueError(f"W must have shape (K, {d}) with K >= 2 classes, got shape {np.shape(W)}")
    validate.check_shape(W, np.shape(W), "W")
    validate.check_class_labels(t, n, np.shape(W)[0])
    if rho is not None:
        validate.check_rho(rho)


def init(key, d: int, num_classes: int, scale: float = 0.0, dtype=None):
    r"""Initial weights :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, 1/d)`, shape (K, d)."""
    validate.check_positive_int(d, "d")
    validate.check_positive_int(num_classes, "num_classes", minimum=2)
    validate.check_nonnegative(scale, "scale")
    dtype = dtype or jnp.zeros(()).dtype
    return scale * jax.random.normal(key, (num_classes, d), dtype) / math.sqrt(d)


def _logit_scale(logits, t):
    return jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)


def logit_scale(W, X, t):
    """:math:`r_i = p_i - e_{t_i}`, shape (n, K)."""
    _check(W, X, t)
    return _logit_scale(f(W, X), t)


def loss(W, X, t):
    """Mean softmax cross-entropy."""
    _check(W, X, t)
    logits = f(W, X)
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, t[:, None], axis=1)[:, 0])


def _direction_from_scale(R, X):
    """(1/n) sum_i r_i x_i^T, shape (K, d)."""
    return R.T @ X / X.shape[0]


@jax.jit
def _gd(W, X, t):
    return _direction_from_scale(_logit_scale(f(W, X), t), X)


def _perturbed_logits(W, X, t, rho):
    logits = f(W, X)
    R = _logit_scale(logits, t)
    unit_r = jax.vmap(_rules.safe_normalize)(R)  # r/||r||, 0 where r = 0
    xn = jnp.linalg.norm(X, axis=1)
    return logits + rho * xn[:, None] * unit_r  # x = 0 rows: shift 0, eps = 0 convention


def perturbed_logits(W, X, t, rho):
    r"""1-SAM perturbed logits :math:`W x_i + \rho\|x_i\|\, r_i/\|r_i\|`, shape (n, K)."""
    _check(W, X, t, rho)
    return _perturbed_logits(W, X, t, rho)


@jax.jit
def _one_sam(W, X, t, rho):
    return _direction_from_scale(_logit_scale(_perturbed_logits(W, X, t, rho), t), X)


@jax.jit
def _nsam(W, X, t, rho):
    G = _gd(W, X, t)
    return _gd(W + rho * _rules.safe_normalize(G), X, t)


@jax.jit
def _jreg_fixed(W, X, t, lam_last, lam_act):
    return _gd(W, X, t) + lam_last * W


def _lsam(W, X, t, rho):
    return _one_sam(W, X, t, rho)


def _jsam(W, X, t, rho):
    return _gd(W, X, t)


def _jreg(W, X, t, rho):
    return _gd(W, X, t)


def gd(W, X, t):
    r""":math:`\frac1n\sum_i (p_i - e_{t_i}) x_i^\top`."""
    _check(W, X, t)
    return _gd(W, X, t)


def one_sam(W, X, t, rho):
    r"""1-SAM: :math:`\frac1n\sum_i (\mathrm{softmax}(Wx_i + \rho\|x_i\| r_i/\|r_i\|) - e_{t_i}) x_i^\top`."""
    _check(W, X, t, rho)
    return _one_sam(W, X, t, rho)


def nsam(W, X, t, rho):
    r"""n-SAM: GD direction at :math:`W + \rho G/\|G\|`, :math:`G = \nabla L(W)`."""
    _check(W, X, t, rho)
    return _nsam(W, X, t, rho)


def lsam(W, X, t, rho):
    """L-SAM equals 1-SAM exactly for the linear softmax model."""
    _check(W, X, t, rho)
    return _lsam(W, X, t, rho)


def jsam(W, X, t, rho):
    """J-SAM equals GD exactly for the linear softmax model."""
    _check(W, X, t, rho)
    return _jsam(W, X, t, rho)


def jreg(W, X, t, rho):
    """J-reg equals GD for the linear softmax model."""
    _check(W, X, t, rho)
    return _jreg(W, X, t, rho)


def jreg_fixed(W, X, t, *, lam_last, lam_act):
    r"""GD plus weight decay :math:`\lambda_{\mathrm{last}} W`."""
    _check(W, X, t)
    validate.check_nonnegative(lam_last, "lam_last")
    validate.check_nonnegative(lam_act, "lam_act")
    return _jreg_fixed(W, X, t, lam_last, lam_act)


RULES = {"gd": gd, "nsam": nsam, "one_sam": one_sam, "lsam": lsam, "jsam": jsam, "jreg": jreg, "jreg_fixed": jreg_fixed}
KERNELS = {
    "gd": _gd, "nsam": _nsam, "one_sam": _one_sam, "lsam": _lsam, "jsam": _jsam, "jreg": _jreg,
    "jreg_fixed": _jreg_fixed,
}


def direction(method, W, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0):
    """Closed-form direction by method name (one of ``linsam.rules.METHODS``)."""
    return _rules.dispatch(RULES, method, W, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act)
