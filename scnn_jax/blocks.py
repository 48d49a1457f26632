"""Shared NNX building blocks of the paper-B models (VAE, FAD autoencoder,
classifier): batch norm over time, PyTorch-style transposed convs, spiking
blocks and MLPs, and numpy-drawn initialisers.

Spiking sequences are TIME-MAJOR: ``[T, B, ...]``.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import errors, nnx
from jax import lax

from scnn_jax import layers
from scnn_jax.collectives import AXIS, psum_if_bound

# FSVAE's LIF threshold (its snn_layers.py: Vth = 0.2); tdBN scales by
# alpha * V_th.
FSVAE_VTH = 0.2
RUNNING_VARS = ("unbiased", "biased")


# -----------------------------------------------------------------------------
# Initialisers and in-step updates
# -----------------------------------------------------------------------------


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


def check_image_size(h, w, hidden) -> None:
  """Stride-2 layers halve the image down to 2x2: only one size fits."""
  size = 2 * 2 ** len(hidden)
  if (h, w) != (size, size):
    raise ValueError(f"image size {h}x{w} does not fit {len(hidden)} "
                     f"stride-2 layers down to 2x2: it must be {size}x{size}")


# -----------------------------------------------------------------------------
# Layers
# -----------------------------------------------------------------------------


class BatchNorm(nnx.Module):
  """Batch norm of each channel (last axis) over ALL other axes.

  On ``[T, B, H, W, C]`` this is tdBN (Zheng et al. 2021; FSVAE's
  ``tdBatchNorm``): ``gain * (x - mean) / sqrt(var + eps) * scale + bias``
  with ``gain = alpha * V_th``; ``gain=1`` is ordinary batch norm, and on a
  time-major sequence it is SpikingJelly's multi-step BatchNorm (T folded
  into the batch), paper B's classifier's.

  Training mode (``use_running_average=False``, set by ``model.train()``):
  batch statistics (two-pass, biased variance), global over ``axis_name``
  when called inside ``shard_map`` over it (so 1 and 8 devices see the same
  statistics for the same global batch), local outside it. The running
  statistics move by ``momentum`` towards the batch's (PyTorch's convention:
  Flax's ``momentum=0.9`` is 0.1 here); ``running_var`` says which variance
  they track: ``"unbiased"`` (PyTorch, FSVAE: the VAE and the FAD
  autoencoder) or ``"biased"`` (Flax's ``nnx.BatchNorm``: the classifier).
  Eval mode uses the running statistics and no collective.

  Variables: ``scale``, ``bias`` (``nnx.Param``), ``mean``, ``var``
  (``nnx.BatchStat``): the names ``nnx.BatchNorm`` uses, so checkpoints of
  either convention restore into it.
  """

  def __init__(self, features: int, *, gain=1.0, momentum=0.1, eps=1e-5,
               running_var: str = "unbiased", axis_name: str | None = AXIS):
    if running_var not in RUNNING_VARS:
      raise ValueError(f"unknown running_var {running_var!r}; allowed: "
                       f"{', '.join(RUNNING_VARS)}")
    self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
    self.gain = float(gain)
    self.momentum = float(momentum)
    self.eps = float(eps)
    self.running_var = running_var
    self.axis_name = axis_name
    self.use_running_average = False

  def sums(self, x):
    """``(sum, sum of squares, count)`` per channel, global over the axis."""
    x = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    n = jnp.float32(math.prod(x.shape[:-1]))
    return psum_if_bound((jnp.sum(x, axes), jnp.sum(x * x, axes), n),
                         self.axis_name)

  def batch_stats(self, x):
    """``(mean, biased var, count)`` of ``x`` (two-pass, global)."""
    x32 = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    n = psum_if_bound(jnp.float32(math.prod(x.shape[:-1])), self.axis_name)
    mean = psum_if_bound(jnp.sum(x32, axes), self.axis_name) / n
    var = psum_if_bound(jnp.sum(jnp.square(x32 - mean), axes),
                        self.axis_name) / n
    return mean, var, n

  def update_running(self, mean, var, n):
    m = self.momentum
    if self.running_var == "unbiased":
      var = var * n / jnp.maximum(n - 1.0, 1.0)
    assign(self, "mean", (1 - m) * self.mean[...] + m * lax.stop_gradient(mean))
    assign(self, "var", (1 - m) * self.var[...] + m * lax.stop_gradient(var))

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

