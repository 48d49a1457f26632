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
(``scnn_jax.pretrained``: the spiking U-Net of ``configs/spiking_unet.py``);
with it, the model is rebuilt from the workdir's ``config.json`` and latest
checkpoint (``inference.load``). Masks: white = missing. Any image size
works. Models whose output at a pixel depends only on a bounded
neighbourhood (paper A's SC-NN and CNN: a 6-px radius) tile images larger
than the memory budget with an overlap of that radius, so the tiled result
equals the untiled one. Models with a GLOBAL receptive field (TAID decoders
pool the whole image; the spiking U-Net's biharmonic prior solves a PDE over
the whole hole) always run on the whole image: over the budget they are
refused with a message, never tiled into a different answer. Known pixels of
the output are byte-identical to the input's (after the conversion to the
checkpoint's grayscale / RGB). See ``docs/inpaint.md``.

User mistakes (missing or unreadable files, size mismatches, a workdir without
a checkpoint) end the program with one ``error: ...`` line on stderr and exit
status 2; notes and warnings go to stderr as ``note:`` / ``warning:`` lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import sys
import zlib
from typing import Iterator, Sequence

import numpy as np
from etils import epath
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm", ".pgm")
DEFAULT_MEMORY_MB = 1024
MASK_THRESHOLD = 0.5  # a mask pixel is a hole when its gray level >= 50 %

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N",
               "F")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit PNGs load so


class UserError(Exception):
  """A mistake in the command line or the files: reported as one line."""


def _note(msg: str) -> None:
  print(f"note: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
  print(f"warning: {msg}", file=sys.stderr)


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


# --------------------------------------------------------------------------
# Reading images and masks
# --------------------------------------------------------------------------


def read_image_file(path, what: str = "image") -> Image.Image:
  """Opens and decodes ``path``; ``UserError`` naming it when that fails."""
  path = epath.Path(path)
  if not path.exists():
    raise UserError(f"{what} {path} not found")
  if path.is_dir():
    raise UserError(f"{what} {path} is a directory, not an image file")
  try:
    data = path.read_bytes()
    img = Image.open(io.BytesIO(data))
    img.load()
  except Image.DecompressionBombError as e:
    raise UserError(f"cannot read {what} {path}: {e}") from None
  except (OSError, ValueError, SyntaxError) as e:
    raise UserError(f"cannot read {what} {path}: not an image Pillow can "
                    f"decode ({_first_line(e)})") from None
  return img


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
  """16-bit grayscale (Pillow modes I / I;16*) -> uint8, rounded."""
  a = np.asarray(img).astype(np.int64)
  return np.clip((a + 128) // 257, 0, 255).astype(np.uint8)


def to_model_pixels(img: Image.Image, channels: int
                    ) -> tuple[np.ndarray, list[str]]:
  """``img`` as uint8 ``[H, W, channels]`` and notes on what was converted.

  ``channels`` 3: RGB (grayscale is replicated, alpha dropped, palette / CMYK
  / other modes converted by Pillow). ``channels`` 1: grayscale (colour is
  reduced to Pillow's luma ``L = 0.299 R + 0.587 G + 0.114 B``). 16-bit
  grayscale is scaled to 8 bits. The output is written in this same format,
  so "known pixels unchanged" holds for these pixels. Raises ``ValueError``
  for modes Pillow cannot convert.
  """
  if channels not in (1, 3):
    raise ValueError(f"the checkpoint expects {channels}-channel images; "
                     "only 1 (grayscale) and 3 (RGB) are supported")
  mode = img.mode
  notes = []
  if mode == "P":
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
  elif mode in ("RGBa", "La"):  # premultiplied alpha
    img = img.convert("RGBA" if mode == "RGBa" else "LA")
  if img.mode in _ALPHA_MODES:
    notes.append(f"alpha channel dropped ({mode} -> "
                 f"{'RGB' if channels == 3 else 'L'}; transparent pixels keep "
                 "their stored colour)")
  gray = img.mode in _GRAY_MODES
  if img.mode in _WIDE_MODES:
    arr = _wide_to_uint8(img)
    notes.append("16-bit image reduced to 8 bits")
  elif gray:
    arr = np.asarray(img.convert("L"))
  else:
    if img.mode not in ("RGB", "RGBA"):
      notes.append(f"converted from mode {mode} to RGB")
    rgb = img.convert("RGB")
    arr = np.asarray(rgb.convert("L") if channels == 1 else rgb)
  if arr.ndim == 2:
    arr = arr[..., None]
  if channels == 3 and arr.shape[-1] == 1:
    arr = np.repeat(arr, 3, axis=-1)
    notes.append("grayscale image replicated to RGB (the checkpoint is RGB)")
  elif channels == 1 and not gray:
    notes.append("colour image converted to grayscale (the checkpoint is "
                 "grayscale; Pillow luma)")
  return np.ascontiguousarray(arr, dtype=np.uint8), notes


def mask_to_holes(img: Image.Image) -> np.ndarray:
  """A mask image -> bool ``[H, W]``, True = hole (missing pixel).

  The gray level of each pixel (Pillow's luma for colour masks, 16-bit masks
  scaled to [0, 1]) times its alpha (transparent = black = known) is
  thresholded at 50 %: 8-bit levels >= 128 are holes, <= 127 known.
  """
  mode = img.mode
  if mode == "1":
    return np.asarray(img, dtype=bool).copy()
  if mode == "P":
    img = img.convert("RGBA")
    mode = "RGBA"
  if mode in _WIDE_MODES:
    level = np.asarray(img).astype(np.float64) / 65535.0
    return level >= MASK_THRESHOLD
  alpha = None
  if mode in _ALPHA_MODES:
    rgba = img.convert("RGBA" if mode in ("RGBA", "PA", "RGBa") else "LA")
    alpha = np.asarray(rgba)[..., -1].astype(np.int64)
    img = rgba.convert("RGB" if rgba.mode == "RGBA" else "L")
  level = np.asarray(img.convert("L")).astype(np.int64)
  if alpha is None:
    return 2 * level >= 255                   # level / 255 >= 0.5
  return 2 * level * alpha >= 255 * 255     # (level / 255) * (alpha / 255)


# --------------------------------------------------------------------------
# Model and the selection of an ablation point
# --------------------------------------------------------------------------


def receptive_radius(config) -> int:
  """Pixels of context on each side that one output pixel depends on.

  ``config.model.receptive_radius`` when a model variant sets it, otherwise
  ``num_layers * (kernel_size // 2)`` (stride-1 convs; 6 for paper A's six
  3x3 layers).
  """
  m = config.model
  radius = m.get("receptive_radius")
  if radius is not None:
    return int(radius)
  return int(m.num_layers) * (int(m.get("kernel_size", 3)) // 2)


def global_receptive_field(config, model=None) -> str | None:
  """Why each output pixel depends on the whole image, or None if it does not.

  The spiking U-Net (``model.global_receptive_field``) fills holes with a
  prior solved over the whole image; a TAID decoder (paper B) weights time
  steps by spatial means over the whole image.
  """
  m = config.model
  if getattr(model, "global_receptive_field", False) or \
      m.get("name") == "spiking_unet":
    return "its biharmonic prior is solved over the whole image"
  if m.get("decoder") == "taid" and m.get("name") in ("scnn",
                                                      "spiking_decoder"):
    return "its TAID decoder pools the whole image"
  return None


def size_multiple(config, model=None) -> int:
  """Image sides must be a multiple of this (1 for the stride-1 models)."""
  value = config.model.get("size_multiple")
  if value is None and model is not None:
    value = getattr(model, "size_multiple", None)
  return max(1, int(value or 1))


def bytes_per_pixel(config) -> int:
  """Estimated peak activation memory of the forward pass per pixel (bytes).

  ``4 * width * (3 * T + 4)`` (T = 1 for the CNN): float32 maps, ~3 alive
  per time step in the spiking layer plus a few for the convs. Conservative:
  XLA's compiled memory analysis on CPU gives 1152 B/px for the base SC-NN
  (width 32, T 8; estimate 3584), 256 for the CNN (estimate 896) and 12800
  for width 64, T 16 (estimate 13312).
  """
  m = config.model
  t = int(m.get("T", 1)) if m.get("name", "scnn") != "cnn" else 1
  return 4 * int(m.width) * (3 * t + 4)


# --------------------------------------------------------------------------
# Tiling
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tile:
  y0: int          # window position in the (padded) image
  x0: int
  cy0: int         # core: the rows/cols this tile writes (image coordinates)
  cy1: int
  cx0: int
  cx1: int


@dataclasses.dataclass(frozen=True)
class TilePlan:
  tile_h: int
  tile_w: int
  batch: int       # tiles per model call
  tiles: tuple[Tile, ...]

  @property
  def tiled(self) -> bool:
    return len(self.tiles) > 1


def _floor_to(x: int, m: int) -> int:
  return (x // m) * m


def _axis_windows(length: int, tile: int, radius: int, multiple: int):
  """(start, core_lo, core_hi) windows covering [0, length).

  Consecutive windows overlap by at least ``2 * radius``; the boundary between
  two cores lies in the middle of their overlap, so every core pixel is at
  least ``radius`` from its window's edge unless that edge is the image's.
  """
  if tile >= length:
    return [(0, 0, length)]
  stride = _floor_to(tile - 2 * radius, multiple)
  if stride < 1:
    raise ValueError("tile too small for the overlap")
  starts = list(range(0, length - tile, stride)) + [length - tile]
  bounds = [0]
  for a, b in zip(starts[:-1], starts[1:]):
    bounds.append(b + (a + tile - b) // 2)
  bounds.append(length)
  return [(s, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


def plan_tiles(height: int, width: int, *, max_pixels: int, radius: int,
               multiple: int = 1, max_batch: int | None = None) -> TilePlan:
  """How to cover a ``height x width`` image (sides multiples of
  ``multiple``) with model calls of at most ``max_pixels`` pixels each.

  One call on the whole image when it fits; otherwise equal tiles (as square
  as the image allows, sides multiples of ``multiple``) overlapping by at
  least ``2 * radius``, as many per call as fit in ``max_pixels``.
  """
  if height * width <= max_pixels:
    return TilePlan(height, width, 1, (Tile(0, 0, 0, height, 0, width),))
  side = _floor_to(math.isqrt(max_pixels), multiple)
  if width <= side:
    tile_w = width
    tile_h = min(height, _floor_to(max_pixels // width, multiple))
  elif height <= side:
    tile_h = height
    tile_w = min(width, _floor_to(max_pixels // height, multiple))
  else:
    tile_h = tile_w = side
  for t, full in ((tile_h, height), (tile_w, width)):
    if t < full and _floor_to(t - 2 * radius, multiple) < max(multiple, radius):
      raise UserError(
          f"memory budget too small: tiles of {tile_w}x{tile_h} px leave "
          f"too little room beside the {radius}-px overlap; raise "
          "--memory-mb")
  rows = _axis_windows(height, tile_h, radius, multiple)
  cols = _axis_windows(width, tile_w, radius, multiple)
  tiles = tuple(Tile(y, x, cy0, cy1, cx0, cx1)
                for y, cy0, cy1 in rows for x, cx0, cx1 in cols)
  batch = max(1, min(len(tiles), max_pixels // (tile_h * tile_w)))
  if max_batch:
    batch = min(batch, max_batch)
  return TilePlan(tile_h, tile_w, batch, tiles)


# --------------------------------------------------------------------------
# Running the model
# --------------------------------------------------------------------------


class Inpainter:
  """Runs an inpainting model on whole images of any size.

  ``predict(pixels, holes)`` -> float32 ``[H, W, C]`` model output;
  ``inpaint(pixels, holes)`` -> uint8 composite (known pixels copied from
  ``pixels``, holes from the model). ``pixels``: uint8 ``[H, W, C]``;
  ``holes``: bool ``[H, W]``.
  """

  def __init__(self, model, config, task, *,
               memory_mb: float = DEFAULT_MEMORY_MB,
               overlap: int | None = None, max_batch: int | None = None):
    import jax
    from flax import nnx
    self.config = config
    self.channels = int(config.data.channels)
    self.radius = receptive_radius(config) if overlap is None else int(overlap)
    self.multiple = size_multiple(config, model)
    self.bytes_per_pixel = bytes_per_pixel(config)
    self.memory_mb = memory_mb
    self.max_pixels = max(1, int(memory_mb * 2**20 / self.bytes_per_pixel))
    self.global_field = global_receptive_field(config, model)
    self.max_batch = max_batch
    graphdef, state = nnx.split(model)
    self._state = state

    def forward(state, image, mask):
      m = nnx.merge(graphdef, state)
      return task.predict(m, {"image": image, "mask": mask})["pred"]

    self._forward = jax.jit(forward)  # compiles once per tile shape
    self.compiled_shapes: set[tuple[int, ...]] = set()

  def padded_size(self, height: int, width: int) -> tuple[int, int]:
    m = self.multiple
    return -(-height // m) * m, -(-width // m) * m

  def plan(self, height: int, width: int) -> TilePlan:
    hp, wp = self.padded_size(height, width)
    if self.global_field:   # tiles would give another answer: whole or none
      if hp * wp > self.max_pixels:
        raise UserError(
            f"{width}x{height} px is over the --memory-mb {self.memory_mb:g} "
            f"budget (~{self.max_pixels:,} px for this model) and this model "
            f"cannot be tiled ({self.global_field}, so tiles would change "
            "the result): raise --memory-mb or crop the image")
      return TilePlan(hp, wp, 1, (Tile(0, 0, 0, hp, 0, wp),))
    return plan_tiles(hp, wp, max_pixels=self.max_pixels, radius=self.radius,
                      multiple=self.multiple, max_batch=self.max_batch)

  def _pieces(self, pixels: np.ndarray, holes: np.ndarray
              ) -> Iterator[tuple[Tile, np.ndarray]]:
    """(tile, float32 prediction of its core) for every tile."""
    h, w, c = pixels.shape
    if c != self.channels:
      raise ValueError(f"expected {self.channels} channels, got {c}")
    plan = self.plan(h, w)
    hp, wp = self.padded_size(h, w)
    if (hp, wp) != (h, w):  # mirror-pad to the model's size multiple
      pad = ((0, hp - h), (0, wp - w))
      pixels = np.pad(pixels, pad + ((0, 0),), mode="symmetric")
      holes = np.pad(holes, pad, mode="symmetric")
    th, tw, b = plan.tile_h, plan.tile_w, plan.batch
    tiles = plan.tiles
    for i in range(0, len(tiles), b):
      group = tiles[i:i + b]
      image = np.zeros((b, th, tw, c), np.float32)
      mask = np.zeros((b, th, tw, 1), np.float32)
      for j, t in enumerate(group):
        image[j] = pixels[t.y0:t.y0 + th, t.x0:t.x0 + tw] / np.float32(255)
        mask[j, ..., 0] = holes[t.y0:t.y0 + th, t.x0:t.x0 + tw]
      self.compiled_shapes.add(image.shape)
      pred = np.asarray(self._forward(self._state, image, mask), np.float32)
      for j, t in enumerate(group):
        core = pred[j, t.cy0 - t.y0:t.cy1 - t.y0, t.cx0 - t.x0:t.cx1 - t.x0]
        cy1, cx1 = min(t.cy1, h), min(t.cx1, w)  # crop the padding back off
        if cy1 > t.cy0 and cx1 > t.cx0:
          yield (dataclasses.replace(t, cy1=cy1, cx1=cx1),
                 core[:cy1 - t.cy0, :cx1 - t.cx0])

  def predict(self, pixels: np.ndarray, holes: np.ndarray) -> np.ndarray:
    out = np.zeros(pixels.shape, np.float32)
    for t, core in self._pieces(pixels, holes):
      out[t.cy0:t.cy1, t.cx0:t.cx1] = core
    return out

  def inpaint(self, pixels: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The composite, uint8: known pixels are ``pixels``' bytes exactly."""
    from scnn_jax.images import to_uint8
    out = pixels.copy()
    for t, core in self._pieces(pixels, holes):
      if not np.all(np.isfinite(core)):
        raise FloatingPointError("the model produced non-finite values "
                                 "(NaN/inf): the checkpoint is probably "
                                 "broken")
      sl = (slice(t.cy0, t.cy1), slice(t.cx0, t.cx1))
      region = out[sl]
      np.copyto(region, to_uint8(core), where=holes[sl][..., None])
    return out


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


def _same_file(a: epath.Path, b: epath.Path) -> bool:
  try:
    return a.exists() and b.exists() and a.resolve() == b.resolve()
  except OSError:
    return False


def _save(path: epath.Path, arr: np.ndarray) -> None:
  from scnn_jax.images import save_png
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
  from scnn_jax.masks import MASK_KINDS
  p = argparse.ArgumentParser(
      prog="python -m scnn_jax.inpaint",
      description="Inpaint images with scnn_jax's shipped model or a "
                  "trained checkpoint. Masks: white = missing (gray level "
                  ">= 50 %%; transparent = known).")
  p.add_argument("--workdir",
                 help="training workdir (config.json + checkpoints/); "
                      "default: the pretrained model shipped in the package")
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
                 help="--mask-kind box: up to this many boxes (default: the "
                      "checkpoint's masks.max_boxes)")
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
                      "images are tiled (default %(default)s)")
  p.add_argument("--overlap", type=int,
                 help="tile overlap radius in px (default: the model's "
                      "receptive-field radius)")
  return p


def _load_pretrained():
  from scnn_jax import pretrained
  folder = pretrained.path()
  try:
    loaded = pretrained.load()
  except (FileNotFoundError, ValueError) as e:
    raise UserError(f"the shipped model in {folder} cannot be loaded "
                    f"({_first_line(e)}): reinstall scnn_jax, or pass "
                    "--workdir") from None
  _note(f"using the pretrained model shipped in {folder} "
        f"({loaded.config.model.name}; see MODEL_CARD.md there)")
  return loaded, loaded.model


def _load(workdir, point):
  from scnn_jax import inference
  from scnn_jax.config_lib import ConfigError
  if workdir is None:
    if point is not None:
      raise UserError("--point picks a model of an ablation workdir: give "
                      "--workdir too")
    return _load_pretrained()
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
        f"({type(e).__name__}: {_first_line(e)}): was it written by another "
        "version of scnn_jax?") from None
  except ValueError as e:  # Orbax: the checkpoint does not fit the model
    raise UserError(f"cannot restore the checkpoint in {path}: "
                    f"{_first_line(e)}") from None
  if loaded.config.task != "inpaint":
    raise UserError(f"workdir {path} holds a {loaded.config.task!r} model, "
                    "not an inpainting one")
  if point is not None:
    _note(f"ablation point {point}: {loaded.point_name}")
  return loaded, loaded.model


def _drawn_holes(args, config, job: Job, h: int, w: int) -> np.ndarray:
  from scnn_jax import masks
  lo, hi = args.mask_ratio or (config.masks.ratio_min, config.masks.ratio_max)
  options = {}
  if args.mask_kind == "box":
    options["max_boxes"] = int(args.max_boxes or config.masks.get(
        "max_boxes", 3))
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
    mimg = read_image_file(job.mask, "mask")
    if mimg.size != img.size:
      raise UserError(
          f"mask {job.mask} is {mimg.size[0]}x{mimg.size[1]} px but image "
          f"{job.image} is {w}x{h} px: they must be the same size")
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
    plan = inpainter.plan(h, w)
    if plan.tiled:
      _note(f"{job.image}: {w}x{h} px over the --memory-mb budget: "
            f"{len(plan.tiles)} tiles of {plan.tile_w}x{plan.tile_h} px "
            f"({plan.batch} per call)")
    try:
      out = inpainter.inpaint(pixels, holes)
    except FloatingPointError as e:
      raise UserError(f"{job.image}: {e}") from None
  _save(job.out, out)
  if args.side_by_side:
    _save(_side_path(job.out, "side_by_side"), side_by_side(pixels, holes, out))
  print(f"wrote {job.out}", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> int:
  """The command; raises ``UserError`` for user mistakes."""
  args = build_parser().parse_args(argv)
  if args.mask and args.mask_kind:
    raise UserError("give either --mask or --mask-kind, not both")
  if not args.mask and not args.mask_kind:
    raise UserError("no mask: give --mask FILE/FOLDER (white = missing) or "
                    "--mask-kind box|center|stroke|pixels to draw one")
  if args.memory_mb <= 0:
    raise UserError(f"--memory-mb {args.memory_mb}: must be > 0")
  if args.overlap is not None and args.overlap < 0:
    raise UserError(f"--overlap {args.overlap}: must be >= 0")
  jobs = make_jobs(args.image, args.mask, args.out)
  loaded, model = _load(args.workdir, args.point)
  inpainter = Inpainter(model, loaded.config, loaded.task,
                        memory_mb=args.memory_mb, overlap=args.overlap)
  for job in jobs:
    process(args, inpainter, loaded.config, job)
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  Image.MAX_IMAGE_PIXELS = None  # the user's own images: no bomb limit
  try:
    return run(argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
