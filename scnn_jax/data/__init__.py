"""Data for scnn_jax: image sources and the grain pipeline.

    from scnn_jax import data
    ds = data.build(config)           # a validated config (config.schema)
    ds.image_shape, ds.num_classes    # (H, W, C); int or None
    it = ds.train_iterator(start_step, batch_size, process_index, process_count)
    batch = next(it)                  # image / label / valid / example_id
                                      # (+ mask for task="inpaint")
    evals = ds.eval_batches(batch_size, process_index, process_count)

Sources (``config.data.source``): ``embedded`` (``name`` = ``natural``,
``mnist5k``, ``photos`` or ``openphotos``, shipped with the package, no
network), ``tfds`` (any TFDS image dataset through ``tfds.data_source``, no
TensorFlow), ``folder`` (PNG/JPEG files) and ``dead_leaves`` (procedural
images, ``dead_leaves.py``; ``data.dead_leaves_mix`` also mixes them into
another source's training examples). ``sources.py`` documents each
(splits, crops, resizing), ``folder.py`` the folder source and its
unreadable files, ``photos.py`` and ``openphotos.py`` the embedded photos;
``pipeline.py`` documents determinism, resuming and multi-host slicing. A
task may add fields to every example through a transform it supplies
(``scnn_jax.tasks.dataset``): the inpainting task's hole masks
(``masks.HoleMasks``); ``augment.py`` is the classifier's on-device
augmentation; ``images.py`` reads and writes image files. The fields and
their allowed values: ``scnn_jax.config.schema``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from scnn_jax.data import openphotos, photos, sources
from scnn_jax.data import folder as folder_source
from scnn_jax.data.sources import (DataError, EMBEDDED_NAMES,  # noqa: F401
                                   NATURAL_TRAIN_PHOTOS, NATURAL_VAL_PHOTOS)

if TYPE_CHECKING:
  from scnn_jax.data.pipeline import Dataset

__all__ = ["Dataset", "DataError", "SOURCES", "build"]

# config.data.source: the kinds of source ``build`` makes.
SOURCES = ("embedded", "tfds", "folder", "dead_leaves")

# Imported on first use, not with the package: every command that reads a
# config imports ``scnn_jax.data`` (the schema checks sources), and grain
# (with Orbax under it) and scipy.ndimage cost ~1 s there, for nothing when
# no pipeline is built (``scnn-inpaint``, ``--help``).
_LAZY_MODULES = ("dead_leaves", "pipeline")


def __getattr__(name):
  if name == "Dataset":
    return importlib.import_module("scnn_jax.data.pipeline").Dataset
  if name in _LAZY_MODULES:
    return importlib.import_module(f"scnn_jax.data.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dead_leaves(data, eval_seed: int):
  from scnn_jax.data import dead_leaves
  return dead_leaves.DeadLeavesSource(
      int(data.image_size), int(data.channels), int(data.num_eval), eval_seed,
      texture=bool(data.dead_leaves_texture), blur=bool(data.dead_leaves_blur))


def build(config, transform=None) -> Dataset:
  """The dataset of a validated ``config``
  (``scnn_jax.config.schema.validate``).

  ``transform``: None (plain images and labels) or an object with
  ``train`` / ``eval`` that adds fields to every example (``pipeline.py``);
  a task supplies its own (``scnn_jax.tasks.dataset``: the inpainting
  task's hole masks). Opens the source: a folder without a readable
  image or a missing TFDS dataset fails here with a ``DataError`` /
  ``ConfigError`` naming the field.
  """
  data = config.data
  size, channels = int(data.image_size), int(data.channels)
  num_eval = int(data.num_eval)
  # masks.eval_seed also picks the eval items (every task), as it always has.
  eval_seed = int(config.masks.eval_seed)
  if data.source == "embedded":
    if data.name == "natural":
      src = sources.NaturalSource(size, channels, num_eval, eval_seed)
    elif data.name == "photos":
      src = photos.PhotosSource(size, channels, num_eval, eval_seed)
    elif data.name == "openphotos":
      src = openphotos.OpenPhotosSource(size, channels, num_eval, eval_seed)
    else:
      src = sources.Mnist5kSource(size, channels, num_eval, eval_seed,
                                  data.train_crop)
    name = f"embedded:{data.name}"
  elif data.source == "tfds":
    src = sources.TfdsSource(
        data.name, data.train_split, data.eval_split, data.data_dir, size,
        channels, num_eval, eval_seed, data.train_crop,
        download=bool(data.tfds_download))
    name = f"tfds:{data.name}"
  elif data.source == "dead_leaves":
    src, name = _dead_leaves(data, eval_seed), "dead_leaves"
  else:
    src = folder_source.FolderSource(
        data.folder, data.eval_folder, size, channels, num_eval, eval_seed,
        bad_images=data.bad_images)
    name = f"folder:{data.folder}"
  mix = float(data.dead_leaves_mix)
  if mix > 0:
    from scnn_jax.data import dead_leaves
    src = dead_leaves.MixedSource(src, _dead_leaves(data, eval_seed), mix)
    name = f"{name}+dead_leaves:{mix:g}"
  from scnn_jax.data.pipeline import Dataset
  return Dataset(src, seed=int(config.seed), transform=transform,
                 prefetch=int(data.prefetch), num_threads=int(data.num_threads),
                 num_workers=int(data.num_workers), name=name)
