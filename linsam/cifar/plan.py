r"""The data plan: the training set after subset and label noise, steps, blocks, schedule.

:func:`prepare_data` fixes, from the seed alone, which images a run trains on and their noisy
labels (every method of a seed sees the same); the epoch plan (indices, crops, flips, learning
rates: :meth:`linsam.cifar.loop.Trainer.epoch_plan`) is drawn on the host from
``default_rng([seed, 2, epoch])`` and cut into equal blocks (:func:`block_length`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np
import optax

from linsam.cifar import data as cdata
from linsam.cifar.config import CifarConfig


# ----------------------------------------------------------------------------- prepared data


class PreparedData(NamedTuple):
    """Training/test data after subsetting and label noise (host numpy arrays).

    x_train (n, 32, 32, 3) uint8 in a seeded random order; y_noisy / y_clean (n,) int32;
    noise_mask (n,) bool; x_test, y_test; mean/std (3,) float32 per-channel statistics of
    x_train; realised_rate = noise_mask.mean(); info: provenance dict for the results.
    """

    x_train: np.ndarray
    y_noisy: np.ndarray
    y_clean: np.ndarray
    noise_mask: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    realised_rate: float
    info: dict


def prepare_data(ds: cdata.CIFAR10, cfg: CifarConfig) -> PreparedData:
    r"""Subset (seeded permutation), label noise (seeded), per-channel statistics.

    Randomness: the order/subset is ``default_rng([seed, 1]).permutation``, the noise key
    ``fold_in(PRNGKey(seed), 1)`` (for :mod:`linsam.data`); neither depends on the method,
    so every method of one seed trains on the same images and the same noisy labels.
    """
    k_noise = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
    n_all = ds.x_train.shape[0]
    n = n_all if cfg.train_subset is None else min(cfg.train_subset, n_all)
    perm = np.random.default_rng([cfg.seed, 1]).permutation(n_all)[:n]
    x = ds.x_train[perm]
    y = ds.y_train[perm].astype(np.int32)
    if cfg.noise_rate > 0:
        nl = cdata.noisy_labels(k_noise, y, cfg.noise_kind, cfg.noise_rate)
        y_noisy = np.asarray(nl.noisy, np.int32)
        mask = np.asarray(nl.mask, bool)
    else:
        y_noisy, mask = y.copy(), np.zeros(n, bool)
    mean, std = cdata.channel_stats(x)
    realised = float(mask.mean())
    info = {
        "source": ds.source, "format": ds.format, "fingerprint": ds.fingerprint,
        "n_train_available": int(n_all), "n_train": int(n), "n_test": int(ds.x_test.shape[0]),
        "train_subset": cfg.train_subset is not None and n < n_all,
        "noise_kind": cfg.noise_kind, "noise_rate": cfg.noise_rate, "realised_rate": realised,
        "n_noisy": int(mask.sum()), "channel_mean": mean.tolist(), "channel_std": std.tolist(),
    }
    return PreparedData(x, y_noisy, y, mask, ds.x_test, ds.y_test.astype(np.int32), mean, std, realised, info)



def steps_per_epoch(cfg: CifarConfig, n_train: int) -> int:
    """Full batches per epoch (the last incomplete batch is dropped)."""
    return n_train // cfg.batch_size


def make_schedule(cfg: CifarConfig, total_steps: int) -> Callable:
    """Learning-rate schedule :math:`\\eta_k` over ``total_steps`` steps."""
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
    if cfg.schedule == "step":
        return optax.piecewise_constant_schedule(cfg.lr, {int(0.5 * total_steps): 0.1, int(0.75 * total_steps): 0.1})
    return optax.constant_schedule(cfg.lr)



def block_length(steps: int, log_every: int) -> int:
    """Largest divisor of ``steps`` that is at most ``log_every`` (>= 1)."""
    return max(d for d in range(1, min(log_every, steps) + 1) if steps % d == 0)

