r"""The linear backend: full-batch rules of a linear model that are per-example reweightings.

Where the model's closed form of a method is one of its per-example reweighting kernels (for
:class:`linsam.models.LogReg`: ``gd``, ``jsam``, ``jreg``; ``one_sam``, ``lsam``; and the
controls ``linear_loss``, ``shifted_loss``, ``large_step``, ``weight_decay``; see
:func:`kind`), one step of run ``r`` (:class:`Runs`: radius :math:`\rho_r`, constant shift
:math:`c_r`, step multiplier :math:`m_r`, weight decay :math:`\lambda_r`) is

.. math::

    z = t \odot X w_r, \qquad a = \mathrm{example\_weights}(z, \|x\|; \rho_r, c_r)
      = \sigma(-z + C + c_r), \\
    w_r \leftarrow (1 - \eta\lambda_r)\, w_r + \frac{\eta m_r}{n} X^\top\big(t \odot a\big)

(``model.example_weights``; ``model.margin_shift``: Lemma 3.1's :math:`C_i = \rho\|x_i\|`, 0
where the gradient is 0; :math:`c = \infty` is the linear loss, every weight 1).
With weight decay the dual form carries :math:`w = \alpha w_0 + sX^\top A`,
:math:`\alpha = (1-\eta\lambda)^k`, so below :math:`w_0 \to \alpha w_0`, :math:`M_0 \to \alpha M_0`.
The ``R`` runs of one seed share its data, so a step is two GEMMs on :math:`W \in \mathbb
R^{d\times R}` (**primal** form, :math:`4ndR` flops), or, since every update lies in the row
space of :math:`X`, the logits follow :math:`M \leftarrow M + \frac{\eta}{n} K C` with the Gram
matrix :math:`K = XX^\top` computed once (**dual** form, :math:`2n^2R` flops, ``A = \sum_k C_k``
carried). ``form="auto"`` picks the form with fewer flops (:func:`flops_per_step`). The dual
form carries :math:`M^\top` (runs by examples) and forms :math:`C^\top K`: ``K`` is symmetric
and streams row by row (about 20% faster on CPU than :math:`K C`, measured by the bench).

**Metrics in closed form from what the step has.** The logits :math:`M` are carried, so the
margins are free; the 1-SAM point of example i is :math:`z'_i = z_i - C_i` with
:math:`J_i = J'_i = \|x_i\|` (``LogReg.one_sam_point``: the Jacobian does not depend on w).
The dual form never rebuilds :math:`w = w_0 + s X^\top A` (:math:`s = \eta/n`) for a record:

.. math::

    \|w\|^2 = \|w_0\|^2 + 2s\langle Xw_0, A\rangle + s^2 A^\top K A, \qquad
    \langle w, \mu\rangle = \langle w_0, \mu\rangle + s\langle X\mu, A\rangle, \\
    w^\top\Sigma w = \|\Sigma^{1/2} w_0\|^2 + 2s\langle X\Sigma w_0, A\rangle + s^2 A^\top K_\Sigma A,
    \quad K_\Sigma = X\Sigma X^\top,

the last two being the moments of the population accuracy
:math:`\Phi(\langle w,\mu\rangle/\sqrt{w^\top\Sigma w})` (:func:`linsam.data.population_accuracy`).
Since :math:`s K A = M - M_0` (the carried logits), :math:`s^2A^\top K A = s\langle A, M - M_0\rangle`
needs no product; for isotropic data :math:`w^\top\Sigma w = \sigma^2\|w\|^2` (no second Gram
matrix). Same trajectory as the generic backend up to float rounding (tested in float64).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from linsam._src import rules
from linsam._src.data import _accuracy_from_moments, _population_accuracy
from linsam._src.engine.metrics import binary_metrics
from linsam._src.engine.shard import shard_run_axis
from linsam._src.models import row_norms

FORMS = ("auto", "primal", "dual")
PRECISIONS = (None, "default", "high", "highest")


#: The closed-form kernels the backend runs, by the method class whose kernel it is.
KINDS = {"gd": rules.GD, "one_sam": rules.OneSAM, "linear_loss": rules.LinearLoss, "shifted_loss": rules.ShiftedLoss,
         "large_step": rules.LargeStep, "weight_decay": rules.WeightDecay}
#: Kinds whose training has no knob (one run per seed).
ONCE_KINDS = ("gd", "linear_loss")


def kind(model, method_cls) -> str | None:
    """The kind (a key of :data:`KINDS`) when the model's closed form of ``method_cls`` is the
    model's kernel of that kind and the model is linear with per-example weights
    (``example_weights``: the linear backend applies); None otherwise. For
    :class:`~linsam.models.LogReg`: ``jsam``, ``jreg`` are ``"gd"``, ``lsam`` is ``"one_sam"``."""
    forms = getattr(model, "closed_forms", None)
    if not forms or getattr(model, "example_weights", None) is None or getattr(model, "end_to_end", None) is None:
        return None
    kernel = forms.get(method_cls)
    if kernel is None:
        return None
    for name, cls in KINDS.items():
        if kernel is forms.get(cls):
            return name
    return None


class Runs(NamedTuple):
    r"""Per-run parameters of the linear backend, each ``(R,)``: one step of run r is

    .. math::  w \leftarrow (1 - \eta\lambda_r)\, w + \frac{\eta m_r}{n} X^\top\big(t \odot
               a(z; \rho_r, c_r)\big), \qquad a = \texttt{model.example\_weights}(z, \|x\|, \rho_r, c_r).
    """

    rho: jax.Array    # 1-SAM radius (0: none)
    shift: jax.Array  # constant margin shift c (0: none; inf: the linear loss)
    mult: jax.Array   # step multiplier m (1: none)
    decay: jax.Array  # weight decay lambda (0: none)


def run_parameters(kind_name: str, value) -> tuple[float, float, float, float]:
    """``(rho, shift, mult, decay)`` of one run of kind ``kind_name`` for the method value ``value``."""
    if kind_name == "gd":
        return 0.0, 0.0, 1.0, 0.0
    if kind_name == "one_sam":
        return float(value.rho), 0.0, 1.0, 0.0
    if kind_name == "linear_loss":
        return 0.0, float("inf"), 1.0, 0.0
    if kind_name == "shifted_loss":
        return 0.0, float(value.shift), 1.0, 0.0
    if kind_name == "large_step":
        return 0.0, 0.0, float(value.lr_mult), 0.0
    if kind_name == "weight_decay":
        return 0.0, 0.0, 1.0, float(value.decay)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind_name!r}")


# ----------------------------------------------------------------------------- cost model


def flops_per_step(n: int, d: int, R: int, record_every: int, form: str = "primal") -> float:
    r"""Floating-point operations per step of one seed with ``R`` runs (multiply-add = 2).

    primal: :math:`4ndR` (the two GEMMs) :math:`+ 2dR` (the update) :math:`+ 4dR/k` (norm and
    accuracy moments at a record, amortised over ``k = record_every``).
    dual: :math:`2n^2R` (:math:`K C`) :math:`+ 4nR` (updates of M and A) :math:`+ 2n^2R/k`
    (:math:`K_\Sigma A` at a record; 0 for isotropic data, not counted here).
    Element-wise work (:math:`\sigma`, masks; about :math:`10nR`) is not counted; the one-off
    :math:`XW_0` and Gram matrices (:math:`4n^2d`) are not either.
    """
    k = record_every
    if form == "primal":
        return 4.0 * n * d * R + 2.0 * d * R + 4.0 * d * R / k
    if form == "dual":
        return 2.0 * n * n * R + 4.0 * n * R + 2.0 * n * n * R / k
    raise ValueError(f"form must be 'primal' or 'dual', got {form!r}")


def bytes_per_step(n: int, d: int, R: int, record_every: int, itemsize: int, form: str = "primal") -> float:
    r"""Bytes that must cross the memory bus per step of one seed (streaming, no cache reuse).

    primal: :math:`X` read twice, :math:`W` read twice and written once: :math:`(2nd + 3dR)\,s`.
    dual: :math:`K` read once, :math:`M, A` read and written: :math:`(n^2 + 4nR)\,s`, plus
    :math:`K, K_\Sigma` once more per record (:math:`2n^2 s/k`).
    """
    k, s = record_every, itemsize
    if form == "primal":
        return (2.0 * n * d + 3.0 * d * R) * s
    if form == "dual":
        return (1.0 * n * n + 4.0 * n * R + 2.0 * n * n / k) * s
    raise ValueError(f"form must be 'primal' or 'dual', got {form!r}")


def choose_form(n: int, d: int, R: int, record_every: int) -> str:
    """``"dual"`` when its flop count per step (:func:`flops_per_step`) is lower, else ``"primal"``."""
    return "dual" if flops_per_step(n, d, R, record_every, "dual") < flops_per_step(n, d, R, record_every) else "primal"


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
    """Seeds per group inside one device.

    On CPU, the largest group whose per-step working set (``X`` and its stored transpose,
    ``2nd`` numbers, in the primal form; ``K``, ``n^2``, in the dual) fits in a quarter of the
    last-level cache (which other processes share), at least 1, and dividing ``S_local``
    (uneven groups would copy the data): the data then stay in cache for the whole trajectory.
    On accelerators, every seed at once (parallelism first)."""
    if platform != "cpu" or S_local <= 1:
        return max(S_local, 1)
    per = (2 * n * d if form == "primal" else n * n) * itemsize
    fit = int(min(S_local, max(1, (last_level_cache_bytes() // 4) // max(per, 1))))
    return max(b for b in range(1, fit + 1) if S_local % b == 0)


# ----------------------------------------------------------------------------- one seed


def segments(sizes: tuple) -> tuple:
    """Runs of equal gaps between records: ``(size, count)`` pairs (static shapes of the loops)."""
    out = []
    for k in sizes:
        if out and out[-1][0] == k:
            out[-1][1] += 1
        else:
            out.append([int(k), 1])
    return tuple((k, c) for k, c in out)


#: Steps unrolled per loop iteration (fewer loop-carried round trips; measured by the bench).
UNROLL = 5


def _advance(step, carry, size):
    """``size`` (static) steps: a scan unrolled :data:`UNROLL` times (no traced trip count)."""
    if size == 0:
        return carry
    if size == 1:
        return step(carry)
    carry, _ = lax.scan(lambda c, _: (step(c), None), carry, None, length=size, unroll=min(UNROLL, size))
    return carry


def _scan_records(block, carry, sizes):
    """Apply ``block(carry, size) -> (carry, out)`` at every record gap of the static ``sizes``:
    one scan per run of equal gaps; outputs stacked along a leading record axis ``T``."""
    outs = []
    for size, count in segments(sizes):
        carry, out = lax.scan(lambda c, _, k=size: block(c, k), carry, None, length=count)
        outs.append(out)
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outs)


def _val_correct(zv):
    """Validation accuracy of the runs from their validation margins ``(n_val, R)`` (ties 1/2)."""
    return jnp.mean((zv > 0).astype(zv.dtype) + 0.5 * (zv == 0).astype(zv.dtype), axis=0)


def _trajectory(X, XT, t, mask, w0, Xv, tv, runs, pair_run, pair_rho, mu, scale, lr, *, model, form, sizes,
                keep_params, isotropic):
    r"""One seed, ``R`` runs: ``X`` ``(n, d)``, ``XT`` its stored transpose, ``w0`` ``(d,)``,
    the validation sample ``Xv`` ``(n_val, d)`` with its noisy labels ``tv`` (``val_acc``:
    primal :math:`X_v W`; dual :math:`X_v w = \alpha X_v w_0 + s (X_v X^\top) A`),
    ``runs`` (:class:`Runs`, each ``(R,)``); ``P`` recorded (run, radius) pairs ``pair_run``, ``pair_rho`` ``(P,)``.
    Returns metrics name -> ``(P, T)`` and the weights at the records ``(R, T, d)`` or None.

    The loop carries only the state; a record keeps the logits ``M`` and three scalars per run
    (``||w||^2`` and the accuracy moments), and the per-example metrics of every record are
    computed after the loop in one vectorised pass (no per-record kernel launches)."""
    n = X.shape[0]
    R = runs.rho.shape[0]
    s = lr / n
    xn = row_norms(X)
    xn_col = xn[:, None]
    m0 = X @ w0
    M0 = jnp.broadcast_to(m0[:, None], (n, R))
    keep = 1.0 - lr * runs.decay  # (R,) weight-decay factor per step

    def coef(M):
        z = t[:, None] * M
        a = model.example_weights(z, xn_col, rho=runs.rho[None, :], shift=runs.shift[None, :])
        return t[:, None] * (runs.mult[None, :] * a)

    if form == "primal":
        W0 = jnp.broadcast_to(w0[:, None], (w0.shape[0], R))

        def step(carry):
            W, M = carry
            W = keep[None, :] * W + s * (XT @ coef(M))
            return W, X @ W

        def block(carry, size):
            W, M = _advance(step, carry, size)
            w_norm = jax.vmap(lambda w: model.norms(w, X)["w_norm"], in_axes=1)(W)
            acc = _population_accuracy(mu, scale, W.T)
            vacc = _val_correct(tv[:, None] * (Xv @ W))
            return (W, M), (M, w_norm, acc, vacc, W.T if keep_params else None)

        Ms, w_norm, acc, vacc, Ws = _scan_records(block, (W0, M0), sizes)
    else:
        K = X @ XT
        scale2 = scale * scale
        K2 = None if isotropic else (X * scale2) @ XT
        xmu, xs2w0 = X @ mu, X @ (scale2 * w0)
        Kv, mv0 = Xv @ XT, Xv @ w0  # validation logits: X_v w = a X_v w0 + s K_v A
        w0_sq, w0_mu, w0_var = jnp.sum(w0 * w0), w0 @ mu, jnp.sum(scale2 * w0 * w0)

        # w = a w0 + s X^T A with a = (1 - lr decay)^k per run (a = 1 without decay)
        def step(carry):  # rows: runs (R, n), so K (symmetric) streams row by row
            MT, AT, a = carry
            z = t * MT
            CT = t * (runs.mult[:, None] * model.example_weights(z, xn, rho=runs.rho[:, None],
                                                                 shift=runs.shift[:, None]))
            return keep[:, None] * MT + s * (CT @ K), keep[:, None] * AT + CT, keep * a

        def block(carry, size):
            MT, AT, a = _advance(step, carry, size)
            M, A = MT.T, AT.T
            # s K A = M - a M0 (the carried logits): A^T K A costs no product
            w_sq = a * a * w0_sq + 2.0 * a * s * (m0 @ A) + s * jnp.sum(A * (M - a * M0), axis=0)
            signal = a * w0_mu + s * (xmu @ A)
            if isotropic:  # Sigma = sigma^2 I: w^T Sigma w = sigma^2 ||w||^2
                var = scale2[0] * w_sq
            else:
                var = a * a * w0_var + 2.0 * a * s * (xs2w0 @ A) + s * s * jnp.sum(A * (K2 @ A), axis=0)
            acc = _accuracy_from_moments(signal, var)
            vacc = _val_correct(tv[:, None] * (a[None, :] * mv0[:, None] + s * (Kv @ A)))
            W = (a[None, :] * w0[:, None] + s * (XT @ A)).T if keep_params else None
            return (MT, AT, a), (M, jnp.sqrt(jnp.maximum(w_sq, 0.0)), acc, vacc, W)

        Ms, w_norm, acc, vacc, Ws = _scan_records(block, (M0.T, jnp.zeros_like(M0.T), jnp.ones_like(keep)), sizes)

    # every record at once: Ms (T, n, R) -> margins of the recorded pairs (T, n, P)
    z = t[None, :, None] * Ms[:, :, pair_run]
    z_sam = z - model.margin_shift(z, xn_col, pair_rho[None, :])  # the 1-SAM point (J' = J = ||x||)
    per_pair = jax.vmap(binary_metrics, in_axes=(1, None, 1, None, None, 0))  # over P
    ms = jax.vmap(per_pair, in_axes=(0, None, 0, None, None, None))(z, xn, z_sam, xn, mask, pair_rho)  # (T, P)
    ms.update(test_acc=acc[:, pair_run], val_acc=vacc[:, pair_run], w_norm=w_norm[:, pair_run])
    ms = {k: v.T for k, v in ms.items()}  # (T, P) -> (P, T)
    return ms, (jnp.swapaxes(Ws, 0, 1) if keep_params else None)


@functools.lru_cache(maxsize=64)
def program(model, form: str, record_sizes: tuple, keep_params: bool, seed_block: int, precision, mesh,
            isotropic: bool = False):
    """The sweep over seeds (sharded over ``mesh``): ``fn(X, XT, t, mask, w0, Xv, tv, runs, pair_run,
    pair_rho, mu, scale, lr)`` (``runs``: :class:`Runs`), seed axis leading on the first seven; returns metrics
    ``(S, P, T)`` and weights ``(S, R, T, d)`` (or None). ``isotropic``: every entry of
    ``scale`` is the same (the dual form then needs no second Gram matrix)."""
    traj = functools.partial(_trajectory, model=model, form=form, sizes=tuple(record_sizes), keep_params=keep_params,
                             isotropic=isotropic)

    def local(X, XT, t, mask, w0, Xv, tv, runs, pair_run, pair_rho, mu, scale, lr):
        one = lambda a: traj(*a, runs, pair_run, pair_rho, mu, scale, lr)  # noqa: E731
        xs = (X, XT, t, mask, w0, Xv, tv)
        S = X.shape[0]
        with jax.default_matmul_precision(precision):
            if seed_block >= S:
                return jax.vmap(one)(xs)
            return lax.map(one, xs, batch_size=seed_block) if seed_block > 1 else lax.map(one, xs)

    return shard_run_axis(local, in_axes=(0,) * 7 + (None,) * 6, out_axes=0, mesh=mesh)


transpose = jax.jit(lambda X: jnp.swapaxes(X, -1, -2))  # materialised: a jit output is row-major
