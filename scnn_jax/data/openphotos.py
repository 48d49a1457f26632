"""The ``openphotos`` embedded dataset: 43 openly licensed photos, split by photo.

Photos (``scnn_jax/data/embedded/README.md`` has each one's author, licence
and origin):

* ``openphotos.npz``: 35 photographs from Debian's wallpaper packages
  (landscapes, plants and animals, objects, rooms, a facade, textures) and
  PyWavelets' ``ascent`` (people on a staircase), longer side 512 px;
* astronaut, rocket, motorcycle_left (``natural.npz``) and motorcycle_right
  (``photos_extra.npz``), scikit-image photos at 384 px;
* chelsea, coffee and gravel at scikit-image's original resolution
  (300 x 451, 400 x 600, 512 x 512 grey), read from ``skimage.data`` when
  needed (scikit-image is a dependency; all three ship in its wheel). The
  384-px copies in the other embedded files are too small for 256-px
  evaluation crops of chelsea.

Grey photos are replicated to RGB (or colour reduced to grey) on load.

Split by whole photo, fixed: train (``OPENPHOTOS_TRAIN``, 33 photos) and
held out for evaluation (``OPENPHOTOS_VAL``, 10: seven from the npz chosen
to span the kinds of scene, plus chelsea, coffee and gravel), never trained
on. No scene has photos in both splits (both motorcycle views train).

Training examples are augmented random crops: a square region of side
``size / s`` (at most the photo's shorter side) with the zoom ``s``
log-uniform in ``[SCALE_MIN, SCALE_MAX]``, resized to ``size`` (Pillow
bicubic), then a random horizontal flip. A user's crop is native pixels of a
512-768 px photo: ``s`` in ``[1, 1.5]`` matches that range for the 512-px
photos (``s = 1.5`` has the pixel scale of a 768-px photo), and ``s`` down to
0.5 adds wider, sharper views (the pixel scale of a 256-px photo) for more
distinct content per photo. No vertical flip or 90-degree rotation: users'
photos are upright (sky above, light from above, people standing) and the
net may learn that. Near-constant crops (per-channel std <= 0.05) are redrawn
up to 10 times, as in the folder source. The photo is drawn with probability
proportional to its area, so every pixel is about equally likely.

Evaluation: ``num_eval`` fixed ``size x size`` crops of the held-out photos
at their stored resolution (photo ``k % 10`` of ``OPENPHOTOS_VAL`` for item
``k``; position from ``eval_seed``), no augmentation, never near-constant.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from scnn_jax.data import sources
from scnn_jax.ops.checks import ConfigError

OPENPHOTOS_TRAIN = (
    # openphotos.npz
    "water_drop", "leaf_veins", "dune_grass", "marigold", "storm_road",
    "wood_planks", "yellow_flower", "bridge_sky", "fig_bowl", "paint_brushes",
    "living_room", "aitzgorri", "lamp_bird", "wall_clock", "forest_stream",
    "dandelions", "hill_sunset", "nuthatch", "pier_grey", "fallen_leaf",
    "moss", "lake_dusk", "rain_clouds", "green_hills", "apple_blossom",
    "swallowtail", "dewdrop", "wildflowers", "ascent",
    # natural.npz / photos_extra.npz
    "astronaut", "rocket", "motorcycle_left", "motorcycle_right",
)
OPENPHOTOS_VAL = (
    # openphotos.npz: mountains, objects, animals, architecture, forest,
    # macro, water at sunset
    "picos_europa", "cups", "dogs_window", "facade", "forest_path", "ladybird",
    "rowing_boats",
    # skimage.data, original resolution
    "chelsea", "coffee", "gravel",
)
SKIMAGE_TRAIN = {"astronaut": "natural.npz", "rocket": "natural.npz",
                 "motorcycle_left": "natural.npz",
                 "motorcycle_right": "photos_extra.npz"}
SKIMAGE_VAL = ("chelsea", "coffee", "gravel")
SCALE_MIN, SCALE_MAX = 0.5, 1.5
CROP_TRIES = 10
EVAL_STREAM = 0x6f70656e  # "open": eval crop positions


@functools.lru_cache(maxsize=None)
def _stored() -> dict[str, np.ndarray]:
  """Every photo as stored (uint8 ``[H, W, 1 or 3]``), read-only: cached."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  photos = sources.load_npz(sources.embedded_path("openphotos.npz"))
  files = {f: sources.load_npz(sources.embedded_path(f))
           for f in set(SKIMAGE_TRAIN.values())}
  photos.update({k: files[f][k] for k, f in SKIMAGE_TRAIN.items()})
  for k in SKIMAGE_VAL:
    img = np.array(getattr(skimage.data, k)())  # ours to make read-only
    photos[k] = img[:, :, None] if img.ndim == 2 else img
  missing = set(OPENPHOTOS_TRAIN + OPENPHOTOS_VAL) - set(photos)
  if missing:
    raise sources.DataError(
        f"{sources.embedded_path('openphotos.npz')} lacks {sorted(missing)}: "
        "regenerate it with scripts/make_embedded_data.py --only openphotos")
  for v in photos.values():
    v.flags.writeable = False
  return {k: photos[k] for k in OPENPHOTOS_TRAIN + OPENPHOTOS_VAL}


def load_openphotos(channels: int) -> dict[str, np.ndarray]:
  """Every photo of the dataset (train, then held out) as uint8
  ``[H, W, channels]``; read-only arrays."""
  return {k: sources.to_channels(v, channels, f"openphotos/{k}")
          for k, v in _stored().items()}


def heldout_photos(channels: int) -> dict[str, np.ndarray]:
  """The held-out photos (``OPENPHOTOS_VAL``) as uint8 ``[H, W, channels]``."""
  photos = load_openphotos(channels)
  return {k: photos[k] for k in OPENPHOTOS_VAL}


def min_side() -> int:
  """Shortest side over all photos (the largest allowed crop)."""
  return min(min(p.shape[:2]) for p in _stored().values())


def _resize(region: np.ndarray, size: int) -> np.ndarray:
  # Bicubic, not the bilinear of sources.resize: zooming in (s > 1) with
  # bilinear leaves a piecewise-linear pattern that no camera makes.
  if region.shape[0] == size:
    return region
  c = region.shape[2]
  pil = Image.fromarray(np.ascontiguousarray(region[:, :, 0] if c == 1 else region))
  out = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
  return out[:, :, None] if c == 1 else out


class OpenPhotosSource:
  """Augmented crops of the train photos; fixed crops of the held-out ones."""

  def __init__(self, size: int, channels: int, num_eval: int, eval_seed: int):
    shortest = min_side()
    if size > shortest:
      raise ConfigError("data.image_size", size, f"must be <= {shortest} (the "
                        "shortest side of the openphotos photos)")
    photos = load_openphotos(channels)
    self.image_shape = (size, size, channels)
    self.num_classes = None
    self.train = [photos[k] for k in OPENPHOTOS_TRAIN]
    self.val = [photos[k] for k in OPENPHOTOS_VAL]
    area = np.array([p.shape[0] * p.shape[1] for p in self.train], float)
    self._weights = area / area.sum()
    # One "item" per 32 x 32 px of training photo: sets the epoch length
    # of the pipeline's shuffle; the crop itself is random per example.
    self.num_train = int(area.sum() // 1024)
    self._size, self._num_eval, self._eval_seed = size, num_eval, eval_seed

  def train_example(self, index: int, rng: np.random.Generator):
    del index  # the crop, photo and augmentation all come from rng
    size = self._size
    img = self.train[int(rng.choice(len(self.train), p=self._weights))]
    h, w = img.shape[:2]
    best, best_std = None, -1.0
    for _ in range(CROP_TRIES):
      s = float(np.exp(rng.uniform(np.log(SCALE_MIN), np.log(SCALE_MAX))))
      side = min(h, w, max(1, int(round(size / s))))
      y = int(rng.integers(0, h - side + 1))
      x = int(rng.integers(0, w - side + 1))
      patch = _resize(img[y:y + side, x:x + side], size)
      if rng.integers(2):
        patch = patch[:, ::-1]
      patch = np.array(patch)  # a writable copy, never a view of the cache
      std = sources.patch_std(patch)
      if std > sources.MIN_PATCH_STD:
        return patch, 0
      if std > best_std:
        best, best_std = patch, std
    return best, 0

  def eval_set(self):
    size = self._size
    images = []
    for k in range(self._num_eval):
      img = self.val[k % len(self.val)]
      rng = np.random.default_rng([self._eval_seed, k, EVAL_STREAM])
      for _ in range(100):
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        patch = img[y:y + size, x:x + size]
        if sources.patch_std(patch) > sources.MIN_PATCH_STD:
          break
      images.append(np.array(patch))
    return np.stack(images), np.zeros(self._num_eval, np.int32)
