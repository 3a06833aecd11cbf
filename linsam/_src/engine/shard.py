r"""Sharding the independent-runs axis of a sweep over every JAX device (``jax.shard_map``).

A sweep's seeds are independent: each device runs the whole trajectories of a contiguous block
of seeds with no communication, so the result equals a one-device run up to float rounding.
On several hosts (``jax.distributed.initialize()`` first) the mesh spans every process's
devices and :func:`to_host` gathers the outputs; see ``docs/performance.md``.

**One CPU device per core.** XLA gives a CPU host one device whose operations are split over
the cores; a sweep step (a 500 x 500 by 500 x 3 product) is too small for that split to pay,
so the command line (:func:`use_cpu_cores`) exposes one CPU device per usable core before JAX
starts, and seeds then run in parallel, one block per core.
"""

from __future__ import annotations

from typing import Callable

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec

#: Environment variable overriding :func:`use_cpu_cores`'s device count (1: one CPU device).
CPU_DEVICES_ENV = "LINSAM_CPU_DEVICES"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None) -> int | None:
    """Expose ``count`` CPU devices (default: ``$LINSAM_CPU_DEVICES``, else every usable core)
    so that :func:`shard_run_axis` runs seed blocks on the cores in parallel.

    Must run before JAX starts its backends; does nothing (returns None) once they have
    started, or where the user already chose a count (``JAX_NUM_CPU_DEVICES``, or
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``). Returns the count set.
    Only the CPU platform is affected: on a GPU host the GPU stays the default device."""
    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if count is None:
        env = os.environ.get(CPU_DEVICES_ENV, "").strip()
        if env:
            try:
                count = int(env)
            except ValueError:
                raise ValueError(f"{CPU_DEVICES_ENV} must be a positive integer, got {env!r}") from None
        else:
            count = usable_cores()
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count (CPU devices) must be a positive integer, got {count!r}")
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return None
    jax.config.update("jax_num_cpu_devices", int(count))
    return int(count)


def to_host(x):
    """A (possibly multi-host) global array as one NumPy array on this host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def run_mesh(devices=None, axis_name: str = "runs") -> Mesh:
    """A one-axis :class:`~jax.sharding.Mesh` over ``devices`` (default: all of
    ``jax.devices()``, every process's devices on a multi-host setup)."""
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 0:
        raise ValueError("devices must hold at least one device")
    return Mesh(np.asarray(devices, dtype=object), (axis_name,))


def _is_axis(x):
    return x is None or isinstance(x, (int, np.integer))


def _spec(axis, name):
    if axis is None:
        return PartitionSpec()
    return PartitionSpec(*([None] * int(axis) + [name]))


def _broadcast_prefix(prefix, tree, what):
    """Per-leaf axes of ``tree`` from a prefix tree of ints/None (like ``vmap``'s in_axes)."""
    try:
        return jax.tree_util.tree_map(
            lambda ax, sub: jax.tree_util.tree_map(lambda _: ax, sub), prefix, tree, is_leaf=_is_axis
        )
    except ValueError as err:
        raise ValueError(f"{what} must be an int, None, or a pytree prefix of the arguments: {err}") from None


def shard_run_axis(fn: Callable, *, in_axes=0, out_axes=0, mesh: Mesh | None = None, devices=None) -> Callable:
    r"""Run ``fn`` with one axis of its arguments split across devices (``jax.shard_map``).

    ``fn`` must treat the entries of that axis independently (a ``vmap``-ed or
    ``lax.map``-ed sweep over runs or seeds): each device calls ``fn`` on its contiguous
    block of the axis, arguments with axis ``None`` are replicated, and the outputs are
    concatenated along ``out_axes``. The axis is padded (by repeating its last entry) to a
    multiple of the device count and the padding is cut from the outputs, so any length
    works. No collective runs inside ``fn``: the result equals ``fn`` on one device up to
    float rounding (a smaller batch may change a GEMM's summation order).

    Args:
      fn: ``fn(*args) -> pytree`` of arrays.
      in_axes: int, None, or a tuple with one entry per positional argument (each an int,
        None, or a pytree prefix of that argument): the split axis of each argument
        (non-negative), None = replicate. Every split axis must have the same length.
      out_axes: the same for the outputs (int, None or a pytree prefix of the output);
        None marks outputs identical on every device (returned from one of them).
      mesh: a one-axis :class:`~jax.sharding.Mesh` (default :func:`run_mesh` over
        ``devices``).
      devices: devices for the default mesh (default ``jax.devices()``).

    Returns:
      A jitted function with ``fn``'s signature (positional arguments only). Its outputs are
      global :class:`jax.Array` s sharded along ``out_axes`` (on a multi-host setup, gather
      them with ``jax.experimental.multihost_utils.process_allgather``).

    >>> sweep = shard_run_axis(jax.vmap(run_one, in_axes=(None, 0)), in_axes=(None, 0))
    >>> out = sweep(X, rhos)   # rhos split across jax.devices()  # doctest: +SKIP

    :func:`linsam.simulate.simulate` shards the seed axis of both backends through this
    function (every device runs whole trajectories of its seeds; no communication).
    """
    mesh = run_mesh(devices) if mesh is None else mesh
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must have exactly one axis, got axes {mesh.axis_names}")
    name = mesh.axis_names[0]
    num = mesh.devices.size

    def call(*args):
        ia = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(ia) != len(args):
            raise ValueError(f"in_axes has {len(ia)} entries for {len(args)} positional arguments")
        leaf_axes = _broadcast_prefix(ia, args, "in_axes")
        sizes = set()
        for leaf, ax in zip(jax.tree_util.tree_leaves(args), jax.tree_util.tree_structure(args).flatten_up_to(leaf_axes)):
            if ax is not None:
                if not 0 <= ax < np.ndim(leaf):
                    raise ValueError(f"in_axes entry {ax} is out of range for an argument of shape {np.shape(leaf)}")
                sizes.add(np.shape(leaf)[ax])
        if len(sizes) != 1:
            raise ValueError(f"the split axes of the arguments must have one common length, got {sorted(sizes)}")
        size = sizes.pop()
        padded_size = -(-size // num) * num

        def pad(x, ax):
            if ax is None or padded_size == size:
                return x
            x = jnp.asarray(x)
            last = lax.slice_in_dim(x, size - 1, size, axis=ax)
            reps = [1] * x.ndim
            reps[ax] = padded_size - size
            return jnp.concatenate([x, jnp.tile(last, reps)], axis=ax)

        padded = jax.tree_util.tree_map(pad, args, leaf_axes, is_leaf=lambda x: x is None)
        in_specs = jax.tree_util.tree_map(lambda ax: _spec(ax, name), ia, is_leaf=_is_axis)
        out_specs = jax.tree_util.tree_map(lambda ax: _spec(ax, name), out_axes, is_leaf=_is_axis)
        out = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(*padded)
        if padded_size == size:
            return out
        oa = _broadcast_prefix(out_axes, out, "out_axes")
        return jax.tree_util.tree_map(
            lambda x, ax: x if ax is None else lax.slice_in_dim(x, 0, size, axis=ax), out, oa, is_leaf=lambda x: x is None
        )

    return jax.jit(call)


# ----------------------------------------------------------------------------- several hosts

#: Environment variables read by :func:`initialize_distributed` when the arguments are None.
COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = "LINSAM_COORDINATOR", "LINSAM_NUM_PROCESSES", "LINSAM_PROCESS_ID"


def _env_int(name: str):
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, auto: bool = False,
                           timeout_s: int = 300) -> bool:
    r"""Start JAX's multi-process runtime (``jax.distributed.initialize``), so that
    ``jax.devices()`` lists every process's devices and one :class:`~jax.sharding.Mesh` spans them.

    Explicit: ``coordinator`` (``host:port`` of process 0), ``num_processes`` and ``process_id``
    (each falls back to ``$LINSAM_COORDINATOR``, ``$LINSAM_NUM_PROCESSES``,
    ``$LINSAM_PROCESS_ID``); all three are needed together. ``auto=True`` without them: JAX's
    cluster detection (Slurm inside ``srun``: ``SLURM_JOB_ID``, ``SLURM_NTASKS``,
    ``SLURM_PROCID``, ...; also Open MPI, Kubernetes/TPU pods). Returns True when the runtime
    was started here, False when there was nothing to start (no coordinator, no ``auto``).
    Must run before anything touches a device. Bad values are refused (ValueError naming the
    argument) before any connection is tried; ``timeout_s`` bounds the wait for the other
    processes.
    """
    coordinator = coordinator if coordinator is not None else (os.environ.get(COORDINATOR_ENV) or None)
    num_processes = num_processes if num_processes is not None else _env_int(NUM_PROCESSES_ENV)
    process_id = process_id if process_id is not None else _env_int(PROCESS_ID_ENV)
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator, num_processes and process_id (--coordinator, --num-processes, "
                         "--process-id) go together: give all three, or none for --distributed auto-detection")
    if all(given):
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}")
        if isinstance(num_processes, bool) or not isinstance(num_processes, (int, np.integer)) or num_processes < 1:
            raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
        if (isinstance(process_id, bool) or not isinstance(process_id, (int, np.integer))
                or not 0 <= process_id < num_processes):
            raise ValueError(f"process_id must be an integer in [0, {num_processes}), got {process_id!r}")
        jax.distributed.initialize(str(coordinator), int(num_processes), int(process_id),
                                   initialization_timeout=int(timeout_s))
        return True
    if auto:
        jax.distributed.initialize(initialization_timeout=int(timeout_s))  # cluster detection (Slurm, MPI, ...)
        return True
    return False


def is_primary() -> bool:
    """True on the process that writes results and checkpoints (process 0; always on one host)."""
    return jax.process_index() == 0


def agree(value):
    """``value`` as process 0 has it, on every process (a host decision, e.g. "time left for
    one more block?", that all processes must take the same way); ``value`` itself on one host."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return type(value)(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value))).item())


def barrier(name: str) -> None:
    """Wait until every process gets here (no-op on one host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
