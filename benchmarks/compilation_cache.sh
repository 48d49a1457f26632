#!/usr/bin/env bash
# Persistent compilation cache on CPU: a 20-step configs/base.py run (eval on
# 64 patches), cache off vs warm (filled by one cold run first), interleaved 3x,
# CPU seconds (user+sys) are reported beside wall time: compile work is CPU
# time, which the load of other jobs changes less than wall time.
#   bash benchmarks/compilation_cache.sh [OUT_DIR]     (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
lscpu | grep 'Model name'; grep -o 'avx2\|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; uptime
out="${1:-$(mktemp -d)}"; rm -rf "$out/cache"; mkdir -p "$out"
run() {  # $1 label, $2 cache flag
  /usr/bin/time -f "%e %U %S" -o "$out/$1".time python train.py --config configs/base.py \
    --config.train.steps=20 --config.train.log_every=10 --config.train.eval_every=20 \
    --config.data.num_eval=64 --workdir "$out/run_$1" --compilation_cache=$2 > "$out/$1".log 2>&1
  read -r wall user sys < "$out/$1.time"
  echo "$1 cache=$2 wall_s=$wall cpu_s=$(echo "$user + $sys" | bc) load=$(cut -d' ' -f1 /proc/loadavg)"
}
run cold "$out/cache"
for i in 1 2 3; do run "off$i" off; run "warm$i" "$out/cache"; done
du -sh "$out/cache"; ls "$out/cache" | wc -l
