r"""Data parallel: the batch axis split over a one-axis mesh of every device (every process's).

A step on the global batch :math:`B = B_1 \cup \dots \cup B_D` (equal shards, one per device)
computes the same direction as on one device; where the devices must agree is stated here:

* **Per-example rules and SGD** (``gd``, ``one_sam``, ``lsam``, ``jsam``, ``jreg``,
  ``jreg_fixed``; :data:`SHARD_MEAN_METHODS`) with a per-example norm: the direction is a
  mean over examples, :math:`u = \frac1D \sum_d u(B_d)`, so each device runs the rule on its
  own shard (its own ``chunk_size`` chunks, ``jax.shard_map``) and **one cross-device mean of
  the direction** (``lax.pmean``: an all-reduce of the parameter-sized pytree) ends the rule
  (:func:`shard_mean`).
* **n-SAM** (``nsam``): its one perturbation :math:`\epsilon = \rho g/\|g\|` needs the
  *global* batch gradient :math:`g`, so the rule runs on the global batch and XLA's SPMD
  partitioner places **two** cross-device means: of :math:`g` before the normalisation, and of
  the gradient at :math:`\theta + \epsilon`. (A mean of per-shard n-SAM directions would be
  "m-sharpness" with m = B / D, another method.)
* **BatchNorm** (``--norm batch``, gd and nsam only): the batch statistics are a mean over the
  global batch (synchronised BatchNorm: XLA all-reduces the per-channel sums), both in the
  running-statistics pass and inside the rule; the running statistics stay replicated.

Parameters, optimizer state and the training set are replicated; the plan of a block (indices,
crops, flips) is split along its batch axis, so each device gathers and augments only its own
examples. Results equal one device's up to float32 summation order (tests/test_cifar_parallel.py).
On several hosts (:func:`linsam._src.engine.shard.initialize_distributed`) the mesh spans every
process's devices; every process builds the same plan from the seed, process 0 writes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from linsam import rules

#: The mesh axis of the batch.
AXIS = "data"
#: Methods whose direction is a mean over the examples of a per-example quantity: one
#: cross-device mean of the direction (:func:`shard_mean`) where the norm is per example.
SHARD_MEAN_METHODS = tuple(c.name for c in (rules.GD, rules.OneSAM, rules.LSAM, rules.JSAM, rules.JReg,
                                            rules.JRegFixed))


def data_mesh(devices: int | None = None) -> Mesh | None:
    """The data-parallel mesh over the first ``devices`` of ``jax.devices()`` (default: all,
    every process's); None for one device (the one-device programs, unchanged)."""
    devs = jax.devices()
    if devices is not None:
        if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or not 1 <= devices <= len(devs):
            raise ValueError(f"--devices must be an integer in [1, {len(devs)}] (the devices JAX sees), "
                             f"got {devices!r}")
        if jax.process_count() > 1 and devices != len(devs):
            raise ValueError(f"--devices: a multi-process run uses every device ({len(devs)}), got {devices}")
        devs = devs[:devices]
    if len(devs) == 1:
        return None
    return Mesh(np.asarray(devs, dtype=object), (AXIS,))


def check_split(cfg, num_devices: int) -> None:
    """Refuse a config whose batches do not split evenly over ``num_devices`` (ValueError
    naming the flag): ``batch_size`` and ``eval_batch_size`` must be multiples."""
    from linsam.cifar.config import _err

    for f in ("batch_size", "eval_batch_size"):
        if getattr(cfg, f) % num_devices:
            raise _err(f, f"({getattr(cfg, f)}) must be a multiple of the {num_devices} devices of the "
                          "data-parallel mesh (or choose fewer with --devices)")


def num_shards(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.devices.size)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split along ``axis`` (the batch axis) over the mesh."""
    return NamedSharding(mesh, P(*([None] * axis + [AXIS])))


def put(tree, mesh: Mesh | None, axis: int | None = None):
    """Host arrays (every process holds the same values) -> global arrays on ``mesh``,
    replicated (``axis`` None) or split along ``axis``. One device: ``jnp.asarray``."""
    if mesh is None:
        return jax.tree_util.tree_map(jnp.asarray, tree)
    sh = replicated(mesh) if axis is None else batch_sharding(mesh, axis)

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sh, lambda idx: a[idx])

    return jax.tree_util.tree_map(one, tree)


def to_host(x) -> np.ndarray:
    """A (global) array as one NumPy array on this host: a replicated array from this
    process's first copy, a split one gathered from every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def tree_to_host(tree):
    return jax.tree_util.tree_map(to_host, tree)


def shard_mean(direction: optax.GradientTransformationExtraArgs, mesh: Mesh) -> optax.GradientTransformationExtraArgs:
    r"""The rule ``direction`` (``linsam.optax.from_method``) run on each device's shard of the
    batch, then averaged over the devices: :math:`u = \frac1D\sum_d u(B_d)`.

    Exact for :data:`SHARD_MEAN_METHODS` (a mean over examples, equal shards). Written with
    ``jax.shard_map``: each device runs the rule on its local shard (its own ``chunk_size``
    chunks), and ``lax.pmean`` over the mesh axis is the one cross-device all-reduce. (Left to
    XLA's automatic partitioning instead, the per-example passes, ``vmap``-ed convolutions of
    one image each, came out wrong on a 2-device CPU mesh: 1-SAM's direction off by 86%;
    ``tests/test_cifar_parallel.py`` checks the ResNet path.) Same state as ``direction`` (its
    checkpoints load unchanged).
    """
    D = num_shards(mesh)

    def update_fn(updates, state, params=None, *, batch=None, **extra):
        X, t = batch
        if X.shape[0] % D:
            raise ValueError(f"batch of {X.shape[0]} examples does not split over {D} devices")

        def local(params, X, t):
            u, _ = direction.update(updates, state, params, batch=(X, t), **extra)
            return jax.tree_util.tree_map(lambda a: jax.lax.pmean(a, AXIS), u)

        u = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(),
                          check_vma=False)(params, X, t)
        return u, state

    return optax.GradientTransformationExtraArgs(direction.init, update_fn)
