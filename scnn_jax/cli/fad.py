"""Trains the FAD feature autoencoder and writes its reference statistics.

    scnn-fad --config configs/fad_mnist5k.py [--workdir runs/fad_mnist5k]
    python -m scnn_jax.fad --config configs/fad_mnist5k.py   (the same)
"""

from absl import app, flags
from ml_collections import config_flags

from scnn_jax import distributed, fad


def define_flags():
  config_flags.DEFINE_config_file(
      "config", None, "FAD autoencoder config (e.g. configs/fad_mnist5k.py).",
      lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Output directory (default: runs/<config file stem>).")
  distributed.define_flags()


def main(argv):
  distributed.initialize_from_flags()
  fad.main(argv)


def run():
  """The ``scnn-fad`` console command."""
  define_flags()
  flags.mark_flags_as_required(["config"])
  app.run(main)


if __name__ == "__main__":
  run()
