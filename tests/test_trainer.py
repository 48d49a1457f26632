"""scnn_jax.training.trainer: the whole training loop on tiny data: what a
run writes, resuming, and a resumed run equal to an uninterrupted one."""

import json

import jax
import numpy as np
import pytest

from scnn_jax.config import schema
from scnn_jax.training import trainer
from tests.workdirs import eval_loaded, tiny_config


def _records(workdir, kind):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_train_eval_outputs_and_resume(tmp_path):
  config = tiny_config()
  summary = trainer.train_and_evaluate(config, tmp_path)

  assert json.loads((tmp_path / "config.json").read_text())["model"]["T"] == 4
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps == [3, 6]
  train = _records(tmp_path, "train")
  assert [r["step"] for r in train] == [2, 4, 6]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert 0 <= train[-1]["input_wait_fraction"] <= 1
  assert [r["step"] for r in _records(tmp_path, "eval")] == [3, 6]
  for step in (3, 6):
    assert (tmp_path / "samples" / f"step_{step:06d}.png").stat().st_size > 0
  assert any((tmp_path / "tensorboard").iterdir())

  results = json.loads((tmp_path / "results.json").read_text())
  assert results == json.loads(json.dumps(summary))
  for key in ("masked_mse", "full_mse", "psnr", "ssim", "spike_rate"):
    assert key in results["eval"], key
  assert set(results["baselines"]) == {"mean_fill", "biharmonic"}
  for name, r in results["baselines"].items():
    assert {"masked_mse", "full_mse", "psnr", "ssim"} <= set(r), name
  # The sharded evaluation is the loaded model's, outside any mesh.
  again = eval_loaded(tmp_path)
  for key in ("masked_mse", "full_mse", "psnr", "hole_psnr", "ssim"):
    assert results["eval"][key] == pytest.approx(again[key], rel=1e-5), key
  assert set(results["eval"]["spike_rate"]) == {"spiking/neuron"}
  assert results["eval"]["spike_rate"]["spiking/neuron"] == pytest.approx(
      again["spike_rate"]["spiking/neuron"], rel=1e-5)
  assert results["steps"] == 6 and results["devices"] == 8
  assert "| scnn |" in (tmp_path / "results.md").read_text()

  # Same command with more steps: resumes at 6, not from scratch.
  config.train.steps = 9
  trainer.train_and_evaluate(config, tmp_path)
  train = _records(tmp_path, "train")
  assert [r["step"] for r in train] == [2, 4, 6, 8, 9]
  assert max(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
             if p.name.isdigit()) == 9


def test_resume_equals_uninterrupted(tmp_path):
  config = tiny_config()
  config.train.update(steps=6, eval_every=100, checkpoint_every=3)
  full = trainer.train_and_evaluate(config, tmp_path / "full")
  config.train.steps = 3
  trainer.train_and_evaluate(config, tmp_path / "split")
  config.train.steps = 6
  split = trainer.train_and_evaluate(config, tmp_path / "split")
  assert split["eval"]["masked_mse"] == pytest.approx(
      full["eval"]["masked_mse"], rel=1e-5)
  # Both runs log the mean loss of steps 1-2 and 5-6 (the split one also logs
  # at its first end, step 3).
  loss = lambda d: {r["step"]: r["loss"] for r in _records(tmp_path / d, "train")}
  split_loss, full_loss = loss("split"), loss("full")
  assert sorted(split_loss) == [2, 3, 4, 6] and sorted(full_loss) == [2, 4, 6]
  for step in (2, 6):
    assert split_loss[step] == pytest.approx(full_loss[step], rel=1e-5)


def test_resuming_an_older_config_json_keeps_it(tmp_path):
  """A workdir whose config.json predates fields (written by an older
  version) resumes without a 'config differs' warning: the missing fields
  count as their defaults."""
  config = tiny_config()
  config.train.update(steps=2, eval_every=2, checkpoint_every=2)
  trainer.train_and_evaluate(config, tmp_path)
  old = json.loads((tmp_path / "config.json").read_text())
  del old["train"]["loss"], old["data"]["train_crop"]
  del old["model"]["refractory_steps"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  config.train.steps = 3
  assert trainer.train_and_evaluate(config, tmp_path)["steps"] == 3
  assert not list(tmp_path.glob("config.*.json"))        # nothing renamed
  assert json.loads((tmp_path / "config.json").read_text())["train"][
      "loss"] == "mse"


def test_rate_encoded_model_trains_evaluates_and_inpaints(tmp_path):
  """encoder=rate draws input spikes at evaluation too: the eval step and
  the Inpainter give it the fixed eval key, so both run and repeat exactly."""
  from scnn_jax.runtime import inference
  from scnn_jax.runtime.inpainter import Inpainter

  config = tiny_config()
  config.model.encoder = "rate"
  config.train.update(steps=2, eval_every=2, checkpoint_every=2, log_every=1)
  config.data.num_eval = 16
  first = trainer.train_and_evaluate(config, tmp_path / "a")
  again = trainer.train_and_evaluate(config, tmp_path / "b")
  assert np.isfinite(first["eval"]["masked_mse"])
  assert first["eval"] == again["eval"]

  loaded = inference.load(tmp_path / "a")
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
  holes = np.zeros((16, 16), bool)
  holes[5:9, 4:10] = True
  painter = Inpainter(loaded.model, loaded.config)
  out = painter.inpaint(pixels, holes)
  np.testing.assert_array_equal(out, painter.inpaint(pixels, holes))
  np.testing.assert_array_equal(out[~holes], pixels[~holes])


def test_ema_follows_its_warm_up_and_is_what_the_results_score(tmp_path):
  """train.ema_decay: every checkpoint's average is the documented one of
  the params so far, and the evaluation, results and inference use it.
  (Checkpoints without an average: tests/test_steps.py, test_inference.py.)"""
  from flax import nnx

  from scnn_jax import tasks
  from scnn_jax.config import builders
  from scnn_jax.runtime import inference
  from scnn_jax.runtime import state as state_lib
  from scnn_jax.runtime.checkpoint import Checkpointer, abstract_like

  config = tiny_config()
  config.train.update(steps=3, eval_every=3, checkpoint_every=1, log_every=1,
                      ema_decay=0.9, loss="image_mse", learning_rate=3e-3)
  summary = trainer.train_and_evaluate(config, tmp_path)

  graphs, init = state_lib.model_state(builders.model(schema.validate(config)))
  full = {k: init["params"] for k in ("params", "ema")}
  ckpt = Checkpointer(tmp_path / "checkpoints", read_only=True)
  saved = {s: jax.device_get(ckpt.restore(abstract_like(full), s,
                                          partial=True)[0])
           for s in (1, 2, 3)}
  ckpt.close()
  leaves = lambda t: [np.asarray(x, np.float64) for x in jax.tree.leaves(t)]
  want = leaves(init["params"])              # the same init (init_seed)
  for s in (1, 2, 3):
    d = min(0.9, s / (9 + s))                # n = s - 1 updates before it
    want = [d * e + (1 - d) * p for e, p in zip(want,
                                                leaves(saved[s]["params"]))]
    for a, b in zip(leaves(saved[s]["ema"]), want, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

  loaded = inference.load(tmp_path)
  assert loaded.ema
  task = tasks.get(loaded.config)
  batches = list(tasks.dataset(loaded.config).eval_batches(16))

  def score(model):
    acc = task.new_accumulator()
    for b in batches:
      task.accumulate(acc, b, task.predict(model, b))
    return acc.result()

  averaged = score(loaded.model)
  raw = score(nnx.merge(graphs.eval, saved[3]["params"],
                        loaded.state["rest"]))
  for key in ("masked_mse", "loss"):
    assert averaged[key] == pytest.approx(summary["eval"][key], rel=1e-5)
    # The average lags the params of a run still improving: a higher loss.
    assert raw[key] < averaged[key] * (1 - 1e-3)
  # The eval loss is the configured per-image loss, in the table too.
  assert summary["eval"]["loss"] == summary["eval"]["image_mse"]
  assert "| loss |" in (tmp_path / "results.md").read_text()
