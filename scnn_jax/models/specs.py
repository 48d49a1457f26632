"""What a model says about its own arithmetic, from its config alone.

A model family describes one image's pass through it as a list of
``LayerSpec`` (its convs and dense layers: shapes, whether the input is
spikes, whose firing rate drives them) and a list of ``OpCount`` (all other
arithmetic: norms, residual adds, neuron updates, a parameter-free prior).
``models.registry.layer_specs`` finds the description of ``config.model``
by name; ``metrics.spikes.synaptic_ops`` counts its operations and
``metrics.energy`` prices them. The other facts a model declares (its
receptive field, whether it is global, its memory per pixel) are
attributes of the built model: ``scnn_jax/models/__init__.py`` lists them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

LAYER_KINDS = ("conv", "conv_transpose", "dense")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer, as a model describes itself to ``metrics.spikes.synaptic_ops``.

  Attributes:
    name: label for the report.
    kind: "conv" | "conv_transpose" | "dense".
    in_shape: one sample's input, ``(H, W, C_in)`` (conv) or ``(F_in,)`` or
      any shape (dense: flattened).
    out_shape: one sample's output, ``(H_out, W_out, C_out)`` or ``(F_out,)``.
      Stride and padding enter through it.
    kernel: ``(kh, kw)`` (ignored for dense).
    in_is_spikes: the input is a binary spike train: the layer costs one
      accumulate (AC) per (input spike, synapse). Otherwise it costs dense
      MACs.
    rate_key: key of ``metrics.spike_rates(...)`` holding the firing rate of the
      input spikes (the neuron module that produced them).
    rate: explicit input rate, used instead of ``rate_key``.
    steps: how many times the layer runs per sample: default T (the
      ``timesteps`` argument) for spiking input, 1 otherwise (e.g. a conv on
      a static image, computed once and repeated over T). Set it to T for a
      layer that really runs every step on real-valued input.
  """
  name: str
  kind: str
  in_shape: tuple
  out_shape: tuple
  kernel: tuple = (1, 1)
  in_is_spikes: bool = False
  rate_key: str | None = None
  rate: float | None = None
  steps: int | None = None

  def __post_init__(self):
    if self.kind not in LAYER_KINDS:
      raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; "
                       f"allowed: {', '.join(LAYER_KINDS)}")
    if self.kind != "dense" and (len(self.in_shape) != 3 or len(self.out_shape) != 3):
      raise ValueError(f"layer {self.name!r}: {self.kind} needs in_shape and "
                       f"out_shape (H, W, C), got {self.in_shape}, {self.out_shape}")

  @property
  def num_inputs(self) -> int:
    return math.prod(self.in_shape)

  @property
  def macs(self) -> int:
    """Dense multiply-accumulates of one evaluation (one sample, one step)."""
    kh, kw = self.kernel
    if self.kind == "conv":  # every output: kh*kw*C_in products
      h, w, c_out = self.out_shape
      return h * w * c_out * kh * kw * self.in_shape[2]
    if self.kind == "conv_transpose":  # every input scatters to kh*kw*C_out
      h, w, c_in = self.in_shape
      return h * w * c_in * kh * kw * self.out_shape[2]
    return self.num_inputs * math.prod(self.out_shape)

  @property
  def fan_out(self) -> float:
    """Mean synapses per input neuron = MACs / inputs.

    Conv with SAME padding: ``kh*kw*C_out / (sh*sw)`` (stride-aware); conv
    transpose: ``kh*kw*C_out``; dense: ``F_out``.
    """
    return self.macs / self.num_inputs


def spec(layer) -> LayerSpec:
  """A ``LayerSpec``, or one made from a dict of its fields."""
  if isinstance(layer, LayerSpec):
    return layer
  d = dict(layer)
  for key in ("in_shape", "out_shape", "kernel"):
    if key in d:
      d[key] = tuple(int(x) for x in np.atleast_1d(d[key]))
  return LayerSpec(**d)


OP_STAGES = ("net", "prior")


@dataclasses.dataclass(frozen=True)
class OpCount:
  """Arithmetic that is not a ``LayerSpec`` layer, per sample (all T steps):
  norms, residual adds, neuron updates, a parameter-free prior.

  Attributes:
    name: label for the report.
    macs: operations priced as a multiply-accumulate (``energy.E_MAC``).
    acs: operations priced as an add (``energy.E_AC``).
    ann_macs, ann_acs: the same work in the ANN equivalent (every step
      once; 0 for what it does not have, e.g. neuron updates); None: as
      ``macs`` / ``acs``.
    stage: "net", or "prior" for a parameter-free input stage that every
      model on that prior shares (reported apart).
  """
  name: str
  macs: float = 0.0
  acs: float = 0.0
  ann_macs: float | None = None
  ann_acs: float | None = None
  stage: str = "net"

  def __post_init__(self):
    if self.stage not in OP_STAGES:
      raise ValueError(f"op count {self.name!r}: unknown stage "
                       f"{self.stage!r}; allowed: {', '.join(OP_STAGES)}")


def field(m, key: str, default: Any = None):
  """``m[key]`` of ``config.model`` as a ConfigDict or the plain dict of a
  run's config.json, or ``default`` if it has no such field."""
  if isinstance(m, Mapping):
    return m.get(key, default)
  return m.get(key, default) if hasattr(m, "get") else getattr(m, key, default)


def conv3x3(name: str, cin: int, cout: int, hw, **kw) -> LayerSpec:
  """A 3x3 stride-1 conv at ``hw = (H, W)``."""
  h, w = hw
  return LayerSpec(name, "conv", (h, w, cin), (h, w, cout), (3, 3), **kw)
