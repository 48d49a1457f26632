"""Arithmetic energy per image of the inpainting models, from their SynOps.

An ESTIMATE in the style of the SNN literature: count the arithmetic one
inference of one image performs and price each operation with the 45 nm CMOS
figures of M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, doi:10.1109/ISSCC.2014.6757323 (0.9 V): 32-bit float add
0.9 pJ, 32-bit float multiply 3.7 pJ, so a multiply-accumulate (MAC) costs
4.6 pJ and an accumulate (AC) 0.9 pJ (``metrics.E_MAC``, ``metrics.E_AC``).

What is counted, per image (``metrics.synaptic_ops`` does the layer sums):

* a conv on real-valued input: dense MACs, once per time step it runs (a
  direct-encoded image is convolved ONCE and reused for all T steps);
* a conv on spikes: one AC per (input spike, synapse): ``T x rate x MACs``
  SynOps, with the measured firing rate of the layer that feeds it;
* neuron updates: one MAC per neuron per step (``v = beta v + I``; the
  threshold compare and reset are not counted);
* the time decoder of ``spiking_decoder`` models: one MAC per output value
  per step (weighted sum over T);
* for the models that describe themselves (``models.registry.LAYER_SPECS``:
  ``spiking_resunet``, ``relu_resunet``), their other arithmetic
  (``metrics.spikes.OpCount``: norms, residual adds, neuron updates) and,
  reported apart as ``prior_energy_j`` and NOT in ``energy_j``, their
  parameter-free prior (the ``smooth_fill`` CG steps, the depth map), which
  is the same for every model on that prior.

Not counted: memory traffic (which dominates real chips: an 8 kB SRAM read
costs ~10 pJ per 64 bits in the same table, more than the MAC), activation
functions, the output sigmoid, and the training noise (inference only). The
SynOps assume hardware that skips absent spikes. Read the numbers as a
comparison of operation counts at one price list, not as a measurement.

Model descriptions read the fields of ``config.model`` (a ConfigDict or the
plain dict of a run's config.json) and the spike rates of ``results.json``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from scnn_jax import metrics
from scnn_jax.metrics.spikes import OpCount
from scnn_jax.models import registry

E_MAC = metrics.E_MAC      # J, 32-bit float multiply (3.7 pJ) + add (0.9 pJ)
E_AC = metrics.E_AC        # J, 32-bit float add
SOURCE = ("Horowitz, ISSCC 2014, 45 nm, 0.9 V: 32-bit float add 0.9 pJ, "
          "multiply 3.7 pJ (MAC 4.6 pJ, AC 0.9 pJ)")
MODELS = ("scnn", "cnn", "spiking_decoder") + tuple(registry.LAYER_SPECS)


def _get(m, key, default=None):
  if isinstance(m, Mapping):
    return m.get(key, default)
  return m.get(key, default) if hasattr(m, "get") else getattr(m, key, default)


def _conv(name, cin, cout, hw, **kw) -> metrics.LayerSpec:
  h, w = hw
  return metrics.LayerSpec(name, "conv", (h, w, cin), (h, w, cout), (3, 3),
                           **kw)


def inpainting_layers(m, image_shape, input_rate: float | None = None):
  """``(layer specs, neuron updates per image)`` of an inpainting model
  that ``models.registry.layer_specs`` does not describe.

  Args:
    m: ``config.model`` of a run (``name`` in ``MODELS``).
    image_shape: ``(H, W, C)`` of the images.
    input_rate: mean firing probability of a Bernoulli-encoded input
      (``model.encoder="rate"``); needed only then.
  """
  name = _get(m, "name")
  if name not in MODELS:
    raise ValueError(f"energy: unknown model {name!r}; allowed: "
                     f"{', '.join(MODELS)}")
  h, w, c = image_shape
  hw = (h, w)
  cin = c + (1 if _get(m, "mask_channel", True) else 0)
  width, L = _get(m, "width"), _get(m, "num_layers")
  T = _get(m, "T", 1)
  rate_input = _get(m, "encoder", "direct") == "rate"
  if rate_input and input_rate is None:
    raise ValueError("energy: model.encoder='rate' needs input_rate (the "
                     "mean firing probability of the encoded input)")
  first = dict(in_is_spikes=True, rate=input_rate, steps=T) if rate_input \
      else dict(steps=1)
  outs = [width] * (L - 1) + [c]
  if name == "cnn":
    specs = [_conv(f"conv{i}", cin if i == 0 else width, outs[i], hw)
             for i in range(L)]
    return specs, 0.0
  if name == "scnn":
    specs = [_conv("spiking", cin, width, hw, **first),
             _conv("conv1", width, outs[1], hw, in_is_spikes=True,
                   rate_key="spiking/neuron", steps=T)]
    specs += [_conv(f"conv{i}", width, outs[i], hw) for i in range(2, L)]
    return specs, float(h * w * width * T)
  # spiking_decoder: every layer runs at each of the T steps.
  n_spiking = _get(m, "spiking_layers", None) or L - 1
  specs = []
  for i in range(L):
    cin_i = cin if i == 0 else width
    if i == 0:
      kw = first
    elif i <= n_spiking:           # fed by spiking layer i - 1
      kw = dict(in_is_spikes=True, rate_key=f"spiking/{i - 1}/neuron",
                steps=T)
    else:                          # ReLU conv on real values, every step
      kw = dict(steps=T)
    specs.append(_conv(f"layer{i}", cin_i, outs[i], hw, **kw))
  decoder = float(h * w * c * T)   # weighted sum over T of the last conv
  return specs, float(h * w * width * T * n_spiking) + decoder


def inpainting_energy(m, image_shape, rates: Mapping[str, float] | None = None,
                      input_rate: float | None = None) -> dict[str, Any]:
  """Operation counts and estimated energy per image.

  Returns ``{"synops", "macs", "neuron_macs", "energy_j", "cnn_energy_j",
  "layers", "other", "prior_energy_j"}`` (``macs``: dense MACs of the convs;
  ``neuron_macs``: neuron and decoder updates; ``cnn_energy_j``: every conv
  as dense MACs once and the other ops of the ANN equivalent, e.g. the
  ``relu_resunet`` twin of ``spiking_resunet``; ``other``: ``{name: {macs,
  acs, ann_macs, ann_acs, stage}}`` of the ``OpCount`` lines;
  ``prior_energy_j``: the stage "prior" lines, 0 for models without one).
  Rates are spikes per neuron per step, keyed as in ``results.json``
  (``eval.spike_rate``).
  """
  described = registry.layer_specs(m, image_shape)
  if described is None:
    specs, neuron_macs = inpainting_layers(m, image_shape, input_rate)
    others = [OpCount("neurons", macs=neuron_macs, ann_macs=0.0)]
  else:
    specs, others = described
  ops = metrics.synaptic_ops(specs, rates or {}, timesteps=_get(m, "T", 1))
  price = lambda macs, acs: E_MAC * macs + E_AC * acs
  net = [o for o in others if o.stage == "net"]
  energy = E_AC * ops["synops"] + E_MAC * ops["snn_macs"] + sum(
      price(o.macs, o.acs) for o in net)
  ann = E_MAC * ops["ann_macs"] + sum(
      price(o.macs if o.ann_macs is None else o.ann_macs,
            o.acs if o.ann_acs is None else o.ann_acs) for o in net)
  return {"synops": ops["synops"], "macs": ops["snn_macs"],
          "neuron_macs": sum(o.macs for o in others if o.name == "neurons"),
          "energy_j": energy, "cnn_energy_j": ann,
          "prior_energy_j": sum(price(o.macs, o.acs) for o in others
                                if o.stage == "prior"),
          "layers": ops["layers"],
          "other": {o.name: dataclasses.asdict(o) for o in others}}


def energy_uj(record: Mapping[str, Any], input_rate: float | None = None):
  """Energy per image in µJ of one ``scripts/seed_runs.py`` result record,
  or None for a model this module does not describe."""
  config = record.get("config", {})
  m = config.get("model", {})
  if config.get("task", "inpaint") != "inpaint" or m.get("name") not in MODELS:
    return None
  d = config.get("data", {})
  shape = (d.get("image_size"), d.get("image_size"), d.get("channels"))
  rates = (record.get("eval") or {}).get("spike_rate", {})
  out = inpainting_energy(m, shape, rates, input_rate)
  return out["energy_j"] * 1e6 if math.isfinite(out["energy_j"]) else None
