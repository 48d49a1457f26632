"""task="classify": voting layer, count/T losses, BatchNorm under 8 devices,
paper B's nets, the whole trainer run and inference.load."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import cifar10_alif, mnist5k_alif, mnist_alif
from scnn_jax import inference, optim, parallel, tasks, trainer
from scnn_jax.config_lib import ConfigError
from scnn_jax.models import classifier
from scnn_jax.tasks import classify


def tiny_config():
  c = mnist5k_alif.get_config()
  c.model.update(width=4, fc_width=16, T=2)
  c.data.update(image_size=12, num_eval=24)
  c.train.update(steps=4, batch_size=16, eval_batch_size=16, log_every=2,
                 eval_every=4, checkpoint_every=4)
  return c


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
  assert rate.min() >= 0 and rate.max() <= 1


def test_mse_count_and_cross_entropy_losses():
  rate = jnp.asarray([[0.8, 0.1, 0.0], [0.2, 0.4, 0.6], [1.0, 0.0, 0.0]])
  label = jnp.asarray([0, 2, 1])
  valid = jnp.asarray([1.0, 1.0, 0.0])                          # row 2 = padding
  num, den = classify.class_loss_sums(rate, label, "mse_count", 8, valid)
  onehot = np.eye(3)[[0, 2, 1]]
  se = ((np.asarray(rate) - onehot) ** 2).sum(-1)
  assert float(den) == 6.0                                      # 2 rows x K
  np.testing.assert_allclose(float(num) / float(den), se[:2].sum() / 6,
                             rtol=1e-6)
  # Paper B's loss on the full batch is torch's F.mse_loss (mean over B*K).
  num, den = classify.class_loss_sums(rate, label, "mse_count", 8)
  np.testing.assert_allclose(float(num) / float(den), se.mean() / 3, rtol=1e-6)
  num, den = classify.class_loss_sums(rate, label, "cross_entropy", 8, valid)
  logits = 8 * np.asarray(rate)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -logp[np.arange(3), [0, 2, 1]]
  np.testing.assert_allclose(float(num) / float(den), ce[:2].mean(), rtol=1e-5)
  correct, n = classify.correct_sums(rate, label, valid)
  assert (float(correct), float(n)) == (2.0, 2.0)


def _fixed_batch(n=16, size=12, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.random((n, size, size, 1)).astype(np.float32),
          "mask": np.zeros((n, size, size, 1), np.float32),
          "label": rng.integers(0, 10, n).astype(np.int32),
          "valid": np.ones(n, np.float32),
          "example_id": np.arange(n, dtype=np.int32)}


def _run_steps(config, devices, batch, steps=2):
  task = tasks.get(config)
  spec = types.SimpleNamespace(image_shape=batch["image"].shape[1:],
                               num_classes=10)
  tx = optim.build(config.train)
  mesh = parallel.make_mesh(devices)
  state, graphs = trainer.create_state(config, task, spec, tx)
  init_rest = jax.device_get(state["rest"])
  state = parallel.replicate(mesh, state)
  train_fn, _ = trainer.compile_steps(task, graphs, tx, mesh, "stop")
  key = parallel.replicate(mesh, jax.random.key(3))
  losses = []
  for _ in range(steps):
    state, m = train_fn(state, parallel.global_batch(mesh, batch), key)
    losses.append(jax.device_get(m))
  return jax.device_get(state), losses, init_rest


def _bn_stats(rest):
  return {"/".join(map(str, p)): np.asarray(v.get_value())
          for p, v in nnx.to_flat_state(rest)
          if isinstance(v, nnx.BatchStat)}


def test_batchnorm_8_devices_equals_1_device():
  """Same global batch on 1 and 8 devices: same loss, running statistics,
  parameters (BN statistics are averaged over "data";
  dropout masks follow example ids, not devices); the running mean is the
  momentum update with the mean over the WHOLE global batch and all T steps."""
  assert jax.device_count() == 8
  config = tiny_config()
  config.model.augment = "none"
  batch = _fixed_batch()
  one = _run_steps(config, jax.devices()[:1], batch, steps=1)
  eight = _run_steps(config, jax.devices(), batch, steps=1)
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
  model = tasks.get(config).build_model(
      config, types.SimpleNamespace(image_shape=(12, 12, 1), num_classes=10),
      nnx.Rngs(params=config.seed))
  conv_out = model.static.conv(model.normalize(jnp.asarray(batch["image"])))
  want = classifier.BN_MOMENTUM * np.asarray(conv_out).mean((0, 1, 2))
  np.testing.assert_allclose(stats8["static/bn/mean"], want, rtol=1e-4,
                             atol=1e-6)


def test_train_classify_then_load_outside_shard_map(tmp_path):
  config = tiny_config()
  summary = trainer.train_and_evaluate(config, tmp_path)
  assert 0.0 <= summary["eval"]["accuracy"] <= 1.0
  assert summary["eval"]["num_examples"] == 24
  assert summary["devices"] == 8
  assert set(summary["eval"]["spike_rate"]) >= {"static_neuron",
                                                "fc2_neuron"}
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["kind"] == "train"]
  assert [r["step"] for r in train] == [2, 4]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert "| mnistnet |" in (tmp_path / "results.md").read_text()
  # Eval mode outside shard_map, from the checkpoint: same accuracy.
  loaded = inference.load(tmp_path)
  from scnn_jax import data
  acc = loaded.task.new_accumulator()
  for b in data.build(config).eval_batches(16):
    loaded.task.accumulate(acc, b, loaded.task.predict(loaded.model, b))
  assert acc.result()["accuracy"] == pytest.approx(
      summary["eval"]["accuracy"], abs=1e-9)
  bn = loaded.model.static.bn
  assert bn.use_running_average
  assert not np.allclose(np.asarray(bn.mean[...]), 0.0)


@pytest.mark.parametrize("module, arch, shape, params", [
    (mnist_alif, "mnistnet", (28, 28, 1), 1152 + 147456 + 6272 * 2048
     + 2048 * 100),
    (cifar10_alif, "cifar10net", (32, 32, 3), 27 * 256 + 5 * 9 * 256 * 256
     + 16384 * 2048 + 2048 * 100),
])
def test_paper_b_configs_build_paper_b_nets(module, arch, shape, params):
  config = module.get_config()
  trainer.validate(config)
  assert config.model.name == arch and config.model.T == 8
  task = tasks.get(config)
  spec = types.SimpleNamespace(image_shape=shape, num_classes=10)
  model = nnx.eval_shape(lambda: task.build_model(config, spec,
                                                  nnx.Rngs(params=0)))
  weights = sum(int(np.prod(v.shape)) for p, v in
                nnx.to_flat_state(nnx.state(model, nnx.Param))
                if p[-1] in ("kernel",))
  assert weights == params
  model.eval()
  out = jax.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((2,) + shape, jnp.float32))
  assert out.shape == (2, 10)


def test_mnist5k_config_validates():
  trainer.validate(mnist5k_alif.get_config())


@pytest.mark.parametrize("field, value, message", [
    ("loss", "hinge", "config.model.loss = 'hinge': must be one of mse_count"),
    ("name", "resnet", "config.model.name = 'resnet': must be one of mnistnet"),
    ("pool", "min", "config.model.pool = 'min': must be one of max, avg"),
    ("dropout", 1.0, "config.model.dropout = 1.0: must be in [0, 1)"),
    ("noise_std", 0.1, "config.model.noise_std = 0.1: must be 0"),
    ("input_std", (0.0,), "config.model.input_std = (0.0,): must be > 0"),
])
def test_config_errors_name_the_field(field, value, message):
  config = tiny_config()
  config.model[field] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")
                     .replace(")", r"\)").replace("[", r"\[")):
    trainer.validate(config)
