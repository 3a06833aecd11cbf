r"""The one sweep engine: :func:`simulate` trains methods x rhos x seeds of a :class:`SimConfig`.

A run trains a binary model (``config.model``: :class:`linsam.models.LogReg`,
:class:`~linsam.models.DLN` or :class:`~linsam.models.MLP`) with a method value (:mod:`linsam.rules`), full-batch GD
(``batch_size = 0``) or mini-batch SGD, on a binary Gaussian mixture with label noise, or the
K-class linear softmax model (``model = "softmax"``, :class:`~linsam.models.Softmax`) on a
K-class mixture (:func:`linsam.data.multiclass_mixture`) with symmetric or CIFAR-10 asymmetric
noise (generic backend; K-class metrics, :func:`linsam._src.engine.metrics.multiclass_metrics`;
``test_acc`` on the held-out sample); the learner sees the noisy labels. Metrics (:func:`linsam._src.engine.metrics.record_metrics`) are
computed only at the record steps (:func:`record_steps`), on the full training set; the test
accuracy is the *population* accuracy of the end-to-end linear map; for a model without one
(:class:`~linsam.models.MLP`) or data without a closed form (``data.kind = "xor"``) it is the
accuracy on a fixed clean test sample of ``config.test_size`` points drawn per seed
(:func:`held_out_sample`, key ``fold_in(PRNGKey(seed), TEST_KEY)``).

**Any model.** ``config.model = "generic"`` runs the user's binary model value,
``simulate(config, model=Generic(...))`` (a Flax module's apply and init, or any pytree model;
:func:`linsam._src.engine.config.model_of` checks it), on the generic backend with ``test_acc``
on the held-out sample; the config keeps describing the data, noise and steps.

**Data.** Every draw (training sets, initial parameters, SGD keys, test and validation samples)
is made by :func:`linsam._src.data.draw_seeds`, asked once per chunk of seeds; the one-seed views
below derive the same keys.

**Backends, chosen per method.** The linear backend (:mod:`linsam._src.engine.linear`: GEMMs
or the Gram matrix, metrics from the carried logits) where the model is linear, training is
full batch and the model's closed form of the method is a per-example reweighting; the
generic ``lax.scan`` backend (:mod:`linsam._src.engine.scan`) otherwise. Both give the same
numbers up to float rounding (tested in float64).

**rho.** A method whose training does not use rho (``gd``, ``linear_loss``, and for logreg
``jsam``/``jreg``, whose closed forms are GD's; ``jreg_fixed`` unless ``lam_scale_by_rho``)
trains once per seed; its rho-dependent metrics are evaluated at every rho from that one
trajectory. A control's knob (``shifted_loss``'s C, ``large_step``'s multiplier,
``weight_decay``'s lambda) rides on the rho axis: at grid value rho it is
``config.knob_scale[name] * rho`` (:func:`linsam._src.engine.config.method_value`), so the
rho* selection of the regime map tunes it on the selection seeds exactly like 1-SAM's rho.

**Randomness.** Seed ``s`` gives ``PRNGKey(s)``, split into (data, init, sgd) keys: every
method and rho of a seed sees the same sample and start (paired comparisons).

**Devices.** The seed axis is split over every JAX device (:mod:`linsam._src.engine.shard`).
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src import data
from linsam._src.data import TEST_KEY, VAL_KEY, Dataset, GaussianMixture, _population_accuracy
from linsam._src.engine import linear, scan
from linsam._src.engine.config import (SimConfig, draw_plan, method_value, model_of, record_steps, trains_with_rho,
                                       uses_test_sample)
from linsam._src.engine.metrics import DLN_METRICS, METRICS
from linsam._src.engine.results import AXES, SweepResult
from linsam._src.engine.shard import run_mesh, to_host
from linsam._src.rules import METHOD_CLASSES

BACKENDS = ("auto", "linear", "scan")


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


def _record_sizes(config: SimConfig) -> tuple:
    """Steps between records: 0 (the initial state), then the gaps."""
    return tuple(int(x) for x in np.diff(record_steps(config), prepend=0))


# ----------------------------------------------------------------------------- data: one seed's draws
# (the drawing lives in linsam._src.data; these are its views through a config)


def validation_sample(config: SimConfig, seed: int) -> Dataset:
    """The validation sample of a run of ``config`` with ``seed`` (:attr:`SimConfig.val_size`
    points, noisy labels in ``noisy``, clean ones in ``clean``): ``val_acc`` is the accuracy on
    ``noisy``. Never trained on."""
    return data.validation_sample(draw_plan(config.validate()), seed)


def held_out_sample(config: SimConfig, seed: int):
    """The clean test sample ``(X_test, t_test)`` on which a run of ``config`` with ``seed`` measures
    ``test_acc`` (where :func:`uses_test_sample`)."""
    config = config.validate()
    return data.test_sample(draw_plan(config), seed, config.test_size)


def training_sets(config: SimConfig, seeds=None, *, model=None):
    """The training sets and initial parameters of the seeds of ``config`` (default: all).

    Returns ``(Dataset, params0)`` with a leading seed axis on every array: exactly what
    :func:`simulate` trains on (``model``: as in :func:`simulate`)."""
    config = config.validate()
    model = model_of(config, model)
    d = data.draw_seeds(draw_plan(config, model), model, config.seeds if seeds is None else np.asarray(seeds))
    return d.train, d.params0


def training_data(config: SimConfig, seed: int) -> Dataset:
    """The exact training set a run of ``config`` with ``seed`` trains on."""
    return data.training_sample(draw_plan(config.validate()), seed)


def initial_params(config: SimConfig, seed: int, *, model=None):
    """The initial parameters of a run of ``config`` with ``seed`` (``model.init``; ``model``: as
    in :func:`simulate`)."""
    config = config.validate()
    model = model_of(config, model)
    return data.initial_params(draw_plan(config, model), model, seed)


def mean_classifier_accuracy(config: SimConfig, seeds=None) -> np.ndarray:
    r"""Population accuracy of the equal-weight mean classifier of each seed's training set,

    .. math::  \hat w = \frac1n\sum_i \tilde t_i x_i \quad(\text{noisy labels}),

    the first GD step from zero initialisation and the large-rho limit of 1-SAM's direction
    in the linear model: a reference line for every regime. Shape ``(len(seeds),)``
    (default: the config's seeds)."""
    config = config.validate()
    mixture = config.data.build()
    if config.model == "softmax" or not isinstance(mixture, GaussianMixture):
        raise ValueError(f"data.kind {config.data.kind!r}: the mean classifier's population accuracy is defined for the "
                         "Gaussian mixtures only (every linear classifier scores 1/2 on XOR)")
    out = []
    for seed in config.seeds if seeds is None else seeds:
        ds = training_data(config, int(seed))
        w = ds.noisy @ ds.X / config.n
        out.append(float(_population_accuracy(mixture.mu.astype(w.dtype), mixture.scale.astype(w.dtype), w)))
    return np.asarray(out)


# ----------------------------------------------------------------------------- planning


def backend_of(config: SimConfig, name: str, model=None) -> str:
    """``"linear"`` where the linear backend applies to method ``name`` of ``config``, else ``"scan"``."""
    if config.model == "generic":
        return "scan"
    full_batch = config.batch_size in (0, config.n)
    ok = full_batch and not uses_test_sample(config) and linear.kind(model_of(config), METHOD_CLASSES[name]) is not None
    return "linear" if ok else "scan"


def _trains_once(config, name, backend):
    """The training of ``name`` does not depend on rho (for the linear backend: its kernel is GD's)."""
    if backend == "linear":
        return linear.kind(model_of(config), METHOD_CLASSES[name]) in linear.ONCE_KINDS
    return not trains_with_rho(config, name)


def _num_params(config: SimConfig, model=None) -> int:
    d = config.data.d
    if config.model == "generic":  # shapes only: model.init is traced abstractly, nothing is computed
        shapes = jax.eval_shape(lambda k: model_of(config, model).init(k, d, scale=1.0, dtype=jnp.dtype(config.dtype)),
                                jax.random.PRNGKey(0))
        return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes)))
    if config.model == "mlp":
        h1, h2 = config.hidden, config.hidden2
        return h1 * d + (h2 * h1 + h2 if h2 else h1)
    if config.model == "softmax":
        return config.num_classes * d
    return d if config.model == "logreg" else config.hidden * (d + 1)


def estimate_memory(config: SimConfig, keep_params: bool = False, *, model=None) -> dict:
    """Bytes a sweep of ``config`` needs: per seed chunk on the device (data, Gram matrices,
    recorded metrics and parameters) and on the host (every seed's metrics and parameters).
    An estimate (within a small factor), for refusing a sweep that cannot fit before any work
    (``model``: as in :func:`simulate`)."""
    isz = np.dtype(config.dtype).itemsize
    S = config.num_seeds
    chunk = min(config.seed_chunk or S, S)
    n, d, T = config.n, config.data.d, len(record_steps(config))
    names = DLN_METRICS if config.model in ("dln", "mlp") else METRICS
    P = len(config.methods) * len(config.rhos)
    num_params = _num_params(config, model)
    per_seed_data = (2 * n * d + 2 * n * n + 4 * n) * isz
    if uses_test_sample(config, model):
        per_seed_data += config.test_size * (d + 1) * isz
    per_seed_data += config.validation_size * (d + 1 + n) * isz  # the sample, and K_v (dual form)
    per_seed_out = P * T * len(names) * isz + (P * T * num_params * isz if keep_params else 0)
    per_seed_work = 4 * len(config.rhos) * (n + num_params) * isz * max(len(config.methods), 1)
    device = chunk * (per_seed_data + 2 * per_seed_out + per_seed_work)
    host = S * per_seed_out + device
    return dict(device=int(device), host=int(host), chunk=int(chunk))


def _available_memory() -> int:
    """Physical memory of this host (bytes); the device's limit where JAX reports one."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 2**63
    stats = jax.local_devices()[0].memory_stats() or {}  # this process's device (several hosts: devices()[0] is not)
    limit = stats.get("bytes_limit")
    return int(min(total, limit)) if limit else int(total)


def check_memory(config: SimConfig, keep_params: bool = False, *, model=None) -> None:
    """Refuse (ValueError, with the estimate) a sweep that cannot fit in memory."""
    est = estimate_memory(config, keep_params, model=model)
    avail = _available_memory()
    need = max(est["host"], est["device"])
    if need > 0.8 * avail:
        gib = lambda b: f"{b / 2**30:.3g} GiB"  # noqa: E731
        raise ValueError(
            f"this sweep needs about {gib(need)} of memory ({config.num_seeds} seeds, {est['chunk']} per chunk: "
            f"{gib(est['device'])} per chunk on the device, {gib(est['host'])} of results on the host), more than "
            f"80% of the {gib(avail)} available: lower num_seeds (or set seed_chunk to bound the per-chunk part)")


# ----------------------------------------------------------------------------- the engine


def simulate(config: SimConfig, *, model=None, keep_params: bool = False, progress: bool | None = None, backend: str = "auto",
             form: str = "auto", devices=None, precision: str | None = "highest", seed_block: int | None = None
             ) -> SweepResult:
    r"""Run a whole sweep (methods x rhos x seeds): the one engine.

    Args:
      config: the :class:`SimConfig` (validated again here, and its memory estimated): the data,
        noise, methods, rhos, seeds and steps, and the model's name.
      model: only for ``config.model = "generic"``, and then required: the model value, a
        :class:`linsam.models.Generic` (e.g. a Flax module's ``apply`` and ``init``, or any
        pytree model) with an ``init(key, d, *, scale, dtype)`` and binary output
        (``num_classes`` None). It is an argument, not a config field, because a config is
        static data: hashed into the results' content hash, written to ``config.json`` and the
        netCDF attributes, read back by :meth:`SweepResult.load` and the command line; a callable
        survives none of these. The config records ``model = "generic"``, saying the model came
        from code. It runs on the generic scan backend, ``test_acc`` on the clean held-out
        sample, ``val_acc`` on the noisy validation sample, like the MLP. Refused (ValueError
        naming ``model``): a model for a named config model, a generic config without one, a
        model that is not a ``Generic``, without ``init``, or with K classes; and
        ``backend="linear"``.
      keep_params: also return the parameters at every record step (memory:
        methods x rhos x seeds x records x params; for small runs and tests).
      progress: print one line per seed chunk to stderr (default: when the sweep has more
        than one chunk).
      backend: ``"auto"`` (per method: linear where it applies, else scan), ``"linear"``
        (refused where it does not apply) or ``"scan"`` (the generic backend for everything).
      form: the linear backend's form: ``"auto"`` (fewer flops), ``"primal"`` or ``"dual"``.
      devices: devices to shard the seeds over (default: all of ``jax.devices()``, at most one
        per seed of a chunk; the command line exposes one CPU device per core,
        :func:`linsam._src.engine.shard.use_cpu_cores`).
      precision: matmul precision of the linear backend (``"highest"``: true float32 products
        also on GPUs/TPUs whose default is TF32/bfloat16; no effect on CPU).
      seed_block: linear backend: seeds vmapped together inside one device (default:
        :func:`linsam._src.engine.linear.auto_seed_block`).

    Returns:
      :class:`SweepResult` with metrics of shape ``(rule, rho, seed, step)``.
    """
    config = config.validate()
    from linsam._src.validate import check_method

    model = model_of(config, model)
    check_method(backend, BACKENDS, "backend")
    check_method(form, linear.FORMS, "form")
    check_method(precision, linear.PRECISIONS, "precision")
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype 'float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    if backend == "linear" and config.model == "generic":
        raise ValueError("backend 'linear' needs a built-in linear model (closed forms that reweight examples); "
                         "model=Generic(...) runs on the generic backend: use backend='auto' or 'scan'")
    check_memory(config, keep_params, model=model)
    backends = {m: backend_of(config, m) for m in config.methods}
    if backend == "linear":
        bad = [m for m, b in backends.items() if b != "linear"]
        if bad:
            raise ValueError(f"backend 'linear' does not apply to methods {bad} of this config (it needs a linear "
                             "model, full batch, and a closed form that reweights examples); use backend='auto'")
    elif backend == "scan":
        backends = {m: "scan" for m in config.methods}
    seeds = config.seeds
    chunk = config.seed_chunk or len(seeds)
    if devices is None and jax.process_count() == 1:  # no device repeats a padded seed's work
        devices = jax.devices()[: max(1, min(chunk, jax.device_count()))]
    mesh = run_mesh(devices)
    plan = draw_plan(config, model)
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    if progress is None:
        progress = len(chunks) > 1
    t0, c0 = time.perf_counter(), time.process_time()
    parts = []
    for ch in chunks:
        draws = data.draw_seeds(plan, model, ch, chunk)  # everything the chunk's seeds draw, asked once
        ms, ps = _train_chunk(config, model, backends, draws, keep_params, form, mesh, precision, seed_block)
        parts.append((ms, ps, np.asarray(draws.train.rate), len(ch)))
        if progress:
            done = sum(p[3] for p in parts)
            el = time.perf_counter() - t0
            print(f"[linsam simulate {config.name}] seeds {done}/{len(seeds)}  {el:.1f} s elapsed, "
                  f"~{el / done * (len(seeds) - done):.0f} s left", file=sys.stderr, flush=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0

    def cat(arrays):  # (rule, rho, seed-chunk, ...) -> seeds concatenated, padding cut
        return np.concatenate([a[:, :, :c] for a, c in arrays], axis=2)

    metrics = {k: cat([(p[0][k], p[3]) for p in parts]) for k in parts[0][0]}
    params = None
    if keep_params:
        params = jax.tree_util.tree_map(lambda *leaves: cat(list(zip(leaves, [p[3] for p in parts]))),
                                        *[p[1] for p in parts])
    noise_rate = np.concatenate([p[2][: p[3]] for p in parts])
    axes = dict(rule=list(config.methods), rho=np.asarray(config.rhos, float), seed=seeds, step=record_steps(config))
    return SweepResult(config=config, axes=axes, metrics=metrics, noise_rate=noise_rate,
                       bayes_acc=data.bayes_accuracy(plan), elapsed_s=elapsed, cpu_s=cpu,
                       params=params, backend=backends)


def _train_chunk(config, model, backends, draws, keep_params, form, mesh, precision, seed_block):
    """Every method on one chunk of seeds (``draws``: :class:`linsam._src.data.SeedDraws`; its
    ``test`` is None where the population accuracy is exact) -> metrics name ->
    ``(rule, rho, seed, T)``, params."""
    ds, params0, k_sgd, test, val, mixture = draws
    R = len(config.rhos)
    rhos = np.asarray(config.rhos, float)
    out = {}
    lin = [m for m in config.methods if backends[m] == "linear"]
    if lin:
        out.update(_linear_methods(config, lin, ds, params0, mixture, keep_params, form, mesh, precision, seed_block,
                                   val))
    dt = jnp.dtype(config.dtype)
    for m in config.methods:
        if backends[m] != "scan":
            continue
        once = _trains_once(config, m, "scan")
        train_rhos = rhos[:1] if once else rhos
        metric_rhos = rhos[None, :] if once else rhos[:, None]
        value = method_value(config, m, jnp.asarray(train_rhos, dt))
        if once:  # no leaf depends on rho: give each leaf a run axis of length 1
            value = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dt)[None], value)
        fn = scan.program(model, _record_sizes(config), config.batch_size, bool(keep_params), mesh)
        # with a test sample the mixture is not read: pass None, so one compilation serves every data kind
        ms, ps = fn(params0, ds.X, ds.noisy, ds.mask, k_sgd, value, jnp.asarray(metric_rhos, dt),
                    mixture if test is None else None, jnp.asarray(config.lr, dt), test, val)
        # (S, Rt, T, Q) -> (rho, S, T): once: Rt = 1, Q = rhos; else Rt = rhos, Q = 1
        ms = {k: np.moveaxis(to_host(v)[:, 0], -1, 0) if once else np.moveaxis(to_host(v)[..., 0], 1, 0)
              for k, v in ms.items()}
        if keep_params:
            ps = jax.tree_util.tree_map(lambda a: np.moveaxis(to_host(a), 1, 0), ps)  # (Rt, S, T, ...)
            if once:
                ps = jax.tree_util.tree_map(lambda a: np.broadcast_to(a, (R,) + a.shape[1:]), ps)
        out[m] = (ms, ps)
    metrics = {k: np.stack([out[m][0][k] for m in config.methods]) for k in out[config.methods[0]][0]}
    params = None
    if keep_params:
        params = jax.tree_util.tree_map(lambda *a: np.stack(a), *[out[m][1] for m in config.methods])
    return metrics, params


def _linear_methods(config, names, ds, params0, mixture, keep_params, form, mesh, precision, seed_block, val):
    """The linear backend for ``names`` on one chunk: {name: (metrics (rho, S, T), weights)}."""
    model = model_of(config)
    dt = jnp.dtype(config.dtype)
    rhos = [float(r) for r in config.rhos]
    # runs: one per seed for a GD-kernel method, one per rho otherwise; the recorded pairs
    # (method, rho) each read one run at one radius
    run_par, pair_run, pair_rho = [], [], []
    for m in names:
        k = linear.kind(model, METHOD_CLASSES[m])
        if _trains_once(config, m, "linear"):
            run_par.append(linear.run_parameters(k, method_value(config, m, 0.0)))
            pair_run += [len(run_par) - 1] * len(rhos)
        else:
            pair_run += list(range(len(run_par), len(run_par) + len(rhos)))
            run_par += [linear.run_parameters(k, method_value(config, m, r)) for r in rhos]
        pair_rho += rhos
    runs = linear.Runs(*(jnp.asarray(col, dt) for col in zip(*run_par)))
    S, n, d = ds.X.shape
    R = len(run_par)
    if form == "auto":
        form = linear.choose_form(n, d, R, config.record_every)
    num_dev = int(mesh.devices.size)
    if seed_block is None:
        seed_block = linear.auto_seed_block(-(-S // num_dev), n, d, dt.itemsize, form, mesh.devices.flat[0].platform)
    scale = np.asarray(config.data.build().scale)
    isotropic = bool(np.all(scale == scale[0]))
    fn = linear.program(model, form, _record_sizes(config), bool(keep_params), int(seed_block), precision, mesh,
                        isotropic)
    ms, Ws = fn(ds.X, linear.transpose(ds.X), ds.noisy, ds.mask, params0, val[0], val[1], runs,
                jnp.asarray(pair_run, jnp.int32), jnp.asarray(pair_rho, dt), mixture.mu, mixture.scale,
                jnp.asarray(config.lr, dt))
    ms = {k: to_host(v) for k, v in ms.items()}  # (S, P, T)
    Ws = to_host(Ws) if keep_params else None  # (S, R, T, d)
    out = {}
    for i, m in enumerate(names):
        sl = slice(i * len(rhos), (i + 1) * len(rhos))
        mm = {k: np.moveaxis(v[:, sl], 1, 0) for k, v in ms.items()}
        ps = None
        if keep_params:
            runs = np.asarray(pair_run[sl])
            ps = np.moveaxis(Ws[:, runs], 1, 0)
        out[m] = (mm, ps)
    return out


def run(config: SimConfig, method: str, rho: float, seed: int, *, keep_params: bool = False, **kwargs) -> Trajectory:
    """One run (a single method, rho and seed) of ``config``; metrics of shape ``(T,)``.

    Identical, up to float rounding, to the matching slice of :func:`simulate` on the same
    config (same key derivation). ``kwargs`` go to :func:`simulate` (e.g. ``backend``)."""
    cfg = config.replace(methods=(method,), rhos=(float(rho),), num_seeds=1, seed_offset=int(seed), seed_chunk=0)
    res = simulate(cfg, keep_params=keep_params, progress=False, **kwargs)
    squeeze = lambda a: a[0, 0, 0]  # noqa: E731
    params = jax.tree_util.tree_map(squeeze, res.params) if keep_params else None
    return Trajectory(res.axes["step"], {k: squeeze(v) for k, v in res.metrics.items()}, params)


__all__ = ["AXES", "BACKENDS", "SweepResult", "Trajectory", "backend_of", "check_memory", "estimate_memory",
           "initial_params", "mean_classifier_accuracy", "record_steps", "run", "simulate", "held_out_sample",
           "training_data", "training_sets", "uses_test_sample", "validation_sample", "TEST_KEY", "VAL_KEY"]
