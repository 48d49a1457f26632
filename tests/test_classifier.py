"""scnn_jax.models.classifier: paper B's voting layer and count rate, its
BatchNorm on 1 and 8 devices, paper B's nets as the configs build them, the
ALIF learning switches."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import cifar10_alif, mnist_alif
from scnn_jax import tasks
from scnn_jax.config import builders, schema
from scnn_jax.models import classifier
from scnn_jax.nn.variables import NeuronParam
from scnn_jax.runtime import parallel, steps
from scnn_jax.runtime import state as state_lib


def test_vote_layer_averages_groups_of_ten():
  spikes = np.zeros((3, 100), np.float32)
  spikes[0, 20:25] = 1        # class 2: 5 of its 10 neurons
  spikes[1, 90:100] = 1       # class 9: all
  spikes[2, 9:11] = 1         # one neuron of class 0, one of class 1
  out = np.asarray(classifier.vote(jnp.asarray(spikes), 10))
  want = np.zeros((3, 10), np.float32)
  want[0, 2], want[1, 9], want[2, 0], want[2, 1] = 0.5, 1.0, 0.1, 0.1
  np.testing.assert_allclose(out, want)
  with pytest.raises(ValueError, match="groups of 10"):
    classifier.vote(jnp.zeros((2, 95)), 10)


def test_count_rate_is_spike_count_over_T():
  rng = np.random.default_rng(0)
  spikes = (rng.random((8, 4, 30)) < 0.3).astype(np.float32)   # T=8, K=3
  rate = np.asarray(classifier.count_rate(jnp.asarray(spikes), 10))
  count = spikes.reshape(8, 4, 3, 10).sum(axis=(0, 3)) / 10    # per group
  np.testing.assert_allclose(rate, count / 8, rtol=1e-6)


def _fixed_batch(n=16, size=12, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, size, size, 1)).astype(np.float32),
          "mask": np.zeros((n, size, size, 1), np.float32),
          "label": rng.integers(0, 10, n).astype(np.int32),
          "valid": np.ones(n, np.float32),
          "example_id": np.arange(n, dtype=np.int32)}


def _run_steps(config, devices, batch, n=2):
  task = tasks.get(config)
  spec = types.SimpleNamespace(image_shape=batch["image"].shape[1:],
                               num_classes=10)
  tx = builders.optimizer(config)
  mesh = parallel.make_mesh(devices)
  state, graphs = state_lib.create_state(builders.model(config, spec), tx)
  init_rest = jax.device_get(state["rest"])
  state = parallel.replicate(mesh, state)
  train_fn, _ = steps.compile_steps(task, graphs, tx, mesh, "stop")
  key = parallel.replicate(mesh, jax.random.key(3))
  losses = []
  for _ in range(n):
    state, m = train_fn(state, parallel.global_batch(mesh, batch), key)
    losses.append(jax.device_get(m))
  return jax.device_get(state), losses, init_rest


def _bn_stats(rest):
  return {"/".join(map(str, p)): np.asarray(v.get_value())
          for p, v in nnx.to_flat_state(rest)
          if isinstance(v, nnx.BatchStat)}


def test_batchnorm_8_devices_equals_1_device(tiny_config):
  """Same global batch on 1 and 8 devices: same loss, running statistics,
  parameters (BN statistics are averaged over "data";
  dropout masks follow example ids, not devices); the running mean is the
  momentum update with the mean over the WHOLE global batch and all T steps."""
  assert jax.device_count() == 8
  config = schema.validate(tiny_config("classify"))
  config.model.augment = "none"
  batch = _fixed_batch()
  one = _run_steps(config, jax.devices()[:1], batch, n=1)
  eight = _run_steps(config, jax.devices(), batch, n=1)
  for a, b in zip(one[1], eight[1]):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
    np.testing.assert_allclose(a["accuracy"], b["accuracy"])
  stats1, stats8 = _bn_stats(one[0]["rest"]), _bn_stats(eight[0]["rest"])
  init = _bn_stats(one[2])
  assert len(stats1) == 4                       # mean + var of 2 BN layers
  for name in stats1:
    assert not np.allclose(stats1[name], init[name]), name    # updated
    np.testing.assert_allclose(stats1[name], stats8[name], rtol=1e-4,
                               atol=1e-6, err_msg=name)
  for a, b in zip(jax.tree.leaves(one[0]["params"]),
                  jax.tree.leaves(eight[0]["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The first BN's running mean from the global batch (outside shard_map).
  model = builders.model(config, types.SimpleNamespace(
      image_shape=(12, 12, 1), num_classes=10))
  conv_out = model.static.conv(model.normalize(jnp.asarray(batch["image"])))
  want = classifier.BN_MOMENTUM * np.asarray(conv_out).mean((0, 1, 2))
  np.testing.assert_allclose(stats8["static/bn/mean"], want, rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize("module, arch, shape, params", [
    (mnist_alif, "mnistnet", (28, 28, 1), 1152 + 147456 + 6272 * 2048
     + 2048 * 100),
    (cifar10_alif, "cifar10net", (32, 32, 3), 27 * 256 + 5 * 9 * 256 * 256
     + 16384 * 2048 + 2048 * 100),
])
def test_paper_b_configs_build_paper_b_nets(module, arch, shape, params):
  config = schema.validate(module.get_config(), check_files=False)
  assert config.model.name == arch and config.model.T == 8
  spec = types.SimpleNamespace(image_shape=shape, num_classes=10)
  model = nnx.eval_shape(lambda: builders.model(config, spec))
  weights = sum(int(np.prod(v.shape)) for p, v in
                nnx.to_flat_state(nnx.state(model, nnx.Param))
                if p[-1] in ("kernel",))
  assert weights == params
  model.eval()
  out = jax.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((2,) + shape, jnp.float32))
  assert out.shape == (2, 10)


@pytest.mark.parametrize("learn_tau, learn_threshold", [(True, True),
                                                       (False, True),
                                                       (False, False)])
def test_alif_learning_switches(learn_tau, learn_threshold, tiny_config):
  """alif_learn_tau / alif_learn_threshold = False keep ALIF's tau weight /
  threshold out of the trained parameters (NeuronParam: swept, not
  trained); both False is a LIF with paper B's dynamics."""
  config = schema.validate(tiny_config("classify"))
  config.model.update(alif_learn_tau=learn_tau,
                      alif_learn_threshold=learn_threshold)
  model = builders.model(config, types.SimpleNamespace(
      image_shape=(12, 12, 1), num_classes=10))
  for neuron in (model.static_neuron, model.fc1_neuron, model.fc2_neuron):
    assert isinstance(neuron.w, nnx.Param if learn_tau else NeuronParam)
    assert isinstance(neuron.threshold,
                      nnx.Param if learn_threshold else NeuronParam)
    np.testing.assert_allclose(neuron.tau, 2.0, rtol=1e-6)   # init tau 2
  params = {"/".join(map(str, p)) for p, _ in
            nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert ("static_neuron/w" in params) == learn_tau
  assert ("fc2_neuron/threshold" in params) == learn_threshold
