"""The tau x threshold ablation of docs/studies/ablation.md, over seeds.

    python scripts/ablation_table.py run     # configs/ablation.py for seeds 0, 1, 2
    python scripts/ablation_table.py table   # the table + docs/images figure

``run`` trains configs/ablation.py (12 SC-NNs, tau x threshold, in one
vmapped program) once per seed (``--config.seed``: data order, masks, noise
and every point's init) through ``scripts/seed_runs.py`` (resumable; one
small JSON per seed in ``docs/results/ablation/`` holding all 12 points);
``table`` reads only those files, writes the table between the
``ablation-table`` markers of docs/studies/ablation.md and draws the
heatmap of the mean hole PSNR. Cells are compared seed by seed: the 12 points of one seed share
batches, masks and noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import seed_runs  # noqa: E402
from seed_runs import Row, fmt_mean_sd, fmt_paired, machine_line, paired  # noqa: E402

TABLE = "ablation"
SEEDS = (0, 1, 2)
ROW = Row("ablation", "configs/ablation.py", "configs/ablation.py")
DOC = seed_runs.REPO / "docs" / "studies" / "ablation.md"
FIGURE = seed_runs.REPO / "docs" / "images" / "ablation_tau_threshold.png"
HOLE = "hole_psnr"


def cells(runs) -> dict:
  """{(tau, threshold): {seed: point dict}}."""
  out = {}
  for seed, record in runs.items():
    for p in record["points"]:
      v = p["values"]
      key = (float(v["model.tau"]), float(v["model.threshold"]))
      out.setdefault(key, {})[seed] = p
  return dict(sorted(out.items()))


def table(runs) -> str:
  by_cell = cells(runs)
  lines = ["| tau | threshold | hole PSNR (dB) | per seed | masked MSE "
           "| SSIM | spike rate | SynOps / image | energy / image (µJ) |",
           "|---" * 9 + "|"]
  from scnn_jax.metrics.energy import E_AC, E_MAC, inpainting_energy
  record = next(iter(runs.values()))
  cfg = record["config"]
  shape = (cfg["data"]["image_size"],) * 2 + (cfg["data"]["channels"],)
  for (tau, thr), pts in by_cell.items():
    ev = [pts[s]["eval"] for s in sorted(pts)]
    rate = [sum(e["spike_rate"].values()) for e in ev]
    energy = [1e6 * inpainting_energy(cfg["model"], shape,
                                      e["spike_rate"])["energy_j"]
              for e in ev]
    synops = [pts[s]["synops"] for s in sorted(pts)]
    lines.append(
        f"| {tau:g} | {thr:g} | {fmt_mean_sd([e[HOLE] for e in ev])} "
        f"| {' / '.join(f'{e[HOLE]:.2f}' for e in ev)} "
        f"| {fmt_mean_sd([e['masked_mse'] for e in ev], 5)} "
        f"| {fmt_mean_sd([e['ssim'] for e in ev], 4)} "
        f"| {fmt_mean_sd(rate, 3)} | {sum(synops) / len(synops):.2e} "
        f"| {fmt_mean_sd(energy, 1)} |")
  hole = {k: {s: p["eval"][HOLE] for s, p in v.items()}
          for k, v in by_cell.items()}
  lines += ["", "Paired by seed (hole PSNR, dB; mean ± sd, 95 % Student-t "
            "interval, per seed):", ""]
  taus = sorted({k[0] for k in hole})
  for tau in taus:
    if (tau, 2.0) in hole and (tau, 1.0) in hole:
      lines.append(f"* tau {tau:g}: threshold 2 − threshold 1: "
                   f"{fmt_paired(paired(hole[(tau, 2.0)], hole[(tau, 1.0)]))}")
  best = max(hole, key=lambda k: sum(hole[k].values()) / len(hole[k]))
  if (40.0, 1.0) in hole and best != (40.0, 1.0):
    lines.append(f"* best mean cell (tau {best[0]:g}, threshold {best[1]:g})"
                 f" − paper A's (tau 40, threshold 1): "
                 f"{fmt_paired(paired(hole[best], hole[(40.0, 1.0)]))}")
  lines += ["", f"Energy: `scnn_jax/metrics/energy.py` ({E_MAC * 1e12:.1f} "
            f"pJ per MAC, {E_AC * 1e12:.1f} pJ per spike-driven AC). "
            + machine_line(runs.values())]
  return "\n".join(lines)


def plot(runs, path=FIGURE) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  by_cell = cells(runs)
  taus = sorted({k[0] for k in by_cell})
  thrs = sorted({k[1] for k in by_cell})
  mean = np.full((len(taus), len(thrs)), np.nan)
  sd = np.full_like(mean, np.nan)
  for (tau, thr), pts in by_cell.items():
    vals = [p["eval"][HOLE] for p in pts.values()]
    mean[taus.index(tau), thrs.index(thr)], sd[taus.index(tau),
                                               thrs.index(thr)] = \
        seed_runs.mean_sd(vals)
  fig, ax = plt.subplots(figsize=(5, 4))
  im = ax.imshow(mean, cmap="viridis", aspect="auto")
  for i in range(len(taus)):
    for j in range(len(thrs)):
      ax.text(j, i, f"{mean[i, j]:.2f}\n± {sd[i, j]:.2f}", ha="center",
              va="center", fontsize=8, color="w")
  ax.set_xticks(range(len(thrs)), [f"{t:g}" for t in thrs])
  ax.set_yticks(range(len(taus)), [f"{t:g}" for t in taus])
  ax.set_xlabel("threshold")
  ax.set_ylabel("tau (steps)")
  ax.set_title(f"hole PSNR (dB), mean ± sd over {len(runs)} seeds")
  fig.colorbar(im)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=("run", "table"))
  p.add_argument("--jobs", type=int, default=1)
  args = p.parse_args(argv)
  if args.action == "run":
    seed_runs.run_all(TABLE, [ROW], SEEDS, jobs=args.jobs)
    return
  runs = seed_runs.collect(TABLE, [ROW], SEEDS)[ROW.name]
  text = table(runs)
  seed_runs.write_block(DOC, "ablation-table", text)
  plot(runs)
  print(text)


if __name__ == "__main__":
  main()
