"""Exports point k of a vmap-ablation workdir as an ordinary single-model one.

    scnn-ablation export --workdir runs/ablation --point 4 --out runs/tau5_thr1
    python -m scnn_jax.ablation export ...                   (the same)

The exported workdir holds ``config.json`` (the point's own config, no
ablation section) and a checkpoint of that one model, which every other
command reads (resume, inference, ``python -m scnn_jax.inpaint``). The source
workdir is opened read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import jax
import ml_collections
from etils import epath

from scnn_jax.config import builders
from scnn_jax.runtime import ablation, inference
from scnn_jax.runtime.checkpoint import Checkpointer, abstract_like


def export_point(workdir, k: int, out_dir) -> int:
  """Writes point ``k`` of an ablation workdir to ``out_dir``; returns the
  exported step."""
  config = inference.read_config(workdir)
  if not ablation.enabled(config):
    raise ValueError(f"{workdir} holds a single-model run, not an ablation")
  pts = ablation.points(config)
  if not 0 <= k < len(pts):
    raise ValueError(f"--point {k} out of range: the ablation has {len(pts)} "
                     f"points (0..{len(pts) - 1})")
  stacked, _ = ablation.create_stacked_state(pts, builders.data_spec(config),
                                             builders.optimizer(config))
  src = Checkpointer(epath.Path(workdir) / "checkpoints", read_only=True)
  state, meta = src.restore(abstract_like(stacked))
  src.close()
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  point_config = ml_collections.ConfigDict(pts[k].config.to_dict())
  (out_dir / "config.json").write_text(point_config.to_json_best_effort(indent=2))
  step = int(jax.device_get(state["step"])[k])
  dst = Checkpointer(out_dir / "checkpoints")
  dst.save(step, ablation.unstack(state, k),
           dict(meta, ablation_point=k, ablation_values=pts[k].values),
           force=True)
  dst.wait()
  dst.close()
  return step


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog="python -m scnn_jax.ablation",
      description="Export point k of a vmap-ablation run as a single-model "
      "workdir.")
  sub = ap.add_subparsers(dest="cmd", required=True)
  ex = sub.add_parser("export")
  ex.add_argument("--workdir", required=True,
                  help="the ablation run's workdir (config.ablation.grid set)")
  ex.add_argument("--point", type=int, required=True,
                  help="index k of the point to export (ablation.csv lists "
                  "them)")
  ex.add_argument("--out", required=True,
                  help="the new single-model workdir")
  return ap


def main(argv: Sequence[str] | None = None):
  """The ``scnn-ablation`` console command."""
  args = build_parser().parse_args(argv)
  try:
    step = export_point(args.workdir, args.point, args.out)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f"error: {e}")
  print(json.dumps({"exported_step": step, "out": args.out}))


if __name__ == "__main__":
  sys.exit(main())
