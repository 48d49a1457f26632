"""vmap ablations: K configurations trained in ONE compiled program.

``config.ablation.grid`` mirrors the config tree with a list of values per
swept field, e.g.::

    c.ablation.grid = {"model": {"tau": [5.0, 10.0, 20.0, 40.0],
                                 "threshold": [0.5, 1.0, 1.5]}}

``mode="grid"`` takes the cartesian product (here 12 points), ``"zip"`` pairs
the lists. Each point k gets its own config (the base config with its values)
and its own init seed ``seed + k`` (``share_init=True``: all ``seed``); all
points see the same batches, masks and noise keys (``seed``).

The K model / optimizer states are stacked on a new leading axis and the
per-device train step is ``jax.vmap``-ed over it inside the usual
``jit(shard_map(...))``: K models, one compilation, one data pipeline. This
works for every field that only changes the VALUES in the model state (neuron
parameters are arrays: ``NeuronParam`` / ``nnx.Param``): LIF tau / beta /
threshold, surrogate slope, noise std, ALIF's initial tau and threshold,
threshold adaptation and the init seed (``SWEEPABLE``). A field that changes
shapes or static settings (width, T, neuron kind, surrogate kind...) or the
optimizer (one optimizer serves all points) is rejected before compilation.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from scnn_jax.config_lib import ConfigError, check_choice

MODES = ("grid", "zip")
# Fields whose change only alters values in the model state.
SWEEPABLE = (
    "init_seed", "model.tau", "model.beta", "model.threshold",
    "model.surrogate_param", "model.noise_std", "model.alif_tau",
    "model.adaptation_tau", "model.adaptation_increment",
)


@dataclasses.dataclass(frozen=True)
class Point:
  index: int
  values: dict          # {"model.tau": 10.0, ...}
  config: object        # the full config of this point (no ablation section)

  @property
  def name(self) -> str:
    return "_".join(f"{k.split('.')[-1]}={_fmt(v)}"
                    for k, v in self.values.items()) or f"point{self.index}"


def _fmt(v):
  return f"{v:g}" if isinstance(v, float) else str(v)


def enabled(config) -> bool:
  return bool(config.get("ablation")) and bool(_flatten(config.ablation.grid))


def _flatten(tree, prefix=""):
  out = {}
  for k, v in (tree.items() if hasattr(tree, "items") else []):
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def points(config) -> list[Point]:
  """The K points of ``config.ablation`` (validated), in grid order."""
  a = config.ablation
  check_choice("ablation.mode", a.mode, MODES)
  grid = _flatten(a.grid)
  for field, values in grid.items():
    if field not in SWEEPABLE:
      raise ConfigError(
          f"ablation.grid.{field}", values,
          "cannot be swept in one compiled program (it changes the model's "
          f"shapes or static settings); sweepable: {', '.join(SWEEPABLE)}")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") \
        or not len(values):
      raise ConfigError(f"ablation.grid.{field}", values,
                        "must be a non-empty list of values")
  fields = list(grid)
  if a.mode == "zip":
    lengths = {len(v) for v in grid.values()}
    if len(lengths) > 1:
      raise ConfigError("ablation.grid", {f: len(v) for f, v in grid.items()},
                        "mode='zip' needs lists of equal length")
    combos = list(zip(*grid.values()))
  else:
    combos = list(itertools.product(*grid.values()))
  out = []
  for k, combo in enumerate(combos):
    c = copy.deepcopy(config)
    with c.unlocked():
      c.ablation.grid = {}
      c.init_seed = config.seed if a.share_init else config.seed + k
      for field, value in zip(fields, combo):
        _set(c, field, value)
    out.append(Point(k, dict(zip(fields, combo)), c))
  return out


def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  current = node[leaf]
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  node[leaf] = value


def stack(states: list):
  """K pytrees of equal structure -> one with a leading K axis on every leaf."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def unstack(state, k: int):
  """Point ``k`` of a stacked state (an ordinary single-model state)."""
  return jax.tree.map(lambda x: x[k], state)


def create_stacked_state(config, task, dataset, tx, create_state):
  """Stacked states of all points + the shared graphdefs.

  Raises ConfigError when a point's model structure differs from point 0's
  (a swept field that is not value-only for this model).
  """
  pts = points(config)
  states, graphs = [], None
  for p in pts:
    state, g = create_state(p.config, task, dataset, tx, seed=p.config.init_seed)
    if graphs is None:
      graphs = g
    elif g != graphs:
      raise ConfigError("ablation.grid", {k: v for k, v in p.values.items()},
                        "these values change the model's structure (e.g. a 0 "
                        "that removes a layer's noise): all points must share "
                        "one structure")
    states.append(state)
  return pts, stack(states), graphs


# -----------------------------------------------------------------------------
# Outputs
# -----------------------------------------------------------------------------

COLUMNS = ("masked_mse", "hole_psnr", "psnr", "ssim", "full_mse")


def write_outputs(workdir, pts: list[Point], results: list[dict],
                  synops: list[float | None]) -> None:
  """ablation.csv, ablation.md and ablation.png in ``workdir``."""
  workdir = epath.Path(workdir)
  fields = list(pts[0].values)
  rate_names = sorted({n for r in results for n in r.get("spike_rate", {})})
  header = fields + [c for c in COLUMNS if c in results[0]] + [
      f"rate:{n}" for n in rate_names] + ["synops"]
  rows = []
  for p, r, s in zip(pts, results, synops):
    row = [p.values[f] for f in fields]
    row += [r[c] for c in COLUMNS if c in results[0]]
    row += [r.get("spike_rate", {}).get(n, float("nan")) for n in rate_names]
    row.append(s if s is not None else float("nan"))
    rows.append(row)
  buf = io.StringIO()
  csv.writer(buf).writerows([header] + rows)
  (workdir / "ablation.csv").write_text(buf.getvalue())
  md = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for row in rows:
    md.append("| " + " | ".join(_cell(v) for v in row) + " |")
  (workdir / "ablation.md").write_text("\n".join(md) + "\n")
  _plot(workdir / "ablation.png", pts, results, fields)


def _cell(v):
  if isinstance(v, float):
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
  return str(v)


def _plot(path, pts, results, fields, metric="hole_psnr"):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  metric = metric if metric in results[0] else "masked_mse"
  values = np.array([r[metric] for r in results], float)
  fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
  axes_values = [sorted({p.values[f] for p in pts}) for f in fields]
  if len(fields) == 2 and len(pts) == len(axes_values[0]) * len(axes_values[1]):
    grid = np.full((len(axes_values[0]), len(axes_values[1])), np.nan)
    for p, v in zip(pts, values):
      grid[axes_values[0].index(p.values[fields[0]]),
           axes_values[1].index(p.values[fields[1]])] = v
    im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(axes_values[1])), [_fmt(v) for v in axes_values[1]])
    ax.set_yticks(range(len(axes_values[0])), [_fmt(v) for v in axes_values[0]])
    ax.set_xlabel(fields[1])
    ax.set_ylabel(fields[0])
    for i in range(grid.shape[0]):
      for j in range(grid.shape[1]):
        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center",
                color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label=metric)
  else:
    x = [p.values[fields[0]] for p in pts] if fields else list(range(len(pts)))
    ax.plot(x, values, "o-")
    ax.set_xlabel(fields[0] if fields else "point")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  ax.set_title(f"{metric} per ablation point")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  path.write_bytes(buf.getvalue())


def export_point(workdir, k: int, out_dir) -> int:
  """Writes point ``k`` of an ablation workdir as an ordinary single-model workdir.

  ``out_dir`` gets ``config.json`` (the point's config, no ablation section)
  and a checkpoint that every other command (resume, inference, inpaint)
  reads. Returns the exported step.
  """
  from scnn_jax import inference, optim, tasks, trainer
  from scnn_jax.checkpoint import Checkpointer, abstract_like
  import ml_collections
  config = inference.read_config(workdir)
  if not enabled(config):
    raise ValueError(f"{workdir} holds a single-model run, not an ablation")
  pts = points(config)
  if not 0 <= k < len(pts):
    raise ValueError(f"--point {k} out of range: the ablation has {len(pts)} "
                     "points (0.."f"{len(pts) - 1})")
  task = tasks.get(config)
  tx = optim.build(config.train)
  _, stacked, _ = create_stacked_state(config, task, inference.data_spec(config),
                                       tx, trainer.create_state)
  src = Checkpointer(epath.Path(workdir) / "checkpoints")
  state, meta = src.restore(abstract_like(stacked))
  src.close()
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  point_config = ml_collections.ConfigDict(pts[k].config.to_dict())
  (out_dir / "config.json").write_text(point_config.to_json_best_effort(indent=2))
  step = int(jax.device_get(state["step"])[k])
  dst = Checkpointer(out_dir / "checkpoints")
  dst.save(step, unstack(state, k), dict(meta, ablation_point=k,
                                         ablation_values=pts[k].values),
           force=True)
  dst.wait()
  dst.close()
  return step


def main(argv=None):
  import argparse
  ap = argparse.ArgumentParser(
      prog="python -m scnn_jax.ablation",
      description="Export point k of a vmap-ablation run as a single-model "
      "workdir.")
  sub = ap.add_subparsers(dest="cmd", required=True)
  ex = sub.add_parser("export")
  ex.add_argument("--workdir", required=True)
  ex.add_argument("--point", type=int, required=True)
  ex.add_argument("--out", required=True)
  args = ap.parse_args(argv)
  try:
    step = export_point(args.workdir, args.point, args.out)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f"error: {e}")
  print(json.dumps({"exported_step": step, "out": args.out}))


if __name__ == "__main__":
  main()
