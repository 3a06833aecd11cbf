r"""2-layer deep linear network: closed-form SAM-family rules.

Model :math:`f(v, W, x) = \langle v, W x\rangle` with :math:`W \in \mathbb R^{h\times d}`,
:math:`v \in \mathbb R^h`, binary labels :math:`t\in\{-1,+1\}`, logistic loss. Write
:math:`z = Wx` (the hidden activation), :math:`s = \sigma(-t f)` and

.. math::

    \nabla_v f = z, \qquad \nabla_W f = v x^\top, \qquad
    J = \|\nabla_{(v,W)} f\| = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2} .

Per-example gradient :math:`\nabla\ell = -t s\,(z, v x^\top)`, so the 1-SAM perturbation is
:math:`\epsilon = -\rho t\,(z, v x^\top)/J` (:math:`\epsilon = 0` where :math:`sJ = 0`). With
:math:`a = \rho t/J`, the perturbed point is :math:`v' = v - a z`, :math:`W' = W - a v x^\top`:

.. math::

    z' &= W' x = z - a\|x\|^2 v, \qquad
    f(w+\epsilon) = \langle v', z'\rangle = f - \rho t J + \rho^2 \|x\|^2 f / J^2, \\
    \text{1-SAM:}\ & -t\,\sigma(-t f')\,(z',\ v' x^\top), \qquad
    \text{L-SAM:}\ -t\,\sigma(-t f')\,(z,\ v x^\top), \qquad
    \text{J-SAM:}\ -t\,\sigma(-t f)\,(z',\ v' x^\top) .

Proposition 4.1 (Baek et al. 2024): since :math:`t a = \rho/J`, J-SAM's direction is

.. math::

    \nabla_v: -t s z + \frac{\rho s}{J}\|x\|^2 v, \qquad
    \nabla_W: -t s\, v x^\top + \frac{\rho s}{J}\, z x^\top,

GD plus the gradient of the penalty :math:`\rho\,\mathrm{sg}(s)\,J` (an L2-type penalty on
:math:`\|v\|` and :math:`\|Wx\|` with loss-dependent weight :math:`\rho s/J`). Hence for the DLN
``jreg`` equals ``jsam`` exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import math

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import rules as _rules
from linsam._src import validate

__all__ = [
    "DLNParams", "MODEL", "RULES", "KERNELS", "f", "loss", "margins", "init", "gd", "nsam", "one_sam", "lsam", "jsam",
    "jreg", "jreg_fixed", "direction", "jacobian_norm", "jsam_penalty", "perturbed_logit", "hidden",
]


class DLNParams(NamedTuple):
    """Parameters of the 2-layer deep linear network.

    Attributes:
      v: last-layer weights, shape (h,).
      W: first-layer weights, shape (h, d).
    """

    v: jax.Array
    W: jax.Array


def f(params: DLNParams, x):
    r""":math:`f = \langle v, W x\rangle`; x of shape (d,) gives (), X of shape (n, d) gives (n,)."""
    return jnp.dot(jnp.dot(x, params.W.T), params.v)


def hidden(params: DLNParams, x):
    """Hidden activation :math:`z = W x` (the penultimate features), shape (h,) or (n, h)."""
    return jnp.dot(x, params.W.T)


MODEL = _rules.Model(
    apply=f,
    loss_from_logits=_rules.binary_logistic_loss,
    num_classes=None,
    features=hidden,
    last_layer=lambda p: p.v,
)


def _check_params(params, d):
    if not isinstance(params, DLNParams):
        raise ValueError(f"params must be a linsam.dln.DLNParams(v, W), got {type(params).__name__}")
    if np.ndim(params.v) != 1 or np.shape(params.v)[0] < 1:
        raise ValueError(f"params.v must have shape (h,) with h >= 1, got shape {np.shape(params.v)}")
    h = np.shape(params.v)[0]
    validate.check_shape(params.v, (h,), "params.v")
    validate.check_shape(params.W, (h, d), "params.W")


def _check(params, X, t, rho=None):
    n, d = validate.check_inputs(X)
    _check_params(params, d)
    validate.check_binary_labels(t, n)
    if rho is not None:
        validate.check_rho(rho)


def init(key, d: int, h: int, scale: float = 1.0, dtype=None) -> DLNParams:
    r"""Initial params :math:`v \sim \mathrm{scale}\cdot\mathcal N(0, I_h/h)`, :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, I/d)`.

    ``scale = 0`` gives the all-zero network, a stationary point of every rule (zero gradient).
    """
    validate.check_positive_int(d, "d")
    validate.check_positive_int(h, "h")
    validate.check_nonnegative(scale, "scale")
    dtype = dtype or jnp.zeros(()).dtype
    kv, kw = jax.random.split(key)
    return DLNParams(
        v=scale * jax.random.normal(kv, (h,), dtype) / math.sqrt(h),
        W=scale * jax.random.normal(kw, (h, d), dtype) / math.sqrt(d),
    )


def _margins(params, X, t):
    return t * f(params, X)


def margins(params, X, t):
    """Margins :math:`z_i = t_i f(x_i)`, shape (n,)."""
    _check(params, X, t)
    return _margins(params, X, t)


def loss(params, X, t):
    """Mean logistic loss."""
    _check(params, X, t)
    return jnp.mean(jax.nn.softplus(-_margins(params, X, t)))


def _parts(params, X, t):
    """Shared pieces: Z (n,h), margins, s = sigmoid(-t f), ||x||^2 (n,), J (n,)."""
    Z = hidden(params, X)
    m = t * (Z @ params.v)
    s = jax.nn.sigmoid(-m)
    xn2 = jnp.sum(X * X, axis=1)
    J = jnp.sqrt(jnp.sum(Z * Z, axis=1) + xn2 * jnp.sum(params.v * params.v))
    return Z, m, s, xn2, J


def _direction(Zeff, Veff, X, coef, params):
    """(1/n) sum_i coef_i (z_eff_i, v_eff_i x_i^T) as DLNParams; Veff None means v for every i."""
    n = X.shape[0]
    gv = coef @ Zeff / n
    if Veff is None:
        gW = jnp.outer(params.v, coef @ X) / n
    else:
        gW = (coef[:, None] * Veff).T @ X / n
    return DLNParams(v=gv, W=gW)


def _perturbed(params, X, t, rho):
    """Per-example perturbed pieces: a_i, Z'_i, V'_i, f'_i."""
    Z, m, s, xn2, J = _parts(params, X, t)
    active = (s > 0) & (J > 0)
    a = jnp.where(active, rho * t / jnp.where(active, J, 1.0), 0.0)
    Zp = Z - (a * xn2)[:, None] * params.v[None, :]
    Vp = params.v[None, :] - a[:, None] * Z
    fp = jnp.sum(Vp * Zp, axis=1)
    return Z, s, Zp, Vp, fp


@jax.jit
def _gd(params, X, t):
    Z, m, s, xn2, J = _parts(params, X, t)
    return _direction(Z, None, X, -t * s, params)


@jax.jit
def _one_sam(params, X, t, rho):
    Z, s, Zp, Vp, fp = _perturbed(params, X, t, rho)
    return _direction(Zp, Vp, X, -t * jax.nn.sigmoid(-t * fp), params)


@jax.jit
def _lsam(params, X, t, rho):
    Z, s, Zp, Vp, fp = _perturbed(params, X, t, rho)
    return _direction(Z, None, X, -t * jax.nn.sigmoid(-t * fp), params)


@jax.jit
def _jsam(params, X, t, rho):
    Z, s, Zp, Vp, fp = _perturbed(params, X, t, rho)
    return _direction(Zp, Vp, X, -t * s, params)


@jax.jit
def _jreg(params, X, t, rho):
    Z, m, s, xn2, J = _parts(params, X, t)
    c = jnp.where(J > 0, rho * s / jnp.where(J > 0, J, 1.0), 0.0)  # rho sg(s)/J, 0 where J = 0
    n = X.shape[0]
    g = _gd(params, X, t)
    return DLNParams(v=g.v + (c @ xn2 / n) * params.v, W=g.W + (c[:, None] * Z).T @ X / n)


@jax.jit
def _nsam(params, X, t, rho):
    g = _gd(params, X, t)
    unit = _rules.safe_normalize(g)
    return _gd(DLNParams(params.v + rho * unit.v, params.W + rho * unit.W), X, t)


@jax.jit
def _jreg_fixed(params, X, t, lam_last, lam_act):
    g = _gd(params, X, t)
    Z = hidden(params, X)
    return DLNParams(v=g.v + lam_last * params.v, W=g.W + lam_act * Z.T @ X / X.shape[0])


def gd(params, X, t):
    r""":math:`-\frac1n\sum_i t_i s_i (z_i, v x_i^\top)`."""
    _check(params, X, t)
    return _gd(params, X, t)


def one_sam(params, X, t, rho):
    r"""1-SAM: :math:`-\frac1n\sum_i t_i\sigma(-t_i f'_i)(z'_i, v'_i x_i^\top)` (see module doc)."""
    _check(params, X, t, rho)
    return _one_sam(params, X, t, rho)


def lsam(params, X, t, rho):
    r"""L-SAM: :math:`-\frac1n\sum_i t_i\sigma(-t_i f'_i)(z_i, v x_i^\top)`."""
    _check(params, X, t, rho)
    return _lsam(params, X, t, rho)


def jsam(params, X, t, rho):
    r"""J-SAM: :math:`-\frac1n\sum_i t_i s_i (z'_i, v'_i x_i^\top)` = GD + Prop. 4.1 penalty gradient."""
    _check(params, X, t, rho)
    return _jsam(params, X, t, rho)


def jreg(params, X, t, rho):
    r"""GD + :math:`\frac1n\sum_i \frac{\rho\,\mathrm{sg}(s_i)}{J_i}(\|x_i\|^2 v,\ z_i x_i^\top)`; equals J-SAM exactly."""
    _check(params, X, t, rho)
    return _jreg(params, X, t, rho)


def nsam(params, X, t, rho):
    r"""n-SAM: GD direction at :math:`(v, W) + \rho g/\|g\|`."""
    _check(params, X, t, rho)
    return _nsam(params, X, t, rho)


def jreg_fixed(params, X, t, *, lam_last, lam_act):
    r"""GD + :math:`\lambda_{\mathrm{last}} v` on v and :math:`\lambda_{\mathrm{act}}\frac1n\sum_i z_i x_i^\top` on W.

    The gradient of :math:`\frac{\lambda_{\mathrm{last}}}2\|v\|^2 + \frac{\lambda_{\mathrm{act}}}{2n}\sum_i\|Wx_i\|^2`:
    the cheap, fixed-coefficient version of the Proposition 4.1 penalty.
    """
    _check(params, X, t)
    validate.check_nonnegative(lam_last, "lam_last")
    validate.check_nonnegative(lam_act, "lam_act")
    return _jreg_fixed(params, X, t, lam_last, lam_act)


RULES = {"gd": gd, "nsam": nsam, "one_sam": one_sam, "lsam": lsam, "jsam": jsam, "jreg": jreg, "jreg_fixed": jreg_fixed}
KERNELS = {
    "gd": _gd, "nsam": _nsam, "one_sam": _one_sam, "lsam": _lsam, "jsam": _jsam, "jreg": _jreg,
    "jreg_fixed": _jreg_fixed,
}


def direction(method, params, X, t, *, rho=0.0, lam_last=0.0, lam_act=0.0):
    """Closed-form direction by method name (one of ``linsam.rules.METHODS``)."""
    return _rules.dispatch(RULES, method, params, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act)


def jacobian_norm(params, X):
    r""":math:`J_i = \|\nabla_{(v,W)} f(x_i)\| = \sqrt{\|W x_i\|^2 + \|x_i\|^2\|v\|^2}`, shape (n,)."""
    n, d = validate.check_inputs(X)
    _check_params(params, d)
    return _parts(params, X, jnp.ones((n,), X.dtype))[4]


def _jsam_penalty(params, X, t, rho):
    Z, m, s, xn2, J = _parts(params, X, t)
    return rho * jnp.mean(jax.lax.stop_gradient(s) * J)


def jsam_penalty(params, X, t, rho):
    r"""Proposition 4.1 penalty :math:`\frac{\rho}{n}\sum_i \mathrm{sg}(\sigma(-t_i f_i))\, J_i`.

    Its gradient (with the sigmoid stop-gradiented) is exactly J-SAM minus GD.
    """
    _check(params, X, t, rho)
    return _jsam_penalty(params, X, t, rho)


def perturbed_logit(params, X, t, rho):
    r"""Exact :math:`f(w + \epsilon_i, x_i) = f_i - \rho t_i J_i + \rho^2\|x_i\|^2 f_i/J_i^2`, shape (n,).

    Computed from the perturbed weights (not the formula), so tests can compare the two.
    """
    _check(params, X, t, rho)
    return _perturbed(params, X, t, rho)[4]
