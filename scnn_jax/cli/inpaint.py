"""Inpaint your own images with the shipped model or a trained checkpoint.

    python -m scnn_jax.inpaint --image photo.png --mask mask.png \
        --out out.png                    # the pretrained model, no training
    python -m scnn_jax.inpaint --workdir runs/base --image photo.png \
        --mask mask.png --out out.png [--side-by-side]
    python -m scnn_jax.inpaint --workdir runs/base --image photos/ \
        --mask masks/ --out restored/
    python -m scnn_jax.inpaint --workdir runs/base --image photo.png \
        --mask-kind box --out out.png

Without ``--workdir`` the model shipped in the package is used
(``scnn_jax.pretrained``: the spiking residual U-Net of
``configs/spiking_resunet.py``);
with it, the model is rebuilt from the workdir's ``config.json`` and latest
checkpoint (``inference.load``). Masks: white = missing. Any image size
works (``scnn_jax.runtime.inpainter.Inpainter``; image files:
``scnn_jax.data.images``). Models whose output at a pixel depends only on a
bounded neighbourhood (paper A's SC-NN and CNN: a 6-px radius) tile images
larger than the memory budget with an overlap of that radius, so the tiled
result equals the untiled one. Models with a GLOBAL receptive field (TAID
decoders pool the whole image; the spiking U-Net's biharmonic prior solves a PDE
over the whole hole) are never tiled: they run on the whole image, and over the
budget on windows around the holes (``inpainter.plan_windows``: what that
changes), with progress lines when it takes more than a few seconds; a hole too
large for the budget is refused with a message. Known pixels of the output are
byte-identical to the input's (after the conversion to the checkpoint's
grayscale / RGB). See ``docs/how-to/inpaint.md``.

User mistakes (missing or unreadable files, size mismatches, a workdir without
a checkpoint) end the program with one ``error: ...`` line on stderr and exit
status 2; notes and warnings go to stderr as ``note:`` / ``warning:`` lines.
Every image and mask file is checked (readable, an image format, masks the
size of their images) before a model is built, so a mistake is reported at
once.

Start-up: the model is built abstractly and filled with the file's or the
checkpoint's weights (``inference``: nothing is initialised first), and the
compiled model is kept in JAX's persistent compilation cache
(``--compilation-cache``, default ``auto``: ``$JAX_COMPILATION_CACHE_DIR`` or
``~/.cache/scnn_jax/jax_compilation_cache``, the cache ``scnn-train`` uses;
``off`` to opt out), so a call after the first on an image of the same size
loads the program instead of compiling it.
The command runs as ``scnn-inpaint`` and ``python -m scnn_jax.inpaint``;
``scnn-inpaint --serve`` starts a web page to paint the hole in instead
(``scnn_jax/cli/serve.py``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import zlib
from typing import Sequence

import numpy as np
from etils import epath
from PIL import Image

# Light imports only: the files are checked before the model machinery
# (inference: the schema, the data sources, Orbax) is imported.
from scnn_jax import __version__, pretrained
from scnn_jax.data import masks
from scnn_jax.data.images import (IMAGE_EXTENSIONS, ImageError, first_line,
                                  mask_to_holes, read_image_file, save_png,
                                  to_model_pixels)
from scnn_jax.data.masks import MASK_KINDS
from scnn_jax.ops.checks import ConfigError
from scnn_jax.runtime.inpainter import (DEFAULT_MEMORY_MB, Inpainter,
                                        TilingError, WindowPlan)


class UserError(Exception):
  """A mistake in the command line or the files: reported as one line."""


def _note(msg: str) -> None:
  print(f"note: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
  print(f"warning: {msg}", file=sys.stderr)




# --------------------------------------------------------------------------
# Pairs of files and outputs
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
  image: epath.Path
  mask: epath.Path | None      # None: draw one with --mask-kind
  out: epath.Path


def _is_image_file(p: epath.Path) -> bool:
  return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and \
      not p.name.startswith(".")


def _side_path(out: epath.Path, tag: str) -> epath.Path:
  return out.parent / f"{out.stem}_{tag}.png"


def make_jobs(image, mask, out) -> list[Job]:
  """The (image, mask, output) triples of one command line."""
  image, out = epath.Path(image), epath.Path(out)
  mask = epath.Path(mask) if mask else None
  if not image.exists():
    raise UserError(f"image {image} not found")
  if image.is_dir():
    if out.exists() and not out.is_dir():
      raise UserError(f"--out {out} is a file: with a folder of images, "
                      "--out must be a folder")
    if mask is not None and not mask.is_dir():
      raise UserError(f"--mask {mask} must be a folder of masks when --image "
                      f"{image} is a folder")
    files = sorted((p for p in image.iterdir() if _is_image_file(p)),
                   key=lambda p: p.name)
    if not files:
      raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                      f"{image}")
    masks = {}
    if mask is not None:
      for p in mask.iterdir():
        if _is_image_file(p):
          masks.setdefault(p.stem, []).append(p)
    jobs, missing = [], []
    for f in files:
      m = None
      if mask is not None:
        found = masks.get(f.stem, [])
        if len(found) > 1:
          raise UserError(f"several masks for {f.name} in {mask}: "
                          f"{', '.join(sorted(p.name for p in found))}")
        if not found:
          missing.append(f.name)
          continue
        m = found[0]
      jobs.append(Job(f, m, out / f"{f.stem}.png"))
    if missing:
      more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
      raise UserError(f"no mask in {mask} for {', '.join(missing[:3])}{more}: "
                      "masks must have the image's file name (any image "
                      "extension)")
    stems = [j.out for j in jobs]
    if len(set(stems)) != len(stems):
      raise UserError(f"images in {image} share a file name stem (e.g. a.jpg "
                      "and a.png): their outputs would collide")
  else:
    if mask is not None and mask.is_dir():
      raise UserError(f"--mask {mask} is a folder but --image {image} is one "
                      "file")
    if out.is_dir():
      out = out / f"{image.stem}.png"
    jobs = [Job(image, mask, out)]
  for j in jobs:
    if j.out.suffix.lower() != ".png":
      raise UserError(f"--out {j.out} must end in .png (lossless, so known "
                      "pixels stay byte-identical)")
    if _same_file(j.out, j.image) or (j.mask and _same_file(j.out, j.mask)):
      raise UserError(f"--out {j.out} would overwrite an input file")
  return jobs


def check_files(jobs: list[Job]) -> None:
  """Every image and mask readable as an image, each mask the size of its
  image: from the files' headers, before any model is built."""
  for job in jobs:
    img = read_image_file(job.image, "image", decode=False)
    if job.mask is None:
      continue
    mimg = read_image_file(job.mask, "mask", decode=False)
    if mimg.size != img.size:
      raise UserError(
          f"mask {job.mask} is {mimg.size[0]}x{mimg.size[1]} px but image "
          f"{job.image} is {img.size[0]}x{img.size[1]} px: they must be the "
          "same size")


def _same_file(a: epath.Path, b: epath.Path) -> bool:
  try:
    return a.exists() and b.exists() and a.resolve() == b.resolve()
  except OSError:
    return False


def _save(path: epath.Path, arr: np.ndarray) -> None:
  try:
    save_png(path, arr)
  except OSError as e:
    raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def side_by_side(pixels: np.ndarray, holes: np.ndarray, out: np.ndarray,
                 gap: int = 4) -> np.ndarray:
  """uint8 ``input (holes grey) | mask (white = hole) | output``."""
  h, w, c = pixels.shape
  shown = np.where(holes[..., None], np.uint8(128), pixels)
  mask = np.repeat((holes * 255).astype(np.uint8)[..., None], c, -1)
  sep = np.full((h, gap, c), 64, np.uint8)
  return np.concatenate([shown, sep, mask, sep, out], axis=1)


def holes_beyond_reach(holes: np.ndarray, radius: int) -> float:
  """Fraction of hole pixels more than ``radius`` px (chessboard) from any
  known pixel: the model sees no context for them."""
  if radius <= 0 or not holes.any():
    return 0.0
  from scipy import ndimage
  deep = ndimage.binary_erosion(holes, np.ones((3, 3), bool),
                                iterations=radius, border_value=1)
  return float(deep.sum()) / float(holes.sum())


class Progress:
  """``progress(done, total)`` for ``Inpainter.inpaint``: ``note:`` lines
  on stderr for a long run, the first ``after`` s in, then at most one
  every ``every`` s and the last; nothing for a run that ends sooner."""

  def __init__(self, what: str, unit: str, *, after: float = 3.0,
               every: float = 5.0, clock=time.monotonic):
    self.what, self.unit = what, unit
    self.after, self.every, self.clock = after, every, clock
    self.start, self.last = clock(), None

  def __call__(self, done: int, total: int) -> None:
    now = self.clock()
    if now - self.start < self.after:
      return
    if self.last is None or now - self.last >= self.every or done == total:
      self.last = now
      _note(f"{self.what}: {done}/{total} {self.unit} done "
            f"({now - self.start:.0f} s)")


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def _ratio(text: str) -> tuple[float, float]:
  try:
    parts = [float(p) for p in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r}: expected RATIO or MIN,MAX (fractions of the image)")
  if len(parts) == 1:
    parts *= 2
  if len(parts) != 2 or not 0 < parts[0] <= parts[1] < 1:
    raise argparse.ArgumentTypeError(
        f"{text!r}: expected 0 < MIN <= MAX < 1")
  return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m scnn_jax.inpaint",
      description="Inpaint images with scnn_jax's shipped model or a "
                  "trained checkpoint. Masks: white = missing (gray level "
                  ">= 50 %; transparent = known).")
  p.add_argument("--workdir",
                 help="training workdir (config.json + checkpoints/); "
                      "default: the pretrained model shipped in the package")
  p.add_argument("--pretrained", choices=pretrained.SHIPPED,
                 default=pretrained.DEFAULT,
                 help="which shipped model, without --workdir (default "
                      "%(default)s; relu_resunet is its non-spiking twin)")
  p.add_argument("--image", required=True,
                 help="image file, or a folder of images")
  p.add_argument("--mask", help="mask file (same size as the image), or a "
                 "folder of masks named like the images")
  p.add_argument("--mask-kind", "--mask_kind", choices=MASK_KINDS,
                 help="no --mask: draw one with this training generator")
  p.add_argument("--mask-ratio", "--mask_ratio", type=_ratio,
                 help="hole fraction RATIO or MIN,MAX for --mask-kind "
                      "(default: the checkpoint's training range)")
  p.add_argument("--max-boxes", "--max_boxes", type=int,
                 help="--mask-kind box or mixed: up to this many boxes "
                      "(default: the checkpoint's masks.max_boxes)")
  p.add_argument("--mask-seed", "--mask_seed", type=int, default=0,
                 help="seed of --mask-kind (default 0)")
  p.add_argument("--out", required=True,
                 help="output .png, or a folder (required for a folder of "
                      "images)")
  p.add_argument("--side-by-side", "--side_by_side", action="store_true",
                 help="also write <out>_side_by_side.png: input | mask | "
                      "output")
  p.add_argument("--point", type=int,
                 help="ablation checkpoints: which model (index k)")
  p.add_argument("--memory-mb", "--memory_mb", type=float,
                 default=DEFAULT_MEMORY_MB,
                 help="activation memory budget per model call; larger "
                      "images are tiled, or filled in windows around the "
                      "holes for models that read the whole image (default "
                      "%(default)s)")
  p.add_argument("--overlap", type=int,
                 help="tile overlap radius, or the windows' least context, "
                      "in px (default: the model's receptive-field radius)")
  p.add_argument("--compilation-cache", "--compilation_cache", default="auto",
                 metavar="auto|off|DIR",
                 help="JAX persistent compilation cache: later calls on "
                      "images of the same size load the compiled model "
                      "instead of compiling it; 'auto' (default): "
                      "$JAX_COMPILATION_CACHE_DIR if set, else "
                      "~/.cache/scnn_jax/jax_compilation_cache; 'off': none")
  p.add_argument("--serve", action="store_true",
                 help="instead: a web page on 127.0.0.1 to paint the hole in "
                      "and fill it (scnn-inpaint --serve --help: its flags)")
  p.add_argument("--version", action="version",
                 version=f"scnn_jax {__version__}")
  return p


def _load_pretrained(name=pretrained.DEFAULT):
  folder = pretrained.path(name)
  try:
    loaded = pretrained.load(name)
  except (FileNotFoundError, ValueError) as e:
    raise UserError(f"the shipped model in {folder} cannot be loaded "
                    f"({first_line(e)}): reinstall scnn_jax, or pass "
                    "--workdir") from None
  _note(f"using the pretrained model shipped in {folder} "
        f"({loaded.config.model.name}; see MODEL_CARD.md there)")
  return loaded, loaded.model


def _load(workdir, point, name=pretrained.DEFAULT):
  from scnn_jax.runtime import inference
  if workdir is None:
    if point is not None:
      raise UserError("--point picks a model of an ablation workdir: give "
                      "--workdir too")
    return _load_pretrained(name)
  path = epath.Path(workdir)
  if not path.is_dir():
    raise UserError(f"workdir {path} not found")
  try:
    loaded = inference.load(path, point=point)
  except (FileNotFoundError, inference.PointError) as e:
    raise UserError(str(e).replace(" point k ", " --point k ")) from None
  except ConfigError as e:
    raise UserError(f"{path / 'config.json'}: {e}") from None
  except (AttributeError, KeyError) as e:  # a field this version needs
    raise UserError(
        f"cannot rebuild the model of {path} from its config.json "
        f"({type(e).__name__}: {first_line(e)}): was it written by another "
        "version of scnn_jax?") from None
  except ValueError as e:  # Orbax: the checkpoint does not fit the model
    raise UserError(f"cannot restore the checkpoint in {path}: "
                    f"{first_line(e)}") from None
  if loaded.config.task != "inpaint":
    raise UserError(f"workdir {path} holds a {loaded.config.task!r} model, "
                    "not an inpainting one")
  if point is not None:
    _note(f"ablation point {point}: {loaded.point_name}")
  return loaded, loaded.model


def _drawn_holes(args, config, job: Job, h: int, w: int) -> np.ndarray:
  lo, hi = args.mask_ratio or (config.masks.ratio_min, config.masks.ratio_max)
  options = {}
  if args.mask_kind in ("box", "mixed"):
    options["max_boxes"] = int(args.max_boxes or config.masks.max_boxes)
  if args.mask_kind == "mixed":
    # A checkpoint written before the field existed: the generator's default.
    options["stroke_fraction"] = float(config.masks.get(
        "stroke_fraction", masks.DEFAULT_STROKE_FRACTION))
  seed = [int(args.mask_seed), zlib.crc32(job.image.name.encode())]
  try:
    m = masks.make_mask(args.mask_kind, seed, h, w, lo, hi, **options)
  except ValueError as e:
    raise UserError(f"--mask-kind {args.mask_kind}: {e}") from None
  return m[..., 0] > 0.5


def process(args, inpainter: Inpainter, config, job: Job) -> None:
  img = read_image_file(job.image, "image")
  try:
    pixels, notes = to_model_pixels(img, inpainter.channels)
  except ValueError as e:
    raise UserError(f"image {job.image} (mode {img.mode}): {e}") from None
  for n in notes:
    _note(f"{job.image}: {n}")
  h, w = pixels.shape[:2]
  if job.mask is not None:
    mimg = read_image_file(job.mask, "mask")   # its size: check_files
    try:
      holes = mask_to_holes(mimg)
    except ValueError as e:
      raise UserError(f"mask {job.mask} (mode {mimg.mode}): {e}") from None
  else:
    holes = _drawn_holes(args, config, job, h, w)
    mask_out = _side_path(job.out, "mask")
    _save(mask_out, holes.astype(np.uint8) * 255)
    _note(f"{job.image}: drew a {args.mask_kind} mask "
          f"({holes.mean():.1%} holes), saved as {mask_out}")
  if not holes.any():
    _warn(f"mask {job.mask} has no hole (no pixel >= 50 % white): "
          f"{job.image} copied unchanged to {job.out}")
    out = pixels
  else:
    if holes.all():
      _warn(f"mask {job.mask} covers the whole image: the output is the "
            "model's guess from no context")
    beyond = (0.0 if inpainter.global_field
              else holes_beyond_reach(holes, inpainter.radius))
    if beyond > 0:
      _note(f"{job.image}: {beyond:.0%} of the hole pixels are more than "
            f"{inpainter.radius} px from any known pixel, beyond the model's "
            "receptive field: they are filled without context")
    try:
      plan = inpainter.plan(h, w, holes)
    except TilingError as e:
      raise UserError(f"{job.image}: {e}") from None
    if isinstance(plan, WindowPlan):
      unit, calls = "windows", plan.calls
      need = math.ceil(h * w * inpainter.bytes_per_pixel / 2**20)
      sizes = ", ".join(f"{len(v)} of {s[1]}x{s[0]} px"
                        for s, v in plan.windows.items())
      _note(f"{job.image}: {w}x{h} px is over the --memory-mb "
            f"{args.memory_mb:g} budget for one call of this model, which "
            f"reads the whole image: filling the holes in {plan.count} "
            f"windows around them ({sizes}; {plan.calls} model calls). The "
            "fill can differ slightly from a whole-image run (--memory-mb "
            f"{need} or more)")
    else:
      unit, calls = "tiles", -(-len(plan.tiles) // plan.batch)
    if not isinstance(plan, WindowPlan) and plan.tiled:
      _note(f"{job.image}: {w}x{h} px over the --memory-mb budget: "
            f"{len(plan.tiles)} tiles of {plan.tile_w}x{plan.tile_h} px "
            f"({plan.batch} per call)")
    try:
      out = inpainter.inpaint(
          pixels, holes, plan=plan,
          progress=Progress(str(job.image), unit) if calls > 1 else None)
    except FloatingPointError as e:
      raise UserError(f"{job.image}: {e}") from None
  _save(job.out, out)
  if args.side_by_side:
    _save(_side_path(job.out, "side_by_side"), side_by_side(pixels, holes, out))
  print(f"wrote {job.out}", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> int:
  """The command; raises ``UserError`` for user mistakes."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if "--serve" in argv:   # its own flags: no --image / --out
    from scnn_jax.cli import serve
    return serve.run([a for a in argv if a != "--serve"], load=_load)
  args = build_parser().parse_args(argv)
  if args.mask and args.mask_kind:
    raise UserError("give either --mask or --mask-kind, not both")
  if not args.mask and not args.mask_kind:
    raise UserError("no mask: give --mask FILE/FOLDER (white = missing) or "
                    f"--mask-kind {'|'.join(MASK_KINDS)} to draw one")
  if args.memory_mb <= 0:
    raise UserError(f"--memory-mb {args.memory_mb}: must be > 0")
  if args.overlap is not None and args.overlap < 0:
    raise UserError(f"--overlap {args.overlap}: must be >= 0")
  jobs = make_jobs(args.image, args.mask, args.out)
  check_files(jobs)
  from scnn_jax.cli import common
  common.setup_compilation_cache(args.compilation_cache)
  loaded, model = _load(args.workdir, args.point, args.pretrained)
  inpainter = Inpainter(model, loaded.config, memory_mb=args.memory_mb,
                        overlap=args.overlap)
  for job in jobs:
    process(args, inpainter, loaded.config, job)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  Image.MAX_IMAGE_PIXELS = None  # the user's own images: no bomb limit
  try:
    return run(argv)
  except (UserError, ImageError, TilingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
