r"""``python -m bench`` / ``linsam bench``: linsam's speed against this machine's own limits.

Everything is measured in one process, in this order (so the peak-memory reading comes
first, before anything else has raised the process's high-water mark):

1. peak memory of the default sweep (2 methods x 8 rho x 20 seeds, n = 500, d = 2000,
   3000 steps, metrics every 10 steps, float32);
2. machine limits: float64 / float32 GEMM throughput (JAX and NumPy, best of both) and
   memory bandwidth from a large copy (JAX and NumPy, best of both);
3. the linear 1-SAM sweep, n = 500, d = 2000, R = 32 runs, 3000 steps: (a) one shared
   dataset (GEMMs), FLOP/s against the GEMM limit; (b) one dataset per run (batched
   matvecs), bytes/s against the copy bandwidth; each in the primal form and the form
   ``"auto"`` picks (:mod:`linsam._src.fastsweep`);
4. (c) the same runs as a straightforward per-run NumPy loop (same steps, same metrics),
   timed on fewer runs and steps and extrapolated per run-step;
5. closed form against generic autodiff, time per step (1-SAM logistic, 1-SAM DLN, J-SAM DLN);
6. scaling of the primal sweep in n, d and R (log-log fit);
7. a profile of one primal step (each part timed on its own).

FLOPs and bytes are counted analytically (:func:`linsam.fastsweep.flops_per_step`,
:func:`linsam.fastsweep.bytes_per_step`); the formulas are written into the report.
Timings are wall-clock and never asserted by the tests (``--tiny`` checks structure only).
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


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes of every measurement (``full()`` for the report, ``tiny()`` for tests)."""

    name: str = "full"
    n: int = 500
    d: int = 2000
    R: int = 32
    steps: int = 3000
    record_every: int = 10
    steps_f64: int = 300  # float64 sweeps: timed on this many steps, extrapolated per step
    numpy_steps: int = 300
    numpy_runs: int = 8
    gemm_sizes: tuple = (1024, 2048)
    gemm_reps: int = 5
    copy_mib: int = 256
    copy_reps: int = 10
    ad_logreg: tuple = (1000, 1000)  # (n, d)
    ad_dln: tuple = (1000, 1000, 256)  # (n, d, h)
    ad_steps: tuple = (50, 3)  # steps timed for (logistic, DLN)
    ad_chunk: int = 50  # chunk_size of the autodiff per-example DLN rules (memory bound)
    scaling_steps: int = 200
    scaling_n: tuple = (250, 500, 1000, 2000)
    scaling_d: tuple = (500, 1000, 2000, 4000)
    scaling_R: tuple = (8, 16, 32, 64)
    mem_seeds: int = 20
    mem_rhos: int = 8
    profile_steps: int = 100

    @classmethod
    def full(cls) -> "BenchConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "BenchConfig":
        return cls(
            name="tiny", n=32, d=48, R=4, steps=20, record_every=5, steps_f64=10, numpy_steps=10, numpy_runs=2,
            gemm_sizes=(128,), gemm_reps=2, copy_mib=4, copy_reps=2, ad_logreg=(32, 24), ad_dln=(32, 24, 8),
            ad_steps=(3, 2), ad_chunk=8, scaling_steps=10, scaling_n=(16, 32), scaling_d=(24, 48), scaling_R=(2, 4),
            mem_seeds=3, mem_rhos=2, profile_steps=5,
        )


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


# ----------------------------------------------------------------------------- data


def make_data(seed: int, S: int | None, n: int, d: int, dtype: str, noise: float = 0.2):
    r"""Binary Gaussian mixture :math:`x = t\mu + g/\sqrt d` (:math:`\mu = 2e_1`, so
    :math:`\|x\|\approx 2`) with exactly ``floor(noise * n)`` flipped labels per dataset,
    drawn with NumPy (no compilation). ``S = None``: one dataset ``(n, d)``; else ``(S, n, d)``.

    Returns ``(X, t, noisy)``: inputs, training (noisy) labels, flip mask."""
    rng = np.random.default_rng(seed)
    lead = (n,) if S is None else (S, n)
    clean = np.where(rng.random(lead) < 0.5, 1.0, -1.0)
    g = rng.standard_normal(lead + (d,), dtype=np.float32).astype(dtype) / np.asarray(math.sqrt(d), dtype)
    g[..., 0] += 2.0 * clean.astype(dtype)
    ranks = np.argsort(np.argsort(rng.random(lead), axis=-1), axis=-1)
    mask = ranks < int(math.floor(noise * n + 1e-9))
    t = np.where(mask, -clean, clean).astype(dtype)
    return g, t, mask


# ----------------------------------------------------------------------------- NumPy reference


def _expit(x):
    from scipy.special import expit

    return expit(x)


def numpy_metrics(w, z, xn, rho, noisy):
    """:func:`linsam.fastsweep.default_metrics` in NumPy (margins ``z`` given)."""
    correct = (z > 0) + 0.5 * (z == 0)
    loss = np.logaddexp(0, -z)
    out = dict(loss=loss.mean(), train_acc=correct.mean(), w_norm=np.linalg.norm(w))
    s = _expit(-z)
    gn = s * xn
    sgn = _expit(-z + np.where((s > 0) & (xn > 0), rho * xn, 0)) * xn
    cl, nz = ~noisy, noisy
    out.update(
        train_acc_clean=correct[cl].mean(), train_acc_noisy=correct[nz].mean(),
        loss_clean=loss[cl].mean(), loss_noisy=loss[nz].mean(),
        grad_norm_clean=gn[cl].mean(), grad_norm_noisy=gn[nz].mean(),
        grad_norm_ratio=gn[cl].mean() / gn[nz].mean(),
        sam_grad_norm_clean=sgn[cl].mean(), sam_grad_norm_noisy=sgn[nz].mean(),
        sam_grad_norm_ratio=sgn[cl].mean() / sgn[nz].mean(),
    )
    return out


def numpy_reference_sweep(X, t, rho, lr, steps, record_every, noisy, runs=None):
    r"""The straightforward per-run NumPy loop the fast sweep is compared with.

    For each run ``r`` (one radius; ``X``, ``t``, ``noisy`` shared, or one per run when 3-D),
    ``steps`` times: :math:`z = t\odot Xw`, :math:`w \mathrel{+}= \frac{\eta}{n}X^\top
    (t\odot\sigma(-z + C))` with the 1-SAM shift of the core (two matrix-vector products),
    and the metrics of :func:`numpy_metrics` every ``record_every`` steps.

    Returns ``(w (runs, d), metrics name -> (runs, T))``.
    """
    X = np.asarray(X)
    dt = X.dtype
    per_run = X.ndim == 3
    runs = range(len(rho)) if runs is None else runs
    W, rec = [], []
    for r in runs:
        Xr = X[r] if per_run else X
        tr = np.asarray(t[r] if per_run else t, dt)
        nr = np.asarray(noisy[r] if per_run else noisy)
        n = Xr.shape[0]
        xn = np.linalg.norm(Xr, axis=1)
        rr = dt.type(rho[r])
        w = np.zeros(Xr.shape[1], dt)
        ms = []
        for i in range(steps + 1):
            z = tr * (Xr @ w)
            if i % record_every == 0:
                ms.append(numpy_metrics(w, z, xn, rr, nr))
            if i == steps:
                break
            C = np.where((_expit(-z) > 0) & (xn > 0), rr * xn, dt.type(0))
            w = w + dt.type(lr / n) * (Xr.T @ (tr * _expit(-z + C)))
        W.append(w)
        rec.append({k: np.array([m[k] for m in ms]) for k in ms[0]})
    return np.stack(W), {k: np.stack([m[k] for m in rec]) for k in rec[0]}


# ----------------------------------------------------------------------------- measurements


def _rhos(R):
    return np.linspace(0.0, 0.5, R)


def measure_memory(cfg: BenchConfig) -> dict:
    """Peak memory of the default sweep: XLA's buffer assignment for the compiled program
    (arguments + outputs + temporaries, from ``compiled.memory_analysis()``) and the
    process's peak resident set size (``resource.getrusage(...).ru_maxrss``) before/after.
    JAX on CPU has no ``device.memory_stats()``; where it has (GPU), its peak is reported too."""
    import jax

    from linsam._src import fastsweep as fs

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    X, t, mask = make_data(100, cfg.mem_seeds, cfg.n, cfg.d, "float32")
    rho, labels = fs.method_rho_grid(("gd", "one_sam"), np.linspace(0.05, 0.4, cfg.mem_rhos))
    plan = fs.plan_sweep(X, t, rho, lr=0.5, steps=cfg.steps, record_every=cfg.record_every, noisy=mask, dtype="float32")
    elapsed, compiled, out = _time_compiled(plan.fn, *plan.args)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ma = compiled.memory_analysis()
    xla = None
    if ma is not None:
        xla = dict(
            arguments=ma.argument_size_in_bytes, outputs=ma.output_size_in_bytes, temporaries=ma.temp_size_in_bytes,
            aliased=ma.alias_size_in_bytes,
        )
        xla["total"] = xla["arguments"] + xla["outputs"] + xla["temporaries"] - xla["aliased"]
    stats = jax.devices()[0].memory_stats()
    T = len(plan.steps)
    metrics_bytes = sum(np.asarray(v).nbytes for v in out[1].values())
    return dict(
        S=cfg.mem_seeds, R=len(rho), runs_label=f"gd + one_sam x {cfg.mem_rhos} rho", T=T, form=plan.form,
        elapsed=elapsed, rss_before=rss0, rss_after=rss1, xla=xla,
        device_peak=None if not stats else stats.get("peak_bytes_in_use"),
        data_bytes=int(np.asarray(X).nbytes), metrics_bytes=int(metrics_bytes),
        gram_bytes=cfg.mem_seeds * cfg.n * cfg.n * 4 if plan.form == "dual" else 0,
    )


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


def _sweep_row(kind, dt, variant, plan, steps_timed, cfg, total, limits):
    """``total``: seconds for all ``cfg.steps`` steps (measured, or extrapolated)."""
    from linsam._src import fastsweep as fs

    n, d, S, R, k = plan.n, plan.d, plan.S, plan.R, cfg.record_every
    isz = np.dtype(dt).itemsize
    per_step = total / cfg.steps
    flops = S * fs.flops_per_step(n, d, R, k, plan.form)
    nbytes = S * fs.bytes_per_step(n, d, R, k, isz, plan.form)
    row = dict(
        sweep=kind, dtype=dt, form=plan.form, variant=variant, seed_block=plan.seed_block, steps_timed=steps_timed,
        per_step=per_step, total=total, flops=flops / per_step, bytes=nbytes / per_step,
    )
    row["flop_fraction"] = row["flops"] / limits[f"gemm_{dt}"]["limit"]
    row["byte_fraction"] = row["bytes"] / limits["copy"]["limit"]
    return row


# (sweep, variant): form and seed_block passed to plan_sweep. "streaming" runs every dataset
# at once (X streamed from memory each step: the bandwidth measurement); "primal" and "auto"
# are what a user gets with form="primal" / the defaults.
_VARIANTS = {
    "a": (("primal", "primal", None), ("auto", "auto", None)),
    "b": (("streaming", "primal", "all"), ("primal", "primal", None), ("auto", "auto", None)),
}


def measure_sweeps(cfg: BenchConfig, limits: dict) -> tuple[list, dict]:
    """(a) shared data and (b) one dataset per run, float32 and float64, in the variants of
    ``_VARIANTS``; plus the NumPy per-run loop on the same data. Returns (rows, numpy rows)."""
    from linsam._src import fastsweep as fs

    _expit(np.zeros(1))  # import SciPy before any timing
    rows, np_rows = [], []
    for dt in ("float32", "float64"):
        steps = cfg.steps if dt == "float32" else cfg.steps_f64
        Xa, ta, ma = make_data(0, None, cfg.n, cfg.d, dt)
        Xb, tb, mb = make_data(1000, cfg.R, cfg.n, cfg.d, dt)
        rho = _rhos(cfg.R)
        for kind, (X, t, mask, r) in (("a", (Xa, ta, ma, rho)), ("b", (Xb, tb, mb, [0.25]))):
            timed = {}
            for variant, form, block in _VARIANTS[kind]:
                kw = dict(lr=0.5, record_every=cfg.record_every, noisy=mask, form=form, dtype=dt,
                          seed_block=cfg.R if block == "all" else None)
                plan = fs.plan_sweep(X, t, r, steps=steps, **kw)
                key = (plan.form, plan.seed_block)
                if key not in timed:  # a variant that resolves to an already timed program reuses its time
                    total = _time_compiled(plan.fn, *plan.args)[0]
                    if steps < cfg.steps:
                        # Shortened run: one-off work (Gram matrix, first logits, record 0) must not be
                        # scaled up with the steps. Time one record block too; the difference gives the
                        # marginal cost per step: total = T(k) + (T(steps) - T(k)) / (steps - k) * (S - k).
                        k = cfg.record_every
                        short = fs.plan_sweep(X, t, r, steps=k, **kw)
                        t_short = _time_compiled(short.fn, *short.args)[0]
                        total = t_short + max(total - t_short, 0.0) / (steps - k) * (cfg.steps - k)
                    timed[key] = total
                rows.append(_sweep_row(kind, dt, variant, plan, steps, cfg, timed[key], limits))
            # the NumPy loop: cfg.numpy_runs runs x cfg.numpy_steps steps, extrapolated
            # (each run timed on its own; the fastest run sets the rate: the baseline's best case)
            Xn, tn, mn = np.asarray(X), np.asarray(t), np.asarray(mask)
            rr = rho if kind == "a" else np.full(cfg.R, 0.25)
            per_run = []
            for run in range(min(cfg.numpy_runs, cfg.R)):
                t0 = time.perf_counter()
                numpy_reference_sweep(Xn, tn, rr, 0.5, cfg.numpy_steps, cfg.record_every, mn, runs=[run])
                per_run.append((time.perf_counter() - t0) / cfg.numpy_steps)
            per_run_step = min(per_run)
            np_rows.append(dict(
                sweep=kind, dtype=dt, runs=len(per_run), steps=cfg.numpy_steps, per_run_step=per_run_step,
                median_run_step=float(np.median(per_run)), total=per_run_step * cfg.R * cfg.steps,
            ))
    for r in np_rows:
        for row in rows:
            if row["sweep"] == r["sweep"] and row["dtype"] == r["dtype"] and row["variant"] in ("primal", "auto"):
                r[f"speedup_{row['variant']}"] = r["total"] / row["total"]
                r[f"form_{row['variant']}"] = row["form"]
    return rows, np_rows


def _loop_time(step, state, *data, steps):
    """Seconds per step of ``state <- step(state, *data)`` inside one jitted fori_loop
    (``data`` passed as arguments, never baked in as constants)."""
    import jax

    loop = jax.jit(lambda s, *a: jax.lax.fori_loop(0, steps, lambda i, s: step(s, *a), s))
    elapsed, _, _ = _time_compiled(loop, state, *data)
    return elapsed / steps


def measure_autodiff(cfg: BenchConfig) -> list:
    """Closed form vs generic autodiff (:mod:`linsam.rules`), time per step, float32."""
    import jax
    import jax.numpy as jnp

    from linsam._src import dln, logreg, rules

    rows = []
    lr, rho = 0.5, 0.1
    n, d = cfg.ad_logreg
    X, t, _ = (jnp.asarray(a) for a in make_data(7, None, n, d, "float32"))
    w0 = jnp.zeros(d, jnp.float32)
    ns = cfg.ad_steps[0]
    closed = _loop_time(lambda w, X, t: w - lr * logreg._one_sam(w, X, t, rho), w0, X, t, steps=ns)
    auto = _loop_time(lambda w, X, t: w - lr * rules._one_sam(logreg.MODEL, w, X, t, rho), w0, X, t, steps=ns)
    rows.append(dict(rule="1-SAM logistic", sizes=f"n={n}, d={d}", closed=closed, autodiff=auto, note="vmap, no chunks"))
    # The core closed form recomputes the row norms ||x_i|| at every call (a third pass over X);
    # the sweep's step (linsam.fastsweep) hoists them and reads a stored X^T: the same update.
    from linsam._src import fastsweep as fs

    xn = jnp.linalg.norm(X, axis=1)
    C0, XT = xn[:, None] * rho, fs._transpose(X)

    def hoisted(w, X, XT, t, C0, xn):
        c = fs._coefficients(fs._logits(X, w[:, None]), t, C0, xn > 0)
        return w + (lr / n) * fs._grad(XT, c)[:, 0]

    fast = _loop_time(hoisted, w0, X, XT, t, C0, xn, steps=ns)
    rows.append(dict(rule="1-SAM logistic, sweep step", sizes=f"n={n}, d={d}", closed=fast, autodiff=auto,
                     note="same closed form, row norms hoisted, X^T stored (linsam.fastsweep)"))
    n, d, h = cfg.ad_dln
    X, t, _ = (jnp.asarray(a) for a in make_data(8, None, n, d, "float32"))
    p0 = dln.init(jax.random.PRNGKey(0), d, h, 1.0, jnp.float32)
    upd = lambda p, g: jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g)  # noqa: E731
    ns = cfg.ad_steps[1]
    for name, method in (("1-SAM DLN", "one_sam"), ("J-SAM DLN", "jsam")):
        kern = dln.KERNELS[method]
        closed = _loop_time(lambda p, X, t, kern=kern: upd(p, kern(p, X, t, rho)), p0, X, t, steps=ns)
        auto = _loop_time(
            lambda p, X, t, method=method: upd(
                p, rules.unvalidated_direction(method, dln.MODEL, p, X, t, rho=rho, chunk_size=cfg.ad_chunk)
            ),
            p0, X, t, steps=ns,
        )
        rows.append(dict(rule=name, sizes=f"n={n}, d={d}, h={h}", closed=closed, autodiff=auto,
                         note=f"chunk_size={cfg.ad_chunk} (per-example grads of size h*d)"))
    for r in rows:
        r["speedup"] = r["autodiff"] / r["closed"]
    return rows


def _fit_exponent(xs, ys):
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def measure_scaling(cfg: BenchConfig) -> list:
    """Primal float32 shared-data sweep: ms per step against n, d and R (others at base;
    metrics: loss, train accuracy, ||w|| every ``record_every`` steps)."""
    from linsam._src import fastsweep as fs

    rows = []
    for axis, values in (("n", cfg.scaling_n), ("d", cfg.scaling_d), ("R", cfg.scaling_R)):
        times = []
        for v in values:
            size = dict(n=cfg.n, d=cfg.d, R=cfg.R)
            size[axis] = v
            X, t, _ = make_data(3, None, size["n"], size["d"], "float32")
            plan = fs.plan_sweep(X, t, _rhos(size["R"]), lr=0.5, steps=cfg.scaling_steps, record_every=cfg.record_every,
                                 form="primal", dtype="float32")
            elapsed, _, _ = _time_compiled(plan.fn, *plan.args)
            times.append(elapsed / cfg.scaling_steps)
        rows.append(dict(axis=axis, values=list(values), per_step=times, exponent=_fit_exponent(values, times)))
    return rows


def measure_profile(cfg: BenchConfig) -> list:
    """One primal float32 step taken apart: each part in its own jitted loop (ms per step).

    Each loop feeds its output back into the next iteration (through a cheap sum where the
    shapes differ) so XLA cannot hoist the work out of the loop."""
    import jax
    import jax.numpy as jnp

    from linsam._src import fastsweep as fs

    P = cfg.profile_steps
    coef = jax.vmap(fs._coefficients)
    out = []
    for kind in ("a", "b"):
        if kind == "a":
            X, t, _ = make_data(0, None, cfg.n, cfg.d, "float32")
            X, t, R = X[None], t[None], cfg.R
        else:
            X, t, _ = make_data(1000, cfg.R, cfg.n, cfg.d, "float32")
            R = 1
        X, t = jnp.asarray(X), jnp.asarray(t)
        S = X.shape[0]
        xn = jnp.linalg.norm(X, axis=2)
        C0 = xn[..., None] * jnp.asarray(_rhos(R), jnp.float32)
        W0 = jnp.zeros((S, cfg.d, R), jnp.float32)
        M0 = jnp.zeros((S, cfg.n, R), jnp.float32)
        XT = fs._transpose(X)
        logits, grad = jax.vmap(fs._logits), jax.vmap(fs._grad)  # the sweep's own GEMM layouts
        parts = {
            "logits M = X W": (lambda W, X, XT, t, C0, xn: W + 1e-9 * jnp.sum(logits(X, W)), W0),
            "gradient G = X^T C (stored X^T)": (lambda M, X, XT, t, C0, xn: M + 1e-9 * jnp.sum(grad(XT, M)), M0),
            "coefficients (sigmoid, mask)": (lambda M, X, XT, t, C0, xn: coef(M, t, C0, xn > 0), M0),
            "update W += lr/n G": (lambda W, X, XT, t, C0, xn: W + 1e-3 * W, W0),
        }

        def full(carry, X, XT, t, C0, xn):
            W, M = carry
            W = W + 1e-3 * grad(XT, coef(M, t, C0, xn > 0))
            return W, logits(X, W)

        rows = [(name, _loop_time(fn, s0, X, XT, t, C0, xn, steps=P)) for name, (fn, s0) in parts.items()]
        out.append(dict(sweep=kind, form="primal", S=S, R=R, parts=rows,
                        full=_loop_time(full, (W0, M0), X, XT, t, C0, xn, steps=P)))
        if kind == "b":  # the dual step of the same seed sweep
            K = jax.jit(jax.vmap(lambda X, XT: X @ XT))(X, XT)
            dparts = {
                "K C (batched matvec)": (lambda M, K, t, C0, xn: M + 1e-9 * jnp.sum(K @ M), M0),
                "coefficients (sigmoid, mask)": (lambda M, K, t, C0, xn: coef(M, t, C0, xn > 0), M0),
                "updates M += lr/n KC, A += C": (lambda M, K, t, C0, xn: (M[0] + 1e-3 * M[1], M[1] + M[0]), (M0, M0)),
            }

            def dfull(carry, K, t, C0, xn):
                M, A = carry
                C = coef(M, t, C0, xn > 0)
                return M + 1e-3 * (K @ C), A + C

            rows = [(name, _loop_time(fn, s0, K, t, C0, xn, steps=P)) for name, (fn, s0) in dparts.items()]
            out.append(dict(sweep=kind, form="dual", S=S, R=R, parts=rows,
                            full=_loop_time(dfull, (M0, M0), K, t, C0, xn, steps=P)))
    return out


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
    L = []
    add = L.append
    add("# linsam benchmarks")
    add("")
    add(f"Generated by `python -m bench{' --tiny' if cfg.name == 'tiny' else ''}` (linsam {res['version']}) "
        f"on {res['date']} in {res['wall']:.0f} s. All numbers below were measured in this one process, "
        "on this machine; timings are wall-clock, never asserted by tests. Re-run on a quiet machine "
        "before quoting them: the load average and the CPU time other processes used are recorded below.")
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
    # --- targets
    add("## Targets")
    add("")
    add("| target | dtype | form | measured | goal | met |")
    add("|---|---|---|---|---|---|")
    for r in res["sweeps"]:
        if r["sweep"] == "a" and r["variant"] == "primal":
            add(f"| (a) shared-data sweep: FLOP/s / GEMM FLOP/s | {r['dtype']} | primal | {r['flop_fraction']:.2f} "
                f"({_g(r['flops'])} / {_g(lim['gemm_' + r['dtype']]['limit'])} GFLOP/s) | >= {TARGET_ROOFLINE:.2f} | "
                f"{_met(r['flop_fraction'], TARGET_ROOFLINE)} |")
        elif r["sweep"] == "b" and r["variant"] in ("streaming", "primal"):
            what = ("streaming, all datasets at once" if r["variant"] == "streaming"
                    else f"default seed_block={r['seed_block']} (data from cache: an effective rate)")
            add(f"| (b) per-run-data sweep: bytes/s / copy bandwidth, {what} | {r['dtype']} | primal | "
                f"{r['byte_fraction']:.2f} ({_g(r['bytes'])} / {_g(lim['copy']['limit'])} GB/s) | "
                f">= {TARGET_ROOFLINE:.2f} | "
                f"{_met(r['byte_fraction'], TARGET_ROOFLINE)} |")
    for r in res["numpy"]:
        for req in ("primal", "auto"):
            if f"speedup_{req}" not in r:
                continue
            label = "primal" if req == "primal" else f"auto ({r['form_auto']})"
            add(f"| (c) sweep ({r['sweep']}) vs per-run NumPy loop | {r['dtype']} | {label} | "
                f"{r[f'speedup_{req}']:.1f}x | >= {TARGET_NUMPY_SPEEDUP:.0f}x | "
                f"{_met(r[f'speedup_{req}'], TARGET_NUMPY_SPEEDUP)} |")
    for ad in res["autodiff"][:2]:
        add(f"| closed form vs autodiff, {ad['rule']} ({ad['sizes']}) | float32 | - | {ad['speedup']:.1f}x | "
            f">= {TARGET_CLOSED_SPEEDUP:.0f}x | {_met(ad['speedup'], TARGET_CLOSED_SPEEDUP)} |")
    add("")
    # --- limits
    add("## Machine limits (measured in this run)")
    add("")
    add("| quantity | JAX (XLA) | NumPy | limit used |")
    add("|---|---|---|---|")
    for dt in ("float64", "float32"):
        g = lim[f"gemm_{dt}"]
        add(f"| GEMM {dt}, N in {list(cfg.gemm_sizes)}, best of {cfg.gemm_reps} (GFLOP/s) | {_g(g['jax'])} | "
            f"{_g(g['numpy'])} | {_g(g['limit'])} |")
    c = lim["copy"]
    add(f"| copy bandwidth, {cfg.copy_mib} MiB float32, read + write bytes (GB/s) | {_g(c['jax'])} | {_g(c['numpy'])} | "
        f"{_g(c['limit'])} |")
    add("")
    add("JAX's copy is `dst = q * src` into a donated buffer (XLA's threads); NumPy's is `np.copyto` (one thread). "
        "The limit used is the better of the two. A copy moves about 3 bytes for every 2 it counts (the written "
        "line is read first), so a read-only stream such as sweep (b) can exceed 1.0 of it.")
    add("")
    # --- sweeps
    add(f"## Linear 1-SAM sweeps (n = {cfg.n}, d = {cfg.d}, R = {cfg.R} runs, {cfg.steps} steps, metrics every "
        f"{cfg.record_every} steps)")
    add("")
    add("(a): one dataset shared by the R runs (a rho sweep: W is d x R, two GEMMs per step). "
        "(b): one dataset per run (a seed sweep: S = R datasets of one run each, two batched matvecs per step). "
        f"float32 sweeps are timed over all {cfg.steps} steps. float64 sweeps are timed over {cfg.steps_f64} steps and over "
        f"{cfg.record_every} steps, and **extrapolated** to {cfg.steps}: T({cfg.record_every}) + marginal cost per step x "
        f"({cfg.steps} - {cfg.record_every}), so one-off work (Gram matrix, first logits) is not scaled up. "
        "ms/step = time for all steps / steps. Clean/noisy metrics (20% symmetric label noise) at every record step.")
    add("")
    add("| sweep | dtype | variant | form | seed_block | steps timed | ms/step | time for all steps (s) | GFLOP/s | / GEMM "
        "| GB/s | / copy |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res["sweeps"]:
        add(f"| ({r['sweep']}) | {r['dtype']} | {r['variant']} | {r['form']} | {r['seed_block']} | {r['steps_timed']} | "
            f"{_ms(r['per_step'])} | {r['total']:.2f} | {_g(r['flops'])} | {r['flop_fraction']:.2f} | {_g(r['bytes'])} | "
            f"{r['byte_fraction']:.2f} |")
    add("")
    add("Variants: *primal* = `form=\"primal\"` with the default `seed_block`; *auto* = all defaults (`form=\"auto\"` "
        "picks the cheaper form); *streaming* = primal with every dataset at once (`seed_block=S`), each X read from "
        "memory twice per step: the bandwidth measurement. GFLOP/s and GB/s are the analytic counts below divided by the "
        "measured time; a cache-blocked or dual row can exceed the memory bandwidth because its data come from cache.")
    add("")
    add("## NumPy per-run loop (the baseline of target c)")
    add("")
    add(f"A plain Python loop over runs and steps, two NumPy matrix-vector products per step and the same metrics every "
        f"{cfg.record_every} steps (`linsam._src.benchmark.numpy_reference_sweep`; a test checks it follows the same "
        f"trajectory). Each of {cfg.numpy_runs} runs is timed alone over {cfg.numpy_steps} steps; the **fastest** run's time "
        f"per step is **extrapolated** to {cfg.R} runs x {cfg.steps} steps (the baseline's best case, so the speedups are "
        "conservative).")
    add("")
    add("| sweep | dtype | runs x steps timed | ms per run-step (best / median run) | extrapolated total (s) | "
        "speedup primal | speedup auto |")
    add("|---|---|---|---|---|---|---|")
    for r in res["numpy"]:
        sa = f"{r['speedup_auto']:.1f}x ({r['form_auto']})"
        add(f"| ({r['sweep']}) | {r['dtype']} | {r['runs']} x {r['steps']} | {_ms(r['per_run_step'])} / "
            f"{_ms(r['median_run_step'])} | {r['total']:.1f} | {r['speedup_primal']:.1f}x | {sa} |")
    add("")
    add("## Closed form vs generic autodiff (time per step, float32)")
    add("")
    add("| rule | sizes | closed form ms/step | autodiff ms/step | speedup | autodiff setting |")
    add("|---|---|---|---|---|---|")
    for r in res["autodiff"]:
        add(f"| {r['rule']} | {r['sizes']} | {_ms(r['closed'])} | {_ms(r['autodiff'])} | {r['speedup']:.1f}x | "
            f"{r['note']} |")
    add("")
    add(f"## Scaling (primal form, shared data, float32, {cfg.scaling_steps} steps per point)")
    add("")
    add(f"Each axis varied with the others at n = {cfg.n}, d = {cfg.d}, R = {cfg.R}; exponent = slope of log time "
        "against log size (least squares). The FLOP model 4ndR predicts 1 on every axis once the GEMMs dominate.")
    add("")
    add("| axis | values | ms/step | fitted exponent |")
    add("|---|---|---|---|")
    for r in res["scaling"]:
        add(f"| {r['axis']} | {', '.join(map(str, r['values']))} | {', '.join(_ms(x) for x in r['per_step'])} | "
            f"{r['exponent']:.2f} |")
    add("")
    mem = res["memory"]
    add("## Peak memory of the default sweep")
    add("")
    add(f"Default sweep: {mem['S']} seeds x ({mem['runs_label']}) = {mem['S']} x {mem['R']} runs, n = {cfg.n}, d = {cfg.d}, "
        f"{cfg.steps} steps, metrics every {cfg.record_every} steps ({mem['T']} records), float32, form {mem['form']}; "
        f"ran in {mem['elapsed']:.1f} s. Measured first in the process.")
    add("")
    add("| quantity | bytes |")
    add("|---|---|")
    if mem["xla"]:
        x = mem["xla"]
        add(f"| XLA buffers of the compiled sweep: arguments / outputs / temporaries | {_mib(x['arguments'])} / "
            f"{_mib(x['outputs'])} / {_mib(x['temporaries'])} |")
        add(f"| XLA peak (arguments + outputs + temporaries - aliased) | {_mib(x['total'])} |")
    if mem["device_peak"]:
        add(f"| device memory_stats peak_bytes_in_use | {_mib(mem['device_peak'])} |")
    else:
        add("| device memory_stats | not available on this backend |")
    add(f"| process peak RSS (ru_maxrss) before / after the sweep | {_mib(mem['rss_before'])} / {_mib(mem['rss_after'])} |")
    add(f"| of which: the datasets X (analytic) | {_mib(mem['data_bytes'])} |")
    if mem["gram_bytes"]:
        add(f"| of which: Gram matrices K (analytic, dual form) | {_mib(mem['gram_bytes'])} |")
    add(f"| of which: the recorded metrics (analytic) | {_mib(mem['metrics_bytes'])} |")
    add("")
    add("The process peak includes the Python interpreter, JAX, XLA's compiled code and the host copy of the "
        "inputs; the XLA figure is the program's own buffers.")
    add("")
    add("## Profile of one float32 step (where the time goes)")
    add("")
    add(f"Each part run alone in a jitted loop of {cfg.profile_steps} steps (all datasets at once); 'full step' is the "
        "whole step as the sweep runs it, without records.")
    add("")
    add("| sweep | part | ms/step | share of the sum of parts |")
    add("|---|---|---|---|")
    for p in res["profile"]:
        tot = sum(x for _, x in p["parts"])
        for name, x in p["parts"]:
            add(f"| ({p['sweep']}) {p['form']}, S={p['S']}, R={p['R']} | {name} | {_ms(x)} | {x / tot:.0%} |")
        add(f"| ({p['sweep']}) {p['form']} | **full step** | {_ms(p['full'])} | sum of parts {_ms(tot)} |")
    add("")
    add("## How the numbers are counted")
    add("")
    add("Per step of one dataset with R runs, record interval k (`linsam.fastsweep.flops_per_step`, `bytes_per_step`; "
        "s = bytes per number):")
    add("")
    add("- FLOPs, primal: 4ndR (X W and X^T C, a multiply-add = 2) + 2dR (update); dual: 2n^2R (K C) + 4nR + 2n^2R/k "
        "(K A for the norm of w at a record; W is rebuilt only at the end). Sigmoids and masks (about 10nR) are not counted.")
    add("- Bytes, primal: (2nd + 3dR) s (X read twice per step, W read twice and written once); "
        "dual: (n^2 + 4nR) s + n^2 s/k.")
    add("- Achieved rate = count x S / (measured time per step); fraction = achieved / limit measured above.")
    add("- Sweep (b) counts S = R datasets of one run each.")
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
        ("memory", "peak memory of the default sweep", lambda: measure_memory(cfg)),
        ("limits", "machine limits (GEMM, copy)", lambda: measure_limits(cfg)),
        ("sweeps", "linear 1-SAM sweeps and the NumPy loop", lambda: measure_sweeps(cfg, res["limits"])),
        ("autodiff", "closed form vs autodiff", lambda: measure_autodiff(cfg)),
        ("scaling", "scaling in n, d, R", lambda: measure_scaling(cfg)),
        ("profile", "profile of one step", lambda: measure_profile(cfg)),
    ]
    for key, label, fn in steps:
        t1 = time.perf_counter()
        log(f"[bench] {label} ...")
        value = fn()
        if key == "sweeps":
            res["sweeps"], res["numpy"] = value
        else:
            res[key] = value
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
    p = argparse.ArgumentParser(prog="python -m bench", description="linsam performance benchmark (see docs/performance.md)")
    add_arguments(p)
    return main_from_args(p.parse_args(argv))
