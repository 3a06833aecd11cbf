r"""Fast sweeps of linear logistic GD / 1-SAM: GEMMs, batched matvecs, sharded run axis.

One run with radius :math:`\rho` and step size :math:`\eta` follows the core closed form
(:func:`linsam.logreg.one_sam`, Baek et al. 2024, Lemma 3.1) exactly:

.. math::

    z = t \odot X w_k, \qquad
    C_i = \rho\|x_i\|\,[\sigma(-z_i) > 0,\ \|x_i\| > 0], \qquad
    w_{k+1} = w_k + \frac{\eta}{n} X^\top\big(t \odot \sigma(-z + C)\big).

``rho = 0`` is GD, bit for bit (then :math:`C = 0`). L-SAM equals 1-SAM and J-SAM, J-reg
equal GD for this model (see :mod:`linsam.logreg`), so the sweep covers them too.

**Layout.** A sweep holds ``S`` datasets and ``R`` runs per dataset (one radius and step
size per run). The ``R`` weight vectors of one dataset are the columns of
:math:`W \in \mathbb R^{d\times R}`, so one step is

.. math::

    M = X W \ \ (\text{GEMM},\ 2ndR), \qquad
    C = t \odot \sigma(-t\odot M + C_0), \qquad
    W \mathrel{+}= \tfrac{\eta}{n} X^\top C \ \ (\text{GEMM},\ 2ndR),

(a) a rho sweep on one dataset (``S = 1``) is two matrix-matrix products per step,
compute-bound; (b) a seed sweep (``R = 1``, ``S`` datasets) is two batched matrix-vector
products per step, bandwidth-bound (each step streams every :math:`X_s` twice).

**Dual form** (``form="dual"``). Every update lies in the row space of :math:`X`:
:math:`W_{k} = W_{k_0} + \frac{\eta}{n} X^\top A_k` with :math:`A_k = \sum_{j<k} C_j`, so the
logits follow :math:`M_{k+1} = M_k + \frac{\eta}{n} K C_k` with the Gram matrix
:math:`K = X X^\top \in \mathbb R^{n\times n}` (computed once). A step costs
:math:`2n^2R` flops and reads :math:`n^2` numbers instead of :math:`4ndR` and :math:`2nd`;
the logits :math:`M` are carried, and :math:`W` is rebuilt (:math:`X^\top A`, one pass over
:math:`X`) at the end, and at record steps only for metrics that read it (:math:`\|w\|`
comes from :math:`K`). Same trajectory as the primal form up to float rounding
(:math:`M` and :math:`XW` differ by a random walk of rounding errors, about
:math:`\sqrt{\text{steps}}` ulps); cheaper when :math:`n < 2d` (``form="auto"`` picks by the
flop count, :func:`flops_per_step`).

**Records.** Metrics are computed only at steps ``0, k, 2k, ..., steps``: a ``lax.scan`` over
record blocks whose body is a ``lax.fori_loop`` of ``k`` metric-free steps; no host
round-trip anywhere in the loop.

**Devices.** :func:`shard_run_axis` splits the seed axis (or the run axis) across all JAX
devices with ``jax.shard_map`` over a one-axis :class:`jax.sharding.Mesh`; each device
runs the whole trajectory of its block, with no communication. See ``docs/performance.md``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from linsam._src import validate

__all__ = [
    "FORMS",
    "SHARD_AXES",
    "SweepData",
    "SweepPlan",
    "RunState",
    "FastSweepResult",
    "default_metrics",
    "flops_per_step",
    "bytes_per_step",
    "choose_form",
    "method_rho_grid",
    "logreg_sweep",
    "plan_sweep",
    "run_mesh",
    "shard_run_axis",
    "auto_seed_block",
    "last_level_cache_bytes",
    "PRECISIONS",
]

FORMS = ("auto", "primal", "dual")
SHARD_AXES = ("auto", "seed", "run")
PRECISIONS = (None, "default", "high", "highest")


# ----------------------------------------------------------------------------- containers


class SweepData(NamedTuple):
    r"""One training set (or ``S`` of them, stacked on a leading seed axis).

    Attributes:
      X: ``(n, d)`` inputs (``(S, n, d)`` stacked).
      t: ``(n,)`` training labels in {-1, +1} (the noisy labels a learner sees).
      noisy: ``(n,)`` bool, True where the label was flipped, or None (no clean/noisy split).
      X_test: ``(m, d)`` test inputs, or None.
      t_test: ``(m,)`` test labels in {-1, +1}, or None.
      x_norm: ``(n,)`` the norms :math:`\|x_i\|`; filled in by the sweep (leave None).
    """

    X: Any
    t: Any
    noisy: Any = None
    X_test: Any = None
    t_test: Any = None
    x_norm: Any = None


class FastSweepResult(NamedTuple):
    """Recorded metrics and final weights of a sweep (NumPy arrays).

    Attributes:
      steps: ``(T,)`` record steps ``0, k, ..., steps``.
      rho: ``(R,)`` radius of each run.
      lr: ``(R,)`` step size of each run.
      metrics: dict name -> ``(R, T)`` for one dataset, ``(S, R, T)`` for ``S`` datasets.
      w: final weights, ``(R, d)`` or ``(S, R, d)``.
      form: ``"primal"`` or ``"dual"`` (what ran).
      shard_axis: ``"seed"`` or ``"run"`` (the axis split across devices).
      num_devices: devices the sweep ran on.
      seed_block: datasets vmapped together inside one device.
    """

    steps: np.ndarray
    rho: np.ndarray
    lr: np.ndarray
    metrics: dict
    w: np.ndarray
    form: str
    shard_axis: str
    num_devices: int
    seed_block: int


class RunState(NamedTuple):
    r"""One run at a record step, as a metrics function sees it.

    Attributes:
      w: ``(d,)`` weights. In the dual form it is rebuilt from :math:`X^\top A` (a pass over
        :math:`X`) only if the metrics use it: XLA drops the work otherwise.
      logits: ``(n,)`` :math:`X w` (carried by the sweep; no extra pass).
      w_norm: :math:`\|w\|` (in the dual form from the Gram matrix:
        :math:`\|w_0\|^2 + 2s\langle Xw_0, A\rangle + s^2 A^\top K A`, :math:`s = \eta/n`).
    """

    w: Any
    logits: Any
    w_norm: Any


# ----------------------------------------------------------------------------- cost model


def choose_form(n: int, d: int, record_every: int) -> str:
    """``"dual"`` when its flop count per step (:func:`flops_per_step`) is lower, else ``"primal"``."""
    p = flops_per_step(n, d, 1, record_every, "primal")
    q = flops_per_step(n, d, 1, record_every, "dual")
    return "dual" if q < p else "primal"


def flops_per_step(n: int, d: int, R: int, record_every: int, form: str = "primal", m_test: int = 0) -> float:
    r"""Floating-point operations per step of one dataset with ``R`` runs (multiply-add = 2).

    primal: :math:`4ndR` (the two GEMMs) :math:`+ 2dR` (the update) :math:`+ 2mdR/k` (test
    logits at a record step, amortised over ``k = record_every``; the training logits are
    carried from the step).
    dual: :math:`2n^2R` (:math:`K C`) :math:`+ 4nR` (updates of M and A)
    :math:`+ 2n^2R/k` (:math:`KA` for :math:`\|w\|` at a record) :math:`+ (2nd + 2md)R/k`
    with a test set (rebuilding W for the test logits).
    Element-wise work (:math:`\sigma`, masks; about :math:`10nR`) is not counted; the
    one-off :math:`XW_0` and Gram matrix :math:`2n^2d` are not either.
    """
    k = record_every
    if form == "primal":
        return 4.0 * n * d * R + 2.0 * d * R + 2.0 * m_test * d * R / k
    if form == "dual":
        rebuild = (2.0 * n * d + 2.0 * m_test * d) if m_test else 0.0
        return 2.0 * n * n * R + 4.0 * n * R + (2.0 * n * n + rebuild) * R / k
    raise ValueError(f"form must be 'primal' or 'dual', got {form!r}")


def bytes_per_step(n: int, d: int, R: int, record_every: int, itemsize: int, form: str = "primal") -> float:
    r"""Bytes that must cross the memory bus per step of one dataset (streaming, no cache reuse).

    primal: :math:`X` read twice (:math:`X^\top C`, then :math:`XW`), :math:`W` read twice
    and written once: :math:`(2nd + 3dR)\,s` (``s = itemsize``).
    dual: :math:`K` read once, :math:`M, A` read and written: :math:`(n^2 + 4nR)\,s`, plus
    :math:`K` once more per record (:math:`n^2 s/k`).
    The (n, R) temporaries are assumed to stay in cache; a test set adds :math:`(n + m)d\,s/k`.
    """
    k, s = record_every, itemsize
    if form == "primal":
        return (2.0 * n * d + 3.0 * d * R) * s
    if form == "dual":
        return (1.0 * n * n + 4.0 * n * R + n * n / k) * s
    raise ValueError(f"form must be 'primal' or 'dual', got {form!r}")


def method_rho_grid(methods, rhos) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Runs for ``methods x rhos``: ``gd`` (and ``jsam``, ``jreg``, which equal GD here) runs once
    at rho 0; ``one_sam`` and ``lsam`` (equal here) run at every rho.

    Returns:
      ``(rho, labels)``: ``(R,)`` radii and, per run, ``(method, rho)``.
    """
    gd_like, sam_like = ("gd", "jsam", "jreg"), ("one_sam", "lsam")
    out_rho, labels = [], []
    for m in methods:
        validate.check_method(m, gd_like + sam_like, "methods")
        if m in gd_like:
            out_rho.append(0.0)
            labels.append((m, 0.0))
        else:
            for r in rhos:
                validate.check_rho(r, "rhos")
                out_rho.append(float(r))
                labels.append((m, float(r)))
    return np.asarray(out_rho), labels


# ----------------------------------------------------------------------------- metrics


def default_metrics(state: RunState, data: SweepData, rho) -> dict:
    r"""Metrics of one run at one record step (pure JAX; vmapped over runs and seeds).

    Args:
      state: :class:`RunState` (weights, logits :math:`Xw`, :math:`\|w\|`).
      data: one dataset (:class:`SweepData`, no seed axis).
      rho: the run's radius (scalar).

    Returns a dict of scalars, names as in :data:`linsam.simulate.METRICS` where they
    coincide: ``loss`` (mean :math:`\mathrm{softplus}(-z)`), ``train_acc`` (fraction of
    :math:`z_i > 0`, ties 1/2, against the training labels), ``w_norm``; with ``noisy``:
    ``train_acc_clean``/``_noisy``, ``loss_clean``/``_noisy``, ``grad_norm_clean``/``_noisy``
    (mean :math:`\sigma(-z_i)\|x_i\|`), ``grad_norm_ratio`` (clean/noisy),
    ``sam_grad_norm_clean``/``_noisy``/``_ratio`` (the same at each example's 1-SAM point,
    :math:`\sigma(-z_i + C_i)\|x_i\|`, Lemma 3.1); with a test set: ``test_acc``.
    Group means over an empty group are NaN.
    """
    X, t = data.X, data.t
    dt = X.dtype
    z = t * state.logits
    correct = (z > 0).astype(dt) + 0.5 * (z == 0).astype(dt)
    loss = jax.nn.softplus(-z)
    out = dict(w_norm=state.w_norm)  # not from state.w: the dual form then never rebuilds w
    if data.noisy is None:
        out.update(loss=jnp.mean(loss), train_acc=jnp.mean(correct))
    else:
        # the group means of 4 per-example quantities as masked sums (a small matrix product
        # here is several times slower on XLA:CPU)
        xn = jnp.linalg.norm(X, axis=1) if data.x_norm is None else data.x_norm
        s = jax.nn.sigmoid(-z)
        C = jnp.where((s > 0) & (xn > 0), rho * xn, 0.0)
        per_example = jnp.stack([correct, loss, s * xn, jax.nn.sigmoid(-z + C) * xn], axis=1)
        noisy = data.noisy[:, None]
        sums = jnp.stack([
            jnp.sum(per_example, axis=0),
            jnp.sum(jnp.where(noisy, 0.0, per_example), axis=0),
            jnp.sum(jnp.where(noisy, per_example, 0.0), axis=0),
        ])  # (all, clean, noisy) x quantities
        n_noisy = jnp.sum(data.noisy).astype(dt)
        counts = jnp.stack([jnp.asarray(z.shape[0], dt), z.shape[0] - n_noisy, n_noisy])
        means = jnp.where(counts[:, None] > 0, sums / jnp.where(counts > 0, counts, 1.0)[:, None], jnp.nan)
        (acc, acc_c, acc_n), (ls, ls_c, ls_n), (_, gn_c, gn_n), (_, sg_c, sg_n) = means.T
        out.update(
            loss=ls, train_acc=acc, train_acc_clean=acc_c, train_acc_noisy=acc_n, loss_clean=ls_c, loss_noisy=ls_n,
            grad_norm_clean=gn_c, grad_norm_noisy=gn_n, grad_norm_ratio=gn_c / gn_n,
            sam_grad_norm_clean=sg_c, sam_grad_norm_noisy=sg_n, sam_grad_norm_ratio=sg_c / sg_n,
        )
    if data.X_test is not None:
        zt = data.t_test * (data.X_test @ state.w)
        out["test_acc"] = jnp.mean((zt > 0).astype(dt) + 0.5 * (zt == 0).astype(dt))
    return {k: jnp.asarray(v, dt) for k, v in out.items()}


# ----------------------------------------------------------------------------- one dataset


def _coefficients(M, t, C0, xpos):
    """:math:`t \\odot \\sigma(-z + C)`, ``C = C0`` where the example's gradient is non-zero, else 0."""
    z = t[:, None] * M
    active = (jax.nn.sigmoid(-z) > 0) & xpos[:, None]
    return t[:, None] * jax.nn.sigmoid(-z + jnp.where(active, C0, 0.0))


def _record(metrics_fn, W, M, wn, data, rho):
    one = lambda w, m, a, r: metrics_fn(RunState(w, m, a), data, r)  # noqa: E731
    return jax.vmap(one, in_axes=(1, 1, 0, 0))(W, M, wn, rho)


# Both products contract the contiguous axis of their big operand: logits X W with X (n, d)
# and W (d, R); gradient X^T C computed as XT C with XT a physical (d, n) copy of X^T.
# XLA:CPU runs X.T @ C (contracting X's leading axis) up to twice slower than XT @ C, and
# several times slower at R = 1; the copy costs n*d more numbers of memory per dataset.
def _logits(X, W):
    return X @ W


def _grad(XT, C):
    return XT @ C


def _trajectory(data: SweepData, XT, W0, rho, lr, *, form, steps, record_every, metrics_fn):
    r"""One dataset, ``R`` runs: ``XT`` ``(d, n)`` (= X^T, stored), ``W0`` ``(R, d)``,
    ``rho``/``lr`` ``(R,)`` -> (final W ``(R, d)``, metrics name -> ``(R, T)``).

    Both forms carry the logits :math:`M = XW` from step to step, so a record step costs no
    extra pass over :math:`X`. The dual form carries :math:`A = \sum_k C_k` (cumulative) and
    rebuilds :math:`W = W_0 + \frac{\eta}{n}X^\top A` at the end, and at a record step only
    if the metrics read ``state.w`` (XLA removes it otherwise); :math:`\|w\|` comes from
    :math:`K`."""
    X, t = data.X, data.t
    n = X.shape[0]
    xn = jnp.linalg.norm(X, axis=1)
    data = data._replace(x_norm=xn)
    xpos = xn > 0
    C0 = xn[:, None] * rho[None, :]
    scale = (lr / n)[None, :]
    k = record_every
    W0 = W0.T
    M0 = _logits(X, W0)
    # Block b runs k steps (0 for b = 0: the record at step 0), then records: one copy of
    # the metrics code in the program.
    length = lambda b: jnp.where(b > 0, k, 0)  # noqa: E731

    if form == "primal":

        def step(_, carry):
            W, M = carry
            W = W + scale * _grad(XT, _coefficients(M, t, C0, xpos))
            return W, _logits(X, W)

        def block(carry, b):
            W, M = lax.fori_loop(0, length(b), step, carry)
            return (W, M), _record(metrics_fn, W, M, jnp.linalg.norm(W, axis=0), data, rho)

        (W, _), ms = lax.scan(block, (W0, M0), jnp.arange(steps // k + 1))

    else:
        K = X @ XT
        w0_sq = jnp.sum(W0 * W0, axis=0)

        def step(_, carry):
            M, A = carry
            C = _coefficients(M, t, C0, xpos)
            return M + scale * (K @ C), A + C

        def rebuild(A):
            return W0 + scale * _grad(XT, A)

        def block(carry, b):
            M, A = lax.fori_loop(0, length(b), step, carry)
            # ||W0 + s X^T A||^2 from the Gram matrix; W itself only if the metrics read it
            w_sq = w0_sq + 2.0 * scale[0] * jnp.sum(M0 * A, axis=0) + scale[0] ** 2 * jnp.sum(A * (K @ A), axis=0)
            wn = jnp.sqrt(jnp.maximum(w_sq, 0.0))
            return (M, A), _record(metrics_fn, rebuild(A), M, wn, data, rho)

        (_, A), ms = lax.scan(block, (M0, jnp.zeros_like(M0)), jnp.arange(steps // k + 1))
        W = rebuild(A)
    return W.T, {name: v.T for name, v in ms.items()}


def _local_sweep(data: SweepData, XT, W0, rho, lr, *, form, steps, record_every, metrics_fn, seed_block, precision):
    """One device's block: ``S`` datasets (leading axis; ``XT`` ``(S, d, n)`` their stored
    transposes), ``W0`` ``(S, R, d)`` ->
    (``(S, R, d)``, name -> ``(S, R, T)``). Datasets go through ``lax.map`` in groups of
    ``seed_block``, each group vmapped (batched GEMMs / matvecs) and run for the whole
    trajectory before the next group starts."""
    traj = functools.partial(
        _trajectory, form=form, steps=steps, record_every=record_every, metrics_fn=metrics_fn
    )

    def one(args):
        d_s, xt_s, w_s = args
        return traj(d_s, xt_s, w_s, rho, lr)

    S = W0.shape[0]
    block = min(seed_block, S)
    xs = (data, XT, W0)
    with jax.default_matmul_precision(precision):
        if S == 1:
            W, ms = one(jax.tree_util.tree_map(lambda a: a[0], xs))
            return W[None], {k: v[None] for k, v in ms.items()}
        if block == S:
            return jax.vmap(one)(xs)
        if block == 1:  # a plain loop over datasets
            return lax.map(one, xs)
        return lax.map(one, xs, batch_size=block)


def last_level_cache_bytes(default: int = 32 * 2**20) -> int:
    """Size of the CPU's last-level cache (Linux sysfs), or ``default`` when unknown."""
    best = (0, 0)
    for idx in range(16):
        base = f"/sys/devices/system/cpu/cpu0/cache/index{idx}/"
        try:
            with open(base + "level") as fh:
                level = int(fh.read())
            with open(base + "size") as fh:
                txt = fh.read().strip().upper()
        except (OSError, ValueError):
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(txt[-1:], 1)
        try:
            size = int(txt.rstrip("KMG")) * mult
        except ValueError:
            continue
        best = max(best, (level, size))
    return best[1] or default


def auto_seed_block(S_local: int, n: int, d: int, itemsize: int, form: str, platform: str) -> int:
    """Datasets per group inside one device (``seed_block=None``).

    On CPU, the largest group whose per-step working set (``X``, ``n*d`` numbers, in the
    primal form; ``K``, ``n*n``, in the dual) fits in a quarter of the last-level cache
    (which other processes share), at least 1, and dividing ``S_local`` (uneven groups
    would copy the data): the data then stay in cache for the whole trajectory instead of
    streaming from memory at every step. On accelerators, every dataset at once
    (parallelism first)."""
    if platform != "cpu" or S_local <= 1:
        return max(S_local, 1)
    per = (n * d if form == "primal" else n * n) * itemsize
    fit = int(min(S_local, max(1, (last_level_cache_bytes() // 4) // max(per, 1))))
    # a divisor of S_local: the groups are then a free reshape, not copies of the data
    return max(b for b in range(1, fit + 1) if S_local % b == 0)


# ----------------------------------------------------------------------------- sharding


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

    ``linsam.fastsweep.logreg_sweep`` shards its run axis through this function
    (``shard="auto"``). ``linsam.simulate`` does not shard yet: its sweeps run on one device.
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


# ----------------------------------------------------------------------------- the sweep


class SweepPlan(NamedTuple):
    """A validated, compiled-on-first-call sweep: ``plan.fn(*plan.args)`` runs it.

    Attributes:
      fn: jitted function (a :func:`shard_run_axis` program) returning ``(W, metrics)``.
      args: its arguments (device arrays).
      steps: record steps ``(T,)``.
      rho, lr: ``(R,)`` per-run radius and step size.
      shared: True when one dataset is shared by all runs (results without a seed axis).
      form, shard_axis, num_devices: what runs where.
      seed_block: datasets vmapped together inside one device.
      n, d, S, R: problem sizes; dtype: the float dtype.
    """

    fn: Callable
    args: tuple
    steps: np.ndarray
    rho: np.ndarray
    lr: np.ndarray
    shared: bool
    form: str
    shard_axis: str
    num_devices: int
    seed_block: int
    n: int
    d: int
    S: int
    R: int
    dtype: Any

    def run(self):
        """Run and block; returns the raw device outputs ``(W (S, R, d), metrics (S, R, T))``."""
        return jax.block_until_ready(self.fn(*self.args))

    def result(self, out=None) -> FastSweepResult:
        """Run (unless ``out`` from :meth:`run` is given) and return host arrays."""
        W, ms = self.run() if out is None else out
        W, ms = _to_host(W), {k: _to_host(v) for k, v in ms.items()}
        if self.shared:
            W, ms = W[0], {k: v[0] for k, v in ms.items()}
        return FastSweepResult(
            steps=self.steps, rho=self.rho, lr=self.lr, metrics=ms, w=W, form=self.form,
            shard_axis=self.shard_axis, num_devices=self.num_devices, seed_block=self.seed_block,
        )


_transpose = jax.jit(lambda X: jnp.swapaxes(X, -1, -2))  # materialised: a jit output is row-major


def _to_host(x):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


@functools.lru_cache(maxsize=64)
def _program(form, steps, record_every, metrics_fn, seed_block, precision, shard_axis, mesh):
    local = functools.partial(
        _local_sweep, form=form, steps=steps, record_every=record_every, metrics_fn=metrics_fn, seed_block=seed_block,
        precision=precision,
    )
    if shard_axis == "seed":
        return shard_run_axis(local, in_axes=(0, 0, 0, None, None), out_axes=0, mesh=mesh)
    return shard_run_axis(local, in_axes=(None, None, 1, 0, 0), out_axes=1, mesh=mesh)


def _check_labels(t, shape, name):
    if tuple(np.shape(t)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} to match X, got shape {tuple(np.shape(t))}")
    arr = np.asarray(t)
    if arr.dtype.kind not in "biuf" or not np.all(np.isin(arr, (-1, 1))):
        raise ValueError(f"{name} (binary labels) must be -1 or +1")


def _resolve_dtype(dtype, X):
    if dtype is None:
        kind = getattr(X, "dtype", np.asarray(X).dtype)
        dtype = kind if np.issubdtype(kind, np.floating) else jnp.zeros(()).dtype
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype("float32"), jnp.dtype("float64")):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.dtype("float64") and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    return dtype


def plan_sweep(
    X,
    t,
    rho,
    *,
    lr,
    steps: int,
    record_every: int = 10,
    w0=None,
    noisy=None,
    X_test=None,
    t_test=None,
    form: str = "auto",
    dtype=None,
    metrics_fn: Callable | None = None,
    seed_block: int | None = None,
    precision: str | None = "highest",
    shard: str = "auto",
    devices=None,
    mesh: Mesh | None = None,
) -> SweepPlan:
    """Validate and prepare :func:`logreg_sweep` without running it (arguments as there)."""
    # ---- shapes -----------------------------------------------------------------
    ndim = np.ndim(X)
    if ndim not in (2, 3):
        raise ValueError(f"X must have shape (n, d) (one dataset) or (S, n, d) (one per seed), got shape {np.shape(X)}")
    shared = ndim == 2
    S = 1 if shared else int(np.shape(X)[0])
    n, d = (int(s) for s in np.shape(X)[-2:])
    validate.check_inputs(np.reshape(np.asarray(X), (S * n, d)) if not shared else X, "X")
    if n < 1 or d < 1 or S < 1:
        raise ValueError(f"X must have n, d (and S) >= 1, got shape {np.shape(X)}")
    lead = () if shared else (S,)
    _check_labels(t, lead + (n,), "t")
    if noisy is not None:
        if tuple(np.shape(noisy)) != lead + (n,):
            raise ValueError(f"noisy must have shape {lead + (n,)} to match X, got shape {np.shape(noisy)}")
        if np.asarray(noisy).dtype != np.bool_:
            raise ValueError(f"noisy must be a boolean mask, got dtype {np.asarray(noisy).dtype}")
    if (X_test is None) != (t_test is None):
        raise ValueError("X_test and t_test must be given together")
    if X_test is not None:
        sx = tuple(np.shape(X_test))
        if len(sx) != len(lead) + 2 or sx[: len(lead)] != lead or sx[-1] != d:
            raise ValueError(f"X_test must have shape {lead + ('m', d)}, got shape {sx}")
        validate.check_finite(X_test, "X_test")
        _check_labels(t_test, sx[:-1], "t_test")
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    if rho.ndim != 1 or rho.size < 1:
        raise ValueError(f"rho must be a number or a 1-D array of per-run radii, got shape {rho.shape}")
    validate.check_rho(rho, "rho")
    R = rho.size
    lr = np.asarray(lr, dtype=float)
    if lr.ndim == 0:
        lr = np.full(R, float(lr))
    if lr.shape != (R,):
        raise ValueError(f"lr must be a number or have shape ({R},) (one per run), got shape {lr.shape}")
    validate.check_positive(lr, "lr")
    validate.check_positive_int(steps, "steps")
    validate.check_positive_int(record_every, "record_every")
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({record_every})")
    validate.check_method(form, FORMS, "form")
    validate.check_method(shard, SHARD_AXES, "shard")
    if seed_block is not None:
        validate.check_positive_int(seed_block, "seed_block")
    validate.check_method(precision, PRECISIONS, "precision")
    if metrics_fn is not None and not callable(metrics_fn):
        raise ValueError("metrics_fn must be callable: metrics_fn(state: RunState, data, rho) -> dict of scalars")
    dtype = _resolve_dtype(dtype, X)

    # ---- initial weights: (d,), (S, d), (R, d) or (S, R, d) -> (S, R, d) ---------
    if w0 is None:
        W0 = jnp.zeros((S, R, d), dtype)
    else:
        validate.check_finite(w0, "w0")
        sw = tuple(np.shape(w0))
        w0 = jnp.asarray(w0, dtype)
        if sw == (d,):
            W0 = jnp.broadcast_to(w0, (S, R, d))
        elif not shared and sw == (S, d):
            W0 = jnp.broadcast_to(w0[:, None, :], (S, R, d))
        elif shared and sw == (R, d):
            W0 = w0[None]
        elif not shared and sw == (S, R, d):
            W0 = w0
        else:
            allowed = "(d,) or (R, d)" if shared else "(d,), (S, d) or (S, R, d)"
            raise ValueError(f"w0 must have shape {allowed} with S={S}, R={R}, d={d}; got shape {sw}")

    # ---- what runs where ---------------------------------------------------------------
    if form == "auto":
        form = choose_form(n, d, record_every)
    mesh = run_mesh(devices) if mesh is None else mesh
    num_dev = int(mesh.devices.size)
    if shard == "auto":
        shard = "seed" if S >= num_dev and S > 1 else "run"
    if seed_block is None:
        s_local = -(-S // num_dev) if shard == "seed" else S
        seed_block = auto_seed_block(s_local, n, d, dtype.itemsize, form, mesh.devices.flat[0].platform)
    # Single process: device arrays (no transfer per call). Several processes (multi-host):
    # host arrays, which jit takes as the same global value on every process.
    put = jnp.asarray if jax.process_count() == 1 else np.asarray

    def cast(a, dt=dtype):
        if a is None:
            return None
        a = put(a, dt)
        return a[None] if shared else a

    data = SweepData(cast(X), cast(t), cast(noisy, bool), cast(X_test), cast(t_test))
    fn = _program(form, int(steps), int(record_every), metrics_fn or default_metrics, int(seed_block), precision, shard,
                  mesh)
    if put is np.asarray:
        XT = np.ascontiguousarray(np.swapaxes(data.X, -1, -2))
    else:
        XT = _transpose(data.X)
    args = (data, XT, put(W0), put(rho, dtype), put(lr, dtype))
    return SweepPlan(
        fn=fn, args=args, steps=np.arange(0, steps + 1, record_every), rho=rho, lr=lr, shared=shared, form=form,
        shard_axis=shard, num_devices=num_dev, seed_block=int(seed_block), n=n, d=d, S=S, R=R, dtype=dtype,
    )


def logreg_sweep(X, t, rho, *, lr, steps: int, record_every: int = 10, **kwargs) -> FastSweepResult:
    r"""Train ``R`` linear-logistic runs (GD at rho 0, 1-SAM at rho > 0) per dataset, fast.

    .. math::

        w_{k+1} = w_k + \frac{\eta}{n}X^\top\big(t\odot\sigma(-t\odot Xw_k + \rho\|x\|)\big)
        \quad\text{(Lemma 3.1; shift 0 where an example's gradient is 0)}

    Args:
      X: ``(n, d)``: one dataset shared by all runs (a rho sweep: GEMMs), or ``(S, n, d)``:
        one dataset per seed (a seed sweep: batched matvecs).
      t: ``(n,)`` / ``(S, n)`` training labels in {-1, +1}.
      rho: ``(R,)`` per-run radius >= 0 (a number for ``R = 1``); 0 = GD.
        :func:`method_rho_grid` builds it from method names.
      lr: step size > 0, a number or ``(R,)``.
      steps: updates per run (>= 1), a multiple of ``record_every``.
      record_every: record interval ``k``; metrics at steps ``0, k, ..., steps``.
      w0: initial weights (default 0): ``(d,)``, per seed ``(S, d)``, per run ``(R, d)``
        (shared data) or ``(S, R, d)``.
      noisy: ``(n,)`` / ``(S, n)`` bool flip mask (enables the clean/noisy metrics).
      X_test, t_test: ``(m, d)`` / ``(S, m, d)`` test set (enables ``test_acc``).
      form: ``"primal"`` (GEMMs on X), ``"dual"`` (Gram matrix; see the module docstring)
        or ``"auto"`` (fewer flops).
      dtype: ``"float32"`` or ``"float64"``; default X's dtype.
      metrics_fn: ``metrics_fn(state: RunState, data: SweepData, rho) -> dict`` of scalars,
        for one run at a record step (vmapped); default :func:`default_metrics`.
      seed_block: datasets vmapped together inside one device, each group run for the
        whole trajectory before the next (``lax.map``). Default (None):
        :func:`auto_seed_block`: on CPU a group whose data fit in half the last-level cache
        (the data then stay in cache for all steps), on accelerators all datasets at once.
      precision: matmul precision inside the sweep (``jax.default_matmul_precision``):
        ``"highest"`` (default: true float32 products, also on GPUs/TPUs whose default is
        TF32/bfloat16 passes), ``"high"``, ``"default"`` (fastest), or None (leave JAX's
        setting). No effect on CPU.
      shard: axis split across devices: ``"seed"``, ``"run"``, or ``"auto"`` (seeds when
        there are at least as many as devices, else runs).
      devices, mesh: where to run (default all ``jax.devices()``).

    Returns:
      :class:`FastSweepResult`; metrics ``(R, T)`` for shared data, ``(S, R, T)`` per seed.

    >>> res = logreg_sweep(X, t, rho=[0.0, 0.5], lr=0.1, steps=100, record_every=10)  # doctest: +SKIP
    >>> res.metrics["train_acc"].shape                                              # doctest: +SKIP
    (2, 11)
    """
    return plan_sweep(X, t, rho, lr=lr, steps=steps, record_every=record_every, **kwargs).result()
