"""Paper B's spiking classifiers: MNISTNet and Cifar10Net with a voting layer.

Paper B (Qiu et al., ICLR 2023 Tiny Papers; code github bollossom/ICLR_TINY_SNN,
built on the PLIF code of Fang et al. 2021) classifies a static image by
feeding it at each of T = 8 steps and counting output spikes:

* MNISTNet: conv128-BN-ALIF-pool-conv128-BN-ALIF-pool-FC2048-ALIF-FC100-ALIF
  -vote;
* Cifar10Net: conv256-BN-ALIF, 2 x (conv256-BN-ALIF), pool,
  3 x (conv256-BN-ALIF), pool, FC2048-ALIF-FC100-ALIF-vote.

Every conv is 3x3, padding 1, without bias (BatchNorm follows); the FC layers
have no bias; dropout 0.5 (its mask is the same at every step) precedes both
FC layers; pooling is 2x2 max (the PLIF runs use ``-use_max_pool``). The
voting layer averages the 100 output neurons in 10 groups of 10 (one group
per class); the model's output is the spike count of each group over the T
steps divided by T: a firing rate in [0, 1], trained with
``MSE(rate, one_hot)``.

TIME-MAJOR inside: sequences are ``[T, B, H, W, C]`` (``[T, B, F]`` after the
flatten). The first conv and its BatchNorm see the same image at every step,
so they run once on ``[B, H, W, C]`` and their output is repeated T times
(exactly what paper B's ``static_conv`` does).

BatchNorm (``nn.BatchNorm`` with Flax's convention: biased running
variance) reduces over every axis but channels: on a ``[T, B, H, W, C]``
sequence that folds T into the batch for the statistics, as SpikingJelly's
multi-step BatchNorm does (paper B's step-by-step PyTorch loop instead
computes statistics per step). ``bn_axis_name`` (default ``"data"``, the
trainer's mesh axis) makes the statistics global over the devices of the
sharded train step, so 1 and 8 devices see the same statistics for the same
global batch; outside ``shard_map`` they are the local batch's. Eval mode
(``model.eval()``) uses the running averages.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.nn.norms import BatchNorm
from scnn_jax.ops.collectives import AXIS

# Layer layouts after the first (static) conv: "c" = conv-BN-neuron,
# "p" = 2x2 pool. The first entry of each layout is the static conv.
ARCHITECTURES = {
    "mnistnet": ("c", "p", "c", "p"),
    "cifar10net": ("c", "c", "c", "p", "c", "c", "c", "p"),
}
POOLS = ("max", "avg")
BN_MOMENTUM = 0.1   # paper B's code: PyTorch's BatchNorm momentum
BN_EPSILON = 1e-5


def vote(spikes, group: int):
  """Voting layer: ``[..., K * group] -> [..., K]``, the mean of each group.

  Neuron ``k * group + j`` votes for class k (paper B's ``AvgPool1d(10, 10)``
  over the 100 output neurons).
  """
  n = spikes.shape[-1]
  if n % group:
    raise ValueError(f"vote: {n} neurons do not split into groups of {group}")
  return jnp.mean(spikes.reshape(spikes.shape[:-1] + (n // group, group)),
                  axis=-1)


def count_rate(spikes, group: int):
  """Output spikes ``[T, B, K * group]`` -> spike count / T ``[B, K]``.

  The count of each class's voting group summed over T, divided by T: the
  group's mean firing rate, in [0, 1].
  """
  return jnp.mean(vote(spikes, group), axis=0)


def max_pool2x2(x):
  """2x2 max pooling, stride 2, over ``[N, H, W, C]`` (odd sizes floor).

  The same values and gradients as ``nnx.max_pool`` (``lax.reduce_window``:
  the whole gradient of a window goes to its FIRST maximal element, which
  matters for binary spikes, where ties are the rule) but written as three
  ``where`` over the four strided views: on XLA CPU its backward pass is
  ~25x faster than ``reduce_window``'s select-and-scatter (2-core machine,
  [256, 28, 28, 32] spikes: 11 ms vs 290 ms).
  """
  n, h, w, c = x.shape
  y = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  a, b = y[:, :, 0, :, 0], y[:, :, 0, :, 1]
  d, e = y[:, :, 1, :, 0], y[:, :, 1, :, 1]
  top = jnp.where(a >= b, a, b)
  bottom = jnp.where(d >= e, d, e)
  return jnp.where(top >= bottom, top, bottom)


def pool2x2(x, kind: str = "max"):
  """2x2 pooling, stride 2, over ``[..., H, W, C]`` (odd sizes floor)."""
  lead = x.shape[:-3]
  flat = x.reshape((-1,) + x.shape[-3:])
  if kind == "max":
    y = max_pool2x2(flat)
  elif kind == "avg":
    y = nnx.avg_pool(flat, (2, 2), strides=(2, 2))
  else:
    raise ValueError(f"unknown pool {kind!r}; allowed: {', '.join(POOLS)}")
  return y.reshape(lead + y.shape[1:])


class TimeDropout(nnx.Module):
  """Dropout with ONE mask per example for all T steps of ``[T, B, ...]``.

  SpikingJelly's ``layer.Dropout`` (paper B): the dropped neurons stay dropped
  for the whole sequence. Training mode needs ``rngs`` (stream ``dropout``,
  or a default stream); with ``example_ids`` (int ``[B]``, positions in the
  global batch) example i's mask comes from ``fold_in(key, example_ids[i])``,
  so it does not depend on how the batch is split over devices.
  ``model.eval()`` turns it off (``deterministic``).
  """

  def __init__(self, rate: float):
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    self.rate = rate
    self.deterministic = False

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    if self.deterministic or self.rate == 0.0:
      return x
    if rngs is None:
      raise ValueError("TimeDropout in training mode draws masks: call with "
                       "rngs=nnx.Rngs(dropout=key) or switch to model.eval()")
    key = rngs.dropout()
    keep_p = 1.0 - self.rate
    shape = x.shape[2:]
    if example_ids is None:
      keep = jax.random.bernoulli(key, keep_p, x.shape[1:])
    else:
      keep = jax.vmap(lambda i: jax.random.bernoulli(
          jax.random.fold_in(key, i), keep_p, shape))(jnp.asarray(example_ids))
    return jnp.where(keep[None], x / keep_p, jnp.zeros((), x.dtype))


class ConvBNBlock(nnx.Module):
  """3x3 conv (no bias) + BatchNorm over any leading axes ``[..., H, W, C]``."""

  def __init__(self, in_features, out_features, *, conv_impl="auto",
               dtype=None, bn_axis_name=AXIS, rngs: nnx.Rngs):
    self.conv = nn.Conv2d(in_features, out_features, 3, use_bias=False,
                          impl=conv_impl, dtype=dtype, rngs=rngs)
    self.bn = BatchNorm(out_features, momentum=BN_MOMENTUM, eps=BN_EPSILON,
                        running_var="biased", axis_name=bn_axis_name)

  def __call__(self, x):
    return self.bn(self.conv(x).astype(jnp.float32))


class SpikingClassifier(nnx.Module):
  """Paper B's static-image spiking classifier (``ARCHITECTURES``).

  ``x [B, H, W, C]`` in [0, 1] (normalised inside with ``input_mean`` /
  ``input_std``) -> firing rate per class ``[B, num_classes]`` (spike count
  of the class's voting group / T).

  Args:
    image_shape: ``(H, W, C)``.
    num_classes: K; the last FC layer has ``K * vote_group`` neurons.
    arch: "mnistnet" or "cifar10net".
    width: conv channels (paper B: 128 MNIST, 256 CIFAR-10).
    fc_width: hidden FC neurons (paper B: 2048 = 128 * 4 * 4).
    T: time steps.
    neuron, neuron_kwargs: ``nn.make_neuron`` kind and arguments for
      every spiking layer (each layer has its own neuron parameters).
    pool: "max" or "avg"; dropout: rate before each FC layer.
    bn_axis_name: mesh axis BatchNorm averages statistics over (None
      outside ``shard_map``).
  """

  def __init__(self, image_shape: Sequence[int], num_classes: int, *,
               arch="mnistnet", width=128, fc_width=2048, T=8,
               neuron="alif", neuron_kwargs=None, vote_group=10, pool="max",
               dropout=0.5, input_mean=(0.0,), input_std=(1.0,),
               conv_impl="auto", dtype=None, bn_axis_name=AXIS,
               rngs: nnx.Rngs):
    if arch not in ARCHITECTURES:
      raise ValueError(f"unknown arch {arch!r}; allowed: "
                       f"{', '.join(ARCHITECTURES)}")
    if pool not in POOLS:
      raise ValueError(f"unknown pool {pool!r}; allowed: {', '.join(POOLS)}")
    h, w, c = image_shape
    layout = ARCHITECTURES[arch]
    neuron_kwargs = dict(neuron_kwargs or {})
    make = lambda: nn.make_neuron(neuron, **neuron_kwargs)  # noqa: E731
    self.T, self.vote_group, self.pool = T, vote_group, pool
    self.input_mean = tuple(float(v) for v in input_mean)
    self.input_std = tuple(float(v) for v in input_std)
    self.static = ConvBNBlock(c, width, conv_impl=conv_impl, dtype=dtype,
                              bn_axis_name=bn_axis_name, rngs=rngs)
    self.static_neuron = make()
    blocks, neurons = [], []
    for kind in layout[1:]:
      if kind == "c":
        blocks.append(ConvBNBlock(width, width, conv_impl=conv_impl,
                                  dtype=dtype, bn_axis_name=bn_axis_name,
                                  rngs=rngs))
        neurons.append(make())
      else:
        h, w = h // 2, w // 2
    self.layout = layout
    self.blocks = nnx.List(blocks)
    self.block_neurons = nnx.List(neurons)
    self.drop1 = TimeDropout(dropout)
    self.fc1 = nnx.Linear(h * w * width, fc_width, use_bias=False, dtype=dtype,
                          rngs=rngs)
    self.fc1_neuron = make()
    self.drop2 = TimeDropout(dropout)
    self.fc2 = nnx.Linear(fc_width, num_classes * vote_group, use_bias=False,
                          dtype=dtype, rngs=rngs)
    self.fc2_neuron = make()
    self.num_classes = num_classes

  def normalize(self, x):
    mean = jnp.asarray(self.input_mean, x.dtype)
    std = jnp.asarray(self.input_std, x.dtype)
    return (x - mean) / std

  def spikes(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    """Output-layer spikes ``[T, B, num_classes * vote_group]``."""
    # Named scopes label the ops in profiles (README, "Profiling").
    with jax.named_scope("static"):
      h = self.static(self.normalize(x.astype(jnp.float32)))
      h = self.static_neuron(jnp.broadcast_to(h[None], (self.T,) + h.shape))
    i = 0
    with jax.named_scope("blocks"):
      for kind in self.layout[1:]:
        if kind == "p":
          h = pool2x2(h, self.pool)
        else:
          h = self.block_neurons[i](self.blocks[i](h))
          i += 1
    with jax.named_scope("fc"):
      h = h.reshape(h.shape[:2] + (-1,))
      h = self.drop1(h, rngs=rngs, example_ids=example_ids)
      h = self.fc1_neuron(self.fc1(h).astype(jnp.float32))
      h = self.drop2(h, rngs=rngs, example_ids=example_ids)
      return self.fc2_neuron(self.fc2(h).astype(jnp.float32))

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    """Firing rate (count / T) of each class's voting group ``[B, K]``."""
    return count_rate(self.spikes(x, rngs=rngs, example_ids=example_ids),
                      self.vote_group)
