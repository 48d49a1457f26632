"""Held-out inpainting evaluation of the trained models against classical fills.

    # baselines + trained workdirs (one workdir per seed) -> a small JSON file
    python scripts/inpaint_eval.py run --out docs/results/inpaint_eval.json \\
        --model spiking_resunet=runs/res_s0,runs/res_s1,runs/res_s2 \\
        --model relu_resunet=runs/relu_s0,runs/relu_s1,runs/relu_s2 \\
        --twin spiking_resunet=relu_resunet --model scnn=... --pretrained
    # add rows to an existing file (same eval set; baselines kept)
    python scripts/inpaint_eval.py run --out ... --keep --model cnn=...
    # the markdown tables (docs/studies/inpainting.md) from the JSON
    python scripts/inpaint_eval.py table docs/results/inpaint_eval.json
    # quality against training time from the workdirs' metrics.jsonl
    python scripts/inpaint_eval.py plot --out docs/images/inpaint_quality_vs_time.png \\
        --model spiking_resunet=runs/spk_s0,... --model relu_resunet=...

Evaluation set (fixed, ``EVAL_SEED``): square crops of held-out photos at
``SIZES`` (64, 128, 256 px) with box holes (1-2 boxes, 2-11 % of the crop:
a box side up to ~1/3 of the crop) and stroke holes (5-20 %, brush 5-15 %
of the side). ``TARGET_PER_CELL[size]`` images per (size, hole kind),
shared out evenly over the photos (``n_per_photo``: ~180 images in all).
Photos: scikit-image's chelsea, coffee and gravel at their ORIGINAL
resolution (300 x 451, 400 x 600, 512 x 512; gravel replicated to RGB),
never trained on, plus every photo ``scnn_jax.data.openphotos.heldout_photos``
offers when that module exists (a photo smaller than a crop size sits that
size out). Each (photo, size, kind) draws from its own seeded stream: a
photo's crops and holes do not depend on the other photos, and fewer crops
per photo are a prefix of more. Crops with a near-constant window
(``sources.patch_std`` <= 0.05) are redrawn.

Rows: every trained model (``--model NAME=WORKDIR,...``, one workdir per
seed; ``--pretrained``: the shipped model), run untiled on the whole crop;
the model's own prior alone where it has one (``model.prior``, its own
order and CG steps, clipped to [0, 1] as the model's output is: the
untrained net); scikit-image's ``inpaint_biharmonic``; OpenCV's Telea and
Navier-Stokes (radius 3, uint8); mean fill. Scores on the composite (known
pixels from the input): hole PSNR (``metrics.hole_psnr_per_image``) and
SSIM (``metrics.ssim_per_image``) per image, kept per image in the JSON so
every paired statistic can be recomputed.

Paired differences (``table``): per seed, the mean over the same images of
(model - reference) for the references biharmonic, the model's own prior
and its twin (``--twin SPIKING=CONTROL``: seeds paired by position in the
two lists); mean +- sd over seeds, 95 % t-interval and per-seed values
(``seed_runs.fmt_paired``). Headline: the 128-256 px crops
(``HEADLINE_SIZES``).

Gain by distance: every hole pixel's Euclidean distance to the nearest
known pixel (``scipy.ndimage.distance_transform_edt``, 1 on the rim) puts
it in one of the ``DIST_EDGES`` bins; per bin and row the summed squared
error (over channels), so MSE = sse / (pixels * C) per bin and run.

Also per trained run: spike rate per spiking layer (spikes per neuron per
step, pooled over the eval set: each batch's rate weighted by its pixels),
the energy estimate of ``scnn_jax.metrics.energy`` where it describes the model,
wall time per image (after a warm-up call per size, so compile excluded),
and the training budget of the workdir (``results.json`` / ``config.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))
from seed_runs import cpu_info, fmt_mean_sd, fmt_paired  # noqa: E402

FORMAT = 2
EVAL_SEED = 18
SIZES = (64, 128, 256)
HEADLINE_SIZES = (128, 256)
# Images per (size, kind), shared out over the photos: 2 kinds x (36 + 30
# + 24) = 180 images; fewer of the 256 px crops, which cost most
# (biharmonic ~0.2-0.6 s each).
TARGET_PER_CELL = {64: 36, 128: 30, 256: 24}
KINDS = {"box": dict(ratio=(0.02, 0.11), options={"max_boxes": 2}),
         "stroke": dict(ratio=(0.05, 0.20), options={})}
CHANNELS = 3
SKIMAGE_PHOTOS = ("chelsea", "coffee", "gravel")
# Training / other projects' images: never part of an evaluation set.
NEVER = {"camera", "coins", "moon", "brick", "grass", "hubble_deep_field"}
DIST_EDGES = (2, 4, 8, 16, 32)    # px; bins (0, 2], (2, 4], ..., (32, inf)
DIST_LABELS = ("1-2", "2-4", "4-8", "8-16", "16-32", ">32")
MAX_BATCH_PIXELS = 16 * 128 * 128   # per model call
BASELINES = ("biharmonic", "opencv_telea", "opencv_ns", "mean_fill")
EXTRA_PHOTOS = True   # also scnn_jax.data.openphotos' held-out photos


_T0 = time.time()


def _log(msg):
  print(f"[{time.time() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Evaluation set
# --------------------------------------------------------------------------


def heldout_photos(channels: int = CHANNELS, extra: bool | None = None):
  """``({name: uint8 [H, W, channels]}, note)``: scikit-image's three
  held-out photos at full resolution, then those of
  ``scnn_jax.data.openphotos`` (when present and ``extra``, default
  ``EXTRA_PHOTOS``)."""
  extra = EXTRA_PHOTOS if extra is None else extra
  import skimage.data
  from scnn_jax.data import sources
  photos = {name: sources.to_channels(getattr(skimage.data, name)(), channels,
                                      f"skimage.data.{name}")
            for name in SKIMAGE_PHOTOS}
  note = "scikit-image: " + ", ".join(SKIMAGE_PHOTOS)
  if extra:
    try:
      from scnn_jax.data.openphotos import heldout_photos as more
    except ImportError:
      note += "; scnn_jax.data.openphotos not available"
      _log("note: scnn_jax.data.openphotos not importable: held-out photos "
           "are scikit-image's " + ", ".join(SKIMAGE_PHOTOS) + " only")
    else:
      offered = more(channels)
      added = [n for n in sorted(offered) if n not in photos]
      photos.update({n: np.asarray(offered[n], np.uint8) for n in added})
      note += "; scnn_jax.data.openphotos: " + (", ".join(added) or "none")
  bad = sorted(NEVER & set(photos))
  if bad:
    raise ValueError(f"held-out photos include {bad}: these images are never "
                     "an evaluation photo here")
  return photos, note


def _stream(*parts) -> list[int]:
  return [EVAL_SEED] + [p if isinstance(p, int) else zlib.crc32(p.encode())
                        for p in parts]


def distance_bins(mask) -> np.ndarray:
  """int8 ``[N, H, W]``: the ``DIST_EDGES`` bin of each hole pixel's
  Euclidean distance to the nearest known pixel; -1 on known pixels."""
  from scipy import ndimage
  hole = np.asarray(mask)[..., 0] > 0.5
  out = np.full(hole.shape, -1, np.int8)
  for i, h in enumerate(hole):
    d = ndimage.distance_transform_edt(h)
    out[i][h] = np.searchsorted(DIST_EDGES, d[h], side="left")
  return out


def n_per_photo(size: int, num_photos: int) -> int:
  """Crops per (photo, size, kind): ``TARGET_PER_CELL`` shared out (at
  least 1). Each photo's crops are the first n of its own stream, so a
  smaller n keeps a prefix of the same crops."""
  return max(1, round(TARGET_PER_CELL[size] / max(num_photos, 1)))


def eval_set(photos=None):
  """``{(size, kind): cell}`` with ``cell = dict(image float32 [n, s, s, C],
  mask [n, s, s, 1], photos [n names], dist_bin int8 [n, s, s])``, images
  ordered by photo; and ``{"photo_source": note, "photo_shapes": ...}``."""
  from scnn_jax.data import masks
  from scnn_jax.data import sources
  note = None
  if photos is None:
    photos, note = heldout_photos()
  out, skipped, per_photo = {}, {}, {}
  for size in SIZES:
    fit = [n for n, img in photos.items() if min(img.shape[:2]) >= size]
    skipped[str(size)] = [n for n in photos if n not in fit]
    if not fit:
      raise ValueError(f"no held-out photo is as large as the {size} px "
                       "crops")
    per_photo[str(size)] = n_per_photo(size, len(fit))
    for kind, spec in KINDS.items():
      ims, ms, names = [], [], []
      for name in fit:
        img = photos[name]
        rng = np.random.default_rng(_stream(size, kind, name))
        n = 0
        while n < per_photo[str(size)]:
          y = int(rng.integers(0, img.shape[0] - size + 1))
          x = int(rng.integers(0, img.shape[1] - size + 1))
          patch = img[y:y + size, x:x + size]
          if sources.patch_std(patch) <= sources.MIN_PATCH_STD:
            continue
          ms.append(masks.make_mask(kind, rng, size, size, *spec["ratio"],
                                    **spec["options"]))
          ims.append(patch.astype(np.float32) / 255.0)
          names.append(name)
          n += 1
      mask = np.stack(ms)
      out[(size, kind)] = dict(image=np.stack(ims), mask=mask, photos=names,
                               dist_bin=distance_bins(mask))
  info = {"photo_source": note, "n_per_photo": per_photo,
          "photos_too_small": {k: v for k, v in skipped.items() if v},
          "photo_shapes": {n: list(p.shape) for n, p in photos.items()}}
  return out, info


def cell_key(size, kind) -> str:
  return f"{size}/{kind}"


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------


_METRICS = []


def _metrics_fn():
  """jit of (composite, hole PSNR, SSIM): one compile per batch shape."""
  if not _METRICS:
    import jax
    from scnn_jax import metrics

    def f(pred, image, mask):
      comp = metrics.composite(pred, image, mask)
      return (comp, metrics.hole_psnr_per_image(comp, image, mask),
              metrics.ssim_per_image(comp, image))
    _METRICS.append(jax.jit(f))
  return _METRICS[0]


def score(pred, cell) -> dict:
  """Per-image hole PSNR and SSIM of the composite, and the summed squared
  error of the cell's hole pixels per distance bin."""
  image, mask = cell["image"], cell["mask"]
  comp, psnr, ssim = (np.asarray(v) for v in _metrics_fn()(
      np.asarray(pred, np.float32), image, mask))
  se = np.square(comp.astype(np.float64) - image).sum(-1)
  b = cell["dist_bin"]
  sel = b >= 0
  sse = np.bincount(b[sel], weights=se[sel], minlength=len(DIST_LABELS))
  return {"hole_psnr": np.round(psnr, 4).tolist(),
          "ssim": np.round(ssim, 6).tolist(),
          "dist_sse": [float(f"{v:.6g}") for v in sse]}


def _by_size(data):
  for size in SIZES:
    yield size, [(kind, data[(size, kind)]) for kind in KINDS]


def run_numpy(fn, data, name):
  """A host-side fill: ``fn(images, masks) -> preds``, timed per cell."""
  cells, times = {}, {}
  first = data[next(iter(data))]
  fn(first["image"][:1], first["mask"][:1])   # lazy imports out of the times
  for size, group in _by_size(data):
    t, n = 0.0, 0
    for kind, cell in group:
      t0 = time.perf_counter()
      pred = fn(cell["image"], cell["mask"])
      t += time.perf_counter() - t0
      n += len(cell["image"])
      cells[cell_key(size, kind)] = score(pred, cell)
      _log(f"  {name} {cell_key(size, kind)}: hole PSNR "
           f"{np.mean(cells[cell_key(size, kind)]['hole_psnr']):.2f} dB")
    times[str(size)] = t / n
  return {"cells": cells, "time_s_per_image": times}


def _batch_size(n: int, size: int) -> int:
  """The largest divisor of ``n`` within the pixel budget: no padded rows
  (which would bias the spike rates), one compile per size."""
  cap = max(1, MAX_BATCH_PIXELS // (size * size))
  return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def run_batched(fwd, data, name):
  """A jitted fill ``fwd(image, mask) -> (pred, rates)`` on each size's
  crops (both kinds) in equal batches; the first batch of a size runs once
  more as warm-up, so times exclude the compile. Returns the row's run dict
  and ``{size: (rates summed x pixels, pixels)}``."""
  cells, times, rate_sums = {}, {}, {}
  for size, group in _by_size(data):
    image = np.concatenate([c["image"] for _, c in group])
    mask = np.concatenate([c["mask"] for _, c in group])
    b = _batch_size(len(image), size)
    np.asarray(fwd(image[:b], mask[:b])[0])        # compile
    preds, sums, px = [], {}, 0
    t0 = time.perf_counter()
    for i in range(0, len(image), b):
      pred, rates = fwd(image[i:i + b], mask[i:i + b])
      preds.append(np.asarray(pred))
      w = b * size * size
      for k, v in rates.items():
        sums[k] = sums.get(k, 0.0) + float(v) * w
      px += w
    times[str(size)] = (time.perf_counter() - t0) / len(image)
    rate_sums[size] = (sums, px)
    pred = np.concatenate(preds)
    start = 0
    for kind, cell in group:
      n = len(cell["image"])
      cells[cell_key(size, kind)] = score(pred[start:start + n], cell)
      start += n
      _log(f"  {name} {cell_key(size, kind)}: hole PSNR "
           f"{np.mean(cells[cell_key(size, kind)]['hole_psnr']):.2f} dB")
  return {"cells": cells, "time_s_per_image": times}, rate_sums


_COMPILED = {}   # (model config, what) -> jitted function: seeds share it


def _jitted(loaded, what: str):
  """jit of the model's forward (with its spike rates) or of its prior
  alone; ``f(state, image, mask) -> (pred, rates)``."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from scnn_jax.nn import encoders
  from scnn_jax.metrics.spikes import spike_rates
  from scnn_jax.models.scnn import masked_input
  from scnn_jax.nn.variables import SpikeRate
  graphdef, state = nnx.split(loaded.model)
  key = (loaded.config.model.to_json(), int(loaded.config.data.channels), what)
  if key not in _COMPILED:
    mask_channel = bool(loaded.config.model.mask_channel)

    def forward(state, image, mask):
      model = nnx.merge(graphdef, state)
      x = masked_input(image, mask, mask_channel)
      if what == "prior":
        return jnp.clip(model.prior(x), 0.0, 1.0), {}
      out, captured = nnx.capture(
          lambda m: m(x, rngs=encoders.eval_rngs()), SpikeRate)(model)
      return out, spike_rates(captured)
    _COMPILED[key] = jax.jit(forward)
  f = _COMPILED[key]
  return lambda image, mask: f(state, image, mask)


def prior_settings(model):
  """``(order, iters)`` of a model's prior, or None for a model without one."""
  if not callable(getattr(model, "prior", None)):
    return None
  return int(model.prior_order), int(model.prior_iters)


def prior_name(settings) -> str:
  return f"prior_o{settings[0]}_i{settings[1]}"


def budget(loaded, workdir: Path | None) -> dict:
  """The training budget: config's steps and batch, and what the run
  recorded in ``results.json`` (steps done, train time, devices)."""
  t, d = loaded.config.train, loaded.config.data
  out = {"steps": int(t.steps), "batch_size": int(t.batch_size),
         "train_image_size": int(d.image_size), "train_data": str(d.name),
         "train_time_s": None, "devices": None, "platform": None}
  path = None if workdir is None else workdir / "results.json"
  if path is not None and path.exists():
    res = json.loads(path.read_text())
    out.update({k: res.get(k, out[k]) for k in
                ("steps", "train_time_s", "devices", "platform")})
  source = t.get("init_from")
  if source and (Path(source) / "results.json").exists():
    res = json.loads((Path(source) / "results.json").read_text())
    out["init_from"] = {"steps": res.get("steps"),
                        "train_time_s": res.get("train_time_s")}
  return out


def energy_entry(config, rate_sums) -> dict:
  """Energy per image by size and over the eval set
  (``scnn_jax.metrics.energy``), or a note where that module does not
  describe the model."""
  from scnn_jax.metrics import energy
  name = config.model.name
  if name not in energy.MODELS:
    return {"supported": False,
            "note": f"not supported by energy.py (model {name!r}; it "
                    f"describes {', '.join(energy.MODELS)})"}
  by_size, weights = {}, {}
  try:
    for size, (sums, px) in rate_sums.items():
      rates = {k: v / px for k, v in sums.items()}
      e = energy.inpainting_energy(config.model,
                                   (size, size, int(config.data.channels)),
                                   rates)
      by_size[str(size)] = {"energy_uj": e["energy_j"] * 1e6,
                            "synops": e["synops"], "macs": e["macs"],
                            "cnn_energy_uj": e["cnn_energy_j"] * 1e6,
                            "prior_energy_uj": e.get("prior_energy_j", 0.0)
                            * 1e6}
      weights[str(size)] = px / (size * size)
  except ValueError as err:
    return {"supported": False, "note": f"energy.py: {err}"}
  total = sum(weights.values())

  def mean(key):
    return sum(by_size[s][key] * w for s, w in weights.items()) / total
  return {"supported": True, "energy_uj_per_image": mean("energy_uj"),
          "prior_energy_uj_per_image": mean("prior_energy_uj"),
          "by_size": by_size, "source": energy.SOURCE,
          "note": "arithmetic estimate (energy.py); a prior's arithmetic is "
                  "apart, in prior_energy_uj"}


def run_model(loaded, workdir, label, data, results):
  """One trained run (one seed) as a row entry; adds its prior row to
  ``results`` the first time that prior is seen."""
  if int(loaded.config.data.channels) != CHANNELS:
    raise ValueError(f"{label}: the model takes {loaded.config.data.channels}"
                     f" channels; the eval set is RGB ({CHANNELS})")
  run, rate_sums = run_batched(_jitted(loaded, "model"), data, label)
  sums = {}
  px = 0
  for s, p in rate_sums.values():
    for k, v in s.items():
      sums[k] = sums.get(k, 0.0) + v
    px += p
  settings = prior_settings(loaded.model)
  run.update({
      "workdir": workdir, "seed": int(loaded.config.seed),
      "step": int(loaded.step), "model": loaded.config.model.name,
      "spike_rate": {k: v / px for k, v in sums.items()},
      "spike_rate_by_size": {str(size): {k: v / p for k, v in s.items()}
                             for size, (s, p) in rate_sums.items()},
      "energy": energy_entry(loaded.config, rate_sums),
      "budget": budget(loaded, None if workdir.startswith("scnn_jax/")
                       else Path(workdir)),
      "prior": prior_name(settings) if settings else None})
  if settings and prior_name(settings) not in results["methods"]:
    name = prior_name(settings)
    _log(f"{name} (from {label})")
    prior_run, _ = run_batched(_jitted(loaded, "prior"), data, name)
    results["methods"][name] = {
        "kind": "prior", "order": settings[0], "iters": settings[1],
        "from": label, "runs": [prior_run]}
  return run


def _parse_models(specs, parser):
  out = {}
  for spec in specs or []:
    name, sep, dirs = spec.partition("=")
    dirs = [d for d in dirs.split(",") if d]
    if not sep or not name or not dirs:
      parser.error(f"--model {spec!r}: expected NAME=WORKDIR[,WORKDIR...]")
    if name in out or name in BASELINES or name == "pretrained" or \
        name.startswith("prior_"):
      parser.error(f"--model {name}: the name is taken (a baseline, prior, "
                   "'pretrained' or another --model)")
    for d in dirs:
      if not (Path(d) / "config.json").exists():
        parser.error(f"--model {name}: {d} has no config.json (not a "
                     "scnn_jax workdir)")
    out[name] = dirs
  return out


def _parse_twins(specs, models, parser, known=()):
  twins = {}
  for spec in specs or []:
    a, sep, b = spec.partition("=")
    if not sep:
      parser.error(f"--twin {spec!r}: expected SPIKING=CONTROL")
    for n in (a, b):
      if n not in models and n not in known:
        parser.error(f"--twin {spec}: {n!r} is not a --model row (rows: "
                     f"{', '.join(list(models) + list(known)) or 'none'})")
    if a in models and b in models and len(models[a]) != len(models[b]):
      parser.error(f"--twin {spec}: {a} has {len(models[a])} workdirs, {b} "
                   f"{len(models[b])}; seeds pair by position")
    twins[a] = b
  return twins


def fingerprint(data) -> dict:
  """What makes two eval sets the same (``--keep`` checks it)."""
  return {
      "format": FORMAT, "seed": EVAL_SEED, "sizes": list(SIZES),
      "channels": CHANNELS,
      "headline_sizes": list(HEADLINE_SIZES),
      "target_per_cell": {str(k): TARGET_PER_CELL[k] for k in SIZES},
      "kinds": {k: {"ratio": list(v["ratio"]), **v["options"]}
                for k, v in KINDS.items()},
      "photos": list(dict.fromkeys(n for c in data.values()
                                   for n in c["photos"])),
      "cells": [cell_key(*k) for k in data],
      "dist_labels": list(DIST_LABELS), "dist_edges_px": list(DIST_EDGES)}


def cmd_run(args, parser):
  models = _parse_models(args.model, parser)
  out = Path(args.out)
  results = json.loads(out.read_text()) if args.keep and out.exists() else {}
  if results and results.get("eval", {}).get("format") != FORMAT:
    parser.error(f"--keep: {out} is in an older format; run without --keep")
  twins = _parse_twins(args.twin, models, parser,
                       known=list(results.get("methods", {}))
                       + (["pretrained"] if args.pretrained else []))
  t0 = time.time()
  data, info = eval_set()
  ev = fingerprint(data)
  if results and {k: v for k, v in results["eval"].items()
                  if k in ev} != ev:
    parser.error(f"--keep: {out} was scored on another eval set (photos, "
                 "sizes, counts or holes differ); run without --keep")
  ev.update({
      **info,
      "images_per_cell": {cell_key(*k): len(c["image"])
                          for k, c in data.items()},
      "num_images": sum(len(c["image"]) for c in data.values()),
      "photos_per_cell": {cell_key(*k): c["photos"] for k, c in data.items()},
      "hole_pixels": {cell_key(*k): np.asarray(c["mask"] > 0.5).sum(
          axis=(1, 2, 3)).tolist() for k, c in data.items()},
      "dist_pixels": {cell_key(*k): np.bincount(
          c["dist_bin"][c["dist_bin"] >= 0],
          minlength=len(DIST_LABELS)).tolist() for k, c in data.items()}})
  results["eval"] = ev
  results.setdefault("methods", {})
  results.setdefault("twins", {}).update(twins)
  import jax
  results["machine"] = {**cpu_info(), "platform": jax.devices()[0].platform,
                        "jax": jax.__version__, "python":
                        platform.python_version()}
  _log(f"eval set: {ev['num_images']} images of {', '.join(ev['photos'])} "
       f"({time.time() - t0:.1f} s)")
  from scnn_jax.models import baselines
  for name in BASELINES:
    if name in results["methods"]:
      continue
    _log(name)
    results["methods"][name] = {"kind": "baseline", "runs": [run_numpy(
        getattr(baselines, name), data, name)]}
  from scnn_jax.runtime import inference
  todo = [(name, d) for name, dirs in models.items() for d in dirs]
  if args.pretrained:
    todo.append(("pretrained", None))
  runs = {}
  for name, d in todo:
    _log(f"{name} {d or '(shipped)'}")
    if d is None:
      from scnn_jax import pretrained
      loaded, d = pretrained.load(), "scnn_jax/pretrained/" + pretrained.DEFAULT
    else:
      loaded = inference.load(d)
    runs.setdefault(name, []).append(run_model(loaded, d, name, data,
                                               results))
  for name, rs in runs.items():
    results["methods"][name] = {"kind": "trained", "runs": rs}
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")
  _log(f"wrote {out} ({time.time() - t0:.0f} s)")


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------

LABELS = {
    "spiking_unet": "`spiking_unet` (spiking U-Net + JAX biharmonic prior)",
    "spiking_unet_logmse": "`spiking_unet` + 200 steps of per-image log-MSE",
    "spiking_resunet": "`spiking_resunet` (spiking residual U-Net + prior)",
    "spiking_resunet_ft": "`spiking_resunet` fine-tuned from its twin",
    "relu_resunet": "`relu_resunet` (its ReLU twin)",
    "pretrained": "shipped model (`scnn_jax/pretrained/`)",
    "scnn": "`scnn` (paper A's SC-NN)",
    "cnn": "`cnn` (SC-NN without spikes)",
    "biharmonic": "`skimage` `inpaint_biharmonic`",
    "opencv_telea": "OpenCV `INPAINT_TELEA` (r 3)",
    "opencv_ns": "OpenCV `INPAINT_NS` (r 3)",
    "mean_fill": "mean fill",
}


def label(results, name) -> str:
  m = results["methods"][name]
  if m["kind"] == "prior":
    kind = {1: "harmonic", 2: "biharmonic"}.get(m["order"], "smooth")
    return (f"JAX {kind} prior alone (`smooth_fill` order {m['order']}, "
            f"{m['iters']} CG steps/level)")
  return LABELS.get(name, f"`{name}`")


def row_order(results) -> list[str]:
  """Trained rows (each twin right after its spiking model), then priors,
  then the baselines."""
  methods, twins = results["methods"], results.get("twins", {})
  trained = [n for n in methods if methods[n]["kind"] == "trained"]
  controls = {b for a, b in twins.items() if a in trained}
  order = []
  for n in trained:
    if n in controls or n in order:
      continue
    order.append(n)
    if twins.get(n) in trained and twins[n] not in order:
      order.append(twins[n])
  order += [n for n in trained if n not in order]
  order += sorted(n for n in methods if methods[n]["kind"] == "prior")
  order += [n for n in BASELINES if n in methods]
  return order


def per_image(run, metric, cells) -> np.ndarray:
  return np.asarray([v for c in cells for v in run["cells"][c][metric]],
                    np.float64)


def run_means(method, metric, cells) -> list[float]:
  return [float(per_image(r, metric, cells).mean()) for r in method["runs"]]


def refs(results, name) -> list[tuple[str, str]]:
  """``(label, reference row)`` the row is paired with."""
  methods = results["methods"]
  out = [("biharmonic", "biharmonic")] if name != "biharmonic" and \
      "biharmonic" in methods else []
  own = {r.get("prior") for r in methods[name]["runs"]} - {None}
  if methods[name]["kind"] == "trained" and len(own) == 1 and \
      own <= set(methods):
    out.append(("own prior", own.pop()))
  twin = results.get("twins", {}).get(name)
  if twin in methods:
    out.append(("twin", twin))
  return out


def paired_diffs(results, name, ref, metric, cells) -> list[tuple[int, float]]:
  """Per seed (by position; a one-run reference pairs with every run): the
  mean over images of (row - reference)."""
  a = results["methods"][name]["runs"]
  b = results["methods"][ref]["runs"]
  if len(b) == 1:
    b = b * len(a)
  return [(i, float((per_image(ra, metric, cells)
                     - per_image(rb, metric, cells)).mean()))
          for i, (ra, rb) in enumerate(zip(a, b))]


def _mean_sd(method, values, digits, unit=""):
  if method["kind"] != "trained":
    return f"{values[0]:.{digits}f}{unit}"
  return fmt_mean_sd(values, digits, unit)


def headline_cells(results, sizes=None) -> list[str]:
  sizes = {str(s) for s in (sizes or results["eval"]["headline_sizes"])}
  return [c for c in results["eval"]["cells"] if c.split("/")[0] in sizes]


def table_scores(results, cells) -> str:
  methods = results["methods"]
  lines = ["| method | seeds | hole PSNR (dB) | SSIM |", "|---|---|---|---|"]
  for name in row_order(results):
    m = methods[name]
    seeds = str(len(m["runs"])) if m["kind"] == "trained" else "(fixed)"
    lines.append(f"| {label(results, name)} | {seeds} | "
                 f"{_mean_sd(m, run_means(m, 'hole_psnr', cells), 2)} | "
                 f"{_mean_sd(m, run_means(m, 'ssim', cells), 4)} |")
  return "\n".join(lines)


def table_paired(results, cells) -> str:
  methods = results["methods"]
  lines = ["| method | minus | Δ hole PSNR (dB) | Δ SSIM |",
           "|---|---|---|---|"]
  for name in row_order(results):
    if methods[name]["kind"] == "baseline":
      continue
    for what, ref in refs(results, name):
      d = [fmt_paired(paired_diffs(results, name, ref, k, cells), dg)
           if methods[name]["kind"] == "trained" else
           f"{paired_diffs(results, name, ref, k, cells)[0][1]:+.{dg}f}"
           for k, dg in (("hole_psnr", 2), ("ssim", 4))]
      shown = what if what == ref else f"{what} (`{ref}`)"
      lines.append(f"| {label(results, name)} | {shown} | {d[0]} | {d[1]} |")
  return "\n".join(lines) if len(lines) > 2 else ""


def table_cells(results) -> str:
  methods, cells = results["methods"], results["eval"]["cells"]
  n = results["eval"]["images_per_cell"]
  head = " | ".join(f"{c} px ({n[c]})" for c in cells)
  lines = [f"| method | {head} |", "|---" * (len(cells) + 1) + "|"]
  for name in row_order(results):
    m = methods[name]
    cols = [f"{np.mean(run_means(m, 'hole_psnr', [c])):.2f} / "
            f"{np.mean(run_means(m, 'ssim', [c])):.4f}" for c in cells]
    lines.append(f"| {label(results, name)} | " + " | ".join(cols) + " |")
  rows = [n for n in row_order(results) if methods[n]["kind"] != "baseline"]
  if rows and "biharmonic" in methods:
    lines += ["", "Δ hole PSNR (dB) vs biharmonic per cell, mean ± sd over "
              "seeds:", "", f"| method | {head} |",
              "|---" * (len(cells) + 1) + "|"]
  for name in rows if "biharmonic" in methods else []:
    m = methods[name]
    cols = [_mean_sd(m, [d for _, d in paired_diffs(
        results, name, "biharmonic", "hole_psnr", [c])], 2) for c in cells]
    lines.append(f"| {label(results, name)} | " + " | ".join(cols) + " |")
  return "\n".join(lines)


def dist_mse(results, name, cells) -> np.ndarray:
  """``[runs, bins]`` MSE per distance bin (over pixels and channels)."""
  px = np.sum([results["eval"]["dist_pixels"][c] for c in cells], axis=0)
  c = results["eval"]["channels"]
  sse = np.asarray([np.sum([r["cells"][k]["dist_sse"] for k in cells], axis=0)
                    for r in results["methods"][name]["runs"]])
  with np.errstate(divide="ignore", invalid="ignore"):
    return sse / (px * c)


def _psnr(mse):
  return -10.0 * np.log10(np.maximum(mse, 1e-10))


def table_distance(results, cells) -> str:
  methods = results["methods"]
  px = np.sum([results["eval"]["dist_pixels"][c] for c in cells], axis=0)
  out = []
  for name in row_order(results):
    if methods[name]["kind"] != "trained":
      continue
    mse = dist_mse(results, name, cells)
    refs_ = [(w, r) for w, r in refs(results, name) if w != "twin"]
    head = "| distance (px) | hole px | MSE ×1e-3 | PSNR (dB) |"
    sep = "|---|---|---|---|"
    for what, ref in refs_:
      head += (f" {ref} PSNR | MSE reduction vs {what} ×1e-3 | "
               f"Δ PSNR vs {what} (dB) |")
      sep += "---|---|---|"
    lines = [f"{label(results, name)}:", "", head, sep]
    for j, lab in enumerate(DIST_LABELS):
      if px[j] == 0:
        continue
      row = [lab, f"{int(px[j]):,}", fmt_mean_sd(mse[:, j] * 1e3, 3),
             fmt_mean_sd(_psnr(mse[:, j]), 2)]
      for _, ref in refs_:
        rm = dist_mse(results, ref, cells)[:, j]
        rm = np.broadcast_to(rm, mse[:, j].shape) if len(rm) == 1 else \
            rm[:len(mse)]
        row += [f"{np.mean(_psnr(rm)):.2f}",
                fmt_paired(list(enumerate((rm - mse[:, j]) * 1e3)), 3),
                fmt_paired(list(enumerate(_psnr(mse[:, j]) - _psnr(rm))), 2)]
      lines.append("| " + " | ".join(row) + " |")
    out.append("\n".join(lines))
  return "\n\n".join(out)


def _rates(runs) -> str:
  keys = list(dict.fromkeys(k for r in runs for k in r.get("spike_rate", {})))
  if not keys:
    return "-"
  vals = {k: np.mean([r["spike_rate"][k] for r in runs
                      if k in r.get("spike_rate", {})]) for k in keys}
  return (f"mean {np.mean(list(vals.values())):.3f}: "
          + ", ".join(f"`{k}` {v:.3f}" for k, v in vals.items()))


def _energy(runs) -> str:
  e = [r.get("energy", {}) for r in runs]
  if e and all(x.get("supported") for x in e):
    text = fmt_mean_sd([x["energy_uj_per_image"] for x in e], 2, " µJ")
    prior = np.mean([x.get("prior_energy_uj_per_image", 0.0) for x in e])
    return text + (f" (+ prior {prior:.2f} µJ)" if prior else "")
  notes = {x.get("note", "") for x in e} - {""}
  return "; ".join(sorted(notes)) or "-"


def _budget(runs) -> tuple[str, str, str]:
  b = [r.get("budget") or {} for r in runs]
  # A run started from another's weights: its own budget + the source's.
  first = {f" (+ {x['init_from']['steps']} of the run it started from)"
           for x in b if x.get("init_from")}
  steps = sorted({f"{x.get('steps')} × {x.get('batch_size')}" for x in b})
  wall = [x["train_time_s"] for x in b if x.get("train_time_s")]
  before = [x["init_from"]["train_time_s"] for x in b
            if x.get("init_from", {}).get("train_time_s")]
  dev = sorted({f"{x.get('devices')} {x.get('platform')}" for x in b
                if x.get("platform")})
  time = f"{np.mean(wall) / 60:.0f} min" if wall else "-"
  if before:
    time += f" (+ {np.mean(before) / 60:.0f})"
  return (", ".join(steps) + "".join(sorted(first)), time,
          ", ".join(dev) or "-")


def table_cost(results) -> str:
  methods, sizes = results["methods"], results["eval"]["sizes"]
  ms = " / ".join(map(str, sizes))
  lines = [f"| method | seeds | spike rate per layer (spikes / neuron / step) "
           f"| est. energy / image | wall ms / image ({ms} px) | train steps × "
           "batch | train time | trained on |",
           "|---|---|---|---|---|---|---|---|"]
  for name in row_order(results):
    m = methods[name]
    runs = m["runs"]
    wall = " / ".join(
        f"{1e3 * np.mean([r['time_s_per_image'][str(s)] for r in runs]):.1f}"
        for s in sizes)
    if m["kind"] == "trained":
      b = _budget(runs)
      lines.append(f"| {label(results, name)} | {len(runs)} | {_rates(runs)} "
                   f"| {_energy(runs)} | {wall} | {b[0]} | {b[1]} | {b[2]} |")
    else:
      lines.append(f"| {label(results, name)} | (fixed) | - | - | {wall} | - "
                   "| - | - |")
  return "\n".join(lines)


def tables(results) -> str:
  ev = results.get("eval", {})
  if ev.get("format") != FORMAT:
    raise SystemExit("this results file is in an older format: rerun "
                     "`inpaint_eval.py run`")
  cells = headline_cells(results)
  hs = " and ".join(map(str, ev["headline_sizes"]))
  nh = sum(ev["images_per_cell"][c] for c in cells)
  mach = results.get("machine", {})
  parts = [
      f"Held-out set: {ev['num_images']} images of {', '.join(ev['photos'])} "
      f"(seed {ev['seed']}; {', '.join(map(str, ev['sizes']))} px; box and "
      f"stroke holes; per (photo, size, kind): " + ", ".join(
          f"{n} at {s} px" for s, n in ev["n_per_photo"].items()) + "). "
      f"Wall times on {mach.get('cpu_model', '?')} ({mach.get('cores', '?')} "
      f"cores, {mach.get('platform', '?')}, jax {mach.get('jax', '?')}).",
      ev.get("photos_too_small") and "Photos smaller than a crop size sit "
      "it out: " + "; ".join(f"{s} px: {', '.join(n)}" for s, n in
                            ev["photos_too_small"].items()) + ".",
      f"### Headline: {hs} px crops ({nh} images)",
      table_scores(results, cells),
      table_paired(results, cells) and (
          "Paired differences (per seed: mean over the same images of row "
          "minus reference; mean ± sd [95 % t-interval] (per seed)):"),
      table_paired(results, cells),
      "### All sizes", table_scores(results, ev["cells"]),
      table_paired(results, ev["cells"]),
      "### Per cell (hole PSNR dB / SSIM, mean over seeds)",
      table_cells(results),
      f"### Gain by distance from the hole edge ({hs} px crops)",
      "Euclidean distance of a hole pixel to the nearest known pixel; MSE "
      "over the bin's pixels and channels; reduction = reference MSE - model "
      "MSE (positive: the model is better there).",
      table_distance(results, cells),
      "### Spikes, energy, time and training budget",
      table_cost(results)]
  return "\n\n".join(p for p in parts if p) + "\n"


def cmd_table(args, parser):
  print(tables(json.loads(Path(args.results).read_text())), end="")


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def _curve(workdir: Path):
  """(train seconds, hole PSNR, SSIM) at each of the run's evaluations.

  Train seconds at step k: k times the run's mean time per step (the
  trainer's ``train_time_s`` / steps, evaluation excluded), plus the whole
  training time of the run whose weights it started from, if any. The logged
  per-interval rates are no better on a machine whose load swung 3x while
  these runs trained, and the first interval after a resume holds a compile.
  """
  res = json.loads((workdir / "results.json").read_text())
  per_step = res["train_time_s"] / res["steps"]
  # A run started from another's weights (train.init_from) counts that
  # run's training time too: the time to this quality from nothing.
  cfg = json.loads((workdir / "config.json").read_text())
  source = cfg.get("train", {}).get("init_from")
  before = (json.loads((Path(source) / "results.json").read_text())
            if source else None)
  start = before["train_time_s"] if before else 0.0
  pts = [(start + rec["step"] * per_step, rec["hole_psnr"], rec["ssim"])
         for rec in map(json.loads,
                        (workdir / "metrics.jsonl").read_text().splitlines())
         if rec.get("kind") == "eval"]
  if before:   # its first point: where the run it started from ended
    pts.append((start, before["eval"]["hole_psnr"], before["eval"]["ssim"]))
  return np.asarray(sorted(pts))


def _prior_on_trainer_eval(workdir: Path):
  """(hole PSNR, SSIM) of the model's prior alone (= the untrained
  model, whose correction starts at zero) on the run's eval set."""
  import jax.numpy as jnp
  from scnn_jax import metrics, tasks
  from scnn_jax.runtime import inference
  from scnn_jax.ops import smooth_fill
  config = inference.read_config(workdir)
  acc = metrics.InpaintingAccumulator()
  for b in tasks.dataset(config).eval_batches(96, 0, 1):
    pred = smooth_fill.smooth_fill(jnp.asarray(b["image"] * (1 - b["mask"])),
                                   jnp.asarray(b["mask"]),
                                   order=config.model.prior_order,
                                   iters=config.model.prior_iters)
    acc.update(np.clip(np.asarray(pred), 0, 1), b["image"], b["mask"],
               b.get("valid"))
  r = acc.result()
  return r["hole_psnr"], r["ssim"]


def cmd_plot(args, parser):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  # Top: every model; bottom: the prior-based models alone, zoomed in.
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  names = [spec.split("=", 1)[0] for spec in args.model]
  colours = {n: f"C{i}" for i, n in enumerate(names)}
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
      cfg = json.loads((Path(d) / "config.json").read_text())
      if "prior_order" in cfg.get("model", {}) and cfg["model"]["name"] in (
          "spiking_unet", "spiking_resunet", "relu_resunet"):
        rows.append(axes[1])
        key = json.dumps(cfg, sort_keys=True)
        if key not in prior:   # seeds share the eval set: once per config
          prior[key] = _prior_on_trainer_eval(Path(d))
        # Step 0: the untrained net is exactly its prior (a run started
        # from another's weights starts where that run ended instead).
        if not cfg.get("train", {}).get("init_from"):
          pts = np.concatenate([[[0.0, *prior[key]]], pts])
      for row in rows:
        for ax, k, key in zip(row, (1, 2), ("hole_psnr", "ssim")):
          ax.plot(pts[:, 0] / 60, pts[:, k] - base["biharmonic"][key], "o-",
                  ms=3, color=colours.get(name),
                  label=name if i == 0 else None)
  for ax, lab in zip(axes.ravel(), ("hole PSNR - biharmonic's (dB)",
                                    "SSIM - biharmonic's") * 2):
    ax.axhline(0.0, color="k", linestyle="--", lw=1, label="biharmonic")
    ax.set_xlabel("training time (min, excl. evaluation)")
    ax.set_ylabel(lab)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  axes[1, 0].legend(fontsize=8, title="zoom; step 0 = prior alone",
                    title_fontsize=8)
  fig.suptitle(args.title, fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  _log(f"wrote {args.out}")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("run", help="score every row on the held-out set")
  r.add_argument("--out", required=True, help="the results JSON")
  r.add_argument("--model", action="append",
                 help="NAME=WORKDIR[,WORKDIR...] (one workdir per seed)")
  r.add_argument("--twin", action="append",
                 help="SPIKING=CONTROL: CONTROL's row is the non-spiking "
                      "twin of SPIKING's (seeds paired by position)")
  r.add_argument("--pretrained", action="store_true",
                 help="also the shipped model (scnn_jax/pretrained/)")
  r.add_argument("--keep", action="store_true",
                 help="add to --out's rows (same eval set) instead of "
                      "starting anew; rows already there are not rerun, "
                      "--model rows are replaced")
  t = sub.add_parser("table", help="markdown tables from a results JSON")
  t.add_argument("results")
  pl = sub.add_parser("plot", help="quality against training time")
  pl.add_argument("--out", required=True)
  pl.add_argument("--model", action="append", required=True)
  pl.add_argument("--title", default="")
  args = p.parse_args(argv)
  {"run": cmd_run, "table": cmd_table, "plot": cmd_plot}[args.cmd](
      args, {"run": r, "table": t, "plot": pl}[args.cmd])


if __name__ == "__main__":
  main()
