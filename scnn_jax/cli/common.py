"""Process-wide start-up shared by the training commands: logging, the JAX
compilation cache."""

from __future__ import annotations

import logging as pylogging
import os

from absl import flags, logging

FLAGS = flags.FLAGS

# Where --compilation_cache=auto puts the cache on GPU/TPU.
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "scnn_jax",
                                 "jax_compilation_cache")


def define_compilation_cache_flag():
  flags.DEFINE_string(
      "compilation_cache", "auto",
      "JAX persistent compilation cache: a directory (local or gs://), 'off', "
      f"or 'auto' (= {DEFAULT_CACHE_DIR} on GPU/TPU, off on CPU, where "
      "it did not pay off: README, 'Compilation cache').")


def quiet_library_info(record) -> bool:
  # Orbax logs every save step at INFO; keep the console to our progress
  # lines (its warnings and errors still show).
  return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def setup_compilation_cache(value: str) -> str | None:
  """Points JAX's persistent cache at ``value``; returns the directory used.

  A resumed run, or the same config run again, then loads its compiled steps
  instead of compiling them. Must run before the first compilation.
  """
  import jax
  if value == "off" or (value == "auto" and jax.default_backend() == "cpu"):
    return None
  path = DEFAULT_CACHE_DIR if value == "auto" else value
  jax.config.update("jax_compilation_cache_dir", path)
  # Cache every program, also the quick ones (eval steps compile in < 1 s).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  logging.info("JAX compilation cache: %s", path)
  return path
