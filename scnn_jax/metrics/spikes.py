"""Spike accounting: firing rates of a model's spiking layers and synaptic
operations.

``spike_rates`` reads ``nnx.capture(model, SpikeRate)``: the ONE reading of
those captures, used inside the jitted train / eval steps (values stay JAX
scalars) and on the host (``float(v)``). ``synaptic_ops`` counts accumulate
(AC) and multiply-accumulate (MAC) operations from a model's layer
descriptions (``models.specs.LayerSpec``) and those rates;
``metrics.energy`` prices them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import jax.numpy as jnp
from flax import nnx

from scnn_jax.models.specs import LayerSpec, spec


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
  for layer in map(spec, layers):
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
