"""scnn_jax.steps: the per-device train step's arithmetic: the gradient is
that of the global-batch loss on any device count, and a non-finite step is
not applied."""

import jax
import numpy as np

from scnn_jax import trainer
from tests.test_parallel import SPEC, batches, run_steps, tiny_config


def test_gradient_is_not_scaled_by_the_device_count():
  # SGD is not scale-invariant like Adam: a gradient summed once too often
  # over devices shows up here as an n-times larger step.
  config = tiny_config(name="cnn")
  config.train.optimizer = "sgd"
  l1, p1 = run_steps(config, 1)
  l8, p8 = run_steps(config, 8)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)

def test_nonfinite_step_is_not_applied():
  run = trainer.setup(tiny_config(), SPEC, jax.devices()[:2])
  good, bad = list(batches(2))
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
