#!/usr/bin/env bash
# The one prepared device check of issues 6 and 15: `linsam cifar --preset budget` on one H200.
#
# SGD (gd) vs 1-SAM (one_sam) vs J-SAM (jsam), CIFAR-10 (JPEG copy), 30% symmetric label noise, ResNet-18 (LayerNorm,
# true float32: the SAM rules need it, see docs/cifar.md), 10,000-image training subset,
# constant lr 0.01, batch 128, rho 0.01, no augmentation. The whole call is one `timeout` of
# LIMIT_S (330 s); inside it `linsam cifar` plans to end MARGIN_S (20 s) earlier and splits the
# time left over the methods (gd 1 : one_sam 2 : jsam 2), charging measured compile, training,
# evaluation and write times. docs/cifar.md ("Budget preset") has the arithmetic.
#
# STATUS: CPU-tested end to end (this script, narrow width, tiny subset: tests/test_cifar_script.py
# and docs/cifar.md), NOT yet run on a device. A session that has a device:
#   1. put the archive where the device copy of the tree can see it (an ignored path, carried):
#        mkdir -p out && cp ../shared/data/cifar10-jpeg.tar.gz out/
#   2. run:  run(command="bash bench/gpu_cifar.sh", carry=["out/cifar10-jpeg.tar.gz"], timeout_s=370)
#      (a fresh machine starts in a minute or two; 2 x 370 s + the start fit the 15-minute window,
#      so a failed first call can be rerun once)
#   3. commit $OUT/cifar_budget/{results.json,curves.png,log.txt} under results/, with the machine
#      (the JSON's "device" field) and per method the peak test accuracy, its epoch and the time
#      per epoch in the note.
#
# What comes back: $OUT/cifar_budget holds only results.json, curves.png and log.txt (a few
# hundred KB; the device returns at most 8 files of 16 MiB). Checkpoints (89 MB each at width 64)
# and the per-method results live in WORK, outside $OUT. A rerun on the same (warm) machine
# resumes from them and finds its compiled programs in XLA's persistent cache.
#
# The H200 machine has jax (CUDA), flax, optax, pillow and matplotlib for Python 3.12: no install,
# PYTHONPATH=. only; without matplotlib the figure is skipped with a warning. Extra arguments are
# passed on to `linsam cifar` (the CPU test adds --width 8 --train-subset 256 ...). Exit status:
# that of `linsam cifar` (0, or 2 for a refused argument/data), 124 when the guard stopped it;
# in every case results.json is rewritten at the end, methods the guard stopped marked "killed".
#
# Two modes (MODE, default "single"):
#   single          one GPU (`--devices 1`), exactly the run above, into $OUT/cifar_budget;
#   data-parallel   every GPU of the machine (no --devices: every device; the batch of 128 split over the
#                   mesh, parameters replicated; docs/scaling.md), into $OUT/cifar_budget_dp, same
#                   one-call window (LIMIT_S). On a multi-GPU machine: run(command="MODE=data-parallel
#                   bash bench/gpu_cifar.sh", carry=["out/cifar10-jpeg.tar.gz"], timeout_s=370).
#                   The batch (128) and the evaluation batch (1000) must split evenly: 1, 2, 4 or 8
#                   GPUs. Compare its per-epoch times with the single mode's (docs/scaling.md).
set -euo pipefail

cd "$(dirname "$0")/.."
MODE="${MODE:-single}"
case "$MODE" in
  single) DEV_FLAGS=(--devices 1); SUFFIX="" ;;
  data-parallel) DEV_FLAGS=(); SUFFIX="_dp" ;;
  *) echo "gpu_cifar.sh: MODE must be 'single' or 'data-parallel', got '$MODE'" >&2; exit 2 ;;
esac
RESULTS="${OUT:-results}/cifar_budget${SUFFIX}"
WORK="${LINSAM_CIFAR_WORK:-${TMPDIR:-/tmp}/linsam-cifar-budget${SUFFIX}}"
LIMIT_S="${LIMIT_S:-330}"   # outer guard of `linsam cifar`
MARGIN_S="${MARGIN_S:-20}"  # linsam plans to end this much earlier (SIGTERM grace: 15 s, then SIGKILL)
PY="${PYTHON:-python3}"

DATA=""
for cand in "${LINSAM_CIFAR10:-}" out/cifar10-jpeg.tar.gz ../shared/data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz; do
  if [ -n "$cand" ] && [ -e "$cand" ]; then DATA="$cand"; break; fi
done
if [ -z "$DATA" ]; then
  echo "gpu_cifar.sh: no CIFAR-10 archive found (set LINSAM_CIFAR10, or carry out/cifar10-jpeg.tar.gz)" >&2
  exit 2
fi

export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export LINSAM_CACHE_DIR="${LINSAM_CACHE_DIR:-${TMPDIR:-/tmp}/linsam-cache}"
export PYTHONUNBUFFERED=1
# XLA's persistent compilation cache: a rerun on the same (warm) machine skips the compiles
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/linsam-jax-cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}"
mkdir -p "$RESULTS" "$WORK"
LOG="$RESULTS/log.txt"
: > "$LOG"

{
  "$PY" -c 'import jax, platform; print("python", platform.python_version(), "jax", jax.__version__, "devices", jax.devices(), flush=True)'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  echo "mode $MODE; guard ${LIMIT_S}s, linsam total $((LIMIT_S - MARGIN_S))s; results in $RESULTS, work in $WORK; data $DATA"
} 2>&1 | tee -a "$LOG"

set +e
timeout --signal=TERM --kill-after=15 "$LIMIT_S" \
  "$PY" -c 'import sys; from linsam.cli import main; sys.exit(main())' cifar --preset budget --data "$DATA" --out "$RESULTS" --work-dir "$WORK" \
  --total-time-limit "$((LIMIT_S - MARGIN_S))" ${DEV_FLAGS[@]+"${DEV_FLAGS[@]}"} "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e

"$PY" - "$RESULTS" "$WORK" "$rc" <<'EOF' 2>&1 | tee -a "$LOG" || true
import json, os, sys
from linsam.cifar import train
out, work, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
agg = train.finalize(out, work_dir=work, killed=rc in (124, 137, 143))
print(f"exit status {rc}{' (stopped by the guard)' if rc in (124, 137, 143) else ''}; device: {agg.get('device')}")
for m in agg["methods"]:
    f = os.path.join(work, m, "results.json")
    print(f"{m:8s} data parallel: {json.load(open(f)).get('parallel') if os.path.exists(f) else None}")
for m, s in agg["methods"].items():
    peak = "none" if s["peak_test_acc"] is None else f"{s['peak_test_acc']:.4f} at epoch {s['peak_epoch']}"
    ept = "n/a" if s["mean_epoch_time_s"] is None else f"{s['mean_epoch_time_s']:.2f} s/epoch"
    comp = s.get("compile") or {}
    print(f"{m:8s} peak test acc {peak} ({s['completed_epochs']} epochs, {s['status']}, {ept}, compile "
          f"{s['compile_s'] if s['compile_s'] is None else round(s['compile_s'], 1)} s, "
          f"{comp.get('train_programs')} training program(s))")
print("gaps:", agg.get("gaps"))
for f in sorted(os.listdir(out)):
    print(f"returned: {f} {os.path.getsize(os.path.join(out, f))} bytes")
EOF
exit "$rc"
