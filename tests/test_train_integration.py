"""The whole training loop on tiny data: outputs, resume, errors, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import base
from scnn_jax import trainer

REPO = Path(__file__).resolve().parents[1]


def tiny_config():
  c = base.get_config()
  c.model.width, c.model.T = 8, 4
  c.data.image_size, c.data.num_eval = 16, 24
  c.train.update(steps=6, batch_size=8, eval_batch_size=16, log_every=2,
                 eval_every=3, checkpoint_every=3, num_sample_images=4)
  return c


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
  rate = list(results["eval"]["spike_rate"].values())[0]
  assert 0.0 <= rate <= 1.0
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


def _cli(*args, cwd=REPO):
  return subprocess.run([sys.executable, str(REPO / "train.py"), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_runs_and_rejects_bad_overrides(tmp_path):
  # A relative --workdir, as users type it (Orbax itself needs absolute paths).
  common = ["--config", str(REPO / "configs" / "base.py"), "--workdir=cli",
            "--cpu_devices=2", "--config.model.width=4", "--config.model.T=2",
            "--config.data.image_size=16", "--config.data.num_eval=8",
            "--config.train.batch_size=4", "--config.train.eval_batch_size=8"]
  ok = _cli(*common, "--config.train.steps=2", "--config.train.log_every=1",
            "--config.train.checkpoint_every=1", cwd=tmp_path)
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert "step 2/2" in ok.stderr and "steps/s" in ok.stderr
  assert (tmp_path / "cli" / "results.json").exists()
  assert (tmp_path / "cli" / "checkpoints" / "2").is_dir()

  bad = _cli(*common, "--config.model.T=0")
  assert bad.returncode != 0
  assert "config.model.T = 0: must be an integer >= 1" in bad.stderr
  assert "jax" not in bad.stderr.split("config.model.T")[0].splitlines()[-1]

  unknown = _cli(*common, "--config.model.surrogate=relu")
  assert unknown.returncode != 0
  assert "config.model.surrogate = 'relu': must be one of fast_sigmoid" in unknown.stderr


def test_inference_load_restores_the_trained_model(tmp_path):
  from scnn_jax import data, inference
  config = tiny_config()
  config.train.update(steps=3, eval_every=3, checkpoint_every=3)
  summary = trainer.train_and_evaluate(config, tmp_path)
  loaded = inference.load(tmp_path)
  assert loaded.step == 3 and loaded.config.model.T == 4
  acc = loaded.task.new_accumulator()
  for b in data.build(config).eval_batches(16):
    loaded.task.accumulate(acc, b, loaded.task.predict(loaded.model, b))
  assert acc.result()["masked_mse"] == pytest.approx(
      summary["eval"]["masked_mse"], rel=1e-5)
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    inference.load(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(
      (tmp_path / "config.json").read_text())
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    inference.load(tmp_path / "empty")
