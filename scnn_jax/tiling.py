"""Inpainting whole images of any size: the ``Inpainter`` and its tiles.

    from scnn_jax import inference
    from scnn_jax.tiling import Inpainter
    loaded = inference.load("runs/base")
    out = Inpainter(loaded.model, loaded.config).inpaint(pixels, holes)

Models whose output at a pixel depends only on a bounded neighbourhood
(paper A's SC-NN and CNN: a 6-px radius) tile images larger than the memory
budget with an overlap of that radius, so the tiled result equals the
untiled one. Models with a GLOBAL receptive field (TAID decoders pool the
whole image; the spiking U-Net's biharmonic prior solves a PDE over the
whole hole) always run on the whole image: over the budget they are refused
(``TilingError``), never tiled into a different answer. Known pixels of the
output are byte-identical to the input's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import jax
import numpy as np
from flax import nnx

from scnn_jax import encoders
from scnn_jax.images import to_uint8
from scnn_jax.models.scnn import masked_input

DEFAULT_MEMORY_MB = 1024
KERNEL_SIZE = 3   # every conv of the stride-1 inpainting models


class TilingError(ValueError):
  """An image this model cannot run within the memory budget."""


# --------------------------------------------------------------------------
# What a model needs
# --------------------------------------------------------------------------


def receptive_radius(config) -> int:
  """Pixels of context on each side that one output pixel depends on:
  ``num_layers * (3 // 2)`` (stride-1 3x3 convs; 6 for paper A's six
  layers). Models with a global field are never tiled
  (``global_receptive_field``)."""
  return int(config.model.num_layers) * (KERNEL_SIZE // 2)


def global_receptive_field(config, model=None) -> str | None:
  """Why each output pixel depends on the whole image, or None if it does not.

  The spiking U-Net (``model.global_receptive_field``) fills holes with a
  prior solved over the whole image; a TAID decoder (paper B) weights time
  steps by spatial means over the whole image.
  """
  m = config.model
  if getattr(model, "global_receptive_field", False) or \
      m.name in ("spiking_unet", "spiking_resunet", "relu_resunet"):
    return "its biharmonic prior is solved over the whole image"
  if m.decoder == "taid" and m.name in ("scnn", "spiking_decoder"):
    return "its TAID decoder pools the whole image"
  return None


def size_multiple(model=None) -> int:
  """Image sides must be a multiple of this (``model.size_multiple``; 1 for
  the stride-1 models)."""
  return max(1, int(getattr(model, "size_multiple", None) or 1))


def bytes_per_pixel(config) -> int:
  """Estimated peak activation memory of the forward pass per pixel (bytes).

  ``4 * width * (3 * T + 4)`` (T = 1 for the CNN): float32 maps, ~3 alive
  per time step in the spiking layer plus a few for the convs. Conservative:
  XLA's compiled memory analysis on CPU gives 1152 B/px for the base SC-NN
  (width 32, T 8; estimate 3584), 256 for the CNN (estimate 896) and 12800
  for width 64, T 16 (estimate 13312).
  """
  m = config.model
  t = int(m.T) if m.name != "cnn" else 1
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
      raise TilingError(
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

  ``model``: an inpainting model in eval mode (``inference.load(...).model``)
  and ``config`` its config. ``predict(pixels, holes)`` -> float32
  ``[H, W, C]`` model output;
  ``inpaint(pixels, holes)`` -> uint8 composite (known pixels copied from
  ``pixels``, holes from the model). ``pixels``: uint8 ``[H, W, C]``;
  ``holes``: bool ``[H, W]``.
  """

  def __init__(self, model, config, *,
               memory_mb: float = DEFAULT_MEMORY_MB,
               overlap: int | None = None, max_batch: int | None = None):
    self.config = config
    self.channels = int(config.data.channels)
    self.radius = receptive_radius(config) if overlap is None else int(overlap)
    self.multiple = size_multiple(model)
    self.bytes_per_pixel = bytes_per_pixel(config)
    self.memory_mb = memory_mb
    self.max_pixels = max(1, int(memory_mb * 2**20 / self.bytes_per_pixel))
    self.global_field = global_receptive_field(config, model)
    self.max_batch = max_batch
    graphdef, state = nnx.split(model)
    self._state = state

    mask_channel = config.model.mask_channel

    def forward(state, image, mask):
      model = nnx.merge(graphdef, state)
      return model(masked_input(image, mask, mask_channel),
                   rngs=encoders.eval_rngs())

    self._forward = jax.jit(forward)  # compiles once per tile shape
    self.compiled_shapes: set[tuple[int, ...]] = set()

  def padded_size(self, height: int, width: int) -> tuple[int, int]:
    m = self.multiple
    return -(-height // m) * m, -(-width // m) * m

  def plan(self, height: int, width: int) -> TilePlan:
    hp, wp = self.padded_size(height, width)
    if self.global_field:   # tiles would give another answer: whole or none
      if hp * wp > self.max_pixels:
        raise TilingError(
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
