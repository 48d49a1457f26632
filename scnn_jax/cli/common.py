"""The set-up every training command shares (``scnn-train``, ``scnn-fad``):
flags, logging, multi-process start-up, the JAX compilation cache, and the
one-line errors.

    def main(argv):
      workdir = common.start(argv)
      common.run_or_exit(trainer.train_and_evaluate, FLAGS.config, workdir)

    def run():
      common.define_flags("Config file (a .py with get_config()).")
      common.run_app(main)

User mistakes end the command with one ``error: ...`` line on stderr and
exit status 2, before anything is compiled: a bad value
(``config.model.T = 0: must be an integer >= 1``), an override of a field
that does not exist (``--config.model.nonexistent=1``), unusable data, a
checkpoint that does not restore. A preempted run exits with 143.
"""

from __future__ import annotations

import logging as pylogging
import os
import re
import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from scnn_jax import backend, distributed, schema
from scnn_jax.checkpoint import CheckpointError
from scnn_jax.config_lib import ConfigError
from scnn_jax.data import DataError
from scnn_jax.stopping import NonFiniteLossError, Preempted

FLAGS = flags.FLAGS

# Where --compilation_cache=auto puts the cache.
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "scnn_jax",
                                 "jax_compilation_cache")
PREEMPTED_EXIT_CODE = 143   # 128 + SIGTERM: an unfinished run, for schedulers
USER_ERROR_EXIT_CODE = 2


def define_flags(config_help: str) -> None:
  """--config (+ --config.field=value overrides), --workdir, the
  multi-process flags and --compilation_cache. Defined when a command runs,
  not on import, so the commands of this package can be imported together."""
  config_flags.DEFINE_config_file("config", None, config_help,
                                  lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Output directory (default: runs/<config file stem>).")
  distributed.define_flags()
  define_compilation_cache_flag()


def define_compilation_cache_flag():
  flags.DEFINE_string(
      "compilation_cache", "auto",
      "JAX persistent compilation cache: a directory (local or gs://), 'off', "
      "or 'auto': $JAX_COMPILATION_CACHE_DIR if set, else "
      f"{DEFAULT_CACHE_DIR} (a resumed or repeated run loads its compiled "
      "steps instead of compiling them: README, 'Compilation cache').")


def _override_error(argv, error: Exception) -> ConfigError | None:
  """The one-line error for a ``--config.<path>`` override ml_collections
  could not place (a field the config file does not have)."""
  while error.args and isinstance(error.args[0], Exception):
    error = error.args[0]          # AttributeError(KeyError("'name'..."))
  found = re.search(r"'([^']+)'", str(error.args[0]) if error.args else "")
  overrides = [m.groups() for m in (
      re.match(r"--config\.([^=\s]+)(?:=(.*))?$", a) for a in argv[1:]) if m]
  for path, value in overrides:     # the override the message names
    if found is not None and found.group(1) in path.split("."):
      return schema.unknown_field(path, value) or ConfigError(
          path, value, "is not set by this config file; add it there to "
          "override it")
  for path, value in overrides:     # else the first the schema rejects
    unknown = schema.unknown_field(path, value)
    if unknown is not None:
      return unknown
  return None


def parse_flags(argv):
  """absl's flag parsing, with overrides of unknown config fields turned
  into the same one-line error as every other config mistake."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:   # raised by config_flags
    error = _override_error(argv, e)
    if error is None:
      raise
    print(f"error: {error}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)


def run_app(main) -> None:
  """``app.run(main)`` with ``--config`` required and ``parse_flags``."""
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=parse_flags)


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
  if value == "off":
    return None
  if value == "auto":
    # On every backend: on CPU a warm cache cut the CPU time of a 20-step
    # base run from 19.8 to 11.0 s (README, "Compilation cache").
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_CACHE_DIR
  else:
    path = value
  jax.config.update("jax_compilation_cache_dir", path)
  # Cache every program, also the quick ones (eval steps compile in < 1 s).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  logging.info("JAX compilation cache: %s", path)
  return path


def start(argv, *, absolute_workdir: bool = False) -> str:
  """Process start-up of a training command; returns the workdir."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(quiet_library_info)
  distributed.initialize_from_flags()
  setup_compilation_cache(FLAGS.compilation_cache)
  # XLA CPU mallocs every step's buffers; keep freed pages mapped for reuse
  # instead of page-faulting them in again each step (process-wide, so it is
  # done here in the entry point; see scnn_jax.backend).
  backend.tune_host_allocator()
  workdir = FLAGS.workdir or \
      f"runs/{epath.Path(FLAGS['config'].config_filename).stem}"
  if absolute_workdir and "://" not in workdir:
    workdir = os.path.abspath(workdir)
  logging.info("workdir: %s", workdir)
  return workdir


def run_or_exit(fn, *args):
  """``fn(*args)``; a user mistake exits 2 with one line, a preemption 143."""
  try:
    return fn(*args)
  except (ConfigError, DataError, NonFiniteLossError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)
  except Preempted as e:
    logging.warning("%s", e)
    sys.exit(PREEMPTED_EXIT_CODE)


def is_main_process() -> bool:
  import jax
  return jax.process_index() == 0
