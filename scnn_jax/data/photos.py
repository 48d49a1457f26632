"""The ``photos`` embedded dataset: 11 scikit-image photographs, split by photo.

``natural.npz`` (seven colour photos) plus ``photos_extra.npz`` (one colour,
four grey; ``scnn_jax/data/embedded/README.md`` has provenance and licences).
Grey photos are replicated to RGB (or colour reduced to grey) on load.

Split by whole photo:

* train (``PHOTOS_TRAIN``): astronaut, rocket, motorcycle_left,
  motorcycle_right (the same scene from two viewpoints, so both train),
  retina, immunohistochemistry, cell, text, clock;
* validation (``PHOTOS_VAL``): chelsea, coffee (photos) and gravel (a
  texture), never trained on.

Training examples are augmented random crops: a square region of side
``size / s`` with the scale ``s`` log-uniform in ``[SCALE_MIN, 1]`` (so
the net sees the same content at up to 2x zoom-out), resized to ``size``
(Pillow bilinear, antialiased), then a random flip and a random rotation by
a multiple of 90 degrees. Near-constant crops (per-channel std <= 0.05) are
redrawn up to 10 times, as in the folder source. The photo is drawn with
probability proportional to its area, so every pixel is about equally likely.

Evaluation: ``num_eval`` fixed ``size x size`` crops of the validation photos
(photo ``k % 3`` for item ``k``; position from ``eval_seed``), no
augmentation, never near-constant.
"""

from __future__ import annotations

import numpy as np

from scnn_jax.data import sources
from scnn_jax.ops.checks import ConfigError

PHOTOS_TRAIN = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right",
                "retina", "immunohistochemistry", "cell", "text", "clock")
PHOTOS_VAL = ("chelsea", "coffee", "gravel")
SCALE_MIN = 0.5
CROP_TRIES = 10
EVAL_STREAM = 0x70686f74  # "phot": eval crop positions


def load_photos(channels: int) -> dict[str, np.ndarray]:
  """Every photo of the dataset as uint8 ``[H, W, channels]``."""
  photos = dict(sources.load_npz(sources.embedded_path("natural.npz")))
  photos.update(sources.load_npz(sources.embedded_path("photos_extra.npz")))
  return {k: sources.to_channels(v, channels, f"photos/{k}")
          for k, v in photos.items()}


def min_side() -> int:
  """Shortest side over all photos (the largest allowed crop)."""
  return min(min(p.shape[:2]) for p in load_photos(1).values())


def _crop_at(img, size, y, x, side, flip, rot):
  region = img[y:y + side, x:x + side]
  if side != size:
    region = sources.resize(np.ascontiguousarray(region), size, size)
  if flip:
    region = region[:, ::-1]
  return np.ascontiguousarray(np.rot90(region, rot))


class PhotosSource:
  """Augmented crops of the train photos; fixed crops of the val photos."""

  def __init__(self, size: int, channels: int, num_eval: int, eval_seed: int):
    photos = load_photos(channels)
    shortest = min(min(p.shape[:2]) for p in photos.values())
    if size > shortest:
      raise ConfigError("data.image_size", size, f"must be <= {shortest} (the "
                        "shortest side of the embedded photos)")
    self.image_shape = (size, size, channels)
    self.num_classes = None
    self.train = [photos[k] for k in PHOTOS_TRAIN]
    self.val = [photos[k] for k in PHOTOS_VAL]
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
      s = float(np.exp(rng.uniform(np.log(SCALE_MIN), 0.0)))
      side = min(h, w, max(size, int(round(size / s))))
      y = int(rng.integers(0, h - side + 1))
      x = int(rng.integers(0, w - side + 1))
      patch = _crop_at(img, size, y, x, side, bool(rng.integers(2)),
                       int(rng.integers(4)))
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
      images.append(np.ascontiguousarray(patch))
    return np.stack(images), np.zeros(self._num_eval, np.int32)
