"""The command-line start-up: the persistent compilation cache option."""

import os
import subprocess
import sys

import jax
import pytest

from scnn_jax.cli import common


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
