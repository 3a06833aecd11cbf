"""Pieces every model definition shares: the 1-SAM point record, overflow-safe norms, margins."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from linsam._src import validate


class SAMPoint(NamedTuple):
    r"""Each example's 1-SAM point :math:`\theta + \epsilon_i`, :math:`\epsilon_i = \rho\nabla\ell_i/\|\nabla\ell_i\|`.

    Attributes:
      logits: :math:`f(\theta + \epsilon_i, x_i)`, shape (n,) (binary) or (n, K).
      jacobian_norm: :math:`J_i` at :math:`\theta + \epsilon_i`, shape (n,).
    """

    logits: jax.Array
    jacobian_norm: jax.Array


def _scaled(parts, m, axis=None):
    r""":math:`m\sqrt{\sum (p/m)^2}` over ``parts`` (and ``axis``), :math:`m = \mathrm{sg}(m)`; 0 (value and
    gradient, never NaN) where :math:`m = 0`."""
    m = jax.lax.stop_gradient(m)
    nonzero = m > 0
    m_safe = jnp.where(nonzero, m, 1.0)
    if axis is not None:
        m_safe_b = jnp.expand_dims(m_safe, axis)
        sq = sum(jnp.sum(jnp.square(p / m_safe_b), axis=axis) for p in parts)
    else:
        sq = sum(jnp.square(p / m_safe) for p in parts)
    return jnp.where(nonzero, m_safe * jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def row_norms(A):
    r"""Euclidean norm of each row of ``A`` (..., m), scaled against overflow and underflow.

    :math:`\|a\| = m\,\|a/m\|` with :math:`m = \mathrm{sg}(\max_j|a_j|)`, so entries up to the
    float maximum give a finite norm wherever the norm itself is representable; the gradient
    is :math:`a/\|a\|` and 0 (not NaN) at a zero row.
    """
    return _scaled([A], jnp.max(jnp.abs(A), axis=-1), axis=-1)


def vector_norm(a):
    """:func:`row_norms` of all entries of ``a`` (a scalar)."""
    return row_norms(jnp.reshape(a, (-1,)))


def hypot(a, b):
    r""":math:`\sqrt{a^2 + b^2}` scaled like :func:`row_norms` (no square overflows; gradient 0 at 0)."""
    return _scaled([a, b], jnp.maximum(jnp.abs(a), jnp.abs(b)))


def binary_margins(logits, t):
    r"""Binary margins :math:`z_i = t_i f_i` (t in {-1, +1})."""
    return t * logits


def class_margins(logits, t):
    r"""K-class margins :math:`z_i = f_{t_i} - \max_{k \ne t_i} f_k` (> 0 iff example i is classified right)."""
    own = jnp.take_along_axis(logits, t[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(t, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return own - jnp.max(others, axis=-1)


def check_linear_X(X, params_name: str = "X") -> tuple[int, int]:
    """The linear models' X: a finite float array (n, d), n, d >= 1."""
    return validate.check_inputs(X, params_name)


def init_normal(key, shape, fan_in: int, scale, dtype):
    r""":math:`\mathrm{scale}\cdot\mathcal N(0, 1/\mathrm{fan\_in})` entries of ``shape``."""
    dtype = dtype or jnp.zeros(()).dtype
    return scale * jax.random.normal(key, shape, dtype) / math.sqrt(fan_in)


def check_init(d, scale, **ints):
    validate.check_positive_int(d, "d")
    for name, value in ints.items():
        validate.check_positive_int(value, name)
    validate.check_nonnegative(scale, "scale")
