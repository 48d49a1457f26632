"""Encoders: a static input ``[B, ...]`` -> a sequence ``[T, B, ...]`` (TIME FIRST)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

ENCODERS = ("direct", "rate")

# A rate encoder draws spikes at evaluation and inference too; there it
# draws from this fixed seed (``eval_rngs``), so every evaluation of every
# model sees the same input spikes and outputs are reproducible.
EVAL_SEED = 0


def eval_rngs() -> nnx.Rngs:
  """The ``rngs`` to pass a model outside training (build it inside the
  traced function that uses it: ``nnx.Rngs`` counts its draws)."""
  return nnx.Rngs(encoder=EVAL_SEED)


def direct(x, T: int):
  """The same input at each of T steps ("direct" / static encoding)."""
  _check_T(T)
  return jnp.broadcast_to(x[None], (T,) + x.shape)


def bernoulli_rate(x, T: int, key, straight_through: bool = True):
  """Bernoulli spikes with firing probability ``clip(x, 0, 1)`` at each step.

  With ``straight_through`` the backward pass treats the spikes as their
  expectation ``p`` (an unbiased estimator of d E[s] / d p = 1).
  """
  _check_T(T)
  p = jnp.clip(x, 0.0, 1.0)
  s = (jax.random.uniform(key, (T,) + x.shape, x.dtype) < p).astype(x.dtype)
  return p + jax.lax.stop_gradient(s - p) if straight_through else s


def _check_T(T):
  if not isinstance(T, int) or T < 1:
    raise ValueError(f"T (number of time steps) must be an int >= 1, got {T!r}")


class DirectEncoder(nnx.Module):
  """``x [B, ...] -> [T, B, ...]`` repeating x at each step."""

  def __init__(self, T: int):
    _check_T(T)
    self.T = T

  def __call__(self, x, *, rngs=None):
    del rngs
    return direct(x, self.T)


class RateEncoder(nnx.Module):
  """``x [B, ...] -> [T, B, ...]`` Bernoulli spikes of rate ``clip(x, 0, 1)``.

  Needs ``rngs=nnx.Rngs(encoder=key)`` (or any Rngs with a default stream) at
  call time.
  """

  def __init__(self, T: int, straight_through: bool = True):
    _check_T(T)
    self.T = T
    self.straight_through = straight_through

  def __call__(self, x, *, rngs: nnx.Rngs | None = None):
    if rngs is None:
      raise ValueError("RateEncoder draws random spikes: call it with "
                       "rngs=nnx.Rngs(encoder=key)")
    return bernoulli_rate(x, self.T, rngs.encoder(), self.straight_through)


def make_encoder(kind: str, T: int):
  """``DirectEncoder(T)`` or ``RateEncoder(T)`` by name."""
  if kind == "direct":
    return DirectEncoder(T)
  if kind == "rate":
    return RateEncoder(T)
  raise ValueError(f"unknown encoder {kind!r}; allowed: {', '.join(ENCODERS)}")
