"""The train step of a vmap ablation against one point's step (CPU or GPU).

    python benchmarks/ablation_step.py [--config configs/ablation.py]
        [--rounds 4] [--reps 3]

Builds, from the same config and batches, one point's train step and the
K-point stacked step with each way ``scnn_jax.runtime.steps.compile_steps`` can
run the points (``points_at_once``): a loop over the points (1, the CPU default)
and one ``jax.vmap`` of all K (the GPU / TPU default). Times them in interleaved
rounds (so a background load hits every variant alike) and prints the median and
min ms per step, the ratio K-point step / (K x one point) and the load average.
A ratio below 1 means the stacked step costs less per point than separate runs'
steps; start-up, compilation and evaluation, which separate runs pay K times,
are not counted (whole runs: ``benchmarks/ablation_vmap.py``). About a minute on
2 CPU cores for ``configs/ablation.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from scnn_jax import tasks  # noqa: E402
from scnn_jax.config import schema  # noqa: E402
from scnn_jax.config import files as config_files  # noqa: E402
from scnn_jax.runtime import ablation, steps  # noqa: E402
from scnn_jax.training import trainer  # noqa: E402


def stacked_variant(run, config, points_at_once):
  """``run`` with its stacked step compiled for ``points_at_once`` and its
  own copy of the state (the step donates it)."""
  train_fn, _ = steps.compile_steps(
      run.task, run.graphs, run.tx, run.mesh, config.train.nan_policy,
      stacked=True, ema_decay=config.train.ema_decay,
      points_at_once=points_at_once)
  return dataclasses.replace(run, train_fn=train_fn,
                             state=jax.tree.map(jnp.copy, run.state))


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--config", default=os.path.join(ROOT, "configs",
                                                   "ablation.py"))
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--reps", type=int, default=3, help="steps per round")
  args = ap.parse_args()
  config = schema.validate(config_files.load(args.config).get_config())
  if not ablation.enabled(config):
    raise SystemExit(f"{args.config} has no ablation grid")
  points = ablation.points(config)
  k = len(points)
  dataset = tasks.dataset(config)
  it = dataset.train_iterator(0, config.train.batch_size, 0, 1)
  batches = [next(it) for _ in range(3)]

  base = trainer.setup(config, dataset)
  runs = {"one point": trainer.setup(points[0].config, dataset),
          f"{k} points, loop": stacked_variant(base, config, 1),
          f"{k} points, vmap": stacked_variant(base, config, None)}
  for name, run in runs.items():
    t0 = time.perf_counter()
    jax.block_until_ready(run.train_step(batches[0]))
    print(f"{name}: compile + first step {time.perf_counter() - t0:.1f} s",
          flush=True)
  times = {name: [] for name in runs}
  for _ in range(args.rounds):
    for name, run in runs.items():
      for i in range(args.reps):
        t0 = time.perf_counter()
        run.train_step(batches[i % len(batches)])
        jax.block_until_ready(run.state)
        times[name].append(time.perf_counter() - t0)
  one = np.median(times["one point"])
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, "
        f"load average {os.getloadavg()[0]:.2f} (1 min) after the rounds")
  for name, ts in times.items():
    ts = np.asarray(ts)
    ratio = "" if name == "one point" else (
        f"  = {np.median(ts) / (k * one):.2f} x {k} one-point steps")
    print(f"  {name:18s} median {1e3 * np.median(ts):8.1f} ms  "
          f"min {1e3 * ts.min():8.1f} ms{ratio}")


if __name__ == "__main__":
  main()
