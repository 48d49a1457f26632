"""Does paper A's spiking layer use time? The table in docs/studies/quantiser.md.

    python scripts/quantiser_table.py run     # 11 rows x 3 seeds of configs/base.py
    python scripts/quantiser_table.py table   # rebuilds the tables from docs/results/

``run`` trains every (row, seed) that has no result file yet
(``scripts/seed_runs.py``: resumable, ``nice``d, ``--jobs`` at a time);
``table`` reads ``docs/results/quantiser/*.json`` only and writes the tables
between the marker comments of docs/studies/quantiser.md (and the
SC-NN vs CNN table of docs/studies/paper_a.md).

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
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import seed_runs  # noqa: E402
from seed_runs import Row, fmt_mean_sd, fmt_paired, machine_line, paired  # noqa: E402

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


DOC = seed_runs.REPO / "docs" / "studies" / "quantiser.md"
PAPER_A = seed_runs.REPO / "docs" / "studies" / "paper_a.md"
FIGURE = seed_runs.REPO / "docs" / "images" / "energy_quality.png"
HOLE = "hole_psnr"


def staircase_levels(T: int, refractory_steps: int = 0) -> list[int]:
  """Spike counts a neuron can reach in T steps from rest under a constant
  current (reset to zero): ``floor((T + R) / (n + R))`` for n = 1..T, and 0
  (``neurons.lif_constant_current``)."""
  R = refractory_steps
  return sorted({0} | {(T + R) // (n + R) for n in range(1, T + 1)})


def input_rate() -> float:
  """Mean of the clipped model input over the eval set: the firing
  probability of the Bernoulli-encoded input (``encoder=rate``)."""
  import numpy as np
  from ml_collections import config_flags  # noqa: F401  (config loading)
  import importlib.util
  from scnn_jax import tasks
  spec = importlib.util.spec_from_file_location(
      "base", seed_runs.REPO / BASE)
  base = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(base)
  total, count = 0.0, 0
  for b in tasks.dataset(base.get_config()).eval_batches(64, 0, 1):
    x = np.concatenate([b["image"] * (1 - b["mask"]), b["mask"]], -1)
    x = np.clip(x, 0, 1)[b["valid"] > 0]
    total, count = total + float(x.sum()), count + x.size
  return total / count


def _energies(runs, rate_in):
  from scnn_jax.metrics.energy import energy_uj
  return {name: {s: energy_uj(r, rate_in) for s, r in done.items()}
          for name, done in runs.items()}


def main_table(runs, energy) -> str:
  hole = {n: {s: r["eval"][HOLE] for s, r in d.items()} for n, d in
          runs.items()}
  lines = ["| row | hole PSNR (dB) | per seed | row − CNN, paired (dB) "
           "| SSIM | masked MSE | spike rate | SynOps / image "
           "| energy / image (µJ) | CPU / wall min per run |",
           "|---" * 10 + "|"]
  for row in ROWS:
    done = runs[row.name]
    if not done:
      lines.append(f"| {row.label} | (not run) |" + " |" * 8)
      continue
    ev = [r["eval"] for r in done.values()]
    per_seed = " / ".join(f"{hole[row.name][s]:.2f}" for s in sorted(done))
    diff = ("(reference)" if row.name == "cnn" else
            fmt_paired(paired(hole[row.name], hole["cnn"])))
    rates = [sum(e.get("spike_rate", {}).values()) for e in ev
             if e.get("spike_rate")]
    synops = [r["synops"] for r in done.values() if r.get("synops")]
    en = [v for v in energy[row.name].values() if v is not None]
    lines.append(
        f"| {row.label} | {fmt_mean_sd([e[HOLE] for e in ev])} | {per_seed} "
        f"| {diff} | {fmt_mean_sd([e['ssim'] for e in ev], 4)} "
        f"| {fmt_mean_sd([e['masked_mse'] for e in ev], 5)} "
        f"| {fmt_mean_sd(rates, 3) if rates else ''} "
        f"| {_sci(synops)} | {fmt_mean_sd(en, 0) if en else ''} "
        f"| {seed_runs.fmt_minutes(done.values())} |")
  base = next((r for d in runs.values() for r in d.values()), None)
  for name, e in (base or {}).get("baselines", {}).items():
    lines.append(f"| {name} (no learning) | {e[HOLE]:.2f} | | | "
                 f"{e['ssim']:.4f} | {e['masked_mse']:.5f} | | | | |")
  return "\n".join(lines)


def _sci(values) -> str:
  if not values:
    return ""
  mean, sd = seed_runs.mean_sd(values)
  return f"{mean:.2e}" + ("" if sd != sd else f" ± {sd:.1e}")


PAIRS = [
    ("staircase_noise0", "scnn_noise0", "closed-form staircase − LIF scan "
     "(noise off: same forward pass, different surrogate gradient)"),
    ("staircase", "scnn", "closed-form staircase − LIF scan (noise held "
     "over T)"),
    ("scnn", "scnn_noise0", "training noise held over T − no noise"),
    ("noise_step", "scnn", "fresh noise every step − held"),
    ("rate_enc", "scnn", "Bernoulli rate encoding − direct"),
    ("subtract", "scnn", "reset by subtraction − to zero"),
    ("T4", "scnn", "T = 4 − T = 8"),
    ("T16", "scnn", "T = 16 − T = 8"),
    ("T32", "scnn", "T = 32 − T = 8"),
    ("scnn", "cnn", "SC-NN − CNN"),
]


def pairs_table(runs) -> str:
  hole = {n: {s: r["eval"][HOLE] for s, r in d.items()} for n, d in
          runs.items()}
  lines = ["| comparison | hole PSNR difference (dB) |", "|---|---|"]
  for a, b, label in PAIRS:
    lines.append(f"| {label} | {fmt_paired(paired(hole[a], hole[b]))} |")
  return "\n".join(lines)


def staircase_steps(T: int, beta: float, threshold: float = 1.0):
  """[(count, lowest current)] of the staircase: the count is
  ``floor(T / n)`` from ``threshold / S_n`` up, ``S_n = sum_{j<n} beta^j``."""
  out, s_n = [], 0.0
  for n in range(1, T + 1):
    s_n += beta ** (n - 1)
    out.append((threshold / s_n, T // n))
  steps = {}
  for current, count in out:          # lowest current reaching each count
    steps[count] = min(current, steps.get(count, current))
  return sorted(steps.items(), key=lambda kv: kv[1])


def levels_table() -> str:
  import math
  lines = ["| T | spike counts reachable (reset to zero, from rest) "
           "| with a 1-step refractory period |", "|---|---|---|"]
  for T in (4, 8, 16, 32):
    lines.append(f"| {T} | {', '.join(map(str, staircase_levels(T)))} "
                 f"| {', '.join(map(str, staircase_levels(T, 1)))} |")
  beta = math.exp(-1 / 40)
  steps = staircase_steps(8, beta)
  lines += ["", "configs/base.py (T = 8, beta = exp(-1/40) = "
            f"{beta:.4f}, threshold 1): the rate decoder's output count / 8 "
            "is " + ", ".join(f"{c}/8 from I = {i:.3f}" for c, i in steps)
            + ", and 0 below."]
  return "\n".join(lines)


def paper_a_table(runs, energy) -> str:
  """The table of docs/studies/paper_a.md: SC-NN vs CNN."""
  lines = ["| method | hole PSNR (dB) | per seed | PSNR | SSIM | masked MSE "
           "| full MSE | energy / image (µJ, est.) | CPU / wall min |",
           "|---" * 9 + "|"]
  for name, label in (("scnn", "`scnn` (paper A: SpikingConv2d + 5 convs, "
                       "T = 8)"), ("cnn", "`cnn` (same net, spiking layer -> "
                                   "Conv2d + ReLU)")):
    done = runs[name]
    ev = [r["eval"] for r in done.values()]
    col = lambda k, d: fmt_mean_sd([e[k] for e in ev], d)  # noqa: E731
    per_seed = " / ".join(f"{done[s]['eval'][HOLE]:.2f}" for s in sorted(done))
    en = [v for v in energy[name].values() if v is not None]
    lines.append(f"| {label} | {col(HOLE, 2)} | {per_seed} | {col('psnr', 2)} "
                 f"| {col('ssim', 3)} | {col('masked_mse', 4)} "
                 f"| {col('full_mse', 4)} | {fmt_mean_sd(en, 0)} "
                 f"| {seed_runs.fmt_minutes(done.values())} |")
  base = next((r for d in runs.values() for r in d.values()), None)
  for name, e in (base or {}).get("baselines", {}).items():
    lines.append(f"| `{name}` baseline | {e[HOLE]:.2f} | | {e['psnr']:.2f} "
                 f"| {e['ssim']:.3f} | {e['masked_mse']:.4f} "
                 f"| {e['full_mse']:.4f} | | |")
  hole = {n: {s: r["eval"][HOLE] for s, r in runs[n].items()}
          for n in ("scnn", "cnn")}
  records = [r for n in ("scnn", "cnn") for r in runs[n].values()]
  lines += ["", "SC-NN − CNN, paired by seed (hole PSNR, dB; mean ± sd, "
            "95 % Student-t interval, per seed): "
            + fmt_paired(paired(hole["scnn"], hole["cnn"])) + ". "
            + machine_line(records)]
  return "\n".join(lines)


def plot(runs, energy, path=FIGURE) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  colors = plt.get_cmap("tab20").colors
  for k, row in enumerate(ROWS):
    done = runs[row.name]
    xs = [energy[row.name][s] for s in sorted(done)]
    ys = [done[s]["eval"][HOLE] for s in sorted(done)]
    if not done or None in xs:
      continue
    (mx, sx), (my, sy) = seed_runs.mean_sd(xs), seed_runs.mean_sd(ys)
    marker = "s" if row.name == "cnn" else ("D" if "staircase" in row.name
                                             else "o")
    color = colors[(2 * k) % 20 if k < 10 else 2 * (k - 10) + 1]
    ax.scatter(xs, ys, s=10, alpha=0.4, marker=marker, color=color)
    ax.errorbar(mx, my, xerr=None if sx != sx else sx,
                yerr=None if sy != sy else sy, fmt=marker, capsize=3,
                label=row.label, color=color)
  ax.set_xlabel("estimated arithmetic energy per 32x32 image (µJ, 45 nm; "
                "scnn_jax/metrics/energy.py)")
  ax.set_ylabel("hole PSNR (dB), 256 held-out patches")
  ax.set_title("configs/base.py variants: mean ± sd over seeds (dots: seeds)")
  ax.legend(fontsize=6.5, loc="lower right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=130)


def write_tables() -> None:
  runs = seed_runs.collect(TABLE, ROWS, SEEDS)
  rate_in = input_rate() if runs["rate_enc"] else None
  energy = _energies(runs, rate_in)
  records = [r for d in runs.values() for r in d.values()]
  note = machine_line(records)
  if rate_in is not None:
    note += (f" Rate-encoded input fires with probability {rate_in:.3f} "
             "per pixel and step (eval-set mean).")
  seed_runs.write_block(DOC, "quantiser-table",
                        main_table(runs, energy) + "\n\n" + note)
  seed_runs.write_block(DOC, "quantiser-pairs", pairs_table(runs))
  seed_runs.write_block(DOC, "staircase-levels", levels_table())
  if runs["scnn"] and runs["cnn"]:
    seed_runs.write_block(PAPER_A, "base-table", paper_a_table(runs, energy))
  plot(runs, energy)
  print(DOC.read_text())


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
    write_tables()


if __name__ == "__main__":
  main()
