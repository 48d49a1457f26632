"""scnn_jax.nn.nir: export to / import from NIR graphs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nir  # noqa: E402  (requirements-dev.txt: a hard requirement of these tests)

from configs import base  # noqa: E402
from scnn_jax import nn  # noqa: E402
from scnn_jax.config import builders  # noqa: E402
from scnn_jax.nn import decoders, sequential  # noqa: E402
from scnn_jax.nn import nir as snir  # noqa: E402


@pytest.fixture(scope="module")
def paper_a():
  """Paper A's SC-NN as configs/base.py builds it (LIF tau 40, reset to 0),
  width 8: built once for the tests of this file."""
  c = base.get_config()
  c.model.width = 8
  return builders.model(c, seed=1)


def _input(shape, seed=0, scale=2.0):
  return scale * jax.random.uniform(jax.random.key(seed), shape)


def _write_read(graph, tmp_path):
  path = tmp_path / "net.nir"
  nir.write(path, graph)
  return nir.read(path)  # NIR's own type check runs here


def test_paper_a_spiking_layer_graph_validates_and_has_exact_parameters(
    tmp_path, paper_a):
  model = paper_a
  model.eval()  # the inference network: no training noise
  graph = _write_read(snir.export(model.spiking, (16, 16, 4)), tmp_path)
  assert sorted(graph.edges) == [("conv", "neuron"), ("input", "conv"),
                                 ("neuron", "output")]
  assert graph.check_types()
  conv, lif = graph.nodes["conv"], graph.nodes["neuron"]
  assert isinstance(conv, nir.Conv2d) and isinstance(lif, nir.LIF)
  np.testing.assert_array_equal(
      conv.weight, np.transpose(model.spiking.conv.kernel[...], (3, 2, 0, 1)))
  np.testing.assert_array_equal(conv.padding, (1, 1))
  # Paper A's LIF: beta = exp(-1/40) at dt = 1e-4 s is tau = dt / (1 - beta).
  assert lif.tau.shape == (8, 16, 16)
  np.testing.assert_allclose(lif.tau, 1e-4 / (1 - math.exp(-1 / 40)),
                             rtol=1e-6)
  np.testing.assert_allclose(lif.r * 1e-4 / lif.tau, 1.0, rtol=1e-6)
  np.testing.assert_array_equal(lif.v_threshold, 1.0)
  np.testing.assert_array_equal(lif.v_reset, 0.0)
  assert graph.nodes["output"].output_type["output"].tolist() == [8, 16, 16]


def test_round_trip_reproduces_the_spikes_of_paper_a_spiking_layer(
    tmp_path, paper_a):
  model = paper_a
  model.eval()
  net = snir.import_(_write_read(snir.export(model.spiking, (12, 12, 4)),
                                 tmp_path))
  x = _input((8, 2, 12, 12, 4))
  want = model.spiking(x)
  assert model.spiking.neuron.reset == "zero"
  got = net(x)
  assert 0.02 < float(want.mean()) < 0.9  # spikes and silences both occur
  np.testing.assert_array_equal(got, want)


def test_round_trip_of_a_chain_with_pool_flatten_dense(tmp_path):
  rngs = nnx.Rngs(2)
  alif = nn.ALIF(tau=3.0, threshold=0.4, shape=(6,))
  alif.threshold[...] = jnp.linspace(0.2, 0.6, 6)  # per channel
  chain = [nn.SpikingConv2d(2, 6, 3, neuron=alif, rngs=rngs),
           snir.AvgPool2d((2, 2)), snir.Flatten(),
           nnx.Linear(6 * 4 * 4, 5, rngs=rngs),
           nn.LIF(beta=0.8, threshold=0.3, reset="zero")]
  graph = _write_read(snir.export(chain, (8, 8, 2)), tmp_path)
  kinds = {k: type(n).__name__ for k, n in graph.nodes.items()}
  assert kinds == {"input": "Input", "0.conv": "Conv2d", "0.neuron": "LIF",
                   "1": "AvgPool2d", "2": "Flatten", "3": "Affine",
                   "4": "LIF", "output": "Output"}
  x = _input((6, 3, 8, 8, 2), seed=3)
  want = x
  for layer in chain:
    want = layer(want)
  got = snir.import_(graph)(x)
  assert want.shape == got.shape == (6, 3, 5)
  assert 0.02 < float(want.mean()) < 0.9
  # ALIF's k = sigmoid(w) goes through tau = dt / k and back: the membrane
  # is rescaled by k, so a value within float rounding of the threshold may
  # flip; none does here.
  np.testing.assert_array_equal(got, want)
  # And the imported network exports to the same graph.
  again = snir.export(snir.import_(graph), (8, 8, 2))
  np.testing.assert_array_equal(again.nodes["layers4"].weight,
                                graph.nodes["3"].weight)


def test_spiking_sequential_exports_its_layers():
  rngs = nnx.Rngs(4)
  net = sequential.SpikingSequential(
      [nn.SpikingConv2d(2, 3, 3, neuron_kwargs=dict(reset="zero"),
                        rngs=rngs),
       nn.SpikingConv2d(3, 4, 3, strides=2, padding=1,
                        neuron_kwargs=dict(reset="zero"), rngs=rngs)])
  graph = snir.export(net, (8, 8, 2))
  assert graph.nodes["layers1.conv"].output_type["output"].tolist() == [
      4, 4, 4]


def test_unit_r_graph_is_the_same_network(tmp_path, paper_a):
  # r folded into the conv: the imported network's LIF then has input gain
  # dt / tau = 1 - beta and a conv scaled by 1 / (1 - beta); same spikes.
  model = paper_a
  model.eval()
  graph = snir.export(model.spiking, (12, 12, 4), unit_r=True)
  lif = graph.nodes["neuron"]
  np.testing.assert_array_equal(lif.r, 1.0)
  np.testing.assert_allclose(
      graph.nodes["conv"].weight,
      np.transpose(model.spiking.conv.kernel[...], (3, 2, 0, 1)) /
      (1 - math.exp(-1 / 40)), rtol=1e-5)
  x = _input((8, 2, 12, 12, 4), seed=5)
  want = model.spiking(x)
  got = snir.import_(_write_read(graph, tmp_path))(x)
  # Scaling weights by 1/(1 - beta) and the gain by (1 - beta) rounds
  # differently from the original: allow a few flips at the threshold.
  assert float(jnp.mean(got != want)) < 1e-3


def test_flatten_is_channel_first_as_in_nir():
  x = jnp.arange(2 * 3 * 4.0).reshape(1, 2, 3, 4)      # [B, H, W, C]
  np.testing.assert_array_equal(
      snir.Flatten()(x)[0], np.moveaxis(np.asarray(x[0]), -1, 0).ravel())


def _message(fn):
  with pytest.raises((snir.NIRExportError, snir.NIRImportError)) as e:
    fn()
  return str(e.value)


def test_what_nir_cannot_express_is_named(paper_a):
  model = paper_a
  model.train()
  assert _message(lambda: snir.export(model, (8, 8, 4))) == (
      "SCNN: its rate decoder (a mean over the T steps) and its ReLU convs "
      "have no NIR nodes (NIR has no ReLU); export(model.spiking, ...) writes "
      "its spiking layer, which NIR can express")
  assert _message(lambda: snir.export(model.spiking, (8, 8, 4))) == (
      "SpikingConv2d: training noise (noise_std = 0.1) has no NIR node; call "
      "model.eval() first to export the noise-free inference network")
  assert _message(lambda: snir.export(
      [nn.LIF(reset="subtract")], (4,))) == (
      "[0] (LIF): reset='subtract'; NIR's LIF resets the membrane to v_reset, "
      "a subtraction cannot be expressed (use reset='zero')")
  assert _message(lambda: snir.export(
      [decoders.TAID(4, rngs=nnx.Rngs(0))], (4,))) == (
      "[0] (TAID): TAID (learned temporal attention over all T steps) has no "
      "NIR node: NIR graphs run step by step")
  assert _message(lambda: snir.export(
      [nn.ALIF(adaptation=(4.0, 0.2))], (4,))) == (
      "[0] (ALIF): the spike-triggered threshold adaptation (a second state "
      "variable) has no NIR node")


def test_what_scnn_jax_cannot_run_is_named():
  n = np.ones(3)
  graph = nir.NIRGraph.from_list(
      nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
      nir.CubaLIF(tau_syn=n, tau_mem=n, r=n, v_leak=0 * n, v_threshold=n,
                  v_reset=0 * n))
  with pytest.raises(snir.NIRImportError) as e:
    snir.import_(graph)
  assert str(e.value) == ("cubalif (CubaLIF): scnn_jax has no current-based "
                          "(two-state) LIF")
