"""Inpainting images of any size: the ``Inpainter``, its tiles and windows.

    from scnn_jax.runtime import inference
    from scnn_jax.runtime.inpainter import Inpainter
    loaded = inference.load("runs/base")
    out = Inpainter(loaded.model, loaded.config).inpaint(pixels, holes)

Models whose output at a pixel depends only on a bounded neighbourhood
(paper A's SC-NN and CNN: a 6-px radius) tile images larger than the memory
budget with an overlap of that radius, so the tiled result equals the
untiled one. Models with a GLOBAL receptive field (TAID decoders pool the
whole image; the prior U-Nets solve a biharmonic equation over the holes
and, for ``PriorResUNet``, normalise by the known pixels' contrast) run on
the whole image when it fits the budget. Over it they run on WINDOWS around
the holes (``plan_windows``): holes closer than the net's reach are filled
together, each group in a window with at least that reach of context, and
only the group's hole pixels are pasted back. What such a window changes
against the whole image is listed at ``plan_windows``; a hole group whose
window would not fit the budget is refused (``TilingError``). Known pixels
of the output are byte-identical to the input's.

What the inpainter needs to know of a model it reads from the model itself
(``receptive_radius``, ``global_receptive_field``, ``size_multiple``,
``bytes_per_pixel``: ``scnn_jax/models/__init__.py``), never from its name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterator

import jax
import numpy as np
from flax import nnx

from scnn_jax.data.images import to_uint8
from scnn_jax.models.scnn import masked_input
from scnn_jax.nn import encoders

DEFAULT_MEMORY_MB = 1024
# A hole group's window gets at least this many times the group's longer
# side of context on each side (and never less than the net's reach): the
# prior's coarse levels and the contrast normalisation see the hole's
# surroundings, not just its rim.
CONTEXT_FACTOR = 1.0
BIHARMONIC_REACH = 2   # px: the radius of the biharmonic 13-point stencil


class TilingError(ValueError):
  """An image this model cannot run within the memory budget."""


# --------------------------------------------------------------------------
# What a model needs: the facts it declares (scnn_jax/models/__init__.py)
# --------------------------------------------------------------------------


def global_receptive_field(model) -> str | None:
  """Why each output pixel of ``model`` depends on the whole image, or None
  if it does not (``model.global_receptive_field``: the prior U-Nets solve
  their prior over the whole image, a TAID decoder pools it). Over the
  memory budget such a model runs on windows around the holes
  (``plan_windows``), never on tiles."""
  why = getattr(model, "global_receptive_field", None)
  return "its output depends on the whole image" if why is True else why


def size_multiple(model=None) -> int:
  """Image sides must be a multiple of this (``model.size_multiple``; 1 for
  the stride-1 models)."""
  return max(1, int(getattr(model, "size_multiple", None) or 1))


def _declared(model, fact: str) -> int:
  value = getattr(model, fact, None)
  if value is None:
    raise TilingError(f"{type(model).__name__} does not declare its {fact} "
                      "(scnn_jax/models/__init__.py lists what an inpainting "
                      "model declares)")
  return int(value)


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
# Windows around the holes (models with a global field)
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Window:
  y0: int          # window position in the image
  x0: int
  group: int       # the hole group it fills (``WindowPlan.groups`` label)
  box: tuple[int, int, int, int]   # the group's holes: (y0, y1, x0, x1)


@dataclasses.dataclass(frozen=True, eq=False)
class WindowPlan:
  """``windows[(h, w)]``: the windows of that size, run ``batch[(h, w)]``
  per model call; ``groups`` labels each hole pixel with its group (0 on
  known pixels)."""
  windows: dict[tuple[int, int], tuple[Window, ...]]
  batch: dict[tuple[int, int], int]
  groups: np.ndarray
  reach: int       # px: holes closer than this share a group

  tiled = False

  @property
  def count(self) -> int:
    return sum(len(w) for w in self.windows.values())

  @property
  def calls(self) -> int:
    return sum(-(-len(w) // self.batch[s]) for s, w in self.windows.items())


def _window_side(need: int, multiple: int) -> int:
  """The smallest of 32, 48, 64, 96, 128, 192, ... (each a multiple of
  ``multiple``) that is >= ``need``: few sizes, so few compiles."""
  side = 32
  while True:
    for b in (side, side * 3 // 2):
      b = -(-b // multiple) * multiple
      if b >= need:
        return b
    side *= 2


def _place(lo: int, hi: int, side: int, length: int, multiple: int) -> int:
  """Start of a ``side`` window inside ``[0, length)`` covering
  ``[lo, hi)``, centred on it and on the model's stride grid (a multiple of
  ``multiple``) when the image border allows."""
  first, last = max(0, hi - side), min(lo, length - side)
  c = min(max((lo + hi - side) // 2, first), last)
  a = c // multiple * multiple
  if a < first:
    a += multiple
  return a if a <= last else c


def plan_windows(holes: np.ndarray, *, max_pixels: int, reach: int,
                 multiple: int = 1, context_factor: float = CONTEXT_FACTOR,
                 max_batch: int | None = None, memory_mb: float | None = None
                 ) -> WindowPlan:
  """Windows around the holes of ``holes [H, W]`` (bool), each of at most
  ``max_pixels`` pixels, for a model whose output depends on the whole
  image.

  Groups: hole pixels closer than ``reach`` px (chessboard) to each other
  share a group (``scipy.ndimage.label`` of the holes dilated by
  ``reach / 2``), so no hole the net can see from a group is left out of
  its window. Window of a group: a square holding its bounding box grown
  by ``margin = max(reach, context_factor * longer side)`` px on each side
  (``reach`` alone when that does not fit ``max_pixels``; a rectangle when
  not even that square fits, as for a long scratch), its side one of a few
  sizes (``_window_side``) and, within a factor of 2 of a larger window's,
  that window's (one compile serves holes of similar sizes), clipped to the
  image, started on a multiple of ``multiple`` (the net's stride grid)
  unless the image border prevents it. Windows of one size run ``batch``
  per call. A group whose window with ``reach`` px of context exceeds
  ``max_pixels`` raises ``TilingError`` (naming the hole and the budget).

  What a window changes against the whole image, for the pasted pixels:

  * nothing the net reads: it sees the same prior, mask and pixels within
    ``reach`` of every pasted pixel, on the same stride grid (unless the
    window had to be shifted off the grid at the bottom or right border);
  * nothing in the EXACT biharmonic fill: its 13-point equation couples a
    hole pixel to pixels at most 2 px away, so a group's fill depends only
    on its own holes and a 2-px ring of known pixels, all inside the
    window (groups are ``reach`` >= 2 px apart);
  * the prior as computed (``smooth_fill``: a fixed number of coarse-to-
    fine conjugate-gradient steps) is an approximation of that fill, and
    its pyramid, its coarsest starting value (the mean of the known
    pixels) and its step sizes (sums over every hole in the image) depend
    on the image it is given: window and whole image stop at different
    approximations, each as far from the exact fill as ``smooth_fill``'s
    accuracy (there: 0.033 at most on a 24 x 23 hole). The step sizes
    couple the groups: with one group in the image, the window gives the
    whole image's fill to ~1e-5; with three small ones, to 0.014 at most
    (docs/how-to/inpaint.md, "Large photos");
  * ``PriorResUNet`` normalises its input by the mean and contrast of the
    known pixels: the window's, not the photo's. For a trained net that
    changes the correction in proportion to how the window's statistics
    differ from the photo's (the net was trained on crops of 64 to 128 px,
    so a window's statistics are the kind it has learnt on);
  * TAID decoders weight their time steps by means over the window.
  """
  from scipy import ndimage  # here: costs ~0.3 s to import
  holes = np.asarray(holes, bool)
  height, width = holes.shape
  half = max(1, -(-reach // 2))
  near = ndimage.maximum_filter(holes.view(np.uint8), size=2 * half + 1)
  groups, _ = ndimage.label(near, structure=np.ones((3, 3), bool))
  del near
  groups[~holes] = 0
  if memory_mb:
    budget = f" the --memory-mb {memory_mb:g} budget"

    def raise_to(pixels):
      need = math.ceil(memory_mb * pixels / max_pixels)
      return f"raise --memory-mb to {need}"
  else:
    budget = " the memory budget"

    def raise_to(pixels):
      return "raise the memory budget"
  sizes = (height, width)
  found = []   # (group, box, margin, square side or None, rectangle)
  for g, sl in enumerate(ndimage.find_objects(groups), start=1):
    if sl is None:
      continue
    box = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)

    def needs(margin, box=box):
      return [min(full, b + margin) - max(0, a - margin) + multiple - 1
              for a, b, full in zip(box[::2], box[1::2], sizes)]

    longer = max(box[1] - box[0], box[3] - box[2])
    for margin in (max(reach, math.ceil(context_factor * longer)), reach):
      side = _window_side(max(needs(margin)), multiple)
      if min(height, side) * min(width, side) <= max_pixels:
        found.append((g, box, margin, side, None))
        break
    else:   # a long, thin hole: a rectangle
      shape = tuple(min(full, _window_side(n, multiple))
                    for n, full in zip(needs(reach), sizes))
      if shape[0] * shape[1] > max_pixels:
        y0, y1, x0, x1 = box
        raise TilingError(
            f"a hole of {x1 - x0}x{y1 - y0} px at x={x0}, y={y0} (with the "
            f"holes less than {reach} px from it) needs a window of "
            f"{shape[1]}x{shape[0]} px ({reach} px of context on each side "
            f"for this model), over{budget} (~{max_pixels:,} px per model "
            f"call): {raise_to(shape[0] * shape[1])}")
      found.append((g, box, reach, None, shape))
  # A square window within a factor of 2 of a larger one takes its size:
  # holes of similar sizes share one compiled program.
  classes = []
  for side in sorted({f[3] for f in found if f[3]}, reverse=True):
    if not classes or 2 * side <= classes[-1]:
      classes.append(side)
  windows: dict[tuple[int, int], list[Window]] = {}
  for g, box, margin, side, shape in found:
    if side is not None:
      side = min(c for c in classes if c >= side)
      shape = (min(height, side), min(width, side))
    start = [_place(max(0, a - margin), min(full, b + margin), n, full,
                    multiple)
             for a, b, full, n in zip(box[::2], box[1::2], sizes, shape)]
    windows.setdefault(shape, []).append(Window(*start, g, box))
  batch = {}
  for shape, ws in windows.items():
    b = max(1, min(len(ws), max_pixels // (shape[0] * shape[1])))
    batch[shape] = min(b, max_batch) if max_batch else b
  return WindowPlan({s: tuple(w) for s, w in windows.items()}, batch, groups,
                    reach)


# --------------------------------------------------------------------------
# Running the model
# --------------------------------------------------------------------------


class Inpainter:
  """Runs an inpainting model on whole images of any size.

  ``model``: an inpainting model in eval mode (``inference.load(...).model``)
  and ``config`` its config. ``predict(pixels, holes)`` -> float32
  ``[H, W, C]`` model output (on a windowed plan: at the hole pixels; the
  input elsewhere);
  ``inpaint(pixels, holes)`` -> uint8 composite (known pixels copied from
  ``pixels``, holes from the model). ``pixels``: uint8 ``[H, W, C]``;
  ``holes``: bool ``[H, W]``. Both take ``plan`` (from ``plan``, to not
  make it twice) and ``progress``: called ``progress(done, total)`` after
  each model call, in tiles or windows.

  ``overlap``: the tiles' overlap radius, or the windows' least context
  (default ``model.receptive_radius``). ``windows=False``: a model with a
  global field refuses an image over the budget instead of running on
  windows.
  """

  def __init__(self, model, config, *,
               memory_mb: float = DEFAULT_MEMORY_MB,
               overlap: int | None = None, max_batch: int | None = None,
               windows: bool = True):
    self.config = config
    self.channels = int(config.data.channels)
    self.radius = (_declared(model, "receptive_radius") if overlap is None
                   else int(overlap))
    self.multiple = size_multiple(model)
    # Windows start on the net's stride grid, so it sees what it sees in the
    # whole image.
    self.grid = math.lcm(self.multiple,
                         int(getattr(model, "pad_multiple", None) or 1))
    self.windows = windows
    self.bytes_per_pixel = _declared(model, "bytes_per_pixel")
    self.memory_mb = memory_mb
    self.max_pixels = max(1, int(memory_mb * 2**20 / self.bytes_per_pixel))
    self.global_field = global_receptive_field(model)
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

  def plan(self, height: int, width: int, holes: np.ndarray | None = None
           ) -> TilePlan | WindowPlan:
    """Tiles (or one call) for ``height x width``; a model with a global
    field over the budget: windows around ``holes`` (``plan_windows``)."""
    hp, wp = self.padded_size(height, width)
    if self.global_field:   # tiles would give another answer: whole or windows
      if hp * wp <= self.max_pixels:
        return TilePlan(hp, wp, 1, (Tile(0, 0, 0, hp, 0, wp),))
      if not self.windows:
        raise TilingError(
            f"{width}x{height} px is over the --memory-mb {self.memory_mb:g} "
            f"budget (~{self.max_pixels:,} px for this model) and this model "
            f"cannot be tiled ({self.global_field}, so tiles would change "
            "the result): raise --memory-mb or crop the image")
      if holes is None:
        raise ValueError("a model with a global field over the budget runs "
                         "on windows around the holes: pass holes")
      return plan_windows(self._padded(holes), max_pixels=self.max_pixels,
                          reach=self.radius, multiple=self.grid,
                          max_batch=self.max_batch, memory_mb=self.memory_mb)
    return plan_tiles(hp, wp, max_pixels=self.max_pixels, radius=self.radius,
                      multiple=self.multiple, max_batch=self.max_batch)

  def _padded(self, a: np.ndarray) -> np.ndarray:
    """``a [H, W, ...]`` mirror-padded to the model's size multiple."""
    h, w = a.shape[:2]
    hp, wp = self.padded_size(h, w)
    if (hp, wp) == (h, w):
      return a
    pad = ((0, hp - h), (0, wp - w)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="symmetric")

  def _run(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    self.compiled_shapes.add(images.shape)
    return np.asarray(self._forward(self._state, images, masks), np.float32)

  def _pieces(self, pixels: np.ndarray, holes: np.ndarray, plan=None,
              progress: Callable[[int, int], None] | None = None
              ) -> Iterator[tuple[tuple[slice, slice], np.ndarray,
                                  np.ndarray | None]]:
    """``(rows and cols, float32 prediction there, which of those pixels it
    fills or None for all)`` for every tile or window."""
    h, w, c = pixels.shape
    if c != self.channels:
      raise ValueError(f"expected {self.channels} channels, got {c}")
    holes = np.asarray(holes, bool)
    plan = self.plan(h, w, holes) if plan is None else plan
    pixels, holes = self._padded(pixels), self._padded(holes)
    if isinstance(plan, WindowPlan):
      yield from self._window_pieces(pixels, holes, plan, (h, w), progress)
      return
    th, tw, b = plan.tile_h, plan.tile_w, plan.batch
    tiles = plan.tiles
    for i in range(0, len(tiles), b):
      group = tiles[i:i + b]
      image = np.zeros((b, th, tw, c), np.float32)
      mask = np.zeros((b, th, tw, 1), np.float32)
      for j, t in enumerate(group):
        image[j] = pixels[t.y0:t.y0 + th, t.x0:t.x0 + tw] / np.float32(255)
        mask[j, ..., 0] = holes[t.y0:t.y0 + th, t.x0:t.x0 + tw]
      pred = self._run(image, mask)
      for j, t in enumerate(group):
        core = pred[j, t.cy0 - t.y0:t.cy1 - t.y0, t.cx0 - t.x0:t.cx1 - t.x0]
        cy1, cx1 = min(t.cy1, h), min(t.cx1, w)  # crop the padding back off
        if cy1 > t.cy0 and cx1 > t.cx0:
          yield ((slice(t.cy0, cy1), slice(t.cx0, cx1)),
                 core[:cy1 - t.cy0, :cx1 - t.cx0], None)
      if progress is not None:
        progress(min(i + b, len(tiles)), len(tiles))

  def _window_pieces(self, pixels, holes, plan: WindowPlan, size, progress):
    h, w = size
    c = pixels.shape[-1]
    done, total = 0, plan.count
    for (wh, ww), windows in plan.windows.items():
      b = plan.batch[(wh, ww)]
      for i in range(0, len(windows), b):
        group = windows[i:i + b]
        image = np.zeros((b, wh, ww, c), np.float32)
        mask = np.zeros((b, wh, ww, 1), np.float32)
        for j, v in enumerate(group):
          image[j] = pixels[v.y0:v.y0 + wh, v.x0:v.x0 + ww] / np.float32(255)
          mask[j, ..., 0] = holes[v.y0:v.y0 + wh, v.x0:v.x0 + ww]
        pred = self._run(image, mask)
        for j, v in enumerate(group):
          y0, y1, x0, x1 = v.box
          y1, x1 = min(y1, h), min(x1, w)    # crop the padding back off
          if y1 > y0 and x1 > x0:
            sl = (slice(y0, y1), slice(x0, x1))
            yield (sl, pred[j, y0 - v.y0:y1 - v.y0, x0 - v.x0:x1 - v.x0],
                   plan.groups[sl] == v.group)
        done += len(group)
        if progress is not None:
          progress(done, total)

  def predict(self, pixels: np.ndarray, holes: np.ndarray, *, plan=None,
              progress=None) -> np.ndarray:
    holes = np.asarray(holes, bool)
    if plan is None:
      plan = self.plan(*pixels.shape[:2], holes)
    out = (np.asarray(pixels, np.float32) / np.float32(255)
           if isinstance(plan, WindowPlan) else
           np.zeros(pixels.shape, np.float32))
    for sl, values, sel in self._pieces(pixels, holes, plan, progress):
      if sel is None:
        out[sl] = values
      else:
        np.copyto(out[sl], values, where=sel[..., None])
    return out

  def inpaint(self, pixels: np.ndarray, holes: np.ndarray, *, plan=None,
              progress=None) -> np.ndarray:
    """The composite, uint8: known pixels are ``pixels``' bytes exactly."""
    out = pixels.copy()
    holes = np.asarray(holes, bool)
    for sl, values, sel in self._pieces(pixels, holes, plan, progress):
      fill = holes[sl] if sel is None else holes[sl] & sel
      if not np.all(np.isfinite(values[fill])):
        raise FloatingPointError("the model produced non-finite values "
                                 "(NaN/inf): the checkpoint is probably "
                                 "broken")
      np.copyto(out[sl], to_uint8(values), where=fill[..., None])
    return out
