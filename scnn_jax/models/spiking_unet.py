"""PriorSpikingUNet: a spiking U-Net that corrects a biharmonic fill.

    x = [masked image, mask]                     [B, H, W, C + 1]
      -> prior = smooth_fill(masked, mask)       [B, H, W, C]   (JAX, no params)
      -> stem: 2 x (3x3 Conv2d + ReLU) on [prior, mask]   full resolution
      -> spiking encoder, TIME-MAJOR [T, B, h, w, c]:
           ``depth`` SpikingConv2d, 3x3 stride 2 (H/2, H/4, ... H/2^depth)
           then ``bottleneck`` SpikingConv2d 3x3 at H/2^depth;
           LIF neurons (tau comparable to T, reset by subtraction).
           The first spiking layer gets the stem's features at every step
           (direct encoding, its conv runs once); every later one is driven
           by the SPIKE TRAIN of the layer before it, so its input current
           changes from step to step and its membrane integrates it with a
           leak of ``exp(-1/tau)`` per step.
      -> decoder (ordinary convs): at each scale, from coarse to fine,
           nearest-upsample + 3x3 Conv2d + ReLU, concatenated with the
           RATE (mean over T) of that scale's spike train (a skip), then
           3x3 Conv2d + ReLU; at full resolution the stem's features
      -> last 3x3 Conv2d (zero-initialised): a correction
      -> output = clip(prior + correction, 0, 1)

The prior (``scnn_jax.ops.smooth_fill``: biharmonic, coarse-to-fine conjugate
gradients, a fixed number of steps so it jits once per shape) supplies the
smooth long-range interpolation that a small net cannot learn from a few
photos; the net learns what the prior misses (edges, texture, shading
across the hole) from a receptive field of ``receptive_field`` px (the
strided spiking layers make it grow fast). The zero-initialised last conv
makes the untrained model exactly the prior, so training starts from the
classical answer and can only move away from it where the data say so.

The prior depends on every pixel of the image (it solves a PDE over the
whole hole): the model has a GLOBAL receptive field and
``scnn_jax.inpaint`` runs it untiled. Any image size works: the input is
mirror-padded to a multiple of ``2^depth`` and the output cropped back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.models import scnn
from scnn_jax.ops import smooth_fill


def widths(width: int, depth: int) -> list[int]:
  """Channels at full resolution and at each of the ``depth`` scales."""
  return [width * min(2 ** i, 4) for i in range(depth + 1)]


class PriorSpikingUNet(nnx.Module):
  """See the module docstring. ``in_channels`` = image channels + 1 (mask).

  Args:
    in_channels, out_channels: ``C + 1`` in (the mask channel is required),
      ``C`` out.
    width: channels at full resolution (doubling per scale, at most 4x).
    depth: stride-2 spiking layers (the net works at ``H / 2^depth``).
    bottleneck_layers: extra stride-1 spiking layers at the coarsest scale.
    T: time steps of the spiking encoder.
    neuron, neuron_kwargs: ``nn.make_neuron`` (each layer its own).
    prior_order, prior_iters: ``smooth_fill`` order and CG steps per level.
    conv_impl, dtype: as the other models.
  """

  # What the inpainter reads (``scnn_jax/models/__init__.py``).
  global_receptive_field = smooth_fill.WHY_GLOBAL

  def __init__(self, in_channels, out_channels, *, width=16, depth=3,
               bottleneck_layers=1, T=8, neuron="lif", neuron_kwargs=None,
               prior_order=2, prior_iters=24, conv_impl="auto", dtype=None,
               rngs: nnx.Rngs):
    if in_channels != out_channels + 1:
      raise ValueError("PriorSpikingUNet needs the mask as an input channel "
                       f"(in_channels = out_channels + 1), got {in_channels} "
                       f"and {out_channels}")
    ws = widths(width, depth)
    conv = lambda cin, cout, **kw: nn.Conv2d(  # noqa: E731
        cin, cout, 3, impl=conv_impl, dtype=dtype, rngs=rngs, **kw)
    spiking = lambda cin, cout, **kw: nn.SpikingConv2d(  # noqa: E731
        cin, cout, 3, neuron=neuron, neuron_kwargs=neuron_kwargs,
        conv_impl=conv_impl, dtype=dtype, rngs=rngs, **kw)
    self.stem = nnx.List([conv(in_channels, ws[0]), conv(ws[0], ws[0])])
    self.down = nnx.List([spiking(ws[i], ws[i + 1], strides=2)
                          for i in range(depth)])
    self.bottleneck = nnx.List([spiking(ws[-1], ws[-1])
                                for _ in range(bottleneck_layers)])
    # Decoder level i (from coarse to fine) goes from scale i+1 to scale i.
    self.up = nnx.List([conv(ws[i + 1], ws[i], upsample=2)
                        for i in reversed(range(depth))])
    self.merge = nnx.List([conv(2 * ws[i], ws[i])
                           for i in reversed(range(depth))])
    self.last = nn.Conv2d(ws[0], out_channels, 3, impl=conv_impl,
                          dtype=dtype, kernel_init=nnx.initializers.zeros,
                          rngs=rngs)
    self.T = T
    self.width = width
    self.depth = depth
    self.out_channels = out_channels
    self.prior_order = prior_order
    self.prior_iters = prior_iters

  @property
  def pad_multiple(self) -> int:
    """The net pads its input to a multiple of this (callers need not)."""
    return 2 ** self.depth

  @property
  def receptive_field(self) -> int:
    """Side in px of the net's own receptive field (the prior is global)."""
    rf, jump = 1, 1
    for _ in range(2):            # stem
      rf += 2 * jump
    for _ in range(self.depth):   # stride-2 spiking convs
      rf += 2 * jump
      jump *= 2
    rf += 2 * jump * len(self.bottleneck)
    return rf

  @property
  def receptive_radius(self) -> int:
    """Px of context on each side that the NET (not the prior: global)
    needs: its encoder's half side plus ``4 * 2^depth`` for the decoder's
    upsampling convs and the stride grid. The least context of a window
    around a hole when the image is over the memory budget."""
    return self.receptive_field // 2 + 4 * 2 ** self.depth

  @property
  def bytes_per_pixel(self) -> int:
    """The stride-1 nets' estimate (``scnn.bytes_per_pixel``): measured 511
    B/px for the shipped model (width 16, T 4; estimate 1024)."""
    return scnn.bytes_per_pixel(self.width, self.T)

  def prior(self, x):
    """The biharmonic fill of the masked image ``x [B, H, W, C + 1]``."""
    c = self.out_channels
    return smooth_fill.smooth_fill(x[..., :c], x[..., c:c + 1],
                                   order=self.prior_order,
                                   iters=self.prior_iters)

  def encode(self, h):
    """Spike trains ``[T, B, h_i, w_i, c_i]`` of every encoder scale."""
    trains = []
    s = self.down[0](h, T=self.T)      # static input: conv once
    trains.append(s)
    for layer in list(self.down)[1:]:
      s = layer(s)                     # driven by the previous spike train
      trains.append(s)
    for layer in self.bottleneck:
      s = layer(s)
    trains[-1] = s
    return trains

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    del rngs, example_ids  # no training noise in this model
    H, W = x.shape[1:3]
    prior = self.prior(x)
    mask = x[..., self.out_channels:self.out_channels + 1]
    m = self.pad_multiple
    pad = ((0, 0), (0, -H % m), (0, -W % m), (0, 0))
    h = jnp.pad(jnp.concatenate([prior, mask], -1), pad, mode="symmetric")
    for conv in self.stem:
      h = jax.nn.relu(conv(h))
    skips = [h]
    trains = self.encode(h)
    skips += [jnp.mean(s, axis=0) for s in trains[:-1]]   # rate decoding
    h = jnp.mean(trains[-1], axis=0)
    for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
      h = jax.nn.relu(up(h))
      h = jax.nn.relu(merge(jnp.concatenate([h, skip.astype(h.dtype)], -1)))
    correction = self.last(h).astype(jnp.float32)[:, :H, :W]
    return jnp.clip(prior + correction, 0.0, 1.0)
