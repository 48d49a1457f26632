"""Paper B's generator: a fully spiking VAE (FSVAE) with TAID or fixed-decay decoding.

Sequences are TIME-MAJOR everywhere: ``[T, B, ...]``. Images enter and leave
the public methods in [0, 1] ``[B, H, W, C]``; inside, the network works on
[-1, 1] images as FSVAE does (``tanh`` output).

Architecture (FSVAE, Kamata et al. AAAI 2022, and its public code; paper B
keeps it and swaps the image decoder), for ``hidden = (32, 64, 128, 256)`` and
32x32 images:

* encoder: the image at every step (direct encoding), then per hidden width a
  3x3 stride-2 conv (padding 1) -> tdBN -> LIF, down to 2x2; flatten; a
  linear layer -> tdBN -> LIF gives the latent-input spikes ``x [T, B, C]``
  (``C = latent_dim``).
* latent (``latent="fsvae"``, the faithful one): Bernoulli spikes with an
  autoregressive learned prior. The posterior q(z_t | x_<=t, z_<t) and the
  prior p(z_t | z_<t) are spiking MLPs (linear -> tdBN(alpha=2) -> LIF, widths
  2C, 4C, C*k) whose last layer has k spiking neurons per latent channel: the
  probability of z_t = 1 is their mean, and a sample is one of the k spikes
  picked at random (FSVAE's sampling, so the gradient flows through the
  picked spike's surrogate). The prior is trained on the posterior's samples
  (teacher forcing, with FSVAE's scheduled sampling); the distribution term is
  FSVAE's "MMD": the mean squared difference of the PSP-filtered (tau_s = 2)
  posterior and prior firing probabilities.
* latent (``latent="esvae"``, ESVAE, Zhan et al. 2023): the posterior is the
  firing rate ``r_q`` of ``x`` over T; z is Bernoulli(``r_q``) at each step
  (``H(r_q - u)``, rectangular surrogate); the prior rate is
  ``r_p = sigmoid(Linear(eps))`` with ``eps ~ N(0, I)``; the distance term is
  an RBF-kernel MMD between the batches of ``r_q`` and ``r_p`` (weight
  ``esvae_lambda``, ESVAE: 1e-3).
* decoder: linear -> tdBN -> LIF to ``hidden[-1] x 2 x 2``, then per hidden
  width a 3x3 stride-2 transposed conv (padding 1, output padding 1) -> tdBN
  -> LIF up to the image size, and a 3x3 stride-1 transposed conv to the image
  channels (no BN, no spike): a real-valued sequence ``X [T, B, H, W, C]``.
* image decoder: ``"fixed_decay"`` (FSVAE: ``tanh(sum_t 0.8^(T-1-t) X_t)``) or
  ``"taid"`` (paper B: ``tanh(sum_t a_t X_t)`` with learned temporal
  attention, ``layers.TAID``).

Neurons default to FSVAE's LIF (``u_t = 0.25 u_{t-1} (1 - o_{t-1}) + I_t``,
``o_t = [u_t > 0.2]``, rectangular surrogate of width 1); any ``layers.LIF``
/ ``layers.ALIF`` keyword arguments can be passed instead.

tdBN (``BatchNorm`` here) normalises each channel over time, batch and space
and scales by ``alpha * V_th``. Inside ``jax.shard_map`` over the ``"data"``
axis its statistics are those of the global batch (``psum``), so training
does not depend on how the batch is split over devices.

Randomness is per example: every draw of example i comes from
``fold_in(key, example_ids[i])``, so results do not depend on the device split
either, and ``sample(n, key)`` returns the same images for the same key.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from flax import errors, nnx

from scnn_jax import layers
from scnn_jax import surrogate as surrogate_lib

LATENTS = ("fsvae", "esvae")
IMAGE_DECODERS = ("fixed_decay", "taid")
AXIS = "data"

# FSVAE's LIF (snn_layers.py of its code: tau = 0.25 is the decay per step,
# Vth = 0.2, rectangular surrogate |u| < 0.5 -> 1).
FSVAE_NEURON = dict(beta=0.25, threshold=0.2, reset="zero",
                    surrogate="rectangular", surrogate_param=1.0)
FSVAE_VTH = 0.2


def axis_bound(name: str = AXIS) -> bool:
  """True inside ``shard_map`` (or ``pmap``) over the mesh axis ``name``."""
  try:
    lax.axis_index(name)
    return True
  except NameError:
    return False


def _psum(x, axis_name):
  return lax.psum(x, axis_name) if axis_name and axis_bound(axis_name) else x


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


def per_example_keys(key, example_ids, n: int | None = None):
  """``[B]`` keys ``fold_in(key, example_ids[i])`` (``arange(n)`` if ids None)."""
  ids = jnp.arange(n) if example_ids is None else jnp.asarray(example_ids)
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)


def assign(module: nnx.Module, name: str, value) -> None:
  """``module.<name>[...] = value`` that also works in the trainer's step.

  The trainer merges the model inside its differentiated loss from state
  created one trace level up; NNX refuses to mutate such variables
  (``TraceContextError``). The module itself belongs to the current trace, so
  the attribute is then rebound to a fresh variable of the same type, which
  ``nnx.state(model)`` (what the trainer carries forward) returns.
  """
  var = getattr(module, name)
  try:
    var[...] = value
  except errors.TraceContextError:
    setattr(module, name, type(var)(value, **var.get_metadata()))


# -----------------------------------------------------------------------------
# Building blocks
# -----------------------------------------------------------------------------


def check_image_size(h, w, hidden) -> None:
  """Stride-2 layers halve the image down to 2x2: only one size fits."""
  size = 2 * 2 ** len(hidden)
  if (h, w) != (size, size):
    raise ValueError(f"image size {h}x{w} does not fit {len(hidden)} "
                     f"stride-2 layers down to 2x2: it must be {size}x{size}")

class Progress(nnx.Variable):
  """Training steps taken (drives FSVAE's scheduled-sampling probability)."""


class BatchNorm(nnx.Module):
  """Batch norm of each channel (last axis) over ALL other axes.

  On ``[T, B, H, W, C]`` this is tdBN (Zheng et al. 2021), FSVAE's
  ``tdBatchNorm``: ``gain * (x - mean) / sqrt(var + eps) * scale + bias`` with
  ``gain = alpha * V_th``. ``gain=1`` is ordinary batch norm.

  Training mode (``use_running_average=False``, set by ``model.train()``):
  batch statistics (biased variance), global over ``axis_name`` when called
  inside ``shard_map``; running statistics are updated PyTorch-style
  (``momentum`` 0.1, unbiased variance). Eval mode uses the running ones.
  """

  def __init__(self, features: int, *, gain=1.0, momentum=0.1, eps=1e-5,
               axis_name: str | None = AXIS):
    self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
    self.gain = float(gain)
    self.momentum = float(momentum)
    self.eps = float(eps)
    self.axis_name = axis_name
    self.use_running_average = False

  def sums(self, x):
    """``(sum, sum of squares, count)`` per channel, global over the axis."""
    x = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    n = jnp.float32(math.prod(x.shape[:-1]))
    return _psum((jnp.sum(x, axes), jnp.sum(x * x, axes), n), self.axis_name)

  def batch_stats(self, x):
    """``(mean, biased var, count)`` of ``x`` (two-pass, global)."""
    x32 = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    n = _psum(jnp.float32(math.prod(x.shape[:-1])), self.axis_name)
    mean = _psum(jnp.sum(x32, axes), self.axis_name) / n
    var = _psum(jnp.sum(jnp.square(x32 - mean), axes), self.axis_name) / n
    return mean, var, n

  def update_running(self, mean, var, n):
    m = self.momentum
    unbiased = var * n / jnp.maximum(n - 1.0, 1.0)
    assign(self, "mean", (1 - m) * self.mean[...] + m * lax.stop_gradient(mean))
    assign(self, "var", (1 - m) * self.var[...] +
           m * lax.stop_gradient(unbiased))

  def normalize(self, x, mean, var):
    inv = self.gain * lax.rsqrt(var + self.eps) * self.scale[...]
    return ((x.astype(jnp.float32) - mean) * inv + self.bias[...]).astype(
        x.dtype)

  def __call__(self, x):
    if self.use_running_average:
      return self.normalize(x, self.mean[...], self.var[...])
    mean, var, n = self.batch_stats(x)
    self.update_running(mean, var, n)
    return self.normalize(x, mean, var)


def transposed_conv_kernel_to_phases(kernel):
  """A 3x3 stride-2 transposed-conv kernel as a 2x2 conv with 4x outputs.

  ``kernel [3, 3, Cin, Cout]`` -> ``[2, 2, Cin, 4 * Cout]`` ordered
  ``(row phase, column phase, Cout)``. With padding 1 and output padding 1,
  output row ``2m`` sees input row ``m`` through kernel row 1, and output row
  ``2m + 1`` sees rows ``m`` and ``m + 1`` through kernel rows 0 and 2 (in
  cross-correlation form); the same holds for columns.
  """
  kh, kw, cin, cout = kernel.shape
  if (kh, kw) != (3, 3):
    raise ValueError(f"phase form needs a 3x3 kernel, got {kernel.shape}")
  padded = jnp.concatenate([kernel, jnp.zeros((1, 3, cin, cout), kernel.dtype)],
                           0)
  padded = jnp.concatenate([padded, jnp.zeros((4, 1, cin, cout),
                                               kernel.dtype)], 1)
  taps = jnp.array([[1, 3], [0, 2]])  # [phase, tap] -> kernel index (3 = zero)
  # k[a, b, :, p, q, :] = padded[taps[p, a], taps[q, b]]
  rows = taps.T[:, None, :, None]      # [a, 1, p, 1]
  cols = taps.T[None, :, None, :]      # [1, b, 1, q]
  k = padded[rows, cols]               # [a, b, p, q, Cin, Cout]
  k = jnp.transpose(k, (0, 1, 4, 2, 3, 5))
  return k.reshape(2, 2, cin, 4 * cout)


class ConvTranspose2d(nnx.Module):
  """PyTorch-style ``ConvTranspose2d`` (3x3), NHWC, over any leading axes.

  ``strides=2, padding=1, output_padding=1`` doubles H and W (FSVAE's
  upsampling layer); ``strides=1, padding=1`` keeps them. The kernel is HWIO
  in cross-correlation form: a PyTorch weight ``w [Cin, Cout, kh, kw]``
  corresponds to ``w.transpose(2, 3, 0, 1)[::-1, ::-1]``.

  ``impl="phase"`` (default) computes the stride-2 case as one 2x2 conv with
  4x output channels followed by depth-to-space: 16 instead of 36 multiply-
  adds per output pixel-channel of the zero-dilated form, and a plain conv
  that stays on every backend's fast path. ``impl="dilated"`` is the textbook
  ``lhs_dilation`` form (same numbers).
  """

  def __init__(self, in_features, out_features, kernel_size=3, *, strides=1,
               padding=1, output_padding=0, impl="phase", rngs: nnx.Rngs):
    if kernel_size != 3:
      raise ValueError("ConvTranspose2d supports 3x3 kernels")
    if strides not in (1, 2):
      raise ValueError(f"strides must be 1 or 2, got {strides}")
    if impl not in ("phase", "dilated"):
      raise ValueError(f"unknown impl {impl!r}; allowed: phase, dilated")
    self.kernel = nnx.Param(lecun_normal_np(
        rngs.params(), (3, 3, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
    self.strides = strides
    self.padding = padding
    self.output_padding = output_padding
    self.impl = impl
    self.out_features = out_features

  def __call__(self, x):
    lead = x.shape[:-3]
    x4 = x.reshape((-1,) + x.shape[-3:])
    kernel = self.kernel[...].astype(x.dtype)
    s, p, op = self.strides, self.padding, self.output_padding
    dn = ("NHWC", "HWIO", "NHWC")
    if s == 2 and self.impl == "phase" and (p, op) == (1, 1):
      n, h, w, _ = x4.shape
      xp = jnp.pad(x4, ((0, 0), (0, 1), (0, 1), (0, 0)))
      y = lax.conv_general_dilated(xp, transposed_conv_kernel_to_phases(kernel),
                                   (1, 1), "VALID", dimension_numbers=dn)
      c = self.out_features
      y = y.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
      y = y.reshape(n, 2 * h, 2 * w, c)
    else:
      lo, hi = 2 - p, 2 - p + op
      y = lax.conv_general_dilated(x4, kernel, (1, 1), ((lo, hi), (lo, hi)),
                                   lhs_dilation=(s, s), dimension_numbers=dn)
    y = y + self.bias[...].astype(y.dtype)
    return y.reshape(lead + y.shape[1:])


class SpikingBlock(nnx.Module):
  """``op`` (conv / linear over [T*B]) -> tdBN -> spiking neurons.

  Input and output are TIME-MAJOR ``[T, B, ...]``.
  """

  def __init__(self, op: nnx.Module, features: int, *, neuron="lif",
               neuron_kwargs=None, alpha=1.0, vth=FSVAE_VTH):
    self.op = op
    self.bn = BatchNorm(features, gain=alpha * vth)
    self.neuron = layers.make_neuron(neuron, **(neuron_kwargs or {}))

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
      blocks.append(SpikingBlock(dense(din, dout, rngs), dout,
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


def psp(x, tau_s=2.0):
  """FSVAE's PSP filter over time (axis 0): ``y_t = y_{t-1} + (x_t - y_{t-1}) / tau_s``."""
  def body(y, x_t):
    y = y + (x_t - y) / tau_s
    return y, y
  _, ys = lax.scan(body, jnp.zeros_like(x[0]), x)
  return ys


def rbf_mmd(a, b, kernel_mul=2.0, kernel_num=5):
  """ESVAE's multi-bandwidth RBF MMD between samples ``a [N, D]``, ``b [M, D]``.

  Bandwidths ``bw * kernel_mul^(i - kernel_num // 2)``, ``bw`` the mean
  pairwise squared distance of the pooled samples (no gradient through it).
  """
  total = jnp.concatenate([a, b], 0)
  d2 = jnp.sum(jnp.square(total[:, None] - total[None]), -1)
  n = total.shape[0]
  bw = lax.stop_gradient(jnp.sum(d2) / (n * n - n))
  bw = jnp.maximum(bw, 1e-12) / kernel_mul ** (kernel_num // 2)
  k = sum(jnp.exp(-d2 / (bw * kernel_mul ** i)) for i in range(kernel_num))
  na = a.shape[0]
  return (jnp.mean(k[:na, :na]) + jnp.mean(k[na:, na:])
          - jnp.mean(k[:na, na:]) - jnp.mean(k[na:, :na]))


def _all_gather(x):
  if axis_bound(AXIS):
    return lax.all_gather(x, AXIS, tiled=True)
  return x


class VaeOutput(NamedTuple):
  recon: jax.Array      # [B, H, W, C] in [-1, 1]
  z: jax.Array          # [T, B, C] latent spikes fed to the decoder
  distance: jax.Array   # fsvae: per-example term [B]; esvae: scalar (batch MMD)


# -----------------------------------------------------------------------------
# The model
# -----------------------------------------------------------------------------


class SpikingVAE(nnx.Module):
  """FSVAE / ESVAE-style fully spiking VAE; see the module docstring.

  Args:
    image_shape: ``(H, W, C)``; H = W = ``2 * 2**len(hidden)``.
    T: time steps (paper B: 16).
    latent_dim: latent channels C (FSVAE: 128).
    hidden: conv widths of the encoder (reversed in the decoder).
    latent: ``"fsvae"`` or ``"esvae"``.
    k: spiking neurons per latent channel in the FSVAE prior / posterior.
    image_decoder: ``"taid"`` or ``"fixed_decay"``; ``decay`` for the latter.
    neuron, neuron_kwargs: ``layers.make_neuron`` arguments (FSVAE's LIF by
      default).
    scheduled_sampling: FSVAE's scheduled sampling of the prior's inputs, with
      probability rising from 0.1 to 0.3 over ``total_steps`` training steps.
    esvae_lambda: weight of ESVAE's MMD (inside ``distance``).
  """

  def __init__(self, image_shape, *, T=16, latent_dim=128,
               hidden=(32, 64, 128, 256), latent="fsvae", k=20,
               image_decoder="taid", decay=0.8, neuron="lif",
               neuron_kwargs=None, scheduled_sampling=True, total_steps=1,
               esvae_lambda=1e-3, conv_impl="auto", rngs: nnx.Rngs):
    h, w, c = image_shape
    hidden = tuple(hidden)
    check_image_size(h, w, hidden)
    if latent not in LATENTS:
      raise ValueError(f"unknown latent {latent!r}; allowed: "
                       f"{', '.join(LATENTS)}")
    if image_decoder not in IMAGE_DECODERS:
      raise ValueError(f"unknown image_decoder {image_decoder!r}; allowed: "
                       f"{', '.join(IMAGE_DECODERS)}")
    if neuron_kwargs is None:
      neuron, neuron_kwargs = "lif", dict(FSVAE_NEURON)
    nk = dict(neuron=neuron, neuron_kwargs=neuron_kwargs)
    self.T, self.latent_dim, self.k = T, latent_dim, k
    self.image_shape = (h, w, c)
    self.hidden = hidden
    self.latent = latent
    self.scheduled_sampling = scheduled_sampling
    self.total_steps = max(int(total_steps), 1)
    self.esvae_lambda = float(esvae_lambda)
    self.progress = Progress(jnp.zeros((), jnp.int32))

    enc, cin = [], c
    for width in hidden:
      conv = layers.Conv2d(cin, width, 3, strides=2, padding=((1, 1), (1, 1)),
                           impl=conv_impl, kernel_init=lecun_normal_np,
                           rngs=rngs)
      enc.append(SpikingBlock(conv, width, **nk))
      cin = width
    self.encoder = nnx.List(enc)
    flat = hidden[-1] * 4
    self.before_latent = SpikingBlock(dense(flat, latent_dim, rngs),
                                      latent_dim, **nk)
    C = latent_dim
    if latent == "fsvae":
      self.posterior = SpikingMLP((2 * C, 2 * C, 4 * C, C * k), rngs=rngs, **nk)
      self.prior = SpikingMLP((C, 2 * C, 4 * C, C * k), rngs=rngs, **nk)
    else:
      self.prior_layer = dense(C, C, rngs)
    self.decoder_input = SpikingBlock(dense(C, flat, rngs), flat,
                                      **nk)
    dec = []
    rev = hidden[::-1]
    for din, dout in zip(rev[:-1], rev[1:]):
      dec.append(SpikingBlock(
          ConvTranspose2d(din, dout, strides=2, padding=1, output_padding=1,
                          rngs=rngs), dout, **nk))
    dec.append(SpikingBlock(
        ConvTranspose2d(rev[-1], rev[-1], strides=2, padding=1,
                        output_padding=1, rngs=rngs), rev[-1], **nk))
    self.decoder = nnx.List(dec)
    self.final = ConvTranspose2d(rev[-1], c, strides=1, padding=1, rngs=rngs)
    if image_decoder == "taid":
      self.image_decoder = layers.TAID(T, activation="tanh", rngs=rngs)
    else:
      self.image_decoder = layers.FixedDecayDecoder(decay, activation="tanh")
    self.use_running_average = False

  # -- encoder / decoder ---------------------------------------------------
  def encode(self, images_pm1):
    """``[B, H, W, C]`` in [-1, 1] -> latent-input spikes ``[T, B, latent]``."""
    T = self.T
    first = self.encoder[0]
    # Direct encoding feeds the same image at every step: convolve it once.
    cur = first.op(images_pm1)
    cur = first.bn(jnp.broadcast_to(cur[None], (T,) + cur.shape))
    x = first.neuron(cur)
    for block in self.encoder[1:]:
      x = block(x)
    x = x.reshape(x.shape[:2] + (-1,))
    return self.before_latent(x)

  def decode(self, z):
    """Latent spikes ``[T, B, latent]`` -> images ``[B, H, W, C]`` in [-1, 1]."""
    x = self.decoder_input(z)
    x = x.reshape(x.shape[:2] + (2, 2, self.hidden[-1]))
    for block in self.decoder:
      x = block(x)
    return self.image_decoder(self.final(x))

  # -- FSVAE latent ----------------------------------------------------------
  def _picks(self, keys, n):
    """Which of the k neurons each example samples: int ``[T, B, C]``."""
    idx = jax.vmap(lambda k: jax.random.randint(
        k, (self.T, self.latent_dim), 0, self.k))(keys)
    return jnp.swapaxes(idx, 0, 1)

  @staticmethod
  def _pick(spikes_k, idx):
    """``spikes [..., C*k]`` and ``idx [..., C]`` -> the picked spikes ``[..., C]``."""
    s = spikes_k.reshape(idx.shape + (-1,))
    return jnp.take_along_axis(s, idx[..., None], -1)[..., 0]

  def _mode(self):
    return "running" if self.use_running_average else "causal"

  def fsvae_posterior(self, x, keys):
    """``x [T, B, C]`` -> ``(z [T, B, C], q [T, B, C, k])``.

    As FSVAE: a first pass without gradient samples z step by step (q_t
    depends on z_<t); a second, whole-sequence pass with the sampled z_<t as
    inputs gives q with gradients and the same picks give z.
    """
    idx = self._picks(keys, x.shape[1])
    mode = self._mode()
    xs = lax.stop_gradient(x)

    def body(carry, inputs):
      mlp_carry, z_prev = carry
      x_t, idx_t = inputs
      mlp_carry, q_t = self.posterior.step(
          mlp_carry, jnp.concatenate([x_t, z_prev], -1), mode)
      z_t = self._pick(q_t, idx_t)
      return (mlp_carry, z_t), z_prev

    z0 = jnp.zeros_like(xs[0])
    init = (self.posterior.init_carry(jnp.concatenate([z0, z0], -1)), z0)
    _, z_in = lax.scan(body, init, (xs, idx))
    z_in = lax.stop_gradient(z_in)                        # [0, z_0..z_{T-2}]
    q = self.posterior(jnp.concatenate([x, z_in], -1))    # [T, B, C*k]
    z = self._pick(q, idx)
    return z, q.reshape(q.shape[:2] + (self.latent_dim, self.k))

  def _scheduled_prob(self):
    frac = jnp.minimum(self.progress[...].astype(jnp.float32) /
                       self.total_steps, 1.0)
    return 0.1 + 0.2 * frac

  def fsvae_prior(self, z, keys, key):
    """Prior firing ``p [T, B, C, k]`` given the posterior's samples ``z``.

    Teacher forcing (inputs ``[0, z_0, ..., z_{T-2}]``, no gradient into z).
    With scheduled sampling (training only), from step 5 on each step's input
    is replaced, with probability p (the same for the whole batch, as in
    FSVAE), by the prior's own thresholded prediction.
    """
    z = lax.stop_gradient(z)
    z0 = jnp.zeros_like(z[:1])
    inputs = jnp.concatenate([z0, z[:-1]], 0)
    if self.scheduled_sampling and not self.use_running_average:
      T = self.T
      use_own = ((jnp.arange(T) >= 5) &
                 (jax.random.uniform(key, (T,)) < self._scheduled_prob()))
      noise = jnp.swapaxes(jax.vmap(lambda k: jax.random.normal(
          jax.random.fold_in(k, 7), (T, self.latent_dim)))(keys), 0, 1)

      def body(carry, inputs_t):
        mlp_carry, z_in = carry
        z_t, own_t, noise_t = inputs_t
        mlp_carry, p_t = self.prior.step(mlp_carry, z_in, "causal")
        prob = jnp.mean(p_t.reshape(p_t.shape[:-1] + (self.latent_dim, self.k)),
                        -1)
        own = (prob + 1e-3 * noise_t > 0.5).astype(z_t.dtype)
        nxt = jnp.where(own_t, own, z_t)
        return (mlp_carry, nxt), z_in

      init = (self.prior.init_carry(z[0]), z0[0])
      _, inputs = lax.scan(body, init, (z, use_own, noise))
      inputs = lax.stop_gradient(inputs)
    p = self.prior(inputs)
    return p.reshape(p.shape[:2] + (self.latent_dim, self.k))

  def fsvae_prior_sample(self, keys):
    """Latent spikes ``[T, n, C]`` drawn step by step from the prior."""
    n = keys.shape[0]
    idx = self._picks(keys, n)

    def body(carry, idx_t):
      mlp_carry, z_prev = carry
      mlp_carry, p_t = self.prior.step(mlp_carry, z_prev, "running")
      z_t = self._pick(p_t, idx_t)
      return (mlp_carry, z_t), z_t

    z0 = jnp.zeros_like(idx[0], jnp.float32)   # varies like the keys
    _, z = lax.scan(body, (self.prior.init_carry(z0), z0), idx)
    return z

  # -- ESVAE latent ----------------------------------------------------------
  def _esvae_spikes(self, rate, keys):
    """Bernoulli(rate) spikes ``[T, B, C]`` with a rectangular surrogate."""
    u = jnp.swapaxes(jax.vmap(lambda k: jax.random.uniform(
        jax.random.fold_in(k, 1), (self.T, self.latent_dim)))(keys), 0, 1)
    return surrogate_lib.spike(rate[None] - u, "rectangular", 1.0)

  def _esvae_prior_rate(self, keys):
    eps = jax.vmap(lambda k: jax.random.normal(
        jax.random.fold_in(k, 2), (self.latent_dim,)))(keys)
    return jax.nn.sigmoid(self.prior_layer(eps))

  # -- whole model -----------------------------------------------------------
  def forward(self, images, *, key, example_ids=None) -> VaeOutput:
    """Reconstruction pass of ``images [B, H, W, C]`` in [0, 1].

    ``key`` drives the latent sampling; example i uses
    ``fold_in(key, example_ids[i])``. In training mode it also advances the
    scheduled-sampling counter.
    """
    x = self.encode(images * 2.0 - 1.0)
    example_key, batch_key = jax.random.split(key)
    keys = per_example_keys(example_key, example_ids, images.shape[0])
    if self.latent == "fsvae":
      z, q = self.fsvae_posterior(x, keys)
      p = self.fsvae_prior(z, keys, batch_key)
      d = jnp.square(psp(jnp.mean(q, -1)) - psp(jnp.mean(p, -1)))
      distance = jnp.mean(d, axis=(0, 2))              # [B]
    else:
      r_q = jnp.mean(x, 0)                              # [B, C]
      z = self._esvae_spikes(r_q, keys)
      r_p = self._esvae_prior_rate(keys)
      distance = self.esvae_lambda * rbf_mmd(_all_gather(r_q),
                                             _all_gather(r_p))
    if not self.use_running_average:
      assign(self, "progress", self.progress[...] + 1)
    return VaeOutput(self.decode(z), z, distance)

  def reconstruct(self, images, *, key, example_ids=None):
    """Reconstructions ``[B, H, W, C]`` in [0, 1] of images in [0, 1]."""
    return (self.forward(images, key=key, example_ids=example_ids).recon
            + 1.0) / 2.0

  def sample_latent(self, keys):
    if self.latent == "fsvae":
      return self.fsvae_prior_sample(keys)
    return self._esvae_spikes(self._esvae_prior_rate(keys), keys)

  def sample(self, n: int, key, example_ids=None, return_latent=False):
    """``n`` images ``[n, H, W, C]`` in [0, 1] drawn from the prior.

    Row i comes from ``fold_in(key, i)`` (or ``example_ids[i]``): the same key
    gives the same images, whatever ``n`` or batch split. Call in eval mode
    (``model.eval()``): the decoder's tdBN then uses its running statistics.
    ``return_latent`` also returns the latent spikes ``[T, n, latent_dim]``.
    """
    keys = per_example_keys(key, example_ids, n)
    z = self.sample_latent(keys)
    images = (self.decode(z) + 1.0) / 2.0
    return (images, z) if return_latent else images

  def __call__(self, images, *, key, example_ids=None):
    """``reconstruct``: images in [0, 1] -> reconstructions in [0, 1]."""
    return self.reconstruct(images, key=key, example_ids=example_ids)
