"""The generation table and sample grids of docs/generation.md.

    python scripts/vae_table.py \\
        --workdirs runs/vae_mnist5k_taid runs/vae_mnist5k_fixed_decay \\
        --fad_workdir runs/fad_mnist5k --images docs/images

Reads each trained workdir (results.json, config.json, latest checkpoint),
prints a markdown table (reconstruction MSE, FAD, IS / FID where computed,
training time) and writes, per run, a grid of 64 prior samples and a grid of
held-out images over their reconstructions. With ``--fad_workdir`` it adds
the FAD of real training images against the held-out set: the value a
perfect generator would get with as many images (the floor of the table).

The workdirs come from (docs/generation.md has the full recipe):

    python -m scnn_jax.fad --config configs/fad_mnist5k.py --workdir runs/fad_mnist5k
    python train.py --config configs/vae_mnist5k.py \\
        --workdir runs/vae_mnist5k_taid --config.metrics.fad_workdir=runs/fad_mnist5k
    python train.py --config configs/vae_mnist5k.py \\
        --workdir runs/vae_mnist5k_fixed_decay \\
        --config.model.image_decoder=fixed_decay \\
        --config.metrics.fad_workdir=runs/fad_mnist5k
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from scnn_jax import data, images, inference  # noqa: E402

COLUMNS = [("recon_mse", "recon MSE [0,1]", "{:.4f}"),
           ("recon_mse_pm1", "recon MSE [-1,1]", "{:.4f}"),
           ("fad", "FAD", "{:.2f}"),
           ("inception_score", "IS", "{:.2f}"),
           ("fid", "FID", "{:.1f}")]


def _jit(fn):
  """``fn(model, *args)`` compiled once (eager NNX calls are slow)."""
  def call(model, *args):
    graph, state = nnx.split(model)
    return jax.jit(lambda s, *a: fn(nnx.merge(graph, s), *a))(state, *args)
  return call


def grids(workdir, out_dir, prefix, num_samples=64, num_recon=16, seed=0):
  """Writes ``<prefix>_samples.png`` and ``<prefix>_recon.png``."""
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


def real_data_fad(fad_workdir, config) -> float:
  """FAD of as many training images as held-out ones, against the held-out."""
  from scnn_jax import fad
  scorer = fad.FadScorer.load(fad_workdir)
  ds = data.build(config)
  held_out = ds.eval_set()["image"].astype(np.float32) / np.float32(255.0)
  n = len(held_out)
  train = np.stack([ds.train_example(i)["image"] for i in range(n)])
  return scorer.distance(train, held_out)


def table(workdirs, fad_workdir=None) -> str:
  rows = []
  config = None
  for w in workdirs:
    res = json.loads((Path(w) / "results.json").read_text())
    config = inference.read_config(w)
    m = config.model
    name = (f"{m.latent} latent, {m.image_decoder} decoder, T={m.T}")
    rows.append((name, res["eval"], res))
  keys = [c for c in COLUMNS if any(c[0] in r[1] for r in rows)]
  head = ["run"] + [c[1] for c in keys] + ["steps", "train time"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for name, ev, res in rows:
    cells = [name] + [c[2].format(ev[c[0]]) if c[0] in ev else "-"
                      for c in keys]
    cells += [str(res["steps"]), f"{res['train_time_s'] / 60:.1f} min "
              f"({res['devices']} {res['platform']})"]
    lines.append("| " + " | ".join(cells) + " |")
  if fad_workdir is not None and config is not None:
    floor = real_data_fad(fad_workdir, config)
    cells = ["real training images (floor)"] + [
        f"{floor:.2f}" if c[0] == "fad" else "-" for c in keys] + ["-", "-"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdirs", nargs="+", required=True)
  p.add_argument("--fad_workdir", default=None)
  p.add_argument("--images", default=None,
                 help="write sample / reconstruction grids here")
  p.add_argument("--prefix", default="vae_mnist5k")
  args = p.parse_args(argv)
  print(table(args.workdirs, args.fad_workdir))
  if args.images:
    for w in args.workdirs:
      decoder = inference.read_config(w).model.image_decoder
      grids(w, args.images, f"{args.prefix}_{decoder}")
      print(f"wrote {args.images}/{args.prefix}_{decoder}_{{samples,recon}}.png")


if __name__ == "__main__":
  main()
