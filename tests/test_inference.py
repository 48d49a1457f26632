"""scnn_jax.runtime.inference: a workdir's model without the trainer, its
optimizer or the task registry: rebuilt from config.json by name, parameters
restored read-only, ablation points, old config.json files, params-only export
(safetensors, and the older npz), models built abstractly."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from scnn_jax import data, tasks
from scnn_jax.config import builders
from scnn_jax.runtime import ablation, inference
from scnn_jax.training import trainer
from tests.workdirs import make_workdir, tiny_config


def test_load_restores_the_trained_model(tmp_path, monkeypatch):
  config = tiny_config()
  config.train.update(steps=3, eval_every=3, checkpoint_every=3)
  summary = trainer.train_and_evaluate(config, tmp_path)

  def not_needed(*args, **kwargs):
    raise AssertionError("inference.load needs no optimizer, task or data")
  with monkeypatch.context() as m:
    for module, name in ((builders, "optimizer"), (tasks, "get"),
                         (data, "build")):
      m.setattr(module, name, not_needed)
    loaded = inference.load(tmp_path)
  assert loaded.step == 3 and loaded.config.model.T == 4
  # Only the model's part of the train state is read: no optimizer state.
  assert set(loaded.state) == {"step", "params", "rest"}
  task = tasks.get(loaded.config)
  acc = task.new_accumulator()
  for b in tasks.dataset(loaded.config).eval_batches(16):
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
    want = jax.tree.leaves(ablation.unstack(state["params"], k))
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
  with pytest.raises(ValueError, match=r"params.safetensors: convs/0/bias has "
                     r"shape \(8,\), the model needs \(4,\)$"):
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
  from safetensors.numpy import load_file
  exported = load_file(tmp_path / "export" / inference.PARAMS_FILE)
  np.testing.assert_array_equal(exported["spiking/conv/kernel"],
                                state["ema"]["spiking"]["conv"]["kernel"][...])

  config.ablation.grid = {"model": {"threshold": [1.0, 0.5]}}
  path, state = make_workdir(tmp_path / "abl", config)
  loaded = inference.load(path, point=1)
  assert loaded.ema
  for a, e in zip(jax.tree.leaves(nnx.state(loaded.model, nnx.Param)),
                  jax.tree.leaves(ablation.unstack(state["ema"], 1)),
                  strict=True):
    np.testing.assert_array_equal(a, e)


def _old_npz_export(loaded, folder):
  """A folder as export_params wrote it before safetensors: config.json and
  params.npz (compressed, one float32 array per nnx.Param, path keys)."""
  folder.mkdir()
  arrays = {"/".join(str(k) for k in path): np.asarray(v[...], np.float32)
            for path, v in nnx.to_flat_state(nnx.state(loaded.model,
                                                       nnx.Param))}
  np.savez_compressed(folder / "params.npz", **arrays)
  (folder / "config.json").write_text(loaded.config.to_json_best_effort())
  return arrays


def test_safetensors_export_loads_bit_for_bit_like_the_old_npz(tmp_path):
  from safetensors.numpy import load_file
  path, _ = make_workdir(tmp_path / "run", tiny_config())
  loaded = inference.load(path)
  arrays = _old_npz_export(loaded, tmp_path / "old")
  inference.export_params(loaded, tmp_path / "new")
  assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
      "config.json", "params.safetensors"]
  stored = load_file(tmp_path / "new" / "params.safetensors")
  assert set(stored) == set(arrays)
  for k, a in arrays.items():
    assert stored[k].dtype == np.float32
    np.testing.assert_array_equal(stored[k], a)
  old = inference.load_params(tmp_path / "old")
  new = inference.load_params(tmp_path / "new")
  for a, b in zip(jax.tree.leaves(nnx.state(old.model)),
                  jax.tree.leaves(nnx.state(new.model)), strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  x = np.random.default_rng(1).uniform(size=(2, 16, 16, 4)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(old.model(x)),
                                np.asarray(new.model(x)))
  # Exporting over an old folder leaves one params file, the safetensors.
  inference.export_params(old, tmp_path / "old")
  assert not (tmp_path / "old" / "params.npz").exists()
  # A damaged file is named, as ValueError (the command's one line).
  (tmp_path / "new" / "params.safetensors").write_bytes(b"\x08" + b"\0" * 7)
  with pytest.raises(ValueError, match=r"params.safetensors is not a readable "
                     r"safetensors file"):
    inference.load_params(tmp_path / "new")
  (tmp_path / "new" / "params.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match="params.safetensors not found"):
    inference.load_params(tmp_path / "new")


@pytest.mark.parametrize("name", [
    "base",
    # Its eager build alone takes ~20 s on 2 shared cores (what
    # load_params no longer does).
    pytest.param("spiking_resunet", marks=pytest.mark.slow)])
def test_abstract_build_gives_the_eager_models_outputs(tmp_path, name):
  """load_params fills an abstractly built model (nothing initialised): its
  neuron constants and outputs equal a model built eagerly and given the
  same parameters."""
  import importlib

  from scnn_jax.config import schema
  config = importlib.import_module(f"configs.{name}").get_config()
  config.model.update(width=4, T=2)
  if name == "spiking_resunet":
    config.model.update(depth=1, blocks=1, prior_iters=2)
  config.data.image_size = 16
  config = schema.validate(config, devices=1, check_files=False)
  graphdef, abstract, rest = inference.abstract_model(config)
  for v in jax.tree.leaves(abstract):
    assert isinstance(v, jax.ShapeDtypeStruct)

  eager = builders.model(config, seed=0)
  # Trained weights stand-in: every parameter moved off its init.
  rng = np.random.default_rng(2)
  nnx.update(eager, jax.tree.map(
      lambda p: p + rng.normal(size=p.shape).astype(p.dtype) * 0.1,
      nnx.state(eager, nnx.Param)))
  eager.eval()
  inference.export_params(inference.Loaded(eager, config, 0, {}),
                          tmp_path / "export")
  loaded = inference.load_params(tmp_path / "export")
  want_rest = nnx.state(eager, nnx.Not(nnx.Param))
  for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(want_rest),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  image = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
  mask = np.zeros((2, 16, 16, 1), np.float32)
  mask[:, 4:10, 5:12] = 1.0

  from scnn_jax.models.scnn import masked_input
  g, state = nnx.split(eager)
  # One program for both (jitted: the prior models' loops are slow op by op).
  forward = jax.jit(lambda s: nnx.merge(g, s)(masked_input(
      image, mask, config.model.mask_channel)))
  g_loaded, state_loaded = nnx.split(loaded.model)
  assert g_loaded == g
  np.testing.assert_array_equal(np.asarray(forward(state_loaded)),
                                np.asarray(forward(state)))
