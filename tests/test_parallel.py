"""The data-parallel step gives the same result on 1 and 8 devices."""

import types

import jax
import numpy as np
import pytest

from configs import base
from scnn_jax import trainer


def _tiny_config(**model):
  c = base.get_config()
  c.model.width, c.model.T, c.train.batch_size = 8, 4, 16
  c.model.update(model)
  return c


def _batches(n, b=16, hw=12, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(n):
    mask = np.zeros((b, hw, hw, 1), np.float32)
    mask[:, 3:8, 2:9] = 1.0
    yield {"image": rng.uniform(size=(b, hw, hw, 3)).astype(np.float32),
           "mask": mask, "valid": np.ones((b,), np.float32)}


SPEC = types.SimpleNamespace(image_shape=(12, 12, 3), num_classes=None)


def _run(config, devices, steps=3):
  run = trainer.setup(config, SPEC, jax.devices()[:devices])
  losses = [float(run.train_step(batch)["loss"]) for batch in _batches(steps)]
  return losses, jax.device_get(run.state["params"])


@pytest.mark.parametrize("model", ["scnn", "cnn"])
def test_one_and_eight_devices_agree(model):
  # Training noise is on (noise_std 0.1): per-example noise keys make it
  # independent of the split.
  config = _tiny_config(name=model)
  l1, p1 = _run(config, 1)
  l8, p8 = _run(config, 8)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  assert l1[-1] < l1[0]  # it trains
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gradient_is_not_scaled_by_the_device_count():
  # SGD is not scale-invariant like Adam: a gradient summed once too often
  # over devices shows up here as an n-times larger step.
  config = _tiny_config(name="cnn")
  config.train.optimizer = "sgd"
  l1, p1 = _run(config, 1)
  l8, p8 = _run(config, 8)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)

def test_nonfinite_step_is_not_applied():
  run = trainer.setup(_tiny_config(), SPEC, jax.devices()[:2])
  good, bad = list(_batches(2))
  bad["image"][0, 0, 0, 0] = np.nan
  bad["mask"][0, 0, 0, 0] = 1.0
  run.train_step(good)
  before = jax.device_get(run.state["params"])
  m = run.train_step(bad)
  assert not bool(m["finite"])
  assert int(run.state["first_nonfinite"]) == 1
  assert int(run.state["nonfinite"]) == 1
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(run.state["params"])):
    np.testing.assert_array_equal(a, b)
  # "stop" freezes the state even for the good batches that follow.
  assert bool(run.train_step(good)["finite"])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(run.state["params"])):
    np.testing.assert_array_equal(a, b)


def test_batch_not_divisible_by_devices_is_a_config_error():
  config = _tiny_config()
  config.train.batch_size = 12
  with pytest.raises(ValueError, match=r"config.train.batch_size = 12: must be "
                     r"divisible by the number of devices \(8\)"):
    trainer.validate(config)


def test_device_prefetch_keeps_order_shards_and_raises_source_errors():
  from scnn_jax import parallel
  mesh = parallel.make_mesh()
  host = list(_batches(5))
  it = parallel.DevicePrefetch(mesh, iter(host), size=2)
  got = list(it)
  assert len(got) == 5
  for g, h in zip(got, host):
    assert g["image"].sharding.spec == parallel.batch_sharded(mesh).spec
    np.testing.assert_array_equal(np.asarray(g["image"]), h["image"])

  def failing():
    yield host[0]
    raise ValueError("unreadable file x.png")

  it = parallel.DevicePrefetch(mesh, failing())
  next(it)
  with pytest.raises(ValueError, match="x.png"):
    next(it)
  # An endless source stops with close() (the trainer's exits).
  it = parallel.DevicePrefetch(mesh, iter(lambda: host[0], None), size=1)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  # ... and a closable source (grain's worker processes) is closed after it.
  endless = (host[0] for _ in iter(int, 1))
  it = parallel.DevicePrefetch(mesh, endless, size=1)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  assert endless.gi_frame is None  # generator.close() ran
