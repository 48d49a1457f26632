"""Inpainting hole masks: pure numpy, host side, deterministic from a seed.

A mask is a float32 array ``[H, W, 1]`` with ``1`` = hole (missing pixel) and
``0`` = known pixel. Kinds (``MASK_KINDS``):

========  ==================================================================
kind      what it draws
========  ==================================================================
box       1..``max_boxes`` axis-aligned rectangles (count uniform), aspect
          ratio in [1/2, 2], placed to overlap as little as possible
center    one square centred in the image (a rectangle if the square would
          not fit a non-square image)
stroke    free-form brush strokes (random walks of thick round-capped line
          segments, as in DeepFill v2 / partial-conv mask sets)
pixels    random pixel dropout (independent holes)
mixed     per mask, ``stroke`` with probability ``stroke_fraction`` (default
          0.5), else ``box``: one model trained on both hole shapes
========  ==================================================================

Hole ratio: every call draws a target ratio ``r ~ U[ratio_min, ratio_max]``
and the generator aims at ``round(r * H * W)`` hole pixels:

* ``pixels`` hits it exactly;
* ``stroke`` hits it exactly: the stroke that would cross the target is cut
  where the brush has covered just enough pixels (the pixels it reaches
  first along its path are kept);
* ``center`` is off by the rounding of the side length (at 32x32 at most
  ~3 % of the image, typically ~1 %; at 128x128 < 0.7 %);
* ``box`` sizes each box to its share of the remaining area and tries several
  placements to avoid overlaps; any shortfall left by overlaps is closed by
  moving box sides outward one pixel row/column at a time (a side adds up
  to one box width of pixels, so the residual is under half a box side).
  Measured over 300 masks, up to 4 boxes, ratios in [0.1, 0.5] and
  [0.6, 0.9]: at 32x32 mean |ratio - target| 0.003-0.005, 99th percentile
  <= 0.017; at 128x128 mean 0.001, 99th percentile 0.004. Box size follows
  the area: ``k`` boxes (``k`` uniform in 1..``max_boxes``) share the ratio,
  and a box of area ratio ``a`` has sides ``sqrt(a * aspect)`` and
  ``sqrt(a / aspect)`` of the crop's, so one box at ratio 0.11 is a hole
  about 1/3 of the crop side (geometric mean of its sides: 0.331-0.334 of
  the side over 200 masks at 96x96); with the defaults (ratio 0.05-0.2, up
  to 2 boxes) half the boxes at 128x128 have a side >= 1/3 of the crop, the
  longest up to ~2/3;
* ``mixed`` is ``box`` or ``stroke``, whichever it drew.

The target is clamped to [1, H*W - 1] pixels, so tiny images (a few pixels)
cannot honour very small or very large ratios.

``tests/test_masks.py`` checks these bounds statistically.

Seeding: ``make_mask`` takes a ``np.random.Generator``, an int, or a sequence
of ints (``SeedSequence`` entropy). The data pipeline seeds training masks with
``(seed, global example position)`` -- a fresh mask every step that does not
depend on the host/device split -- and evaluation masks with
``(masks.eval_seed, eval example index)`` so every model and baseline is
scored on the same holes (``MaskGenerator``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


MASK_KINDS = ("box", "center", "stroke", "pixels", "mixed")
DEFAULT_STROKE_FRACTION = 0.5

# Seed-sequence stream tags so train masks, eval masks and anything else
# seeded from the same (seed, position) pair never share random numbers.
TRAIN_MASK_STREAM = 0x6D61736B  # "mask"
EVAL_MASK_STREAM = 0x6576616C   # "eval"

_BOX_ASPECT = 2.0        # box aspect ratio in [1/_BOX_ASPECT, _BOX_ASPECT]
_BOX_PLACEMENT_TRIES = 8


def as_rng(rng_or_seed) -> np.random.Generator:
  """A ``np.random.Generator`` from a generator, an int or a list of ints."""
  if isinstance(rng_or_seed, np.random.Generator):
    return rng_or_seed
  if isinstance(rng_or_seed, np.random.SeedSequence):
    return np.random.default_rng(rng_or_seed)
  if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(
      rng_or_seed, bool):
    return np.random.default_rng(int(rng_or_seed))
  if isinstance(rng_or_seed, Sequence) and all(
      isinstance(s, (int, np.integer)) for s in rng_or_seed):
    return np.random.default_rng([int(s) for s in rng_or_seed])
  raise TypeError("rng_or_seed must be a numpy Generator, an int or a "
                  f"sequence of ints, got {type(rng_or_seed).__name__}")


def _check_args(kind, height, width, ratio_min, ratio_max):
  if kind not in MASK_KINDS:
    raise ValueError(f"unknown mask kind {kind!r}; allowed: "
                     f"{', '.join(MASK_KINDS)}")
  for name, v in (("height", height), ("width", width)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"mask {name} must be an integer >= 1, got {v!r}")
  if not 0.0 < ratio_min <= ratio_max < 1.0:
    raise ValueError("mask ratios must satisfy 0 < ratio_min <= ratio_max < 1, "
                     f"got ratio_min={ratio_min!r}, ratio_max={ratio_max!r}")


def make_mask(kind: str, rng_or_seed, height: int, width: int,
              ratio_min: float, ratio_max: float, **kind_options) -> np.ndarray:
  """One hole mask, float32 ``[height, width, 1]``, 1 = hole.

  Args:
    kind: one of ``MASK_KINDS``.
    rng_or_seed: ``np.random.Generator``, int, or sequence of ints.
    height, width: mask size in pixels.
    ratio_min, ratio_max: the target hole ratio is drawn uniformly from this
      range (``0 < ratio_min <= ratio_max < 1``).
    **kind_options: ``box``: ``max_boxes`` (default 3). ``stroke``:
      ``min_width`` / ``max_width`` (brush width as a fraction of
      ``min(height, width)``, defaults 0.05 / 0.15), ``max_vertices``
      (segments per stroke, default 10). ``mixed``: ``stroke_fraction``
      (probability of strokes, default 0.5) and the options of both.
      ``center`` and ``pixels`` take none.
  """
  _check_args(kind, height, width, ratio_min, ratio_max)
  rng = as_rng(rng_or_seed)
  ratio = float(rng.uniform(ratio_min, ratio_max))
  target = int(round(ratio * height * width))
  target = min(max(target, 1), height * width - 1)
  fn = _GENERATORS[kind]
  allowed = _OPTIONS[kind]
  unknown = set(kind_options) - set(allowed)
  if unknown:
    raise TypeError(f"mask kind {kind!r} takes options {sorted(allowed) or 'none'}"
                    f", got {sorted(unknown)}")
  hole = fn(rng, height, width, target, **kind_options)
  return hole.astype(np.float32)[:, :, None]


# --------------------------------------------------------------------------
# Generators: (rng, H, W, target_pixels, **options) -> bool [H, W]
# --------------------------------------------------------------------------


def _pixels(rng, h, w, target):
  flat = np.zeros(h * w, dtype=bool)
  flat[rng.choice(h * w, size=target, replace=False)] = True
  return flat.reshape(h, w)


def _center(rng, h, w, target):
  del rng
  side = int(round(math.sqrt(target)))
  bh = bw = max(1, side)
  if side > min(h, w):  # the square does not fit: widen along the long side
    if h <= w:
      bh, bw = h, min(w, max(1, int(round(target / h))))
    else:
      bh, bw = min(h, max(1, int(round(target / w)))), w
  out = np.zeros((h, w), dtype=bool)
  y0, x0 = (h - bh) // 2, (w - bw) // 2
  out[y0:y0 + bh, x0:x0 + bw] = True
  return out


def _box_dims(rng, h, w, area):
  aspect = math.exp(rng.uniform(-math.log(_BOX_ASPECT), math.log(_BOX_ASPECT)))
  bh = _clamp(round(math.sqrt(area * aspect)), 1, h)
  bw = _clamp(round(area / bh), 1, w)
  bh = _clamp(round(area / bw), 1, h)  # re-fit if bw was clipped
  return bh, bw


def _clamp(v: int, lo: int, hi: int) -> int:
  # Not np.clip: on Python scalars it costs ~15 us a call, a third of the
  # box mask's time (the masks are made on the input thread every step).
  return int(min(max(v, lo), hi))


def _box(rng, h, w, target, max_boxes=3):
  if isinstance(max_boxes, bool) or not isinstance(
      max_boxes, (int, np.integer)) or max_boxes < 1:
    raise ValueError(f"max_boxes must be an integer >= 1, got {max_boxes!r}")
  n = int(rng.integers(1, max_boxes + 1))
  out = np.zeros((h, w), dtype=bool)
  boxes = []  # [y0, x0, y1, x1], end-exclusive
  covered = 0
  for i in range(n):
    remaining = target - covered
    if remaining <= 0:
      break
    bh, bw = _box_dims(rng, h, w, remaining / (n - i))
    best = None
    for _ in range(_BOX_PLACEMENT_TRIES):
      y0 = int(rng.integers(0, h - bh + 1))
      x0 = int(rng.integers(0, w - bw + 1))
      overlap = int(out[y0:y0 + bh, x0:x0 + bw].sum())
      if best is None or overlap < best[0]:
        best = (overlap, y0, x0)
      if overlap == 0:
        break
    _, y0, x0 = best
    out[y0:y0 + bh, x0:x0 + bw] = True
    boxes.append([y0, x0, y0 + bh, x0 + bw])
    covered = int(out.sum())
  return _grow_boxes(out, boxes, covered, target)


def _grow_boxes(out, boxes, covered, target):
  """Closes the shortfall left by overlapping boxes.

  Repeatedly moves the one box side (of any box, by one pixel row/column)
  that covers the most new pixels, while that brings the hole count closer to
  ``target``. The boxes stay rectangles and their number does not change.
  """
  h, w = out.shape
  while covered < target:
    best_gain, best = 0, None
    for b in boxes:
      y0, x0, y1, x1 = b
      for side, strip in (
          (0, out[y0 - 1, x0:x1] if y0 > 0 else None),
          (2, out[y1, x0:x1] if y1 < h else None),
          (1, out[y0:y1, x0 - 1] if x0 > 0 else None),
          (3, out[y0:y1, x1] if x1 < w else None)):
        if strip is None:
          continue
        gain = strip.size - int(strip.sum())
        if gain > best_gain:
          best_gain, best = gain, (b, side)
    # Stop when no side adds pixels or the best one would overshoot by more
    # than the current shortfall.
    if best is None or covered + best_gain - target > target - covered:
      break
    b, side = best
    b[side] += -1 if side < 2 else 1
    y0, x0, y1, x1 = b
    out[y0:y1, x0:x1] = True
    covered += best_gain
  return out


def _polyline_arrival(h, w, pts, radius):
  """When a round brush of ``radius`` drawn along ``pts`` reaches each pixel.

  ``pts`` is a list of (y, x) vertices. Returns ``(slices, arrival)`` over the
  polyline's bounding box (None when it lies outside the image): ``arrival``
  is ``k + s`` for a pixel first covered when the brush centre is at fraction
  ``s`` of segment ``k``, and ``inf`` for pixels the stroke never covers.
  Pixel (i, j) is the unit square with centre (i + 0.5, j + 0.5). Each
  segment is rasterised inside its own bounding box, so the cost grows with
  the stroke's area, not with the image's.
  """
  def box(ys, xs):
    return (max(0, int(math.floor(min(ys) - radius))),
            min(h, int(math.ceil(max(ys) + radius)) + 1),
            max(0, int(math.floor(min(xs) - radius))),
            min(w, int(math.ceil(max(xs) + radius)) + 1))

  if len(pts) == 1:
    pts = [pts[0], pts[0]]
  y_lo, y_hi, x_lo, x_hi = box([p[0] for p in pts], [p[1] for p in pts])
  if y_lo >= y_hi or x_lo >= x_hi:
    return None
  arrival = np.full((y_hi - y_lo, x_hi - x_lo), np.inf, dtype=np.float32)
  r2 = radius * radius
  for k in range(len(pts) - 1):
    (py, px), (qy, qx) = pts[k], pts[k + 1]
    a_lo, a_hi, b_lo, b_hi = box((py, qy), (px, qx))
    if a_lo >= a_hi or b_lo >= b_hi:
      continue
    vy = np.arange(a_lo, a_hi, dtype=np.float32)[:, None] + (0.5 - py)
    vx = np.arange(b_lo, b_hi, dtype=np.float32)[None, :] + (0.5 - px)
    dy, dx = qy - py, qx - px
    length2 = max(dy * dy + dx * dx, 1e-12)
    t_line = (vy * dy + vx * dx) * (1.0 / length2)   # projection on the line
    t = np.clip(t_line, 0.0, 1.0)
    dist2 = (vy - t * dy) ** 2 + (vx - t * dx) ** 2    # to the segment
    perp2 = vy * vy + vx * vx - t_line * t_line * length2
    # The brush centre first comes within ``radius`` at this fraction.
    s = np.sqrt(np.maximum(r2 - perp2, 0.0) * (1.0 / length2))
    s = np.clip(t_line - s, 0.0, 1.0) + k
    view = arrival[a_lo - y_lo:a_hi - y_lo, b_lo - x_lo:b_hi - x_lo]
    np.minimum(view, np.where(dist2 <= r2, s, np.inf), out=view)
  return (slice(y_lo, y_hi), slice(x_lo, x_hi)), arrival


def _stroke_vertices(rng, h, w, size, max_vertices):
  """A random walk: 2..max_vertices+1 (y, x) points, reflected at borders."""
  y, x = float(rng.uniform(0, h)), float(rng.uniform(0, w))
  n_seg = int(rng.integers(1, max_vertices + 1))
  angle = float(rng.uniform(0, 2 * math.pi))
  turns = rng.normal(0.0, math.pi / 4, n_seg)
  lengths = rng.uniform(0.1, 0.35, n_seg) * size
  pts = [(y, x)]
  for turn, length in zip(turns.tolist(), lengths.tolist()):
    angle += turn
    y += length * math.sin(angle)
    x += length * math.cos(angle)
    if y < 0 or y > h:  # reflect at the border
      y = -y if y < 0 else 2 * h - y
      angle = -angle
    if x < 0 or x > w:
      x = -x if x < 0 else 2 * w - x
      angle = math.pi - angle
    y = min(max(y, 0.0), h - 1e-6)
    x = min(max(x, 0.0), w - 1e-6)
    pts.append((y, x))
  return pts


def _stroke(rng, h, w, target, min_width=0.05, max_width=0.15,
            max_vertices=10):
  if not 0 < min_width <= max_width:
    raise ValueError("stroke widths must satisfy 0 < min_width <= max_width, "
                     f"got {min_width!r}, {max_width!r}")
  if isinstance(max_vertices, bool) or not isinstance(
      max_vertices, (int, np.integer)) or max_vertices < 1:
    raise ValueError(f"max_vertices must be an integer >= 1, got {max_vertices!r}")
  size = min(h, w)
  out = np.zeros((h, w), dtype=bool)
  covered = 0
  # Strokes usually cover new pixels; the bound only guards against a
  # pathological endless loop (it would return a mask short of the target).
  for _ in range(h * w + 16):
    if covered >= target:
      break
    radius = max(1.0, rng.uniform(min_width, max_width) * size) / 2.0
    pts = _stroke_vertices(rng, h, w, size, max_vertices)
    hit = _polyline_arrival(h, w, pts, radius)
    if hit is None:
      continue
    sl, arrival = hit
    arrival = np.where(out[sl], np.inf, arrival)
    new = np.isfinite(arrival)
    gain = int(new.sum())
    if covered + gain > target:
      # The stroke crosses the target: keep only the pixels the brush reaches
      # first, i.e. stop the brush part-way along the stroke.
      keep = target - covered
      order = np.argsort(arrival, axis=None, kind="stable")[:keep]
      new = np.zeros_like(new)
      new.flat[order] = True
      gain = keep
    out[sl] |= new
    covered += gain
  return out


def _mixed(rng, h, w, target, stroke_fraction=DEFAULT_STROKE_FRACTION,
           max_boxes=3, **stroke_options):
  if isinstance(stroke_fraction, bool) or not isinstance(
      stroke_fraction, (int, float, np.integer, np.floating)) or not (
          0.0 <= stroke_fraction <= 1.0):
    raise ValueError("stroke_fraction must be a number in [0, 1], got "
                     f"{stroke_fraction!r}")
  # The draw after the target ratio picks the shape (tests rely on it).
  if rng.random() < stroke_fraction:
    return _stroke(rng, h, w, target, **stroke_options)
  return _box(rng, h, w, target, max_boxes=max_boxes)


_GENERATORS = {"box": _box, "center": _center, "stroke": _stroke,
               "pixels": _pixels, "mixed": _mixed}
_OPTIONS = {"box": ("max_boxes",), "center": (),
            "stroke": ("min_width", "max_width", "max_vertices"),
            "pixels": (),
            "mixed": ("stroke_fraction", "max_boxes", "min_width",
                      "max_width", "max_vertices")}


# --------------------------------------------------------------------------
# Generators for the data pipeline
# --------------------------------------------------------------------------


class MaskGenerator:
  """Masks for the data pipeline, built from ``config.masks``.

  ``train(seed, position)`` and ``eval(index)`` are pure functions of their
  arguments: the same call always returns the same mask.
  """

  def __init__(self, kind: str, height: int, width: int, ratio_min: float,
               ratio_max: float, eval_seed: int = 0, **kind_options: Any):
    _check_args(kind, height, width, ratio_min, ratio_max)
    self.kind, self.height, self.width = kind, height, width
    self.ratio_min, self.ratio_max = float(ratio_min), float(ratio_max)
    self.eval_seed = int(eval_seed)
    self.kind_options = dict(kind_options)

  @classmethod
  def from_config(cls, masks_cfg, height: int, width: int) -> "MaskGenerator":
    """From a validated ``config.masks`` (``scnn_jax.config.schema``)."""
    options = {}
    if masks_cfg.kind in ("box", "mixed"):
      options["max_boxes"] = int(masks_cfg.max_boxes)
    if masks_cfg.kind == "mixed":
      options["stroke_fraction"] = float(masks_cfg.stroke_fraction)
    return cls(masks_cfg.kind, height, width, masks_cfg.ratio_min,
               masks_cfg.ratio_max, eval_seed=int(masks_cfg.eval_seed),
               **options)

  def _make(self, entropy):
    return make_mask(self.kind, np.random.default_rng(entropy), self.height,
                     self.width, self.ratio_min, self.ratio_max,
                     **self.kind_options)

  def train(self, seed: int, position: int) -> np.ndarray:
    """Training mask of global example ``position`` (fresh every step)."""
    return self._make([int(seed), int(position), TRAIN_MASK_STREAM])

  def eval(self, index: int) -> np.ndarray:
    """Fixed evaluation mask of eval example ``index`` (from ``eval_seed``)."""
    return self._make([self.eval_seed, int(index), EVAL_MASK_STREAM])


class HoleMasks:
  """The inpainting task's data transform: a hole mask for every example.

  ``train(seed, position)`` -> ``{"mask": float32 [H, W, 1]}`` (fresh every
  step), ``eval(index)`` -> ``{"mask": uint8 [H, W, 1]}`` (fixed by
  ``eval_seed``). Other tasks' batches carry no mask.
  """

  def __init__(self, generator: MaskGenerator):
    self.generator = generator

  @classmethod
  def from_config(cls, config) -> "HoleMasks":
    size = int(config.data.image_size)
    return cls(MaskGenerator.from_config(config.masks, size, size))

  def train(self, seed: int, position: int) -> dict:
    return {"mask": self.generator.train(seed, position)}

  def eval(self, index: int) -> dict:
    return {"mask": self.generator.eval(index).astype(np.uint8)}
