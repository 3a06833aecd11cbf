"""One process of the data-parallel / multi-host equality tests (tests/test_cifar_parallel.py).

Not a test module: run as ``python tests/dist_worker.py --devices K --out DIR [--coordinator
127.0.0.1:PORT --num-processes P --process-id I] [--bn]``. It exposes K CPU devices
(``--xla_force_host_platform_device_count``) before JAX starts, joins the multi-process
runtime when asked, then (every process, same arguments)

* trains a tiny CIFAR setup (8x8 images, batch 16, 4 steps) through
  :func:`linsam.cifar.train.run` (data parallel over every device of every process; process 0
  writes): a ReLU MLP for gd and nsam, the width-4 ResNet-6 with LayerNorm for one_sam (the
  autodiff per-example path, chunks of 2), and with ``--bn`` the ResNet-6 with BatchNorm for
  gd and nsam;
* runs small sweeps (:func:`linsam.simulate`, ``--sweeps``: logreg on the linear backend, the
  DLN on the scan backend; 3 seeds, 2 rhos, float64) whose seed axis the engine puts on the
  global mesh.

Process 0 writes DIR/summary.npz: every method's final parameters (from its checkpoint), its
per-epoch metrics, and the sweep's metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--devices", type=int, required=True)
p.add_argument("--out", required=True)
p.add_argument("--coordinator")
p.add_argument("--num-processes", type=int)
p.add_argument("--process-id", type=int)
p.add_argument("--bn", action="store_true")
p.add_argument("--sweeps", default="logreg", help="comma-separated: logreg (linear backend), dln (scan backend)")
args = p.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}")
os.environ["LINSAM_CIFAR_FAST_COMPILE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_cifar's synthetic data

import time  # noqa: E402

T0 = time.perf_counter()


def mark(what):
    print(f"[{time.perf_counter() - T0:6.1f}s] {what}", flush=True)


import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from linsam._src.engine import shard  # noqa: E402

shard.initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout_s=60)
mark("jax started")

import numpy as np  # noqa: E402

from linsam import simulate as sim  # noqa: E402
from linsam.cifar import data as cdata  # noqa: E402
from linsam.cifar import train as T  # noqa: E402
from linsam.data import MixtureSpec, NoiseSpec  # noqa: E402


def synthetic(seed=0, n_train=64, n_test=16, size=8):
    rng = np.random.default_rng(seed)
    y_tr, y_te = np.arange(n_train, dtype=np.int32) % 10, np.arange(n_test, dtype=np.int32) % 10
    x_tr = rng.integers(0, 256, (n_train, size, size, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8)
    return cdata.CIFAR10(x_tr, y_tr, x_te, y_te, "synthetic", f"synthetic:{seed}", "jpeg")


def cfg(method, **kw):
    base = dict(method=method, noise_rate=0.25, epochs=1, batch_size=16, lr=0.05, width=16, depth=1, arch="mlp",
                norm="none", chunk_size=2, eval_batch_size=16, eval_train_size=None, log_every=2, rho=0.05,
                augment=True)
    base.update(kw)
    return T.CifarConfig(**base)


out = Path(args.out)
summary = {"devices": np.asarray(jax.device_count()), "processes": np.asarray(jax.process_count())}
runs = {"mlp": [cfg(m) for m in ("gd", "nsam")],
        "res": [cfg("one_sam", arch="resnet", depth=6, width=4, norm="layer")]}
if args.bn:
    runs["bn"] = [cfg(m, arch="resnet", depth=6, width=4, norm="batch") for m in ("gd", "nsam")]
for tag, configs in runs.items():
    work = out / tag
    T.run(configs, work, dataset=synthetic(), verbose=False, plot=False, fresh=True)
    shard.barrier(f"{tag} written")
    mark(f"cifar {tag} done")
    if shard.is_primary():
        for c in configs:
            r = json.loads((work / c.method / "results.json").read_text())
            assert r["parallel"]["devices"] == jax.device_count(), r["parallel"]
            for k in ("test_loss", "train_loss", "last_layer_norm", "feature_norm"):
                summary[f"{tag}/{c.method}/{k}"] = np.asarray([e[k] for e in r["epochs"]])
            with np.load(work / c.method / "checkpoint.npz") as z:
                for name in z.files:
                    if name.startswith("leaf_"):
                        summary[f"{tag}/{c.method}/{name}"] = z[name]

base = sim.SimConfig(name="dist", n=12, steps=6, record_every=2, record_dense=2, lr=0.5, rhos=(0.0, 0.7),
                     num_seeds=3, methods=("gd", "one_sam"), init_scale=1.0, hidden=3, dtype="float64",
                     data=MixtureSpec("isotropic", 5, 1.0, sigma=0.8), noise=NoiseSpec("symmetric", 0.25))
sweeps = {"logreg": base, "dln": base.replace(model="dln", methods=("gd", "one_sam", "jsam"))}
for tag in [t for t in args.sweeps.split(",") if t]:
    c = sweeps[tag]
    res = sim.simulate(c, progress=False)
    mark(f"sweep {tag} done")
    for k, v in res.metrics.items():
        summary[f"sweep/{tag}/{k}"] = np.asarray(v)
if shard.is_primary():
    np.savez(out / "summary.npz", **summary)
    print(f"worker: {jax.process_count()} process(es), {jax.device_count()} devices: wrote {out / 'summary.npz'}",
          flush=True)
