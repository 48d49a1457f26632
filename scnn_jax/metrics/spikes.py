"""Spike accounting: firing rates of a model's spiking layers, synaptic
operations and the arithmetic energy estimate.

``spike_rates`` reads ``nnx.capture(model, SpikeRate)``: the ONE reading of
those captures, used inside the jitted train / eval steps (values stay JAX
scalars) and on the host (``float(v)``). ``synaptic_ops`` /
``energy_estimate`` count accumulate (AC) and multiply-accumulate (MAC)
operations from a list of layer descriptions (``LayerSpec``) and those rates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx


def _path_key(path) -> str:
  parts = [str(p) for p in path]
  if len(parts) > 1 and parts[-1] == "rate":
    parts = parts[:-1]  # the sow name; the module path identifies the layer
  return "/".join(parts)


def _mean_rate(value):
  if hasattr(value, "get_value"):
    value = value.get_value()
  if isinstance(value, (tuple, list)):
    return jnp.mean(jnp.stack([jnp.mean(jnp.asarray(v, jnp.float32))
                               for v in value]))
  return jnp.mean(jnp.asarray(value, jnp.float32))


def spike_rates(captured) -> dict:
  """``{"module/path": mean rate}`` from ``nnx.capture(model, SpikeRate)(x)[1]``.

  The rate is spikes per neuron per time step (in [0, 1]) averaged over the
  batch and T; each value is a float32 JAX scalar (jittable; ``float(v)`` on
  the host). The key is the module path joined by "/" (the trailing sow name
  "rate" dropped), e.g. ``"spiking/neuron"``, ``"blocks/0/neuron"``; a model
  that is itself the neuron gets ``"rate"``. A module called several times in
  one forward (several values in its tuple) gets the mean of its calls; a
  leading vmap axis is averaged too. Also accepts a nested dict of values
  (``State.to_pure_dict()``).
  """
  if isinstance(captured, nnx.State):
    items = list(nnx.to_flat_state(captured))
  else:
    items = []

    def walk(prefix, node):
      if isinstance(node, Mapping):
        for k, v in node.items():
          walk(prefix + (k,), v)
      else:
        items.append((prefix, node))
    walk((), captured)
  return {_path_key(path): _mean_rate(value) for path, value in items}


# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 32-bit float:
# add 0.9 pJ, multiply 3.7 pJ -> MAC 4.6 pJ.
E_AC = 0.9e-12
E_MAC = 4.6e-12
LAYER_KINDS = ("conv", "conv_transpose", "dense")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer, as a model describes itself to ``synaptic_ops``.

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
    rate_key: key of ``spike_rates(...)`` holding the firing rate of the
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


def _spec(layer) -> LayerSpec:
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
    macs: operations priced as a multiply-accumulate (``E_MAC``).
    acs: operations priced as an add (``E_AC``).
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


def synaptic_ops(layers: Iterable[LayerSpec | Mapping[str, Any]],
                 rates: Mapping[str, float] | None = None,
                 timesteps: int = 1) -> dict:
  """Synaptic operations per sample (one input, all T steps) and the ANN MACs.

  For a layer with spiking input: ``SynOps = steps * rate * num_inputs *
  fan_out = steps * rate * MACs`` (input spikes times the synapses each one
  drives; rate = spikes per neuron per step). For a layer with real-valued
  input: ``steps * MACs`` dense MACs. The ANN equivalent runs every layer
  once: ``sum MACs``.

  Args:
    layers: ``LayerSpec``s or dicts with its fields.
    rates: ``spike_rates(captured)`` (needed for layers with ``rate_key``).
    timesteps: T.

  Returns:
    ``{"layers": {name: {kind, macs, fan_out, steps, rate, synops, mac_ops}},
    "synops": total ACs, "snn_macs": total MACs of the spiking network,
    "ann_macs": total MACs of the ANN equivalent}``.
  """
  rates = {} if rates is None else rates
  report, syn_total, mac_total, ann_total = {}, 0.0, 0.0, 0.0
  for layer in map(_spec, layers):
    steps = layer.steps if layer.steps is not None else (
        timesteps if layer.in_is_spikes else 1)
    rate, synops, mac_ops = None, 0.0, 0.0
    if layer.in_is_spikes:
      if layer.rate is not None:
        rate = float(layer.rate)
      elif layer.rate_key is not None:
        if layer.rate_key not in rates:
          raise ValueError(f"layer {layer.name!r}: rate_key {layer.rate_key!r} "
                           f"not among the rates ({', '.join(rates) or 'none'})")
        rate = float(rates[layer.rate_key])
      else:
        raise ValueError(f"layer {layer.name!r} has spiking input but neither "
                         f"rate nor rate_key")
      synops = steps * rate * layer.macs
    else:
      mac_ops = float(steps * layer.macs)
    report[layer.name] = dict(kind=layer.kind, macs=layer.macs,
                              fan_out=layer.fan_out, steps=steps, rate=rate,
                              synops=synops, mac_ops=mac_ops)
    syn_total += synops
    mac_total += mac_ops
    ann_total += layer.macs
  return dict(layers=report, synops=syn_total, snn_macs=mac_total,
              ann_macs=float(ann_total))


def energy_estimate(layers, rates=None, timesteps: int = 1, *,
                    e_ac: float = E_AC, e_mac: float = E_MAC) -> dict:
  """Arithmetic energy per sample, spiking network vs its ANN equivalent.

  ``E_snn = e_ac * SynOps + e_mac * snn_MACs``, ``E_ann = e_mac * ann_MACs``
  with the 45 nm figures of Horowitz (ISSCC 2014): AC 0.9 pJ, MAC 4.6 pJ.
  An ESTIMATE: memory access, neuron state updates and data movement are
  not counted, and it assumes hardware that skips zero spikes.

  Returns ``synaptic_ops(...)`` plus ``snn_energy_j``, ``ann_energy_j`` and
  ``energy_ratio`` (snn / ann).
  """
  ops = synaptic_ops(layers, rates, timesteps)
  snn = e_ac * ops["synops"] + e_mac * ops["snn_macs"]
  ann = e_mac * ops["ann_macs"]
  return dict(ops, snn_energy_j=snn, ann_energy_j=ann,
              energy_ratio=snn / ann if ann > 0 else math.nan)
