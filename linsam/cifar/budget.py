r"""Sizing the ``budget`` preset: FLOP count of the network and measured step costs.

The arithmetic (docs/cifar.md, "Budget preset", has the numbers):

.. math::

    t_{\mathrm{step}}(m) \approx c_m \cdot \frac{3\, F\, B}{\eta\, P},
    \qquad t_{\mathrm{epoch}}(m) = \frac{n}{B}\, t_{\mathrm{step}}(m) + t_{\mathrm{eval}},

with :math:`F` the forward FLOPs of one 32x32 image (:func:`forward_flops`, from XLA's cost
analysis), :math:`3F` a forward plus backward pass, :math:`B` the batch, :math:`P` the
accelerator's peak and :math:`\eta` the fraction of it a small-image ResNet reaches, and
:math:`c_m` the cost of method :math:`m` relative to SGD, measured on the CPU with the same
code (:func:`measure_step_seconds`). A per-method wall-clock cap (``time_limit_s``) makes the
run safe against a wrong :math:`\eta` or :math:`c_m` on the GPU: the run stops after the
last epoch that fits and the results say so.
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


def measure_step_seconds(methods, *, width=16, depth=18, batch=32, chunk=None, image=32, steps=3,
                         verbose=True) -> dict:
    """Seconds per training step of each method on this machine (compile excluded, median of
    ``steps`` single-step blocks after one warm-up), on synthetic data of the given shape."""
    rng = np.random.default_rng(0)
    n = batch * 2
    ds = cdata.CIFAR10(rng.integers(0, 256, (n, image, image, 3), dtype=np.uint8), np.arange(n, dtype=np.int32) % 10,
                       rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8),
                       np.arange(batch, dtype=np.int32) % 10, "synthetic", "synthetic", "jpeg")
    out = {}
    for m in methods:
        cfg = T.validate_config(T.CifarConfig(method=m, width=width, depth=depth, batch_size=batch, chunk_size=chunk,
                                              epochs=1, log_every=1, eval_batch_size=batch, augment=False))
        tr = T.Trainer(cfg, T.prepare_data(ds, cfg))
        state = tr.init_state()
        tr.calibrate(state)
        plan = tuple(jnp.asarray(a[:1]) for a in tr.epoch_plan(0))
        t0 = time.perf_counter()
        exe = tr._executable(state, plan)
        compile_s = time.perf_counter() - t0
        state = exe(state, plan, tr.device_data, tr.hyper())
        jax.block_until_ready(state.params)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state = exe(state, plan, tr.device_data, tr.hyper())
            jax.block_until_ready(state.params)
            times.append(time.perf_counter() - t0)
        out[m] = {"step_s": float(np.median(times)), "compile_s": compile_s}
        if verbose:
            print(f"{m}: {out[m]['step_s']:.3f} s/step (compile {compile_s:.1f} s)", flush=True)
    return out


def plan_budget(*, flops_per_image: float, cost_ratio: dict, n_train: int, batch: int, peak_flops: float,
                efficiency: float, eval_images: int, epochs: int) -> dict:
    """Predicted seconds per epoch and for ``epochs`` epochs of each method (formula above)."""
    sgd_step = 3.0 * flops_per_image * batch / (efficiency * peak_flops)
    eval_s = flops_per_image * eval_images / (efficiency * peak_flops)
    steps = n_train // batch
    out = {}
    for m, c in cost_ratio.items():
        epoch_s = steps * c * sgd_step + eval_s
        out[m] = {"step_s": c * sgd_step, "epoch_s": epoch_s, "run_s": epochs * epoch_s}
    return out
