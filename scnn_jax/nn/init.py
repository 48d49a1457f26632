"""Weight initialisers drawn with numpy, so building a model compiles nothing."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def lecun_normal_np(key, shape, dtype=jnp.float32):
  """N(0, 1/fan_in) weights drawn with numpy from a JAX key.

  Flax's default ``lecun_normal`` is a truncated normal whose eager
  evaluation compiles one XLA program per weight shape (seconds each on a
  small CPU); drawing in numpy builds a model without compiling anything.
  Inside a trace (no concrete key) it falls back to ``jax.random.normal``.
  """
  fan_in = math.prod(shape[:-1])
  try:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)
    seed = np.asarray(key).ravel()
  except jax.errors.TracerArrayConversionError:
    return jax.random.normal(key, shape, dtype) / math.sqrt(fan_in)
  rng = np.random.default_rng(seed.astype(np.uint64))
  return jnp.asarray(rng.standard_normal(shape) / math.sqrt(fan_in), dtype)


def dense(din, dout, rngs):
  """``nnx.Linear`` initialised with ``lecun_normal_np``."""
  return nnx.Linear(din, dout, kernel_init=lecun_normal_np, rngs=rngs)
