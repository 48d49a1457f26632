"""PriorResUNet: a residual U-Net that corrects a biharmonic fill, spiking or not.

One class, two models (``models.registry``):

* ``spiking_resunet``: every encoder conv after the stem is driven by SPIKE
  TRAINS; the real-valued residual stream between them carries what the
  spikes add up to (a membrane-shortcut residual net, as in MS-ResNet,
  Hu et al. 2021);
* ``relu_resunet``: its non-spiking twin, the same net with ReLU where the
  neurons are and no time axis. It is the control of every comparison: the
  spiking net is worth its spikes when it matches the twin.

Data flow (``B`` images, ``T`` time steps, TIME-MAJOR inside the encoder):

    x = [masked image, mask]                       [B, H, W, C + 1]
      -> prior = smooth_fill(masked, mask)          [B, H, W, C] (JAX, no params)
      -> depth = distance into the hole             [B, H, W, 1]
      -> stem: 3x3 Conv2d on [prior, mask, depth]   real-valued, full resolution
      -> encoder, stream z [T, B, h, w, c] (T = 1 for the twin), per scale:
           ``blocks`` residual blocks  z <- z + Conv(act(Norm(z)))
           then (but at the coarsest scale) a stride-2 block
                                       z <- Conv_s2(act(Norm(z)))
           act = LIF / ALIF neurons over T (spiking) or ReLU (twin);
           Norm = LayerNorm over channels at each pixel and step: the
           neurons get currents of unit scale whatever the layer, and the
           norm reads one pixel only, so it adds no spatial dependence.
      -> decoder (ordinary convs, real-valued): from coarse to fine,
           nearest-upsample + 3x3 Conv2d + ReLU, concatenated with the
           scale's stream averaged over T (a U-Net skip), 3x3 Conv2d + ReLU
      -> last 3x3 Conv2d (zero-initialised): a correction
      -> output = clip(prior + correction, 0, 1)

Why it is built this way (measured against ``spiking_unet``, whose net stayed
at its initialisation): the stream gives the spikes a path to the output that
does not squeeze every scale through a T + 1-level rate code, the norm keeps
every layer's currents in the neurons' working range, the convs are He-
initialised for the ReLU-like activations, and the depth map tells the net
how far each hole pixel is from known context (the prior's error grows with
it). The last conv starts at zero, so the untrained model is exactly the
prior.

The prior solves a PDE over the whole hole: the model has a GLOBAL receptive
field and is never tiled. Any image size works: the input is mirror-padded
to a multiple of ``2^depth`` and the output cropped back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import layers, smooth_fill

ACTIVATIONS = ("spiking", "relu")
DEPTH_CAP = 32          # px: the depth map saturates this far into a hole


def widths(width: int, depth: int, max_mult: int = 4) -> list[int]:
  """Channels at full resolution and at each of the ``depth`` coarser scales."""
  return [width * min(2 ** i, max_mult) for i in range(depth + 1)]


def hole_depth(mask, cap: int = DEPTH_CAP):
  """How deep each pixel lies inside the hole, on ``[0, 1]``.

  ``mask [B, H, W, 1]`` (1 = hole). ``d`` = the chessboard distance to the
  nearest known pixel (1 on the hole's rim), capped at ``cap``; returned as
  ``log(1 + d) / log(1 + cap)`` so the first few pixels, where the prior is
  still good, are resolved. Computed by repeated 3x3 erosions (a fixed
  ``cap`` passes, so it jits once per shape). Known pixels are 0.
  """
  hole = mask.astype(jnp.float32)

  def erode(h, _):
    h = -jax.lax.reduce_window(-h, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                               (1, 1, 1, 1), "SAME")
    return h, h

  # Erosion at the image border treats outside pixels as hole (the window
  # ignores them), so a hole touching the border keeps growing into it, as
  # distance to known pixels should.
  _, eroded = jax.lax.scan(erode, hole, None, length=cap - 1)
  d = hole + jnp.sum(eroded, axis=0)
  return jnp.log1p(d) / jnp.log1p(float(cap))


class _Act(nnx.Module):
  """Norm then activation: ReLU, or spiking neurons over T steps.

  Input ``[T', B, H, W, C]``, TIME-MAJOR, with ``T'`` = ``T`` or 1 (a static
  stream, repeated over the T steps by the spiking kind). Output: spikes
  ``[T, B, H, W, C]`` (spiking) or the ReLU, of the input's shape.
  """

  def __init__(self, features, activation, neuron, neuron_kwargs, *, rngs):
    self.norm = nnx.LayerNorm(features, rngs=rngs)
    self.spiking = activation == "spiking"
    self.neuron = (layers.make_neuron(neuron, shape=(features,),
                                      **(neuron_kwargs or {}))
                   if self.spiking else None)

  def __call__(self, z, T: int):
    current = self.norm(z)
    if not self.spiking:
      return jax.nn.relu(current)
    if current.shape[0] != T:           # static: the same current each step
      current = jnp.broadcast_to(current, (T,) + current.shape[1:])
    return self.neuron(current)


class PriorResUNet(nnx.Module):
  """See the module docstring. ``in_channels`` = image channels + 1 (mask).

  Args:
    in_channels, out_channels: ``C + 1`` in (the mask channel is required),
      ``C`` out.
    activation: "spiking" (neurons over ``T`` steps) or "relu" (the twin).
    width: channels at full resolution (doubling per scale, at most
      ``max_mult`` times).
    depth: stride-2 blocks (the net works down to ``H / 2^depth``).
    blocks: residual blocks per scale.
    T: time steps of the spiking encoder (ignored by the twin).
    neuron, neuron_kwargs: ``layers.make_neuron`` (one value per channel).
    prior_order, prior_iters: ``smooth_fill`` order and CG steps per level.
    conv_impl, dtype: as the other models.
  """

  global_receptive_field = True

  def __init__(self, in_channels, out_channels, *, activation="spiking",
               width=16, depth=4, blocks=1, max_mult=4, T=4, neuron="alif",
               neuron_kwargs=None, prior_order=2, prior_iters=24,
               conv_impl="auto", dtype=None, rngs: nnx.Rngs):
    if in_channels != out_channels + 1:
      raise ValueError("PriorResUNet needs the mask as an input channel "
                       f"(in_channels = out_channels + 1), got {in_channels} "
                       f"and {out_channels}")
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown activation {activation!r}; allowed: "
                       f"{', '.join(ACTIVATIONS)}")
    ws = widths(width, depth, max_mult)
    he = nnx.initializers.he_normal()

    def conv(cin, cout, **kw):
      kw.setdefault("kernel_init", he)
      return layers.Conv2d(cin, cout, 3, impl=conv_impl, dtype=dtype,
                           rngs=rngs, **kw)

    def act(c):
      return _Act(c, activation, neuron, neuron_kwargs, rngs=rngs)

    self.stem = conv(out_channels + 2, ws[0])     # prior, mask, depth
    self.block_acts = nnx.List([nnx.List([act(ws[i]) for _ in range(blocks)])
                                for i in range(depth + 1)])
    self.block_convs = nnx.List([nnx.List([conv(ws[i], ws[i])
                                           for _ in range(blocks)])
                                 for i in range(depth + 1)])
    self.down_acts = nnx.List([act(ws[i]) for i in range(depth)])
    self.down_convs = nnx.List([conv(ws[i], ws[i + 1], strides=2)
                                for i in range(depth)])
    # Decoder level i (from coarse to fine) goes from scale i+1 to scale i.
    self.up = nnx.List([conv(ws[i + 1], ws[i], upsample=2)
                        for i in reversed(range(depth))])
    self.merge = nnx.List([conv(2 * ws[i], ws[i])
                           for i in reversed(range(depth))])
    self.last = conv(ws[0], out_channels, kernel_init=nnx.initializers.zeros)
    self.activation = activation
    self.T = T if activation == "spiking" else 1
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
    rf, jump = 3, 1                      # stem
    for i in range(self.depth + 1):
      rf += 2 * jump * len(self.block_convs[i])
      if i < self.depth:
        rf += 2 * jump
        jump *= 2
    return rf

  def prior(self, x):
    """The biharmonic fill of the masked image ``x [B, H, W, C + 1]``."""
    c = self.out_channels
    return smooth_fill.smooth_fill(x[..., :c], x[..., c:c + 1],
                                   order=self.prior_order,
                                   iters=self.prior_iters)

  def encode(self, h):
    """The stream at every scale, ``[T, B, h_i, w_i, c_i]`` (T = 1: twin)."""
    z = h[None]                          # static: one step, broadcast by act
    streams = []
    for i in range(self.depth + 1):
      for a, c in zip(self.block_acts[i], self.block_convs[i]):
        z = z + c(a(z, self.T))
      streams.append(z)
      if i < self.depth:
        a = self.down_acts[i]
        z = self.down_convs[i](a(z, self.T))
    return streams

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    del rngs, example_ids  # no training noise in this model
    H, W = x.shape[1:3]
    c = self.out_channels
    prior = self.prior(x)
    mask = x[..., c:c + 1]
    m = self.pad_multiple
    pad = ((0, 0), (0, -H % m), (0, -W % m), (0, 0))
    feats = jnp.concatenate([prior, mask, hole_depth(mask)], -1)
    h = self.stem(jnp.pad(feats, pad, mode="symmetric"))
    streams = self.encode(h)
    skips = [jnp.mean(s, axis=0) for s in streams]
    h = skips[-1]
    for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
      h = jax.nn.relu(up(h))
      h = jax.nn.relu(merge(jnp.concatenate([h, skip.astype(h.dtype)], -1)))
    correction = self.last(h).astype(jnp.float32)[:, :H, :W]
    return jnp.clip(prior + correction, 0.0, 1.0)
