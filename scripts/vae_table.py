"""The generation table and sample grids of docs/studies/paper_b_generation.md.

    python scripts/vae_table.py run              # FAD autoencoder + 2 rows x 3 seeds
    python scripts/vae_table.py table [--images docs/images]

``run`` trains the FAD autoencoder of the embedded MNIST 5k once
(``python -m scnn_jax.fad --config configs/fad_mnist5k.py``, workdir
``runs/tables_vae/fad_mnist5k``), then every (row, seed) of
``configs/vae_mnist5k.py`` without a result file (``scripts/seed_runs.py``:
resumable, one small JSON per run in ``docs/results/vae/``), and stores the
FAD of real training images against the held-out set (the floor a perfect
generator would reach with as many images) in ``docs/results/vae/
fad_floor.json``. ``table`` reads only those files and writes the table
between the marker comments of docs/studies/paper_b_generation.md; with ``--images`` it also
draws, from the seed-0 workdirs, a grid of 64 prior samples and a grid of
held-out images over their reconstructions per decoder (one seed: the
figures say so).

The rows differ only in ``model.image_decoder`` (TAID, paper B; fixed decay,
FSVAE) and share seeds 0, 1, 2 (``--config.seed``: data order, latent draws,
initialisation), so they are compared seed by seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import seed_runs  # noqa: E402
from seed_runs import (Row, fmt_mean_sd, fmt_paired, machine_line,  # noqa: E402
                       paired)

TABLE = "vae"
SEEDS = (0, 1, 2)
CONFIG = "configs/vae_mnist5k.py"
FAD = "--config.metrics.fad_workdir={runs}/fad_mnist5k"
ROWS = [
    Row("taid", "TAID (paper B)", CONFIG, (FAD,)),
    Row("fixed_decay", "fixed decay (FSVAE)", CONFIG,
        ("--config.model.image_decoder=fixed_decay", FAD)),
]
DOC = seed_runs.REPO / "docs" / "studies" / "paper_b_generation.md"
FLOOR = seed_runs.RESULTS / TABLE / "fad_floor.json"
COLUMNS = [("recon_mse", "recon MSE [0, 1]", 4),
           ("recon_mse_pm1", "recon MSE [-1, 1]", 4),
           ("fad", "FAD (lower is better)", 1),
           ("inception_score", "IS", 2),
           ("fid", "FID", 1)]


def runs_dir() -> Path:
  return seed_runs.REPO / "runs" / f"tables_{TABLE}"


def train_fad_autoencoder() -> None:
  workdir = runs_dir() / "fad_mnist5k"
  if (workdir / "fad_reference.npz").exists():
    return
  _, code = seed_runs.code_snapshot()
  workdir.parent.mkdir(parents=True, exist_ok=True)
  cmd = ["nice", "-n", "5", sys.executable, "-m", "scnn_jax.fad",
         "--config=configs/fad_mnist5k.py", f"--workdir={workdir}"]
  print("$", " ".join(cmd[3:]), flush=True)
  with open(workdir.parent / "fad_mnist5k.log", "a") as log:
    subprocess.run(cmd, cwd=code, stdout=log, stderr=subprocess.STDOUT,
                   check=True)


def real_data_fad() -> dict:
  """FAD of as many training images as held-out ones, against the held-out."""
  from scnn_jax import data
  from scnn_jax.tasks.generate import load_fad_scorer
  from scnn_jax.runtime import inference
  workdir = seed_runs.workdir_of(TABLE, ROWS[0], 0)
  config = inference.read_config(workdir)
  scorer = load_fad_scorer(runs_dir() / "fad_mnist5k")
  ds = data.build(config)
  held_out = ds.eval_set()["image"].astype(np.float32) / np.float32(255.0)
  n = len(held_out)
  train = np.stack([ds.train_example(i)["image"] for i in range(n)])
  return {"fad_floor": float(scorer.distance(train, held_out)), "images": n}


def _jit(fn):
  """``fn(model, *args)`` compiled once (eager NNX calls are slow)."""
  import jax
  from flax import nnx

  def call(model, *args):
    graph, state = nnx.split(model)
    return jax.jit(lambda s, *a: fn(nnx.merge(graph, s), *a))(state, *args)
  return call


def grids(workdir, out_dir, prefix, num_samples=64, num_recon=16, seed=0):
  """Writes ``<prefix>_samples.png`` and ``<prefix>_recon.png``."""
  import jax
  from scnn_jax import data
  from scnn_jax.runtime import inference
  from scnn_jax.data import images
  loaded = inference.load(workdir)
  model, config = loaded.model, loaded.config
  key = jax.random.key(seed)
  samples = np.asarray(_jit(lambda m, k: m.sample(num_samples, k))(model,
                                                                    key))
  rows = int(np.sqrt(num_samples))
  images.save_png(Path(out_dir) / f"{prefix}_samples.png",
                  images.grid([samples[i * rows:(i + 1) * rows]
                               for i in range(num_samples // rows)], scale=2))
  held_out = data.build(config).eval_set()["image"][:num_recon]
  held_out = held_out.astype(np.float32) / np.float32(255.0)
  recon = np.asarray(_jit(lambda m, x, k: m.reconstruct(x, key=k))(
      model, held_out, key))
  half = num_recon // 2
  images.save_png(Path(out_dir) / f"{prefix}_recon.png", images.grid(
      [held_out[:half], recon[:half], held_out[half:], recon[half:]],
      scale=2))


def table(runs) -> str:
  keys = [c for c in COLUMNS
          if any(c[0] in r["eval"] for d in runs.values() for r in d.values())]
  head = ["image decoder"] + [f"{c[1]}" for c in keys] + [
      "FAD per seed", "steps", "CPU / wall min per run"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for row in ROWS:
    done = runs[row.name]
    if not done:
      lines.append(f"| {row.label} | (not run) |" + " |" * (len(head) - 2))
      continue
    cells = [row.label]
    cells += [fmt_mean_sd([r["eval"][k] for r in done.values()
                           if k in r["eval"]], d) for k, _, d in keys]
    cells.append(" / ".join(f"{done[s]['eval']['fad']:.1f}" for s in
                            sorted(done) if "fad" in done[s]["eval"]))
    cells.append(str(next(iter(done.values()))["steps"]))
    cells.append(seed_runs.fmt_minutes(done.values()))
    lines.append("| " + " | ".join(cells) + " |")
  if FLOOR.exists():
    floor = json.loads(FLOOR.read_text())
    cells = [f"real training images (the floor: {floor['images']:,} real "
             "images vs the held-out set)"]
    cells += [f"{floor['fad_floor']:.1f}" if k == "fad" else "-"
              for k, _, _ in keys] + ["", "-", "-"]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Paired by seed, TAID − fixed decay (mean ± sd, 95 % "
            "Student-t interval, per seed):", ""]
  for k, label, d in keys:
    a = {s: r["eval"][k] for s, r in runs["taid"].items() if k in r["eval"]}
    b = {s: r["eval"][k] for s, r in runs["fixed_decay"].items()
         if k in r["eval"]}
    lines.append(f"* {label}: {fmt_paired(paired(a, b), d)}")
  records = [r for d in runs.values() for r in d.values()]
  lines += ["", machine_line(records), "", "Commands (seed s > 0 adds "
            "`--config.seed=s`), after `python -m scnn_jax.fad --config "
            "configs/fad_mnist5k.py --workdir runs/fad_mnist5k`:", ""]
  lines += [f"* {r.label}: `{seed_runs.shown_command(r, 0)}`" for r in ROWS]
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=("run", "table"))
  p.add_argument("--jobs", type=int, default=2)
  p.add_argument("--images", default=None,
                 help="write seed-0 sample / reconstruction grids here")
  p.add_argument("--prefix", default="vae_mnist5k")
  args = p.parse_args(argv)
  if args.action == "run":
    train_fad_autoencoder()
    seed_runs.run_all(TABLE, ROWS, SEEDS, jobs=args.jobs)
    if not FLOOR.exists() and seed_runs.load_result(TABLE, ROWS[0], 0):
      FLOOR.write_text(json.dumps(real_data_fad(), indent=1) + "\n")
    return
  runs = seed_runs.collect(TABLE, ROWS, SEEDS)
  text = table(runs)
  seed_runs.write_block(DOC, "vae-table", text)
  print(text)
  if args.images:
    for row in ROWS:
      grids(seed_runs.workdir_of(TABLE, row, 0), args.images,
            f"{args.prefix}_{row.name}")
      print(f"wrote {args.images}/{args.prefix}_{row.name}_"
            "{samples,recon}.png")


if __name__ == "__main__":
  main()
