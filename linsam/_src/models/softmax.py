r"""Multi-class linear softmax model, one definition.

Model :math:`f(W, x) = W x \in \mathbb R^K`, :math:`W \in \mathbb R^{K\times d}`, labels
:math:`t \in \{0, \dots, K-1\}`, loss :math:`\ell = \log\sum_k e^{f_k} - f_t`. With
:math:`p = \mathrm{softmax}(Wx)` and logit scale :math:`r = p - e_t`:

.. math::

    \nabla_W \ell = r\, x^\top, \qquad \|\nabla_W\ell\| = \|r\|\,\|x\|, \qquad
    \epsilon = \rho\,\frac{r\,x^\top}{\|r\|\,\|x\|},

so the perturbed logits are :math:`f(W + \epsilon, x) = W x + \rho\|x\|\, r/\|r\|` and

.. math::

    \nabla\ell(W + \epsilon) = \big(\mathrm{softmax}(Wx + \rho\|x\|\, r/\|r\|) - e_t\big)\, x^\top .

The Jacobian :math:`\partial f/\partial W = I_K \otimes x^\top` does not depend on W (its
operator norm is :math:`J = \|x\|`, so :math:`\|\nabla\ell\| = \|r\| J`): L-SAM equals 1-SAM,
J-SAM equals GD, J-reg equals GD.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import rules as R
from linsam._src import validate
from linsam._src.models._common import SAMPoint, check_init, check_linear_X, class_margins, init_normal, row_norms, vector_norm


def logit_scale(logits, t):
    r""":math:`r_i = \mathrm{softmax}(f_i) - e_{t_i}`, shape (n, K)."""
    return jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)


def _perturbed_logits(W, X, t, rho):
    logits = X @ W.T
    unit_r = jax.vmap(R.safe_normalize)(logit_scale(logits, t))  # r/||r||, 0 where r = 0
    return logits + rho * row_norms(X)[:, None] * unit_r  # x = 0 rows: shift 0, eps = 0 convention


def _from_scale(Rm, X):
    """(1/n) sum_i r_i x_i^T, shape (K, d)."""
    return Rm.T @ X / X.shape[0]


def _gd(method, W, X, t):
    return _from_scale(logit_scale(X @ W.T, t), X)


def _one_sam(method, W, X, t):
    return _from_scale(logit_scale(_perturbed_logits(W, X, t, method.rho), t), X)


def _nsam(method, W, X, t):
    return _gd(method, W + method.rho * R.safe_normalize(_gd(method, W, X, t)), X, t)


def _jreg_fixed(method, W, X, t):
    return _gd(method, W, X, t) + method.lam_last * W


def _linear_loss(method, W, X, t):
    logits = X @ W.T
    own = jax.nn.one_hot(t, logits.shape[-1], dtype=bool)
    # C -> inf limit of the shifted loss: softmax over the other classes, minus e_t
    return _from_scale(logit_scale(jnp.where(own, -jnp.inf, logits), t), X)


def _shifted_loss(method, W, X, t):
    return _from_scale(logit_scale(R.shifted_logits(X @ W.T, t, method.shift, multiclass=True), t), X)


def _large_step(method, W, X, t):
    return method.lr_mult * _gd(method, W, X, t)


def _weight_decay(method, W, X, t):
    return _gd(method, W, X, t) + method.decay * W


@dataclasses.dataclass(frozen=True)
class Softmax:
    r"""K-class linear softmax model :math:`f(W, x) = Wx`, :math:`W \in \mathbb R^{K\times d}`.

    Args:
      num_classes: K >= 2.
    """

    num_classes: int = 2
    features = None  # no hidden layer

    def __post_init__(self):
        validate.check_positive_int(self.num_classes, "num_classes", minimum=2)

    def apply(self, W, x):
        r""":math:`f(W, x) = W x`; x of shape (d,) gives (K,), (n, d) gives (n, K)."""
        return jnp.dot(x, W.T)

    def apply_batch(self, W, X):
        return X @ W.T

    loss_from_logits = staticmethod(R.softmax_cross_entropy)

    def loss(self, W, X, t):
        """Mean softmax cross-entropy."""
        return jnp.mean(self.example_losses(W, X, t))

    def init(self, key, d: int, *, scale=0.0, dtype=None):
        r"""Initial weights :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, 1/d)`, shape (K, d)."""
        check_init(d, scale)
        return init_normal(key, (self.num_classes, d), d, scale, dtype)

    def margins(self, W, X, t):
        r"""Margins :math:`z_i = f_{t_i} - \max_{k\ne t_i} f_k`, shape (n,)."""
        return class_margins(X @ W.T, t)

    def jacobian_norm(self, W, X):
        r"""Operator norm of :math:`\partial f(x_i)/\partial W`: :math:`J_i = \|x_i\|`, shape (n,)."""
        return row_norms(X)

    logit_scale = staticmethod(logit_scale)

    def example_correct(self, W, X, t):
        r"""Per-example argmax accuracy :math:`\mathbb 1[t_i \in \arg\max_k f_k(x_i)] / |\arg\max_k f_k(x_i)|`
        (a tie among m classes counts 1/m, so all-equal logits score chance 1/K), shape (n,)."""
        logits = X @ W.T
        top = logits == jnp.max(logits, axis=-1, keepdims=True)
        own = jnp.take_along_axis(top, t[:, None], axis=1)[:, 0]
        return own.astype(X.dtype) / jnp.sum(top, axis=-1).astype(X.dtype)

    def example_losses(self, W, X, t):
        r"""Per-example cross-entropy :math:`\log\sum_k e^{f_k(x_i)} - f_{t_i}(x_i)`, shape (n,)."""
        return R.softmax_cross_entropy(X @ W.T, t)

    def example_grad_norms(self, W, X, t):
        r"""Per-example gradient norms :math:`\|\nabla_W\ell_i\| = \|r_i\|\,\|x_i\|`, shape (n,)."""
        return jnp.linalg.norm(logit_scale(X @ W.T, t), axis=-1) * row_norms(X)

    def one_sam_point(self, W, X, t, rho) -> SAMPoint:
        r"""Perturbed logits :math:`W x_i + \rho\|x_i\|\, r_i/\|r_i\|` and :math:`J_i = \|x_i\|` there."""
        return SAMPoint(_perturbed_logits(W, X, t, rho), row_norms(X))

    def end_to_end(self, W):
        return W

    def last_layer(self, W):
        return W

    def norms(self, W, X) -> dict:
        """``w_norm``: Frobenius norm of W."""
        return dict(w_norm=vector_norm(W))

    @property
    def closed_forms(self) -> dict:
        return {R.GD: _gd, R.NSAM: _nsam, R.OneSAM: _one_sam, R.LSAM: _one_sam, R.JSAM: _gd, R.JReg: _gd,
                R.JRegFixed: _jreg_fixed, R.LinearLoss: _linear_loss, R.ShiftedLoss: _shifted_loss,
                R.LargeStep: _large_step, R.WeightDecay: _weight_decay}

    def check_params(self, W, X) -> None:
        """X: finite float (n, d); W: finite float (K, d) with K = num_classes."""
        n, d = check_linear_X(X)
        if np.ndim(W) != 2 or np.shape(W)[1] != d:
            raise ValueError(f"W must have shape (K, {d}) with K = {self.num_classes} classes, got shape {np.shape(W)}")
        validate.check_shape(W, (self.num_classes, d), "W")
