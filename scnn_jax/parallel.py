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
the step is the same program everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


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
