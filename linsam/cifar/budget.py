r"""Sizing the ``budget`` preset: FLOPs and memory of the compiled programs, measured step costs.

The arithmetic (docs/cifar.md, "Budget preset", has the numbers):

.. math::

    t_{\mathrm{epoch}}(m) \in \Big[\max\Big(\frac{n}{B}\frac{C_m}{P}, \frac{n}{B}\frac{Q_m}{W}\Big),\;
    \frac{n}{B}\frac{C_m}{\eta_m P}\Big] + t_{\mathrm{eval}},

with :math:`C_m` and :math:`Q_m` the FLOPs and bytes of one training step of method
:math:`m` (:func:`program_costs`: XLA's cost analysis of the trainer's own compiled step),
:math:`n/B` the steps per epoch, :math:`P` the accelerator's peak rate in the compute dtype,
:math:`W` its memory bandwidth and :math:`\eta_m` the fraction of the peak the method's
convolutions reach (the unknown: batched convolutions for SGD, grouped per-example ones for the
SAM rules). :func:`forward_flops` gives the forward pass of one image, :func:`measure_step_seconds`
step times on this machine. The run itself does not rely on the estimate: the driver's time
plan (:func:`linsam.cifar.train.run_method`) charges measured costs and stops a method before
its deadline, and the results say so.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from linsam.cifar import data as cdata
from linsam.cifar import train as T
from linsam.cifar.resnet import STAGE_SIZES, ResNet18, init_variables


def forward_flops(width: int = 64, depth: int = 18, image: int = 32) -> float:
    """FLOPs of one forward pass of one image (XLA cost analysis of the compiled program)."""
    net = ResNet18(width=width, stage_sizes=STAGE_SIZES[depth])
    v = init_variables(net, 0)
    x = jnp.zeros((1, image, image, 3), jnp.float32)
    compiled = jax.jit(lambda v, x: net.apply(v, x)).lower(v, x).compile()
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca["flops"])


def synthetic_cifar(n_train: int, n_test: int, image: int = 32) -> cdata.CIFAR10:
    """Random uint8 images with labels ``i % 10`` (seed 0): the shape of CIFAR-10 for cost measurements."""
    rng = np.random.default_rng(0)
    return cdata.CIFAR10(rng.integers(0, 256, (n_train, image, image, 3), dtype=np.uint8),
                         np.arange(n_train, dtype=np.int32) % 10,
                         rng.integers(0, 256, (n_test, image, image, 3), dtype=np.uint8),
                         np.arange(n_test, dtype=np.int32) % 10, "synthetic", "synthetic", "jpeg")


def measure_step_seconds(methods, *, width=16, depth=18, batch=32, chunk=None, image=32, steps=3,
                         devices=None, verbose=True) -> dict:
    """Seconds per training step of each method on this machine (compile excluded, median of
    ``steps`` single-step blocks after one warm-up), on synthetic data of the given shape, over
    ``devices`` (default: every device; :class:`linsam.cifar.train.Trainer`). Per method:
    ``step_s``, ``compile_s`` and ``gflop_step`` (XLA's cost analysis of one step)."""
    ds = synthetic_cifar(batch * 2, batch, image)
    out = {}
    for m in methods:
        cfg = T.validate_config(T.CifarConfig(method=m, width=width, depth=depth, batch_size=batch, chunk_size=chunk,
                                              epochs=1, log_every=1, eval_batch_size=batch, augment=False))
        tr = T.Trainer(cfg, T.prepare_data(ds, cfg), devices=devices)
        state = tr.init_state()
        tr.calibrate(state)
        plan = tuple(jnp.asarray(a[:1]) for a in tr.epoch_plan(0))
        t0 = time.perf_counter()
        exe = tr._executable(state, plan)
        compile_s = time.perf_counter() - t0
        ca = exe.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        flops = float(ca["flops"]) * T.method_chunks(tr.method, batch)  # the block program holds one chunk
        state = exe(state, plan, tr.device_data, tr.hyper())
        jax.block_until_ready(state.params)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state = exe(state, plan, tr.device_data, tr.hyper())
            jax.block_until_ready(state.params)
            times.append(time.perf_counter() - t0)
        out[m] = {"step_s": float(np.median(times)), "compile_s": compile_s, "gflop_step": flops / 1e9}
        if verbose:
            print(f"{m}: {out[m]['step_s']:.3f} s/step (compile {compile_s:.1f} s)", flush=True)
    return out


def program_costs(methods, *, width=64, depth=18, batch=128, chunk=64, compute_dtype="float32", eval_batch=1000,
                  image=32, verbose=True) -> dict:
    """XLA cost and memory analysis of one training step of each method, and of one evaluation batch.

    Compiles the trainer's own block program (a block of one step, so the cost analysis of
    the ``lax.scan`` body is the cost of one step) for ``width``/``depth`` on synthetic data
    of the given shape, on this machine's backend. Returns per method ``flops`` (per step),
    ``bytes_accessed``, ``temp_bytes`` (scratch memory XLA plans for the step),
    ``argument_bytes`` (state + data + plan), ``state_bytes`` (parameters + momentum),
    ``compile_s``; and under ``"eval"`` the same for one batch of ``eval_batch`` images.
    On a CPU the memory numbers follow the CPU compiler's buffer assignment: an order of
    magnitude for a GPU, not its exact plan.
    """
    ds = synthetic_cifar(batch * 2, eval_batch, image)

    def analyse(compiled, t):
        ca = compiled.cost_analysis()
        if isinstance(ca, (list, tuple)):
            ca = ca[0]
        ma = compiled.memory_analysis()
        nan = float("nan")
        return {"flops": float(ca.get("flops", nan)), "bytes_accessed": float(ca.get("bytes accessed", nan)),
                "temp_bytes": int(getattr(ma, "temp_size_in_bytes", -1)),
                "argument_bytes": int(getattr(ma, "argument_size_in_bytes", -1)),
                "output_bytes": int(getattr(ma, "output_size_in_bytes", -1)), "compile_s": t}

    out = {}
    tr = None
    for m in methods:
        cfg = T.validate_config(T.CifarConfig(method=m, width=width, depth=depth, batch_size=batch, chunk_size=chunk,
                                              compute_dtype=compute_dtype, epochs=1, log_every=1,
                                              eval_batch_size=eval_batch, augment=False))
        tr = T.Trainer(cfg, T.prepare_data(ds, cfg))
        state = tr.init_state()
        tr.calibrate(state)
        plan = tuple(jnp.asarray(a[:1]) for a in tr.epoch_plan(0))
        t0 = time.perf_counter()
        lowered = T._train_block_program(tr.spec).lower(state, plan, tr.device_data, tr.hyper())
        compiled = lowered.compile(dict(T.COMPILER_OPTIONS) or None)
        out[m] = analyse(compiled, time.perf_counter() - t0)
        out[m]["state_bytes"] = int(sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(state)))
        # XLA's cost analysis counts a loop body once: the per-example methods run their chunks
        # in a lax.map loop, so their step costs ``chunks`` bodies (the rest of the step, the
        # optimizer update, is ~1e-4 of it).
        chunks = T.method_chunks(tr.method, batch)
        out[m].update(chunks=chunks, flops_raw=out[m]["flops"], bytes_accessed_raw=out[m]["bytes_accessed"],
                      flops=out[m]["flops"] * chunks, bytes_accessed=out[m]["bytes_accessed"] * chunks)
        if verbose:
            r = out[m]
            print(f"{m}: {r['flops'] / 1e9:.1f} GFLOP/step, {r['bytes_accessed'] / 1e9:.2f} GB accessed, temp "
                  f"{r['temp_bytes'] / 2**20:.0f} MiB, arguments {r['argument_bytes'] / 2**20:.0f} MiB "
                  f"(compile {r['compile_s']:.1f} s)", flush=True)
    if tr is not None:
        variables = {"params": tr.init_state().params}
        _, _, mean, std = tr.device_data
        args = (variables, jnp.asarray(ds.x_test[:eval_batch]), mean, std)
        t0 = time.perf_counter()
        compiled = T._eval_program(T._net_spec(tr.spec)).lower(*args).compile(dict(T.COMPILER_OPTIONS) or None)
        out["eval"] = analyse(compiled, time.perf_counter() - t0)
        out["eval"]["images"] = eval_batch
        if verbose:
            r = out["eval"]
            print(f"eval ({eval_batch} images): {r['flops'] / 1e9:.1f} GFLOP, temp {r['temp_bytes'] / 2**20:.0f} MiB "
                  f"(compile {r['compile_s']:.1f} s)", flush=True)
    return out


def epoch_time_range(costs: dict, *, steps: int, eval_images: int, peak_flops: float, bandwidth: float,
                     efficiency: dict) -> dict:
    """Seconds per epoch of each method: the roofline lower bound and an expected range.

    ``costs``: :func:`program_costs` output (``flops``/``bytes_accessed`` per step, ``"eval"``
    per batch of ``images``); ``steps`` per epoch; ``eval_images`` evaluated per epoch;
    ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s) of the accelerator; ``efficiency[m] =
    (low, high)`` fractions of the peak method ``m`` reaches (``"eval"`` for the evaluation).
    Returns per method ``lower_s`` (max of FLOPs and bytes at the peaks, plus the evaluation at
    its peak), ``expected_s = (fast, slow)``, ``train_tflop``.
    """
    ev = costs["eval"]
    eval_flops = ev["flops"] * eval_images / ev["images"]
    e_lo, e_hi = efficiency["eval"]
    out = {}
    for m, c in costs.items():
        if m == "eval":
            continue
        flops, nbytes = steps * c["flops"], steps * c["bytes_accessed"]
        lo, hi = efficiency[m]
        out[m] = {
            "train_tflop": flops / 1e12,
            "lower_s": max(flops / peak_flops, nbytes / bandwidth) + eval_flops / peak_flops,
            "expected_s": (flops / (hi * peak_flops) + eval_flops / (e_hi * peak_flops),
                           flops / (lo * peak_flops) + eval_flops / (e_lo * peak_flops)),
        }
    return out
