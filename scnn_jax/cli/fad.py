"""Trains the FAD feature autoencoder and writes its reference statistics.

    scnn-fad --config configs/fad_mnist5k.py [--workdir runs/fad_mnist5k]
    python -m scnn_jax.fad --config configs/fad_mnist5k.py   (the same)

FAD (paper B / FSVAE) is the Frechet distance between the latent codes a
plain conv autoencoder (``scnn_jax.models.fad_autoencoder``), trained with
MSE on the same dataset, gives to generated and held-out images
(``scnn_jax.metrics.frechet``). This command is the ordinary training loop
(``task = "fad_autoencoder"``: checkpoints, resume, multi-device) followed by
the latent statistics of the held-out set, saved as ``fad_reference.npz``
(``mu``, ``sigma``, ``n``) in the workdir, which every generation run that
names it (``--config.metrics.fad_workdir``) reuses.
"""

import numpy as np
from absl import app, flags, logging

from scnn_jax import data
from scnn_jax.cli import common
from scnn_jax.metrics import frechet
from scnn_jax.runtime import inference
from scnn_jax.training import trainer

FLAGS = flags.FLAGS


def write_reference(workdir) -> dict:
  """Latent statistics of the held-out (eval) set -> ``fad_reference.npz``."""
  config = inference.read_config(workdir)
  model = inference.load(workdir).model
  images = data.build(config).eval_set()["image"]
  feats = frechet.FadScorer(model).features(
      np.asarray(images, np.float32) / np.float32(255.0))
  return frechet.write_reference(workdir, feats)


def main(argv):
  workdir = common.start(argv, absolute_workdir=True)
  summary = common.run_or_exit(trainer.train_and_evaluate, FLAGS.config,
                               workdir, takeover_lock=FLAGS.takeover_lock)
  if common.is_main_process():
    ref = write_reference(workdir)
    logging.info("FAD autoencoder in %s: held-out recon MSE %.5f; reference "
                 "statistics of %d held-out images in %s. Use it with "
                 "--config.metrics.fad_workdir=%s", workdir,
                 summary["eval"]["recon_mse"], ref["n"], ref["path"], workdir)


def run():
  """The ``scnn-fad`` console command."""
  common.define_flags("FAD autoencoder config (e.g. configs/fad_mnist5k.py).")
  common.run_app(main)


if __name__ == "__main__":
  run()
