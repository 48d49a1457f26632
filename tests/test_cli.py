"""scnn_jax.cli: the shared start-up (compilation cache), and the training
command's one-line errors. (The inpainting command: test_cli_inpaint.py; the
ablation export: test_sweep.py; the FAD command: test_metrics.py.)"""

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


def _train(*args, cwd=REPO):
  return subprocess.run([sys.executable, str(REPO / "train.py"), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=600)


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
  assert "step 2/2" in ok.stderr and "steps/s" in ok.stderr
  assert (tmp_path / "cli" / "results.json").exists()
  assert (tmp_path / "cli" / "checkpoints" / "2").is_dir()


@pytest.mark.parametrize("override, line", [
    ("--config.model.T=0", "error: config.model.T = 0: must be an integer >= 1"),
    ("--config.model.surrogate=relu", "error: config.model.surrogate = "
     "'relu': must be one of fast_sigmoid, atan, sigmoid, triangle, "
     "rectangular"),
    ("--config.model.nonexistent=1", "error: config.model.nonexistent = '1': "
     "no such field; config.model has no 'nonexistent' (configs/base.py lists "
     "the fields)"),
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


# -- scnn-fad / python -m scnn_jax.fad -----------------------------------------


def test_fad_autoencoder_trains_and_its_workdir_is_reused(tmp_path):
  """task="fad_autoencoder" through the trainer, the held-out reference
  statistics, and the workdir check a generation run does."""
  from configs import fad_mnist5k
  from scnn_jax import data, schema, trainer
  from scnn_jax.cli import fad
  from scnn_jax.config_lib import ConfigError
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
