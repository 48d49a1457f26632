"""scnn_jax.inference: a workdir's model without the trainer, its optimizer or
the task registry: rebuilt from config.json by name, parameters restored
read-only, ablation points, old config.json files, params-only export."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from scnn_jax import builders, data, inference, optim, sweep, tasks, trainer
from tests.workdirs import make_workdir, tiny_config


def test_load_restores_the_trained_model(tmp_path, monkeypatch):
  config = tiny_config()
  config.train.update(steps=3, eval_every=3, checkpoint_every=3)
  summary = trainer.train_and_evaluate(config, tmp_path)

  def not_needed(*args, **kwargs):
    raise AssertionError("inference.load needs no optimizer, task or data")
  with monkeypatch.context() as m:
    for module, name in ((optim, "build"), (tasks, "get"), (data, "build")):
      m.setattr(module, name, not_needed)
    loaded = inference.load(tmp_path)
  assert loaded.step == 3 and loaded.config.model.T == 4
  # Only the model's part of the train state is read: no optimizer state.
  assert set(loaded.state) == {"step", "params", "rest"}
  task = tasks.get(loaded.config)
  acc = task.new_accumulator()
  for b in data.build(loaded.config).eval_batches(16):
    task.accumulate(acc, b, task.predict(loaded.model, b))
  assert acc.result()["masked_mse"] == pytest.approx(
      summary["eval"]["masked_mse"], rel=1e-5)


def test_missing_config_or_checkpoint_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    inference.load(tmp_path / "nowhere")
  path, _ = make_workdir(tmp_path / "run", tiny_config())
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(
      (path / "config.json").read_text())
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    inference.load(tmp_path / "empty")


def test_an_older_config_json_loads_with_the_new_fields_defaults(tmp_path):
  path, state = make_workdir(tmp_path / "old", tiny_config())
  old = json.loads((path / "config.json").read_text())
  for section, name in (("model", "refractory_steps"),
                        ("model", "neuron_solver"), ("model", "noise_resample"),
                        ("data", "train_crop"), ("train", "loss"),
                        ("train", "ema_decay")):
    del old[section][name]
  (path / "config.json").write_text(json.dumps(old))
  loaded = inference.load(path)
  assert loaded.config.model.noise_resample == "step"   # as such runs trained
  assert loaded.config.train.loss == "mse"
  assert loaded.config.train.ema_decay == 0.0 and not loaded.ema
  for a, b in zip(jax.tree.leaves(nnx.state(loaded.model, nnx.Param)),
                  jax.tree.leaves(state["params"]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_point_picks_model_k_of_an_ablation_checkpoint(tmp_path):
  config = tiny_config()
  config.ablation.grid = {"model": {"threshold": [1.0, 0.5]}}
  path, state = make_workdir(tmp_path / "abl", config)
  for k in (0, 1):
    loaded = inference.load(path, point=k)
    assert loaded.point_name == f"threshold={[1, 0.5][k]:g}"
    assert loaded.config.model.threshold == [1.0, 0.5][k]
    got = jax.tree.leaves(nnx.state(loaded.model, nnx.Param))
    want = jax.tree.leaves(sweep.unstack(state["params"], k))
    for a, b in zip(got, want, strict=True):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.model.spiking.neuron.threshold[...],
                               [1.0, 0.5][k])
  with pytest.raises(inference.PointError, match=r"ablation of 2 models: "
                     r"pick one with point k \(0..1\)"):
    inference.load(path)
  with pytest.raises(inference.PointError, match="point 2: this ablation has 2"):
    inference.load(path, point=2)
  single, _ = make_workdir(tmp_path / "single", tiny_config())
  with pytest.raises(inference.PointError, match="holds a single model"):
    inference.load(single, point=0)


def test_export_params_round_trip(tmp_path):
  path, _ = make_workdir(tmp_path / "run", tiny_config())
  loaded = inference.load(path)
  shapes = inference.export_params(loaded, tmp_path / "export")
  assert shapes["spiking/conv/kernel"] == (3, 3, 4, 8)
  again = inference.load_params(tmp_path / "export")
  x = np.random.default_rng(0).uniform(size=(2, 16, 16, 4)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(loaded.model(x)),
                                np.asarray(again.model(x)))
  # A params file that does not fit the config's model is named.
  config = json.loads((tmp_path / "export" / "config.json").read_text())
  config["model"]["width"] = 4
  (tmp_path / "export" / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"params.npz: convs/0/bias has shape "
                     r"\(8,\), the model needs \(4,\)$"):
    inference.load_params(tmp_path / "export")
  assert builders.data_spec(loaded.config).image_shape == (16, 16, 3)


def test_load_and_export_take_the_moving_average(tmp_path, capsys):
  """With train.ema_decay the checkpoint holds the average next to the raw
  params (make_workdir nudges the params, so here they differ from the
  average, which stayed at the init): load and export give the average."""
  import importlib.util

  from tests.workdirs import REPO
  config = tiny_config()
  config.train.ema_decay = 0.9
  path, state = make_workdir(tmp_path / "run", config)
  loaded = inference.load(path)
  assert loaded.ema and set(loaded.state) == {"step", "params", "rest"}
  got = jax.tree.leaves(nnx.state(loaded.model, nnx.Param))
  for a, e, p in zip(got, jax.tree.leaves(state["ema"]),
                     jax.tree.leaves(state["params"]), strict=True):
    np.testing.assert_array_equal(a, e)
    assert not np.array_equal(a, p)

  spec = importlib.util.spec_from_file_location(
      "export_pretrained", REPO / "scripts" / "export_pretrained.py")
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  script.main(["--workdir", str(path), "--out", str(tmp_path / "export")])
  assert "moving average of the weights" in capsys.readouterr().out
  with np.load(tmp_path / "export" / inference.PARAMS_FILE) as npz:
    np.testing.assert_array_equal(npz["spiking/conv/kernel"],
                                  state["ema"]["spiking"]["conv"]["kernel"][...])

  config.ablation.grid = {"model": {"threshold": [1.0, 0.5]}}
  path, state = make_workdir(tmp_path / "abl", config)
  loaded = inference.load(path, point=1)
  assert loaded.ema
  for a, e in zip(jax.tree.leaves(nnx.state(loaded.model, nnx.Param)),
                  jax.tree.leaves(sweep.unstack(state["ema"], 1)),
                  strict=True):
    np.testing.assert_array_equal(a, e)
