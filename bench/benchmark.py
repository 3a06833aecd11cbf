r"""``python -m bench`` / ``linsam bench``: the engine's speed against this machine's own limits.

Everything is measured in one process, through :func:`linsam.simulate.simulate` (the one
engine), in this order:

1. machine limits: float64 / float32 GEMM throughput (JAX and NumPy, best of both) and
   memory bandwidth from a large copy;
2. the **default workload** (``linsam/configs/default.toml`` restricted to GD + 1-SAM at
   rho 4 and 12, 4 seeds: n = 500, d = 2000, 3000 steps, float32, every metric at every
   record step): ``simulate`` cold (compile included) and warm, in the form ``"auto"`` picks
   and in the primal form, against (3);
3. the same training as a per-run NumPy loop in this process (:func:`numpy_simulate`: two
   matrix-vector products a step, every metric at the same record steps, sigmoid clipped so
   float32 never goes denormal), every run timed in full;
4. the **float32 rho sweep**: one seed, 1-SAM at 32 radii (one shared dataset: two GEMMs a
   step in the primal form), FLOP/s against the GEMM limit; float64 for reference;
5. closed form against generic autodiff, time per step (1-SAM logistic, 1-SAM DLN, J-SAM DLN);
6. peak memory of the default workload (process high-water mark and the engine's estimate);
7. the CIFAR-10 CPU preset's cost per epoch (``linsam cifar --preset cpu``: its network, its
   compiled training step, synthetic images of CIFAR's shape): SGD against 1-SAM (target: 1-SAM
   at most 3x SGD).

FLOPs and bytes are counted analytically (:func:`linsam._src.engine.linear.flops_per_step`,
``bytes_per_step``); the formulas are written into the report. Timings are wall-clock and
never asserted by the tests (``--tiny`` checks structure only).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from linsam._src.atomic import write_text_atomic

TARGET_ROOFLINE = 0.60
TARGET_NUMPY_SPEEDUP = 10.0
TARGET_CLOSED_SPEEDUP = 5.0
#: 1-SAM's training time per epoch on the CIFAR CPU preset, at most this many times SGD's (issue 12).
TARGET_CIFAR_CPU_RATIO = 3.0


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of every measurement (``full()`` for the report, ``tiny()`` for tests)."""

    name: str = "full"
    n: int = 500
    d: int = 2000
    seeds: int = 4
    R: int = 32
    steps: int = 3000
    record_every: int = 10
    steps_f64: int = 300
    gemm_sizes: tuple = (1024, 2048)
    gemm_reps: int = 5
    copy_mib: int = 256
    copy_reps: int = 10
    ad_logreg: tuple = (1000, 1000)  # (n, d)
    ad_dln: tuple = (1000, 1000, 256)  # (n, d, h)
    ad_steps: tuple = (50, 3)  # steps timed for (logistic, DLN)
    ad_chunk: int = 50  # chunk_size of the autodiff per-example DLN rules (memory bound)
    cifar_images: int = 10000  # synthetic training images per epoch (the CPU preset's subset)
    cifar_width: int | None = None  # MLP width (None: the CPU preset's)
    cifar_reps: int = 3  # epochs timed per method after a warm-up epoch (best of)

    @classmethod
    def full(cls) -> "BenchConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "BenchConfig":
        return cls(name="tiny", n=32, d=48, seeds=2, R=4, steps=20, record_every=5, steps_f64=10, gemm_sizes=(128,),
                   gemm_reps=2, copy_mib=4, copy_reps=2, ad_logreg=(32, 24), ad_dln=(32, 24, 8), ad_steps=(3, 2),
                   ad_chunk=8, cifar_images=256, cifar_width=16, cifar_reps=1)


# ----------------------------------------------------------------------------- machine


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def machine_info() -> dict:
    """CPU model, cores, memory, load, library versions and the JAX backend."""
    import jax

    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cpu = cpu or platform.processor() or platform.machine()
    mem = ""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
            break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    cache = {}
    for idx in range(8):
        base = f"/sys/devices/system/cpu/cpu0/cache/index{idx}"
        level, kind, size = _read(base + "/level").strip(), _read(base + "/type").strip(), _read(base + "/size").strip()
        if level and kind != "Instruction":
            cache[f"L{level}"] = size
    devs = jax.devices()
    import jaxlib

    return dict(
        cpu=cpu,
        cores=f"{os.cpu_count()} logical, {usable} usable by this process",
        cache=", ".join(f"{k} {v}" for k, v in sorted(cache.items())) or "unknown",
        memory=mem or "unknown",
        platform=platform.platform(),
        python=platform.python_version(),
        numpy=np.__version__,
        jax=f"{jax.__version__} (jaxlib {jaxlib.__version__})",
        backend=f"{jax.default_backend()}, {len(devs)} device(s): {devs[0].device_kind}",
        load=_load(),
        usable_cores=int(usable or 1),
    )


def _cpu_seconds():
    """(CPU-seconds all processes spent busy since boot, from /proc/stat; this process's
    CPU-seconds, children included). The first is None where /proc/stat is missing."""
    own = sum(os.times()[:4])
    line = _read("/proc/stat").splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return None, own
    f = [int(x) for x in line[0].split()[1:]]
    busy = sum(f[:3]) + sum(f[5:8])  # user nice system (idle iowait skipped) irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK"), own


def other_cpu(start, end, wall: float) -> float | None:
    """Average number of cores other processes kept busy between two :func:`_cpu_seconds`."""
    if start[0] is None or end[0] is None or wall <= 0:
        return None
    return max(0.0, (end[0] - start[0]) - (end[1] - start[1])) / wall


def _busy(others: float | None, cores: int) -> str:
    """A reason string when other processes kept more than a quarter of a core busy on
    average during the run (from /proc/stat minus this process's own CPU time)."""
    if others is None or others <= 0.25:
        return ""
    return f"other processes kept {others:.2f} of {cores} cores busy on average during the run"


def _load() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "unknown"


# ----------------------------------------------------------------------------- timing helpers


def _best(fn, reps):
    fn()
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _time_compiled(jitted, *args):
    """Compile ahead of time, then time one execution (seconds, compiled, output)."""
    import jax

    compiled = jitted.lower(*args).compile()
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0, compiled, out


def gemm_flops(N: int, dtype: str, reps: int) -> dict:
    """FLOP/s of an N x N x N matrix product, JAX (XLA) and NumPy (BLAS)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    A = rng.standard_normal((N, N)).astype(dtype)
    B = rng.standard_normal((N, N)).astype(dtype)
    flops = 2.0 * N**3
    t_np = _best(lambda: A @ B, reps)
    Aj, Bj = jnp.asarray(A), jnp.asarray(B)
    mm = jax.jit(jnp.matmul)
    t_jax = _best(lambda: mm(Aj, Bj).block_until_ready(), reps)
    return dict(jax=flops / t_jax, numpy=flops / t_np)


def copy_bandwidth(mib: int, reps: int) -> dict:
    """Bytes/s of a large float32 copy, counting the bytes read plus the bytes written
    (STREAM convention): NumPy ``copyto`` (one thread) and a JAX scaled copy into a donated
    buffer (XLA's threads)."""
    import jax
    import jax.numpy as jnp

    count = mib * 2**20 // 4
    src = np.ones(count, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages
    t_np = _best(lambda: np.copyto(dst, src), reps)
    del dst
    scale = jax.jit(lambda s, d, q: s * q, donate_argnums=1, keep_unused=True)
    srcj = jnp.asarray(src)
    box = [jnp.zeros_like(srcj)]
    q = jnp.float32(1.0)

    def run():
        box[0] = scale(srcj, box[0], q)
        box[0].block_until_ready()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # donation not honoured on some backends: still a copy
        t_jax = _best(run, reps)
    nbytes = 2.0 * src.nbytes
    return dict(jax=nbytes / t_jax, numpy=nbytes / t_np)


# ----------------------------------------------------------------------------- workloads


def default_workload(cfg: "BenchConfig"):
    """The default workload: ``default.toml`` restricted to GD + 1-SAM at rho 4 and 12, 4 seeds
    (``--tiny``: the same shape of sweep, shrunk)."""
    from linsam import simulate as sim

    base = sim.load_config("default").replace(methods=("gd", "one_sam"), rhos=(4.0, 12.0), num_seeds=cfg.seeds,
                                              seed_chunk=0, name="bench_default")
    if cfg.name == "tiny":
        base = base.replace(n=cfg.n, steps=cfg.steps, record_every=cfg.record_every, record_dense=cfg.record_every,
                            data=base.data._replace(d=cfg.d, sigma=1.0 / math.sqrt(cfg.d), mean_norm=2.0 / math.sqrt(cfg.d)))
    return base


def rho_sweep(cfg: "BenchConfig", dtype: str):
    """One seed, 1-SAM at ``cfg.R`` radii on one shared dataset (W is d x R: two GEMMs a step)."""
    base = default_workload(cfg)
    steps = cfg.steps if dtype == "float32" else cfg.steps_f64
    return base.replace(methods=("one_sam",), rhos=tuple(float(r) for r in np.linspace(0.25, 12.0, cfg.R)),
                        num_seeds=1, record_dense=0, steps=steps, dtype=dtype, name="bench_rho_sweep")


# ----------------------------------------------------------------------------- NumPy reference


def _sigmoid(x, lim):
    """Logistic sigmoid with the argument clipped to [-lim, lim] (no denormal float32 results)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -lim, lim)))


def numpy_metrics(w, z, xn, rho, mask, mu, scale, lim, val=None) -> dict:
    """Every metric of :func:`linsam.simulate.record_metrics` for logistic regression, in NumPy."""
    from scipy.special import log_expit, ndtr

    cl, nz = ~mask, mask
    correct = (z > 0) + 0.5 * (z == 0)
    loss = np.logaddexp(0, -z)
    s = _sigmoid(-z, lim)
    C = np.where((s > 0) & (xn > 0), rho * xn, 0)
    gn, sg = s * xn, _sigmoid(-z + C, lim) * xn
    wt = np.exp(log_expit(-z + C) - log_expit(-z))
    signal, var = w @ mu, np.sum((w * scale) ** 2)
    zv = None if val is None else val[1] * (val[0] @ w)
    return dict(
        val_acc=np.nan if zv is None else np.mean((zv > 0) + 0.5 * (zv == 0)),
        test_acc=ndtr(signal / np.sqrt(var)) if var > 0 else 0.5 + 0.5 * np.sign(signal),
        train_acc=correct.mean(), train_acc_clean=correct[cl].mean(), train_acc_noisy=correct[nz].mean(),
        loss_clean=loss[cl].mean(), loss_noisy=loss[nz].mean(),
        grad_norm_clean=gn[cl].mean(), grad_norm_noisy=gn[nz].mean(), grad_norm_ratio=gn[cl].mean() / gn[nz].mean(),
        sam_grad_norm_clean=sg[cl].mean(), sam_grad_norm_noisy=sg[nz].mean(),
        sam_grad_norm_ratio=sg[cl].mean() / sg[nz].mean(),
        sam_weight_clean=wt[cl].mean(), sam_weight_noisy=wt[nz].mean(), sam_weight_min=wt.min(), sam_weight_max=wt.max(),
        jsam_penalty=rho * np.mean(gn), w_norm=np.linalg.norm(w),
    )


def numpy_run(X, t, mask, w0, rho, lr, steps, record, mu, scale, metric_rhos, val=None):
    r"""One run as a plain NumPy loop: ``steps`` times :math:`z = t\odot Xw`,
    :math:`w \mathrel{+}= \frac{\eta}{n}X^\top(t\odot\sigma(-z + C))` (two matrix-vector
    products; :math:`C = \rho\|x\|` where the gradient is non-zero, 1-SAM; 0 for GD), and every
    metric at each of ``metric_rhos`` at the ``record`` steps. Returns name -> ``(Q, T)``."""
    dt = X.dtype
    lim = dt.type(80.0 if dt == np.float32 else 700.0)
    n = X.shape[0]
    xn = np.linalg.norm(X, axis=1)
    rr, step = dt.type(rho), dt.type(lr / n)
    w = np.array(w0, dt)
    record = set(int(s) for s in record)
    out = []
    for i in range(steps + 1):
        z = t * (X @ w)
        if i in record:
            out.append([numpy_metrics(w, z, xn, dt.type(r), mask, mu, scale, lim, val) for r in metric_rhos])
        if i == steps:
            break
        C = np.where((_sigmoid(-z, lim) > 0) & (xn > 0), rr * xn, dt.type(0))
        w = w + step * (X.T @ (t * _sigmoid(-z + C, lim)))
    return {k: np.array([[rec[q][k] for rec in out] for q in range(len(metric_rhos))]) for k in out[0][0]}


def numpy_simulate(config) -> tuple[dict, list]:
    """The training of :func:`linsam.simulate.simulate` for logistic GD / 1-SAM, full batch, as a
    per-run NumPy loop on the same training sets and initial weights (GD once per seed, its
    metrics at every rho, like the engine). Returns (metrics name -> ``(rule, rho, seed, T)``,
    seconds of each run)."""
    from linsam import simulate as sim

    if config.model != "logreg" or config.batch_size not in (0, config.n) or set(config.methods) - {"gd", "one_sam"}:
        raise ValueError("numpy_simulate covers logreg, full batch, methods gd and one_sam")
    ds, w0 = sim.training_sets(config)
    X, t, mask, w0 = (np.asarray(a) for a in (ds.X, ds.noisy, ds.mask, w0))
    mix = config.data.build()
    mu, scale = (np.asarray(a, X.dtype) for a in (mix.mu, mix.scale))
    record = sim.record_steps(config)
    rhos = list(config.rhos)
    out, times = {}, []
    for m in config.methods:
        per_seed = []
        for s in range(config.num_seeds):
            args = (X[s], t[s], mask[s], w0[s])
            v = sim.validation_sample(config, int(config.seeds[s]))
            val = (np.asarray(v.X), np.asarray(v.noisy))
            tic = time.perf_counter()
            if m == "gd":
                per_rho = numpy_run(*args, 0.0, config.lr, config.steps, record, mu, scale, rhos, val)
            else:
                runs = [numpy_run(*args, r, config.lr, config.steps, record, mu, scale, [r], val) for r in rhos]
                per_rho = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
            times.append(time.perf_counter() - tic)
            per_seed.append(per_rho)
        out[m] = {k: np.stack([p[k] for p in per_seed], axis=1) for k in per_seed[0]}  # (rho, seed, T)
    return {k: np.stack([out[m][k] for m in config.methods]) for k in out[config.methods[0]]}, times


# ----------------------------------------------------------------------------- measurements


def _simulate_timed(config, reps: int = 1, **kw):
    """(cold seconds: compile + run, warm seconds: the median of ``reps`` further identical
    calls, result)."""
    from linsam import simulate as sim

    t0 = time.perf_counter()
    sim.simulate(config, **kw)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = sim.simulate(config, **kw)
        warm.append(time.perf_counter() - t0)
    return cold, float(np.median(warm)), res


def measure_limits(cfg: BenchConfig) -> dict:
    out = {}
    for dt in ("float64", "float32"):
        best = dict(jax=0.0, numpy=0.0)
        for N in cfg.gemm_sizes:
            g = gemm_flops(N, dt, cfg.gemm_reps)
            best = {k: max(best[k], g[k]) for k in best}
        out[f"gemm_{dt}"] = dict(best, limit=max(best.values()))
    bw = copy_bandwidth(cfg.copy_mib, cfg.copy_reps)
    out["copy"] = dict(bw, limit=max(bw.values()))
    return out


def measure_default(cfg: BenchConfig) -> dict:
    """The default workload through ``simulate`` (forms auto and primal), with the process's
    peak memory before/after and the engine's estimate."""
    from linsam import simulate as sim
    from linsam._src.engine import linear

    config = default_workload(cfg)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = []
    for form in ("auto", "primal"):
        cold, warm, res = _simulate_timed(config, reps=3, form=form)
        n, d = config.n, config.data.d
        runs = 1 + len(config.rhos)  # per seed: GD once, 1-SAM per rho
        used = form if form != "auto" else linear.choose_form(n, d, runs, config.record_every)
        rows.append(dict(form=form, resolved=used, cold=cold, warm=warm, backend=res.backend))
        if form == "auto":
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = sim.estimate_memory(config)
    return dict(config=config, rows=rows, rss_before=rss0, rss_after=rss1, estimate=est,
                records=len(sim.record_steps(config)), metrics=len(res.metrics))


def measure_numpy(cfg: BenchConfig) -> dict:
    config = default_workload(cfg)
    _, times = numpy_simulate(config)
    return dict(runs=len(times) + (len(config.rhos) - 1) * config.num_seeds, total=float(sum(times)),
                per_run_step=float(sum(times)) / (config.num_seeds * (1 + len(config.rhos)) * config.steps))


def measure_rho_sweeps(cfg: BenchConfig, limits: dict) -> list:
    """The rho sweep in float32 (all steps) and float64 (``steps_f64`` steps), primal and auto."""
    from linsam._src.engine import linear

    rows = []
    for dt in ("float32", "float64"):
        config = rho_sweep(cfg, dt)
        n, d, R, k = config.n, config.data.d, len(config.rhos), config.record_every
        for form in ("primal", "auto"):
            resolved = form if form != "auto" else linear.choose_form(n, d, R, k)
            cold, warm, _ = _simulate_timed(config, form=form)
            flops = linear.flops_per_step(n, d, R, k, resolved) * config.steps / warm
            nbytes = linear.bytes_per_step(n, d, R, k, np.dtype(dt).itemsize, resolved) * config.steps / warm
            rows.append(dict(dtype=dt, form=form, resolved=resolved, steps=config.steps, R=R, cold=cold, warm=warm,
                             per_step=warm / config.steps, flops=flops, bytes=nbytes,
                             flop_fraction=flops / limits[f"gemm_{dt}"]["limit"],
                             byte_fraction=nbytes / limits["copy"]["limit"]))
    return rows


def _loop_time(step, state, *data, steps):
    """Seconds per step of ``state <- step(state, *data)`` inside one jitted fori_loop
    (``data`` passed as arguments, never baked in as constants)."""
    import jax

    loop = jax.jit(lambda s, *a: jax.lax.fori_loop(0, steps, lambda i, s: step(s, *a), s))
    elapsed, _, _ = _time_compiled(loop, state, *data)
    return elapsed / steps


def _problem(seed, n, d):
    """A float32 binary problem (no compilation): x = t mu + g / sqrt(d), |mu| = 2, 20% flips."""
    rng = np.random.default_rng(seed)
    t = np.where(rng.random(n) < 0.5, 1.0, -1.0).astype(np.float32)
    X = (rng.standard_normal((n, d)) / math.sqrt(d)).astype(np.float32)
    X[:, 0] += 2.0 * t
    t[: n // 5] *= -1
    return X, t


def measure_autodiff(cfg: BenchConfig) -> list:
    """Closed form vs generic autodiff (``method.direction`` vs ``method.autodiff``), float32."""
    import jax
    import jax.numpy as jnp

    from linsam._src import rules
    from linsam._src.models import DLN, LogReg

    rows = []
    lr, rho = 0.5, 0.1
    n, d = cfg.ad_logreg
    X, t = (jnp.asarray(a) for a in _problem(7, n, d))
    model, m = LogReg(), rules.OneSAM(rho)
    w0 = jnp.zeros(d, jnp.float32)
    ns = cfg.ad_steps[0]
    closed = _loop_time(lambda w, X, t: w - lr * m.direction(model, w, X, t), w0, X, t, steps=ns)
    auto = _loop_time(lambda w, X, t: w - lr * m.autodiff(model, w, X, t), w0, X, t, steps=ns)
    rows.append(dict(rule="1-SAM logistic", sizes=f"n={n}, d={d}", closed=closed, autodiff=auto, note="vmap, no chunks"))
    n, d, h = cfg.ad_dln
    X, t = (jnp.asarray(a) for a in _problem(8, n, d))
    model = DLN(hidden=h)
    p0 = model.init(jax.random.PRNGKey(0), d, scale=1.0, dtype=jnp.float32)
    upd = lambda p, g: jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g)  # noqa: E731
    ns = cfg.ad_steps[1]
    for name, cls in (("1-SAM DLN", rules.OneSAM), ("J-SAM DLN", rules.JSAM)):
        m = cls(rho, chunk_size=cfg.ad_chunk)
        closed = _loop_time(lambda p, X, t, m=m: upd(p, m.direction(model, p, X, t)), p0, X, t, steps=ns)
        auto = _loop_time(lambda p, X, t, m=m: upd(p, m.autodiff(model, p, X, t)), p0, X, t, steps=ns)
        rows.append(dict(rule=name, sizes=f"n={n}, d={d}, h={h}", closed=closed, autodiff=auto,
                         note=f"chunk_size={cfg.ad_chunk} (per-example grads of size h*d)"))
    for r in rows:
        r["speedup"] = r["autodiff"] / r["closed"]
    return rows


def measure_cifar_cpu(cfg: BenchConfig) -> dict:
    """Training time per epoch of SGD (``gd``) and 1-SAM with the CIFAR CPU preset's network and
    step (:func:`linsam.cifar.train.Trainer.train_epoch`: the compiled block, the optax chain, the
    MLP's closed-form 1-SAM), on ``cfg.cifar_images`` synthetic uint8 images of CIFAR's shape
    (no dataset needed). A warm-up epoch (compile included) per method, then the best of
    ``cfg.cifar_reps`` epochs, wall and this process's CPU seconds. Evaluation is not included.
    Returns ``{"available": False, "reason"}`` without the optional extra ``gpu`` (flax, optax).
    """
    try:
        from linsam.cifar import presets
        from linsam.cifar import train as ctrain
    except ModuleNotFoundError as err:
        return dict(available=False, reason=f"needs the optional extra 'gpu' ({err.name} is missing)")
    fields = presets.preset_fields("cpu")
    if cfg.cifar_width is not None:
        fields["width"] = cfg.cifar_width
    n = int(cfg.cifar_images)
    fields.update(train_subset=None, eval_train_size=None, noise_rate=0.0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int32)
    mean, std = np.full(3, 127.5, np.float32), np.full(3, 73.9, np.float32)
    data = ctrain.PreparedData(x, y, y, np.zeros(n, bool), x[:1], y[:1], mean, std, 0.0,
                               {"fingerprint": "synthetic", "n_train": n})
    rows = []
    for method in ("gd", "one_sam"):
        c = ctrain.validate_config(ctrain.CifarConfig(method=method, **fields))
        trainer = ctrain.Trainer(c, data)
        state = trainer.init_state()
        t0 = time.perf_counter()
        state = trainer.train_epoch(state, 0)  # compile + one epoch
        first = time.perf_counter() - t0
        walls, cpus = [], []
        for e in range(1, 1 + cfg.cifar_reps):
            c0, t0 = _own_cpu(), time.perf_counter()
            state = trainer.train_epoch(state, e)
            walls.append(time.perf_counter() - t0)
            cpus.append(_own_cpu() - c0)
        k = int(np.argmin(walls))
        rows.append(dict(method=method, network=ctrain.model_arch_name(c), images=n, steps=trainer.steps,
                         batch=c.batch_size, epoch_s=walls[k], epoch_cpu_s=cpus[k], first_s=first,
                         rho=c.rho if method != "gd" else None))
    ratio = rows[1]["epoch_s"] / rows[0]["epoch_s"]
    cpu_ratio = rows[1]["epoch_cpu_s"] / rows[0]["epoch_cpu_s"] if rows[0]["epoch_cpu_s"] > 0 else float("nan")
    return dict(available=True, rows=rows, ratio=ratio, cpu_ratio=cpu_ratio, reps=cfg.cifar_reps)


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- report


def _g(x, unit=1e9):
    return f"{x / unit:.1f}"


def _ms(x):
    return f"{x * 1e3:.3f}" if x < 0.1 else f"{x * 1e3:.1f}"


def _mib(x):
    return f"{x / 2**20:.1f} MiB"


def _met(v, goal):
    return "yes" if v >= goal else "**no**"


def render(res: dict) -> str:
    cfg: BenchConfig = res["config"]
    m = res["machine"]
    lim = res["limits"]
    dflt, npy = res["default"], res["numpy"]
    c = dflt["config"]
    L = []
    add = L.append
    add("# linsam benchmarks")
    add("")
    add(f"Generated by `python -m bench{' --tiny' if cfg.name == 'tiny' else ''}` (linsam {res['version']}) "
        f"on {res['date']} in {res['wall']:.0f} s. All numbers below were measured in this one process, "
        "on this machine, through `linsam.simulate.simulate` (the one engine); timings are wall-clock, never "
        "asserted by tests. Re-run on a quiet machine before quoting them: the load average and the CPU time "
        "other processes used are recorded below.")
    if cfg.name == "tiny":
        add("")
        add("**Tiny mode**: sizes shrunk to test the command, numbers meaningless.")
    busy = _busy(res.get("other_cpu"), m["usable_cores"])
    if busy:
        add("")
        add(f"**Warning: the machine was busy** ({busy}). Other processes competed for the cores, so the "
            "timings and the ratios (limits and sweeps measured at different moments) are unreliable: re-run on a quiet "
            "machine.")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, label in (("cpu", "CPU"), ("cores", "cores"), ("cache", "caches (per instance)"), ("memory", "memory"),
                       ("platform", "OS"), ("python", "Python"), ("numpy", "NumPy"), ("jax", "JAX"),
                       ("backend", "JAX backend")):
        add(f"| {label} | {m[key]} |")
    add(f"| load average (1/5/15 min) at start | {m['load']} |")
    add(f"| load average (1/5/15 min) at end | {res['load_end']} |")
    oc = res.get("other_cpu")
    add(f"| other processes during the run (cores busy on average, /proc/stat) | "
        f"{'unknown' if oc is None else f'{oc:.2f}'} |")
    add("")
    add("## Targets")
    add("")
    add("| target | dtype | form | measured | goal | met |")
    add("|---|---|---|---|---|---|")
    for r in dflt["rows"]:
        sp = npy["total"] / r["warm"]
        label = "auto" if r["form"] == "auto" else "primal"
        add(f"| default workload: simulate vs per-run NumPy loop | {c.dtype} | {label} ({r['resolved']}) | {sp:.1f}x | "
            f">= {TARGET_NUMPY_SPEEDUP:.0f}x | {_met(sp, TARGET_NUMPY_SPEEDUP)} |")
    for r in res["rho"]:
        if r["form"] == "primal":
            add(f"| rho sweep: FLOP/s / GEMM FLOP/s | {r['dtype']} | primal | {r['flop_fraction']:.2f} "
                f"({_g(r['flops'])} / {_g(lim['gemm_' + r['dtype']]['limit'])} GFLOP/s) | >= {TARGET_ROOFLINE:.2f} | "
                f"{_met(r['flop_fraction'], TARGET_ROOFLINE)} |")
    for ad in res["autodiff"][:1]:
        add(f"| closed form vs autodiff, {ad['rule']} ({ad['sizes']}) | float32 | - | {ad['speedup']:.1f}x | "
            f">= {TARGET_CLOSED_SPEEDUP:.0f}x | {_met(ad['speedup'], TARGET_CLOSED_SPEEDUP)} |")
    cc = res.get("cifar_cpu") or {}
    if cc.get("available"):
        add(f"| CIFAR CPU preset: 1-SAM epoch / SGD epoch ({cc['rows'][0]['network']}, {cc['rows'][0]['images']} images) "
            f"| float32 | - | {cc['ratio']:.2f}x | <= {TARGET_CIFAR_CPU_RATIO:.0f}x | "
            f"{'yes' if cc['ratio'] <= TARGET_CIFAR_CPU_RATIO else '**no**'} |")
    add("")
    add("## Machine limits (measured in this run)")
    add("")
    add("| quantity | JAX (XLA) | NumPy | limit used |")
    add("|---|---|---|---|")
    for dt in ("float64", "float32"):
        g = lim[f"gemm_{dt}"]
        add(f"| GEMM {dt}, N in {list(cfg.gemm_sizes)}, best of {cfg.gemm_reps} (GFLOP/s) | {_g(g['jax'])} | "
            f"{_g(g['numpy'])} | {_g(g['limit'])} |")
    cp = lim["copy"]
    add(f"| copy bandwidth, {cfg.copy_mib} MiB float32, read + write bytes (GB/s) | {_g(cp['jax'])} | {_g(cp['numpy'])} | "
        f"{_g(cp['limit'])} |")
    add("")
    add(f"## The default workload through `linsam.simulate` (n = {c.n}, d = {c.data.d}, {c.steps} steps, {c.dtype})")
    add("")
    add(f"`linsam/configs/default.toml` restricted to GD + 1-SAM at rho {', '.join(map(str, c.rhos))}, "
        f"{c.num_seeds} seeds: {dflt['metrics']} metrics at {dflt['records']} record steps (every step to "
        f"{c.record_dense}, then every {c.record_every}). GD trains once per seed (its rho-dependent metrics are "
        f"evaluated at each rho), 1-SAM once per rho: {c.num_seeds * (1 + len(c.rhos))} runs. *cold* = the first "
        "call (compilation included), *warm* = the median of 3 further identical calls (the compiled programs "
        "reused: what every further sweep of these shapes costs). JAX devices: one CPU device per core "
        "(`use_cpu_cores`, as the command line runs), seeds split over them.")
    add("")
    add("| form | backend | cold: compile + run (s) | warm run (s) | NumPy loop (s) | speedup warm | speedup cold |")
    add("|---|---|---|---|---|---|---|")
    for r in dflt["rows"]:
        bk = ", ".join(f"{k}: {v}" for k, v in r["backend"].items())
        add(f"| {r['form']} ({r['resolved']}) | {bk} | {r['cold']:.2f} | {r['warm']:.2f} | {npy['total']:.2f} | "
            f"{npy['total'] / r['warm']:.1f}x | {npy['total'] / r['cold']:.1f}x |")
    add("")
    add("## NumPy per-run loop (the baseline)")
    add("")
    add("A plain Python loop per run (`bench.benchmark.numpy_simulate`): two NumPy matrix-vector products a "
        "step, every metric at the same record steps (population accuracy included), the sigmoid's argument "
        "clipped to [-80, 80] in float32 so no result is denormal; GD once per seed, like the engine. A test checks "
        "it follows the engine's trajectory and metrics (float64). Every run timed in full, in this process.")
    add("")
    add("| runs | steps per run | total (s) | ms per run-step |")
    add("|---|---|---|---|")
    add(f"| {npy['runs']} | {c.steps} | {npy['total']:.2f} | {_ms(npy['per_run_step'])} |")
    add("")
    rs = res["rho"][0]
    add(f"## The rho sweep (one seed, 1-SAM at R = {rs['R']} radii, n = {c.n}, d = {c.data.d})")
    add("")
    add(f"All runs share one dataset, so the primal form's step is two GEMMs on W (d x R). float32 timed over "
        f"{cfg.steps} steps, float64 over {cfg.steps_f64}; warm calls through `simulate(config, form=...)`, metrics "
        f"every {c.record_every} steps. GFLOP/s and GB/s are the analytic counts below divided by the measured time.")
    add("")
    add("| dtype | form | steps | ms/step | cold (s) | warm (s) | GFLOP/s | / GEMM | GB/s | / copy |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["rho"]:
        add(f"| {r['dtype']} | {r['form']} ({r['resolved']}) | {r['steps']} | {_ms(r['per_step'])} | {r['cold']:.2f} | "
            f"{r['warm']:.2f} | {_g(r['flops'])} | {r['flop_fraction']:.2f} | {_g(r['bytes'])} | "
            f"{r['byte_fraction']:.2f} |")
    add("")
    add("## Closed form vs generic autodiff (time per step, float32)")
    add("")
    add("| rule | sizes | closed form ms/step | autodiff ms/step | speedup | autodiff setting |")
    add("|---|---|---|---|---|---|")
    for r in res["autodiff"]:
        add(f"| {r['rule']} | {r['sizes']} | {_ms(r['closed'])} | {_ms(r['autodiff'])} | {r['speedup']:.1f}x | "
            f"{r['note']} |")
    add("")
    add("## Peak memory of the default workload")
    add("")
    add("| quantity | bytes |")
    add("|---|---|")
    add(f"| process peak RSS (ru_maxrss) before / after the first sweep | {_mib(dflt['rss_before'])} / "
        f"{_mib(dflt['rss_after'])} |")
    est = dflt["estimate"]
    add(f"| engine's estimate (`linsam.simulate.estimate_memory`): device per chunk / host | {_mib(est['device'])} / "
        f"{_mib(est['host'])} |")
    add("")
    add("## CIFAR-10 CPU preset: training time per epoch")
    add("")
    cc = res.get("cifar_cpu") or {}
    if cc.get("available"):
        add(f"`linsam cifar --preset cpu`'s network and compiled training step (`Trainer.train_epoch`: one "
            f"`lax.scan` block per epoch, the optax chain, the MLP's closed-form 1-SAM) on {cc['rows'][0]['images']} "
            f"synthetic uint8 images of CIFAR's shape (no dataset needed), batch {cc['rows'][0]['batch']}; evaluation "
            f"excluded. Best of {cc['reps']} epochs after a warm-up epoch (compile included); CPU = this process's "
            f"user + system seconds in that epoch. 1-SAM / SGD: {cc['ratio']:.2f}x wall, {cc['cpu_ratio']:.2f}x CPU.")
        add("")
        add("| method | network | steps per epoch | epoch wall (s) | epoch CPU (s) | first epoch, compile included (s) | / SGD (wall) |")
        add("|---|---|---|---|---|---|---|")
        base = cc["rows"][0]["epoch_s"]
        for r in cc["rows"]:
            name = "SGD (gd)" if r["method"] == "gd" else f"1-SAM (one_sam, rho {r['rho']:g})"
            add(f"| {name} | {r['network']} | {r['steps']} | {r['epoch_s']:.3f} | {r['epoch_cpu_s']:.3f} | "
                f"{r['first_s']:.2f} | {r['epoch_s'] / base:.2f}x |")
    else:
        add("| method | measured |")
        add("|---|---|")
        add(f"| SGD, 1-SAM | not measured: {cc.get('reason', 'not run')} |")
    add("")
    add("## How the numbers are counted")
    add("")
    add("Per step of one seed with R runs, record interval k (`linsam._src.engine.linear.flops_per_step`, "
        "`bytes_per_step`; s = bytes per number):")
    add("")
    add("- FLOPs, primal: 4ndR (X W and X^T C, a multiply-add = 2) + 2dR (update) + 4dR/k (norm and accuracy moments "
        "at a record); dual: 2n^2R (K C) + 4nR + 4n^2R/k (K A and K_Sigma A at a record). Sigmoids and masks are "
        "not counted.")
    add("- Bytes, primal: (2nd + 3dR) s; dual: (n^2 + 4nR) s + 2n^2 s/k.")
    add("- Achieved rate = count x steps / (warm time of the whole `simulate` call, data sampling and transfers "
        "included); fraction = achieved / limit measured above.")
    add("")
    return "\n".join(L)

def atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(cfg: BenchConfig, out: str | os.PathLike | None = "BENCHMARKS.md", log=_say) -> dict:
    """Run every measurement, print the report, write it to ``out`` (atomically) unless None."""
    import jax

    import linsam

    jax.config.update("jax_enable_x64", True)  # float64 limits and sweeps
    t0 = time.perf_counter()
    res = dict(config=cfg, version=linsam.__version__,
               date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    res["machine"] = machine_info()
    cpu0 = _cpu_seconds()
    steps = [
        ("default", "the default workload through simulate", lambda: measure_default(cfg)),
        ("limits", "machine limits (GEMM, copy)", lambda: measure_limits(cfg)),
        ("numpy", "the per-run NumPy loop", lambda: measure_numpy(cfg)),
        ("rho", "the rho sweep", lambda: measure_rho_sweeps(cfg, res["limits"])),
        ("autodiff", "closed form vs autodiff", lambda: measure_autodiff(cfg)),
        ("cifar_cpu", "the CIFAR CPU preset's cost per epoch", lambda: measure_cifar_cpu(cfg)),
    ]
    for key, label, fn in steps:
        t1 = time.perf_counter()
        log(f"[bench] {label} ...")
        res[key] = fn()
        log(f"[bench] {label}: {time.perf_counter() - t1:.1f} s")
    res["load_end"] = _load()
    res["wall"] = time.perf_counter() - t0
    res["other_cpu"] = other_cpu(cpu0, _cpu_seconds(), res["wall"])
    text = render(res)
    res["text"] = text
    if out is not None:
        atomic_write(Path(out), text)
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests: numbers are meaningless)")
    p.add_argument("--out", default="BENCHMARKS.md", help="report path (default BENCHMARKS.md; '-' = do not write)")
    p.add_argument("--quiet", action="store_true", help="do not print the report")


def main_from_args(args: argparse.Namespace) -> int:
    cfg = BenchConfig.tiny() if args.tiny else BenchConfig.full()
    out = None if args.out == "-" else args.out
    res = run_bench(cfg, out)
    if not args.quiet:
        print(res["text"])
    if out is not None:
        print(f"[bench] wrote {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from linsam._src.engine.shard import use_cpu_cores

    use_cpu_cores()  # as the command line does: one CPU device per core
    p = argparse.ArgumentParser(prog="python -m bench", description="linsam performance benchmark (see docs/performance.md)")
    add_arguments(p)
    return main_from_args(p.parse_args(argv))
