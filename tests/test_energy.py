"""Energy estimate per image (scnn_jax.energy) against hand-counted ops."""

import math

import pytest

from scnn_jax import energy

SHAPE = (4, 4, 3)     # 4x4 RGB; with the mask channel the input has 4


def _m(**kw):
  return dict(dict(name="scnn", width=2, num_layers=3, T=8, mask_channel=True,
                   encoder="direct"), **kw)


def test_scnn_counts_by_hand():
  # spiking conv on the static image once: 16 px * 2 out * 9 * 4 in = 1152
  # MACs; conv1 on spikes: 16 * 2 * 9 * 2 = 576 synapses, T * rate * 576 =
  # 8 * 0.25 * 576 = 1152 SynOps; last conv 16 * 3 * 9 * 2 = 864 MACs;
  # neurons 16 * 2 * 8 = 256 updates.
  out = energy.inpainting_energy(_m(), SHAPE, {"spiking/neuron": 0.25})
  assert out["synops"] == 1152 and out["macs"] == 1152 + 864
  assert out["neuron_macs"] == 256
  assert math.isclose(out["energy_j"], 0.9e-12 * 1152
                      + 4.6e-12 * (1152 + 864 + 256), rel_tol=1e-12)
  assert math.isclose(out["cnn_energy_j"], 4.6e-12 * (1152 + 576 + 864),
                      rel_tol=1e-12)
  cnn = energy.inpainting_energy(_m(name="cnn"), SHAPE)
  assert cnn["synops"] == 0 and cnn["macs"] == 1152 + 576 + 864
  assert math.isclose(cnn["energy_j"], out["cnn_energy_j"], rel_tol=1e-12)


def test_rate_encoded_input_and_spiking_decoder_by_hand():
  # Bernoulli input at rate 0.3: the first conv costs T * 0.3 * 1152 ACs.
  out = energy.inpainting_energy(_m(encoder="rate"), SHAPE,
                                 {"spiking/neuron": 0.25}, input_rate=0.3)
  assert math.isclose(out["synops"], 8 * 0.3 * 1152 + 1152)
  with pytest.raises(ValueError, match="encoder='rate' needs input_rate"):
    energy.inpainting_energy(_m(encoder="rate"), SHAPE,
                             {"spiking/neuron": 0.25})
  # spiking_decoder, 2 spiking layers, T = 2: layer 1 on spikes of rate 0.5
  # (2 * 0.5 * 576), the last conv on spikes of rate 0.1 (2 * 0.1 * 864);
  # neurons 2 layers * 16 * 2 * 2; decoder 16 * 3 * 2.
  m = _m(name="spiking_decoder", T=2, spiking_layers=2)
  out = energy.inpainting_energy(
      m, SHAPE, {"spiking/0/neuron": 0.5, "spiking/1/neuron": 0.1})
  assert math.isclose(out["synops"], 576 + 172.8)
  assert out["macs"] == 1152 and out["neuron_macs"] == 128 + 96
  # One spiking layer: the ReLU conv after it runs on real values each step.
  out = energy.inpainting_energy(dict(m, spiking_layers=1), SHAPE,
                                 {"spiking/0/neuron": 0.5})
  assert math.isclose(out["synops"], 576) and out["macs"] == 1152 + 2 * 864


def test_energy_uj_reads_a_result_record_and_skips_other_tasks():
  record = {"config": {"task": "inpaint", "model": _m(),
                       "data": {"image_size": 4, "channels": 3}},
            "eval": {"spike_rate": {"spiking/neuron": 0.25}}}
  assert math.isclose(energy.energy_uj(record), 1e6 * (
      0.9e-12 * 1152 + 4.6e-12 * 2272), rel_tol=1e-12)
  assert energy.energy_uj({"config": {"task": "classify", "model": {}}}) is None
  with pytest.raises(ValueError, match="unknown model 'unet'"):
    energy.inpainting_energy(_m(name="unet"), SHAPE)
