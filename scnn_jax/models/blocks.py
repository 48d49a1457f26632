"""Blocks the paper-B models share (VAE, FAD autoencoder): a spiking block
(op -> tdBN -> neurons), a spiking MLP that also runs step by step, and the
image size their stride-2 stacks need.

Spiking sequences are TIME-MAJOR: ``[T, B, ...]``.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn

# FSVAE's LIF threshold (its snn_layers.py: Vth = 0.2); tdBN scales by
# alpha * V_th.
FSVAE_VTH = 0.2


def check_image_size(h, w, hidden) -> None:
  """Stride-2 layers halve the image down to 2x2: only one size fits."""
  size = 2 * 2 ** len(hidden)
  if (h, w) != (size, size):
    raise ValueError(f"image size {h}x{w} does not fit {len(hidden)} "
                     f"stride-2 layers down to 2x2: it must be {size}x{size}")


class SpikingBlock(nnx.Module):
  """``op`` (conv / linear over [T*B]) -> tdBN -> spiking neurons.

  Input and output are TIME-MAJOR ``[T, B, ...]``.
  """

  def __init__(self, op: nnx.Module, features: int, *, neuron="lif",
               neuron_kwargs=None, alpha=1.0, vth=FSVAE_VTH):
    self.op = op
    self.bn = nn.BatchNorm(features, gain=alpha * vth)
    self.neuron = nn.make_neuron(neuron, **(neuron_kwargs or {}))

  def currents(self, x):
    return self.bn(self.op(x))

  def __call__(self, x):
    return self.neuron(self.currents(x))


class SpikingMLP(nnx.Module):
  """Linear -> tdBN -> LIF layers, used whole (``[T, B, F]``) or step by step.

  ``step`` advances all layers by one time step and supports two statistics
  modes for the BN: ``"running"`` (eval mode) and ``"causal"`` (training
  mode without looking ahead: the statistics of steps 0..t of the batch,
  accumulated in the carry; FSVAE recomputes the whole prefix with its
  statistics at every step, which this approximates in O(T)).
  """

  def __init__(self, widths: Sequence[int], *, neuron="lif", neuron_kwargs=None,
               alpha=2.0, vth=FSVAE_VTH, rngs: nnx.Rngs):
    blocks = []
    for din, dout in zip(widths[:-1], widths[1:]):
      blocks.append(SpikingBlock(nn.dense(din, dout, rngs), dout,
                                 neuron=neuron, neuron_kwargs=neuron_kwargs,
                                 alpha=alpha, vth=vth))
    self.blocks = nnx.List(blocks)

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return x

  def init_carry(self, like):
    """Per-layer ``(neuron state, BN sums)`` for a step input like ``[B, F]``."""
    carry = []
    for block in self.blocks:
      f = block.op.out_features
      z = jnp.zeros_like(like[:, :1], jnp.float32) + jnp.zeros((f,),
                                                               jnp.float32)
      sums = (jnp.zeros((f,), jnp.float32), jnp.zeros((f,), jnp.float32),
              jnp.zeros((), jnp.float32))
      carry.append((block.neuron.init_state(z.shape) + z, sums))
    return carry

  def step(self, carry, x_t, mode: str):
    new = []
    h = x_t
    for block, (state, (s, ss, n)) in zip(self.blocks, carry):
      y = block.op(h)
      bn = block.bn
      if mode == "running":
        mean, var = bn.mean[...], bn.var[...]
      else:
        ds, dss, dn = bn.sums(y)
        s, ss, n = s + ds, ss + dss, n + dn
        mean = s / n
        var = jnp.maximum(ss / n - mean * mean, 0.0)
      state, h = block.neuron.step(state, bn.normalize(y, mean, var))
      new.append((state, (s, ss, n)))
    return new, h
