#!/usr/bin/env bash
# The one prepared device check of issue 6: `linsam cifar --preset budget` on one H200.
#
# SGD vs 1-SAM vs J-SAM, CIFAR-10 (JPEG copy), 30% symmetric label noise, ResNet-18 (LayerNorm,
# bf16 compute, float32 parameters), 10,000-image training subset, constant lr 0.01, batch 128,
# rho 0.01, no augmentation; per-method wall-clock caps (100 s, 160 s, 160 s, compile included)
# keep the whole call inside 8 minutes. docs/cifar.md ("Budget preset") has the arithmetic.
#
# STATUS: written and CPU-tested (tests/test_cifar.py runs the same code path), but NOT yet
# run on a device: the task that wrote it was not lent one. A session that has a device:
#   1. put the archive where the device copy of the tree can see it (an ignored path, carried):
#        mkdir -p out && cp ../shared/data/cifar10-jpeg.tar.gz out/
#   2. run:  run(command="bash bench/gpu_cifar.sh", carry=["out/cifar10-jpeg.tar.gz"], timeout_s=540)
#   3. commit $OUT/cifar_budget/results.json (and curves.png) under results/, with the machine
#      (the JSON's "device" field) and per method the peak test accuracy, its epoch and the
#      time per epoch in the note.
#
# The H200 machine has jax (CUDA), flax, optax and pillow for Python 3.12 preinstalled: no
# install, PYTHONPATH=. only. Exit status: that of `linsam cifar`, 124 on the outer timeout
# (results.json is rewritten after every epoch, so a timeout still leaves the epochs done).
set -euo pipefail

cd "$(dirname "$0")/.."
RESULTS="${OUT:-results}/cifar_budget"
LIMIT_S="${LIMIT_S:-470}"   # outer guard; the per-method caps sum to 420 s + start-up
PY="${PYTHON:-python3}"

DATA=""
for cand in "${LINSAM_CIFAR10:-}" out/cifar10-jpeg.tar.gz ../shared/data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz; do
  if [ -n "$cand" ] && [ -f "$cand" ]; then DATA="$cand"; break; fi
done
if [ -z "$DATA" ]; then
  echo "gpu_cifar.sh: no CIFAR-10 archive found (set LINSAM_CIFAR10, or carry out/cifar10-jpeg.tar.gz)" >&2
  exit 2
fi

export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export LINSAM_CACHE_DIR="${LINSAM_CACHE_DIR:-/tmp/linsam-cache}"
mkdir -p "$RESULTS"

"$PY" - <<'EOF'
import jax, platform
print("python", platform.python_version(), "jax", jax.__version__, "devices", jax.devices(), flush=True)
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

set +e
timeout --signal=TERM --kill-after=15 "$LIMIT_S" \
  "$PY" -m linsam.cli cifar --preset budget --data "$DATA" --out "$RESULTS" 2>&1 | tee "$RESULTS/log.txt"
rc=${PIPESTATUS[0]}
set -e

"$PY" - "$RESULTS/results.json" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
print("device:", r.get("device"))
for m, s in r["methods"].items():
    print(f"{m:8s} peak test acc {s['peak_test_acc']:.4f} at epoch {s['peak_epoch']}  "
          f"({s['completed_epochs']} epochs, {s['status']}, {s['mean_epoch_time_s']:.1f} s/epoch, "
          f"compile {s['compile_s']:.0f} s)")
print("gaps:", r.get("gaps"))
EOF
exit "$rc"
