"""Held-out inpainting evaluation at user sizes: the README table of issue 18.

    # score baselines + trained workdirs (3 seeds each) -> a small JSON file
    python scripts/inpaint_eval.py run --out docs/results/inpaint_eval.json \
        --model spiking_unet=runs/i18_unet_s0,runs/i18_unet_s1,runs/i18_unet_s2 \
        --model scnn=runs/i18_scnn_s0,... --model cnn=runs/i18_cnn_s0,...
    # the shipped model (scnn_jax/pretrained/) as one more row
    python scripts/inpaint_eval.py run --out ... --pretrained
    # the markdown table (README / docs/inpaint.md) from the committed JSON
    python scripts/inpaint_eval.py table docs/results/inpaint_eval.json
    # quality against training time from the workdirs' metrics.jsonl
    python scripts/inpaint_eval.py plot --out docs/images/inpaint_quality_vs_time.png \
        --model spiking_unet=runs/i18_unet_s0,... --model scnn=... --model cnn=...

Evaluation set (fixed, ``EVAL_SEED``): crops of the three photos of the
``photos`` dataset never used for training (``data.photos.PHOTOS_VAL``:
chelsea, coffee, gravel), at 64 and 128 px, with box holes (1-2 boxes,
2-11 % of the crop: one box side up to ~1/3-1/2 of the crop) and stroke
holes (5-15 %, brush 5-15 % of the side), ``N_PER_CELL`` crops per
(photo, size, hole kind): 96 images. Crops with a near-constant window
(std <= 0.05) are redrawn.

Rows: every trained model (one value per seed: the mean over the 96 images;
the table shows mean +- sd over seeds), the JAX biharmonic prior alone
(``scnn_jax.smooth_fill`` with the new model's settings), scikit-image's
``inpaint_biharmonic`` and mean fill. Metrics on the composite: hole PSNR
(``metrics.hole_psnr_per_image``) and SSIM (``metrics.ssim_per_image``).
Paired differences vs biharmonic: per seed, the mean over images of
(model - biharmonic) on the same images and holes; mean +- sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EVAL_SEED = 18
SIZES = (64, 128)
KINDS = {"box": dict(ratio=(0.02, 0.11), options={"max_boxes": 2}),
         "stroke": dict(ratio=(0.05, 0.15), options={})}
N_PER_CELL = 8
PRIOR = dict(order=2, iters=24)


def eval_set():
  """{(size, kind): (images float32 [N, s, s, 3], masks [N, s, s, 1], photo
  names)} with N = 3 * N_PER_CELL."""
  from scnn_jax import masks
  from scnn_jax.data import photos, sources
  imgs = photos.load_photos(3)
  out = {}
  for size in SIZES:
    for kind, spec in KINDS.items():
      rng = np.random.default_rng([EVAL_SEED, size, len(kind)])
      ims, ms, names = [], [], []
      for name in photos.PHOTOS_VAL:
        img = imgs[name]
        while sum(n == name for n in names) < N_PER_CELL:
          y = int(rng.integers(0, img.shape[0] - size + 1))
          x = int(rng.integers(0, img.shape[1] - size + 1))
          patch = img[y:y + size, x:x + size]
          if sources.patch_std(patch) <= sources.MIN_PATCH_STD:
            continue
          ms.append(masks.make_mask(kind, rng, size, size, *spec["ratio"],
                                    **spec["options"]))
          ims.append(patch.astype(np.float32) / 255.0)
          names.append(name)
      out[(size, kind)] = (np.stack(ims), np.stack(ms), names)
  return out


def _scores(pred, image, mask):
  from scnn_jax import metrics
  comp = np.asarray(metrics.composite(pred, image, mask))
  return (np.asarray(metrics.hole_psnr_per_image(comp, image, mask)),
          np.asarray(metrics.ssim_per_image(comp, image)))


def _baseline_fns():
  import jax
  import jax.numpy as jnp
  from scnn_jax import baselines, smooth_fill
  prior = jax.jit(lambda im, m: smooth_fill.smooth_fill(im * (1 - m), m,
                                                        **PRIOR))
  return {
      "mean_fill": baselines.mean_fill,
      "biharmonic": baselines.biharmonic,
      "prior": lambda im, m: np.clip(np.asarray(prior(jnp.asarray(im),
                                                      jnp.asarray(m))), 0, 1),
  }


_COMPILED = {}   # model config -> jitted forward: seeds share one compile


def _model_fn(loaded):
  import jax
  from flax import nnx
  graphdef, state = nnx.split(loaded.model)
  key = loaded.config.model.to_json()
  if key not in _COMPILED:
    from scnn_jax.models.scnn import masked_input
    mask_channel = loaded.config.model.mask_channel

    @jax.jit
    def fwd(state, image, mask):
      m = nnx.merge(graphdef, state)
      return m(masked_input(image, mask, mask_channel))
    _COMPILED[key] = fwd
  fwd = _COMPILED[key]

  def run(image, mask):
    out = [np.asarray(fwd(state, image[i:i + 24], mask[i:i + 24]))
           for i in range(0, len(image), 24)]
    return np.concatenate(out)
  return run


def _budget(workdir: Path) -> dict:
  res = json.loads((workdir / "results.json").read_text())
  return {"steps": res.get("steps"), "train_time_s": res.get("train_time_s")}


def cmd_run(args):
  from scnn_jax import inference
  data = eval_set()
  results = json.loads(Path(args.out).read_text()) if (
      args.keep and Path(args.out).exists()) else {}
  results.setdefault("methods", {})
  results["eval"] = {
      "seed": EVAL_SEED, "sizes": SIZES, "n_per_cell": N_PER_CELL,
      "photos": sorted({n for *_, names in data.values() for n in names}),
      "kinds": {k: {"ratio": v["ratio"], **v["options"]}
                for k, v in KINDS.items()}, "prior": PRIOR,
      "cells": [f"{s}/{k}" for s, k in data]}

  def score(fn):
    cells = {}
    for (size, kind), (im, m, _) in data.items():
      psnr, ssim = _scores(fn(im, m), im, m)
      cells[f"{size}/{kind}"] = {"hole_psnr": np.round(psnr, 4).tolist(),
                                 "ssim": np.round(ssim, 5).tolist()}
    return cells

  if not args.keep or "biharmonic" not in results["methods"]:
    for name, fn in _baseline_fns().items():
      t = time.time()
      results["methods"][name] = {"kind": "baseline", "runs": [
          {"cells": score(fn)}]}
      print(f"{name}: {time.time() - t:.1f} s", file=sys.stderr)
  for spec in args.model or []:
    name, dirs = spec.split("=", 1)
    runs = []
    for d in dirs.split(","):
      loaded = inference.load(d)
      runs.append({"workdir": d, "seed": int(loaded.config.seed),
                   "config_model": loaded.config.model.name,
                   **_budget(Path(d)), "cells": score(_model_fn(loaded))})
      print(f"{name} {d}: done", file=sys.stderr)
    results["methods"][name] = {"kind": "trained", "runs": runs}
  if args.pretrained:
    from scnn_jax import pretrained
    loaded = pretrained.load()
    results["methods"]["pretrained"] = {"kind": "trained", "runs": [
        {"workdir": "scnn_jax/pretrained", "seed": int(loaded.config.seed),
         "config_model": loaded.config.model.name,
         "cells": score(_model_fn(loaded))}]}
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {args.out}", file=sys.stderr)


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------

LABELS = {
    "spiking_unet": "`spiking_unet` (new: spiking U-Net + JAX biharmonic prior)",
    "spiking_unet_logmse": "`spiking_unet` + 200 steps of per-image log-MSE loss",
    "pretrained": "shipped model (`scnn_jax/pretrained/`)",
    "scnn": "`scnn` (paper A's SC-NN)",
    "cnn": "`cnn` (SC-NN without spikes)",
    "prior": "JAX biharmonic prior alone (`smooth_fill`, 24 CG steps/level)",
    "biharmonic": "`skimage` `inpaint_biharmonic`",
    "mean_fill": "mean fill",
}
ORDER = ("spiking_unet", "spiking_unet_logmse", "pretrained", "scnn", "cnn", "prior", "biharmonic",
         "mean_fill")


def _per_run(run, metric, cells=None):
  """Mean over the images of the chosen cells, one number per run."""
  vals = [v for c, d in run["cells"].items() if cells is None or c in cells
          for v in d[metric]]
  return np.asarray(vals)


def _pm(xs, digits):
  xs = np.asarray(xs, float)
  if len(xs) == 1:
    return f"{xs[0]:.{digits}f}"
  return f"{xs.mean():.{digits}f} ± {xs.std(ddof=1):.{digits}f}"


def table(results, cells=None) -> str:
  methods = results["methods"]
  ref = {m: _per_run(methods["biharmonic"]["runs"][0], m, cells)
         for m in ("hole_psnr", "ssim")}
  lines = ["| method | seeds | hole PSNR (dB) | SSIM | Δ hole PSNR vs biharmonic"
           " | Δ SSIM vs biharmonic | train steps | train wall |",
           "|---|---|---|---|---|---|---|---|"]
  names = [n for n in ORDER if n in methods] + sorted(
      n for n in methods if n not in ORDER)
  for name in names:
    runs = methods[name]["runs"]
    cols = []
    for metric, digits in (("hole_psnr", 2), ("ssim", 5)):
      cols.append(_pm([_per_run(r, metric, cells).mean() for r in runs],
                      digits))
    for metric, digits in (("hole_psnr", 2), ("ssim", 5)):
      if name == "biharmonic":
        cols.append("0")
        continue
      diffs = [(_per_run(r, metric, cells) - ref[metric]).mean()
               for r in runs]
      cols.append(("+" if np.mean(diffs) >= 0 else "") + _pm(diffs, digits))
    steps = {r.get("steps") for r in runs} - {None}
    wall = [r["train_time_s"] for r in runs if r.get("train_time_s")]
    budget = (f"{'/'.join(map(str, sorted(steps)))}" if steps else "",
              f"{np.mean(wall) / 60:.0f} min" if wall else "")
    seeds = (str(len(runs)) if methods[name]["kind"] == "trained"
             else "(fixed)")
    lines.append(f"| {LABELS.get(name, name)} | {seeds} | "
                 + " | ".join(cols) + f" | {budget[0]} | {budget[1]} |")
  return "\n".join(lines)


def cmd_table(args):
  results = json.loads(Path(args.results).read_text())
  ev = results["eval"]
  print(f"All {sum(len(v['hole_psnr']) for v in results['methods']['biharmonic']['runs'][0]['cells'].values())} "
        f"held-out images ({', '.join(ev['photos'])}; {' and '.join(map(str, ev['sizes']))} px; "
        "box and stroke holes):\n")
  print(table(results))
  for cell in ev["cells"]:
    print(f"\n{cell.replace('/', ' px, ')} holes:\n")
    print(table(results, cells={cell}))


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def _curve(workdir: Path):
  """(train seconds, hole PSNR, SSIM) at each of the run's evaluations.

  Train seconds at step k: k times the run's mean time per step (the
  trainer's ``train_time_s`` / steps, evaluation excluded). The logged
  per-interval rates are no better on a machine whose load swung 3x while
  these runs trained, and the first interval after a resume holds a compile.
  """
  res = json.loads((workdir / "results.json").read_text())
  per_step = res["train_time_s"] / res["steps"]
  pts = [(rec["step"] * per_step, rec["hole_psnr"], rec["ssim"])
         for rec in map(json.loads,
                        (workdir / "metrics.jsonl").read_text().splitlines())
         if rec.get("kind") == "eval"]
  return np.asarray(sorted(pts))


def _prior_on_trainer_eval(workdir: Path):
  """(hole PSNR, SSIM) of the model's prior alone (= the untrained
  spiking_unet, whose correction starts at zero) on the run's eval set."""
  import jax.numpy as jnp
  from scnn_jax import data, inference, metrics, smooth_fill
  config = inference.read_config(workdir)
  acc = metrics.InpaintingAccumulator()
  for b in data.build(config).eval_batches(96, 0, 1):
    pred = smooth_fill.smooth_fill(jnp.asarray(b["image"] * (1 - b["mask"])),
                                   jnp.asarray(b["mask"]),
                                   order=config.model.prior_order,
                                   iters=config.model.prior_iters)
    acc.update(np.clip(np.asarray(pred), 0, 1), b["image"], b["mask"],
               b.get("valid"))
  r = acc.result()
  return r["hole_psnr"], r["ssim"]


def cmd_plot(args):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  # Top: every model; bottom: the spiking U-Net alone, zoomed in.
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  colours = dict(zip(["spiking_unet", "scnn", "cnn", "spiking_unet_logmse"],
                     ["C0", "C1", "C2", "C3"]))
  prior = {}
  for spec in args.model:
    name, dirs = spec.split("=", 1)
    for i, d in enumerate(dirs.split(",")):
      pts = _curve(Path(d))
      if not len(pts):
        continue
      # Each run's trainer scores biharmonic on its own eval set: plot the
      # difference, comparable across runs with different crop sizes.
      base = json.loads((Path(d) / "results.json").read_text())["baselines"]
      rows = [axes[0]]
      if name.startswith("spiking_unet"):
        rows.append(axes[1])
        cfg = (Path(d) / "config.json").read_text()
        if cfg not in prior:   # seeds share the eval set: once per config
          prior[cfg] = _prior_on_trainer_eval(Path(d))
        # Step 0: the untrained net is exactly its prior.
        pts = np.concatenate([[[0.0, *prior[cfg]]], pts])
      for row in rows:
        for ax, k, key in zip(row, (1, 2), ("hole_psnr", "ssim")):
          ax.plot(pts[:, 0] / 60, pts[:, k] - base["biharmonic"][key], "o-",
                  ms=3, color=colours.get(name),
                  label=name if i == 0 else None)
  for ax, label in zip(axes.ravel(), ("hole PSNR - biharmonic's (dB)",
                                      "SSIM - biharmonic's") * 2):
    ax.axhline(0.0, color="k", linestyle="--", lw=1, label="biharmonic")
    ax.set_xlabel("training time (min, excl. evaluation)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  axes[1, 0].legend(fontsize=8, title="zoom; step 0 = prior alone",
                    title_fontsize=8)
  fig.suptitle(args.title, fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}", file=sys.stderr)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("run")
  r.add_argument("--out", required=True)
  r.add_argument("--model", action="append",
                 help="NAME=WORKDIR[,WORKDIR...] (one per seed)")
  r.add_argument("--pretrained", action="store_true")
  r.add_argument("--keep", action="store_true",
                 help="add to --out's methods instead of starting anew")
  t = sub.add_parser("table")
  t.add_argument("results")
  pl = sub.add_parser("plot")
  pl.add_argument("--out", required=True)
  pl.add_argument("--model", action="append", required=True)
  pl.add_argument("--title", default="")
  args = p.parse_args(argv)
  {"run": cmd_run, "table": cmd_table, "plot": cmd_plot}[args.cmd](args)


if __name__ == "__main__":
  main()
