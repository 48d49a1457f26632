"""What a training run writes for people besides the metric stream:
config.json, the progress scalars, results.json / results.md, and a vmap
ablation's table and plot (ablation.csv, ablation.md, ablation.png).

(``scnn_jax.training.writers`` writes metrics.jsonl and TensorBoard events.)
"""

from __future__ import annotations

import csv
import io
import json
import time

import jax
import numpy as np
from absl import logging
from etils import epath

from scnn_jax.config import schema
from scnn_jax.runtime import ablation


# Fields that only say how long / how often: changing them on resume is normal.
_RUN_LENGTH_FIELDS = ("train.steps", "train.log_every", "train.eval_every",
                      "train.checkpoint_every", "train.keep_checkpoints",
                      "train.num_sample_images", "train.profile_steps",
                      "train.watchdog_s", "train.sigterm_grace_s",
                      "data.prefetch",
                      "data.num_threads", "data.num_workers")


def write_config(workdir, config, resumed: bool):
  """config.json; on resume, warns about changes and keeps the old file.

  Both configs are compared complete (``schema.complete``): a field the old
  file lacks because it did not exist yet counts as its default.
  """
  path = workdir / "config.json"
  new = json.loads(config.to_json_best_effort())
  if resumed and path.exists():
    old = json.loads(schema.complete(
        json.loads(path.read_text()), written=True).to_json_best_effort())
    changed = [(k, a, b) for k, (a, b) in _diff(old, new).items()
               if k not in _RUN_LENGTH_FIELDS]
    if changed:
      keep = workdir / f"config.{int(time.time())}.json"
      path.rename(keep)
      logging.warning(
          "resuming with a config that differs from the one that wrote the "
          "checkpoints (old one kept as %s): %s. The restored state keeps the "
          "checkpoint's values of model parameters.", keep.name,
          "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed))
  path.write_text(json.dumps(new, indent=2))


def _diff(a, b, prefix=""):
  out = {}
  for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if isinstance(x, dict) and isinstance(y, dict):
      out.update(_diff(x, y, f"{prefix}{k}."))
    elif x != y:
      out[f"{prefix}{k}"] = (x, y)
  return out


def train_scalars(host: list[dict], members) -> dict:
  """Mean loss / spike rates over the logged steps (and over the members of
  a vmap ablation, with ``loss_per_point``)."""
  loss = np.array([np.asarray(m["loss"], float) for m in host])   # [n(, K)]
  finite = np.array([np.asarray(m["finite"]) for m in host])
  masked = np.where(finite, loss, np.nan)
  per_point = np.nanmean(masked, axis=0) if masked.size else masked
  rates = {k: float(np.mean([np.mean(m["spike_rate"][k]) for m in host]))
           for k in host[-1]["spike_rate"]}
  scalars = {"loss": float(np.nanmean(per_point)) if np.isfinite(
      per_point).any() else float("nan"), "spike_rate": rates}
  if members.stacked:
    scalars["loss_per_point"] = {name: float(v)
                                 for name, v in zip(members.names, per_point)}
  return scalars


def finish(task, config, workdir, results: list[dict], baselines: dict,
           steps: int, train_time: float, members, image_shape,
           is_main: bool) -> dict:
  """The run's summary (``results.json``, ``results.md`` and, for an
  ablation, ``ablation.csv`` / ``.md`` / ``.png``); ``results``: the final
  eval of each member."""
  summary = {
      "baselines": baselines,
      "steps": steps,
      "train_time_s": round(train_time, 2),
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "platform": jax.devices()[0].platform,
      "model": config.model.name,
  }
  configs = ([p.config for p in members.points] if members.stacked
             else [config])
  synops = [task.synaptic_ops(c, image_shape, r.get("spike_rate", {}))
            for c, r in zip(configs, results)]
  if members.stacked:
    summary["points"] = [{"index": p.index, "name": p.name, "values": p.values,
                          "eval": r, "synops": s}
                         for p, r, s in zip(members.points, results, synops)]
  else:
    summary["eval"] = results[0]
    if synops[0] is not None:
      summary["synops"] = synops[0]
  if is_main:
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    (workdir / "results.md").write_text(results_markdown(task, summary))
    if members.stacked:
      write_ablation(workdir, list(members.points), results, synops)
  return summary


def results_markdown(task, summary) -> str:
  rows = ([(p["name"], p["eval"]) for p in summary["points"]]
          if "points" in summary else [(summary["model"], summary["eval"])])
  keys = [k for k in task.summary_keys() if k in rows[0][1]]
  rows += list(summary["baselines"].items())
  lines = [f"| method | {' | '.join(keys)} |",
           "|---" * (len(keys) + 1) + "|"]
  for name, r in rows:
    lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) +
                 " |")
  text = "\n".join(lines) + "\n"
  rates = summary.get("eval", {}).get("spike_rate", {})
  if rates:
    text += "\nSpike rate per layer: " + ", ".join(
        f"{k} {v:.3f}" for k, v in rates.items()) + "\n"
  if summary.get("synops"):
    text += (f"\nSynaptic operations per image: {summary['synops']:.3e}\n")
  text += (f"\n{summary['steps']} steps, {summary['train_time_s']:.0f} s of "
           f"training on {summary['devices']} {summary['platform']} device(s)"
           f".\n")
  return text


# -----------------------------------------------------------------------------
# vmap ablations
# -----------------------------------------------------------------------------

COLUMNS = ("masked_mse", "hole_psnr", "psnr", "ssim", "full_mse")


def write_ablation(workdir, pts: list, results: list[dict],
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
    ax.set_xticks(range(len(axes_values[1])),
                  [ablation.fmt(v) for v in axes_values[1]])
    ax.set_yticks(range(len(axes_values[0])),
                  [ablation.fmt(v) for v in axes_values[0]])
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
