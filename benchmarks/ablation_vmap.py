"""K = 8 ablation points trained vmapped in one program vs 8 separate runs.

    python benchmarks/ablation_vmap.py [--steps 150] [--width 16]

Each side is what a user would launch: the vmapped sweep is ONE
``train_and_evaluate`` of an 8-point config (tau x threshold of the base
SC-NN); the sequential side is 8 ``train_and_evaluate`` runs of the single
points. Every run is a fresh process (so compilation, data start-up and eval
count, and peak RSS is the process's own). Prints wall time, peak RSS and the
ratio vmapped / sequential (goal: <= 0.5, compilation included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from configs import base
from scnn_jax.runtime import ablation
from scnn_jax.training import trainer
c = base.get_config()
c.model.width = {width}
c.train.update(steps={steps}, log_every={steps}, eval_every={steps},
               checkpoint_every={steps}, num_sample_images=0)
c.data.num_eval = 64
c.ablation.grid = {{"model": {{"tau": [2.0, 5.0, 10.0, 40.0],
                               "threshold": [0.5, 1.0]}}}}
point = {point}
if point is not None:
  c = ablation.points(c)[point].config
t0 = time.time()
trainer.train_and_evaluate(c, {workdir!r})
from benchmarks.refnet import jax_common
print(json.dumps({{"wall_s": time.time() - t0,
                  "peak_rss_mb": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "dev_peak_mb": jax_common.device_peak_mb() or 0.0}}))
"""


def run(point, workdir, steps, width):
  code = CHILD.format(repo=str(REPO), width=width, steps=steps, point=point,
                      workdir=str(workdir))
  t0 = time.time()
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, cwd=REPO)
  if out.returncode:
    raise SystemExit(out.stderr[-3000:])
  result = json.loads(out.stdout.strip().splitlines()[-1])
  result["process_s"] = time.time() - t0
  return result


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=150)
  ap.add_argument("--width", type=int, default=16)
  args = ap.parse_args()
  import jax
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, "
        f"{args.steps} steps, width {args.width}, K = 8 (tau x threshold)")
  with tempfile.TemporaryDirectory() as tmp:
    vm = run(None, Path(tmp) / "vmapped", args.steps, args.width)
    print(f"vmapped sweep: {vm['process_s']:.1f} s, peak RSS "
          f"{vm['peak_rss_mb']:.0f} MB", flush=True)
    seq = []
    for k in range(8):
      seq.append(run(k, Path(tmp) / f"single{k}", args.steps, args.width))
      print(f"  single run {k}: {seq[-1]['process_s']:.1f} s, peak RSS "
            f"{seq[-1]['peak_rss_mb']:.0f} MB", flush=True)
  seq_s = sum(r["process_s"] for r in seq)
  seq_rss = max(r["peak_rss_mb"] for r in seq)
  ratio = vm["process_s"] / seq_s
  print()
  dev = vm["dev_peak_mb"] > 0  # accelerators report their allocator's peak
  head = "| | wall time (s) | peak RSS (MB) |" + (" peak device MB |" * dev)
  print(head)
  print("|---" * (head.count("|") - 1) + "|")
  seq_dev = max(r["dev_peak_mb"] for r in seq)
  print(f"| 8 points vmapped, one process | {vm['process_s']:.1f} | "
        f"{vm['peak_rss_mb']:.0f} |" + (f" {vm['dev_peak_mb']:.0f} |" * dev))
  print(f"| 8 sequential single runs | {seq_s:.1f} | {seq_rss:.0f} (max of 8) |"
        + (f" {seq_dev:.0f} (max of 8) |" * dev))
  print(f"\nwall-time ratio vmapped / sequential = {ratio:.2f} "
        f"(goal <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
  main()
