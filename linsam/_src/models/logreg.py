r"""Binary logistic regression, one definition: f, loss, init, margins, J, 1-SAM point, closed forms.

Model :math:`f(w, x) = \langle w, x\rangle`, labels :math:`t \in \{-1, +1\}`, loss
:math:`\ell = -\log\sigma(t f) = \mathrm{softplus}(-z)` with margin :math:`z = t\langle w, x\rangle`.
Per-example gradient :math:`\nabla\ell_i = -t_i\,\sigma(-z_i)\,x_i`, so the Jacobian norm is
:math:`J_i = \|x_i\|`, :math:`\|\nabla\ell_i\| = \sigma(-z_i)\|x_i\|`, and the 1-SAM perturbation is

.. math::

    \epsilon_i = \rho\,\frac{\nabla\ell_i}{\|\nabla\ell_i\|} = -\rho\, t_i\, \frac{x_i}{\|x_i\|},
    \qquad z_i(w + \epsilon_i) = z_i - C_i, \quad C_i = \rho\|x_i\|,

(:math:`C_i = 0` where the gradient is 0), giving the exact reweighting (Baek et al. 2024,
Sec. 3, Lemma 3.1)

.. math::

    \nabla\ell_i(w + \epsilon_i) = g(z_i, C_i)\,\nabla\ell_i(w), \qquad
    g(z, C) = \frac{\sigma(-z + C)}{\sigma(-z)} = \frac{1 + e^{z}}{1 + e^{z - C}} .

The Jacobian :math:`x_i` does not depend on :math:`w`, so L-SAM equals 1-SAM and J-SAM equals GD
exactly; the J-reg penalty :math:`\rho\,\sigma(-z_i)\|x_i\|` has zero gradient (its weight is
stop-gradiented), so J-reg equals GD too. n-SAM perturbs along :math:`g = \nabla L(w)`:
example i's margin becomes :math:`z_i + \rho\, t_i\langle x_i, g\rangle/\|g\|`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from linsam._src import rules as R
from linsam._src import validate
from linsam._src.models._common import SAMPoint, binary_margins, check_init, check_linear_X, init_normal, row_norms, vector_norm


def margin_shift(z, x_norm, rho):
    r"""Lemma 3.1's margin shift :math:`C_i = \rho\|x_i\|`, 0 where the gradient is 0.

    The gradient :math:`-t_i\sigma(-z_i)x_i` is 0 where :math:`\sigma(-z_i)` underflows or
    :math:`x_i = 0`; there :math:`\epsilon_i = 0` (the zero-gradient convention). Any leading axes.
    """
    return jnp.where((jax.nn.sigmoid(-z) > 0) & (x_norm > 0), rho * x_norm, 0.0)


def one_sam_weight(z, C):
    r"""Lemma 3.1 weight :math:`g(z, C) = \sigma(-z + C)/\sigma(-z) = (1 + e^{z})/(1 + e^{z - C})`.

    Computed as :math:`\exp(\log\sigma(-z + C) - \log\sigma(-z))`, stable for large :math:`|z|`.
    Increasing in z from 1 to :math:`e^C` when C > 0.
    """
    return jnp.exp(one_sam_log_weight(z, C))


def one_sam_log_weight(z, C):
    r""":math:`\log g(z, C) = \log\sigma(-z + C) - \log\sigma(-z)`, finite for every finite z, C."""
    return jax.nn.log_sigmoid(-z + C) - jax.nn.log_sigmoid(-z)


def example_weights(z, x_norm, *, rho=0.0, shift=0.0):
    r"""Per-example gradient weight of the logistic-family rules of this model,

    .. math::  a_i = \sigma(-z_i + C_i + c), \qquad C_i = \mathrm{margin\_shift}(z_i, \|x_i\|, \rho),

    so the direction is :math:`-\frac1n\sum_i a_i t_i x_i`: GD (:math:`\rho = c = 0`), 1-SAM
    (:math:`\rho`), GD on the shifted loss :math:`\mathrm{softplus}(c - z)` (:math:`c`), GD on
    the linear loss :math:`-z` (:math:`c = +\infty`: every weight 1). Any leading axes.
    """
    return jax.nn.sigmoid(-z + margin_shift(z, x_norm, rho) + shift)


def _apply_weights(X, t, scale):
    """Direction -(1/n) sum_i t_i scale_i x_i."""
    return -((t * scale) @ X) / X.shape[0]


def _gd(method, w, X, t):
    return _apply_weights(X, t, jax.nn.sigmoid(-binary_margins(X @ w, t)))


def _one_sam(method, w, X, t):
    z = binary_margins(X @ w, t)
    return _apply_weights(X, t, jax.nn.sigmoid(-z + margin_shift(z, row_norms(X), method.rho)))


def _nsam_shift(w, X, t, rho):
    r"""Margins and n-SAM's margin change :math:`\rho\, t_i\langle x_i, g\rangle/\|g\|`."""
    unit = R.safe_normalize(_gd(None, w, X, t))
    return binary_margins(X @ w, t), rho * t * (X @ unit)


def _nsam(method, w, X, t):
    z, delta = _nsam_shift(w, X, t, method.rho)
    return _apply_weights(X, t, jax.nn.sigmoid(-(z + delta)))


def _jreg_fixed(method, w, X, t):
    return _gd(method, w, X, t) + method.lam_last * w


def _linear_loss(method, w, X, t):
    return _apply_weights(X, t, jnp.ones_like(t))


def _shifted_loss(method, w, X, t):
    return _apply_weights(X, t, example_weights(binary_margins(X @ w, t), row_norms(X), shift=method.shift))


def _large_step(method, w, X, t):
    return method.lr_mult * _gd(method, w, X, t)


def _weight_decay(method, w, X, t):
    return _gd(method, w, X, t) + method.decay * w


@dataclasses.dataclass(frozen=True)
class LogReg:
    r"""Binary logistic regression :math:`f(w, x) = \langle w, x\rangle`, :math:`w \in \mathbb R^d`.

    Every formula of the model lives here, once (see the module docstring for the math).
    """

    num_classes: ClassVar[None] = None
    features: ClassVar[None] = None  # no hidden layer: no activation penalty

    def apply(self, w, x):
        r""":math:`f(w, x) = \langle w, x\rangle`; x of shape (d,) gives (), (n, d) gives (n,)."""
        return jnp.dot(x, w)

    def apply_batch(self, w, X):
        """Logits of a batch, shape (n,)."""
        return X @ w

    loss_from_logits = staticmethod(R.binary_logistic_loss)

    def loss(self, w, X, t):
        r"""Mean loss :math:`\frac1n\sum_i \mathrm{softplus}(-z_i)`."""
        return jnp.mean(jax.nn.softplus(-self.margins(w, X, t)))

    def init(self, key, d: int, *, scale=0.0, dtype=None):
        r"""Initial weights :math:`w \sim \mathrm{scale}\cdot\mathcal N(0, I_d/d)` (zeros for scale = 0)."""
        check_init(d, scale)
        return init_normal(key, (d,), d, scale, dtype)

    def margins(self, w, X, t):
        r"""Margins :math:`z_i = t_i\langle w, x_i\rangle`, shape (n,)."""
        return binary_margins(X @ w, t)

    def jacobian_norm(self, w, X):
        r""":math:`J_i = \|\nabla_w f(x_i)\| = \|x_i\|`, shape (n,) (does not depend on w)."""
        return row_norms(X)

    margin_shift = staticmethod(margin_shift)
    example_weights = staticmethod(example_weights)
    one_sam_weight = staticmethod(one_sam_weight)
    one_sam_log_weight = staticmethod(one_sam_log_weight)

    def one_sam_point(self, w, X, t, rho) -> SAMPoint:
        r""":math:`f(w + \epsilon_i, x_i) = f_i - t_i C_i` and :math:`J = \|x_i\|` there (Lemma 3.1)."""
        xn = row_norms(X)
        f = X @ w
        return SAMPoint(f - t * margin_shift(binary_margins(f, t), xn, rho), xn)

    def end_to_end(self, w):
        """The linear map x -> f: w itself."""
        return w

    def last_layer(self, w):
        """The last-layer weights (all of w)."""
        return w

    def norms(self, w, X) -> dict:
        """Named norms recorded by the engine: ``w_norm``."""
        return dict(w_norm=vector_norm(w))

    @property
    def closed_forms(self) -> dict:
        """Exact rules: GD, n-SAM, 1-SAM (= L-SAM), J-SAM (= J-reg = GD), jreg_fixed (weight decay), and
        the controls (linear loss, shifted loss, large step, weight decay)."""
        return {R.GD: _gd, R.NSAM: _nsam, R.OneSAM: _one_sam, R.LSAM: _one_sam, R.JSAM: _gd, R.JReg: _gd,
                R.JRegFixed: _jreg_fixed, R.LinearLoss: _linear_loss, R.ShiftedLoss: _shifted_loss,
                R.LargeStep: _large_step, R.WeightDecay: _weight_decay}

    def check_params(self, w, X) -> None:
        """X: finite float (n, d); w: finite float (d,)."""
        n, d = check_linear_X(X)
        validate.check_shape(w, (d,), "w")

    # n-SAM's per-example weights need the margin change; exposed for linsam.logreg.
    nsam_shift = staticmethod(_nsam_shift)
