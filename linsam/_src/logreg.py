r"""Binary logistic regression: closed-form SAM-family rules.

Model :math:`f(w, x) = \langle w, x\rangle`, labels :math:`t \in \{-1, +1\}`, loss
:math:`\ell = -\log\sigma(t f) = \mathrm{softplus}(-z)` with margin :math:`z = t\langle w, x\rangle`.
Per-example gradient :math:`\nabla\ell_i = -t_i\,\sigma(-z_i)\,x_i`, so
:math:`\|\nabla\ell_i\| = \sigma(-z_i)\|x_i\|` and the 1-SAM perturbation is

.. math::

    \epsilon_i = \rho\,\frac{\nabla\ell_i}{\|\nabla\ell_i\|} = -\rho\, t_i\, \frac{x_i}{\|x_i\|},
    \qquad z_i(w + \epsilon_i) = z_i - \rho\|x_i\|,

giving the exact reweighting (Baek et al. 2024, Sec. 3, Lemma 3.1)

.. math::

    \nabla\ell_i(w + \epsilon_i) = \frac{\sigma(-z_i + \rho\|x_i\|)}{\sigma(-z_i)}\,\nabla\ell_i(w).

The Jacobian :math:`x_i` does not depend on :math:`w`, so L-SAM equals 1-SAM and J-SAM equals GD
exactly; the J-reg penalty :math:`\rho\,\sigma(-z_i)\|x_i\|` has zero gradient (its weight is
stop-gradiented), so J-reg equals GD too.

n-SAM perturbs along :math:`g = \nabla L(w)`: :math:`z_i(w + \rho g/\|g\|) = z_i + \rho\, t_i\langle x_i, g\rangle/\|g\|`,
so example i's weight is :math:`\sigma(-z_i - \rho t_i\langle x_i, g\rangle/\|g\|)/\sigma(-z_i)`.
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
    "MODEL", "RULES", "KERNELS", "f", "loss", "margins", "init", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg",
    "jreg_fixed", "direction", "one_sam_weight", "per_example_weights", "per_example_grad_norms",
]


def f(w, x):
    r""":math:`f(w, x) = \langle w, x\rangle`; x of shape (d,) or (n, d)."""
    return jnp.dot(x, w)


MODEL = _rules.Model(
    apply=f,
    loss_from_logits=_rules.binary_logistic_loss,
    num_classes=None,
    features=None,  # no hidden layer: no activation penalty
    last_layer=lambda w: w,
)


def _margins(w, X, t):
    return t * (X @ w)


def _check(w, X, t, rho=None):
    n, d = validate.check_inputs(X)
    validate.check_shape(w, (d,), "w")
    validate.check_binary_labels(t, n)
    if rho is not None:
        validate.check_rho(rho)


def margins(w, X, t):
    """Margins :math:`z_i = t_i\\langle w, x_i\\rangle`, shape (n,)."""
    _check(w, X, t)
    return _margins(w, X, t)


def loss(w, X, t):
    """Mean logistic loss :math:`\\frac1n\\sum_i \\mathrm{softplus}(-z_i)`."""
    _check(w, X, t)
    return jnp.mean(jax.nn.softplus(-_margins(w, X, t)))


def init(key, d: int, scale: float = 0.0, dtype=None):
    r"""Initial weights :math:`w \sim \mathrm{scale}\cdot\mathcal N(0, I_d/d)` (zeros for scale = 0)."""
    validate.check_positive_int(d, "d")
    validate.check_nonnegative(scale, "scale")
    dtype = dtype or jnp.zeros(()).dtype
    return scale * jax.random.normal(key, (d,), dtype) / math.sqrt(d)


def one_sam_weight(z, C):
    r"""Lemma 3.1 weight :math:`g(z) = \sigma(-z + C)/\sigma(-z) = (1 + e^{z})/(1 + e^{z - C})`.

    Computed as :math:`\exp(\log\sigma(-z + C) - \log\sigma(-z))`, stable for large :math:`|z|`.
    Increasing in z from 1 to :math:`e^C` when C > 0.
    """
    return jnp.exp(jax.nn.log_sigmoid(-z + C) - jax.nn.log_sigmoid(-z))


def _apply_weights(w, X, t, scale):
    """Direction -(1/n) sum_i t_i scale_i x_i."""
    return -((t * scale) @ X) / X.shape[0]


@jax.jit
def _gd(w, X, t):
    return _apply_weights(w, X, t, jax.nn.sigmoid(-_margins(w, X, t)))


def _one_sam_shift(w, X, t, rho):
    """Per-example margin shift rho||x_i|| where the gradient is non-zero, else 0 (eps = 0 convention)."""
    z = _margins(w, X, t)
    xn = jnp.linalg.norm(X, axis=1)
    active = (jax.nn.sigmoid(-z) > 0) & (xn > 0)
    return z, jnp.where(active, rho * xn, 0.0)


@jax.jit
def _one_sam(w, X, t, rho):
    z, C = _one_sam_shift(w, X, t, rho)
    return _apply_weights(w, X, t, jax.nn.sigmoid(-z + C))


def _nsam_shift(w, X, t, rho):
    g = _gd(w, X, t)
    unit = _rules.safe_normalize(g)
    return _margins(w, X, t), rho * t * (X @ unit)


@jax.jit
def _nsam(w, X, t, rho):
    z, delta = _nsam_shift(w, X, t, rho)
    return _apply_weights(w, X, t, jax.nn.sigmoid(-(z + delta)))


@jax.jit
def _jreg_fixed(w, X, t, lam_last, lam_act):
    return _gd(w, X, t) + lam_last * w


def _lsam(w, X, t, rho):
    return _one_sam(w, X, t, rho)


def _jsam(w, X, t, rho):
    return _gd(w, X, t)


def _jreg(w, X, t, rho):
    return _gd(w, X, t)


def gd(w, X, t):
    r""":math:`\nabla L(w) = -\frac1n\sum_i t_i\sigma(-z_i)x_i`."""
    _check(w, X, t)
    return _gd(w, X, t)


def one_sam(w, X, t, rho):
    r"""1-SAM: :math:`-\frac1n\sum_i t_i\sigma(-z_i + \rho\|x_i\|)x_i` (shift 0 where the gradient is 0)."""
    _check(w, X, t, rho)
    return _one_sam(w, X, t, rho)


def nsam(w, X, t, rho):
    r"""n-SAM: :math:`-\frac1n\sum_i t_i\sigma(-z_i - \rho t_i\langle x_i, g\rangle/\|g\|)x_i`."""
    _check(w, X, t, rho)
    return _nsam(w, X, t, rho)


def lsam(w, X, t, rho):
    """L-SAM equals 1-SAM exactly for the linear model (the Jacobian x does not depend on w)."""
    _check(w, X, t, rho)
    return _lsam(w, X, t, rho)


def jsam(w, X, t, rho):
    """J-SAM equals GD exactly for the linear model."""
    _check(w, X, t, rho)
    return _jsam(w, X, t, rho)


def jreg(w, X, t, rho):
    """J-reg equals GD for the linear model (the Jacobian norm ||x|| does not depend on w)."""
    _check(w, X, t, rho)
    return _jreg(w, X, t, rho)


def jreg_fixed(w, X, t, *, lam_last, lam_act):
    r"""GD plus weight decay :math:`\lambda_{\mathrm{last}} w` (no hidden activations to penalise)."""
    _check(w, X, t)
    validate.check_nonnegative(lam_last, "lam_last")
    validate.check_nonnegative(lam_act, "lam_act")
    return _jreg_fixed(w, X, t, lam_last, lam_act)


RULES = {"gd": gd, "nsam": nsam, "one_sam": one_sam, "lsam": lsam, "jsam": jsam, "jreg": jreg, "jreg_fixed": jreg_fixed}
KERNELS = {
    "gd": _gd, "nsam": _nsam, "one_sam": _one_sam, "lsam": _lsam, "jsam": _jsam, "jreg": _jreg,
    "jreg_fixed": _jreg_fixed,
}


def direction(method, w, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0):
    """Closed-form direction by method name (one of ``linsam.rules.METHODS``)."""
    return _rules.dispatch(RULES, method, w, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act)


def per_example_weights(w, X, t, rho, method: str = "one_sam"):
    r"""Weights :math:`a_i` with ``rule(w) = (1/n) sum_i a_i * grad l_i(w)`` for 1-SAM or n-SAM.

    1-SAM: :math:`a_i = \sigma(-z_i + \rho\|x_i\|)/\sigma(-z_i)` (Lemma 3.1);
    n-SAM: :math:`a_i = \sigma(-z_i - \rho t_i\langle x_i, g\rangle/\|g\|)/\sigma(-z_i)`. Shape (n,).
    """
    _check(w, X, t, rho)
    validate.check_method(method, ("one_sam", "nsam"))
    if method == "one_sam":
        # The weight of Lemma 3.1 does not depend on sigmoid(-z) (eps_i = -rho t_i x_i/||x_i||),
        # so only x_i = 0 needs the eps = 0 convention here; where sigmoid(-z_i) underflows the
        # weight still is sigmoid(-z + C)/sigmoid(-z) -> e^C (it multiplies a zero gradient).
        z = _margins(w, X, t)
        xn = jnp.linalg.norm(X, axis=1)
        return one_sam_weight(z, jnp.where(xn > 0, rho * xn, 0.0))
    z, delta = _nsam_shift(w, X, t, rho)
    return one_sam_weight(z, -delta)


def per_example_grad_norms(w, X, t):
    r""":math:`\|\nabla\ell_i(w)\| = \sigma(-z_i)\|x_i\|`, shape (n,)."""
    _check(w, X, t)
    return jax.nn.sigmoid(-_margins(w, X, t)) * jnp.linalg.norm(X, axis=1)
