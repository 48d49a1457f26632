"""scnn_jax.cli: the shared start-up (compilation cache, console lines), the
training command's help, config listing and one-line errors. (The
inpainting command: test_cli_inpaint.py; the ablation export:
test_ablation.py; the FAD command: test_metrics.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from scnn_jax.cli import common

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_cache_config():
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  yield
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def test_cache_choices(monkeypatch, tmp_path, restore_cache_config):
  before = jax.config.jax_compilation_cache_dir
  assert common.setup_compilation_cache("off") is None
  assert jax.config.jax_compilation_cache_dir == before
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  assert common.setup_compilation_cache("auto") == common.DEFAULT_CACHE_DIR
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
  assert common.setup_compilation_cache("auto") == str(tmp_path / "env")
  assert common.setup_compilation_cache(str(tmp_path / "c")) == str(
      tmp_path / "c")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0


def test_cpu_programs_are_cached_and_reused(tmp_path):
  # A fresh process each time: the first compiles and writes the entries,
  # the second finds them and writes nothing.
  code = ("import sys, jax, jax.numpy as jnp\n"
          "from scnn_jax.cli import common\n"
          "common.setup_compilation_cache(sys.argv[1])\n"
          "print(float(jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(()))))\n")
  env = {**os.environ, "JAX_DEBUG_LOG_MODULES": "jax._src.compilation_cache"}
  runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
          for _ in range(2)]
  for r in runs:
    assert r.returncode == 0, r.stderr[-1500:]
    assert float(r.stdout) == pytest.approx(3 * 0.8414709848)
  assert "Writing jit__lambda to persistent compilation cache" in runs[0].stderr
  assert list(tmp_path.iterdir())
  assert "Writing" not in runs[1].stderr


# -- scnn-train / train.py -----------------------------------------------------


def _train(*args, cwd=REPO, env=None):
  return subprocess.run([sys.executable, str(REPO / "train.py"), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=600,
                        env=None if env is None else {**os.environ, **env})


TINY = ["--config", str(REPO / "configs" / "base.py"), "--cpu_devices=2",
        "--config.model.width=4", "--config.model.T=2",
        "--config.data.image_size=16", "--config.data.num_eval=8",
        "--config.train.batch_size=4", "--config.train.eval_batch_size=8"]


def test_train_command_runs_from_a_relative_workdir(tmp_path):
  # A relative --workdir, as users type it (Orbax itself needs absolute paths).
  ok = _train(*TINY, "--workdir=cli", "--config.train.steps=2",
              "--config.train.log_every=1", "--config.train.checkpoint_every=1",
              cwd=tmp_path)
  assert ok.returncode == 0, ok.stderr[-3000:]
  # Our progress lines as docs/how-to/train.md shows them: no absl prefix.
  lines = ok.stderr.splitlines()
  assert any(line.startswith("step 2/2 (100.0%) loss ") and "steps/s" in line
             for line in lines), ok.stderr[-3000:]
  assert (tmp_path / "cli" / "results.json").exists()
  assert (tmp_path / "cli" / "checkpoints" / "2").is_dir()


@pytest.mark.parametrize("override, line", [
    ("--config.model.T=0", "error: config.model.T = 0: must be an integer >= 1"),
    ("--config.model.surrogate=relu", "error: config.model.surrogate = "
     "'relu': must be one of fast_sigmoid, atan, sigmoid, triangle, "
     "rectangular"),
    ("--config.model.nonexistent=1", "error: config.model.nonexistent = '1': "
     "no such field; config.model has no 'nonexistent' "
     "(docs/reference/config.md lists the fields)"),
    ("--config.modle.T=3", "error: config.modle.T = '3': no such field; did "
     "you mean 'model'?"),
])
def test_config_mistakes_fail_with_one_line_before_compiling(tmp_path,
                                                             override, line):
  """Exit status 2, the error as the last line of stderr, no traceback, no
  workdir, and nothing compiled: the run's own compilation cache (every
  program is cached, however quick) stays empty."""
  cache = tmp_path / "cache"
  bad = _train(*TINY, f"--workdir={tmp_path / 'run'}",
               f"--compilation_cache={cache}", override)
  assert bad.returncode == 2, bad.stderr[-2000:]
  assert bad.stderr.strip().splitlines()[-1] == line
  assert "Traceback" not in bad.stderr
  assert not (tmp_path / "run").exists()
  assert not cache.exists() or not list(cache.iterdir())


def test_help_lists_the_commands_own_flags_one_line_each():
  r = _train("--help")
  assert r.returncode == 0, r.stderr[-2000:]
  out = r.stdout
  assert out.startswith("Trains a scnn_jax model.")
  flag_lines = out.split("\nflags:\n", 1)[1].splitlines()
  named = [line.split()[0] for line in flag_lines]
  for flag in ("--config=FILE", "--workdir=DIR", "--config.FIELD=VALUE",
               "--compilation_cache=auto|off|DIR", "--list_configs",
               "--show_config", "--cpu_devices=N", "--helpfull"):
    assert flag in named, out
  assert len(named) == len(set(named))
  assert "--logtostderr" not in out and "grain" not in " ".join(named)
  assert all(len(line) <= 120 for line in flag_lines)


def _stderr_lines(r):
  return [line for line in r.stderr.strip().splitlines() if line]


@pytest.mark.parametrize("text, line", [
    (None, "error: --config {path}: no such file (python train.py "
     "--list_configs lists the shipped configs)"),
    ("def get_config(:\n", "error: --config {path}: SyntaxError in c.py line "
     "1: invalid syntax"),
    ("x = 1\n", "error: --config {path}: the file defines no get_config()"),
    ("def get_config():\n  return undefined_name\n", "error: --config {path}: "
     "get_config() failed in c.py line 2: NameError: name 'undefined_name' is "
     "not defined"),
    ("def get_config():\n  raise ValueError('no such preset')\n",
     "error: --config {path}: get_config() failed: ValueError: no such preset"),
])
def test_a_missing_or_broken_config_file_is_one_line(tmp_path, text, line):
  path = tmp_path / "c.py"
  if text is not None:
    path.write_text(text)
  r = _train("--config", str(path), f"--workdir={tmp_path / 'run'}")
  assert r.returncode == 2, r.stderr[-2000:]
  assert _stderr_lines(r) == [line.format(path=path)]
  assert not (tmp_path / "run").exists()


def test_list_configs_names_each_config_and_its_purpose():
  r = _train("--list-configs", env={"COLUMNS": "80"})
  assert r.returncode == 0, r.stderr[-2000:]
  assert max(len(line) for line in r.stdout.splitlines()[1:]) <= 80
  r = _train("--list-configs", env={"COLUMNS": "120"})
  lines = r.stdout.splitlines()
  assert lines[0].startswith(f"configs in {REPO / 'configs'} ")
  rows = {line.split()[0]: line for line in lines[1:]}
  assert sorted(rows) == sorted(p.name for p in (REPO / "configs").glob("*.py"))
  # The first sentence after the docstring's command line, asides dropped.
  assert rows["base.py"].split(None, 1)[1].startswith(
      "Paper A's SC-NN inpainting 32x32 natural-image patches from the "
      "embedded dataset")
  assert "[scnn-fad] The FAD autoencoder" in rows["fad_mnist5k.py"]
  assert "[scnn-fad]" not in rows["vae_mnist5k.py"]


def test_show_config_prints_the_completed_fields_and_runs_nothing(tmp_path):
  r = _train("--config", str(REPO / "configs" / "base.py"),
             "--config.model.T=3", "--show-config", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = {line.split(" = ")[0]: line for line in r.stdout.splitlines()
          if not line.startswith("#")}
  assert rows["model.T"].split() == ["model.T", "=", "3", "#", "int", ">=",
                                     "1;", "required"]
  # A field base.py leaves out, filled with the schema's default.
  assert rows["train.ema_decay"].split()[2:] == [
      "0.0", "#", "number", "in", "[0,", "1);", "default", "0.0"]
  assert "'mse'" in rows["train.loss"] and "one of mse," in rows["train.loss"]
  assert not (tmp_path / "runs").exists()
  bad = _train("--config", str(REPO / "configs" / "base.py"),
               "--config.model.T=0", "--show-config", cwd=tmp_path)
  assert bad.returncode == 2
  assert _stderr_lines(bad) == [
      "error: config.model.T = 0: must be an integer >= 1"]


def test_plain_console_lines_for_our_records_only():
  import logging as pylogging

  from absl import logging
  fmt = common.PlainFormatter(logging.PythonFormatter())

  def record(path, level, msg):
    return pylogging.LogRecord("absl", level, path, 7, msg, (), None)
  ours = str(REPO / "scnn_jax" / "trainer.py")
  assert fmt.format(record(ours, pylogging.INFO, "step 3/20")) == "step 3/20"
  assert fmt.format(record(ours, pylogging.WARNING, "slow input")) == \
      "warning: slow input"
  theirs = fmt.format(record("/site-packages/orbax/x.py", pylogging.INFO,
                             "saved"))
  assert theirs.startswith("I") and theirs.endswith("x.py:7] saved")


# -- scnn-fad / python -m scnn_jax.fad -----------------------------------------


def test_fad_autoencoder_trains_and_its_workdir_is_reused(tmp_path):
  """task="fad_autoencoder" through the trainer, the held-out reference
  statistics, and the workdir check a generation run does."""
  from configs import fad_mnist5k
  from scnn_jax import data
  from scnn_jax.training import trainer
  from scnn_jax.config import schema
  from scnn_jax.cli import fad
  from scnn_jax.ops.checks import ConfigError
  from scnn_jax.tasks.generate import load_fad_scorer
  config = fad_mnist5k.get_config()
  config.model.update(latent_dim=4, hidden=(4, 8))
  config.data.update(image_size=8, num_eval=24)
  config.train.update(steps=4, batch_size=8, eval_batch_size=8, log_every=2,
                      eval_every=4, checkpoint_every=4, num_sample_images=2)
  summary = trainer.train_and_evaluate(config, tmp_path)
  assert 0 < summary["eval"]["recon_mse"] < 1
  assert summary["eval"]["num_images"] == 24
  ref = fad.write_reference(tmp_path)
  assert ref["n"] == 24
  schema.check_fad_workdir(tmp_path, image_size=8, channels=1)
  with pytest.raises(ConfigError, match="data.image_size = 8"):
    schema.check_fad_workdir(tmp_path, image_size=32, channels=1)
  scorer = load_fad_scorer(tmp_path)
  held_out = data.build(schema.validate(config)).eval_set()["image"] / \
      np.float32(255.0)
  # The held-out set against its own stored statistics: ~0.
  assert abs(scorer.distance_to_reference(held_out)) < 1e-6
