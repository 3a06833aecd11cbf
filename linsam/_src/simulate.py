r"""Training simulators: one run is a ``lax.scan``; a sweep is ``jit(vmap(vmap(run)))``.

A run trains a binary model (``"logreg"``: :math:`f = \langle w, x\rangle`; ``"dln"``:
:math:`f = \langle v, W x\rangle`) with a core update rule chosen by name
(:data:`linsam.rules.METHODS`), full-batch GD (``batch_size = 0``) or mini-batch SGD
(epochs of shuffled batches, last incomplete batch dropped):

.. math::  \theta_{k+1} = \theta_k - \eta\, u_{\mathrm{method}}(\theta_k; X_{B_k}, \tilde t_{B_k}, \rho).

The training set comes from a binary Gaussian mixture (:class:`linsam.data.MixtureSpec`)
with label noise (:class:`linsam.data.NoiseSpec`); the learner sees the noisy labels
:math:`\tilde t`. Metrics are computed only at record steps ``0, k, 2k, ..., steps``
(:func:`record_metrics`), on the full training set, and the test accuracy is the
*population* accuracy of the end-to-end linear map (:func:`linsam.data.population_accuracy`:
exact, no test-sampling noise; the DLN's end-to-end weights are :math:`W^\top v`).

Randomness: seed ``s`` gives ``key = PRNGKey(s)``, split into (data, init, sgd) keys. The
data, the initialisation and the mini-batch order depend on the seed only, so every method
and every rho of one seed sees the same sample and the same start: comparisons across
methods are paired.

Compilation (the cost of a sweep on a CPU is mostly XLA compilation): the training sets
and initial parameters of every seed are drawn by one compiled, seed-vmapped sampler,
outside the training loop; the training kernel is ``jit(vmap(vmap(scan)))`` over rhos and
seeds, with the method a *traced* index into ``lax.switch`` over every rule of
:data:`linsam.rules.METHODS` and ``lr``, ``rho``, ``lam_last``, ``lam_act`` traced, so every
method, every seed chunk and every sweep of the same shapes reuse one executable. Metrics are
computed inside the scan at the record steps (parameters are kept only with
``keep_params``), so memory does not grow with the number of steps.

A method that does not use rho (``gd``, ``jreg_fixed`` unless ``lam_scale_by_rho``) is
called with the same rho vector as the others (one compiled shape for all methods): it
trains the same run at every rho, and only its rho-dependent *metrics* differ per rho.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import linsam
from linsam._src import dln as _dln
from linsam._src import logreg as _logreg
from linsam._src.data import (
    Dataset,
    GaussianMixture,
    MixtureSpec,
    NoiseSpec,
    _population_accuracy,
    _sample_binary,
)
from linsam._src.atomic import write_atomic
from linsam._src.rules import METHODS
from linsam._src.validate import check_method, check_nonnegative, check_positive, check_positive_int, check_rho

MODELS = ("logreg", "dln")
AXES = ("method", "rho", "seed", "step")

# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class SimConfig:
    r"""Everything that defines a sweep (static and hashable; what a TOML config holds).

    Top-level fields (TOML top level), then ``data`` (TOML ``[data]``, a
    :class:`~linsam.data.MixtureSpec`), ``noise`` (``[noise]``, a
    :class:`~linsam.data.NoiseSpec`) and ``meta`` (``[meta]``: free-form key/values kept
    with the results, e.g. the regime's role and headline rho; sorted ``(key, value)`` pairs).

    Attributes:
      name, description: labels written with the results.
      model: ``"logreg"`` or ``"dln"``.
      methods: method names (:data:`linsam.rules.METHODS`).
      rhos: perturbation radii (>= 0); every method runs at every rho.
      num_seeds, seed_offset: seeds ``seed_offset, ..., seed_offset + num_seeds - 1``.
      n: training-set size (>= 2).
      steps: number of updates (>= 1), a multiple of ``record_every``.
      lr: learning rate (> 0).
      batch_size: 0 for full batch, else the mini-batch size (<= n).
      init_scale: 0 for zero init, else the scale of :func:`linsam.logreg.init` /
        :func:`linsam.dln.init` (a zero-init DLN never moves: a stationary point).
      record_every: record interval in steps (>= 1).
      record_dense: record every step for the first ``record_dense`` steps, then every
        ``record_every`` (0 = off); resolves an early peak (zero-init GD peaks at step 1)
        without paying for metrics at every step. ``steps - record_dense`` must be a
        multiple of ``record_every``.
      hidden: DLN width h.
      lam_last, lam_act: ``jreg_fixed`` coefficients.
      lam_scale_by_rho: if true, ``jreg_fixed`` uses ``lam_last * rho`` and ``lam_act * rho``,
        so the rho axis sweeps its strength (selected like any other method's rho); with
        constants of the size of :math:`s_i/J_i` this is Proposition 4.1's coefficient
        :math:`\rho\,s_i/J_i` frozen at a typical value.
      dtype: ``"float32"`` (sweeps) or ``"float64"`` (exact tests).
      seed_chunk: seeds per compiled call (0 = all at once); smaller chunks give progress
        lines and bound memory, and reuse the same compilation.
    """

    name: str = "sweep"
    description: str = ""
    model: str = "logreg"
    methods: tuple = ("gd", "one_sam")
    rhos: tuple = (0.0,)
    num_seeds: int = 20
    seed_offset: int = 0
    n: int = 500
    steps: int = 3000
    lr: float = 0.1
    batch_size: int = 0
    init_scale: float = 0.0
    record_every: int = 10
    record_dense: int = 0
    hidden: int = 32
    lam_last: float = 0.0
    lam_act: float = 0.0
    lam_scale_by_rho: bool = False
    dtype: str = "float32"
    seed_chunk: int = 0
    data: MixtureSpec = MixtureSpec()
    noise: NoiseSpec = NoiseSpec("symmetric", 0.3)
    meta: tuple = ()

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SimConfig":
        """Build from a (TOML-shaped) mapping; unknown keys are refused by name."""
        d = dict(d)
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - top
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(top)}")
        data = d.pop("data", {})
        noise = d.pop("noise", {})
        meta = d.pop("meta", {})
        if isinstance(data, Mapping):
            bad = set(data) - set(MixtureSpec._fields)
            if bad:
                raise ValueError(f"unknown [data] key(s) {sorted(bad)}; allowed: {list(MixtureSpec._fields)}")
            data = dict(data)
            if "mean_coords" in data:
                data["mean_coords"] = tuple(int(c) for c in np.atleast_1d(data["mean_coords"]))
            data = MixtureSpec(**data)
        if isinstance(noise, Mapping):
            bad = set(noise) - set(NoiseSpec._fields)
            if bad:
                raise ValueError(f"unknown [noise] key(s) {sorted(bad)}; allowed: {list(NoiseSpec._fields)}")
            noise = NoiseSpec(**noise)
        if isinstance(meta, Mapping):
            meta = tuple(sorted((str(k), _freeze(v)) for k, v in meta.items()))
        for key in ("methods", "rhos"):
            if key in d:
                d[key] = tuple(d[key]) if not isinstance(d[key], str) else (d[key],)
        if "rhos" in d:
            d["rhos"] = tuple(float(r) for r in d["rhos"])
        return cls(data=data, noise=noise, meta=meta, **d).validate()

    def to_dict(self) -> dict:
        """JSON/TOML-shaped mapping (inverse of :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["methods"] = list(self.methods)
        out["rhos"] = list(self.rhos)
        out["data"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data._asdict().items()}
        out["noise"] = self.noise._asdict()
        out["meta"] = {k: _thaw(v) for k, v in self.meta}
        return out

    def replace(self, **changes) -> "SimConfig":
        return dataclasses.replace(self, **changes).validate()

    @property
    def meta_dict(self) -> dict:
        return {k: _thaw(v) for k, v in self.meta}

    @property
    def seeds(self) -> np.ndarray:
        return np.arange(self.seed_offset, self.seed_offset + self.num_seeds)

    # -- validation ---------------------------------------------------------------
    def validate(self) -> "SimConfig":
        """Refuse a config that cannot be right, naming the field (before any work)."""
        check_method(self.model, MODELS, "model")
        if len(self.methods) == 0:
            raise ValueError("methods must name at least one method")
        for m in self.methods:
            check_method(m, METHODS, "methods")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat, got {list(self.methods)}")
        if len(self.rhos) == 0:
            raise ValueError("rhos must hold at least one value")
        for r in self.rhos:
            check_rho(r, "rhos")
        check_positive_int(self.num_seeds, "num_seeds")
        if isinstance(self.seed_offset, bool) or not isinstance(self.seed_offset, (int, np.integer)) or self.seed_offset < 0:
            raise ValueError(f"seed_offset must be an integer >= 0, got {self.seed_offset!r}")
        check_positive_int(self.n, "n", minimum=2)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.record_every, "record_every")
        if isinstance(self.record_dense, bool) or not isinstance(self.record_dense, (int, np.integer)) or not (
            0 <= self.record_dense <= self.steps
        ):
            raise ValueError(f"record_dense must be an integer in [0, steps = {self.steps}], got {self.record_dense!r}")
        if (self.steps - self.record_dense) % self.record_every:
            raise ValueError(
                f"steps - record_dense ({self.steps} - {self.record_dense}) must be a multiple of "
                f"record_every ({self.record_every})"
            )
        check_positive(self.lr, "lr")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) or not (
            0 <= self.batch_size <= self.n
        ):
            raise ValueError(f"batch_size must be an integer in [0, n = {self.n}] (0 = full batch), got {self.batch_size!r}")
        check_nonnegative(self.init_scale, "init_scale")
        check_positive_int(self.hidden, "hidden")
        check_nonnegative(self.lam_last, "lam_last")
        check_nonnegative(self.lam_act, "lam_act")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if isinstance(self.seed_chunk, bool) or not isinstance(self.seed_chunk, (int, np.integer)) or self.seed_chunk < 0:
            raise ValueError(f"seed_chunk must be an integer >= 0 (0 = all seeds at once), got {self.seed_chunk!r}")
        if not isinstance(self.data, MixtureSpec):
            raise ValueError("data must be a linsam.data.MixtureSpec")
        if not isinstance(self.noise, NoiseSpec):
            raise ValueError("noise must be a linsam.data.NoiseSpec")
        self.data.build()  # validates the data fields
        self.noise.validate(self.data.d)
        if self.noise.kind == "boundary" and self.data.kind == "signal_noise" and self.data.signal_std == 0:
            raise ValueError("boundary noise needs a class spread along mu (data.signal_std > 0)")
        return self


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _thaw(v):
    return list(v) if isinstance(v, tuple) else v


def load_config(path: str | os.PathLike) -> SimConfig:
    """Read a TOML config (top-level fields, ``[data]``, ``[noise]``, ``[meta]``).

    A bare name (no ``/`` and no ``.toml``) is looked up among the shipped configs in
    ``linsam/configs/`` (:func:`shipped_configs`).
    """
    p = Path(path)
    if not p.exists() and p.suffix != ".toml" and "/" not in str(path):
        p = _configs_dir() / f"{path}.toml"
    if not p.exists():
        raise ValueError(f"config file {str(path)!r} not found (shipped: {', '.join(shipped_configs())})")
    with open(p, "rb") as fh:
        raw = tomllib.load(fh)
    try:
        return SimConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{p}: {err}") from None


def _configs_dir() -> Path:
    return Path(linsam.__file__).parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the TOML configs shipped in ``linsam/configs/``."""
    return sorted(p.stem for p in _configs_dir().glob("*.toml"))


# ----------------------------------------------------------------------------- model adapters


def _mean_over(values, mask):
    """Mean over ``mask`` along the last axis; NaN where the group is empty."""
    cnt = jnp.sum(mask, axis=-1)
    tot = jnp.sum(jnp.where(mask, values, 0.0), axis=-1)
    return jnp.where(cnt > 0, tot / jnp.maximum(cnt, 1), jnp.nan)


def _logreg_pieces(w, X, t, rho):
    r"""Per-example pieces of logistic regression at ``w`` and at the 1-SAM point.

    :math:`z_i = t_i\langle w,x_i\rangle`, :math:`s_i=\sigma(-z_i)`, :math:`J_i=\|x_i\|`,
    1-SAM point :math:`w + \epsilon_i`, :math:`\epsilon_i = -\rho t_i x_i/\|x_i\|` (0 where
    the gradient is 0), so :math:`z'_i = t_i\langle w+\epsilon_i, x_i\rangle`.
    """
    xn = jnp.linalg.norm(X, axis=1)
    z = t * (X @ w)
    s = jax.nn.sigmoid(-z)
    active = (s > 0) & (xn > 0)
    unit = X / jnp.where(xn > 0, xn, 1.0)[:, None]
    eps_dot_x = jnp.where(active, -rho * t * jnp.sum(unit * X, axis=1), 0.0)  # <eps_i, x_i>
    z_sam = t * (X @ w + eps_dot_x)
    sam_grad_norm = jax.nn.sigmoid(-z_sam) * xn  # ||grad l_i(w + eps_i)|| = sigma(-z'_i) ||x_i||
    return dict(
        z=z,
        log_s=jax.nn.log_sigmoid(-z),
        log_s_sam=jax.nn.log_sigmoid(-z_sam),
        J=xn,
        grad_norm=s * xn,
        sam_grad_norm=sam_grad_norm,
    ), dict(w_norm=jnp.linalg.norm(w))


def _dln_pieces(params, X, t, rho):
    r"""Per-example pieces of the DLN at ``(v, W)`` and at the 1-SAM point.

    :math:`z_i = W x_i`, :math:`f_i = \langle v, z_i\rangle`,
    :math:`J_i = \sqrt{\|z_i\|^2 + \|x_i\|^2\|v\|^2}`; 1-SAM point
    :math:`v' = v - a_i z_i`, :math:`W' = W - a_i v x_i^\top`, :math:`a_i = \rho t_i/J_i`
    (0 where the gradient is 0); :math:`\|\nabla\ell_i(\theta')\| = \sigma(-t_i f'_i)
    \sqrt{\|W' x_i\|^2 + \|x_i\|^2\|v'\|^2}`.
    """
    v, W = params.v, params.W
    Z = X @ W.T
    f = Z @ v
    z = t * f
    xn2 = jnp.sum(X * X, axis=1)
    J = jnp.sqrt(jnp.sum(Z * Z, axis=1) + xn2 * jnp.sum(v * v))
    s = jax.nn.sigmoid(-z)
    active = (s > 0) & (J > 0)
    a = jnp.where(active, rho * t / jnp.where(active, J, 1.0), 0.0)
    Vp = v[None, :] - a[:, None] * Z  # v'_i
    Zp = Z - (a * xn2)[:, None] * v[None, :]  # W'_i x_i
    fp = jnp.sum(Vp * Zp, axis=1)
    Jp = jnp.sqrt(jnp.sum(Zp * Zp, axis=1) + xn2 * jnp.sum(Vp * Vp, axis=1))
    z_sam = t * fp
    pieces = dict(
        z=z,
        log_s=jax.nn.log_sigmoid(-z),
        log_s_sam=jax.nn.log_sigmoid(-z_sam),
        J=J,
        grad_norm=s * J,
        sam_grad_norm=jax.nn.sigmoid(-z_sam) * Jp,
    )
    norms = dict(
        w_norm=jnp.linalg.norm(W.T @ v),
        v_norm=jnp.linalg.norm(v),
        W_norm=jnp.linalg.norm(W),
        act_norm=jnp.mean(jnp.sqrt(jnp.sum(Z * Z, axis=1))),
    )
    return pieces, norms


class _Ops(NamedTuple):
    init: Any
    kernels: dict
    pieces: Any
    end_to_end: Any


def _ops(model: str) -> _Ops:
    if model == "logreg":
        return _Ops(
            init=lambda key, d, h, scale, dtype: _logreg_init(key, d, scale, dtype),
            kernels=_logreg.KERNELS,
            pieces=_logreg_pieces,
            end_to_end=lambda w: w,
        )
    return _Ops(
        init=lambda key, d, h, scale, dtype: _dln_init(key, d, h, scale, dtype),
        kernels=_dln.KERNELS,
        pieces=_dln_pieces,
        end_to_end=lambda p: p.W.T @ p.v,
    )


def _logreg_init(key, d, scale, dtype):
    return scale * jax.random.normal(key, (d,), dtype) / math.sqrt(d)


def _dln_init(key, d, h, scale, dtype):
    kv, kw = jax.random.split(key)
    return _dln.DLNParams(
        v=scale * jax.random.normal(kv, (h,), dtype) / math.sqrt(h),
        W=scale * jax.random.normal(kw, (h, d), dtype) / math.sqrt(d),
    )


#: Names of the recorded metrics (logreg; the DLN adds v_norm, W_norm, act_norm).
METRICS = (
    "test_acc",
    "train_acc",
    "train_acc_clean",
    "train_acc_noisy",
    "loss_clean",
    "loss_noisy",
    "grad_norm_clean",
    "grad_norm_noisy",
    "grad_norm_ratio",
    "sam_grad_norm_clean",
    "sam_grad_norm_noisy",
    "sam_grad_norm_ratio",
    "sam_weight_clean",
    "sam_weight_noisy",
    "sam_weight_min",
    "sam_weight_max",
    "jsam_penalty",
    "w_norm",
)
DLN_METRICS = METRICS + ("v_norm", "W_norm", "act_norm")


def record_metrics(model: str, params, X, t, mask, mixture: GaussianMixture, rho) -> dict:
    r"""The metrics of one state (pure JAX; ``rho`` may be traced).

    With margins :math:`z_i = t_i f(x_i)` on the *training* (noisy) labels, clean set
    :math:`C = \{i: \neg\mathrm{mask}_i\}` and noisy set :math:`N`:

    - ``test_acc``: population accuracy of the end-to-end linear map;
    - ``train_acc`` / ``_clean`` / ``_noisy``: fraction of :math:`z_i > 0` (ties count 1/2)
      on all / clean / noisy examples, so ``train_acc_noisy`` is the fraction of flipped
      labels memorised (chance 1/2 at init);
    - ``loss_clean``, ``loss_noisy``: mean :math:`\mathrm{softplus}(-z_i)` per group;
    - ``grad_norm_*``: mean :math:`\|\nabla\ell_i(\theta)\| = \sigma(-z_i) J_i` per group and
      the ratio clean/noisy (:math:`J_i = \|\nabla_\theta f(x_i)\|`);
    - ``sam_grad_norm_*``: mean :math:`\|\nabla\ell_i(\theta + \epsilon_i)\|` at the 1-SAM
      point of each example (radius ``rho``), and the ratio: the quantity of Lemma 3.1;
    - ``sam_weight_*``: logit-scale ratio :math:`a_i = \sigma(-z'_i)/\sigma(-z_i)`
      (:math:`z'_i` the margin at :math:`\theta+\epsilon_i`; for logreg exactly the Lemma
      3.1 weight, the factor that turns GD into 1-SAM), mean per group, min and max;
    - ``jsam_penalty``: :math:`\frac{\rho}{n}\sum_i \sigma(-z_i) J_i` (Proposition 4.1);
    - ``w_norm``: norm of the end-to-end weights; DLN also ``v_norm``, ``W_norm``
      (Frobenius) and ``act_norm`` (mean :math:`\|W x_i\|`).

    Group means over an empty group are NaN (e.g. the noisy group at rate 0).
    """
    ops = _ops(model)
    rho = jnp.asarray(rho, X.dtype)
    p, norms = ops.pieces(params, X, t, rho)
    clean, noisy = ~mask, mask
    z = p["z"]
    correct = (z > 0).astype(X.dtype) + 0.5 * (z == 0).astype(X.dtype)
    loss = jax.nn.softplus(-z)
    weight = jnp.exp(p["log_s_sam"] - p["log_s"])
    gn_c, gn_n = _mean_over(p["grad_norm"], clean), _mean_over(p["grad_norm"], noisy)
    sg_c, sg_n = _mean_over(p["sam_grad_norm"], clean), _mean_over(p["sam_grad_norm"], noisy)
    out = dict(
        test_acc=_population_accuracy(mixture.mu, mixture.scale, ops.end_to_end(params)),
        train_acc=jnp.mean(correct),
        train_acc_clean=_mean_over(correct, clean),
        train_acc_noisy=_mean_over(correct, noisy),
        loss_clean=_mean_over(loss, clean),
        loss_noisy=_mean_over(loss, noisy),
        grad_norm_clean=gn_c,
        grad_norm_noisy=gn_n,
        grad_norm_ratio=gn_c / gn_n,
        sam_grad_norm_clean=sg_c,
        sam_grad_norm_noisy=sg_n,
        sam_grad_norm_ratio=sg_c / sg_n,
        sam_weight_clean=_mean_over(weight, clean),
        sam_weight_noisy=_mean_over(weight, noisy),
        sam_weight_min=jnp.min(weight),
        sam_weight_max=jnp.max(weight),
        jsam_penalty=rho * jnp.mean(jnp.exp(p["log_s"]) * p["J"]),
    )
    out.update(norms)
    return {k: v.astype(X.dtype) for k, v in out.items()}


# ----------------------------------------------------------------------------- one run


class Trajectory(NamedTuple):
    """Recorded metrics of runs.

    Attributes:
      steps: ``(T,)`` the record steps ``0, k, ..., steps``.
      metrics: dict name -> array ``(..., T)`` (leading axes: method, rho, seed for a sweep).
      params: the parameters at the record steps (leading axes as ``metrics``, then T), or
        None unless ``keep_params``.
    """

    steps: np.ndarray
    metrics: dict
    params: Any = None


def _batch(key, i, X, t, mask, batch_size):
    n = X.shape[0]
    if batch_size == 0 or batch_size == n:
        return X, t
    nb = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, i // nb), n)
    idx = jax.lax.dynamic_slice(perm, ((i % nb) * batch_size,), (batch_size,))
    return X[idx], t[idx]


def _direction_fn(model, method):
    kern = _ops(model).kernels[method]
    if method == "gd":
        return lambda p, X, t, rho, lam_last, lam_act: kern(p, X, t)
    if method == "jreg_fixed":
        return lambda p, X, t, rho, lam_last, lam_act: kern(p, X, t, lam_last, lam_act)
    return lambda p, X, t, rho, lam_last, lam_act: kern(p, X, t, rho)


#: The order of the ``lax.switch`` branches of the training kernel (every core method).
METHOD_ORDER = tuple(METHODS)


@partial(jax.jit, static_argnames=("static",))
def _seed_data(keys, mixture, init_scale, static):
    """Training set, initial parameters and SGD key of every seed key (leading seed axis).

    Seed key ``PRNGKey(s)`` is split into (data, init, sgd) keys."""
    model, n, hidden, noise, dtype = static
    dtype = jnp.dtype(dtype)
    ops = _ops(model)

    def one(seed_key):
        k_data, k_init, k_sgd = jax.random.split(seed_key, 3)
        ds = _sample_binary(k_data, mixture, n, noise, dtype)
        return ds, ops.init(k_init, mixture.dim, hidden, init_scale, dtype), k_sgd

    return jax.vmap(one)(keys)


@partial(jax.jit, static_argnames=("static",))
def _train_kernel(params0, X, t, mask, k_sgd, mixture, method_index, rhos, lr, lam_last, lam_act, static):
    """One method (a traced index into ``lax.switch`` over :data:`METHOD_ORDER`) x rhos x seeds.

    ``params0, X, t, mask, k_sgd`` have a leading seed axis; ``rhos, lam_last, lam_act`` have
    shape ``(R,)``; ``lr`` is a traced scalar. Returns (metrics dict of ``(rho, seed, T)``,
    parameters at the record steps ``(rho, seed, T, ...)`` or None). ``static`` fixes only
    shapes and control flow, so every method and every sweep of the same shapes reuse one
    executable. The metrics are computed inside the scan at the record steps (the
    parameters are kept only with ``keep_params``)."""
    model, steps, record_every, record_dense, batch_size, keep_params = static
    branches = [_direction_fn(model, m) for m in METHOD_ORDER]
    # One scan over record blocks: block sizes 0 (the initial state), then the gaps between
    # record steps (1 while dense, then record_every). The metrics graph is traced once.
    sizes = np.diff(_record_steps(steps, record_every, record_dense), prepend=0).astype(np.int32)

    def run(p0, X, t, mask, key, rho, lam_l, lam_a):
        def one_step(i, p):
            Xb, tb = _batch(key, i, X, t, mask, batch_size)
            u = jax.lax.switch(method_index, branches, p, Xb, tb, rho, lam_l, lam_a)
            return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, u)

        def body(carry, size):
            p, i0 = carry
            p = jax.lax.fori_loop(i0, i0 + size, one_step, p)
            ms = record_metrics(model, p, X, t, mask, mixture, rho)
            return (p, i0 + size), (ms, p if keep_params else None)

        _, (ms, ps) = jax.lax.scan(body, (p0, jnp.int32(0)), jnp.asarray(sizes))
        return ms, ps

    over_seed = jax.vmap(run, in_axes=(0, 0, 0, 0, 0, None, None, None))
    return jax.vmap(over_seed, in_axes=(None, None, None, None, None, 0, 0, 0))(
        params0, X, t, mask, k_sgd, rhos, lam_last, lam_act)



# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class SweepResult:
    """A labelled sweep: every metric has axes ``(method, rho, seed, step)``.

    Attributes:
      config: the :class:`SimConfig` that produced it.
      axes: dict axis name -> coordinate values (``method``: names, ``rho``: floats,
        ``seed``: ints, ``step``: record steps).
      metrics: dict metric name -> float array of shape
        ``(len(method), len(rho), len(seed), len(step))``.
      noise_rate: ``(seed,)`` realised noise rate of each seed's training set.
      bayes_acc: population accuracy of the Bayes classifier of the data model.
      version: ``linsam.__version__`` that produced it.
      elapsed_s: wall time of the sweep (compile included), seconds.
      cpu_s: CPU time of this process during the sweep (all threads), seconds.
      params: parameters at record steps (leading axes method, rho, seed, step), if kept.
    """

    config: SimConfig
    axes: dict
    metrics: dict
    noise_rate: np.ndarray
    bayes_acc: float
    version: str = linsam.__version__
    elapsed_s: float = float("nan")
    params: Any = None
    cpu_s: float = float("nan")

    def index(self, axis: str, value) -> int:
        """Position of ``value`` on ``axis`` (rho compared with a tolerance)."""
        coords = self.axes[axis]
        if axis == "rho":
            hits = np.flatnonzero(np.isclose(np.asarray(coords, float), float(value), rtol=1e-9, atol=1e-12))
        else:
            hits = np.flatnonzero(np.asarray(coords) == value)
        if hits.size == 0:
            raise KeyError(f"{value!r} is not on axis {axis!r} (values: {list(coords)})")
        return int(hits[0])

    def sel(self, metric: str, **coords) -> np.ndarray:
        """``metric`` with the given axes fixed by value, e.g. ``sel("test_acc", method="gd", rho=0.1)``;
        the remaining axes keep their order."""
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; recorded: {sorted(self.metrics)}")
        arr = self.metrics[metric]
        idx = [slice(None)] * len(AXES)
        for axis, value in coords.items():
            if axis not in AXES:
                raise KeyError(f"unknown axis {axis!r}; axes: {AXES}")
            idx[AXES.index(axis)] = self.index(axis, value)
        return arr[tuple(idx)]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``results.npz`` (axes + metrics) and ``config.json`` (config, version,
        timing) into ``out_dir``, each atomically (temp file + ``os.replace``)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"metric/{k}": np.asarray(v) for k, v in self.metrics.items()}
        arrays["axis/method"] = np.asarray(self.axes["method"], dtype=str)
        for axis in ("rho", "seed", "step"):
            arrays[f"axis/{axis}"] = np.asarray(self.axes[axis])
        arrays["noise_rate"] = np.asarray(self.noise_rate)
        if self.params is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]:
                arrays["params/" + jax.tree_util.keystr(path)] = np.asarray(leaf)
        _atomic_write(out / "results.npz", lambda fh: np.savez(fh, **arrays))
        info = dict(
            config=self.config.to_dict(),
            linsam_version=self.version,
            elapsed_s=self.elapsed_s,
            cpu_s=self.cpu_s,
            bayes_acc=self.bayes_acc,
            axes=list(AXES),
            metrics=sorted(self.metrics),
        )
        _atomic_write(out / "config.json", lambda fh: fh.write(json.dumps(info, indent=2).encode()))
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "SweepResult":
        """Read a result written by :meth:`save` (parameters are not restored)."""
        out = Path(out_dir)
        with open(out / "config.json") as fh:
            info = json.load(fh)
        with np.load(out / "results.npz") as z:
            metrics = {k[len("metric/"):]: z[k] for k in z.files if k.startswith("metric/")}
            axes = {a: z[f"axis/{a}"] for a in ("method", "rho", "seed", "step")}
            axes["method"] = [str(m) for m in axes["method"]]
            noise_rate = z["noise_rate"]
        return cls(
            config=SimConfig.from_dict(info["config"]),
            axes=axes,
            metrics=metrics,
            noise_rate=noise_rate,
            bayes_acc=float(info["bayes_acc"]),
            version=info["linsam_version"],
            elapsed_s=float(info["elapsed_s"]),
            cpu_s=float(info.get("cpu_s", float("nan"))),
        )


def _atomic_write(path: Path, write) -> None:
    write_atomic(path, write)


# ----------------------------------------------------------------------------- public entry points


def _data_static(config: SimConfig):
    return (config.model, config.n, config.hidden, config.noise, config.dtype)


def _train_static(config: SimConfig, keep_params: bool):
    return (config.model, config.steps, config.record_every, config.record_dense, config.batch_size, bool(keep_params))


def _mixture(config: SimConfig) -> GaussianMixture:
    mixture = config.data.build()
    dtype = jnp.dtype(config.dtype)
    return GaussianMixture(mixture.mu.astype(dtype), mixture.scale.astype(dtype))


def _keys(seeds, size: int | None = None):
    """``PRNGKey(s)`` of every seed; padded to ``size`` by repeating the last (compiled shape)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    if size is not None and len(seeds) < size:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - len(seeds), axis=0)])
    return keys


def training_sets(config: SimConfig, seeds=None):
    """The training sets and initial parameters of the seeds of ``config`` (default: all).

    Returns ``(Dataset, params0)`` with a leading seed axis on every array: exactly what
    :func:`simulate` trains on (the same compiled sampler; per seed, what
    :func:`training_data` and :func:`initial_params` give)."""
    config = config.validate()
    seeds = config.seeds if seeds is None else np.asarray(seeds)
    ds, params0, _ = _seed_data(_keys(seeds), _mixture(config), jnp.asarray(config.init_scale, config.dtype),
                                _data_static(config))
    return ds, params0


def simulate(config: SimConfig, *, keep_params: bool = False, progress: bool | None = None) -> SweepResult:
    r"""Run a whole sweep (methods x rhos x seeds) with one compiled training kernel.

    Args:
      config: the :class:`SimConfig` (validated again here).
      keep_params: also return the parameters at every record step (memory:
        methods x rhos x seeds x records x params; for small runs and tests).
      progress: print one line per seed chunk to stderr (default: when the sweep has more
        than one chunk).

    Returns:
      :class:`SweepResult` with metrics of shape ``(method, rho, seed, step)``.

    Compilation: the training sets and initial parameters are drawn by one compiled
    sampler per (model, n, d, hidden, noise, dtype), outside the training loop; the training
    kernel is ``jit(vmap(vmap(scan)))`` over rhos and seeds with the method a *traced*
    index into ``lax.switch`` over every rule of :data:`linsam.rules.METHODS` and ``lr``,
    ``rho``, ``lam_last``, ``lam_act`` traced, so every method, every seed chunk and every
    sweep of the same shapes (model, n, d, hidden, number of rhos, seeds per chunk, record
    schedule, batch size, dtype) reuse one executable.
    """
    config = config.validate()
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype 'float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    mixture = _mixture(config)
    seeds = config.seeds
    chunk = config.seed_chunk or len(seeds)
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    if progress is None:
        progress = len(chunks) > 1
    rhos = jnp.asarray(config.rhos, dtype)
    ones = jnp.ones_like(rhos)
    lr = jnp.asarray(config.lr, dtype)
    data_static, train_static = _data_static(config), _train_static(config, keep_params)
    t0, c0 = time.perf_counter(), time.process_time()
    outs = []
    for ch in chunks:
        ds, params0, k_sgd = _seed_data(_keys(ch, chunk), mixture, jnp.asarray(config.init_scale, dtype), data_static)
        per_method, per_method_params = [], []
        for method in config.methods:
            scale = rhos if (method == "jreg_fixed" and config.lam_scale_by_rho) else ones
            ms, ps = _train_kernel(params0, ds.X, ds.noisy, ds.mask, k_sgd, mixture,
                                   jnp.asarray(METHOD_ORDER.index(method), jnp.int32), rhos, lr,
                                   config.lam_last * scale, config.lam_act * scale, train_static)
            per_method.append({k: np.asarray(v) for k, v in ms.items()})  # (rho, seed, T)
            if keep_params:
                per_method_params.append(jax.tree_util.tree_map(np.asarray, ps))
        metrics = {k: np.stack([m[k] for m in per_method]) for k in per_method[0]}
        params = jax.tree_util.tree_map(lambda *a: np.stack(a), *per_method_params) if keep_params else None
        outs.append(((metrics, params, np.asarray(ds.rate)), len(ch)))
        if progress:
            done = sum(c for _, c in outs)
            el = time.perf_counter() - t0
            eta = el / done * (len(seeds) - done)
            print(f"[linsam simulate {config.name}] seeds {done}/{len(seeds)}  {el:.1f} s elapsed, ~{eta:.0f} s left",
                  file=sys.stderr, flush=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0

    def cat(get, axis):
        return np.concatenate([np.take(get(r), np.arange(c), axis=axis) for r, c in outs], axis=axis)

    metrics = {k: cat(lambda r, k=k: r[0][k], 2) for k in outs[0][0][0]}
    params = None
    if keep_params:
        params = jax.tree_util.tree_map(
            lambda *leaves: np.concatenate([np.take(l, np.arange(c), axis=2) for l, (_, c) in zip(leaves, outs)], axis=2),
            *[r[1] for r, _ in outs],
        )
    noise_rate = np.concatenate([r[2][:c] for r, c in outs])
    steps = record_steps(config)
    axes = dict(method=list(config.methods), rho=np.asarray(config.rhos, float), seed=seeds, step=steps)
    return SweepResult(
        config=config,
        axes=axes,
        metrics=metrics,
        noise_rate=noise_rate,
        bayes_acc=float(config.data.build().bayes_accuracy()),
        elapsed_s=elapsed,
        cpu_s=cpu,
        params=params,
    )


def record_steps(config: SimConfig) -> np.ndarray:
    """The record steps of ``config``: ``0, 1, ..., record_dense``, then every ``record_every``."""
    return _record_steps(config.steps, config.record_every, config.record_dense)


def _record_steps(steps, record_every, record_dense):
    dense = np.arange(0, record_dense + 1)
    return np.concatenate([dense, np.arange(record_dense + record_every, steps + 1, record_every)])


def run(config: SimConfig, method: str, rho: float, seed: int, *, keep_params: bool = False) -> Trajectory:
    """One run (a single method, rho and seed) of ``config``; metrics of shape ``(T,)``.

    Identical, up to float rounding, to the matching slice of :func:`simulate` on the same
    config (same key derivation)."""
    cfg = config.replace(methods=(method,), rhos=(float(rho),), num_seeds=1, seed_offset=int(seed), seed_chunk=0)
    res = simulate(cfg, keep_params=keep_params, progress=False)
    squeeze = lambda a: a[0, 0, 0]  # noqa: E731
    params = jax.tree_util.tree_map(squeeze, res.params) if keep_params else None
    return Trajectory(res.axes["step"], {k: squeeze(v) for k, v in res.metrics.items()}, params)


def training_data(config: SimConfig, seed: int) -> Dataset:
    """The exact training set a run of ``config`` with ``seed`` trains on."""
    config = config.validate()
    dtype = jnp.dtype(config.dtype)
    mixture = config.data.build()
    mixture = GaussianMixture(mixture.mu.astype(dtype), mixture.scale.astype(dtype))
    k_data, _, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    ds = _sample_binary(k_data, mixture, config.n, config.noise, dtype)
    return ds._replace(rate=float(np.mean(np.asarray(ds.mask))))


def mean_classifier_accuracy(config: SimConfig, seeds=None) -> np.ndarray:
    r"""Population accuracy of the equal-weight mean classifier of each seed's training set,

    .. math::  \hat w = \frac1n\sum_i \tilde t_i x_i \quad(\text{noisy labels}),

    the first GD step from zero initialisation and the large-rho limit of 1-SAM's direction
    in the linear model: a reference line for every regime. Shape ``(len(seeds),)``
    (default: the config's seeds)."""
    config = config.validate()
    mixture = config.data.build()
    out = []
    for seed in config.seeds if seeds is None else seeds:
        ds = training_data(config, int(seed))
        w = ds.noisy @ ds.X / config.n
        out.append(float(_population_accuracy(mixture.mu.astype(w.dtype), mixture.scale.astype(w.dtype), w)))
    return np.asarray(out)


def initial_params(config: SimConfig, seed: int):
    """The initial parameters of a run of ``config`` with ``seed``."""
    config = config.validate()
    _, k_init, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    return _ops(config.model).init(k_init, config.data.d, config.hidden, float(config.init_scale), jnp.dtype(config.dtype))
