"""Batches/s of the training input pipeline alone (no model), by reader kind.

    python benchmarks/input_pipeline.py [--config configs/base.py] [--workers 1 2 4]

Reads ``--batches`` batches of ``train.batch_size`` from
``tasks.dataset(config).train_iterator`` with grain reader threads
(``data.num_threads``) and with worker processes (``data.num_workers``),
after a warm-up, in one process, and prints batches/s and images/s for each.
A trainer waits for input whenever its step takes less than 1 / (batches/s):
on an H100 the base config's step runs at ~135 steps/s (BENCHMARKS.md, GPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

from scnn_jax import tasks  # noqa: E402


def load_config(path):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def rate(config, batches, warmup=20):
  ds = tasks.dataset(config)
  it = ds.train_iterator(0, config.train.batch_size)
  t0 = time.perf_counter()
  for _ in range(warmup):
    next(it)
  start_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  dt = time.perf_counter() - t0
  if hasattr(it, "close"):
    it.close()
  return batches / dt, start_s


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--config", default=os.path.join(ROOT, "configs", "base.py"))
  ap.add_argument("--batches", type=int, default=400)
  ap.add_argument("--threads", type=int, nargs="+", default=[0, 2])
  ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
  args = ap.parse_args()
  flags.FLAGS.mark_as_parsed()
  config = load_config(args.config)
  b = config.train.batch_size
  print(f"{args.config}: batch {b}, {os.cpu_count()} cores, "
        f"{args.batches} batches after 20 warm-up")
  print("| reader | batches/s | images/s | first 20 batches s |")
  print("|---|---|---|---|")
  base = None
  for kind, values in (("threads", args.threads), ("workers", args.workers)):
    for n in values:
      config.data.num_threads = n if kind == "threads" else 0
      config.data.num_workers = n if kind == "workers" else 0
      r, start_s = rate(config, args.batches)
      base = base or r
      print(f"| {n} {kind[:-1] if n == 1 else kind} | {r:.0f} | {r * b:.0f} "
            f"| {start_s:.1f} |", flush=True)
  print(f"\n(first row = {base:.0f} batches/s; workers scale with free cores, "
        "threads share one core through the GIL)")


if __name__ == "__main__":
  main()
