"""Batch norm of each channel over all other axes: tdBN on a time-major
sequence ``[T, B, ...]``, global over the data-parallel mesh axis."""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx
from jax import lax

from scnn_jax.nn.variables import assign
from scnn_jax.ops.collectives import AXIS, psum_if_bound

RUNNING_VARS = ("unbiased", "biased")


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
