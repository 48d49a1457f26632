"""Trains a scnn_jax model.

    scnn-train --config configs/base.py [--workdir runs/base] \\
        [--config.train.steps=500 ...]
    python train.py --config configs/base.py ...        (the same, from a clone)

The workdir defaults to runs/<config file stem>; running the same command
again resumes from its latest checkpoint. The loop:
``scnn_jax.training.trainer``.
"""

from absl import flags

from scnn_jax.cli import common
from scnn_jax.training import trainer

FLAGS = flags.FLAGS


def main(argv):
  workdir = common.start(argv)
  common.run_or_exit(trainer.train_and_evaluate, FLAGS.config, workdir,
                     takeover_lock=FLAGS.takeover_lock)


def run():
  """The ``scnn-train`` console command."""
  common.define_flags("Config file (a .py with get_config()).")
  common.run_app(main)


if __name__ == "__main__":
  run()
