"""Data parallelism: the classic pmap step, written with ``jax.shard_map``.

The mental model is ``jax.pmap``: one copy of the step per device, each on its
slice of the batch, gradients combined with a collective over a named axis.
Since JAX 0.8 ``pmap`` is in maintenance mode; the same per-device program is
``jax.shard_map`` over a 1-D mesh axis ``"data"`` of all devices of all hosts,
inside ``jax.jit``:

=============================  ==========================================
pmap                           here
=============================  ==========================================
``jax.pmap(step, "batch")``    ``jax.jit(jax.shard_map(step, mesh=mesh,
                               in_specs=(P(), P("data"), P()), ...))``
replicate state per device     state sharded ``P()`` (one logical copy)
``x.reshape(n_dev, -1, ...)``  batch sharded ``P("data")`` on axis 0
``lax.pmean(g, "batch")``      nothing: each device's loss is its share of
                               the global mean (exact for uneven hole
                               counts), and autodiff sums the gradient of
                               the replicated params over devices itself
``lax.axis_index("batch")``    ``lax.axis_index("data")``
=============================  ==========================================

Multi-host: every process builds the same mesh over ``jax.devices()`` (all
hosts), feeds only its rows (``jax.make_array_from_process_local_data``), and
the step is the same program everywhere. A loop of your own should keep few
steps in flight (the trainer waits for step s - 2 after dispatching step s):
on XLA CPU with several processes, 32 queued steps per device deadlock
(docs/studies/reliability_drills.md, "Multi-process hangs").
"""

from __future__ import annotations

import queue
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scnn_jax.ops.collectives import AXIS  # noqa: F401  (the mesh axis name)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D mesh named ``"data"`` over all devices of all processes."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharded(mesh):
  return NamedSharding(mesh, P(AXIS))


def replicate(mesh, tree):
  """Place a pytree identically on every device (state, keys).

  Every process must pass the same values. With several processes the
  devices of other hosts are not addressable, so each global array is built
  from this host's copy (``make_array_from_process_local_data``).
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree.map(put, tree)


def global_batch(mesh, local_batch: dict) -> dict:
  """Host-local numpy rows -> global arrays sharded over ``"data"``.

  Each process passes only its own rows; the global batch is their
  concatenation in process order.
  """
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


class DevicePrefetch:
  """Iterator of ``global_batch(mesh, b)`` for the host batches ``b`` of
  ``batches``, prepared ``size`` steps ahead by a background thread.

  The host-to-device copy then overlaps the running step instead of sitting
  between two steps; ``next`` only waits when the input is really late (what
  the trainer reports as ``input_wait_fraction``). Building global arrays
  here while the main thread runs collective steps is safe: it launches no
  computation (ruled out as the cause of the multi-process hang; the cause
  was unbounded run-ahead, which the trainer bounds). Errors of the source
  are raised from ``next``. ``close()`` stops the thread (it is a daemon, so
  an unclosed one never keeps the process alive) and then closes
  ``batches`` if it can be closed (grain's worker processes).
  """

  _END = object()

  def __init__(self, mesh, batches, size: int = 2):
    self._queue = queue.Queue(maxsize=max(int(size), 1))
    self._stop = threading.Event()
    self._batches = batches
    self._thread = threading.Thread(target=self._work, args=(mesh, batches),
                                    daemon=True, name="device-prefetch")
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _work(self, mesh, batches):
    try:
      for b in batches:
        if not self._put(global_batch(mesh, b)):
          return
    except BaseException as e:  # noqa: BLE001 -- handed to the consumer
      self._put(e)
      return
    self._put(self._END)

  def __iter__(self):
    return self

  def __next__(self):
    item = self._queue.get()
    if item is self._END:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=5)
    close = getattr(self._batches, "close", None)
    if close is not None and not self._thread.is_alive():
      close()


def example_ids(local_batch_size: int):
  """Inside the step: this device's rows' positions in the global batch."""
  offset = jax.lax.axis_index(AXIS) * local_batch_size
  return offset + jnp.arange(local_batch_size)


def per_device(fn, mesh, in_specs, out_specs):
  """``jax.shard_map`` of a per-device function over the data axis."""
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def to_host(x) -> np.ndarray:
  """A (possibly multi-host sharded) array gathered in full on this host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))
