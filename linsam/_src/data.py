r"""Label-noise toy data: Gaussian mixtures, label-noise models, population accuracy.

Conventions
-----------
* Binary labels ``t`` are floats in {-1, +1}, shape ``(n,)``; class ids are integers in
  ``[0, K)``, shape ``(n,)``. Inputs ``X`` have shape ``(n, d)``.
* Every random function takes an explicit ``jax.random`` key first; same key, same data.
* Every noise model returns :class:`NoisyLabels` (clean, noisy, mask, realised rate) and
  every generator a :class:`Dataset` (inputs plus the same four fields), so the clean
  labels and the noise mask are never lost.
* Noise kernels are pure JAX and work under ``jit``/``vmap`` over the key (the simulator
  draws a fresh data set per seed inside one compiled sweep). The public wrappers validate
  their arguments first (rates in [0, 1), transition rows summing to 1, ...), and return
  ``rate`` as a Python float when called outside a trace.

Binary Gaussian mixture (all three binary data models are instances of it)
--------------------------------------------------------------------------
.. math::

    t \sim \mathrm{Unif}\{-1, +1\},\qquad x = t\,\mu + \Sigma^{1/2} g,\quad g\sim N(0, I_d),
    \qquad \Sigma = \mathrm{diag}(s^2).

A diagonal covariance loses no generality for the linear models studied here: GD, SAM and
its variants, the isotropic random initialisation and the population accuracy are all
equivariant under rotations of input space, so any covariance can be diagonalised first.

Population accuracy of a linear classifier ``sign(<w, x>)`` (also the DLN, whose
end-to-end map is ``w = W^T v``):

.. math::

    \mathrm{acc}(w) = P\big(t\langle w, x\rangle > 0\big)
                    = \Phi\!\left(\frac{\langle w, \mu\rangle}{\sqrt{w^\top \Sigma w}}\right),

(ties ``<w, x> = 0`` have probability 0 unless ``w^T Sigma w = 0``; then the accuracy is
1, 1/2 or 0 by the sign of ``<w, mu>``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from linsam._src.validate import (
    check_class_labels,
    check_finite,
    check_noise_rate,
    check_positive,
    check_positive_int,
    is_concrete,
)

Array = jax.Array

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


# ----------------------------------------------------------------------------- containers


class NoisyLabels(NamedTuple):
    """Labels after a noise model.

    Attributes:
      clean: ``(n,)`` the true labels (class ids, or +-1 floats for binary variants).
      noisy: ``(n,)`` the observed labels, same dtype as ``clean``.
      mask: ``(n,)`` bool, True where ``noisy != clean`` (the example was flipped).
      rate: realised noise rate ``mask.mean()`` (a float; a scalar array inside a trace).
    """

    clean: Array
    noisy: Array
    mask: Array
    rate: Any


class Dataset(NamedTuple):
    """A labelled sample with label noise.

    Attributes:
      X: ``(n, d)`` inputs.
      clean: ``(n,)`` clean labels (+-1 floats for binary data, int class ids multi-class).
      noisy: ``(n,)`` observed labels (what a learner trains on).
      mask: ``(n,)`` bool, True where flipped.
      rate: realised noise rate (float; a scalar array inside a trace).
    """

    X: Array
    clean: Array
    noisy: Array
    mask: Array
    rate: Any

    @property
    def labels(self) -> NoisyLabels:
        return NoisyLabels(self.clean, self.noisy, self.mask, self.rate)


def _finish_rate(mask: Array):
    """Realised rate: a Python float (count / n) when concrete, a scalar array in a trace."""
    if is_concrete(mask):
        return int(np.sum(np.asarray(mask))) / mask.shape[0]
    return jnp.mean(mask.astype(_float_dtype(None)))


def _float_dtype(dtype):
    if dtype is not None:
        return jnp.dtype(dtype)
    return jnp.zeros(()).dtype  # float64 under jax_enable_x64, else float32


# ----------------------------------------------------------------------------- flip kernels


def num_flips(rate: float, n: int) -> int:
    """Number of flipped examples under exact symmetric noise: ``floor(rate * n)``.

    A small tolerance guards against ``0.3 * 10 = 2.9999999999999996``.
    """
    return int(math.floor(rate * n + 1e-9))


def _exact_mask(key: Array, n: int, m) -> Array:
    """Exactly ``m`` of ``n`` positions, uniformly at random (without replacement).

    ``m`` may be traced (one compilation serves every rate)."""
    order = jax.random.permutation(key, n)
    return jnp.zeros((n,), bool).at[order].set(jnp.arange(n) < m)


def _weighted_exact_mask(key: Array, log_weights: Array, m: int) -> Array:
    r"""Exactly ``m`` positions drawn without replacement, P proportional to ``exp(log_weights)``.

    Gumbel-top-k: the ``m`` largest of ``log_weights_i + G_i``, ``G_i ~ Gumbel(0, 1)`` iid,
    are a successive-sampling draw without replacement with probabilities proportional to
    the weights. Entries with weight 0 (``-inf``) are chosen only if fewer than ``m``
    entries have positive weight (callers check that).
    """
    n = log_weights.shape[0]
    if m == 0:
        return jnp.zeros((n,), bool)
    gumbel = jax.random.gumbel(key, (n,), dtype=jnp.float32)  # float32 draw whatever the x64 flag
    scores = log_weights + gumbel.astype(jnp.result_type(log_weights, jnp.float32))
    _, idx = jax.lax.top_k(scores, m)
    return jnp.zeros((n,), bool).at[idx].set(True)


def _flip_to_other_class(key: Array, labels: Array, mask: Array, num_classes: int) -> Array:
    """Replace each masked label by a uniformly chosen *other* class."""
    shift = jax.random.randint(key, labels.shape, 1, num_classes, dtype=jnp.int32).astype(labels.dtype)
    return jnp.where(mask, (labels + shift) % num_classes, labels)


@partial(jax.jit, static_argnames=("exact",))
def _symmetric_kernel(key, labels, rate, m, num_classes, exact):
    """Jitted symmetric noise on class ids: exact ``m`` flips or Bernoulli(``rate``)."""
    k_mask, k_cls = jax.random.split(key)
    n = labels.shape[0]
    mask = _exact_mask(k_mask, n, m) if exact else jax.random.bernoulli(k_mask, jnp.asarray(rate, jnp.float32), (n,))
    return _flip_to_other_class(k_cls, labels, mask, num_classes), mask


@partial(jax.jit, static_argnames=("exact",))
def _pm1_symmetric_kernel(key, t, rate, m, exact):
    n = t.shape[0]
    mask = _exact_mask(key, n, m) if exact else jax.random.bernoulli(key, jnp.asarray(rate, jnp.float32), (n,))
    return jnp.where(mask, -t, t), mask


# ----------------------------------------------------------------------------- public noise models


def symmetric_noise(key: Array, labels: Array, rate: float, num_classes: int, *, exact: bool = True) -> NoisyLabels:
    r"""Symmetric label noise on integer class ids.

    ``exact=True``: exactly :math:`\lfloor p n\rfloor` examples, chosen uniformly without
    replacement, are flipped, each to a uniformly chosen *other* class (the realised rate is
    ``floor(p n)/n``). ``exact=False``: each example is flipped independently with
    probability ``p`` (Bernoulli), again to a uniformly chosen other class.

    Args:
      key: PRNG key.
      labels: ``(n,)`` integer class ids in ``[0, num_classes)``.
      rate: noise rate ``p`` in [0, 1).
      num_classes: ``K >= 2``.
      exact: exact count (default) or Bernoulli per example.

    Returns:
      :class:`NoisyLabels`.

    >>> out = symmetric_noise(jax.random.PRNGKey(0), jnp.arange(10) % 3, 0.3, 3)
    >>> int(out.mask.sum()), out.rate
    (3, 0.3...)
    """
    check_positive_int(num_classes, "num_classes", minimum=2)
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got shape {labels.shape}")
    check_class_labels(labels, labels.shape[0], num_classes, name="labels")
    check_noise_rate(rate, "rate")
    m = num_flips(rate, labels.shape[0])
    noisy, mask = _symmetric_kernel(key, labels, rate, m, num_classes, exact)
    return NoisyLabels(labels, noisy, mask, _finish_rate(mask))


def check_transition(T: Any, name: str = "T") -> np.ndarray | None:
    """A transition matrix: square (K, K), K >= 2, entries >= 0, every row summing to 1."""
    shape = np.shape(T)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2:
        raise ValueError(f"{name} must be a square (K, K) matrix with K >= 2, got shape {shape}")
    if not is_concrete(T):
        return None
    arr = np.asarray(T, dtype=np.float64)
    check_finite(arr, name)
    if np.any(arr < 0):
        i, j = np.argwhere(arr < 0)[0]
        raise ValueError(f"{name} must have entries >= 0 (probabilities), found {name}[{i}, {j}] = {arr[i, j]}")
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(
            f"every row of {name} must sum to 1 (T[i, j] = P(noisy j | clean i)); "
            f"row {bad[0]} sums to {sums[bad[0]]}"
        )
    return arr


def transition_noise(key: Array, labels: Array, T: Array) -> NoisyLabels:
    r"""Class-conditional label noise through a transition matrix.

    .. math::  P(\tilde y = j \mid y = i) = T_{ij}.

    Args:
      key: PRNG key.
      labels: ``(n,)`` integer class ids in ``[0, K)``.
      T: ``(K, K)`` row-stochastic matrix (validated: entries >= 0, rows sum to 1).

    Returns:
      :class:`NoisyLabels`; ``mask`` marks ``noisy != clean``.
    """
    check_transition(T)
    K = np.shape(T)[0]
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got shape {labels.shape}")
    check_class_labels(labels, labels.shape[0], K, name="labels")
    noisy, mask = _transition_kernel(key, labels, jnp.asarray(T))
    return NoisyLabels(labels, noisy, mask, _finish_rate(mask))


@jax.jit
def _transition_kernel(key, labels, T):
    logits = jnp.log(jnp.clip(T[labels], 0.0, None))  # log 0 = -inf: never sampled
    noisy = jax.random.categorical(key, logits.astype(jnp.float32), axis=-1).astype(labels.dtype)
    return noisy, noisy != labels


def cifar10_asymmetric_transition(rate: float) -> np.ndarray:
    """The standard asymmetric CIFAR-10 noise map as a (10, 10) transition matrix.

    With probability ``rate``: truck -> automobile, bird -> airplane, cat -> dog,
    dog -> cat, deer -> horse; every other class is kept. Class order
    :data:`CIFAR10_CLASSES` (airplane, automobile, bird, cat, deer, dog, frog, horse, ship,
    truck). Returned as float64 numpy (rows sum to 1).
    """
    check_noise_rate(rate, "rate")
    idx = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    T = np.eye(10)
    for src, dst in (("truck", "automobile"), ("bird", "airplane"), ("cat", "dog"), ("dog", "cat"), ("deer", "horse")):
        T[idx[src], idx[src]] = 1.0 - rate
        T[idx[src], idx[dst]] = rate
    return T


def pair_flip_transition(rate: float, num_classes: int) -> np.ndarray:
    """Pair-flip noise: class ``i`` goes to ``(i + 1) mod K`` with probability ``rate``."""
    check_noise_rate(rate, "rate")
    check_positive_int(num_classes, "num_classes", minimum=2)
    T = (1.0 - rate) * np.eye(num_classes)
    T[np.arange(num_classes), (np.arange(num_classes) + 1) % num_classes] += rate
    return T


# ----------------------------------------------------------------------------- binary (+-1) noise


def _check_pm1(t: Any, name: str = "t") -> Array:
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (n,), got shape {t.shape}")
    if is_concrete(t):
        arr = np.asarray(t)
        if arr.dtype.kind not in "biuf" or not np.all(np.isin(arr, (-1, 1))):
            raise ValueError(f"{name} (binary labels) must be -1 or +1")
    return t


def _flip_pm1(t: Array, mask: Array) -> Array:
    return jnp.where(mask, -t, t)


def binary_symmetric_noise(key: Array, t: Array, rate: float, *, exact: bool = True) -> NoisyLabels:
    r"""Symmetric noise on +-1 labels: flip the sign of exactly ``floor(p n)`` uniformly
    chosen examples (``exact=True``), or of each example independently with probability
    ``p`` (``exact=False``)."""
    t = _check_pm1(t)
    check_noise_rate(rate, "rate")
    noisy, mask = _pm1_symmetric_kernel(key, t, rate, num_flips(rate, t.shape[0]), exact)
    return NoisyLabels(t, noisy, mask, _finish_rate(mask))


def binary_class_conditional_noise(key: Array, t: Array, rate_pos: float, rate_neg: float) -> NoisyLabels:
    """Class-conditional (asymmetric) binary noise: a +1 label flips with probability
    ``rate_pos``, a -1 label with ``rate_neg`` (Bernoulli per example); the binary case of
    :func:`transition_noise`."""
    t = _check_pm1(t)
    check_noise_rate(rate_pos, "rate_pos")
    check_noise_rate(rate_neg, "rate_neg")
    noisy, mask = _class_conditional_kernel(key, t, rate_pos, rate_neg)
    return NoisyLabels(t, noisy, mask, _finish_rate(mask))


@jax.jit
def _class_conditional_kernel(key, t, rate_pos, rate_neg):
    mask = jax.random.uniform(key, t.shape, jnp.float32) < jnp.where(t > 0, rate_pos, rate_neg).astype(jnp.float32)
    return _flip_pm1(t, mask), mask


def boundary_noise(key: Array, t: Array, margin: Array, rate: float, *, temperature: float) -> NoisyLabels:
    r"""Structured noise concentrated near the decision boundary.

    Exactly :math:`m = \lfloor p n\rfloor` examples are flipped, drawn without replacement
    with probability proportional to

    .. math::  \pi_i \propto \exp(-|\mathrm{margin}_i| / \tau),

    so examples with a small clean margin (close to the boundary) are the likely flips.
    ``tau -> inf`` recovers exact symmetric noise; ``tau -> 0`` flips the ``m`` examples
    closest to the boundary. Same realised rate as ``binary_symmetric_noise(exact=True)``,
    so the two are directly comparable.

    Args:
      key: PRNG key.
      t: ``(n,)`` clean +-1 labels.
      margin: ``(n,)`` clean margins (e.g. :meth:`GaussianMixture.clean_margin`).
      rate: noise rate in [0, 1).
      temperature: ``tau > 0``, in the units of ``margin``.
    """
    t = _check_pm1(t)
    check_noise_rate(rate, "rate")
    check_positive(temperature, "temperature")
    margin = jnp.asarray(margin)
    if margin.shape != t.shape:
        raise ValueError(f"margin must have shape {t.shape} to match t, got shape {margin.shape}")
    noisy, mask = _boundary_kernel(key, t, margin, temperature, num_flips(rate, t.shape[0]))
    return NoisyLabels(t, noisy, mask, _finish_rate(mask))


@partial(jax.jit, static_argnames=("m",))
def _boundary_kernel(key, t, margin, temperature, m):
    mask = _weighted_exact_mask(key, -jnp.abs(margin) / temperature, m)
    return _flip_pm1(t, mask), mask


def subgroup_noise(key: Array, t: Array, group: Array, rate: float, *, concentration: float = 1.0) -> NoisyLabels:
    r"""Structured noise concentrated in one feature subgroup.

    Exactly :math:`m = \lfloor p n\rfloor` examples are flipped (overall rate as for exact
    symmetric noise), drawn without replacement with weight 1 inside ``group`` and weight
    ``1 - concentration`` outside. ``concentration = 1``: every flip lies in the group (the
    group must then hold at least ``m`` examples, checked when concrete); ``0``: uniform.

    Args:
      key: PRNG key.
      t: ``(n,)`` clean +-1 labels.
      group: ``(n,)`` bool, membership of the subgroup (e.g. ``X[:, j] > 0``).
      rate: overall noise rate in [0, 1).
      concentration: in [0, 1].
    """
    t = _check_pm1(t)
    check_noise_rate(rate, "rate")
    if not (0.0 <= float(concentration) <= 1.0):
        raise ValueError(f"concentration must be in [0, 1], got {concentration!r}")
    group = jnp.asarray(group)
    if group.shape != t.shape:
        raise ValueError(f"group must have shape {t.shape} to match t, got shape {group.shape}")
    m = num_flips(rate, t.shape[0])
    if concentration == 1.0 and is_concrete(group) and int(np.sum(np.asarray(group))) < m:
        raise ValueError(
            f"group holds {int(np.sum(np.asarray(group)))} examples, fewer than the {m} flips "
            f"that rate={rate} asks for with concentration=1"
        )
    return _subgroup_noise(key, t, group, rate, concentration)


def _subgroup_noise(key, t, group, rate, concentration):
    noisy, mask = _subgroup_kernel(key, t, group, concentration, num_flips(rate, t.shape[0]))
    return NoisyLabels(t, noisy, mask, _finish_rate(mask))


@partial(jax.jit, static_argnames=("m",))
def _subgroup_kernel(key, t, group, concentration, m):
    c = jnp.asarray(concentration, jnp.result_type(float))
    outside = jnp.where(c < 1.0, jnp.log1p(-c), -jnp.inf)  # log of the outside weight 1 - c
    mask = _weighted_exact_mask(key, jnp.where(group, 0.0, outside), m)
    return _flip_pm1(t, mask), mask


# ----------------------------------------------------------------------------- Gaussian mixtures


class GaussianMixture(NamedTuple):
    r"""Binary Gaussian mixture :math:`x = t\mu + \mathrm{diag}(s) g`, t uniform +-1.

    Attributes:
      mu: ``(d,)`` class mean (class +1 at ``+mu``, class -1 at ``-mu``).
      scale: ``(d,)`` per-coordinate standard deviation ``s`` (covariance ``diag(s^2)``).

      norm_mix: None, or ``(3,)`` ``(p, s_lo, s_hi)``: heterogeneous example norms, each
        example is multiplied by ``s_hi`` with probability ``p`` and by ``s_lo`` otherwise
        (:func:`with_example_norms`). A positive factor does not change ``sign(<w, x>)``, so
        population and Bayes accuracy are those of the unscaled mixture.

    Build with :func:`isotropic_mixture`, :func:`anisotropic_mixture` or
    :func:`signal_noise_mixture`.
    """

    mu: Array
    scale: Array
    norm_mix: Any = None

    @property
    def dim(self) -> int:
        return self.mu.shape[-1]

    def sample(self, key: Array, n: int, dtype=None) -> tuple[Array, Array]:
        """``(X, t)``: ``(n, d)`` inputs and ``(n,)`` clean +-1 labels (float)."""
        return _mixture_sample(key, self, n, _float_dtype(dtype))

    def _sample(self, key: Array, n: int, dtype) -> tuple[Array, Array]:
        k_t, k_g = jax.random.split(key)
        t = jnp.where(jax.random.bernoulli(k_t, jnp.float32(0.5), (n,)), 1.0, -1.0).astype(dtype)
        g = jax.random.normal(k_g, (n, self.dim), dtype=jnp.float32).astype(dtype)  # x64-independent draw
        X = t[:, None] * self.mu.astype(dtype) + g * self.scale.astype(dtype)
        if self.norm_mix is not None:  # a third key: the draws above are unchanged
            p, lo, hi = (self.norm_mix[i].astype(dtype) for i in range(3))
            big = jax.random.bernoulli(jax.random.fold_in(key, 2), p.astype(jnp.float32), (n,))
            X = X * jnp.where(big, hi, lo)[:, None]
        return X, t

    def clean_margin(self, X: Array, t: Array) -> Array:
        r"""Signed distance of each example to the boundary along the mean direction,
        in units of the class spread along that direction:

        .. math:: m_i = t_i \langle \hat\mu, x_i\rangle / \sqrt{\hat\mu^\top\Sigma\hat\mu},
                  \quad \hat\mu = \mu/\|\mu\|.

        For the isotropic mixture this is the Bayes classifier's margin, ``N(||mu||/s, 1)``
        per example. (If the spread along ``mu`` is 0 the denominator is taken as 1.)
        """
        u = self.mu / jnp.linalg.norm(self.mu)
        spread = jnp.sqrt(jnp.sum((u * self.scale) ** 2))
        spread = jnp.where(spread > 0, spread, 1.0)
        return t * (X @ u) / spread

    def bayes_accuracy(self) -> Array:
        r"""Accuracy of the Bayes classifier ``w = Sigma^{-1} mu``:
        :math:`\Phi(\sqrt{\mu^\top\Sigma^{-1}\mu})` (1 if some signal coordinate has zero
        variance)."""
        s2 = self.scale**2
        noiseless = jnp.any((s2 == 0) & (self.mu != 0))
        snr = jnp.sum(jnp.where(s2 > 0, self.mu**2 / jnp.where(s2 > 0, s2, 1.0), 0.0))
        return jnp.where(noiseless, 1.0, ndtr(jnp.sqrt(snr)))


@partial(jax.jit, static_argnames=("n", "dtype"))
def _mixture_sample(key, mixture, n, dtype):
    """One compiled sampler per (mixture type, n, d, dtype)."""
    return mixture._sample(key, n, dtype)


def _check_dim(d, name="d"):
    check_positive_int(d, name)


def isotropic_mixture(d: int, mean_norm: float, sigma: float = 1.0) -> GaussianMixture:
    r"""Isotropic mixture: :math:`\mu = \|\mu\| e_1`, :math:`\Sigma = \sigma^2 I_d`.

    Bayes accuracy :math:`\Phi(\|\mu\|/\sigma)`; the mean classifier
    :math:`\hat w = \frac1n\sum_i t_i x_i` reaches
    :math:`\Phi\big(\|\mu\|^2/(\sigma\sqrt{\|\mu\|^2 + \sigma^2 d/n})\big)` to first order
    on clean labels, so ``d/n`` controls how far from Bayes a finite sample sits.
    """
    _check_dim(d)
    check_positive(mean_norm, "mean_norm")
    check_positive(sigma, "sigma")
    mu = np.zeros(d)
    mu[0] = mean_norm
    return GaussianMixture(jnp.asarray(mu), jnp.asarray(np.full(d, float(sigma))))


def with_example_norms(mixture: GaussianMixture, ratio: float, frac: float) -> GaussianMixture:
    r"""Heterogeneous example norms: example i is scaled by :math:`s_i`, :math:`s_{\rm hi}` with
    probability ``frac``, :math:`s_{\rm lo}` otherwise, :math:`s_{\rm hi}/s_{\rm lo}` = ``ratio``,
    normalised so that :math:`E s_i^2 = 1` (the mean squared norm is unchanged):

    .. math::  s_{\rm lo} = (1 - p + p r^2)^{-1/2}, \qquad s_{\rm hi} = r\, s_{\rm lo}.

    1-SAM's shift :math:`C_i = \rho\|x_i\|` then differs between the two groups, so it is no
    longer a constant shift of the loss (derivation D1). Accuracy is unchanged (a positive
    factor keeps ``sign(<w, x>)``).
    """
    check_positive(ratio, "norm_ratio")
    if not (np.isfinite(frac) and 0.0 <= frac <= 1.0):
        raise ValueError(f"norm_frac must be in [0, 1], got {frac!r}")
    lo = 1.0 / math.sqrt(1.0 - frac + frac * ratio**2)
    return mixture._replace(norm_mix=jnp.asarray([frac, lo, ratio * lo]))


def spiked_spectrum(d: int, num_spikes: int, spike: float, *, trace: float | None = None) -> np.ndarray:
    r"""Spiked covariance eigenvalues: the first ``num_spikes`` are ``spike`` times the others
    (:math:`\lambda = (s, \dots, s, 1, \dots, 1)`), rescaled to sum to ``trace`` (default d)."""
    _check_dim(d)
    if isinstance(num_spikes, bool) or not isinstance(num_spikes, (int, np.integer)) or not 0 <= num_spikes <= d:
        raise ValueError(f"num_spikes must be an integer in [0, d = {d}], got {num_spikes!r}")
    check_positive(spike, "spike")
    lam = np.ones(d)
    lam[:num_spikes] = spike
    return lam * ((d if trace is None else trace) / lam.sum())


def power_law_spectrum(d: int, alpha: float, *, trace: float | None = None) -> np.ndarray:
    r"""Covariance eigenvalues :math:`\lambda_k \propto k^{-\alpha}`, ``k = 1..d``,
    rescaled so that :math:`\sum_k \lambda_k` equals ``trace`` (default ``d``, the trace of
    the identity)."""
    _check_dim(d)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    lam = np.arange(1, d + 1, dtype=np.float64) ** (-float(alpha))
    return lam * ((d if trace is None else trace) / lam.sum())


def anisotropic_mixture(spectrum: Any, mean_norm: float, *, mean_coords: Any = 0) -> GaussianMixture:
    r"""Anisotropic mixture with covariance :math:`\mathrm{diag}(\lambda)`.

    Args:
      spectrum: ``(d,)`` covariance eigenvalues ``lambda_k >= 0`` (e.g.
        :func:`power_law_spectrum`).
      mean_norm: ``||mu|| > 0``.
      mean_coords: the coordinate(s) (eigen-directions) ``mu`` is spread over equally.
        With ``mu`` on a low-variance direction, GD (which moves along high-variance
        directions first) and the Bayes direction :math:`\Sigma^{-1}\mu` differ most.
    """
    lam = np.asarray(spectrum, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 1:
        raise ValueError(f"spectrum must have shape (d,), got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError("spectrum (covariance eigenvalues) must be finite and >= 0")
    check_positive(mean_norm, "mean_norm")
    coords = np.atleast_1d(np.asarray(mean_coords, dtype=int))
    if np.any(coords < 0) or np.any(coords >= lam.size):
        raise ValueError(f"mean_coords must index [0, {lam.size}), got {mean_coords!r}")
    mu = np.zeros(lam.size)
    mu[coords] = mean_norm / np.sqrt(coords.size)
    return GaussianMixture(jnp.asarray(mu), jnp.asarray(np.sqrt(lam)))


def signal_noise_mixture(
    d: int, *, num_signal: int = 1, signal: float = 1.0, signal_std: float = 0.0, noise_std: float = 1.0
) -> GaussianMixture:
    r"""Signal coordinates plus high-dimensional noise.

    The first ``num_signal`` coordinates carry ``t * signal / sqrt(num_signal)`` plus
    ``N(0, signal_std^2)``; the other ``d - num_signal`` are pure noise ``N(0, noise_std^2)``.
    With ``signal_std = 0`` the classes are separable along the signal, but when
    ``noise_std^2 (d - num_signal)`` is large compared to ``signal^2`` a learner can also fit
    (memorise) the training set through the noise coordinates, so the ratio ``d / n``
    (the sample size is chosen at sampling time) controls memorisation of noisy labels.
    """
    _check_dim(d)
    check_positive_int(num_signal, "num_signal")
    if num_signal > d:
        raise ValueError(f"num_signal must be <= d = {d}, got {num_signal}")
    check_positive(signal, "signal")
    for v, name in ((signal_std, "signal_std"), (noise_std, "noise_std")):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    mu = np.zeros(d)
    mu[:num_signal] = signal / math.sqrt(num_signal)
    scale = np.full(d, float(noise_std))
    scale[:num_signal] = signal_std
    return GaussianMixture(jnp.asarray(mu), jnp.asarray(scale))


class XorMixture(NamedTuple):
    r"""XOR-arranged Gaussian clusters, a binary task no linear classifier solves.

    .. math::

        s_1, s_2 \sim \mathrm{Unif}\{-1, +1\},\quad t = s_1 s_2,\quad
        x = a\,(s_1 e_1 + s_2 e_2) + \sigma g,\quad g \sim N(0, I_d):

    four clusters at :math:`\pm a e_1 \pm a e_2`, label the sign product. Every linear
    classifier :math:`\mathrm{sign}\langle w, x\rangle` has population accuracy 1/2 (the
    clusters of each class are symmetric about 0). The Bayes classifier is
    :math:`\mathrm{sign}(x_1 x_2)` (the posterior odds are
    :math:`\cosh(a(x_1+x_2)/\sigma^2)/\cosh(a(x_1-x_2)/\sigma^2)`), with accuracy
    :math:`\Phi(a/\sigma)^2 + (1 - \Phi(a/\sigma))^2`.

    Attributes:
      mu1, mu2: ``(d,)`` the two cluster offsets :math:`a e_1`, :math:`a e_2`.
      scale: ``(d,)`` per-coordinate standard deviation (isotropic: every entry :math:`\sigma`).

    Build with :func:`xor_mixture`.
    """

    mu1: Array
    mu2: Array
    scale: Array

    @property
    def dim(self) -> int:
        return self.mu1.shape[-1]

    def sample(self, key: Array, n: int, dtype=None) -> tuple[Array, Array]:
        """``(X, t)``: ``(n, d)`` inputs and ``(n,)`` clean +-1 labels (float)."""
        return _mixture_sample(key, self, n, _float_dtype(dtype))

    def _sample(self, key: Array, n: int, dtype) -> tuple[Array, Array]:
        k1, k2, k_g = jax.random.split(key, 3)
        s1 = jnp.where(jax.random.bernoulli(k1, jnp.float32(0.5), (n,)), 1.0, -1.0).astype(dtype)
        s2 = jnp.where(jax.random.bernoulli(k2, jnp.float32(0.5), (n,)), 1.0, -1.0).astype(dtype)
        g = jax.random.normal(k_g, (n, self.dim), dtype=jnp.float32).astype(dtype)  # x64-independent draw
        X = s1[:, None] * self.mu1.astype(dtype) + s2[:, None] * self.mu2.astype(dtype) + g * self.scale.astype(dtype)
        return X, s1 * s2

    def clean_margin(self, X: Array, t: Array) -> Array:
        r"""Signed distance to the Bayes boundary (the two axes :math:`x_1 = 0`, :math:`x_2 = 0`) in
        units of :math:`\sigma`: :math:`t\,\mathrm{sign}(x_1 x_2)\min(|x_1|, |x_2|)/\sigma`
        (for ``boundary`` label noise)."""
        x1, x2 = X[:, 0], X[:, 1]
        return t * jnp.sign(x1 * x2) * jnp.minimum(jnp.abs(x1), jnp.abs(x2)) / self.scale[0]

    def bayes_accuracy(self) -> Array:
        r""":math:`p_1 p_2 + (1 - p_1)(1 - p_2)`, :math:`p_k = \Phi(a/\sigma_k)`: both signs read right,
        or both wrong."""
        p1 = ndtr(jnp.sum(self.mu1) / self.scale[0])
        p2 = ndtr(jnp.sum(self.mu2) / self.scale[1])
        return p1 * p2 + (1 - p1) * (1 - p2)


def xor_mixture(d: int, mean_norm: float, sigma: float = 1.0) -> XorMixture:
    r"""The XOR mixture (:class:`XorMixture`) with offset :math:`a` = ``mean_norm`` along
    :math:`e_1` and :math:`e_2` (each cluster mean has norm :math:`a\sqrt2`), isotropic noise
    :math:`\sigma`; ``d >= 2``."""
    check_positive_int(d, "d", minimum=2)
    check_positive(mean_norm, "mean_norm")
    check_positive(sigma, "sigma")
    mu1, mu2 = np.zeros(d), np.zeros(d)
    mu1[0], mu2[1] = mean_norm, mean_norm
    return XorMixture(jnp.asarray(mu1), jnp.asarray(mu2), jnp.asarray(np.full(d, float(sigma))))


def population_accuracy(mixture: GaussianMixture, w: Array) -> Array:
    r"""Population accuracy of ``sign(<w, x>)`` on a binary Gaussian mixture.

    .. math::  \mathrm{acc}(w) = \Phi\!\left(\langle w,\mu\rangle / \sqrt{w^\top\Sigma w}\right)

    Args:
      mixture: the data model.
      w: ``(..., d)`` linear weights; any leading axes (time, seeds, rho) are kept. For a
        DLN pass the end-to-end weights ``W^T v``.

    Returns:
      ``(...)`` accuracies. Degenerate ``w^T Sigma w = 0``: 1, 1/2 or 0 by the sign of
      ``<w, mu>`` (so ``w = 0`` scores 1/2, chance).
    """
    w = jnp.asarray(w)
    if w.shape[-1] != mixture.dim:
        raise ValueError(f"w must have last axis d = {mixture.dim}, got shape {w.shape}")
    return _population_accuracy(mixture.mu, mixture.scale, w)


@jax.jit
def _population_accuracy(mu, scale, w):
    signal = w @ mu.astype(w.dtype)
    var = jnp.sum((w * scale.astype(w.dtype)) ** 2, axis=-1)
    return _accuracy_from_moments(signal, var)


def _accuracy_from_moments(signal, var):
    r""":math:`\Phi(\langle w,\mu\rangle/\sqrt{w^\top\Sigma w})` from its two moments; the sign of the
    signal (1, 0 or 1/2) where the variance is 0."""
    safe = jnp.where(var > 0, var, 1.0)
    acc = ndtr(signal / jnp.sqrt(safe))
    degenerate = jnp.where(signal > 0, 1.0, jnp.where(signal < 0, 0.0, 0.5)).astype(acc.dtype)
    return jnp.where(var > 0, acc, degenerate)


def sampled_accuracy(key: Array, mixture: GaussianMixture, w: Array, n: int) -> Array:
    """Accuracy of ``sign(<w, x>)`` on a fresh clean sample of ``n`` points (for checks of
    :func:`population_accuracy`, and for models without a closed form). ``w``: ``(..., d)``.
    Ties (``<w, x> = 0``) count as half correct."""
    check_positive_int(n, "n")
    return _sampled_accuracy(key, mixture, jnp.asarray(w), n)


@partial(jax.jit, static_argnames=("n",))
def _sampled_accuracy(key, mixture, w, n):
    X, t = mixture.sample(key, n, dtype=w.dtype)
    s = jnp.sign(w @ X.T) * t
    return jnp.mean((s > 0) + 0.5 * (s == 0), axis=-1)


# ----------------------------------------------------------------------------- multi-class


class MulticlassMixture(NamedTuple):
    r"""K-class Gaussian mixture :math:`x = \mu_y + \mathrm{diag}(s) g`, y uniform in [0, K).

    Attributes:
      means: ``(K, d)`` class means.
      scale: ``(d,)`` per-coordinate standard deviation.
    """

    means: Array
    scale: Array

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, key: Array, n: int, dtype=None) -> tuple[Array, Array]:
        """``(X, y)``: ``(n, d)`` inputs and ``(n,)`` int32 class ids."""
        return _mixture_sample(key, self, n, _float_dtype(dtype))

    def _sample(self, key: Array, n: int, dtype) -> tuple[Array, Array]:
        k_y, k_g = jax.random.split(key)
        y = jax.random.randint(k_y, (n,), 0, self.num_classes, dtype=jnp.int32)
        g = jax.random.normal(k_g, (n, self.dim), dtype=jnp.float32).astype(dtype)  # x64-independent draw
        X = self.means.astype(dtype)[y] + g * self.scale.astype(dtype)
        return X, y


def multiclass_mixture(d: int, num_classes: int, mean_norm: float, sigma: float = 1.0) -> MulticlassMixture:
    r"""Orthogonal class means :math:`\mu_k = \|\mu\| e_k` (needs ``K <= d``), isotropic
    noise :math:`\sigma^2 I_d`."""
    _check_dim(d)
    check_positive_int(num_classes, "num_classes", minimum=2)
    if num_classes > d:
        raise ValueError(f"num_classes must be <= d = {d} (orthogonal means), got {num_classes}")
    check_positive(mean_norm, "mean_norm")
    check_positive(sigma, "sigma")
    means = np.zeros((num_classes, d))
    means[np.arange(num_classes), np.arange(num_classes)] = mean_norm
    return MulticlassMixture(jnp.asarray(means), jnp.asarray(np.full(d, float(sigma))))


def sampled_multiclass_accuracy(key: Array, mixture: MulticlassMixture, W: Array, n: int) -> Array:
    """Accuracy of ``argmax_k (W x)_k`` on a fresh clean sample of ``n`` points; ``W``:
    ``(..., K, d)``. (No closed form for K > 2.)"""
    check_positive_int(n, "n")
    return _sampled_multiclass_accuracy(key, mixture, jnp.asarray(W), n)


@partial(jax.jit, static_argnames=("n",))
def _sampled_multiclass_accuracy(key, mixture, W, n):
    X, y = mixture.sample(key, n, dtype=W.dtype)
    pred = jnp.argmax(jnp.einsum("...kd,nd->...nk", W, X), axis=-1)
    return jnp.mean(pred == y, axis=-1)


# ----------------------------------------------------------------------------- generators


NOISE_KINDS = ("none", "symmetric", "bernoulli", "class_conditional", "boundary", "subgroup", "cifar10_asymmetric")
#: The noise kinds of K-class labels (:func:`corrupt_multiclass`).
MULTICLASS_NOISE_KINDS = ("none", "symmetric", "cifar10_asymmetric")


class NoiseSpec(NamedTuple):
    r"""How to corrupt binary labels (a static, hashable description; used by configs).

    Attributes:
      kind: one of :data:`NOISE_KINDS`:
        ``"none"``; ``"symmetric"`` (exactly floor(rate n) flips);
        ``"bernoulli"`` (each flipped w.p. rate); ``"class_conditional"`` (+1 flips w.p.
        ``rate``, -1 w.p. ``rate_neg``); ``"boundary"`` (:func:`boundary_noise` on
        :meth:`GaussianMixture.clean_margin` with ``temperature``); ``"subgroup"``
        (:func:`subgroup_noise`, group ``X[:, group_coord] > 0``, ``concentration``);
        K-class labels only (:func:`corrupt_multiclass`): ``"symmetric"`` (exactly
        floor(rate n) flips, each to a uniform other class) and ``"cifar10_asymmetric"``
        (:func:`cifar10_asymmetric_transition`: truck -> automobile, bird -> airplane,
        deer -> horse, cat <-> dog, each w.p. ``rate``; 10 classes).
      rate: noise rate in [0, 1).
      temperature, group_coord, concentration, rate_neg: parameters of the kinds above.
    """

    kind: str = "symmetric"
    rate: float = 0.0
    temperature: float = 0.5
    group_coord: int = -1
    concentration: float = 1.0
    rate_neg: float = 0.0

    def validate(self, d: int | None = None) -> "NoiseSpec":
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"noise.kind must be one of {', '.join(NOISE_KINDS)}; got {self.kind!r}")
        check_noise_rate(self.rate, "noise.rate")
        check_noise_rate(self.rate_neg, "noise.rate_neg")
        check_positive(self.temperature, "noise.temperature")
        if not (0.0 <= self.concentration <= 1.0):
            raise ValueError(f"noise.concentration must be in [0, 1], got {self.concentration!r}")
        if d is not None and not (-d <= self.group_coord < d):
            raise ValueError(f"noise.group_coord must index [-{d}, {d}), got {self.group_coord}")
        if self.kind == "subgroup" and self.concentration == 1.0 and self.rate > 0.45:
            raise ValueError(
                "noise.rate must be <= 0.45 for subgroup noise with concentration 1 "
                f"(the group X[:, j] > 0 holds about half the sample), got {self.rate}"
            )
        return self


def corrupt_binary(key: Array, X: Array, t: Array, spec: NoiseSpec, mixture: GaussianMixture | None = None) -> NoisyLabels:
    """Apply the noise model ``spec`` to clean +-1 labels ``t`` of inputs ``X`` (pure JAX;
    ``mixture`` is needed for ``"boundary"`` noise, whose margins it defines)."""
    n = t.shape[0]
    if spec.kind == "none" or (spec.rate == 0.0 and spec.rate_neg == 0.0):
        mask = jnp.zeros((n,), bool)
        return NoisyLabels(t, t, mask, _finish_rate(mask))
    if spec.kind == "symmetric":
        return binary_symmetric_noise(key, t, spec.rate, exact=True)
    if spec.kind == "bernoulli":
        return binary_symmetric_noise(key, t, spec.rate, exact=False)
    if spec.kind == "class_conditional":
        return binary_class_conditional_noise(key, t, spec.rate, spec.rate_neg)
    if spec.kind == "boundary":
        if mixture is None:
            raise ValueError("boundary noise needs the mixture (its clean margins)")
        return boundary_noise(key, t, mixture.clean_margin(X, t), spec.rate, temperature=spec.temperature)
    if spec.kind == "subgroup":
        return _subgroup_noise(key, t, X[:, spec.group_coord] > 0, spec.rate, spec.concentration)
    raise ValueError(f"noise.kind must be one of {', '.join(NOISE_KINDS)}; got {spec.kind!r}")


def sample_binary(key: Array, mixture: GaussianMixture, n: int, noise: NoiseSpec = NoiseSpec(), dtype=None) -> Dataset:
    r"""Draw ``n`` examples from a binary mixture and corrupt their labels.

    Args:
      key: PRNG key (split into a data key and a noise key).
      mixture: :class:`GaussianMixture`.
      n: sample size, ``n >= 2``.
      noise: :class:`NoiseSpec` (default: no noise).
      dtype: float dtype of ``X`` and the labels (default: JAX's default float).

    Returns:
      :class:`Dataset` ``(X (n, d), clean (n,), noisy (n,), mask (n,), rate)``.

    >>> ds = sample_binary(jax.random.PRNGKey(0), isotropic_mixture(50, 2.0), 100,
    ...                    NoiseSpec("symmetric", 0.2))
    >>> ds.X.shape, int(ds.mask.sum()), ds.rate
    ((100, 50), 20, 0.2)
    """
    check_positive_int(n, "n", minimum=2)
    noise.validate(mixture.dim)
    ds = _sample_binary_jit(key, mixture, n, noise, None if dtype is None else jnp.dtype(dtype))
    return ds._replace(rate=_finish_rate(ds.mask))


def _sample_binary(key, mixture, n, noise, dtype=None) -> Dataset:
    """Unvalidated kernel of :func:`sample_binary` (jit/vmap over ``key``)."""
    k_data, k_noise = jax.random.split(key)
    X, t = mixture.sample(k_data, n, dtype)
    lab = corrupt_binary(k_noise, X, t, noise, mixture)
    return Dataset(X, lab.clean, lab.noisy, lab.mask, lab.rate)


_sample_binary_jit = jax.jit(_sample_binary, static_argnames=("n", "noise", "dtype"))


def corrupt_multiclass(key: Array, y: Array, spec: NoiseSpec, num_classes: int) -> NoisyLabels:
    """Apply the K-class noise model ``spec`` (:data:`MULTICLASS_NOISE_KINDS`) to class ids
    ``y`` (pure JAX, unvalidated: the config validates ``spec`` and ``num_classes``)."""
    n = y.shape[0]
    if spec.kind == "none" or spec.rate == 0.0:
        mask = jnp.zeros((n,), bool)
        return NoisyLabels(y, y, mask, _finish_rate(mask))
    if spec.kind == "symmetric":
        noisy, mask = _symmetric_kernel(key, y, spec.rate, num_flips(spec.rate, n), num_classes, True)
        return NoisyLabels(y, noisy, mask, _finish_rate(mask))
    if spec.kind == "cifar10_asymmetric":
        noisy, mask = _transition_kernel(key, y, jnp.asarray(cifar10_asymmetric_transition(spec.rate)))
        return NoisyLabels(y, noisy, mask, _finish_rate(mask))
    raise ValueError(f"K-class noise.kind must be one of {', '.join(MULTICLASS_NOISE_KINDS)}; got {spec.kind!r}")


def _sample_multiclass_spec(key, mixture, n, noise, dtype=None) -> Dataset:
    """K-class analogue of :func:`_sample_binary` (same key split): int class ids as labels."""
    k_data, k_noise = jax.random.split(key)
    X, y = mixture.sample(k_data, n, dtype)
    lab = corrupt_multiclass(k_noise, y, noise, mixture.num_classes)
    return Dataset(X, lab.clean, lab.noisy, lab.mask, lab.rate)


def sample_multiclass(
    key: Array, mixture: MulticlassMixture, n: int, rate: float = 0.0, *, T: Any = None, exact: bool = True, dtype=None
) -> Dataset:
    """Draw ``n`` examples from a K-class mixture with symmetric noise at ``rate``
    (:func:`symmetric_noise`) or, if ``T`` is given, transition-matrix noise
    (:func:`transition_noise`). Returns a :class:`Dataset` with int class ids."""
    check_positive_int(n, "n", minimum=2)
    check_noise_rate(rate, "rate")
    if T is not None:
        check_transition(T)
        if np.shape(T)[0] != mixture.num_classes:
            raise ValueError(f"T must be ({mixture.num_classes}, {mixture.num_classes}), got {np.shape(T)}")
    k_data, k_noise = jax.random.split(key)
    X, y = mixture.sample(k_data, n, dtype)
    lab = transition_noise(k_noise, y, T) if T is not None else symmetric_noise(k_noise, y, rate, mixture.num_classes, exact=exact)
    return Dataset(X, lab.clean, lab.noisy, lab.mask, lab.rate)


# ----------------------------------------------------------------------------- config-level description

MIXTURE_KINDS = ("isotropic", "anisotropic", "spiked", "signal_noise", "xor")


class MixtureSpec(NamedTuple):
    r"""A static, hashable description of a binary mixture (what a TOML ``[data]`` table holds).

    Attributes:
      kind: ``"isotropic"`` (:func:`isotropic_mixture`), ``"anisotropic"``
        (:func:`anisotropic_mixture` with :func:`power_law_spectrum`), ``"spiked"``
        (:func:`anisotropic_mixture` with :func:`spiked_spectrum`), ``"signal_noise"``
        (:func:`signal_noise_mixture`) or ``"xor"`` (:func:`xor_mixture`: four clusters at
        :math:`\pm a e_1 \pm a e_2`, ``a = mean_norm``, label the sign product; no linear
        classifier solves it).
      d: input dimension.
      mean_norm: :math:`\|\mu\|` (``signal`` for ``signal_noise``).
      sigma: per-coordinate noise std: isotropic :math:`\sigma`; anisotropic: the spectrum
        has trace :math:`d\sigma^2`; signal_noise: ``noise_std``.
      alpha: power-law exponent of the anisotropic spectrum, :math:`\lambda_k\propto k^{-\alpha}`.
      mean_coords: anisotropic/spiked: eigen-directions (0 = largest variance) that carry ``mu``.
      num_signal, signal_std: signal_noise only.
      num_spikes, spike: spiked only: the first ``num_spikes`` directions have ``spike`` times
        the variance of the others (trace :math:`d\sigma^2`).
      norm_ratio, norm_frac: heterogeneous example norms (:func:`with_example_norms`), any
        kind: a fraction ``norm_frac`` of the examples is ``norm_ratio`` times longer than the
        rest (mean squared norm unchanged); ``norm_frac = 0`` (default) is off.
    """

    kind: str = "isotropic"
    d: int = 100
    mean_norm: float = 1.0
    sigma: float = 1.0
    alpha: float = 1.0
    mean_coords: tuple = (0,)
    num_signal: int = 1
    signal_std: float = 0.0
    num_spikes: int = 1
    spike: float = 1.0
    norm_ratio: float = 1.0
    norm_frac: float = 0.0

    def build(self) -> GaussianMixture:
        """The :class:`GaussianMixture` (validates every field)."""
        mixture = self._build_base()
        if self.norm_frac != 0.0 or self.norm_ratio != 1.0:
            mixture = with_example_norms(mixture, self.norm_ratio, self.norm_frac)
        return mixture

    def _build_base(self) -> GaussianMixture:
        if self.kind not in MIXTURE_KINDS:
            raise ValueError(f"data.kind must be one of {', '.join(MIXTURE_KINDS)}; got {self.kind!r}")
        check_positive_int(self.d, "data.d")
        if self.kind == "isotropic":
            return isotropic_mixture(self.d, self.mean_norm, self.sigma)
        if self.kind == "anisotropic":
            check_positive(self.sigma, "data.sigma")
            spectrum = power_law_spectrum(self.d, self.alpha, trace=self.d * self.sigma**2)
            return anisotropic_mixture(spectrum, self.mean_norm, mean_coords=list(self.mean_coords))
        if self.kind == "xor":
            if self.norm_frac != 0.0 or self.norm_ratio != 1.0:
                raise ValueError("data.norm_frac / data.norm_ratio are not supported with data.kind 'xor'")
            return xor_mixture(self.d, self.mean_norm, self.sigma)
        if self.kind == "spiked":
            check_positive(self.sigma, "data.sigma")
            spectrum = spiked_spectrum(self.d, self.num_spikes, self.spike, trace=self.d * self.sigma**2)
            return anisotropic_mixture(spectrum, self.mean_norm, mean_coords=list(self.mean_coords))
        return signal_noise_mixture(
            self.d, num_signal=self.num_signal, signal=self.mean_norm, signal_std=self.signal_std, noise_std=self.sigma
        )


# ----------------------------------------------------------------------------- a sweep's draws
#
# Everything a sweep draws per seed lives here, behind :func:`draw_seeds` (the engine asks once
# per chunk of seeds); the single-seed views (:func:`training_sample`, :func:`validation_sample`,
# :func:`test_sample`, :func:`initial_params`) derive the same keys, so they return exactly what
# the sweep trained and measured on.
#
# Keys of seed ``s``: ``split(PRNGKey(s), 3) = (data, init, sgd)``; the clean test sample
# ``fold_in(PRNGKey(s), TEST_KEY)``; the validation sample ``fold_in(PRNGKey(s), VAL_KEY)``.

#: The test sample of seed ``s`` is drawn with key ``fold_in(PRNGKey(s), TEST_KEY)``: the training
#: keys ``split(PRNGKey(s), 3)`` are unchanged.
TEST_KEY = 0x7E57
#: The validation sample of seed ``s`` is drawn with key ``fold_in(PRNGKey(s), VAL_KEY)``: from the
#: training distribution with the same label noise, disjoint from the training draw.
VAL_KEY = 0x7A1


class DrawPlan(NamedTuple):
    """What a sweep draws for every seed: static and hashable (the engine builds it from its
    config, :func:`linsam._src.engine.config.draw_plan`).

    Attributes:
      data, noise: the :class:`MixtureSpec` and :class:`NoiseSpec`.
      n: training-set size.
      num_classes: None for the binary mixture of ``data``, else K: the K-class mixture with
        orthogonal means ``data.mean_norm e_k`` (:func:`multiclass_mixture`) and K-class noise.
      test_size: size of the clean test sample of each seed, 0 for none (the population
        accuracy is exact).
      val_size: size of the validation sample of each seed (noisy labels).
      init_scale: the ``scale`` of ``model.init``.
      dtype: ``"float32"`` or ``"float64"``.
    """

    data: MixtureSpec
    noise: NoiseSpec
    n: int
    num_classes: int | None
    test_size: int
    val_size: int
    init_scale: float
    dtype: str


class SeedDraws(NamedTuple):
    """The draws of a block of seeds (leading seed axis on every array).

    Attributes:
      train: the training :class:`Dataset` (``X (S, n, d)``, labels ``(S, n)``).
      params0: the initial parameters (``model.init``, key ``init``).
      sgd_key: ``(S, 2)`` the mini-batch keys.
      test: ``(X_test (S, m, d), t_test (S, m))`` clean test samples, or None (``test_size = 0``).
      val: ``(X_val (S, v, d), noisy t_val (S, v))`` the validation samples.
      mixture: the mixture they were drawn from (arrays in ``dtype``; no seed axis).
    """

    train: Dataset
    params0: Any
    sgd_key: Array
    test: Any
    val: Any
    mixture: Any


def _multiclass_of(plan: DrawPlan) -> MulticlassMixture:
    d = plan.data
    return multiclass_mixture(d.d, int(plan.num_classes), d.mean_norm, d.sigma)


def mixture_of(plan: DrawPlan):
    """The mixture of ``plan`` with its arrays in ``plan.dtype`` (binary :class:`GaussianMixture`
    or :class:`XorMixture`, or the K-class :class:`MulticlassMixture`)."""
    dtype = jnp.dtype(plan.dtype)
    if plan.num_classes is not None:
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), _multiclass_of(plan))
    mixture = plan.data.build()
    if not isinstance(mixture, GaussianMixture):  # XorMixture: every field an array
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), mixture)
    mix = None if mixture.norm_mix is None else mixture.norm_mix.astype(dtype)
    return GaussianMixture(mixture.mu.astype(dtype), mixture.scale.astype(dtype), mix)


def bayes_accuracy(plan: DrawPlan) -> float:
    """Bayes accuracy of the data model; K-class: argmax_k mu_k . x (equal-norm means, isotropic
    noise) on a fixed sample of 200,000 clean points (standard error <= 0.0011; no closed form
    for K > 2)."""
    if plan.num_classes is None:
        return float(plan.data.build().bayes_accuracy())
    mix = _multiclass_of(plan)
    return float(sampled_multiclass_accuracy(jax.random.PRNGKey(TEST_KEY), mix, mix.means, 200_000))


def seed_keys(seeds, size: int | None = None):
    """``PRNGKey(s)`` of every seed; padded to ``size`` by repeating the last (compiled shape)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    if size is not None and len(seeds) < size:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - len(seeds), axis=0)])
    return keys


def _sample_of(key, mixture, n, noise, dtype):
    """Training sample: K-class labels for a K-class mixture, +-1 labels otherwise."""
    if isinstance(mixture, MulticlassMixture):
        return _sample_multiclass_spec(key, mixture, n, noise, dtype)
    return _sample_binary(key, mixture, n, noise, dtype)


@partial(jax.jit, static_argnames=("model", "n", "noise", "dtype"))
def _seed_data(keys, mixture, init_scale, *, model, n, noise, dtype):
    """Training set, initial parameters and SGD key of every seed key (leading seed axis)."""
    dtype = jnp.dtype(dtype)

    def one(seed_key):
        k_data, k_init, k_sgd = jax.random.split(seed_key, 3)
        ds = _sample_of(k_data, mixture, n, noise, dtype)
        return ds, model.init(k_init, mixture.dim, scale=init_scale, dtype=dtype), k_sgd

    return jax.vmap(one)(keys)


@partial(jax.jit, static_argnames=("size", "dtype"))
def _test_samples(keys, mixture, *, size, dtype):
    """Clean test samples ``(X_test (S, m, d), t_test (S, m))`` of every seed key."""
    return jax.vmap(lambda k: mixture._sample(jax.random.fold_in(k, TEST_KEY), size, jnp.dtype(dtype)))(keys)


@partial(jax.jit, static_argnames=("size", "noise", "dtype"))
def _val_samples(keys, mixture, *, size, noise, dtype):
    """Validation samples ``(X_val (S, m, d), noisy t_val (S, m))`` of every seed key: the training
    distribution *with its label noise* (the labels a user has), key ``fold_in(k, VAL_KEY)``."""
    def one(k):
        ds = _sample_of(jax.random.fold_in(k, VAL_KEY), mixture, size, noise, jnp.dtype(dtype))
        return ds.X, ds.noisy

    return jax.vmap(one)(keys)


def draw_seeds(plan: DrawPlan, model, seeds, size: int | None = None) -> SeedDraws:
    """Everything a sweep draws for ``seeds``: training sets, initial parameters
    (``model.init``), SGD keys, clean test samples (``plan.test_size > 0``) and validation
    samples; padded to ``size`` seeds by repeating the last (one compiled shape per chunk)."""
    mixture = mixture_of(plan)
    keys = seed_keys(seeds, size)
    train, params0, sgd_key = _seed_data(keys, mixture, jnp.asarray(plan.init_scale, plan.dtype), model=model,
                                         n=plan.n, noise=plan.noise, dtype=plan.dtype)
    test = _test_samples(keys, mixture, size=plan.test_size, dtype=plan.dtype) if plan.test_size else None
    val = _val_samples(keys, mixture, size=plan.val_size, noise=plan.noise, dtype=plan.dtype)
    return SeedDraws(train, params0, sgd_key, test, val, mixture)


def _with_rate(ds: Dataset) -> Dataset:
    return ds._replace(rate=float(np.mean(np.asarray(ds.mask))))


def training_sample(plan: DrawPlan, seed: int) -> Dataset:
    """The training set of seed ``seed`` (key ``split(PRNGKey(seed), 3)[0]``)."""
    k_data, _, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    return _with_rate(_sample_of(k_data, mixture_of(plan), plan.n, plan.noise, jnp.dtype(plan.dtype)))


def validation_sample(plan: DrawPlan, seed: int) -> Dataset:
    """The validation sample of seed ``seed`` (``plan.val_size`` points, noisy labels in ``noisy``,
    key ``fold_in(PRNGKey(seed), VAL_KEY)``)."""
    k = jax.random.fold_in(jax.random.PRNGKey(seed), VAL_KEY)
    return _with_rate(_sample_of(k, mixture_of(plan), plan.val_size, plan.noise, jnp.dtype(plan.dtype)))


def test_sample(plan: DrawPlan, seed: int, size: int):
    """The clean test sample ``(X_test, t_test)`` of ``size`` points of seed ``seed`` (key
    ``fold_in(PRNGKey(seed), TEST_KEY)``)."""
    X, t = _test_samples(seed_keys([seed]), mixture_of(plan), size=size, dtype=plan.dtype)
    return X[0], t[0]


test_sample.__test__ = False  # not a pytest test


def initial_params(plan: DrawPlan, model, seed: int):
    """The initial parameters of seed ``seed`` (``model.init``, key ``split(PRNGKey(seed), 3)[1]``)."""
    _, k_init, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    return model.init(k_init, plan.data.d, scale=float(plan.init_scale), dtype=jnp.dtype(plan.dtype))
