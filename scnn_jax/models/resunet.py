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
      -> prior = smooth_fill(masked, order 2)       [B, H, W, C] biharmonic
         harmonic = smooth_fill(masked, order 1)    [B, H, W, C] (both JAX, no params)
      -> mean, contrast of the known pixels         [B, 1, 1, 1] each
      -> depth = distance into the hole             [B, H, W, 1]
      -> stem: 3x3 Conv2d on [(prior - mean) / contrast, (harmonic - mean) /
           contrast, mask, depth]                   real-valued, full resolution
      -> encoder, stream z [T, B, h, w, c] (T = 1 for the twin), per scale:
           ``blocks`` residual blocks  z <- z + Conv(act(Norm(z)))
           then (but at the coarsest scale) a stride-2 block
                                       z <- Conv_s2(act(Norm(z)))
           act = LIF / ALIF neurons over T (spiking) or ReLU (twin);
           Norm (``norm``): "layer" = LayerNorm over the channels of each
           pixel and step; "batch" = batch norm of each channel over time,
           batch and space while training (tdBN), a fixed per-channel
           affine map at inference. Either way the neurons get currents
           of unit scale whatever the layer, and at inference the norm
           reads one pixel only, so it adds no spatial dependence. The
           layer norm also removes each pixel's mean and scale over the
           channels, which carry how bright and how contrasted that pixel
           is; the batch norm keeps them.
      -> decoder (ordinary convs, real-valued): from coarse to fine,
           nearest-upsample + 3x3 Conv2d + ReLU, concatenated with the
           scale's stream averaged over T (a U-Net skip), 3x3 Conv2d + ReLU
      -> last 3x3 Conv2d (zero-initialised): C correction channels r and
           the logit of a harmonic share s per pixel
      -> output = prior + s (harmonic - prior) + 0.05 contrast r,
           clipped to [0, 1]

Why it is built this way (measured on the held-out photos; the trained
``spiking_unet`` net, and this one without the items below, stayed at its
initialisation: the per-image loss taught them to correct nothing):

* the stream gives the spikes a path to the output that does not squeeze
  every scale through a T + 1-level rate code; the norm keeps every
  layer's currents in the neurons' working range; He init for the ReLU-like
  activations;
* contrast normalisation: a flat photo looks to the net like any other, and
  its correction is as small as its contrast (``contrast``);
* the harmonic share: the first thing the net can learn, and one the
  per-image loss rewards from the first steps. The biharmonic fill
  overshoots deep in large holes, where the harmonic membrane does better,
  and near the rim it is the other way round; the net learns where;
* the depth map tells the net how far each pixel is from known context.

The readout starts at zero, so the untrained model is exactly the prior.

The prior solves a PDE over the whole hole: the model has a GLOBAL receptive
field and is never tiled. Any image size works: the input is mirror-padded
to a multiple of ``2^depth`` and the output cropped back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.models.specs import LayerSpec, OpCount
from scnn_jax.ops import smooth_fill

ACTIVATIONS = ("spiking", "relu")
NORMS = ("layer", "batch")
DEPTH_CAP = 32          # px: the depth map saturates this far into a hole
CONTRAST_FLOOR = 0.01   # the contrast of a flat image (1/100 of the range)
# The readout starts at zero, so Adam's first steps move all of its weights
# by the learning rate at once, in the sign of their gradient: a jump of
# about lr x fan-in in the correction. Scaled by this gain, that first jump
# stays below the error of the images the prior already fills well, which
# a per-image loss would otherwise punish until the readout retreats to zero.
CORRECTION_GAIN = 0.05
GATE_BIAS = -2.0        # the harmonic share's logit offset: sigmoid' = 0.1 at init


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


def contrast(image, mask, floor: float = CONTRAST_FLOOR):
  """Per-image mean and contrast of the known pixels: ``([B,1,1,1],) * 2``.

  The net sees the prior as ``(prior - mean) / contrast`` and its correction
  is scaled back by ``contrast``: a low-contrast photo then looks to the net
  like any other, and its correction is as small as its contrast. Without
  this a per-image loss (hole PSNR) is ruled by the flat images, where any
  correction of the size a textured image needs costs decibels, and the net
  learns to correct nothing. ``contrast`` is the standard deviation of the
  known pixels over all channels, at least ``floor``.
  """
  known = 1.0 - mask.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(known, axis=(1, 2, 3), keepdims=True)
                  * image.shape[-1], 1.0)
  mu = jnp.sum(known * image, axis=(1, 2, 3), keepdims=True) / n
  var = jnp.sum(known * jnp.square(image - mu), axis=(1, 2, 3),
                keepdims=True) / n
  return mu, jnp.sqrt(var + floor ** 2)


class _Act(nnx.Module):
  """Norm then activation: ReLU, or spiking neurons over T steps.

  Input ``[T', B, H, W, C]``, TIME-MAJOR, with ``T'`` = ``T`` or 1 (a static
  stream, repeated over the T steps by the spiking kind). Output: spikes
  ``[T, B, H, W, C]`` (spiking) or the ReLU, of the input's shape.
  """

  def __init__(self, features, activation, neuron, neuron_kwargs, *, norm,
               rngs):
    self.norm = (nnx.LayerNorm(features, rngs=rngs) if norm == "layer"
                 else nn.BatchNorm(features, running_var="biased"))
    self.spiking = activation == "spiking"
    self.neuron = (nn.make_neuron(neuron, shape=(features,),
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
    neuron, neuron_kwargs: ``nn.make_neuron`` (one value per channel).
    norm: the norm before each activation, "layer" or "batch" (module
      docstring).
    prior_order, prior_iters: ``smooth_fill`` order and CG steps per level.
    conv_impl, dtype: as the other models.
  """

  global_receptive_field = smooth_fill.WHY_GLOBAL

  def __init__(self, in_channels, out_channels, *, activation="spiking",
               width=16, depth=4, blocks=1, max_mult=8, T=4, neuron="alif",
               neuron_kwargs=None, norm="layer", prior_order=2,
               prior_iters=24, conv_impl="auto", dtype=None,
               rngs: nnx.Rngs):
    if in_channels != out_channels + 1:
      raise ValueError("PriorResUNet needs the mask as an input channel "
                       f"(in_channels = out_channels + 1), got {in_channels} "
                       f"and {out_channels}")
    if norm not in NORMS:
      raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown activation {activation!r}; allowed: "
                       f"{', '.join(ACTIVATIONS)}")
    ws = widths(width, depth, max_mult)
    he = nnx.initializers.he_normal()

    def conv(cin, cout, **kw):
      kw.setdefault("kernel_init", he)
      return nn.Conv2d(cin, cout, 3, impl=conv_impl, dtype=dtype,
                       rngs=rngs, **kw)

    def act(c):
      return _Act(c, activation, neuron, neuron_kwargs, norm=norm, rngs=rngs)

    # prior, harmonic fill, mask, depth
    self.stem = conv(2 * out_channels + 2, ws[0])
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
    # C correction channels and the logit of the harmonic share
    self.last = conv(ws[0], out_channels + 1,
                     kernel_init=nnx.initializers.zeros)
    self.activation = activation
    self.norm_kind = norm
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

  @property
  def receptive_radius(self) -> int:
    """Px of context on each side that the NET needs (the prior is global):
    its encoder's half side, ``4 * 2^depth`` for the decoder's upsampling
    convs and the stride grid, and ``DEPTH_CAP`` for the hole-depth map (the
    mask that far away moves the depth the net reads). A bound, not a
    measurement: moving one input pixel (prior and contrast held fixed)
    changes outputs up to 20 px away at depth 2 (bound 27 + 32) and 84 px
    at depth 4 (bound 111 + 32)."""
    return self.receptive_field // 2 + 4 * 2 ** self.depth + DEPTH_CAP

  @property
  def bytes_per_pixel(self) -> int:
    """Estimated peak activation memory per pixel: a stream of T steps at
    every scale, ``4 * width * (6 * T + 10)`` (T = 0 for the ReLU twin);
    measured 1700 B/px for width 16, T 4 (estimate 2176), 2924 for T 8
    (3712), 3294 for width 32, T 4 (4352), 374 and 936 for the twin at
    width 16 and 32 (640, 1280)."""
    t = self.T if self.activation == "spiking" else 0
    return 4 * self.stem.out_features * (6 * t + 10)

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
    harmonic = smooth_fill.smooth_fill(x[..., :c], mask, order=1,
                                       iters=self.prior_iters)
    m = self.pad_multiple
    pad = ((0, 0), (0, -H % m), (0, -W % m), (0, 0))
    mu, scale = contrast(x[..., :c], mask)
    feats = jnp.concatenate([(prior - mu) / scale, (harmonic - mu) / scale,
                             mask, hole_depth(mask)], -1)
    h = self.stem(jnp.pad(feats, pad, mode="symmetric"))
    streams = self.encode(h)
    skips = [jnp.mean(s, axis=0) for s in streams]
    h = skips[-1]
    for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
      h = jax.nn.relu(up(h))
      h = jax.nn.relu(merge(jnp.concatenate([h, skip.astype(h.dtype)], -1)))
    head = self.last(h).astype(jnp.float32)[:, :H, :W]
    correction, logit = head[..., :c], head[..., c:]
    # The share of the harmonic fill: 0 at init (the output is the prior),
    # in (-g0, 1 - g0) after, so the net can move each pixel anywhere
    # between the two fills (biharmonic overshoots deep in a large hole,
    # where the harmonic membrane does better; near the rim it is the other
    # way round).
    share = jax.nn.sigmoid(logit + GATE_BIAS) - jax.nn.sigmoid(GATE_BIAS)
    out = (prior + share * (harmonic - prior)
           + (CORRECTION_GAIN * scale) * correction)
    # Clipped forward, identity backward: a pixel pushed past 0 or 1 still
    # gets the gradient that pulls it back (a hard clip would give it none,
    # and a net whose output saturates stops learning).
    return out + jax.lax.stop_gradient(jnp.clip(out, 0.0, 1.0) - out)

  def layer_specs(self, image_shape):
    """What one ``(H, W, C)`` image costs this net: module ``layer_specs``
    with its settings."""
    acts = [a for row in self.block_acts for a in row] + list(self.down_acts)
    ws = [self.stem.out_features] + [c.out_features for c in self.down_convs]
    return layer_specs(
        image_shape, activation=self.activation, widths=ws,
        blocks=len(self.block_convs[0]), T=self.T,
        adaptive=any(getattr(a.neuron, "adaptive", False) for a in acts),
        norm=self.norm_kind, prior_order=self.prior_order, prior_iters=self.prior_iters)


# Operation counts (``scnn_jax.metrics.energy``). MAC-equivalents per element:
LAYER_NORM_MACS = 4     # mean, variance, normalise, affine
BATCH_NORM_MACS = 1     # inference: one per-channel affine map
NEURON_MACS = 1         # per neuron and step: the membrane update
ADAPTATION_MACS = 1     # per neuron and step: the adaptive threshold's update


def layer_specs(image_shape, *, activation: str = "spiking", widths,
                blocks: int = 1, T: int = 4, adaptive: bool = False,
                norm: str = "layer", prior_order: int = 2,
                prior_iters: int = 24):
  """``(convs, other ops)`` of one ``(H, W, C)`` image through PriorResUNet.

  ``widths``: channels per scale (module ``widths``; ``len - 1`` = depth).
  The convs (``models.specs.LayerSpec``, named by module path) run at the
  size padded to a multiple of ``2^depth``: the stem (real-valued input,
  once), the encoder's block and stride-2 convs (spiking: on the spikes of
  the neuron module ``rate_key`` at each of the T steps; twin: on ReLU
  outputs, dense MACs once), the decoder's up and merge convs and the last
  conv (real-valued, once). A nearest-upsample + 3x3 conv is counted as
  ``conv.upsample_conv2d`` computes it: four 2x2 convs of the coarse input
  (kernel ``(2, 2)`` at the fine size, 2.25x fewer MACs than 3x3).

  Other ops (``models.specs.OpCount``), per image over all T steps:
  ``norm`` (each norm before an activation, ``LAYER_NORM_MACS`` per
  element for the layer norm, ``BATCH_NORM_MACS`` for the batch norm at
  inference; the first one reads the static stem output, once), ``residual``
  (stream adds, an AC per element and step, and the output's ``prior +
  correction``), ``neurons`` (``NEURON_MACS`` per neuron and step, plus
  ``ADAPTATION_MACS`` if ``adaptive``), ``readout`` (the mean over T of each
  scale's stream: T - 1 adds per element; the 1 / T folds into the next
  conv's weights) and, stage "prior", the same for both models: ``prior``
  (``prior_ops``) and ``depth_map`` (``hole_depth``: ``DEPTH_CAP - 1``
  3x3 erosions, a compare priced as an add). Not counted, as in
  ``scnn_jax.metrics.energy``: biases, activations, padding, the clip.
  """
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
  norm_kind = norm
  H, W, C = image_shape
  depth = len(widths) - 1
  mult = 2 ** depth
  Hp, Wp = H + (-H % mult), W + (-W % mult)
  res = [(Hp // 2 ** i, Wp // 2 ** i) for i in range(depth + 1)]
  spiking = activation == "spiking"
  T = T if spiking else 1
  per_neuron = NEURON_MACS + (ADAPTATION_MACS if adaptive else 0)

  def conv(name, cin, cout, hw_in, hw_out=None, kernel=(3, 3), fed_by=None):
    kw = (dict(in_is_spikes=True, rate_key=fed_by, steps=T)
          if spiking and fed_by else dict(steps=1))
    return LayerSpec(name, "conv", hw_in + (cin,),
                     (hw_out or hw_in) + (cout,), kernel, **kw)

  specs = [conv("stem", C + 2, widths[0], res[0])]
  norm = ann_norm = residual = ann_residual = neurons = readout = 0.0
  z_steps = 1                 # the stem output is static until a spike conv

  def activation_ops(n):
    nonlocal norm, ann_norm, neurons
    per = LAYER_NORM_MACS if norm_kind == "layer" else BATCH_NORM_MACS
    norm += per * n * z_steps
    ann_norm += per * n
    if spiking:
      neurons += per_neuron * n * T

  for i in range(depth + 1):
    n = res[i][0] * res[i][1] * widths[i]       # stream elements, one step
    for b in range(blocks):
      activation_ops(n)
      specs.append(conv(f"block_convs/{i}/{b}", widths[i], widths[i], res[i],
                        fed_by=f"block_acts/{i}/{b}/neuron"))
      residual += n * T
      ann_residual += n
      z_steps = T
    readout += n * (T - 1)
    if i < depth:
      activation_ops(n)
      specs.append(conv(f"down_convs/{i}", widths[i], widths[i + 1], res[i],
                        res[i + 1], fed_by=f"down_acts/{i}/neuron"))
      z_steps = T
  for j, i in enumerate(reversed(range(depth))):
    specs.append(conv(f"up/{j}", widths[i + 1], widths[i], res[i + 1],
                      res[i], kernel=(2, 2)))
    specs.append(conv(f"merge/{j}", 2 * widths[i], widths[i], res[i]))
  specs.append(conv("last", widths[0], C, res[0]))
  residual += H * W * C
  ann_residual += H * W * C
  prior_macs, prior_acs = prior_ops(image_shape, prior_order, prior_iters)
  # Per pixel: cap - 1 erosions of 8 compares, their sum, one log.
  depth_acs = H * W * (DEPTH_CAP - 1) * 9
  others = [
      OpCount("norm", macs=norm, ann_macs=ann_norm),
      OpCount("residual", acs=residual, ann_acs=ann_residual),
      OpCount("neurons", macs=neurons, ann_macs=0.0),
      OpCount("readout", acs=readout, ann_acs=0.0),
      OpCount("prior", macs=prior_macs, acs=prior_acs, stage="prior"),
      OpCount("depth_map", macs=float(H * W), acs=float(depth_acs),
              stage="prior"),
  ]
  return specs, others


def prior_ops(image_shape, order: int = 2, iters: int = 24):
  """``(MACs, ACs)`` of ``smooth_fill`` on one ``(H, W, C)`` image.

  The CG runs on every pixel of every pyramid level with the hole as a
  mask, so the count is the same for every mask. Per pixel and channel:
  the 5-point Laplacian is 3 adds and one MAC (``sum - 4 u``), the operator
  ``order`` of them; a CG step is one operator, the mask product, two inner
  products and three vector updates (biharmonic: 8 MACs + 6 ACs); each level
  adds one operator and two MACs to start the CG, two MACs for the starting
  guess and, below the coarsest, four for the bilinear upsampling; halving
  costs a MAC and an add per fine pixel, masking the input one MAC.
  """
  H, W, C = image_shape
  op_macs, op_acs = order, 3 * order
  sizes = [(H, W)]
  for _ in range(smooth_fill.num_levels(H, W)):
    h, w = sizes[-1]
    sizes.append(((h + 1) // 2, (w + 1) // 2))
  macs = acs = 0.0
  for level, (h, w) in enumerate(sizes):
    n = h * w * C
    coarsest = level == len(sizes) - 1
    per_macs = (iters + 1) * op_macs + 6 * iters + 2 + 2
    per_acs = (iters + 1) * op_acs
    if not coarsest:
      per_macs += 4 + 1         # upsampling into this level; halving it
      per_acs += 1
    macs += n * (per_macs + (1 if level == 0 else 0))
    acs += n * per_acs
  return float(macs), float(acs)
