"""Arithmetic energy per image of the inpainting models, from their SynOps.

An ESTIMATE in the style of the SNN literature: count the arithmetic one
inference of one image performs and price each operation with the 45 nm CMOS
figures of M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, doi:10.1109/ISSCC.2014.6757323 (0.9 V): 32-bit float add
0.9 pJ, 32-bit float multiply 3.7 pJ, so a multiply-accumulate (MAC) costs
4.6 pJ and an accumulate (AC) 0.9 pJ (``E_MAC``, ``E_AC``).

The ONE formula (``estimate``): a model describes one image as layer specs
and other operation counts (``scnn_jax.models.specs``; ``models.registry.
layer_specs`` finds them by name), ``metrics.spikes.synaptic_ops`` counts
the layers with the measured spike rates, and

    energy = E_AC * SynOps + E_MAC * MACs + the other counts, each priced
             as MACs or ACs

What the models count, per image:

* a conv on real-valued input: dense MACs, once per time step it runs (a
  direct-encoded image is convolved ONCE and reused for all T steps);
* a conv on spikes: one AC per (input spike, synapse): ``T x rate x MACs``
  SynOps, with the measured firing rate of the layer that feeds it;
* neuron updates: one MAC per neuron per step (``v = beta v + I``; the
  threshold compare and reset are not counted);
* the time decoder of ``spiking_decoder`` models: one MAC per output value
  per step (weighted sum over T);
* the residual U-Nets' other arithmetic (norms, residual adds, the
  readout) and, reported apart as ``prior_energy_j`` and NOT in
  ``energy_j``, their parameter-free prior (the ``smooth_fill`` CG steps,
  the depth map), which is the same for every model on that prior.

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

from scnn_jax.metrics.spikes import synaptic_ops
from scnn_jax.models import registry
from scnn_jax.models.specs import OpCount, field

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 32-bit float:
# add 0.9 pJ, multiply 3.7 pJ -> MAC 4.6 pJ.
E_MAC = 4.6e-12    # J, 32-bit float multiply (3.7 pJ) + add (0.9 pJ)
E_AC = 0.9e-12     # J, 32-bit float add
SOURCE = ("Horowitz, ISSCC 2014, 45 nm, 0.9 V: 32-bit float add 0.9 pJ, "
          "multiply 3.7 pJ (MAC 4.6 pJ, AC 0.9 pJ)")
# The inpainting models that describe their arithmetic.
MODELS = tuple(registry.LAYER_SPECS)


def estimate(specs, others=(), rates: Mapping[str, float] | None = None,
             timesteps: int = 1, *, e_ac: float = E_AC,
             e_mac: float = E_MAC) -> dict[str, Any]:
  """Operation counts and estimated energy per sample of a network described
  by ``specs`` (``LayerSpec`` list) and ``others`` (``OpCount`` list).

  Returns ``synaptic_ops(...)`` (``layers``, ``synops``, ``snn_macs``,
  ``ann_macs``) and ``macs`` (dense MACs of the layers), ``neuron_macs``
  (the ``"neurons"`` counts: neuron and decoder updates), ``energy_j``,
  ``cnn_energy_j`` (every layer as dense MACs once and the other counts of
  the ANN equivalent), ``energy_ratio`` (energy / cnn energy), ``other``
  (``{name: {macs, acs, ann_macs, ann_acs, stage}}``) and
  ``prior_energy_j`` (the stage "prior" counts, not in ``energy_j``).
  Rates are spikes per neuron per step, keyed as ``metrics.spike_rates``.
  """
  ops = synaptic_ops(specs, rates or {}, timesteps=timesteps)
  price = lambda macs, acs: e_mac * macs + e_ac * acs
  net = [o for o in others if o.stage == "net"]
  energy = e_ac * ops["synops"] + e_mac * ops["snn_macs"] + sum(
      price(o.macs, o.acs) for o in net)
  ann = e_mac * ops["ann_macs"] + sum(
      price(o.macs if o.ann_macs is None else o.ann_macs,
            o.acs if o.ann_acs is None else o.ann_acs) for o in net)
  return dict(ops, macs=ops["snn_macs"],
              neuron_macs=sum(o.macs for o in others if o.name == "neurons"),
              energy_j=energy, cnn_energy_j=ann,
              energy_ratio=energy / ann if ann > 0 else math.nan,
              prior_energy_j=sum(price(o.macs, o.acs) for o in others
                                 if o.stage == "prior"),
              other={o.name: dataclasses.asdict(o) for o in others})


def inpainting_energy(m, image_shape, rates: Mapping[str, float] | None = None,
                      input_rate: float | None = None) -> dict[str, Any]:
  """``estimate`` of one ``(H, W, C)`` image through the model of
  ``config.model`` (a ConfigDict or the plain dict of a run's config.json),
  from the layer specs it declares. ``input_rate``: the mean firing
  probability of a rate-encoded input (``model.encoder="rate"``)."""
  described = registry.layer_specs(m, image_shape, input_rate)
  if described is None:
    raise ValueError(f"energy: unknown model {field(m, 'name')!r}; allowed: "
                     f"{', '.join(MODELS)}")
  specs, others = described
  return estimate(specs, others, rates, timesteps=field(m, "T", 1))


def energy_uj(record: Mapping[str, Any], input_rate: float | None = None):
  """Energy per image in µJ of one ``scripts/seed_runs.py`` result record,
  or None for a model that does not describe its arithmetic."""
  config = record.get("config", {})
  m = config.get("model", {})
  if config.get("task", "inpaint") != "inpaint" or m.get("name") not in MODELS:
    return None
  d = config.get("data", {})
  shape = (d.get("image_size"), d.get("image_size"), d.get("channels"))
  rates = (record.get("eval") or {}).get("spike_rate", {})
  out = inpainting_energy(m, shape, rates, input_rate)
  return out["energy_j"] * 1e6 if math.isfinite(out["energy_j"]) else None
