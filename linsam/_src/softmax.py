r"""Multi-class linear softmax model as plain functions (a thin face over :class:`linsam.models.Softmax`).

Every formula lives in :mod:`linsam._src.models.softmax`; the rules are the method values of
:mod:`linsam.rules` (``OneSAM(rho).direction(Softmax(K), W, X, t)``).
"""

from __future__ import annotations

import functools

import numpy as np

from linsam._src import rules as _rules
from linsam._src.models.softmax import Softmax

__all__ = ["MODEL", "make_model", "f", "loss", "init", "logit_scale", "perturbed_logits"]


@functools.lru_cache(maxsize=None)
def make_model(num_classes: int) -> Softmax:
    """The model definition of the K-class linear softmax model (``Softmax(num_classes=K)``)."""
    return Softmax(num_classes=num_classes)


#: The 2-class model; for K classes use ``make_model(K)`` or ``Softmax(K)``.
MODEL = make_model(2)
f = MODEL.apply


def _model(W, X, t, rho=None) -> Softmax:
    model = make_model(max(int(np.shape(W)[0]), 2)) if np.ndim(W) == 2 else MODEL
    _rules.validate_inputs(model, W, X, t, None if rho is None else _rules.OneSAM(rho))
    return model


def init(key, d: int, num_classes: int, scale: float = 0.0, dtype=None):
    r"""Initial weights :math:`W \sim \mathrm{scale}\cdot\mathcal N(0, 1/d)`, shape (K, d)."""
    return make_model(num_classes).init(key, d, scale=scale, dtype=dtype)


def loss(W, X, t):
    """Mean softmax cross-entropy."""
    return _model(W, X, t).loss(W, X, t)


def logit_scale(W, X, t):
    """:math:`r_i = p_i - e_{t_i}`, shape (n, K)."""
    _model(W, X, t)
    return Softmax.logit_scale(X @ W.T, t)


def perturbed_logits(W, X, t, rho):
    r"""1-SAM perturbed logits :math:`W x_i + \rho\|x_i\|\, r_i/\|r_i\|`, shape (n, K)."""
    return _model(W, X, t, rho).one_sam_point(W, X, t, rho).logits
