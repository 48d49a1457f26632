"""Does paper A's spiking layer use time? The table in docs/spiking_time.md.

    python scripts/quantiser_table.py run     # 11 rows x 3 seeds of configs/base.py
    python scripts/quantiser_table.py table   # rebuilds the tables from docs/results/

``run`` trains every (row, seed) that has no result file yet
(``scripts/seed_runs.py``: resumable, ``nice``d, ``--jobs`` at a time);
``table`` reads ``docs/results/quantiser/*.json`` only and writes the tables
between the marker comments of docs/spiking_time.md.

Every row is configs/base.py (1,500 steps of batch 32, same data, masks and
eval set) with one change:

* the base SC-NN, and the same net with its LIF scan replaced by the exact
  closed-form staircase (``model.neuron_solver=staircase``), with and without
  the training noise;
* variants in which time can matter: fresh noise at every step, Bernoulli
  rate encoding, reset by subtraction, T in {4, 16, 32} (base: T = 8);
* the CNN (the spiking layer replaced by Conv2d + ReLU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_runs  # noqa: E402
from seed_runs import Row  # noqa: E402

TABLE = "quantiser"
SEEDS = (0, 1, 2)
BASE = "configs/base.py"
M = "--config.model."
ROWS = [
    Row("scnn", "SC-NN, paper A (T = 8, LIF scan, noise held over T)", BASE),
    Row("cnn", "CNN (spiking layer -> Conv2d + ReLU)", BASE, (M + "name=cnn",)),
    Row("staircase_noise0", "staircase (closed form), noise off", BASE,
        (M + "neuron_solver=staircase", M + "noise_std=0")),
    Row("scnn_noise0", "SC-NN, noise off", BASE, (M + "noise_std=0",)),
    Row("staircase", "staircase (closed form), noise held over T", BASE,
        (M + "neuron_solver=staircase",)),
    Row("noise_step", "SC-NN, fresh noise every step", BASE,
        (M + "noise_resample=step",)),
    Row("rate_enc", "SC-NN, Bernoulli rate encoding", BASE,
        (M + "encoder=rate",)),
    Row("subtract", "SC-NN, reset by subtraction", BASE,
        (M + "reset=subtract",)),
    Row("T4", "SC-NN, T = 4", BASE, (M + "T=4",)),
    Row("T16", "SC-NN, T = 16", BASE, (M + "T=16",)),
    Row("T32", "SC-NN, T = 32", BASE, (M + "T=32",)),
]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=("run", "table"))
  p.add_argument("--rows", default="", help="comma-separated row names "
                 "(default: all)")
  p.add_argument("--jobs", type=int, default=2)
  args = p.parse_args(argv)
  rows = ROWS
  if args.rows:
    names = args.rows.split(",")
    unknown = sorted(set(names) - {r.name for r in ROWS})
    if unknown:
      p.error(f"--rows: unknown {unknown}; allowed: "
              f"{', '.join(r.name for r in ROWS)}")
    rows = [r for r in ROWS if r.name in names]
  if args.action == "run":
    seed_runs.run_all(TABLE, rows, SEEDS, jobs=args.jobs)
  else:
    raise SystemExit("table: not written yet")


if __name__ == "__main__":
  main()
