"""Paper B's two comparisons on the embedded data, as tables in docs/studies/paper_b.md.

    python scripts/paper_b_tables.py run --table classify   # 4 rows x 3 seeds
    python scripts/paper_b_tables.py run --table taid       # 4 rows x 3 seeds
    python scripts/paper_b_tables.py table                  # rebuild both tables

``run`` trains every (row, seed) without a result file (``scripts/
seed_runs.py``: one ordinary ``train.py`` command per run, shown in the
table; resumable; ``--jobs`` at a time) and leaves one small JSON per run in
``docs/results/paper_b_<table>/``; ``table`` reads only those files and
writes the tables between the marker comments of docs/studies/paper_b.md. Every row
of a table shares the config, data, number of steps and the seeds 0, 1, 2
(``--config.seed``: data order, augmentation and initialisation), so rows
are compared seed by seed (paired differences).

Tables:

* ``classify``: configs/mnist5k_alif.py (paper B's MNISTNet at width 32 on
  the 4k/1k embedded MNIST subset): LIF = ALIF frozen at its initial values,
  PLIF (learned tau, fixed threshold: the neuron paper B compares against),
  paper B's ALIF (learned tau and threshold), ALIF + spike-triggered
  threshold adaptation. Held-out accuracy on the 1,000 validation images.
* ``taid``: configs/taid_inpaint.py (the spiking-decoder inpainting model on
  the embedded natural patches): rate, fixed-decay (FSVAE) and TAID decoders,
  and the same-size CNN. Hole PSNR, SSIM, masked MSE on the fixed eval set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import seed_runs  # noqa: E402
from scnn_jax.metrics.energy import energy_uj  # noqa: E402
from seed_runs import (Row, fmt_mean_sd, fmt_paired, machine_line,  # noqa: E402
                       paired)

SEEDS = (0, 1, 2)
DOC = seed_runs.REPO / "docs" / "studies" / "paper_b.md"
M = "--config.model."
CLASSIFY = "configs/mnist5k_alif.py"
TAID = "configs/taid_inpaint.py"

# The LIF row is ALIF frozen at its init in other units: v = 0.5 v + I with
# threshold 1 is ALIF's h = v + (x - v)/2 with threshold 0.5, membrane x2.
# The surrogate is evaluated on the LIF membrane, so the same ATan alpha
# would have half the width and twice the peak in ALIF's units; alpha 1
# gives exactly ALIF's input gradient (tests/test_neurons.py).
CLASSIFY_ROWS = [
    Row("lif", "LIF: ALIF frozen at its init (beta 0.5, threshold 1, "
        "ATan alpha 1 = ALIF's surrogate)", CLASSIFY,
        (M + "neuron=lif", M + "threshold=1.0", M + "surrogate_param=1.0")),
    Row("plif", "PLIF: learned tau, threshold fixed at 0.5", CLASSIFY,
        (M + "alif_learn_threshold=False",)),
    Row("alif", "ALIF, paper B: learned tau and threshold", CLASSIFY),
    Row("alif_adapt", "ALIF + threshold adaptation (+0.2 per spike, tau 4)",
        CLASSIFY, (M + "adaptation_increment=0.2",)),
]
TAID_ROWS = [
    Row("rate", "spiking, rate decoder (mean over T)", TAID,
        (M + "decoder=rate",)),
    Row("fixed_decay", "spiking, fixed-decay decoder (FSVAE, 0.8^(T-1-t))",
        TAID, (M + "decoder=fixed_decay",)),
    Row("taid", "spiking, TAID decoder (paper B)", TAID,
        (M + "decoder=taid",)),
    Row("cnn", "CNN baseline (same widths, no spikes)", TAID,
        (M + "name=cnn",)),
]
TABLES = {"classify": CLASSIFY_ROWS, "taid": TAID_ROWS}
PAPER_B = {"mnist": 99.78, "mnist_plif": 99.72, "cifar10": 93.89,
           "cifar10_plif": 93.72}


def table_name(table: str) -> str:
  return f"paper_b_{table}"


def _commands(rows) -> list[str]:
  lines = ["", "Commands (seed s > 0 adds `--config.seed=s`; seeds "
           + ", ".join(map(str, SEEDS)) + "):", ""]
  lines += [f"* {r.label}: `{seed_runs.shown_command(r, 0)}`" for r in rows]
  return lines


def classify_table(runs) -> str:
  acc = {name: {s: 100 * r["eval"]["accuracy"] for s, r in done.items()}
         for name, done in runs.items()}
  head = " | ".join(f"seed {s}" for s in SEEDS)
  lines = [f"| neuron | {head} | mean ± sd | row − ALIF, paired (points) "
           "| CPU / wall min per run |", "|---" * (len(SEEDS) + 4) + "|"]
  for row in CLASSIFY_ROWS:
    a = acc[row.name]
    cells = " | ".join(f"{a[s]:.1f} %" if s in a else "" for s in SEEDS)
    diff = ("(reference)" if row.name == "alif" else
            fmt_paired(paired(a, acc["alif"]), 2))
    lines.append(f"| {row.label} | {cells} | {fmt_mean_sd(a.values(), unit=' %')} "
                 f"| {diff} | {seed_runs.fmt_minutes(runs[row.name].values())} |")
  records = [r for done in runs.values() for r in done.values()]
  lines += [
      "",
      "Paired differences: mean ± sd over the seeds, the 95 % Student-t "
      "interval of the mean in brackets, then each seed's difference. "
      "Held-out accuracy on the 1,000 validation images of the embedded "
      "mnist5k subset (one image = 0.1 %; the binomial standard error of "
      "one run at 96 % is about 0.6 %). " + machine_line(records)]
  lines += _commands(CLASSIFY_ROWS)
  lines += [
      "",
      f"For reference only, paper B on the full datasets (60,000 / 50,000 "
      f"training images, width 128 / 256, 10,000 test images, one run per "
      f"row): MNIST {PAPER_B['mnist']} % (ALIF; PLIF "
      f"{PAPER_B['mnist_plif']} %), CIFAR-10 {PAPER_B['cifar10']} % (PLIF "
      f"{PAPER_B['cifar10_plif']} %). The rows above are on the embedded 5k "
      f"MNIST subset (4,000 training images) with a 4x narrower net trained "
      f"for minutes: they are not comparable to those figures, only to "
      f"each other."]
  return "\n".join(lines)


def taid_table(runs) -> str:
  lines = ["| model / decoder | hole PSNR (dB) | per seed | SSIM | masked MSE "
           "| PSNR | energy / image (µJ, est.) | CPU / wall min per run |",
           "|---|---|---|---|---|---|---|---|"]
  baselines = {}
  hole = {}
  for row in TAID_ROWS:
    done = runs[row.name]
    evals = {s: r["eval"] for s, r in done.items()}
    hole[row.name] = {s: e["hole_psnr"] for s, e in evals.items()}
    for r in done.values():
      baselines = r.get("baselines") or baselines
    col = lambda k, d: fmt_mean_sd([e[k] for e in evals.values()], d)  # noqa: E731
    per_seed = " / ".join(f"{e['hole_psnr']:.2f}" for e in evals.values())
    energy = [energy_uj(r) for r in done.values()]
    energy = fmt_mean_sd([e for e in energy if e is not None], 1)
    lines.append(f"| {row.label} | {col('hole_psnr', 2)} | {per_seed} "
                 f"| {col('ssim', 4)} | {col('masked_mse', 5)} "
                 f"| {col('psnr', 2)} | {energy} | {seed_runs.fmt_minutes(done.values())} |")
  for name, e in baselines.items():
    lines.append(f"| {name} (no learning) | {e['hole_psnr']:.2f} | | "
                 f"{e['ssim']:.4f} | {e['masked_mse']:.5f} | {e['psnr']:.2f} "
                 "| | |")
  lines += ["", "Paired differences of hole PSNR (dB; mean ± sd, 95 % "
            "Student-t interval, per seed):", "",
            "| comparison | difference |", "|---|---|"]
  for a, b, label in (("taid", "fixed_decay", "TAID − fixed decay (paper B's "
                       "claim)"), ("taid", "rate", "TAID − rate"),
                      ("fixed_decay", "rate", "fixed decay − rate"),
                      ("cnn", "taid", "CNN − TAID")):
    lines.append(f"| {label} | {fmt_paired(paired(hole[a], hole[b]))} |")
  records = [r for done in runs.values() for r in done.values()]
  lines += ["", "Mean ± sd over the seeds; metrics on the fixed eval set "
            "(256 patches of the two held-out photos, fixed masks); energy: "
            "`scnn_jax/metrics/energy.py` (arithmetic only, 45 nm figures, see "
            "docs/studies/quantiser.md). " + machine_line(records)]
  lines += _commands(TAID_ROWS)
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=("run", "table"))
  p.add_argument("--table", choices=("classify", "taid", "all"),
                 default="all")
  p.add_argument("--jobs", type=int, default=2)
  p.add_argument("--rows", default="", help="run: comma-separated row names "
                 "of the chosen table (default: all)")
  args = p.parse_args(argv)
  names = ("classify", "taid") if args.table == "all" else (args.table,)
  for table in names:
    rows = TABLES[table]
    if args.rows:
      known = {r.name for r in rows}
      unknown = sorted(set(args.rows.split(",")) - known)
      if unknown or len(names) > 1:
        p.error(f"--rows: unknown {unknown} for --table {args.table}; "
                f"allowed with one table: {', '.join(sorted(known))}")
      rows = [r for r in rows if r.name in args.rows.split(",")]
    if args.action == "run":
      seed_runs.run_all(table_name(table), rows, SEEDS, jobs=args.jobs)
      continue
    runs = seed_runs.collect(table_name(table), rows, SEEDS)
    text = (classify_table if table == "classify" else taid_table)(runs)
    seed_runs.write_block(DOC, f"{table}-table", text)
    print(text, flush=True)


if __name__ == "__main__":
  main()
