"""Decoders: a sequence ``[T, B, ..., C]`` (TIME FIRST) -> one map ``[B, ..., C]``.

The input may be spikes or real values (the output of a last conv applied at
every step). All decoders end with an ``activation`` (``ACTIVATIONS``).

* ``RateDecoder``: mean over T.
* ``FixedDecayDecoder``: ``sum_t decay^(T-1-t) x_t`` (FSVAE, decay 0.8): late
  steps weigh most.
* ``TAID`` (paper B): learned temporal attention. With ``xbar[t, b, c]`` the
  spatial mean of ``x[t, b, ..., c]`` and ``W`` a learnable ``T x T`` matrix (no
  bias), ``a[:, b, c] = sigmoid(W @ xbar[:, b, c])`` and the output is
  ``activation(sum_t a[t, b, c] x[t, b, ..., c])``; paper B uses tanh.
* ``MembraneReadout``: a non-spiking leaky integrator
  ``v_t = beta v_{t-1} + x_t``; outputs ``v_T`` ("last") or the mean of v.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax.ops import neurons
from scnn_jax.nn.variables import NeuronParam

DECODERS = ("rate", "fixed_decay", "taid", "membrane")
ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
}


def _activation(name):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; allowed: "
                     f"{', '.join(ACTIVATIONS)}")
  return name


def rate(x):
  """Mean over the time axis 0."""
  return jnp.mean(x, axis=0)


def decay_weights(T: int, decay, dtype=jnp.float32):
  """``[decay^(T-1), ..., decay, 1]``: FSVAE's weights for steps 0..T-1."""
  return jnp.asarray(decay, dtype) ** jnp.arange(T - 1, -1, -1, dtype=dtype)


def fixed_decay(x, decay=0.8):
  """``sum_t decay^(T-1-t) x_t`` over the time axis 0."""
  w = decay_weights(x.shape[0], decay, x.dtype)
  return jnp.tensordot(w, x, axes=(0, 0))


def taid(x, W):
  """Paper B's temporal attention decoding, before the output activation.

  ``x``: ``[T, B, *spatial, C]``; ``W``: ``[T, T]``. Returns ``[B, *spatial, C]``.
  """
  T = x.shape[0]
  if W.shape != (T, T):
    raise ValueError(f"TAID matrix has shape {W.shape}, the sequence has T={T}")
  spatial = tuple(range(2, x.ndim - 1))
  xbar = jnp.mean(x, axis=spatial) if spatial else x  # [T, B, C]
  a = jax.nn.sigmoid(jnp.einsum("ts,sbc->tbc", W.astype(x.dtype), xbar))
  a = a.reshape(a.shape[:2] + (1,) * len(spatial) + a.shape[2:])
  return jnp.sum(a * x, axis=0)


class RateDecoder(nnx.Module):
  def __init__(self, activation="identity"):
    self.activation = _activation(activation)

  def __call__(self, x):
    return ACTIVATIONS[self.activation](rate(x))


class FixedDecayDecoder(nnx.Module):
  def __init__(self, decay=0.8, activation="identity"):
    self.decay = decay
    self.activation = _activation(activation)

  def __call__(self, x):
    return ACTIVATIONS[self.activation](fixed_decay(x, self.decay))


class TAID(nnx.Module):
  """Temporal-attention image decoding (paper B) for sequences of length T.

  ``W`` is initialised like PyTorch's ``nn.Linear(T, T, bias=False)`` (paper
  B's code): uniform in ``+-1/sqrt(T)``.
  """

  # The weights of the time steps come from spatial means (``taid``): every
  # output pixel depends on every pixel of the image. Models that decode
  # with TAID say so (``scnn_jax/models/__init__.py``).
  global_receptive_field = "its TAID decoder pools the whole image"

  def __init__(self, T: int, *, activation="tanh", rngs: nnx.Rngs):
    bound = 1.0 / math.sqrt(T)
    self.W = nnx.Param(jax.random.uniform(rngs.params(), (T, T), jnp.float32,
                                          -bound, bound))
    self.activation = _activation(activation)

  def __call__(self, x):
    return ACTIVATIONS[self.activation](taid(x, self.W[...]))


class MembraneReadout(nnx.Module):
  """Non-spiking leaky integrator readout (``beta`` is a sweepable variable)."""

  def __init__(self, beta=0.9, *, reduce="last", activation="identity"):
    if reduce not in ("last", "mean"):
      raise ValueError(f"unknown reduce {reduce!r}; allowed: last, mean")
    self.beta = NeuronParam(jnp.asarray(beta, jnp.float32))
    self.reduce = reduce
    self.activation = _activation(activation)

  def __call__(self, x):
    beta = self.beta[...]

    def body(v, x_t):
      v = beta * v + x_t.astype(v.dtype)
      return v, v

    # zeros_like: inside shard_map the carry must vary like the data.
    v0 = jnp.zeros_like(x[0], neurons.state_dtype(x.dtype))
    v_last, vs = jax.lax.scan(body, v0, x)
    out = v_last if self.reduce == "last" else jnp.mean(vs, axis=0)
    return ACTIVATIONS[self.activation](out.astype(x.dtype))


def make_decoder(kind: str, T: int, *, activation="identity", decay=0.8,
                 beta=0.9, rngs: nnx.Rngs | None = None):
  """A decoder by name (``DECODERS``)."""
  if kind == "rate":
    return RateDecoder(activation)
  if kind == "fixed_decay":
    return FixedDecayDecoder(decay, activation)
  if kind == "taid":
    if rngs is None:
      raise ValueError("the TAID decoder has parameters: pass rngs=")
    return TAID(T, activation=activation, rngs=rngs)
  if kind == "membrane":
    return MembraneReadout(beta, activation=activation)
  raise ValueError(f"unknown decoder {kind!r}; allowed: {', '.join(DECODERS)}")
