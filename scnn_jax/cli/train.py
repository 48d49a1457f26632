"""Trains a scnn_jax model.

    scnn-train --config configs/base.py [--workdir runs/base] \
        [--config.train.steps=500 ...]
    python train.py --config configs/base.py ...        (the same, from a clone)

The workdir defaults to runs/<config file stem>; running the same command
again resumes from its latest checkpoint.
"""

import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from scnn_jax import backend, distributed, trainer
from scnn_jax.checkpoint import CheckpointError
from scnn_jax.cli import common
from scnn_jax.config_lib import ConfigError
from scnn_jax.data import DataError

FLAGS = flags.FLAGS


def define_flags():
  # Defined when the command runs, not on import, so that the tools of this
  # package can be imported together.
  config_flags.DEFINE_config_file(
      "config", None, "Config file (a .py with get_config()).",
      lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Output directory (default: runs/<config file stem>).")
  distributed.define_flags()
  common.define_compilation_cache_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(common.quiet_library_info)
  distributed.initialize_from_flags()
  common.setup_compilation_cache(FLAGS.compilation_cache)
  # XLA CPU mallocs every step's buffers; keep freed pages mapped for reuse
  # instead of page-faulting them in again each step (process-wide, so it is
  # done here in the entry point; see scnn_jax.backend).
  backend.tune_host_allocator()
  workdir = FLAGS.workdir or f"runs/{epath.Path(FLAGS['config'].config_filename).stem}"
  logging.info("workdir: %s", workdir)
  try:
    trainer.train_and_evaluate(FLAGS.config, workdir)
  except (ConfigError, DataError, trainer.NonFiniteLossError,
          CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except trainer.Preempted as e:
    logging.warning("%s", e)
    sys.exit(143)  # 128 + SIGTERM: an unfinished run, for schedulers


def run():
  """The ``scnn-train`` console command."""
  define_flags()
  flags.mark_flags_as_required(["config"])
  app.run(main)


if __name__ == "__main__":
  run()
