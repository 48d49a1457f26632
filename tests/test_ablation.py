"""scnn_jax.runtime.ablation (vmap ablations): K models in one program behave
like K separate runs; the run's table and plot; ``python -m scnn_jax.ablation
export``."""

import csv
import re
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from scnn_jax.cli import ablation as ablation_cli
from scnn_jax.config import schema
from scnn_jax.runtime import ablation, inference, parallel, steps
from scnn_jax.training import trainer
from tests.workdirs import REPO, hole_batches, tiny_config


def _grid_config(**grid):
  c = tiny_config()
  c.ablation.grid = grid or {"model": {"tau": [5.0, 20.0],
                                       "threshold": [0.5, 1.0]}}
  return schema.validate(c)


def test_points_grid_zip_and_seeds():
  c = _grid_config()
  pts = ablation.points(c)
  assert [p.values for p in pts] == [
      {"model.tau": 5.0, "model.threshold": 0.5},
      {"model.tau": 5.0, "model.threshold": 1.0},
      {"model.tau": 20.0, "model.threshold": 0.5},
      {"model.tau": 20.0, "model.threshold": 1.0}]
  assert [p.config.init_seed for p in pts] == [0, 1, 2, 3]
  assert pts[3].config.model.tau == 20.0 and pts[3].config.model.threshold == 1.0
  assert not ablation.enabled(pts[0].config)  # a point is a single model
  c.ablation.mode = "zip"
  assert [p.values for p in ablation.points(c)] == [
      {"model.tau": 5.0, "model.threshold": 0.5},
      {"model.tau": 20.0, "model.threshold": 1.0}]
  c.ablation.share_init = True
  assert {p.config.init_seed for p in ablation.points(c)} == {0}


def _batches(n, b=8, hw=16, seed=0):
  return hole_batches(n, b, hw, (slice(4, 10), slice(3, 12)), seed)


SPEC = types.SimpleNamespace(image_shape=(16, 16, 3), num_classes=None)


def _losses(config, devices=2, steps=3):
  run = trainer.setup(config, SPEC, jax.devices()[:devices])
  return np.stack([np.asarray(run.train_step(b)["loss"])
                   for b in _batches(steps)])


def test_point_k_equals_a_separate_single_run():
  config = _grid_config()
  vmapped = _losses(config)                          # [steps, K]
  assert vmapped.shape == (3, 4)
  assert len({tuple(np.round(vmapped[:, k], 6)) for k in range(4)}) == 4
  for k, point in enumerate(ablation.points(config)):
    single = _losses(point.config)
    np.testing.assert_allclose(vmapped[:, k], single, rtol=1e-5, atol=1e-7)


def _stacked_run(config, points_at_once, monkeypatch, devices=2):
  monkeypatch.setattr(steps, "points_per_pass", lambda platform: points_at_once)
  return trainer.setup(config, SPEC, jax.devices()[:devices])


@pytest.mark.parametrize("points_at_once", [1, 3, None])
def test_points_looped_in_groups_or_vmapped_train_alike(points_at_once,
                                                         monkeypatch):
  # 1: XLA CPU's default (a loop over the points); 3: groups of 3 (4 points,
  # so a remainder group of 1); None: one vmap of all, the GPU/TPU default.
  config = _grid_config()
  run = _stacked_run(config, points_at_once, monkeypatch)
  losses = np.stack([np.asarray(run.train_step(b)["loss"])
                     for b in _batches(3)])
  assert losses.shape == (3, 4)
  np.testing.assert_array_equal(np.asarray(run.state["step"]), [3] * 4)
  monkeypatch.undo()
  for k, point in enumerate(ablation.points(config)):
    single = trainer.setup(point.config, SPEC, jax.devices()[:2])
    for i, b in enumerate(_batches(3)):
      np.testing.assert_allclose(losses[i, k], single.train_step(b)["loss"],
                                 rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(ablation.unstack(run.state["params"], k)),
                    jax.tree.leaves(single.state["params"])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("points_at_once", [1, None])
def test_stacked_step_has_no_grouped_convs(points_at_once, monkeypatch):
  # Per-point kernels under vmap would otherwise become grouped convs, which
  # XLA CPU runs ~2.8x slower than the same convs one model at a time.
  run = _stacked_run(_grid_config(), points_at_once, monkeypatch, devices=1)
  batch = parallel.global_batch(run.mesh, next(_batches(1)))
  text = run.train_fn.lower(run.state, batch, run.key).compile().as_text()
  assert "convolution(" in text
  assert not re.search(r"(feature|batch)_group_count=(?!1\b)\d+", text)


def test_structure_changing_values_are_rejected():
  config = _grid_config(model={"noise_std": [0.0, 0.1]})  # 0 drops the noise
  with pytest.raises(ValueError, match="change the model's structure"):
    trainer.setup(config, SPEC)


def test_ablation_run_outputs_resume_and_export(tmp_path):
  config = _grid_config(model={"tau": [5.0, 20.0], "threshold": [0.5, 1.0]})
  config.train.update(steps=4, eval_every=4, checkpoint_every=2, log_every=2)
  run = tmp_path / "run"
  summary = trainer.train_and_evaluate(config, run)
  assert [p["name"] for p in summary["points"]] == [
      "tau=5_threshold=0.5", "tau=5_threshold=1", "tau=20_threshold=0.5",
      "tau=20_threshold=1"]
  rows = list(csv.DictReader((run / "ablation.csv").read_text().splitlines()))
  assert len(rows) == 4 and {"model.tau", "model.threshold", "masked_mse",
                             "hole_psnr", "ssim", "synops"} <= set(rows[0])
  assert any(k.startswith("rate:") for k in rows[0])
  assert all(float(r["synops"]) > 0 for r in rows)
  assert "| model.tau | model.threshold |" in (run / "ablation.md").read_text()
  assert (run / "ablation.png").read_bytes()[:4] == b"\x89PNG"
  for p in summary["points"]:
    assert (run / "samples" / p["name"] / "step_000004.png").exists()

  config.train.steps = 6
  resumed = trainer.train_and_evaluate(config, run)
  assert resumed["steps"] == 6

  out = tmp_path / "point2"
  ablation_cli.export_point(run, 2, out)
  loaded = inference.load(out)
  assert loaded.step == 6
  assert loaded.config.model.tau == 20.0 and loaded.config.model.threshold == 0.5
  assert not ablation.enabled(loaded.config)
  np.testing.assert_allclose(loaded.model.spiking.neuron.threshold[...], 0.5)
  # The exported point is an ordinary workdir: training it further resumes.
  single = schema.validate(loaded.config)
  single.train.steps = 7
  assert trainer.train_and_evaluate(single, out)["steps"] == 7

  cli = subprocess.run(
      [sys.executable, "-m", "scnn_jax.ablation", "export", "--workdir",
       str(run), "--point", "9", "--out", str(tmp_path / "x")],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert cli.returncode != 0 and "out of range" in cli.stderr
