#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS_GPU.md in one go (about 6-8 minutes on one H100):
#
#   bash benchmarks/gpu_suite.sh OUTDIR      # OUTDIR: results, logs, BENCHMARKS_GPU.md
#
# Needs ONE python with jax[cuda], a CUDA build of torch and this repo's
# requirements (snnTorch/norse/spyx are not needed). Measures:
#  1. the reference network at B = 32 and B = 256, T = 8: scnn_jax (literal
#     network; default with shortcuts; plain jax.jit) against the
#     hand-written PyTorch loop, eager and under torch.compile; bf16
#     (model dtype vs PyTorch autocast) at B = 256;
#  2. chunk 8 + remat at T = 8 and T = 32: XLA step buffers and the peak
#     device memory of the training phase (goal: T = 32 <= 1.5x T = 8);
#  3. configs/paper_a.py (width 64, 3x128x128, B = 64) trainer throughput
#     and input_wait_fraction on the embedded photos (no download), with the
#     default reader threads and with data.num_workers=4.
# % of peak: the tables divide by the dense TF32 peak of an H100 SXM
# (494.7 TFLOP/s); the dense bf16 peak is twice that.
set -u -o pipefail
OUT=${1:?usage: bash benchmarks/gpu_suite.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

run_ref() {  # $1: tag; rest: reference_net.py arguments
  local tag=$1; shift
  timeout 200 "$PY" benchmarks/reference_net.py --gpu --peer-python "$PY" \
    --rounds 1 --steps 40 --steps-long 20 --budget 4 --no-extras --no-gate \
    --results-out "$OUT/$tag.json" --log "$OUT/$tag.log" --write '' "$@" \
    2>&1 | tee "$OUT/$tag.txt" | grep -v '^  ' || echo "$tag: failed or timed out"
}

# 1. Reference network, B = 32 and B = 256 (T = 8).
run_ref b32 --T 8 --impls scnn_jax pytorch --only main \
  --rows default literal plain compile
run_ref b256 --T 8 --batch 256 --impls scnn_jax pytorch --only main \
  --rows default literal bf16 compile
# 2. Remat: chunk 8 + remat at T = 8 and 32 (B = 32).
run_ref remat --T 8 --impls scnn_jax --only remat --remat-T 8 32 --chunk 8 \
  --remat-variants chunk-remat

# 3. Trainer throughput of configs/paper_a.py at 128x128 (B = 64).
for workers in 0 4; do
  wd="$OUT/paper_a_w$workers"
  rm -rf "$wd"
  timeout 150 "$PY" train.py --config configs/paper_a.py --workdir "$wd" \
    --config.data.source=embedded --config.data.name=natural \
    --config.data.num_eval=64 --config.data.num_workers=$workers \
    --config.train.steps=400 --config.train.log_every=50 \
    --config.train.eval_every=100000 --config.train.checkpoint_every=100000 \
    > "$wd.log" 2>&1 || echo "paper_a workers=$workers: failed or timed out"
  "$PY" - "$wd/metrics.jsonl" "$workers" <<'EOF' | tee -a "$OUT/paper_a.txt"
import json, statistics, sys
try:
  rows = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
  sys.exit(print(f"workers={sys.argv[2]}: no metrics"))
train = [r for r in rows if r.get("kind") == "train"][1:]  # first: compile
if not train:
  sys.exit(print(f"workers={sys.argv[2]}: no steady-state interval"))
med = lambda k: statistics.median(r[k] for r in train if k in r)
print(f"paper_a (128x128, B=64) num_workers={sys.argv[2]}: "
      f"{med('steps_per_s'):.1f} steps/s, input_wait_fraction "
      f"{med('input_wait_fraction'):.3f} (median of {len(train)} intervals)")
EOF
done

# BENCHMARKS_GPU.md from the records measured above.
"$PY" benchmarks/reference_net.py --gpu --peer-python "$PY" --T 8 \
  --only none --results-in "$OUT/b32.json" "$OUT/b256.json" "$OUT/remat.json" \
  --remat-T 8 32 --chunk 8 --results-out "$OUT/all.json" \
  --write "$OUT/BENCHMARKS_GPU.md" > "$OUT/report.txt" 2>&1
cat "$OUT/paper_a.txt"
echo "done: $OUT"
