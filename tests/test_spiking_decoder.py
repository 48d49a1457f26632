"""scnn_jax.models.spiking_decoder: decoders (rate / fixed decay / TAID)
inside a model, shapes, gradients into TAID's T x T matrix, trainer run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax.config import builders
from scnn_jax.models.spiking_decoder import SpikingDecoderSCNN
from scnn_jax.nn import decoders
from scnn_jax.runtime import inference
from scnn_jax.training import trainer
from tests.workdirs import eval_loaded

T, B, H, W = 4, 3, 8, 8


def _model(decoder, **kw):
  return SpikingDecoderSCNN(
      4, 3, width=6, T=T, num_layers=3, neuron="alif",
      neuron_kwargs=dict(tau=2.0, threshold=0.5, surrogate="atan",
                         surrogate_param=2.0),
      decoder=decoder, rngs=nnx.Rngs(0), **kw)


def _x():
  return jax.random.uniform(jax.random.key(1), (B, H, W, 4))


@pytest.mark.parametrize("decoder", ["rate", "fixed_decay", "taid"])
def test_shapes_and_decoder_of_the_sequence(decoder):
  model = _model(decoder)
  model.eval()
  x = _x()
  seq, out = nnx.jit(lambda m, x: (m.sequence(x), m(x)))(model, x)
  assert seq.shape == (T, B, H, W, 3)          # real-valued, time-major
  assert len(np.unique(np.asarray(seq))) > 2    # not spikes
  assert out.shape == (B, H, W, 3)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # The image is the decoder of the sequence, then the sigmoid.
  if decoder == "rate":
    want = decoders.rate(seq)
  elif decoder == "fixed_decay":
    want = decoders.fixed_decay(seq, 0.8)
  else:
    assert model.decoder.W.shape == (T, T)
    want = decoders.taid(seq, model.decoder.W[...])
  np.testing.assert_allclose(out, jax.nn.sigmoid(want), rtol=1e-5, atol=1e-6)


def test_gradients_reach_taid_matrix_and_first_layer():
  model = _model("taid")
  model.eval()
  x, target = _x(), jax.random.uniform(jax.random.key(2), (B, H, W, 3))
  graph, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def grads_and_sequence(params, rest):
    def loss(params):
      m = nnx.merge(graph, params, rest)
      return jnp.mean((m(x) - target) ** 2)
    return jax.grad(loss)(params), nnx.merge(graph, params, rest).sequence(x)

  grads, seq = grads_and_sequence(params, rest)
  g_w = np.asarray(grads["decoder"]["W"][...])
  assert g_w.shape == (T, T)
  assert np.all(np.isfinite(g_w)) and np.abs(g_w).max() > 0
  # The gradient the model gives TAID's matrix is the decoder's own gradient
  # on the model's sequence (steps with an all-zero output, e.g. before the
  # first spikes reach the last layer, rightly get none).
  want = jax.grad(lambda w: jnp.mean(
      (jax.nn.sigmoid(decoders.taid(seq, w)) - target) ** 2))(
          params["decoder"]["W"][...])
  np.testing.assert_allclose(g_w, want, rtol=1e-4, atol=1e-9)
  g_first = np.asarray(grads["spiking"][0]["conv"]["kernel"][...])
  assert np.abs(g_first).max() > 0             # through the spikes (surrogate)


def test_spiking_layers_mix_spiking_and_relu_layers():
  model = _model("rate", spiking_layers=1)
  assert len(model.spiking) == 1 and len(model.convs) == 1
  with pytest.raises(ValueError, match="spiking_layers"):
    _model("rate", spiking_layers=3)


def test_trains_under_the_sharded_step_and_learns_taid(tmp_path,
                                                       tiny_config):
  config = tiny_config("spiking_decoder")
  summary = trainer.train_and_evaluate(config, tmp_path)
  # The sharded evaluation is the loaded model's, outside any mesh.
  again = eval_loaded(tmp_path)
  for key in ("masked_mse", "hole_psnr"):
    assert summary["eval"][key] == pytest.approx(again[key], rel=1e-5), key
  assert set(summary["eval"]["spike_rate"]) == {"spiking/0/neuron",
                                                "spiking/1/neuron"}
  for key, rate in summary["eval"]["spike_rate"].items():
    assert rate == pytest.approx(again["spike_rate"][key], rel=1e-5), key
  loaded = inference.load(tmp_path)
  fresh = builders.model(loaded.config)
  trained_w = np.asarray(loaded.model.decoder.W[...])
  assert trained_w.shape == (2, 2)
  assert not np.allclose(trained_w, np.asarray(fresh.decoder.W[...]))
