"""scnn_jax.config.schema: one table of fields, one validation pass, one-line
errors.

Every invalid value names its dotted field and what is allowed; unknown
fields are rejected the same way; every field is checked whatever the task
or neuron kind reads; fields a config (or an old workdir's config.json) lacks
get the schema's defaults, which are configs/base.py's values.
"""

import importlib
import json
import pathlib

import pytest

from configs import base, mnist5k_alif, vae_mnist5k
from scnn_jax.config import schema
from scnn_jax.ops.checks import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py"))


def _set(config, dotted, value):
  """``config`` as a plain dict with ``dotted`` set to ``value`` (a dict,
  as a config.json reads, takes any type: ConfigDict would refuse some)."""
  config = config.to_dict() if hasattr(config, "to_dict") else config
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
  return config


def _error(config, devices=1) -> str:
  with pytest.raises(ConfigError) as e:
    schema.validate(config, devices=devices)
  return str(e.value)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_validates(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  done = schema.validate(config, devices=1, check_files=False)
  assert done.task == config.task


def test_configs_base_sets_only_what_the_schema_leaves_to_it():
  """configs/base.py is the schema's defaults for the SC-NN plus the fields
  the schema leaves to a config: it sets no default of its own."""
  b = json.loads(base.get_config().to_json_best_effort())
  d = json.loads(schema.defaults("inpaint", "scnn").to_json_best_effort())
  set_by_base = {(s, n) for s in b if isinstance(b[s], dict) for n in b[s]
                 if d.get(s, {}).get(n, object()) != b[s][n]}
  assert set_by_base == {
      ("model", "width"), ("model", "num_layers"), ("model", "T"),
      ("model", "threshold"), ("data", "source"), ("data", "name"),
      ("data", "image_size"), ("data", "channels"), ("data", "num_eval"),
      ("train", "steps"), ("train", "batch_size"),
      ("train", "eval_batch_size")}
  for section, name in set_by_base:
    assert schema.FIELDS[section][name].default is schema.REQUIRED
  # Nothing the SC-NN reads is missing, so every field can be overridden.
  assert json.loads(schema.complete(b).to_json_best_effort()) == b


def test_an_old_config_json_gets_the_defaults_of_newer_fields():
  old = json.loads(base.get_config().to_json_best_effort())
  for section, name in (("model", "refractory_steps"),
                        ("model", "neuron_solver"), ("model", "noise_resample"),
                        ("data", "train_crop"), ("data", "bad_images"),
                        ("train", "loss"), ("train", "watchdog_s")):
    del old[section][name]
  done = schema.complete(old, written=True)
  assert done.model.refractory_steps == 0
  assert done.model.neuron_solver == "scan"
  assert done.model.noise_resample == "step"
  assert done.data.train_crop == "random" and done.data.bad_images == "skip"
  assert done.train.loss == "mse" and done.train.watchdog_s == 0.0
  assert done.model.tau == 40.0           # what the file had is kept
  schema.validate(done, devices=1)
  # A config that is not a run's file gets today's default.
  assert schema.complete(old).model.noise_resample == "sequence"


def test_required_fields_without_a_default_are_named():
  c = json.loads(base.get_config().to_json_best_effort())
  del c["model"]["T"]
  with pytest.raises(ConfigError, match=r"^config\.model\.T = None: is "
                     r"missing \(must be set\)$"):
    schema.complete(c)


def test_unknown_fields_get_one_line_naming_their_path():
  c = base.get_config()
  with c.unlocked():
    c.model.nonexistent = 1
  assert _error(c) == ("config.model.nonexistent = 1: no such field; "
                       "config.model has no 'nonexistent' "
                       "(docs/reference/config.md lists the fields)")
  c = base.get_config()
  with c.unlocked():
    c.train.learning_rte = 0.1
  assert _error(c).startswith("config.train.learning_rte = 0.1: no such "
                              "field; did you mean 'learning_rate'?")
  assert schema.unknown_field("modle.T", "3") is not None
  assert schema.unknown_field("model.T", "3") is None
  assert schema.unknown_field("ablation.grid.model.tau") is None


@pytest.mark.parametrize("field, value, allowed", [
    # every neuron field is checked, whatever model.neuron is
    ("model.reset", "bogus", "must be one of subtract, zero"),
    ("model.beta", 5.0, "must be in (0, 1]"),
    ("model.tau", 0.0, "must be > 0"),
    ("model.detach_reset", 1, "must be True or False"),
    ("model.refractory_steps", 1, "must be 0 for neuron='alif'"),
    ("model.adaptation_increment", -0.5, "must be >= 0"),
    ("model.surrogate", "relu", "must be one of fast_sigmoid"),
])
def test_alif_configs_check_every_neuron_field(field, value, allowed):
  c = base.get_config()
  c.model.neuron = "alif"
  message = _error(_set(c, field, value))
  assert message.startswith(f"config.{field} = {value!r}: "), message
  assert allowed in message


@pytest.mark.parametrize("field", ["model.tau", "model.threshold",
                                   "model.noise_std", "model.alif_tau",
                                   "train.learning_rate", "masks.ratio_max"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_numbers_are_rejected(field, value):
  assert _error(_set(base.get_config(), field, value)).startswith(
      f"config.{field} = {value!r}: must be a finite number")


def _classify():
  c = mnist5k_alif.get_config()
  c.model.width, c.model.fc_width = 4, 16
  return c


def _vae():
  c = vae_mnist5k.get_config()
  c.model.hidden = (4, 8)
  c.data.image_size = 8
  return c


@pytest.mark.parametrize("make, field, value, message", [
    (base.get_config, "seed", -1, "must be an integer >= 0"),
    (base.get_config, "task", "segment", "must be one of inpaint, classify"),
    (base.get_config, "model.T", 0, "must be an integer >= 1"),
    (base.get_config, "model.name", "mnistnet", "must be one of scnn, cnn, "
     "spiking_decoder, spiking_unet"),
    (base.get_config, "model.width", 0, "must be an integer >= 1"),
    (base.get_config, "model.order", "diag", "must be one of fold, step"),
    (base.get_config, "model.dtype", "float16", "must be one of float32, "
     "bfloat16"),
    (base.get_config, "data.source", "x", "must be one of embedded, tfds, "
     "folder"),
    (base.get_config, "data.name", "cifar", "must be one of natural, mnist5k"),
    (base.get_config, "data.image_size", 2, "must be an integer >= 4"),
    (base.get_config, "data.image_size", 300, "must be <= 255"),
    (base.get_config, "data.image_size", 32.0, "must be an integer"),
    (base.get_config, "data.channels", 2, "must be one of 1, 3"),
    (base.get_config, "data.num_eval", 0, "must be an integer >= 1"),
    (base.get_config, "data.prefetch", -1, "must be an integer >= 0"),
    (base.get_config, "data.num_workers", -1, "must be an integer >= 0"),
    (base.get_config, "data.train_crop", "left", "must be one of random, "
     "center"),
    (base.get_config, "data.bad_images", "warn", "must be one of skip, error"),
    (base.get_config, "data.data_dir", 3, "non-empty string or None"),
    (base.get_config, "data.tfds_download", 1, "must be True or False"),
    (base.get_config, "masks.kind", "circle", "must be one of box, center, "
     "stroke, pixels"),
    (base.get_config, "masks.ratio_min", 0.0, "must be in (0.0, 1.0)"),
    (base.get_config, "masks.ratio_max", 0.01, "must be >= masks.ratio_min"),
    (base.get_config, "masks.max_boxes", 0, "must be an integer >= 1"),
    (base.get_config, "masks.eval_seed", -1, "must be an integer >= 0"),
    (base.get_config, "train.steps", 0, "must be an integer >= 1"),
    (base.get_config, "train.optimizer", "lamb", "must be one of adam, adamw"),
    (base.get_config, "train.nan_policy", "ignore", "must be one of stop, "
     "skip"),
    (base.get_config, "train.loss", "l1", "must be one of mse, log_mse, "
     "image_mse"),
    (base.get_config, "train.ema_decay", 1.0, "must be in [0, 1)"),
    (base.get_config, "train.ema_decay", -0.1, "must be in [0, 1)"),
    (base.get_config, "train.batch_size", 12, "must be divisible by the "
     "number of devices (8)"),
    (base.get_config, "train.watchdog_s", -2.0, "must be -1 (off), 0 (auto"),
    (base.get_config, "train.sigterm_grace_s", 0.0, "must be > 0"),
    (base.get_config, "ablation.mode", "pairs", "must be one of grid, zip"),
    (_classify, "model.loss", "hinge", "must be one of mse_count"),
    (_classify, "model.pool", "min", "must be one of max, avg"),
    (_classify, "model.dropout", 1.0, "must be in [0, 1)"),
    (_classify, "model.noise_std", 0.1, "must be 0 for task=classify"),
    (_classify, "model.order", "step", "must be 'fold' for task=classify"),
    (_classify, "model.input_mean", (0.1, 0.2), "must be a tuple of 1 or 1"),
    (_classify, "model.alif_learn_tau", "no", "must be True or False"),
    (_vae, "model.latent", "gauss", "must be one of fsvae, esvae"),
    (_vae, "model.image_decoder", "rate", "must be one of fixed_decay, taid"),
    (_vae, "model.hidden", (), "must list at least one conv width"),
    (_vae, "data.image_size", 16, "must be 8: model.hidden=(4, 8)"),
    (_vae, "metrics.fad_workdir", "/nonexistent", "not a FAD autoencoder "
     "workdir"),
    (_vae, "metrics.inception_weights", "/nonexistent.npz", "file not found"),
])
def test_every_validation_error_names_its_field(make, field, value, message):
  got = _error(_set(make(), field, value), devices=8)
  assert got.startswith(f"config.{field} = {value!r}: "), got
  assert message in got


def test_nested_numbers_name_their_index():
  c = _classify()
  c.model.input_std = (0.0,)
  assert _error(c) == "config.model.input_std[0] = 0.0: must be > 0"


@pytest.mark.parametrize("value", [(3,), (2, 2), (-1, 2), (1.0, 2), (True, 2),
                                   (0, 1, 2)])
def test_bad_profile_steps_name_the_field(value):
  assert _error(_set(base.get_config(), "train.profile_steps", value)) == (
      f"config.train.profile_steps = {value!r}: must be () (off) or "
      "(start, stop): integers with 0 <= start < stop")


@pytest.mark.parametrize("field, value, message", [
    ("encoder", "rate", "config.model.encoder = 'rate': must be 'direct'"),
    ("reset", "subtract", "config.model.reset = 'subtract': must be 'zero'"),
    ("noise_resample", "step",
     "config.model.noise_resample = 'step': must be 'sequence'"),
    ("name", "cnn", "config.model.name = 'cnn': must be 'scnn'"),
])
def test_staircase_rejects_configs_where_the_input_varies(field, value,
                                                          message):
  c = base.get_config()
  c.model.neuron_solver = "staircase"
  schema.validate(c, devices=1)                     # the base is fine
  c.model[field] = value
  assert _error(c).startswith(message)
  c = base.get_config()
  c.model.update(neuron_solver="staircase", noise_resample="step",
                 noise_std=0.0)
  schema.validate(c, devices=1)                     # no noise: constant input


def test_model_specific_rules():
  from configs import spiking_unet, taid_inpaint
  c = taid_inpaint.get_config()
  c.model.num_layers, c.model.spiking_layers = 3, 3
  assert _error(c).startswith("config.model.spiking_layers = 3: must be an "
                              "integer <= 2")
  c = spiking_unet.get_config()
  c.model.depth = 0
  assert _error(c).startswith("config.model.depth = 0: must be an integer "
                              ">= 1")
  c = spiking_unet.get_config()
  c.model.mask_channel = False
  assert _error(c).startswith("config.model.mask_channel = False: must be "
                              "one of True")


def test_the_models_declare_fields_the_schema_has():
  """A field a model declares but the schema lacks would never be filled,
  and a declaration under a name the registry does not build would never
  be read: either is a typo the tables would not show."""
  from scnn_jax.models import registry
  built = {n for models in registry.MODELS.values() for n in models}
  assert set(registry.READS) <= built and set(registry.CHECKS) <= built
  for name, fields in registry.READS.items():
    assert set(fields) <= set(schema.FIELDS["model"]), name
  assert schema.FIELDS["model"]["depth"].models == (
      "spiking_unet", "spiking_resunet", "relu_resunet")
  assert schema.FIELDS["model"]["width"].models == ()
  assert "depth" not in schema.defaults("inpaint", "scnn").model
  assert "depth" in schema.defaults("inpaint", "relu_resunet").model


def test_ablation_grids_name_the_field():
  def grid(**g):
    c = base.get_config()
    c.ablation.grid = g
    return c
  assert _error(grid(model={"width": [4, 8]})).startswith(
      "config.ablation.grid.model.width = [4, 8]: cannot be swept in one "
      "compiled program")
  c = grid(model={"tau": [1.0, 2.0], "threshold": [1.0]})
  c.ablation.mode = "zip"
  assert "mode='zip' needs lists of equal length" in _error(c)
  assert "non-empty list" in _error(grid(model={"tau": []}))
  schema.validate(grid(model={"tau": [1.0, 2.0]}), devices=1)


def test_folders_are_checked_unless_asked_not_to(tmp_path):
  c = base.get_config()
  c.data.source, c.data.folder = "folder", str(tmp_path / "nope")
  assert _error(c).startswith(f"config.data.folder = '{tmp_path}/nope': "
                              "folder does not exist")
  schema.validate(c, devices=1, check_files=False)   # e.g. an old workdir
  c.data.folder = None
  assert _error(c) == ("config.data.folder = None: must be set for "
                       "data.source='folder'")
