"""Energy estimate per image (scnn_jax.metrics.energy) against hand-counted
ops."""

import math

import pytest

from scnn_jax.metrics import energy

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


# PriorResUNet (models/resunet.py): width 2, depth 2 -> channels 2, 4, 8 at
# 16, 8, 4 px (a 15x13 image is padded to 16x16, a multiple of 2^depth).
RES_SHAPE = (15, 13, 3)
RATE = 0.25


def _res(name="spiking_resunet", **kw):
  return dict(dict(name=name, width=2, depth=2, blocks=1, T=3, neuron="alif",
                   adaptation_increment=0.0, prior_order=2, prior_iters=4),
              **kw)


# Dense MACs per evaluation: out px * C_out * taps * C_in.
RES_MACS = {
    "stem": 256 * 2 * 9 * 5,              # [prior 3, mask, depth] -> 2
    "block_convs/0/0": 256 * 2 * 9 * 2,
    "down_convs/0": 64 * 4 * 9 * 2,       # stride 2: 8x8 outputs
    "block_convs/1/0": 64 * 4 * 9 * 4,
    "down_convs/1": 16 * 8 * 9 * 4,
    "block_convs/2/0": 16 * 8 * 9 * 8,
    # upsample + 3x3 conv = four 2x2 convs of the coarse input: 4 taps
    "up/0": 64 * 4 * 4 * 8,
    "merge/0": 64 * 4 * 9 * 8,            # [up, skip] = 8 -> 4
    "up/1": 256 * 2 * 4 * 4,
    "merge/1": 256 * 2 * 9 * 4,
    "last": 256 * 3 * 9 * 2,
}
ENCODER = ("block_convs/0/0", "down_convs/0", "block_convs/1/0",
           "down_convs/1", "block_convs/2/0")
FEEDS = {"block_convs/0/0": "block_acts/0/0/neuron",
         "down_convs/0": "down_acts/0/neuron",
         "block_convs/1/0": "block_acts/1/0/neuron",
         "down_convs/1": "down_acts/1/neuron",
         "block_convs/2/0": "block_acts/2/0/neuron"}


def test_resunet_convs_by_hand_spiking_and_twin():
  from scnn_jax.models import registry
  specs, _ = registry.layer_specs(_res(), RES_SHAPE)
  assert {s.name: s.macs for s in specs} == RES_MACS
  assert {s.name: s.rate_key for s in specs if s.in_is_spikes} == FEEDS
  rates = dict.fromkeys(FEEDS.values(), RATE)
  rates["down_acts/1/neuron"] = 0.5
  out = energy.inpainting_energy(_res(), RES_SHAPE, rates)
  enc = sum(RES_MACS[k] for k in ENCODER)
  dense = sum(RES_MACS.values()) - enc
  # Encoder convs on spikes, all T = 3 steps: 3 * rate * MACs.
  assert math.isclose(out["synops"], 3 * RATE * enc
                      + 3 * (0.5 - RATE) * RES_MACS["down_convs/1"])
  assert out["macs"] == dense
  for k in ENCODER:
    assert out["layers"][k]["steps"] == 3
  # The twin: the same convs on ReLU outputs, dense MACs once.
  twin = energy.inpainting_energy(_res("relu_resunet"), RES_SHAPE)
  assert twin["synops"] == 0 and twin["macs"] == sum(RES_MACS.values())
  assert all(v["steps"] == 1 for v in twin["layers"].values())


def test_resunet_other_ops_scale_with_T_and_the_twin_is_the_ann():
  # Stream elements per step: 16*16*2 = 512, 8*8*4 = 256, 4*4*8 = 128.
  # Activations: block 0 (reads the static stem output: its norm runs
  # once), down 0 (512), block 1, down 1 (256 each), block 2 (128).
  rates = dict.fromkeys(FEEDS.values(), RATE)
  for T in (3, 6):
    out = energy.inpainting_energy(_res(T=T), RES_SHAPE, rates)["other"]
    assert out["norm"]["macs"] == 4 * (512 + T * (512 + 256 + 256 + 128))
    # T adds per stream element of each block, and prior + correction once.
    assert out["residual"]["acs"] == T * (512 + 256 + 128) + 15 * 13 * 3
    assert out["neurons"]["macs"] == T * (512 + 512 + 256 + 256 + 128)
    assert out["readout"]["acs"] == (T - 1) * (512 + 256 + 128)
  twin = energy.inpainting_energy(_res("relu_resunet", T=6), RES_SHAPE)
  o = twin["other"]
  assert o["norm"]["macs"] == 4 * 1664 and o["neurons"]["macs"] == 0
  assert o["residual"]["acs"] == 896 + 585 and o["readout"]["acs"] == 0
  assert twin["neuron_macs"] == 0
  assert math.isclose(twin["energy_j"], 4.6e-12 * (sum(RES_MACS.values())
                                                   + 4 * 1664)
                      + 0.9e-12 * (896 + 585), rel_tol=1e-12)
  spiking = energy.inpainting_energy(_res(), RES_SHAPE, rates)
  assert math.isclose(spiking["energy_j"], 0.9e-12 * (
      spiking["synops"] + 3 * 896 + 585 + 2 * 896) + 4.6e-12 * (
      spiking["macs"] + 4 * (512 + 3 * 1152) + 3 * 1664), rel_tol=1e-12)
  # The ANN equivalent of the spiking net is its twin, op for op.
  assert math.isclose(spiking["cnn_energy_j"], twin["energy_j"],
                      rel_tol=1e-12)
  # An adaptive threshold is one more MAC per neuron and step.
  adaptive = energy.inpainting_energy(_res(adaptation_increment=0.1),
                                      RES_SHAPE, rates)
  assert adaptive["neuron_macs"] == 2 * 3 * 1664


def test_resunet_prior_is_apart_the_same_for_both_and_counts_cg_steps():
  rates = dict.fromkeys(FEEDS.values(), RATE)
  spiking = energy.inpainting_energy(_res(), RES_SHAPE, rates)
  twin = energy.inpainting_energy(_res("relu_resunet"), RES_SHAPE)
  assert spiking["prior_energy_j"] == twin["prior_energy_j"] > 0
  assert spiking["other"]["prior"]["stage"] == "prior"
  # One more CG step: the biharmonic operator (two Laplacians, 3 adds and a
  # MAC each), the mask, two inner products, three updates = 8 MACs and 6
  # ACs per pixel and channel, on the 15x13 level and the 8x7 one below it.
  more = energy.inpainting_energy(_res("relu_resunet", prior_iters=5),
                                  RES_SHAPE)
  px = (15 * 13 + 8 * 7) * 3
  assert math.isclose(more["prior_energy_j"] - twin["prior_energy_j"],
                      px * (8 * 4.6e-12 + 6 * 0.9e-12), rel_tol=1e-9)
  assert more["energy_j"] == twin["energy_j"]   # the prior is not in it
  # Depth map: 31 erosions of 8 compares plus their sum, one log, per px.
  assert spiking["other"]["depth_map"]["acs"] == 15 * 13 * 31 * 9
  assert "spiking_resunet" in energy.MODELS


def _resunet_config(name, **model):
  from scnn_jax.config import schema
  from scnn_jax.config import files as config_files
  c = schema.validate(config_files.load(f"configs/{name}.py").get_config())
  c.model.update(dict(dict(width=2, depth=2, blocks=2, T=2, prior_iters=2),
                      **model))
  return c


def test_resunet_rate_keys_are_the_trainer_eval_keys():
  # The eval step the trainer compiles (capture of the neurons' record_rate,
  # spike_rates, pmean over the device axis), traced on a 16x16 batch.
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from scnn_jax.runtime import state as state_lib
  from scnn_jax.runtime import steps
  from scnn_jax.ops.collectives import AXIS
  from scnn_jax.models import registry
  from scnn_jax.tasks.inpaint import InpaintTask

  config = _resunet_config("spiking_resunet")
  shape = (16, 16, 3)
  model = nnx.eval_shape(lambda: registry.build(config, shape,
                                                rngs=nnx.Rngs(0)))
  graphs, params, rest = state_lib.split_model(model)
  task = InpaintTask(config)
  step = jax.vmap(steps.make_eval_step(task.predict, graphs.eval),
                  in_axes=(None, 0), axis_name=AXIS)
  batch = {"image": jax.ShapeDtypeStruct((1, 2) + shape, jnp.float32),
           "mask": jax.ShapeDtypeStruct((1, 2, 16, 16, 1), jnp.float32)}
  _, rates = jax.eval_shape(step, {"params": params, "rest": rest}, batch)
  specs, others = model.layer_specs(shape)
  assert {s.rate_key for s in specs if s.rate_key} == set(rates)
  assert len(rates) == 3 * 2 + 2          # 2 blocks at 3 scales, 2 downs
  # The config alone describes the same model.
  assert registry.layer_specs(config.model, shape) == (specs, others)
  # The trainer's results.json SynOps, and 0 for the twin.
  rates = dict.fromkeys(rates, RATE)
  synops = task.synaptic_ops(config, shape, rates)
  assert synops == energy.inpainting_energy(config.model, shape,
                                            rates)["synops"] > 0
  assert task.synaptic_ops(config, shape, {}) is None
  twin = _resunet_config("relu_resunet")
  assert task.synaptic_ops(twin, shape, {}) == 0.0


def test_resunet_description_names_a_missing_field():
  with pytest.raises(ValueError, match="model.blocks is missing"):
    energy.inpainting_energy({"name": "relu_resunet", "width": 2, "depth": 2,
                              "neuron": "lif"}, RES_SHAPE)
