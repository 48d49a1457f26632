"""scnn_jax.runtime.steps: the per-device train step's arithmetic: the gradient
is that of the global-batch loss on any device count, a non-finite step is not
applied, and the weights' moving average (train.ema_decay) is updated as
documented, evaluated, and restored exactly."""

import jax
import numpy as np
import pytest

from scnn_jax.config import schema
from scnn_jax.runtime import parallel
from scnn_jax.runtime.checkpoint import Checkpointer
from scnn_jax.training import trainer
from tests.workdirs import SPEC, run_steps, step_batches, step_config


def test_gradient_is_not_scaled_by_the_device_count():
  # SGD is not scale-invariant like Adam: a gradient summed once too often
  # over devices shows up here as an n-times larger step.
  config = step_config(name="cnn")
  config.train.optimizer = "sgd"
  l1, p1 = run_steps(config, 1)
  l8, p8 = run_steps(config, 8)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)

def test_nonfinite_step_is_not_applied():
  run = trainer.setup(step_config(), SPEC, jax.devices()[:2])
  good, bad = list(step_batches(2))
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


def _leaves(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(
      jax.device_get(tree))]


def _ema_config(decay, **train):
  c = step_config()
  c.train.update(ema_decay=decay, **train)
  return c


@pytest.mark.parametrize("loss,grid", [
    ("image_mse", None),                                  # one model
    ("log_mse", {"model": {"threshold": [1.0, 0.5]}}),    # 2 stacked points
])
def test_ema_follows_the_params_by_hand_and_is_what_eval_runs(loss, grid):
  c = _ema_config(0.2, loss=loss)
  if grid:
    c.ablation.grid = grid
  run = trainer.setup(schema.validate(c), SPEC, jax.devices()[:2])
  want = _leaves(run.state["params"])
  for a, b in zip(_leaves(run.state["ema"]), want, strict=True):
    np.testing.assert_array_equal(a, b)            # it starts at the init
  for n, batch in enumerate(step_batches(3)):
    # Per-image losses train from the first step (no warm start needed).
    assert np.isfinite(np.asarray(run.train_step(batch)["loss"])).all()
    d = min(0.2, (1 + n) / (10 + n))               # 0.1, 2/11, then 0.2
    want = [d * e + (1 - d) * p
            for e, p in zip(want, _leaves(run.state["params"]))]
  ema, params = _leaves(run.state["ema"]), _leaves(run.state["params"])
  for a, b in zip(ema, want, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
  assert max(np.abs(a - p).max() for a, p in zip(ema, params)) > 1e-4

  batch = parallel.global_batch(run.mesh, next(step_batches(1, seed=7)))
  plain = {k: v for k, v in run.state.items() if k != "ema"}
  out = run.eval_fn(run.state, batch)[0]["pred"]
  averaged = run.eval_fn({**plain, "params": run.state["ema"]}, batch)[0]
  raw = run.eval_fn(plain, batch)[0]["pred"]
  np.testing.assert_array_equal(out, averaged["pred"])
  assert np.abs(np.asarray(out) - np.asarray(raw)).max() > 1e-6


def test_checkpoint_resume_keeps_the_ema_bitwise(tmp_path):
  run = trainer.setup(schema.validate(_ema_config(0.5)), SPEC,
                      jax.devices()[:2])
  b = list(step_batches(4))
  for batch in b[:2]:
    run.train_step(batch)
  ckpt = Checkpointer(tmp_path / "ema")
  ckpt.save(2, run.state, force=True)
  ckpt.wait()
  for batch in b[2:]:
    run.train_step(batch)
  uninterrupted = _leaves(run.state)
  run.state, _ = trainer.restore(ckpt, run.state)
  assert int(run.state["step"]) == 2
  for batch in b[2:]:
    run.train_step(batch)
  for x, y in zip(_leaves(run.state), uninterrupted, strict=True):
    np.testing.assert_array_equal(x, y)

  # A checkpoint without an average (EMA off, or older: the same state less
  # "ema") restores into an EMA run: the average starts at its params (and
  # trains on) ...
  off = {k: v for k, v in run.state.items() if k != "ema"}
  old = Checkpointer(tmp_path / "plain")
  old.save(4, off, force=True)
  old.wait()
  assert old.state_keys() == set(off) and ckpt.state_keys() == set(run.state)
  run.state, _ = trainer.restore(old, run.state)
  for x, y in zip(_leaves(run.state["ema"]), _leaves(off["params"]),
                  strict=True):
    np.testing.assert_array_equal(x, y)
  run.train_step(b[0])
  # ... and one with an average restores into a run without it.
  state, _ = trainer.restore(ckpt, off)
  assert set(state) == set(off) and int(state["step"]) == 2
  ckpt.close()
  old.close()
