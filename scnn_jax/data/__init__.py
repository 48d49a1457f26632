"""Data for scnn_jax: image sources, hole masks and the grain pipeline.

    from scnn_jax import data
    data.validate_config(config)      # config.data + config.masks; ConfigError
    ds = data.build(config)
    ds.image_shape, ds.num_classes    # (H, W, C); int or None
    it = ds.train_iterator(start_step, batch_size, process_index, process_count)
    batch = next(it)                  # image / mask / label / valid / example_id
    evals = ds.eval_batches(batch_size, process_index, process_count)

Sources (``config.data.source``): ``embedded`` (``name`` = ``natural`` or
``mnist5k``, shipped with the package, no network), ``tfds`` (any TFDS image
dataset through ``tfds.data_source``, no TensorFlow) and ``folder`` (PNG/JPEG
files). ``sources.py`` documents each (splits, crops, resizing),
``folder.py`` the folder source and its unreadable files; ``pipeline.py``
documents determinism, resuming and multi-host slicing;
``scnn_jax/masks.py`` the mask kinds.

Config fields read here (``configs/base.py`` defines them)::

  config.seed                      int >= 0: shuffling, crops, training masks
  config.data.source               embedded | tfds | folder
  config.data.name                 natural | mnist5k | photos (embedded); TFDS name
  config.data.image_size           int >= 4, square crops
  config.data.channels             1 | 3
  config.data.train_split / eval_split    TFDS split names (tfds only)
  config.data.data_dir             TFDS data_dir or None
  config.data.tfds_download        optional bool, default False: let tfds
                                   download + prepare (array_record) if missing
  config.data.folder / eval_folder folder source; eval_folder optional
  config.data.bad_images           skip | error (optional, default skip):
                                   folder files that cannot be decoded
  config.data.num_eval             int >= 1, size of the fixed eval set
  config.data.prefetch             int >= 0, batches read ahead
  config.data.num_threads          int >= 0, reader threads
  config.data.num_workers          optional int >= 0, default 0: reader
                                   processes instead of threads (use on a
                                   GPU/TPU host whose step outruns threads)
  config.data.train_crop           random | center (optional, default random;
                                   tfds / mnist5k images larger than the size)
  config.masks.kind                box | center | stroke | pixels
  config.masks.ratio_min/ratio_max 0 < min <= max < 1
  config.masks.max_boxes           int >= 1 (box)
  config.masks.eval_seed           int >= 0: fixes the eval items and masks
"""

from __future__ import annotations

from etils import epath

from scnn_jax import masks as masks_lib
from scnn_jax.config_lib import ConfigError, check_choice, check_int
from scnn_jax.data import folder as folder_source
from scnn_jax.data import photos, sources
from scnn_jax.data.pipeline import Dataset
from scnn_jax.data.sources import (DataError, EMBEDDED_NAMES,  # noqa: F401
                                   NATURAL_TRAIN_PHOTOS, NATURAL_VAL_PHOTOS)

SOURCES = ("embedded", "tfds", "folder")
TRAIN_CROPS = ("random", "center")
NATURAL_MAX_SIZE = 255   # shortest side of the embedded natural photos
MNIST5K_NUM_VAL = 1000
MIN_IMAGE_SIZE = 4

_MISSING = object()

__all__ = ["Dataset", "DataError", "build", "validate_config", "SOURCES"]


def _get(cfg, key, default=_MISSING, prefix=""):
  try:
    value = cfg.get(key, _MISSING)
  except AttributeError:
    value = getattr(cfg, key, _MISSING)
  if value is _MISSING:
    if default is _MISSING:
      raise ConfigError(f"{prefix}{key}", None, "is missing (must be set)")
    return default
  return value


def _check_str(field, value, allow_none=False):
  if value is None and allow_none:
    return value
  if not isinstance(value, str) or not value:
    raise ConfigError(field, value, "must be a non-empty string"
                      + (" or None" if allow_none else ""))
  return value


def _check_folder(field, value):
  _check_str(field, value)
  if not epath.Path(value).is_dir():
    raise ConfigError(field, value, "folder does not exist")
  return value


def validate_config(config) -> None:
  """Checks ``config.seed``, ``config.data`` and ``config.masks``.

  Raises ``ConfigError`` whose message names the field and what is allowed.
  Checks folders exist; opens no dataset.
  """
  check_int("seed", _get(config, "seed"), minimum=0)
  data = _get(config, "data")
  d = lambda key, default=_MISSING: _get(data, key, default, "data.")  # noqa: E731
  source = check_choice("data.source", d("source"), SOURCES)
  size = check_int("data.image_size", d("image_size"), minimum=MIN_IMAGE_SIZE)
  check_choice("data.channels", d("channels"), (1, 3))
  num_eval = check_int("data.num_eval", d("num_eval"), minimum=1)
  check_int("data.prefetch", d("prefetch", 2), minimum=0)
  check_int("data.num_threads", d("num_threads", 2), minimum=0)
  check_int("data.num_workers", d("num_workers", 0), minimum=0)
  check_choice("data.train_crop", d("train_crop", "random"), TRAIN_CROPS)
  check_choice("data.bad_images", d("bad_images", "skip"),
               folder_source.BAD_IMAGE_POLICIES)
  if source == "embedded":
    name = check_choice("data.name", d("name"), EMBEDDED_NAMES)
    if name == "natural" and size > NATURAL_MAX_SIZE:
      raise ConfigError("data.image_size", size, f"must be <= {NATURAL_MAX_SIZE}"
                        " for the embedded natural photos")
    if name == "mnist5k" and num_eval > MNIST5K_NUM_VAL:
      raise ConfigError("data.num_eval", num_eval,
                        f"must be <= {MNIST5K_NUM_VAL} for mnist5k")
  elif source == "tfds":
    _check_str("data.name", d("name"))
    _check_str("data.train_split", d("train_split"))
    _check_str("data.eval_split", d("eval_split"))
    _check_str("data.data_dir", d("data_dir", None), allow_none=True)
    if not isinstance(d("tfds_download", False), bool):
      raise ConfigError("data.tfds_download", d("tfds_download", False),
                        "must be True or False")
  else:
    _check_folder("data.folder", d("folder", None))
    eval_folder = d("eval_folder", None)
    if eval_folder is not None:
      _check_folder("data.eval_folder", eval_folder)
  masks_lib.validate_config(_get(config, "masks"))


def build(config) -> Dataset:
  """The dataset of ``config`` (validated first). See the module docstring."""
  validate_config(config)
  data, mcfg = config.data, config.masks
  size, channels = int(data.image_size), int(data.channels)
  num_eval = int(data.num_eval)
  eval_seed = int(_get(mcfg, "eval_seed", 0))
  train_crop = _get(data, "train_crop", "random")
  source_kind = data.source
  if source_kind == "embedded":
    if data.name == "natural":
      src = sources.NaturalSource(size, channels, num_eval, eval_seed)
    elif data.name == "photos":
      src = photos.PhotosSource(size, channels, num_eval, eval_seed)
    else:
      src = sources.Mnist5kSource(size, channels, num_eval, eval_seed, train_crop)
    name = f"embedded:{data.name}"
  elif source_kind == "tfds":
    src = sources.TfdsSource(
        data.name, data.train_split, data.eval_split, _get(data, "data_dir", None),
        size, channels, num_eval, eval_seed, train_crop,
        download=bool(_get(data, "tfds_download", False)))
    name = f"tfds:{data.name}"
  else:
    src = folder_source.FolderSource(
        data.folder, _get(data, "eval_folder", None), size, channels, num_eval,
        eval_seed, bad_images=_get(data, "bad_images", "skip"))
    name = f"folder:{data.folder}"
  mask_gen = masks_lib.MaskGenerator.from_config(mcfg, size, size)
  return Dataset(src, mask_gen, seed=int(config.seed),
                 prefetch=int(_get(data, "prefetch", 2)),
                 num_threads=int(_get(data, "num_threads", 2)),
                 num_workers=int(_get(data, "num_workers", 0)), name=name)
