"""Per-step cost of every CIFAR method on this machine, and the paper's full run on an H200 (estimate).

    PYTHONPATH=. python bench/cifar_scaling.py [--width 16] [--batch 32] [--out FILE.json]

For each method (:data:`linsam.rules.METHODS`) the trainer's own one-step block program
(ResNet-18, ``--width``, ``--batch``, one chunk, float32, LayerNorm) is compiled once; XLA's
cost analysis gives its FLOPs (x chunks, since a ``lax.map`` body is counted once) and the
median of ``--steps`` timed steps its seconds here. The full run of the paper (ResNet-18 at
width 64, batch 128, 200 epochs of 50,000 images = 78,000 steps, and 200 evaluations of
20,000 images) is then FLOPs(width 64, batch 128) = FLOPs(here) x (64 / width)^2 x (128 /
batch) (convolution FLOPs scale with the square of the width; checked against the measured
width-64 SGD step, 372.3 GFLOP, docs/cifar.md) at an assumed fraction of the H200's float32
peak (67 TFLOP/s): 30-60% for SGD's batched convolutions, n-SAM and the evaluation, 5-40% for
the per-example rules (grouped convolutions). Those are estimates until a device measures them
(``bench/gpu_cifar.sh``); docs/scaling.md has the table this prints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

from linsam import rules  # noqa: E402
from linsam.cifar.budget import measure_step_seconds  # noqa: E402

PEAK_FLOPS = 67e12  # H200 float32 (no TF32), datasheet
STEPS, EVAL_IMAGES, EPOCHS = 78_000, 20_000, 200  # 390 steps x 200 epochs; 10,000 test + 10,000 train per epoch
#: Methods whose passes are per example (vmap: grouped convolutions); the rest are batched.
PER_EXAMPLE = ("one_sam", "lsam", "jsam", "jreg")
#: Assumed fractions of the float32 peak (low, high). Batched: 10-50% (a ResNet-18 on 32x32
#: images at batch 128 keeps a large GPU far from its peak); per example: 3-30%.
EFFICIENCY = {"batched": (0.10, 0.50), "per_example": (0.03, 0.30), "eval": (0.10, 0.50)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--methods", default=",".join(rules.METHODS))
    p.add_argument("--out")
    p.add_argument("--table-from", help="skip the measurement: the estimates from a saved --out file")
    a = p.parse_args(argv)
    if a.table_from:
        info = json.loads(Path(a.table_from).read_text())
        estimate(info["methods"], info["width"], info["batch"])
        if a.out:
            Path(a.out).write_text(json.dumps(info, indent=1) + "\n")
        return 0
    rows = {}
    scale = (64 / a.width) ** 2 * (128 / a.batch)
    meas = measure_step_seconds(a.methods.split(","), width=a.width, depth=18, batch=a.batch, chunk=None,
                                steps=a.steps, devices=1)
    for m, r in meas.items():
        flops = r["gflop_step"] * 1e9
        rows[m] = {"step_s_cpu": r["step_s"], "gflop_step": r["gflop_step"], "compile_s": r["compile_s"],
                   "gflop_step_w64_b128": flops * scale / 1e9}
        print(f"{m:10s} {rows[m]['step_s_cpu']:.3f} s/step here, {flops / 1e9:.2f} GFLOP/step "
              f"(compile {r['compile_s']:.0f} s)", flush=True)
    info = {"host": platform.node(), "cpus": os.cpu_count(), "jax": jax.__version__, "width": a.width,
            "batch": a.batch, "methods": rows}
    estimate(rows, a.width, a.batch)
    if a.out:
        Path(a.out).write_text(json.dumps(info, indent=1) + "\n")
    return 0


def estimate(rows: dict, width: int, batch: int) -> None:
    """Add the full-run estimates to ``rows`` and print the table."""
    # evaluation: 3 F per image for SGD's step means F = gd / (3 batch); the forward pass only
    f_fwd = rows["gd"]["gflop_step_w64_b128"] / (3 * 128) if "gd" in rows else 0.970
    eval_pflop = EPOCHS * EVAL_IMAGES * f_fwd * 1e9 / 1e15
    for m, r in rows.items():
        lo, hi = EFFICIENCY["per_example" if m in PER_EXAMPLE else "batched"]
        e_lo, e_hi = EFFICIENCY["eval"]
        train = STEPS * r["gflop_step_w64_b128"] * 1e9
        fast = train / (hi * PEAK_FLOPS) + eval_pflop * 1e15 / (e_hi * PEAK_FLOPS)
        slow = train / (lo * PEAK_FLOPS) + eval_pflop * 1e15 / (e_lo * PEAK_FLOPS)
        r.update(train_pflop=train / 1e15, h200_hours=(fast / 3600, slow / 3600),
                 h200x8_hours=(fast / 8 / 3600, slow / 8 / 3600))
    print(f"\n| method | CPU s/step (w{width}, b{batch}) | GFLOP/step (w64, b128) | full run PFLOP | "
          "1 x H200 (h, estimate) | 8 x H200 (h, estimate) |\n|---|---|---|---|---|---|")
    for m, r in rows.items():
        print(f"| {m} | {r['step_s_cpu']:.3f} | {r['gflop_step_w64_b128']:.0f} | {r['train_pflop']:.1f} | "
              f"{r['h200_hours'][0]:.1f} - {r['h200_hours'][1]:.1f} | "
              f"{r['h200x8_hours'][0]:.2f} - {r['h200x8_hours'][1]:.2f} |")
    print(f"(evaluation: {eval_pflop:.1f} PFLOP over the run, in every row; efficiency {EFFICIENCY})")


if __name__ == "__main__":
    sys.exit(main())
