"""The ``folder`` source: random crops of the PNG / JPEG files under a folder.

Files: recursive, extensions .png/.jpg/.jpeg in any case (other files are
ignored), read with ``etils.epath`` so ``gs://`` paths work. Images are
cropped at their own resolution (no downscaling); an image smaller than the
crop is first resized UP (bilinear, aspect kept) so its shorter side equals
the crop size. Crops with near-constant content are redrawn (up to 10 tries).

Evaluation: ``data.eval_folder``, or, without it, files held out of the
folder: the first ``max(1, round(n / 10))`` usable files in the order of the
MD5 of their relative path (stable, independent of seeds; adding files moves
few).

Bad files (real image folders hold truncated and corrupt files). A file that
cannot be used is treated as if it were absent, so batches stay a pure
function of (seed, step) on every host and on resume:

* when the file list is built, every file gets a cheap check (``check``: the
  header parses, a PNG ends with its IEND chunk); failures are left out and
  reported once, with their count and the first names;
* a file that passes the check but does not decode (a JPEG cut short, a
  damaged PNG data stream) is replaced, each time it is drawn, by the next
  file in list order that decodes (warned once per file and process).

``data.bad_images = "error"`` makes either case fatal instead (``DataError``
naming the file, at start for check failures). A folder with no usable
image is a ``ConfigError`` naming the folder, before anything is written.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import threading

import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from scnn_jax.data.sources import (DataError, EVAL_CROP_STREAM, MIN_PATCH_STD,
                                   crop, decode_image, patch_std,
                                   resize_short_side)
from scnn_jax.ops.checks import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BAD_IMAGE_POLICIES = ("skip", "error")
CROP_TRIES = 10
EVAL_FRACTION = 0.1
HEAD_BYTES = 1 << 16     # enough for the header of nearly every file
REPORTED_NAMES = 5       # bad files named in the report
CHECK_THREADS = 16       # files checked at once (remote storage is latency-bound)
_PNG_END = b"IEND\xaeB`\x82"


def list_images(folder, field: str) -> list[epath.Path]:
  """Image files under ``folder`` (recursive), sorted; ConfigError if none."""
  if folder is None or not str(folder):
    raise ConfigError(field, folder, "must name a folder of PNG/JPEG images")
  root = epath.Path(folder)
  if not root.is_dir():
    raise ConfigError(field, str(folder), "folder does not exist")
  # ``walk`` works on every epath backend (``rglob`` is refused on GCS).
  files = sorted((dirpath / name
                  for dirpath, _, names in root.walk()
                  for name in names
                  if epath.Path(name).suffix.lower() in IMAGE_SUFFIXES),
                 key=str)
  if not files:
    raise ConfigError(field, str(folder), "contains no .png/.jpg/.jpeg file")
  return files


def check(path: epath.Path) -> str | None:
  """Why ``path`` is not a usable image, or None. Cheap: reads the first
  64 KiB (the header) and the last bytes, decodes nothing."""
  try:
    with path.open("rb") as f:
      head = f.read(HEAD_BYTES)
      if not head:
        return "empty file"
      try:
        with Image.open(io.BytesIO(head)) as pil:
          kind = pil.format
      except Exception:  # noqa: BLE001 -- a header longer than HEAD_BYTES?
        if len(head) < HEAD_BYTES:
          raise
        head += f.read()
        with Image.open(io.BytesIO(head)) as pil:
          kind = pil.format
      if kind == "PNG":
        if len(head) < HEAD_BYTES:
          tail = head[-len(_PNG_END):]
        else:
          f.seek(-len(_PNG_END), 2)
          tail = f.read()
        if tail != _PNG_END:
          return "truncated PNG (it does not end with the IEND chunk)"
  except Image.UnidentifiedImageError:
    return "not an image file PIL can identify"
  except Exception as e:  # noqa: BLE001 -- PIL and storage raise many types
    return f"{type(e).__name__}: {e}"
  return None


def usable(files, field: str, folder: str, policy: str) -> list[epath.Path]:
  """``files`` without those failing ``check``: reported once, or fatal."""
  if not files:
    return files
  with concurrent.futures.ThreadPoolExecutor(
      min(CHECK_THREADS, len(files))) as pool:
    reasons = list(pool.map(check, files))
  bad = [(p, r) for p, r in zip(files, reasons) if r is not None]
  if not bad:
    return files
  if policy == "error":
    path, reason = bad[0]
    raise DataError(f"cannot read image file {path}: {reason} "
                    f"(data.bad_images = 'error'; 'skip' leaves such files out)")
  good = [p for p, r in zip(files, reasons) if r is None]
  named = "; ".join(f"{p.name}: {r}" for p, r in bad[:REPORTED_NAMES])
  if not good:
    raise ConfigError(field, folder, f"holds no readable image: all "
                      f"{len(files)} image files failed a check ({named}"
                      f"{'; ...' if len(bad) > REPORTED_NAMES else ''})")
  logging.warning("%s: %d of %d image files are unreadable and left out "
                  "(data.bad_images = 'skip'): %s%s", field, len(bad),
                  len(files), named,
                  "; ..." if len(bad) > REPORTED_NAMES else "")
  return good


def _stable_key(root: epath.Path, path: epath.Path) -> str:
  rel = str(path)[len(str(root)):].lstrip("/")
  return hashlib.md5(rel.encode("utf-8")).hexdigest()


class FolderSource:
  """Random crops of the images in a folder; fixed eval crops."""

  def __init__(self, folder: str, eval_folder: str | None, size: int,
               channels: int, num_eval: int, eval_seed: int,
               bad_images: str = "skip"):
    self._policy = bad_images
    self._size, self._channels = size, channels
    self._undecodable, self._lock = set(), threading.Lock()
    files = usable(list_images(folder, "data.folder"), "data.folder", folder,
                   bad_images)
    self._probe(files, "data.folder", folder)
    if eval_folder:
      self.train_files = files
      self.eval_files = usable(list_images(eval_folder, "data.eval_folder"),
                               "data.eval_folder", eval_folder, bad_images)
      self._probe(self.eval_files, "data.eval_folder", eval_folder)
    else:
      if len(files) < 2:
        raise ConfigError("data.eval_folder", eval_folder,
                          f"is needed: data.folder {folder!r} holds only one "
                          "usable image, none can be held out for evaluation")
      root = epath.Path(folder)
      order = sorted(files, key=lambda p: _stable_key(root, p))
      n_eval = max(1, int(round(EVAL_FRACTION * len(files))))
      held = set(map(str, order[:n_eval]))
      self.eval_files = [p for p in files if str(p) in held]
      self.train_files = [p for p in files if str(p) not in held]
      self._probe(self.train_files, "data.folder", folder)
      self._probe(self.eval_files, "data.folder", folder, "held-out ")
    self.image_shape = (size, size, channels)
    self.num_classes = None
    self.num_train = len(self.train_files)
    self._num_eval, self._eval_seed = num_eval, eval_seed

  def _probe(self, files, field, where, which=""):
    """One decode: a list whose files all pass the check but none decodes
    fails here, before anything is written."""
    try:
      self._load_usable(files, 0)
    except DataError as e:
      if self._policy == "error":
        raise
      raise ConfigError(field, where, f"holds no readable {which}image: "
                        f"{e}") from e

  def load(self, path: epath.Path) -> np.ndarray:
    """Decoded image, resized up if smaller than the crop."""
    try:
      data = path.read_bytes()
    except Exception as e:
      raise DataError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e
    img = decode_image(data, self._channels, str(path))
    return resize_short_side(img, self._size, only_up=True)

  def _load_usable(self, files, index: int) -> np.ndarray:
    """File ``index``, or the next one in list order that decodes."""
    first_error = None
    for k in range(len(files)):
      path = files[(index + k) % len(files)]
      if str(path) in self._undecodable:
        continue
      try:
        return self.load(path)
      except DataError as e:
        if self._policy == "error":
          raise
        first_error = first_error or e
        with self._lock:
          first = str(path) not in self._undecodable
          self._undecodable.add(str(path))
        if first:
          logging.warning("%s; using the next file in its place (every time "
                          "it is drawn)", e)
    raise DataError(f"none of its {len(files)} image files decodes "
                    f"({first_error or 'each failed when first read'})")

  def _crop(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    best, best_std = None, -1.0
    for _ in range(CROP_TRIES):
      patch = crop(img, self._size, rng)
      std = patch_std(patch)
      if std > MIN_PATCH_STD:
        return patch
      if std > best_std:
        best, best_std = patch, std
    return best  # the whole image is near-constant: keep the liveliest crop

  def train_example(self, index: int, rng: np.random.Generator):
    img = self._load_usable(self.train_files, index)
    return np.ascontiguousarray(self._crop(img, rng)), 0

  def eval_set(self):
    n = len(self.eval_files)
    images = [None] * self._num_eval
    for j in range(n):  # decode each file once
      ks = range(j, self._num_eval, n)
      if not len(ks):
        break
      img = self._load_usable(self.eval_files, j)
      for k in ks:
        rng = np.random.default_rng([self._eval_seed, k, EVAL_CROP_STREAM])
        images[k] = np.ascontiguousarray(self._crop(img, rng))
    return np.stack(images), np.zeros(self._num_eval, np.int32)
