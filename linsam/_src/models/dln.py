r"""2-layer deep linear network, one definition.

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

GD plus the gradient of the penalty :math:`P = \frac{\rho}{n}\sum_i \mathrm{sg}(s_i)\,J_i`
(an L2-type penalty on :math:`\|v\|` and :math:`\|Wx\|` with loss-dependent weight
:math:`\rho s/J`). Hence for the DLN ``jreg`` equals ``jsam`` exactly.

Overflow: norms are scaled (:math:`\|a\| = m\|a/m\|`), :math:`J` is a ``hypot`` and
:math:`a\|x\|^2` is formed as :math:`\rho t (\|x\|/J)\|x\|`, so every rule stays finite for any
finite input whose direction is representable (no :math:`\|x\|^2` overflow).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import rules as R
from linsam._src import validate
from linsam._src.models._common import (
    SAMPoint, binary_margins, check_init, check_linear_X, hypot, init_normal, row_norms, vector_norm,
)


class DLNParams(NamedTuple):
    """Parameters of the 2-layer deep linear network.

    Attributes:
      v: last-layer weights, shape (h,).
      W: first-layer weights, shape (h, d).
    """

    v: jax.Array
    W: jax.Array


class _Parts(NamedTuple):
    Z: jax.Array  # (n, h) hidden activations W x_i
    f: jax.Array  # (n,) logits
    s: jax.Array  # (n,) sigma(-t f)
    xn: jax.Array  # (n,) ||x_i||
    J: jax.Array  # (n,) Jacobian norms


def _jac(zn, xn, vn):
    r""":math:`J = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2}` as a hypot (no square overflows)."""
    return hypot(zn, xn * vn)


def _parts(p: DLNParams, X, t) -> _Parts:
    Z = X @ p.W.T
    f = Z @ p.v
    xn = row_norms(X)
    return _Parts(Z, f, jax.nn.sigmoid(-t * f), xn, _jac(row_norms(Z), xn, vector_norm(p.v)))


class _Point(NamedTuple):
    Zp: jax.Array  # (n, h) W'_i x_i
    Vp: jax.Array  # (n, h) v'_i
    fp: jax.Array  # (n,) f(theta + eps_i, x_i)


def _ratio(num, J, active):
    """num / J where active, else 0 (the eps = 0 convention; never 0/0)."""
    return jnp.where(active, num / jnp.where(active, J, 1.0), 0.0)


def _point(p: DLNParams, X, t, rho, q: _Parts) -> _Point:
    """Each example's 1-SAM point: v' = v - a z, W' x = z - a ||x||^2 v with a = rho t / J."""
    active = (q.s > 0) & (q.J > 0)
    a = _ratio(rho * t, q.J, active)  # |a z| <= rho: no overflow
    a_xn2 = _ratio(rho * t * q.xn, q.J, active) * q.xn  # a ||x||^2 without forming ||x||^2
    Zp = q.Z - a_xn2[:, None] * p.v[None, :]
    Vp = p.v[None, :] - a[:, None] * q.Z
    return _Point(Zp, Vp, jnp.sum(Vp * Zp, axis=1))


def _direction(Zeff, Veff, X, coef, p):
    """(1/n) sum_i coef_i (z_eff_i, v_eff_i x_i^T) as DLNParams; Veff None means v for every i."""
    n = X.shape[0]
    gv = coef @ Zeff / n
    gW = jnp.outer(p.v, coef @ X) / n if Veff is None else (coef[:, None] * Veff).T @ X / n
    return DLNParams(v=gv, W=gW)


def _gd(method, p, X, t):
    q = _parts(p, X, t)
    return _direction(q.Z, None, X, -t * q.s, p)


def _one_sam(method, p, X, t):
    q = _parts(p, X, t)
    pt = _point(p, X, t, method.rho, q)
    return _direction(pt.Zp, pt.Vp, X, -t * jax.nn.sigmoid(-t * pt.fp), p)


def _lsam(method, p, X, t):
    q = _parts(p, X, t)
    pt = _point(p, X, t, method.rho, q)
    return _direction(q.Z, None, X, -t * jax.nn.sigmoid(-t * pt.fp), p)


def _jsam(method, p, X, t):
    q = _parts(p, X, t)
    pt = _point(p, X, t, method.rho, q)
    return _direction(pt.Zp, pt.Vp, X, -t * q.s, p)


def _jreg(method, p, X, t):
    """GD + (1/n) sum_i c_i (||x_i||^2 v, z_i x_i^T), c_i = rho sg(s_i)/J_i (Prop. 4.1)."""
    q = _parts(p, X, t)
    active = q.J > 0
    c = _ratio(method.rho * q.s, q.J, active)
    c_xn2 = _ratio(method.rho * q.s * q.xn, q.J, active) * q.xn
    n = X.shape[0]
    g = _direction(q.Z, None, X, -t * q.s, p)
    return DLNParams(v=g.v + (jnp.sum(c_xn2) / n) * p.v, W=g.W + (c[:, None] * q.Z).T @ X / n)


def _nsam(method, p, X, t):
    unit = R.safe_normalize(_gd(method, p, X, t))
    return _gd(method, DLNParams(p.v + method.rho * unit.v, p.W + method.rho * unit.W), X, t)


def _linear_loss(method, p, X, t):
    return _direction(X @ p.W.T, None, X, -t, p)


def _shifted_loss(method, p, X, t):
    q = _parts(p, X, t)
    return _direction(q.Z, None, X, -t * jax.nn.sigmoid(method.shift - t * q.f), p)


def _large_step(method, p, X, t):
    g = _gd(method, p, X, t)
    return DLNParams(v=method.lr_mult * g.v, W=method.lr_mult * g.W)


def _weight_decay(method, p, X, t):
    g = _gd(method, p, X, t)
    return DLNParams(v=g.v + method.decay * p.v, W=g.W + method.decay * p.W)


def _jreg_fixed(method, p, X, t):
    g = _gd(method, p, X, t)
    Z = X @ p.W.T
    return DLNParams(v=g.v + method.lam_last * p.v, W=g.W + method.lam_act * Z.T @ X / X.shape[0])


@dataclasses.dataclass(frozen=True)
class DLN:
    r"""2-layer deep linear network :math:`f = \langle v, W x\rangle`.

    Args:
      hidden: width h (needed by :meth:`init`; None accepts parameters of any width).
    """

    hidden: int | None = None
    num_classes: ClassVar[None] = None

    def __post_init__(self):
        if self.hidden is not None:
            validate.check_positive_int(self.hidden, "hidden")

    def apply(self, p: DLNParams, x):
        r""":math:`f = \langle v, W x\rangle`; x of shape (d,) gives (), (n, d) gives (n,)."""
        return jnp.dot(jnp.dot(x, p.W.T), p.v)

    def apply_batch(self, p: DLNParams, X):
        return (X @ p.W.T) @ p.v

    loss_from_logits = staticmethod(R.binary_logistic_loss)

    def loss(self, p, X, t):
        """Mean logistic loss."""
        return jnp.mean(jax.nn.softplus(-self.margins(p, X, t)))

    def init(self, key, d: int, *, scale=1.0, dtype=None) -> DLNParams:
        r""":math:`v \sim \mathrm{scale}\cdot\mathcal N(0, I_h/h)`, :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, I/d)`.

        ``scale = 0`` gives the all-zero network, a stationary point of every rule.
        """
        if self.hidden is None:
            raise ValueError("hidden must be an integer >= 1 to initialise a DLN: use DLN(hidden=h)")
        check_init(d, scale, h=self.hidden)
        kv, kw = jax.random.split(key)
        return DLNParams(v=init_normal(kv, (self.hidden,), self.hidden, scale, dtype),
                         W=init_normal(kw, (self.hidden, d), d, scale, dtype))

    def margins(self, p, X, t):
        r"""Margins :math:`z_i = t_i f(x_i)`, shape (n,)."""
        return binary_margins(self.apply_batch(p, X), t)

    def jacobian_norm(self, p, X):
        r""":math:`J_i = \sqrt{\|W x_i\|^2 + \|x_i\|^2\|v\|^2}`, shape (n,) (overflow-safe)."""
        return _jac(row_norms(X @ p.W.T), row_norms(X), vector_norm(p.v))

    def one_sam_point(self, p, X, t, rho) -> SAMPoint:
        r""":math:`f' = \langle v'_i, W'_i x_i\rangle` (:math:`= f - \rho t J + \rho^2\|x\|^2 f/J^2`) and
        :math:`J'_i = \sqrt{\|W'_i x_i\|^2 + \|x_i\|^2\|v'_i\|^2}`, each shape (n,)."""
        q = _parts(p, X, t)
        pt = _point(p, X, t, rho, q)
        return SAMPoint(pt.fp, _jac(row_norms(pt.Zp), q.xn, row_norms(pt.Vp)))

    def jsam_penalty(self, p, X, t, rho):
        r"""Proposition 4.1 penalty :math:`P = \frac{\rho}{n}\sum_i \mathrm{sg}(\sigma(-t_i f_i))\,J_i`.

        Its gradient is exactly J-SAM's direction minus GD's.
        """
        q = _parts(p, X, t)
        return rho * jnp.mean(jax.lax.stop_gradient(q.s) * q.J)

    def prop41_coefficients(self, p, X, t, rho):
        r"""Per-example Prop. 4.1 coefficients :math:`(\rho s_i\|x_i\|^2/J_i,\ \rho s_i/J_i)`, each (n,):
        the weight decay on v and the activation penalty on :math:`Wx_i` that J-SAM adds."""
        q = _parts(p, X, t)
        active = q.J > 0
        return _ratio(rho * q.s * q.xn, q.J, active) * q.xn, _ratio(rho * q.s, q.J, active)

    def features(self, p, x):
        """Hidden activation :math:`z = W x` (the penultimate features), shape (h,) or (n, h)."""
        return jnp.dot(x, p.W.T)

    def last_layer(self, p):
        return p.v

    def end_to_end(self, p):
        r"""The end-to-end linear map :math:`W^\top v`, shape (d,)."""
        return p.W.T @ p.v

    def norms(self, p, X) -> dict:
        """``w_norm`` (of W^T v), ``v_norm``, ``W_norm`` (Frobenius), ``act_norm`` (mean ||W x_i||)."""
        return dict(
            w_norm=vector_norm(p.W.T @ p.v),
            v_norm=vector_norm(p.v),
            W_norm=vector_norm(p.W),
            act_norm=jnp.mean(row_norms(X @ p.W.T)),
        )

    @property
    def closed_forms(self) -> dict:
        return {R.GD: _gd, R.NSAM: _nsam, R.OneSAM: _one_sam, R.LSAM: _lsam, R.JSAM: _jsam, R.JReg: _jreg,
                R.JRegFixed: _jreg_fixed, R.LinearLoss: _linear_loss, R.ShiftedLoss: _shifted_loss,
                R.LargeStep: _large_step, R.WeightDecay: _weight_decay}

    def check_params(self, p, X) -> None:
        """X: finite float (n, d); p: DLNParams(v (h,), W (h, d)), h = hidden when set."""
        n, d = check_linear_X(X)
        if not isinstance(p, DLNParams):
            raise ValueError(f"params must be a linsam.dln.DLNParams(v, W), got {type(p).__name__}")
        if np.ndim(p.v) != 1 or np.shape(p.v)[0] < 1:
            raise ValueError(f"params.v must have shape (h,) with h >= 1, got shape {np.shape(p.v)}")
        h = np.shape(p.v)[0] if self.hidden is None else self.hidden
        validate.check_shape(p.v, (h,), "params.v")
        validate.check_shape(p.W, (h, d), "params.W")
