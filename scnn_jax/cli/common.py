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
exit status 2, before anything is compiled: a ``--config`` file that is
missing or does not load, a bad value
(``config.model.T = 0: must be an integer >= 1``), an override of a field
that does not exist (``--config.model.nonexistent=1``), an unknown flag,
unusable data, a checkpoint that does not restore. A preempted run exits
with 143; a write the storage refused (full disk, quota, permissions,
read-only) with 74 and a workdir another run holds with 75, each after one
line. ``--help`` lists the command's own flags, ``--list_configs`` the
repository's configs, ``--show_config`` the fields of a config
(``scnn_jax.cli.usage``).

Console lines: the progress and notes scnn_jax logs are printed as they are
(``step 300/1500 ...``; warnings as ``warning: ...``); other libraries' lines
keep absl's ``I1203 12:00:00.123 ...`` prefix (``PlainFormatter``).
"""

from __future__ import annotations

import logging as pylogging
import os
import re
import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from scnn_jax.cli import usage
from scnn_jax.config import schema
from scnn_jax.data import DataError
from scnn_jax.ops import backend
from scnn_jax.ops.checks import ConfigError
from scnn_jax.runtime import distributed
from scnn_jax.runtime.checkpoint import CheckpointError
from scnn_jax.runtime.workdir_lock import WorkdirBusy
from scnn_jax.training.stopping import (NonFiniteLossError, Preempted,
                                        WriteFailed)

FLAGS = flags.FLAGS

# Where --compilation_cache=auto puts the cache.
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "scnn_jax",
                                 "jax_compilation_cache")
PREEMPTED_EXIT_CODE = 143   # 128 + SIGTERM: an unfinished run, for schedulers
USER_ERROR_EXIT_CODE = 2
WRITE_FAILED_EXIT_CODE = 74   # sysexits' EX_IOERR: full disk, permissions
WORKDIR_BUSY_EXIT_CODE = 75   # sysexits' EX_TEMPFAIL: another run holds it


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
  flags.DEFINE_bool("takeover_lock", False, "Take the workdir's lease over "
                    "from a run known to be gone (object stores: docs/how-to/"
                    "reliability.md).")
  flags.DEFINE_bool("list_configs", False, "List the repository's configs "
                    "(configs/*.py) with their purpose, and exit.")
  flags.DEFINE_bool("show_config", False, "Print the config this command "
                    "would run (overrides applied, defaults filled), one "
                    "field a line with its allowed values and default, and "
                    "exit.")


def define_compilation_cache_flag():
  flags.DEFINE_string(
      "compilation_cache", "auto",
      "JAX persistent compilation cache: a directory (local or gs://), 'off', "
      "or 'auto': $JAX_COMPILATION_CACHE_DIR if set, else "
      f"{DEFAULT_CACHE_DIR} (a resumed or repeated run loads its compiled "
      "steps instead of compiling them: docs/how-to/train.md, "
      "'Compilation cache').")


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


def parse_flags(argv, doc: str | None = None):
  """absl's flag parsing, with ``--help`` / ``--list_configs`` answered
  first (exit 0), and a missing or broken ``--config`` file, overrides of
  unknown config fields and other flag mistakes turned into the same
  one-line error as every other config mistake (exit 2)."""
  argv = usage.normalise(argv)
  command = usage.command_name(argv[0])
  if any(a in usage.HELP_ARGS for a in argv[1:]):
    usage.emit(usage.short_help(doc))
    sys.exit(0)
  if any(a in ("--list_configs", "--list_configs=true") for a in argv[1:]):
    try:
      usage.emit(usage.list_configs())
    except FileNotFoundError as e:
      usage.exit_with(str(e))
    sys.exit(0)
  if "--helpfull" not in argv[1:]:
    message = usage.missing_config_error(argv, command)
    if message is not None:
      usage.exit_with(message)
  try:
    rest = FLAGS(argv)
  except (AttributeError, KeyError) as e:   # raised by config_flags
    message = usage.load_error(e, argv)
    if message is not None:
      usage.exit_with(message)
    error = _override_error(argv, e)
    if error is None:
      raise
    usage.exit_with(str(error))
  except flags.Error as e:
    message = (usage.load_error(e, argv) or usage.unloaded_config_error(argv)
               or f"{str(e).strip().splitlines()[0]} ({command} --help lists "
               "the flags)")
    usage.exit_with(message)
  except Exception as e:  # noqa: BLE001 - the config file's own code raised
    message = usage.load_error(e, argv)
    if message is None:
      raise
    usage.exit_with(message)
  message = usage.unloaded_config_error(argv)
  if message is not None:
    usage.exit_with(message)
  return rest


def run_app(main) -> None:
  """``app.run(main)`` with ``--config`` required and ``parse_flags``;
  ``--help`` shows ``main``'s module docstring and the command's flags."""
  flags.mark_flags_as_required(["config"])
  doc = getattr(sys.modules.get(main.__module__), "__doc__", None)
  app.run(main, flags_parser=lambda argv: parse_flags(argv, doc))


class PlainFormatter(pylogging.Formatter):
  """absl's console format for other libraries' lines; scnn_jax's own are
  printed as they are (``step 3/20 ...``), warnings and errors prefixed
  ``warning:`` / ``error:`` like the commands' one-line messages."""

  _PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def __init__(self, fallback: pylogging.Formatter):
    super().__init__()
    self.fallback = fallback

  def format(self, record) -> str:
    if not os.path.abspath(record.pathname).startswith(self._PACKAGE + os.sep):
      return self.fallback.format(record)
    text = record.getMessage()
    if record.levelno >= pylogging.ERROR:
      text = f"error: {text}"
    elif record.levelno >= pylogging.WARNING:
      text = f"warning: {text}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


def plain_console_lines() -> None:
  """Installs ``PlainFormatter`` on absl's handler (once)."""
  handler = logging.get_absl_handler()
  current = handler.python_handler.formatter
  if not isinstance(current, PlainFormatter):
    handler.setFormatter(PlainFormatter(current or logging.PythonFormatter()))


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
    # base run from 19.8 to 11.0 s (benchmarks/compilation_cache.sh;
    # docs/how-to/train.md, "Compilation cache").
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
  if FLAGS.show_config:
    try:
      usage.emit(usage.show_config(FLAGS.config))
    except ConfigError as e:
      usage.exit_with(str(e))
    sys.exit(0)
  logging.get_absl_logger().addFilter(quiet_library_info)
  # gcsfs logs every file it reads from gs:// at INFO (its own logger).
  pylogging.getLogger("gcsfs").setLevel(pylogging.WARNING)
  plain_console_lines()
  distributed.initialize_from_flags()
  setup_compilation_cache(FLAGS.compilation_cache)
  # XLA CPU mallocs every step's buffers; keep freed pages mapped for reuse
  # instead of page-faulting them in again each step (process-wide, so it is
  # done here in the entry point; see scnn_jax.ops.backend).
  backend.tune_host_allocator()
  workdir = FLAGS.workdir or \
      f"runs/{epath.Path(FLAGS['config'].config_filename).stem}"
  if absolute_workdir and "://" not in workdir:
    workdir = os.path.abspath(workdir)
  logging.info("workdir: %s", workdir)
  return workdir


def run_or_exit(fn, *args, **kwargs):
  """``fn(*args, **kwargs)``; a user mistake exits 2 with one line, a
  preemption 143, a write the storage refused 74, a busy workdir 75."""
  try:
    return fn(*args, **kwargs)
  except (ConfigError, DataError, NonFiniteLossError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)
  except Preempted as e:
    logging.warning("%s", e)
    sys.exit(PREEMPTED_EXIT_CODE)
  except WriteFailed as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(WRITE_FAILED_EXIT_CODE)
  except WorkdirBusy as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(WORKDIR_BUSY_EXIT_CODE)


def is_main_process() -> bool:
  import jax
  return jax.process_index() == 0
