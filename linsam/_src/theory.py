r"""Analytic predictions to overlay on simulations (Lemma 3.1, Proposition 4.1, early stopping).

Every predictor accepts arrays with any leading axes (time, seed, rho, ...) and reduces
only the trailing example axis, so a whole recorded trajectory goes in with one call and
the prediction comes out on the same leading axes as the measurement.

Linear model, 1-SAM (Baek et al. 2024, Lemma 3.1). With margin
:math:`z_i = t_i\langle w, x_i\rangle` and :math:`C_i = \rho\|x_i\|`,

.. math::

    \nabla\ell_i(w+\epsilon_i) = g(z_i, C_i)\,\nabla\ell_i(w), \qquad
    g(z, C) = \frac{\sigma(-z + C)}{\sigma(-z)} = \frac{1 + e^{z}}{1 + e^{z - C}},

:math:`g` increasing in :math:`z` from 1 to :math:`e^{C}`, so
:math:`\|\nabla\ell_i(w+\epsilon_i)\| = \sigma(-z_i + C_i)\|x_i\|`, and the predicted
clean/noisy ratio of mean per-example gradient norms is

.. math::

    R(\rho) = \frac{\operatorname{mean}_{i\in C}\ \sigma(-z_i + \rho\|x_i\|)\|x_i\|}
                   {\operatorname{mean}_{i\in N}\ \sigma(-z_i + \rho\|x_i\|)\|x_i\|}

(:math:`\rho = 0`: the plain GD ratio). Zero-gradient convention of the core: where
:math:`\sigma(-z_i) = 0` or :math:`\|x_i\| = 0`, :math:`\epsilon_i = 0` and :math:`g = 1`.

2-layer DLN (Proposition 4.1). With :math:`s_i = \sigma(-z_i)`,
:math:`J_i = \sqrt{\|Wx_i\|^2 + \|x_i\|^2\|v\|^2}`, J-SAM's direction minus GD's is the
gradient of

.. math::

    P(v, W) = \frac{\rho}{n}\sum_i \mathrm{sg}(s_i)\, J_i(v, W),

and the 1-SAM margin is :math:`z'_i = z_i - \rho J_i + \rho^2\|x_i\|^2 z_i / J_i^2`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src.models._common import binary_margins
from linsam._src.models.dln import DLN, DLNParams
from linsam._src.models.logreg import margin_shift, one_sam_weight
from linsam._src.validate import check_rho

_DLN = DLN()


def _check_same_shape(**arrays):
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    ref_name, ref = next(iter(shapes.items()))
    for k, s in shapes.items():
        if s[-1:] != ref[-1:]:
            raise ValueError(f"{k} must have the same trailing (example) axis as {ref_name}: {s} vs {ref}")


def one_sam_weights(margins, x_norms, rho):
    r"""Lemma 3.1 weights :math:`g(z_i, \rho\|x_i\|) = \sigma(-z_i+\rho\|x_i\|)/\sigma(-z_i)`.

    Args:
      margins: ``(..., n)`` margins :math:`z_i` (on the training labels).
      x_norms: ``(..., n)`` or ``(n,)`` input norms :math:`\|x_i\|`.
      rho: radius >= 0 (scalar, or broadcastable to the leading axes with a trailing 1).

    Returns:
      ``(..., n)`` weights; 1 where the gradient is 0 (:math:`\epsilon_i = 0`).
    """
    check_rho(rho)
    _check_same_shape(margins=margins, x_norms=x_norms)
    z = jnp.asarray(margins)
    xn = jnp.asarray(x_norms, z.dtype)
    return one_sam_weight(z, margin_shift(z, xn, rho))


def one_sam_grad_norms(margins, x_norms, rho):
    r"""Predicted per-example 1-SAM gradient norms :math:`\sigma(-z_i + \rho\|x_i\|)\|x_i\|`, ``(..., n)``."""
    z = jnp.asarray(margins)
    xn = jnp.asarray(x_norms, z.dtype)
    return one_sam_weights(z, xn, rho) * jax.nn.sigmoid(-z) * xn


def clean_noisy_grad_ratio(margins, x_norms, noise_mask, rho=0.0):
    r"""Predicted ratio :math:`R(\rho)` of mean per-example 1-SAM gradient norms, clean over noisy.

    Args:
      margins: ``(..., n)``; x_norms: ``(..., n)`` or ``(n,)``; noise_mask: ``(n,)`` bool
        (True = flipped), or ``(..., n)``.
      rho: radius (0 gives the plain gradient-norm ratio).

    Returns:
      ``(...)`` ratios (NaN if a group is empty).
    """
    _check_same_shape(margins=margins, noise_mask=noise_mask)
    g = one_sam_grad_norms(margins, x_norms, rho)
    mask = jnp.broadcast_to(jnp.asarray(noise_mask, bool), g.shape)

    def mean(sel):
        cnt = jnp.sum(sel, axis=-1)
        return jnp.where(cnt > 0, jnp.sum(jnp.where(sel, g, 0.0), axis=-1) / jnp.maximum(cnt, 1), jnp.nan)

    return mean(~mask) / mean(mask)


def logreg_margins(w, X, t):
    r"""Margins :math:`z_i = t_i\langle w, x_i\rangle` for weights with leading axes: ``w`` of
    shape ``(..., d)`` gives ``(..., n)``."""
    return binary_margins(jnp.asarray(w) @ jnp.asarray(X).T, jnp.asarray(t))


# ----------------------------------------------------------------------------- DLN


def _dln_penalty(params: DLNParams, X, t, rho):
    return _DLN.jsam_penalty(params, X, t, rho)


def jsam_penalty(params: DLNParams, X, t, rho):
    r"""Proposition 4.1 penalty :math:`P = \frac{\rho}{n}\sum_i \mathrm{sg}(\sigma(-z_i))J_i`
    along a trajectory: :meth:`linsam.models.DLN.jsam_penalty` (its one home) over leading axes.

    Args:
      params: :class:`linsam.dln.DLNParams` with optional leading axes
        (``v: (..., h)``, ``W: (..., h, d)``), e.g. a recorded trajectory.
      X: ``(n, d)``; t: ``(n,)`` +-1 training labels; rho: radius >= 0.

    Returns:
      ``(...)`` penalty values. Its gradient (:func:`jsam_penalty_grad`) is the J-SAM minus GD
      direction, exactly.
    """
    check_rho(rho)
    lead = np.shape(params.v)[:-1]
    fn = lambda p: _dln_penalty(p, X, t, rho)  # noqa: E731
    for _ in lead:
        fn = jax.vmap(fn)
    return fn(params)


def jsam_penalty_grad(params: DLNParams, X, t, rho) -> DLNParams:
    r"""Gradient of :func:`jsam_penalty` (sigmoid weight held fixed):

    .. math::  \nabla_v P = \frac{\rho}{n}\sum_i \frac{s_i\|x_i\|^2}{J_i} v, \qquad
               \nabla_W P = \frac{\rho}{n}\sum_i \frac{s_i}{J_i}(W x_i) x_i^\top,

    the predicted J-SAM minus GD direction (Proposition 4.1). Leading axes of ``params``
    are kept."""
    check_rho(rho)
    lead = np.shape(params.v)[:-1]
    fn = jax.grad(lambda p: _dln_penalty(p, X, t, rho))
    for _ in lead:
        fn = jax.vmap(fn)
    return fn(params)


def dln_one_sam_margins(margins, jac_norms, x_norms, rho):
    r"""Exact margin at the DLN's 1-SAM point, :math:`z' = z - \rho J + \rho^2\|x\|^2 z/J^2`
    (:math:`z' = z` where :math:`J = 0` or :math:`\sigma(-z) = 0`, the eps = 0 convention).
    All arrays ``(..., n)``."""
    check_rho(rho)
    z = jnp.asarray(margins)
    J = jnp.asarray(jac_norms, z.dtype)
    xn = jnp.asarray(x_norms, z.dtype)
    active = (J > 0) & (jax.nn.sigmoid(-z) > 0)
    Js = jnp.where(active, J, 1.0)
    return jnp.where(active, z - rho * J + rho**2 * xn**2 * z / Js**2, z)


# ----------------------------------------------------------------------------- early stopping


class EarlyStopping(NamedTuple):
    r"""Early-stopping reading of a trajectory (the paper's Figure 1); leading axes kept.

    Attributes:
      peak_acc: max over record steps of the test accuracy.
      peak_step: the (first) record step where it is reached.
      final_acc: test accuracy at the last record step.
      memorize_step: memorisation onset: the first record step, after noisy train
        accuracy's minimum, at which noisy train accuracy exceeds chance (NaN if never).
      clean_acc_at_memorize: clean train accuracy at ``memorize_step`` (NaN if never).
      test_acc_at_memorize: test accuracy at ``memorize_step`` (NaN if never).
    """

    peak_acc: np.ndarray
    peak_step: np.ndarray
    final_acc: np.ndarray
    memorize_step: np.ndarray
    clean_acc_at_memorize: np.ndarray
    test_acc_at_memorize: np.ndarray


def early_stopping(steps, test_acc, train_acc_clean=None, train_acc_noisy=None, *, chance: float = 0.5) -> EarlyStopping:
    r"""Summarise trajectories: peak test accuracy and when noisy labels start to be fit.

    Args:
      steps: ``(T,)`` record steps.
      test_acc: ``(..., T)``.
      train_acc_clean, train_acc_noisy: ``(..., T)`` train accuracy on clean / flipped
        examples (on their training labels), or None (memorisation fields are then NaN).
      chance: the chance level (1/2 for binary labels).

    The memorisation onset is searched *after* the minimum of noisy train accuracy, so a
    random start that fits half the noisy labels by luck does not count: training first
    pushes flipped examples below chance (it learns the clean rule) and memorisation is
    when they come back above it.

    Returns:
      :class:`EarlyStopping` of numpy arrays with the leading axes of ``test_acc``.
    """
    steps = np.asarray(steps)
    acc = np.asarray(test_acc, dtype=float)
    if steps.ndim != 1 or acc.shape[-1:] != steps.shape:
        raise ValueError(f"test_acc must have trailing axis T = {steps.shape} matching steps, got {acc.shape}")
    filled = np.where(np.isnan(acc), -np.inf, acc)
    arg = np.argmax(filled, axis=-1)
    peak = np.take_along_axis(acc, arg[..., None], -1)[..., 0]
    nan = np.full(acc.shape[:-1], np.nan)
    if train_acc_noisy is None:
        return EarlyStopping(peak, steps[arg].astype(float), acc[..., -1], nan, nan.copy(), nan.copy())
    noisy = np.asarray(train_acc_noisy, dtype=float)
    clean = np.asarray(train_acc_clean, dtype=float) if train_acc_clean is not None else np.full_like(noisy, np.nan)
    if noisy.shape != acc.shape or clean.shape != acc.shape:
        raise ValueError(f"train accuracies must have the shape of test_acc {acc.shape}, got {noisy.shape}, {clean.shape}")
    T = steps.size
    tmin = np.argmin(np.where(np.isnan(noisy), np.inf, noisy), axis=-1)
    after = np.arange(T) >= tmin[..., None]
    above = after & (noisy > chance)
    has = above.any(axis=-1)
    first = np.argmax(above, axis=-1)
    take = lambda a: np.where(has, np.take_along_axis(a, first[..., None], -1)[..., 0], np.nan)  # noqa: E731
    return EarlyStopping(
        peak,
        steps[arg].astype(float),
        acc[..., -1],
        np.where(has, steps[first].astype(float), np.nan),
        take(clean),
        take(acc),
    )
