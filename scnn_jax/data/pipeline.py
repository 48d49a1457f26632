"""The grain input pipeline: shuffle, decode + crop (+ a task's transform), host slice, batch.

Every training example is a pure function of ``(config.seed, global example
position)``: position ``i`` belongs to global batch ``i // G`` (``G`` = global
batch size), row ``i % G``. Its source item is ``order[i]`` where ``order`` is
a seeded ``grain`` shuffle of the source, reshuffled every epoch (infinite
repeat); its random crop, and whatever the task's transform adds (the
inpainting task's hole mask, ``masks.HoleMasks``), are drawn from generators
seeded with ``(seed, i)``. Hence

* resuming is free: ``train_iterator(start_step=k)`` starts reading at
  position ``k * G`` and yields exactly the batches an uninterrupted run
  yields from step ``k`` on;
* the global batch does not depend on the number of processes: with ``P``
  processes, process ``p`` reads rows ``[p * G/P, (p + 1) * G/P)`` of every
  global batch, and concatenating the host slices gives the ``P = 1`` batch
  (images, masks and labels alike);
* the batch size is part of the stream: a run resumed with a different global
  batch size sees different data (the trainer keeps it fixed).

Reading runs in ``grain`` threads (``data.num_threads``) that keep
``data.prefetch`` batches ahead of the consumer, or, with
``data.num_workers > 0``, in that many worker processes (grain's
``mp_prefetch``): building a batch is ~200 us of Python per example, so
threads share one core through the GIL and a GPU step outruns them; worker
processes scale with the host's cores. Workers take whole batches in turn,
so the stream is the same batches in the same order for any worker count.

Batches are dicts of numpy arrays (``b`` = host-local batch size):

``image``       float32 ``[b, H, W, C]`` in [0, 1]
``label``       int32 ``[b]`` (zeros if the dataset has no labels)
``valid``       float32 ``[b]``: 1 for real examples, 0 for eval padding
``example_id``  int32 ``[b]``: global example position modulo 2**31 (train) or
                eval index (eval); e.g. ``SpikingConv2d(example_ids=...)`` so
                per-example noise does not depend on the device split.

plus the fields of the dataset's ``transform`` (float32): for inpainting
``mask`` ``[b, H, W, 1]``, 1 = hole (missing), 0 = known. A transform has
``train(seed, position) -> dict`` and ``eval(index) -> dict`` (pure functions
of their arguments); the eval set keeps its ``eval`` fields as computed.
"""

from __future__ import annotations

import sys
from typing import Iterator

import grain
import numpy as np

from scnn_jax.ops.checks import ConfigError, check_int

TRAIN_CROP_STREAM = 0x7472636B   # "trck": training crops
SHUFFLE_STREAM = 0x73687566      # "shuf": the order of the source


def _check_hosts(batch_size, process_index, process_count, batch_field):
  check_int(batch_field, batch_size, minimum=1)
  if isinstance(process_count, bool) or not isinstance(process_count, int) \
      or process_count < 1:
    raise ValueError(f"process_count must be an integer >= 1, got {process_count!r}")
  if isinstance(process_index, bool) or not isinstance(process_index, int) \
      or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), "
                     f"got {process_index!r}")
  if batch_size % process_count:
    raise ConfigError(batch_field, batch_size,
                      f"must be divisible by the process count ({process_count})")
  return batch_size // process_count


class _HostRows(grain.MapDataset):
  """Host ``p``'s rows of every global batch, in order.

  Element ``k`` (host-local step ``k // b``, row ``k % b``) is element
  ``step * G + p * b + row`` of the global example stream.
  """

  def __init__(self, parent: grain.MapDataset, global_batch: int,
               process_index: int, process_count: int):
    super().__init__(parent)
    self._global = global_batch
    self._local = global_batch // process_count
    self._offset = process_index * self._local
    self._length = min(len(parent) // global_batch * self._local, sys.maxsize)

  def __len__(self) -> int:
    return self._length

  def __str__(self) -> str:
    return f"_HostRows(global={self._global}, local={self._local}, offset={self._offset})"

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    step, row = divmod(index, self._local)
    return self._parent[step * self._global + self._offset + row]


def _absl_flags_ready():
  """grain's worker processes read absl flags: outside an absl app (library
  use, tests) nobody parsed them, so take their defaults."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class Dataset:
  """What ``data.build(config)`` returns. See the module docstring."""

  def __init__(self, source, *, seed: int, transform=None,
               prefetch: int = 4, num_threads: int = 2, num_workers: int = 0,
               name: str = ""):
    self.source = source
    self.transform = transform
    self.seed = int(seed)
    self.prefetch = int(prefetch)
    self.num_threads = int(num_threads)
    self.num_workers = int(num_workers)
    self.name = name
    self.image_shape = tuple(source.image_shape)
    self.num_classes = source.num_classes
    shuffle_seed = int(np.random.SeedSequence(
        [self.seed, SHUFFLE_STREAM]).generate_state(1)[0])
    # order[i] = source item of global example position i (reshuffled every
    # epoch by grain: the per-epoch seed is folded with the epoch number).
    self._order = grain.MapDataset.range(source.num_train).shuffle(
        seed=shuffle_seed).repeat()
    self._examples = self._order.map_with_index(self._make_train_example)
    self._eval_cache = None

  def __repr__(self) -> str:
    return (f"Dataset({self.name}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, num_train={self.source.num_train})")

  # -- training ------------------------------------------------------------
  def _make_train_example(self, position: int, index: int) -> dict:
    rng = np.random.default_rng([self.seed, position, TRAIN_CROP_STREAM])
    image, label = self.source.train_example(int(index), rng)
    example = {
        "image": image.astype(np.float32) / np.float32(255.0),
        "label": np.int32(label),
        "valid": np.float32(1.0),
        "example_id": np.int32(position % 2**31),
    }
    if self.transform is not None:
      example.update(self.transform.train(self.seed, position))
    return example

  def train_example(self, position: int) -> dict:
    """Global training example ``position`` (a pure function of it)."""
    return self._examples[position]

  def _host_batches(self, batch_size, process_index, process_count,
                    batch_field) -> grain.MapDataset:
    local = _check_hosts(batch_size, process_index, process_count, batch_field)
    rows = _HostRows(self._examples, batch_size, process_index, process_count)
    return rows.batch(local, drop_remainder=True)

  def train_batch(self, step: int, batch_size: int, process_index: int = 0,
                  process_count: int = 1, *, batch_field: str = "train.batch_size") -> dict:
    """The host slice of global batch ``step``, read directly (no threads)."""
    check_int("start_step", step, minimum=0)
    return self._host_batches(batch_size, process_index, process_count,
                              batch_field)[step]

  def train_iterator(self, start_step: int, batch_size: int,
                     process_index: int = 0, process_count: int = 1, *,
                     batch_field: str = "train.batch_size") -> Iterator[dict]:
    """Infinite iterator of host-local batches from global step ``start_step``.

    ``batch_size`` is the GLOBAL batch size; each batch holds
    ``batch_size // process_count`` rows (ConfigError naming ``batch_field``
    if it does not divide). Batches are prefetched by ``data.num_threads``
    threads, ``data.prefetch`` batches ahead, or by ``data.num_workers``
    processes (``data.prefetch`` batches ahead each). Call ``close()`` on
    the iterator when done with it to stop worker processes early (the
    trainer does; otherwise they stop when it is garbage-collected).
    """
    check_int("start_step", start_step, minimum=0)
    batches = self._host_batches(batch_size, process_index, process_count,
                                 batch_field)[start_step:]
    if self.num_workers > 0:
      _absl_flags_ready()
      it_ds = batches.to_iter_dataset(
          grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
      return iter(it_ds.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self.num_workers,
          per_worker_buffer_size=max(self.prefetch, 1))))
    read = grain.ReadOptions(num_threads=self.num_threads,
                             prefetch_buffer_size=self.prefetch)
    it_ds = batches.to_iter_dataset(read)
    if self.num_threads == 0 and self.prefetch > 0:
      # No reader threads: still prepare batches ahead in one background thread.
      it_ds = grain.experimental.ThreadPrefetchIterDataset(
          it_ds, prefetch_buffer_size=self.prefetch)
    return iter(it_ds)

  # -- evaluation ------------------------------------------------------------
  def eval_set(self) -> dict:
    """The whole fixed eval set (computed once): uint8 images, int32 labels
    and the transform's eval fields (inpainting: uint8 masks)."""
    if self._eval_cache is None:
      images, labels = self.source.eval_set()
      self._eval_cache = {"image": images,
                          "label": np.asarray(labels, np.int32)}
      if self.transform is not None:
        fields = [self.transform.eval(k) for k in range(len(images))]
        for key in (fields[0] if fields else {}):
          self._eval_cache[key] = np.stack([f[key] for f in fields])
    return self._eval_cache

  @property
  def num_eval(self) -> int:
    return len(self.eval_set()["image"])

  def eval_batches(self, batch_size: int, process_index: int = 0,
                   process_count: int = 1, *,
                   batch_field: str = "train.eval_batch_size") -> list[dict]:
    """Host-local batches covering the FIXED eval set, in order.

    ``batch_size`` is the global eval batch size. The last global batch is
    padded with copies of eval example 0 marked ``valid = 0`` (finite values,
    so masked metrics stay finite before weighting). Identical on every call
    and for every ``config.seed``; inpainting masks come from
    ``masks.eval_seed``.
    """
    local = _check_hosts(batch_size, process_index, process_count, batch_field)
    ev = self.eval_set()
    n = len(ev["image"])
    out = []
    for start in range(0, n, batch_size):
      rows = np.arange(start + process_index * local,
                       start + (process_index + 1) * local)
      valid = rows < n
      src = np.where(valid, rows, 0)
      batch = {
          "image": ev["image"][src].astype(np.float32) / np.float32(255.0),
          "label": ev["label"][src],
          "valid": valid.astype(np.float32),
          "example_id": rows.astype(np.int32),
      }
      for key in sorted(ev.keys() - {"image", "label"}):
        batch[key] = ev[key][src].astype(np.float32)
      out.append(batch)
    return out
