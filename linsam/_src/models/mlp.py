r"""ReLU multilayer perceptron (one or two hidden layers, no biases), one definition.

Model, for :math:`L \in \{1, 2\}` hidden layers of widths :math:`h_1, \dots, h_L`, binary labels
:math:`t\in\{-1,+1\}`, logistic loss:

.. math::

    a_0 = x,\quad u_l = W_l a_{l-1},\quad a_l = \mathrm{relu}(u_l) = D_l u_l,\quad
    f = \langle v, a_L\rangle,\qquad D_l = \mathrm{diag}(\mathbb 1[u_l > 0]),

:math:`W_1 \in \mathbb R^{h_1\times d}`, :math:`W_2 \in \mathbb R^{h_2\times h_1}`,
:math:`v \in \mathbb R^{h_L}`. Back-propagation gives :math:`\delta_L = D_L v`,
:math:`\delta_{l-1} = D_{l-1} W_l^\top \delta_l` and

.. math::

    \nabla_v f = a_L, \qquad \nabla_{W_l} f = \delta_l\, a_{l-1}^\top \ (\text{rank one}), \qquad
    J = \|\nabla_\theta f\| = \Big(\|a_L\|^2 + \sum_l \|\delta_l\|^2\|a_{l-1}\|^2\Big)^{1/2}.

(:math:`\mathrm{relu}'(0) = 0`, JAX's convention; the closed forms hold wherever no
pre-activation is exactly 0, where :math:`f` is differentiable.)

**The 1-SAM point without per-example weight copies.** :math:`\nabla\ell = -t s\nabla f` with
:math:`s = \sigma(-tf)`, so :math:`\epsilon = -c\,\nabla f` with :math:`c = \rho t/J`
(:math:`\epsilon = 0` where :math:`sJ = 0`). Each layer moves by a rank-one matrix,
:math:`W'_l = W_l - c\,\delta_l a_{l-1}^\top`, :math:`v' = v - c\,a_L`, so the perturbed forward
pass of the *same* example is

.. math::

    u'_1 = u_1 - c\|x\|^2\delta_1, \qquad
    u'_l = W_l a'_{l-1} - c\,\langle a_{l-1}, a'_{l-1}\rangle\,\delta_l \ (l \ge 2), \qquad
    a'_l = \mathrm{relu}(u'_l), \qquad f' = \langle v', a'_L\rangle,

with the activation pattern :math:`D'_l = \mathbb 1[u'_l > 0]` of the perturbed point computed
exactly (units may switch on or off), and its back-propagation

.. math::

    \delta'_L = D'_L v', \qquad
    \delta'_{l-1} = D'_{l-1}\big(W_l^\top\delta'_l - c\,\langle\delta_l, \delta'_l\rangle\, a_{l-1}\big),
    \qquad \nabla f(\theta+\epsilon) = \big(a'_L,\ \{\delta'_l a'^\top_{l-1}\}\big),

so :math:`J' = (\|a'_L\|^2 + \sum_l \|\delta'_l\|^2\|a'_{l-1}\|^2)^{1/2}`. All of it is batched
matrix products: O(n (d h_1 + h_1 h_2)) per step, the cost of GD. Then, with per-example
coefficients, each rule is :math:`\frac1n\sum_i \mathrm{coef}_i\,(g_v, \{\Delta_l A_{l-1}^\top\})`:

.. math::

    \text{1-SAM: } -t\,\sigma(-tf')\ \text{at } (a', \delta'), \qquad
    \text{L-SAM: } -t\,\sigma(-tf')\ \text{at } (a, \delta), \qquad
    \text{J-SAM: } -t\,s\ \text{at } (a', \delta').

**J-reg** (the penalty :math:`\frac\rho n\sum_i \mathrm{sg}(s_i) J_i`): GD plus
:math:`\frac1n\sum_i c_i\,\nabla_\theta \tfrac12 J_i^2`, :math:`c_i = \rho s_i/J_i` (0 where
:math:`J_i = 0`), with the pattern :math:`D_l` held fixed (its derivative is 0 a.e.):

.. math::

    L = 1:&\quad \nabla_v = \|x\|^2\delta_1,\quad \nabla_{W_1} = a_1 x^\top, \\
    L = 2:&\quad \nabla_v = \|a_1\|^2\delta_2 + \|x\|^2 D_2 W_2\delta_1,\quad
    \nabla_{W_2} = a_2 a_1^\top + \|x\|^2\delta_2\delta_1^\top,\quad
    \nabla_{W_1} = \big(D_1 W_2^\top a_2 + \|\delta_2\|^2 a_1\big) x^\top .

For :math:`L = 1` with no unit switching between :math:`\theta` and :math:`\theta + \epsilon`
J-SAM equals J-reg (the DLN's Proposition 4.1 restricted to the active units); a switch makes
them differ. **Fixed regulariser**: GD plus :math:`\lambda_{\mathrm{last}} v` and
:math:`\lambda_{\mathrm{act}}\frac1n\sum_i\nabla\frac12\|a_{L,i}\|^2`, the back-propagation of
:math:`a_L` itself (:math:`\nabla_{W_l} = \delta^a_l a^\top_{l-1}`, :math:`\delta^a_L = a_L`,
:math:`\delta^a_{l-1} = D_{l-1} W_l^\top\delta^a_l`). n-SAM is GD at
:math:`\theta + \rho\, g/\|g\|`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import rules as R
from linsam._src import validate
from linsam._src.models._common import SAMPoint, binary_margins, check_init, check_linear_X, init_normal, row_norms

#: Hidden layers a :class:`MLP` may have (its closed forms are derived for these).
MAX_LAYERS = 2


class MLPParams(NamedTuple):
    """Parameters of the ReLU MLP.

    Attributes:
      v: last-layer weights, shape (h_L,).
      Ws: hidden-layer weights, a tuple ``(W_1 (h_1, d),)`` or ``(W_1 (h_1, d), W_2 (h_2, h_1))``.
    """

    v: jax.Array
    Ws: tuple


class _Pass(NamedTuple):
    """One forward and backward pass, every example at once (rows: examples)."""

    As: list  # [A_0 = X (n, d), A_1 (n, h_1), ..., A_L]
    Ds: list  # [D_1, ..., D_L] (n, h_l) activation indicators (float)
    deltas: list  # [Delta_1, ..., Delta_L] (n, h_l) back-propagated deltas
    f: jax.Array  # (n,) logits


def _forward(Ws, X):
    """``As = [X, a_1, ..., a_L]`` and ``Ds``: the activations and ReLU indicators."""
    As, Ds = [X], []
    for W in Ws:
        u = As[-1] @ W.T
        Ds.append((u > 0).astype(X.dtype))
        As.append(jax.nn.relu(u))
    return As, Ds


def _backward(Ws, Ds, top):
    r"""Deltas of every layer: :math:`\delta_L = D_L\,\mathrm{top}`, :math:`\delta_{l-1} = D_{l-1} W_l^\top\delta_l`."""
    deltas = [Ds[-1] * top]
    for l in range(len(Ws) - 1, 0, -1):
        deltas.insert(0, Ds[l - 1] * (deltas[0] @ Ws[l]))
    return deltas


def _pass(p: MLPParams, X) -> _Pass:
    As, Ds = _forward(p.Ws, X)
    return _Pass(As, Ds, _backward(p.Ws, Ds, p.v[None, :]), As[-1] @ p.v)


def _jac(As, deltas):
    r""":math:`J = (\|a_L\|^2 + \sum_l \|\delta_l\|^2\|a_{l-1}\|^2)^{1/2}` per row (scaled norms)."""
    parts = [As[-1]] + [row_norms(A)[:, None] * dl for A, dl in zip(As[:-1], deltas)]
    return row_norms(jnp.concatenate(parts, axis=1))


def _rowdot(a, b):
    return jnp.sum(a * b, axis=1)


def _ratio(num, J, active):
    """num / J where active, else 0 (the eps = 0 convention; never 0/0)."""
    return jnp.where(active, num / jnp.where(active, J, 1.0), 0.0)


class _Point(NamedTuple):
    """Each example's 1-SAM point theta + eps_i, seen through its own example (rows: examples)."""

    As: list  # [X, a'_1, ..., a'_L]
    deltas: list  # [delta'_1, ..., delta'_L]
    f: jax.Array  # (n,) f(theta + eps_i, x_i)


def _point(p: MLPParams, X, t, rho, q: _Pass, J) -> _Point:
    """The perturbed forward and backward pass (module docstring), rank-one corrections only."""
    s = jax.nn.sigmoid(-t * q.f)
    active = (s > 0) & (J > 0)
    c = _ratio(rho * t, J, active)
    xn = row_norms(X)
    c_xn2 = _ratio(rho * t * xn, J, active) * xn  # c ||x||^2 without forming ||x||^2
    As, Ds = [X], []
    for l, W in enumerate(p.Ws):
        if l == 0:
            u = X @ W.T - c_xn2[:, None] * q.deltas[0]
        else:
            u = As[-1] @ W.T - (c * _rowdot(q.As[l], As[-1]))[:, None] * q.deltas[l]
        Ds.append((u > 0).astype(X.dtype))
        As.append(jax.nn.relu(u))
    Vp = p.v[None, :] - c[:, None] * q.As[-1]  # v'_i
    deltas = [Ds[-1] * Vp]
    for l in range(len(p.Ws) - 1, 0, -1):  # W'_l^T d' = W_l^T d' - c <delta_l, d'> a_{l-1}
        back = deltas[0] @ p.Ws[l] - (c * _rowdot(q.deltas[l], deltas[0]))[:, None] * q.As[l]
        deltas.insert(0, Ds[l - 1] * back)
    return _Point(As, deltas, _rowdot(Vp, As[-1]))


def _direction(coef, As, deltas):
    r""":math:`\frac1n\sum_i \mathrm{coef}_i\,(a_{L,i},\ \{\delta_{l,i} a_{l-1,i}^\top\})` as MLPParams."""
    n = coef.shape[0]
    gv = coef @ As[-1] / n
    Ws = tuple((coef[:, None] * dl).T @ A / n for dl, A in zip(deltas, As[:-1]))
    return MLPParams(v=gv, Ws=Ws)


def _add(a: MLPParams, b: MLPParams) -> MLPParams:
    return MLPParams(v=a.v + b.v, Ws=tuple(x + y for x, y in zip(a.Ws, b.Ws)))


def _gd(method, p, X, t):
    q = _pass(p, X)
    return _direction(-t * jax.nn.sigmoid(-t * q.f), q.As, q.deltas)


def _perturbed(method, p, X, t):
    q = _pass(p, X)
    pt = _point(p, X, t, method.rho, q, _jac(q.As, q.deltas))
    return q, pt


def _one_sam(method, p, X, t):
    _, pt = _perturbed(method, p, X, t)
    return _direction(-t * jax.nn.sigmoid(-t * pt.f), pt.As, pt.deltas)


def _lsam(method, p, X, t):
    q, pt = _perturbed(method, p, X, t)
    return _direction(-t * jax.nn.sigmoid(-t * pt.f), q.As, q.deltas)


def _jsam(method, p, X, t):
    q, pt = _perturbed(method, p, X, t)
    return _direction(-t * jax.nn.sigmoid(-t * q.f), pt.As, pt.deltas)


def _half_grad_act(p, q: _Pass, weight):
    r""":math:`\frac1n\sum_i w_i \nabla_{W}\frac12\|a_{L,i}\|^2` (back-propagation of :math:`a_L`), a tuple like ``Ws``."""
    deltas = _backward(p.Ws, q.Ds, q.As[-1])
    n = weight.shape[0]
    return tuple((weight[:, None] * dl).T @ A / n for dl, A in zip(deltas, q.As[:-1]))


def _jreg(method, p, X, t):
    """GD + (1/n) sum_i c_i grad (1/2) J_i^2, c_i = rho sg(s_i) / J_i (module docstring)."""
    q = _pass(p, X)
    s = jax.nn.sigmoid(-t * q.f)
    J = _jac(q.As, q.deltas)
    c = _ratio(method.rho * s, J, J > 0)
    n = X.shape[0]
    gd = _direction(-t * s, q.As, q.deltas)
    xn2 = jnp.square(row_norms(X))
    gW = list(_half_grad_act(p, q, c))
    if len(p.Ws) == 1:
        gv = (c * xn2) @ q.deltas[0] / n
    else:
        (d1, d2), (a1, _), W2 = q.deltas, q.As[1:], p.Ws[1]
        a1n2 = jnp.square(row_norms(a1))
        gv = ((c * a1n2) @ d2 + (c * xn2) @ (q.Ds[1] * (d1 @ W2.T))) / n
        gW[1] = gW[1] + ((c * xn2)[:, None] * d2).T @ d1 / n
        gW[0] = gW[0] + ((c * jnp.square(row_norms(d2)))[:, None] * a1).T @ X / n
    return _add(gd, MLPParams(v=gv, Ws=tuple(gW)))


def _nsam(method, p, X, t):
    unit = R.safe_normalize(_gd(method, p, X, t))
    shifted = jax.tree_util.tree_map(lambda a, u: a + method.rho * u, p, unit)
    return _gd(method, shifted, X, t)


def _jreg_fixed(method, p, X, t):
    q = _pass(p, X)
    gd = _direction(-t * jax.nn.sigmoid(-t * q.f), q.As, q.deltas)
    gW = _half_grad_act(p, q, method.lam_act * jnp.ones_like(q.f))
    return _add(gd, MLPParams(v=method.lam_last * p.v, Ws=gW))


def _check_hidden(hidden) -> tuple:
    """``hidden``: a positive int (one layer) or a tuple/list of 1..MAX_LAYERS positive ints."""
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)) or not 1 <= len(hidden) <= MAX_LAYERS:
        raise ValueError(f"hidden must be a positive integer or a tuple of 1 to {MAX_LAYERS} positive integers "
                         f"(the hidden widths), got {hidden!r}")
    for i, h in enumerate(hidden):
        validate.check_positive_int(h, f"hidden[{i}]")
    return tuple(int(h) for h in hidden)


@dataclasses.dataclass(frozen=True)
class MLP:
    r"""ReLU MLP :math:`f = \langle v, \mathrm{relu}(W_L \cdots \mathrm{relu}(W_1 x))\rangle` (binary, no biases).

    Args:
      hidden: the hidden widths, ``(h,)`` or ``(h_1, h_2)`` (an int ``h`` means ``(h,)``).

    >>> model = MLP(hidden=(16, 16))
    >>> p = model.init(jax.random.PRNGKey(0), d=4)
    >>> model.apply_batch(p, jnp.ones((3, 4))).shape
    (3,)
    """

    hidden: tuple = (32,)
    num_classes: ClassVar[None] = None
    end_to_end: ClassVar[None] = None  # nonlinear: no end-to-end linear map (test accuracy is sampled)

    def __post_init__(self):
        object.__setattr__(self, "hidden", _check_hidden(self.hidden))

    @property
    def depth(self) -> int:
        """Number of hidden layers L."""
        return len(self.hidden)

    def apply(self, p: MLPParams, x):
        r""":math:`f(\theta, x)`; x of shape (d,) gives (), (n, d) gives (n,)."""
        return jnp.dot(self.features(p, x), p.v)

    def apply_batch(self, p: MLPParams, X):
        return self.features(p, X) @ p.v

    loss_from_logits = staticmethod(R.binary_logistic_loss)

    def loss(self, p, X, t):
        """Mean logistic loss."""
        return jnp.mean(jax.nn.softplus(-self.margins(p, X, t)))

    def init(self, key, d: int, *, scale=1.0, dtype=None) -> MLPParams:
        r"""He initialisation: :math:`W_l \sim \mathrm{scale}\cdot\mathcal N(0, 2/\mathrm{fan\_in})`,
        :math:`v \sim \mathrm{scale}\cdot\mathcal N(0, 1/h_L)`. ``scale = 0``: the all-zero network,
        a stationary point of every rule (J = 0)."""
        check_init(d, scale)
        keys = jax.random.split(key, self.depth + 1)
        widths = (d,) + self.hidden
        Ws = tuple(init_normal(keys[l], (widths[l + 1], widths[l]), widths[l], scale * math.sqrt(2.0), dtype)
                   for l in range(self.depth))
        return MLPParams(v=init_normal(keys[-1], (self.hidden[-1],), self.hidden[-1], scale, dtype), Ws=Ws)

    def margins(self, p, X, t):
        r"""Margins :math:`z_i = t_i f(x_i)`, shape (n,)."""
        return binary_margins(self.apply_batch(p, X), t)

    def jacobian_norm(self, p, X):
        r""":math:`J_i = (\|a_{L,i}\|^2 + \sum_l\|\delta_{l,i}\|^2\|a_{l-1,i}\|^2)^{1/2}`, shape (n,)."""
        q = _pass(p, X)
        return _jac(q.As, q.deltas)

    def one_sam_point(self, p, X, t, rho) -> SAMPoint:
        r""":math:`f(\theta + \epsilon_i, x_i)` and :math:`J(\theta+\epsilon_i, x_i)` from the rank-one
        perturbed pass (module docstring), each shape (n,)."""
        q = _pass(p, X)
        pt = _point(p, X, t, rho, q, _jac(q.As, q.deltas))
        return SAMPoint(pt.f, _jac(pt.As, pt.deltas))

    def features(self, p, x):
        r"""Penultimate activations :math:`a_L`, shape (h_L,) or (n, h_L)."""
        a = x
        for W in p.Ws:
            a = jax.nn.relu(jnp.dot(a, W.T))
        return a

    def last_layer(self, p):
        return p.v

    def norms(self, p, X) -> dict:
        r"""``w_norm`` (all parameters), ``v_norm`` (:math:`\|v\|`, the last-layer weight norm),
        ``W_norm`` (Frobenius norm of all hidden weights), ``act_norm`` (the feature norm, mean
        :math:`\|a_{L,i}\|` over the examples of X)."""
        return dict(
            w_norm=R.safe_norm(p),
            v_norm=R.safe_norm(p.v),
            W_norm=R.safe_norm(p.Ws),
            act_norm=jnp.mean(row_norms(self.features(p, X))),
        )

    @property
    def closed_forms(self) -> dict:
        return {R.GD: _gd, R.NSAM: _nsam, R.OneSAM: _one_sam, R.LSAM: _lsam, R.JSAM: _jsam, R.JReg: _jreg,
                R.JRegFixed: _jreg_fixed}

    def check_params(self, p, X) -> None:
        """X: finite float (n, d); p: MLPParams(v (h_L,), Ws ((h_1, d)[, (h_2, h_1)])) of this model's widths."""
        n, d = check_linear_X(X)
        if not isinstance(p, MLPParams):
            raise ValueError(f"params must be a linsam.models.MLPParams(v, Ws), got {type(p).__name__}")
        if not isinstance(p.Ws, (tuple, list)) or len(p.Ws) != self.depth:
            raise ValueError(f"params.Ws must be a tuple of {self.depth} weight matrices (hidden = {self.hidden}), "
                             f"got {type(p.Ws).__name__} of length {len(p.Ws) if hasattr(p.Ws, '__len__') else '?'}")
        widths = (d,) + self.hidden
        for l, W in enumerate(p.Ws):
            validate.check_shape(W, (widths[l + 1], widths[l]), f"params.Ws[{l}]")
        validate.check_shape(p.v, (self.hidden[-1],), "params.v")
