"""The data-parallel mesh axis and collectives that also work outside it.

``AXIS`` is THE name of the 1-D device mesh axis (``"data"``): the trainer's
``shard_map`` (``scnn_jax.runtime.parallel``) maps the batch over it, and
modules that need global-batch statistics (``nn.BatchNorm``, the VAE's ESVAE
MMD) reduce over it. Inside ``shard_map`` these helpers are the collectives;
outside (a model called eagerly or under a plain ``jit``) they are the identity,
so a model works the same in both places.
"""

from __future__ import annotations

from jax import lax

AXIS = "data"


def axis_bound(name: str = AXIS) -> bool:
  """True inside ``shard_map`` (or ``pmap``) over the mesh axis ``name``."""
  try:
    lax.axis_index(name)
    return True
  except NameError:
    return False


def psum_if_bound(x, axis_name: str | None = AXIS):
  """``lax.psum(x, axis_name)`` inside the mapped axis, else ``x``."""
  return lax.psum(x, axis_name) if axis_name and axis_bound(axis_name) else x


def all_gather_if_bound(x, axis_name: str = AXIS):
  """The rows of every device (tiled on axis 0) inside the axis, else ``x``."""
  return lax.all_gather(x, axis_name, tiled=True) if axis_bound(axis_name) \
      else x
