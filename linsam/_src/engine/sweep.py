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

from linsam._src.data import (Dataset, GaussianMixture, MulticlassMixture, _population_accuracy, _sample_binary,
                              _sample_multiclass_spec, multiclass_mixture, sampled_multiclass_accuracy)
from linsam._src.engine import linear, scan
from linsam._src.engine.config import SimConfig, method_value, model_of, trains_with_rho
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


def record_steps(config: SimConfig) -> np.ndarray:
    """The record steps of ``config``: ``0, 1, ..., record_dense``, then every ``record_every``."""
    return _record_steps(config.steps, config.record_every, config.record_dense)


def _record_steps(steps, record_every, record_dense):
    dense = np.arange(0, record_dense + 1)
    return np.concatenate([dense, np.arange(record_dense + record_every, steps + 1, record_every)])


def _record_sizes(config: SimConfig) -> tuple:
    """Steps between records: 0 (the initial state), then the gaps."""
    return tuple(int(x) for x in np.diff(record_steps(config), prepend=0))


# ----------------------------------------------------------------------------- data


def _multiclass(config: SimConfig) -> MulticlassMixture:
    """``model = "softmax"``: the K-class mixture of ``config.data`` (orthogonal means ``mean_norm e_k``)."""
    d = config.data
    return multiclass_mixture(d.d, int(config.num_classes), d.mean_norm, d.sigma)


def _bayes_accuracy(config: SimConfig) -> float:
    """Bayes accuracy of the data model; K-class: argmax_k mu_k . x (equal-norm means, isotropic noise)
    on a fixed sample of 200,000 clean points (standard error <= 0.0011; no closed form for K > 2)."""
    if config.model != "softmax":
        return float(config.data.build().bayes_accuracy())
    mix = _multiclass(config)
    return float(sampled_multiclass_accuracy(jax.random.PRNGKey(TEST_KEY), mix, mix.means, 200_000))


def _mixture(config: SimConfig) -> GaussianMixture:
    dtype = jnp.dtype(config.dtype)
    if config.model == "softmax":
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), _multiclass(config))
    mixture = config.data.build()
    if not isinstance(mixture, GaussianMixture):  # XorMixture: every field an array
        return jax.tree_util.tree_map(lambda a: a.astype(dtype), mixture)
    mix = None if mixture.norm_mix is None else mixture.norm_mix.astype(dtype)
    return GaussianMixture(mixture.mu.astype(dtype), mixture.scale.astype(dtype), mix)


def _keys(seeds, size: int | None = None):
    """``PRNGKey(s)`` of every seed; padded to ``size`` by repeating the last (compiled shape)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    if size is not None and len(seeds) < size:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], size - len(seeds), axis=0)])
    return keys


def _sample_of(model, key, mixture, n, noise, dtype):
    """Training sample: K-class labels for the softmax model, +-1 labels otherwise."""
    if isinstance(mixture, MulticlassMixture):
        return _sample_multiclass_spec(key, mixture, n, noise, dtype)
    return _sample_binary(key, mixture, n, noise, dtype)


@partial(jax.jit, static_argnames=("model", "n", "noise", "dtype"))
def _seed_data(keys, mixture, init_scale, *, model, n, noise, dtype):
    """Training set, initial parameters and SGD key of every seed key (leading seed axis)."""
    dtype = jnp.dtype(dtype)

    def one(seed_key):
        k_data, k_init, k_sgd = jax.random.split(seed_key, 3)
        ds = _sample_of(model, k_data, mixture, n, noise, dtype)
        return ds, model.init(k_init, mixture.dim, scale=init_scale, dtype=dtype), k_sgd

    return jax.vmap(one)(keys)


#: The test sample of seed ``s`` (nonlinear models, XOR data) is drawn with key
#: ``fold_in(PRNGKey(s), TEST_KEY)``: the training keys ``split(PRNGKey(s), 3)`` are unchanged.
TEST_KEY = 0x7E57


def uses_test_sample(config: SimConfig) -> bool:
    """Whether ``test_acc`` is measured on a clean test sample of ``config.test_size`` points per
    seed: the model has no end-to-end linear map (the MLP) or the data no closed-form population
    accuracy (XOR, and the K-class softmax model: no closed form for K > 2). Otherwise it is the
    exact population accuracy."""
    if config.model == "softmax":
        return True
    return model_of(config).end_to_end is None or not isinstance(config.data.build(), GaussianMixture)


@partial(jax.jit, static_argnames=("size", "dtype"))
def _test_samples(keys, mixture, *, size, dtype):
    """Clean test samples ``(X_test (S, m, d), t_test (S, m))`` of every seed key."""
    return jax.vmap(lambda k: mixture._sample(jax.random.fold_in(k, TEST_KEY), size, jnp.dtype(dtype)))(keys)


#: The validation sample of seed ``s`` is drawn with key ``fold_in(PRNGKey(s), VAL_KEY)``: from the
#: training distribution with the same label noise, disjoint from the training draw.
VAL_KEY = 0x7A1


@partial(jax.jit, static_argnames=("model", "size", "noise", "dtype"))
def _val_samples(keys, mixture, *, model, size, noise, dtype):
    """Validation samples ``(X_val (S, m, d), noisy t_val (S, m))`` of every seed key: the training
    distribution *with its label noise* (the labels a user has), key ``fold_in(k, VAL_KEY)``."""
    def one(k):
        ds = _sample_of(model, jax.random.fold_in(k, VAL_KEY), mixture, size, noise, jnp.dtype(dtype))
        return ds.X, ds.noisy

    return jax.vmap(one)(keys)


def validation_sample(config: SimConfig, seed: int) -> Dataset:
    """The validation sample of a run of ``config`` with ``seed`` (:attr:`SimConfig.val_size`
    points, noisy labels in ``noisy``, clean ones in ``clean``): ``val_acc`` is the accuracy on
    ``noisy``. Never trained on."""
    config = config.validate()
    k = jax.random.fold_in(jax.random.PRNGKey(seed), VAL_KEY)
    ds = _sample_of(model_of(config), k, _mixture(config), config.validation_size, config.noise,
                    jnp.dtype(config.dtype))
    return ds._replace(rate=float(np.mean(np.asarray(ds.mask))))


def _val_data(config, keys, mixture):
    return _val_samples(keys, mixture, model=model_of(config), size=config.validation_size, noise=config.noise,
                        dtype=config.dtype)


def held_out_sample(config: SimConfig, seed: int):
    """The clean test sample ``(X_test, t_test)`` on which a run of ``config`` with ``seed`` measures
    ``test_acc`` (where :func:`uses_test_sample`)."""
    config = config.validate()
    X, t = _test_samples(_keys([seed]), _mixture(config), size=config.test_size, dtype=config.dtype)
    return X[0], t[0]


def _data(config, keys, mixture):
    return _seed_data(keys, mixture, jnp.asarray(config.init_scale, config.dtype), model=model_of(config),
                      n=config.n, noise=config.noise, dtype=config.dtype)


def training_sets(config: SimConfig, seeds=None):
    """The training sets and initial parameters of the seeds of ``config`` (default: all).

    Returns ``(Dataset, params0)`` with a leading seed axis on every array: exactly what
    :func:`simulate` trains on."""
    config = config.validate()
    seeds = config.seeds if seeds is None else np.asarray(seeds)
    ds, params0, _ = _data(config, _keys(seeds), _mixture(config))
    return ds, params0


def training_data(config: SimConfig, seed: int) -> Dataset:
    """The exact training set a run of ``config`` with ``seed`` trains on."""
    config = config.validate()
    k_data, _, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    ds = _sample_of(model_of(config), k_data, _mixture(config), config.n, config.noise, jnp.dtype(config.dtype))
    return ds._replace(rate=float(np.mean(np.asarray(ds.mask))))


def initial_params(config: SimConfig, seed: int):
    """The initial parameters of a run of ``config`` with ``seed`` (``model.init``)."""
    config = config.validate()
    _, k_init, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
    return model_of(config).init(k_init, config.data.d, scale=float(config.init_scale), dtype=jnp.dtype(config.dtype))


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


def backend_of(config: SimConfig, name: str) -> str:
    """``"linear"`` where the linear backend applies to method ``name`` of ``config``, else ``"scan"``."""
    full_batch = config.batch_size in (0, config.n)
    ok = full_batch and not uses_test_sample(config) and linear.kind(model_of(config), METHOD_CLASSES[name]) is not None
    return "linear" if ok else "scan"


def _trains_once(config, name, backend):
    """The training of ``name`` does not depend on rho (for the linear backend: its kernel is GD's)."""
    if backend == "linear":
        return linear.kind(model_of(config), METHOD_CLASSES[name]) in linear.ONCE_KINDS
    return not trains_with_rho(config, name)


def _num_params(config: SimConfig) -> int:
    d = config.data.d
    if config.model == "mlp":
        h1, h2 = config.hidden, config.hidden2
        return h1 * d + (h2 * h1 + h2 if h2 else h1)
    if config.model == "softmax":
        return config.num_classes * d
    return d if config.model == "logreg" else config.hidden * (d + 1)


def estimate_memory(config: SimConfig, keep_params: bool = False) -> dict:
    """Bytes a sweep of ``config`` needs: per seed chunk on the device (data, Gram matrices,
    recorded metrics and parameters) and on the host (every seed's metrics and parameters).
    An estimate (within a small factor), for refusing a sweep that cannot fit before any work."""
    isz = np.dtype(config.dtype).itemsize
    S = config.num_seeds
    chunk = min(config.seed_chunk or S, S)
    n, d, T = config.n, config.data.d, len(record_steps(config))
    names = DLN_METRICS if config.model in ("dln", "mlp") else METRICS
    P = len(config.methods) * len(config.rhos)
    per_seed_data = (2 * n * d + 2 * n * n + 4 * n) * isz
    if uses_test_sample(config):
        per_seed_data += config.test_size * (d + 1) * isz
    per_seed_data += config.validation_size * (d + 1 + n) * isz  # the sample, and K_v (dual form)
    per_seed_out = P * T * len(names) * isz + (P * T * _num_params(config) * isz if keep_params else 0)
    per_seed_work = 4 * len(config.rhos) * (n + _num_params(config)) * isz * max(len(config.methods), 1)
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


def check_memory(config: SimConfig, keep_params: bool = False) -> None:
    """Refuse (ValueError, with the estimate) a sweep that cannot fit in memory."""
    est = estimate_memory(config, keep_params)
    avail = _available_memory()
    need = max(est["host"], est["device"])
    if need > 0.8 * avail:
        gib = lambda b: f"{b / 2**30:.3g} GiB"  # noqa: E731
        raise ValueError(
            f"this sweep needs about {gib(need)} of memory ({config.num_seeds} seeds, {est['chunk']} per chunk: "
            f"{gib(est['device'])} per chunk on the device, {gib(est['host'])} of results on the host), more than "
            f"80% of the {gib(avail)} available: lower num_seeds (or set seed_chunk to bound the per-chunk part)")


# ----------------------------------------------------------------------------- the engine


def simulate(config: SimConfig, *, keep_params: bool = False, progress: bool | None = None, backend: str = "auto",
             form: str = "auto", devices=None, precision: str | None = "highest", seed_block: int | None = None
             ) -> SweepResult:
    r"""Run a whole sweep (methods x rhos x seeds): the one engine.

    Args:
      config: the :class:`SimConfig` (validated again here, and its memory estimated).
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

    check_method(backend, BACKENDS, "backend")
    check_method(form, linear.FORMS, "form")
    check_method(precision, linear.PRECISIONS, "precision")
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype 'float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    check_memory(config, keep_params)
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
    mixture = _mixture(config)
    needs_test = uses_test_sample(config)
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    if progress is None:
        progress = len(chunks) > 1
    t0, c0 = time.perf_counter(), time.process_time()
    parts = []
    for ch in chunks:
        ds, params0, k_sgd = _data(config, _keys(ch, chunk), mixture)
        test = _test_samples(_keys(ch, chunk), mixture, size=config.test_size, dtype=config.dtype) if needs_test \
            else None
        val = _val_data(config, _keys(ch, chunk), mixture)
        ms, ps = _train_chunk(config, backends, ds, params0, k_sgd, mixture, keep_params, form, mesh, precision,
                              seed_block, test=test, val=val)
        parts.append((ms, ps, np.asarray(ds.rate), len(ch)))
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
                       bayes_acc=_bayes_accuracy(config), elapsed_s=elapsed, cpu_s=cpu,
                       params=params, backend=backends)


def _train_chunk(config, backends, ds, params0, k_sgd, mixture, keep_params, form, mesh, precision, seed_block,
                 test=None, val=None):
    """Every method on one chunk of seeds -> metrics name -> ``(rule, rho, seed, T)``, params
    (``test``: the chunk's clean test samples, or None for the population accuracy; ``val``: the
    chunk's validation samples ``(X_val, noisy t_val)``)."""
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
        fn = scan.program(model_of(config), _record_sizes(config), config.batch_size, bool(keep_params), mesh)
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
