"""Procedural dead-leaves images: an unlimited, scale-invariant training source.

The dead-leaves model (Matheron; as a training prior for image restoration,
Achddou, Gousseau and Ladjal, "Synthetic images as a regularity prior for
image restoration neural networks", SSVM 2021, and their "VibrantLeaves"
follow-up) stacks random opaque shapes in depth order. What a pixel shows is
the FRONT-most shape covering it. Here:

* shapes: discs (60 %) and rotated rectangles (40 %, aspect ratio
  log-uniform in [1/2, 2], the same area as the disc of radius ``r``);
* radii from the power law ``p(r) ~ r**-alpha`` (``ALPHA = 3``) on
  ``[r_min, r_max]``, ``r_min = max(R_MIN * size, R_MIN_PX)`` and
  ``r_max = R_MAX * size``: with ``alpha = 3`` every octave of radii covers
  the same share of the image, so the image looks alike at every scale
  between ``r_min`` and ``r_max`` (``sample_radii``);
* centres uniform over the image;
* colours drawn from the colour histogram of the TRAINING photos of the
  embedded ``photos`` set (astronaut, rocket, motorcycle_left/right; 16
  levels per channel, uniform within a bin): natural colour statistics, and
  never the held-out photos (``colour_table``);
* texture (``texture=True``): each shape is flat (1/3), a linear gradient
  between two colours along a random direction (1/3) or a sinusoid between
  them (1/3, 0.5-4 periods over the radius, random phase and amplitude);
* defocus (``blur=True``): half the images are blurred by a Gaussian of
  sigma log-uniform in ``[0.4, max(1, 0.015 * size)]`` px (the whole image
  out of focus; the per-depth focus of VibrantLeaves is not modelled);
* antialiasing: rendered at ``SUPERSAMPLE`` x the size and box-filtered down.

Rendering (``render``) goes front to back in chunks of shapes; every pixel
keeps the depth index of the front-most shape covering it. A chunk's large
shapes are drawn by Pillow into an int32 label image (back to front, one C
call each), its many small ones by numpy stencils, all shapes of a stencil
size at once, merged by ``np.minimum.at``. The first chunk covers ~86 % of
the pixels; each later one (twice as many shapes) draws only the shapes
whose bounding box meets a still-uncovered pixel (a summed-area table), so
the deep, hidden leaves cost almost nothing, and drawing stops once every
pixel is covered. The pixels then gather their shape's colour and texture at
the render resolution. Everything is a function of the
``np.random.Generator`` passed in. Cost, CPU time of one core of a busy
2-core machine: 4-9 ms for 32 x 32, 13-21 ms for 128 x 128 (half of it
Pillow calls and stencils, a quarter the per-pixel texture at 2x);
``supersample=1`` is about a third cheaper.

Sources for ``scnn_jax.data`` (the contract: ``sources.py``):
``DeadLeavesSource`` (``data.source = "dead_leaves"``; ``data.name`` is not
read, e.g. ``"dead_leaves"``): one fresh image per training example, drawn
from the example's rng (seeded by the pipeline from ``(seed, position)``);
a fixed eval set of ``num_eval`` images from ``masks.eval_seed``.
``MixedSource`` (``data.dead_leaves_mix`` > 0 with another source): that
fraction of the training examples are dead-leaves images; the eval set is the
base source's.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from scnn_jax.data import sources

ALPHA = 3.0             # power-law exponent of the radii
R_MIN = 0.01            # smallest radius, fraction of the image side...
R_MIN_PX = 1.0          # ...but at least this many output pixels
R_MAX = 1.0             # largest radius, fraction of the image side
SUPERSAMPLE = 2         # render at this factor, then box-filter down
RECT_FRACTION = 0.4     # the other shapes are discs
RECT_ASPECT = 2.0       # rectangle aspect ratio in [1/RECT_ASPECT, RECT_ASPECT]
BLUR_PROB = 0.5
# Depth chunks, in "layers" (shapes whose areas add up to the image): the
# first covers ~1 - exp(-2) = 86 % of the pixels, each later one doubles.
FIRST_CHUNK_LAYERS = 2.0
MAX_CHUNKS = 8          # 2 + 4 + ... + 256 layers: nothing stays uncovered
NUM_TRAIN = 4096        # nominal epoch length: every example is a fresh draw
COLOUR_PHOTOS = {"natural.npz": ("astronaut", "rocket", "motorcycle_left"),
                 "photos_extra.npz": ("motorcycle_right",)}
COLOUR_LEVELS = 16      # histogram bins per channel
EVAL_STREAM = 0x6c656166  # "leaf": eval images

FLAT, GRADIENT, SINE = 0, 1, 2
_UNCOVERED = np.iinfo(np.int32).max
_BLOCK = 2               # px: granularity of the uncovered-pixel test
_STENCILS = (2, 3, 5, 8)  # px: half-sizes of the numpy stencils
_SMALL = _STENCILS[-1]   # larger shapes are drawn by Pillow
_FAR = 1e6               # px: stands for "outside the image" in the stencils


def sample_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float,
                 alpha: float = ALPHA) -> np.ndarray:
  """``n`` radii with density ``~ r**-alpha`` on ``[r_min, r_max]``."""
  return _radii(rng.random(n), r_min, r_max, alpha)


def _radii(u: np.ndarray, r_min: float, r_max: float, alpha: float):
  """The inverse CDF of ``sample_radii``'s law at uniforms ``u``."""
  if not 0 < r_min <= r_max:
    raise ValueError(f"radii need 0 < r_min <= r_max, got {r_min}, {r_max}")
  if abs(alpha - 1.0) < 1e-9:
    return r_min * (r_max / r_min) ** u
  e = 1.0 - alpha
  lo, hi = r_min ** e, r_max ** e
  return (lo + u * (hi - lo)) ** (1.0 / e)


def mean_area(r_min: float, r_max: float, alpha: float = ALPHA) -> float:
  """``E[pi r^2]`` under ``sample_radii``'s density (closed form)."""
  def integral(p):   # of r**p over [r_min, r_max]
    if abs(p + 1.0) < 1e-9:
      return math.log(r_max / r_min)
    return (r_max ** (p + 1) - r_min ** (p + 1)) / (p + 1)
  if r_max == r_min:
    return math.pi * r_min * r_min
  return math.pi * integral(2.0 - alpha) / integral(-alpha)


@functools.lru_cache(maxsize=1)
def colour_table() -> tuple[np.ndarray, np.ndarray]:
  """(bin corners uint8 ``[K, 3]``, cumulative probabilities float64 ``[K]``)
  of the non-empty bins of the RGB histogram of the colour training photos
  (``COLOUR_PHOTOS``, ``COLOUR_LEVELS`` levels per channel)."""
  pixels = []
  for filename, names in COLOUR_PHOTOS.items():
    raw = sources.embedded_path(filename).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
      # Reads only the named photos, never the held-out ones in the file.
      pixels += [npz[k].reshape(-1, 3) for k in names]
  step = 256 // COLOUR_LEVELS
  q = np.concatenate(pixels).astype(np.int64) // step
  code = (q[:, 0] * COLOUR_LEVELS + q[:, 1]) * COLOUR_LEVELS + q[:, 2]
  counts = np.bincount(code, minlength=COLOUR_LEVELS ** 3)
  used = np.flatnonzero(counts)
  corners = np.stack([used // COLOUR_LEVELS ** 2,
                      used // COLOUR_LEVELS % COLOUR_LEVELS,
                      used % COLOUR_LEVELS], 1) * step
  cdf = np.cumsum(counts[used]) / counts[used].sum()
  return corners.astype(np.uint8), cdf


def sample_colours(rng: np.random.Generator, n: int) -> np.ndarray:
  """float32 ``[3, n]`` RGB colours on [0, 256): a bin of ``colour_table``
  drawn by its frequency, then uniform within the bin."""
  return _colours(rng.random((4, n)))


def _colours(u: np.ndarray) -> np.ndarray:
  """``sample_colours`` from uniforms ``u [4, n]`` (the bin, then RGB)."""
  corners, cdf = colour_table()
  pick = np.minimum(np.searchsorted(cdf, u[0], side="right"), len(cdf) - 1)
  step = 256 // COLOUR_LEVELS
  return (corners[pick].T + u[1:4] * step).astype(np.float32)


def _geometry(rng, n, h, w, r_min, r_max, alpha) -> dict:
  """``n`` shapes (render-resolution pixels; pixel ``(i, j)`` is the unit
  square centred at ``(i + 0.5, j + 0.5)``): centres, radii, outlines, and
  ``u``, the uniforms ``[n, 13]`` their colours and texture come from (one
  draw for everything, so the shapes do not depend on ``texture``)."""
  u = rng.random((19, n))
  cy, cx = u[0] * h, u[1] * w
  r = _radii(u[2], r_min, r_max, alpha)
  rect = u[3] < RECT_FRACTION
  aspect = np.exp((2.0 * u[4] - 1.0) * math.log(RECT_ASPECT))
  # Rectangles get the disc's area: 4 a b = pi r^2 with a / b = aspect.
  a = np.where(rect, r * np.sqrt(math.pi * aspect) / 2.0, r)
  b = np.where(rect, r * np.sqrt(math.pi / aspect) / 2.0, r)
  return dict(cy=cy, cx=cx, r=r, rect=rect, a=a, b=b, theta=u[5] * math.pi,
              bound=np.where(rect, np.hypot(a, b), r), u=u[6:].T)


def _subset(g: dict, keep: np.ndarray) -> dict:
  return {k: v[keep] for k, v in g.items()}


def _touching(uncovered: np.ndarray, g: dict) -> np.ndarray:
  """The shapes whose bounding box meets a ``_BLOCK`` x ``_BLOCK`` block
  holding an uncovered pixel (a summed-area table of the blocks)."""
  h, w = uncovered.shape
  nb_y, nb_x = -(-h // _BLOCK), -(-w // _BLOCK)
  blocks = np.zeros((nb_y, nb_x), bool)
  for i in range(_BLOCK):
    for j in range(_BLOCK):
      part = uncovered[i::_BLOCK, j::_BLOCK]
      blocks[:part.shape[0], :part.shape[1]] |= part
  sat = np.zeros((nb_y + 1, nb_x + 1), np.int32)
  sat[1:, 1:] = blocks.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
  def span(c, n):
    lo = np.floor(c - g["bound"] - 1.0) // _BLOCK
    hi = np.floor(c + g["bound"] + 1.0) // _BLOCK + 1
    return (np.clip(lo, 0, n).astype(np.int64),
            np.clip(hi, 0, n).astype(np.int64))
  y0, y1 = span(g["cy"], nb_y)
  x0, x1 = span(g["cx"], nb_x)
  count = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
  return np.flatnonzero(count > 0)


def _draw(g: dict, base: int, h: int, w: int) -> np.ndarray:
  """int32 ``[h, w]``: ``base + k`` for the front-most shape ``k`` of ``g``
  covering each pixel, ``_UNCOVERED`` where none does.

  Shapes larger than ``_SMALL`` px go through Pillow (one C call each),
  the many small ones through numpy stencils, all at once per stencil size;
  the two merge by keeping the smaller (front-most) index per pixel.
  """
  half = np.ceil(g["bound"] + 0.5).astype(np.int64)
  big = np.flatnonzero(half > _SMALL)
  if len(big):
    img = Image.new("I", (w, h), _UNCOVERED)
    draw = ImageDraw.Draw(img)
    # Pillow puts pixel centres at integer coordinates.
    py, px = g["cy"][big] - 0.5, g["cx"][big] - 0.5
    r, a, b = g["r"][big], g["a"][big], g["b"][big]
    boxes = np.stack([px - r, py - r, px + r, py + r], 1)
    c, s = np.cos(g["theta"][big]), np.sin(g["theta"][big])
    ca, sa, cb, sb = c * a, s * a, c * b, s * b
    corners = np.stack([px + ca - sb, py + sa + cb, px - ca - sb, py - sa + cb,
                        px - ca + sb, py - sa - cb, px + ca + sb, py + sa - cb],
                       1)
    # Back to front: the shape drawn last (the front-most) wins.
    for k, rect, box, poly in zip((base + big[::-1]).tolist(),
                                  g["rect"][big[::-1]].tolist(),
                                  boxes[::-1].tolist(), corners[::-1].tolist()):
      if rect:
        draw.polygon(poly, fill=k)
      else:
        draw.ellipse(box, fill=k)
    top = np.array(img)
  else:
    top = np.full((h, w), _UNCOVERED, np.int32)
  flat_top = top.reshape(-1)
  # Stencil classes: (2 hs + 1)^2 px for the shapes with half-size in
  # (previous bound, hs].
  cls = np.searchsorted(np.asarray(_STENCILS), half)
  for k in np.unique(cls[half <= _SMALL]).tolist():
    _stamp(flat_top, g, np.flatnonzero(cls == k), _STENCILS[k], base, h, w)
  return top


def _stamp(flat_top, g, sel, hs, base, h, w):
  """``flat_top = min(flat_top, index)`` over the pixels of shapes ``sel``
  (each within ``hs`` px of its centre pixel)."""
  off = np.arange(-hs, hs + 1)
  cy, cx = g["cy"][sel], g["cx"][sel]
  rows = np.floor(cy).astype(np.int64)[:, None] + off            # [n, K]
  cols = np.floor(cx).astype(np.int64)[:, None] + off
  # Pixel centre minus shape centre; far away outside the image.
  dy = np.where((rows >= 0) & (rows < h), rows + 0.5 - cy[:, None], _FAR)
  dx = np.where((cols >= 0) & (cols < w), cols + 0.5 - cx[:, None], _FAR)
  # Coordinates along the shape's axes in half-axis lengths: a disc holds
  # the pixel centre when u^2 + v^2 <= 1, a rectangle when |u|, |v| <= 1.
  c, s = np.cos(g["theta"][sel]), np.sin(g["theta"][sel])
  ia, ib = 1.0 / g["a"][sel], 1.0 / g["b"][sel]
  def scaled(d, k):
    return (d * k[:, None]).astype(np.float32)
  u = scaled(dx, c * ia)[:, None, :] + scaled(dy, s * ia)[:, :, None]
  v = scaled(dy, c * ib)[:, :, None] - scaled(dx, s * ib)[:, None, :]
  inside = np.where(g["rect"][sel][:, None, None],
                    np.maximum(np.abs(u), np.abs(v)), u * u + v * v) <= 1.0
  flat = ((rows * w).astype(np.int32)[:, :, None] +
          cols.astype(np.int32)[:, None, :])
  label = np.repeat((base + sel).astype(np.int32),
                    np.count_nonzero(inside.reshape(len(sel), -1), axis=1))
  np.minimum.at(flat_top, flat[inside], label)


# Rows of the per-shape table the pixels gather: colour RGB, second colour
# minus the first, then the texture: a linear phase ``y * row6 + x * row7 +
# row8`` and an amplitude (> 0: sinusoid, < 0: gradient, 0: flat).
_ROWS_FLAT, _ROWS_TEXTURE = 3, 10


def _table(g: dict, texture: bool) -> np.ndarray:
  """float32 ``[rows, n]``: what the pixels of each shape of ``g`` show."""
  u = g["u"].T                                   # [13, n]
  n = u.shape[1]
  t = np.zeros((_ROWS_TEXTURE if texture else _ROWS_FLAT, n), np.float32)
  t[0:3] = _colours(u[0:4])
  if not texture:
    return t
  t[3:6] = _colours(u[4:8]) - t[0:3]
  kind = np.minimum((u[8] * 3).astype(np.int64), 2)    # FLAT, GRADIENT, SINE
  phi = u[9] * 2 * math.pi
  # s: position along direction phi, in radii from the centre.
  dy, dx = np.sin(phi) / g["r"], np.cos(phi) / g["r"]
  s0 = -(g["cy"] * dy + g["cx"] * dx)
  freq = 2 * math.pi * 0.5 * 8.0 ** u[10]     # 0.5-4 periods per radius
  phase = u[11] * 2 * math.pi
  amp = 0.3 + 0.7 * u[12]
  sine = kind == SINE
  scale = np.where(sine, freq, 1.0)
  t[6], t[7] = dy * scale, dx * scale
  t[8] = np.where(sine, s0 * freq + phase, s0)
  t[9] = np.where(sine, amp, np.where(kind == GRADIENT, -1.0, 0.0))
  return t


@functools.lru_cache(maxsize=8)
def _pixel_centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  yy, xx = np.divmod(np.arange(h * w, dtype=np.float32), np.float32(w))
  return yy + np.float32(0.5), xx + np.float32(0.5)


def render(rng: np.random.Generator, size: int, channels: int = 3, *,
           texture: bool = True, blur: bool = True, alpha: float = ALPHA,
           supersample: int = SUPERSAMPLE) -> np.ndarray:
  """One dead-leaves image, uint8 ``[size, size, channels]`` (module docstring).

  ``channels = 1``: the ITU-R BT.601 luma of the RGB image. A pure function
  of the generator's state (it advances the generator).
  """
  size, supersample = int(size), int(supersample)
  h = w = size * supersample
  r_min = max(R_MIN * size, R_MIN_PX) * supersample
  r_max = max(R_MAX * size * supersample, r_min)
  layer = h * w / mean_area(r_min, r_max, alpha)
  top, tables, base = None, [], 0
  layers = FIRST_CHUNK_LAYERS
  for _ in range(MAX_CHUNKS):
    g = _geometry(rng, int(math.ceil(layers * layer)), h, w, r_min, r_max,
                  alpha)
    if top is not None:
      # Deeper shapes show only through the pixels no shape covers yet.
      uncovered = top == _UNCOVERED
      g = _subset(g, _touching(uncovered, g))
    tables.append(_table(g, texture))
    labels = _draw(g, base, h, w)
    if top is None:
      top = labels
    else:
      top[uncovered] = labels[uncovered]
    base += len(g["r"])
    layers *= 2
    if not (top == _UNCOVERED).any():
      break
  else:   # never in practice: what no shape covered shows the last shape
    top[top == _UNCOVERED] = base - 1
  p = np.take(np.concatenate(tables, axis=1), top.reshape(-1), axis=1)
  img = p[0:3]                                     # [3, h * w]
  if texture:
    yy, xx = _pixel_centres(h, w)
    arg = yy * p[6] + xx * p[7] + p[8]
    amp = p[9]
    weight = np.where(amp > 0, amp * (0.5 + 0.5 * np.sin(arg)),
                      np.where(amp < 0, np.clip(0.5 + 0.5 * arg, 0.0, 1.0),
                               np.float32(0.0)))
    img = img + weight * p[3:6]
  img = img.reshape(3, h, w)
  if supersample > 1:   # box filter: the mean of each k x k block
    k = supersample     # (sums of strided slices: far faster than .sum(axis))
    img = sum(img[:, i::k] for i in range(k))
    img = sum(img[:, :, j::k] for j in range(k)) * np.float32(1.0 / k ** 2)
  if blur and rng.random() < BLUR_PROB:
    sigma = math.exp(rng.uniform(math.log(0.4),
                                 math.log(max(1.0, 0.015 * size))))
    from scipy import ndimage  # here: importing scipy.ndimage costs ~0.3 s
    img = ndimage.gaussian_filter(img, sigma=(0, sigma, sigma), mode="reflect")
  out = np.ascontiguousarray(
      np.moveaxis(np.clip(np.round(img), 0, 255).astype(np.uint8), 0, -1))
  return out if channels == 3 else sources.to_channels(out, channels)


# --------------------------------------------------------------------------
# Sources for scnn_jax.data (the contract: sources.py)
# --------------------------------------------------------------------------


class DeadLeavesSource:
  """A fresh dead-leaves image per training example; a fixed eval set."""

  def __init__(self, size: int, channels: int, num_eval: int, eval_seed: int,
               texture: bool = True, blur: bool = True):
    colour_table()   # reads the photos once, before training starts
    self.image_shape = (size, size, channels)
    self.num_classes = None
    self.num_train = NUM_TRAIN
    self._size, self._channels = size, channels
    self._num_eval, self._eval_seed = num_eval, eval_seed
    self._texture, self._blur = texture, blur

  def image(self, rng: np.random.Generator) -> np.ndarray:
    return render(rng, self._size, self._channels, texture=self._texture,
                  blur=self._blur)

  def train_example(self, index: int, rng: np.random.Generator):
    del index  # every example is a new image drawn from rng
    return self.image(rng), 0

  def eval_set(self):
    images = [self.image(np.random.default_rng([self._eval_seed, k,
                                                EVAL_STREAM]))
              for k in range(self._num_eval)]
    return np.stack(images), np.zeros(self._num_eval, np.int32)


class MixedSource:
  """``base`` with a ``fraction`` of its training examples replaced by
  dead-leaves images (label 0); the eval set is ``base``'s.

  Whether example ``i`` is a dead-leaves image, and which one, come from a
  child of the example's rng (``Generator.spawn``), which leaves the rng
  itself untouched: the examples that stay ``base``'s are exactly the ones
  an unmixed run draws at the same positions.
  """

  def __init__(self, base, leaves: DeadLeavesSource, fraction: float):
    if tuple(base.image_shape) != tuple(leaves.image_shape):
      raise ValueError(f"image shapes differ: {base.image_shape} vs "
                       f"{leaves.image_shape}")
    self.base, self.leaves, self.fraction = base, leaves, float(fraction)
    self.image_shape = base.image_shape
    self.num_classes = base.num_classes
    self.num_train = base.num_train

  def train_example(self, index: int, rng: np.random.Generator):
    child = rng.spawn(1)[0]
    if child.random() < self.fraction:
      return self.leaves.train_example(index, child)
    return self.base.train_example(index, rng)

  def eval_set(self):
    return self.base.eval_set()
