"""FAD: the Frechet Autoencoder Distance of paper B / FSVAE, and its autoencoder.

FAD = Frechet distance between Gaussian fits of the latent codes that an
ordinary conv autoencoder, trained with MSE on the same dataset, gives to two
image sets (generated samples and held-out images). The autoencoder here is
FSVAE's ``ann_ae.AE`` (public code): per hidden width a 3x3 stride-2 conv
(padding 1) -> BatchNorm -> LeakyReLU (32/64/128/256; CelebA 64x64 adds 512)
down to 2x2, a linear layer to the latent code (64 for MNIST-like data, 128
otherwise), and the mirrored decoder (linear, 3x3 stride-2 transposed convs
-> BN -> LeakyReLU, a last transposed conv to the image channels, tanh). It
works on [-1, 1] images like FSVAE; the API takes [0, 1] images.

Train it once per dataset (its own command; the workdir is then reused by
every generation run that names it in ``--config.metrics.fad_workdir``)::

    python -m scnn_jax.fad --config configs/fad_mnist5k.py \\
        --workdir runs/fad_mnist5k

This is the ordinary trainer (``task = "fad_autoencoder"``: checkpoints,
resume, multi-device) followed by the latent statistics of the held-out set,
saved as ``fad_reference.npz`` (``mu``, ``sigma``, ``n``) in the workdir.

Scoring in Python::

    scorer = fad.FadScorer.load("runs/fad_mnist5k")
    scorer.distance(generated, held_out)      # images [N, H, W, C] in [0, 1]
    scorer.distance_to_reference(generated)   # vs fad_reference.npz
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
from etils import epath

from scnn_jax.config_lib import ConfigError
from scnn_jax.metrics import frechet
from scnn_jax.metrics.frechet import (REFERENCE_FILE, FadScorer,  # noqa: F401
                                      distance_of_features)
from scnn_jax.models.fad_autoencoder import (FadAutoencoder,  # noqa: F401
                                             default_hidden)

TASK_NAME = "fad_autoencoder"   # its trainer task (scnn_jax.tasks.generate)


# -----------------------------------------------------------------------------
# Scoring
# -----------------------------------------------------------------------------


def check_workdir(workdir, field="metrics.fad_workdir", image_size=None,
                  channels=None):
  """Raises ``ConfigError`` unless ``workdir`` holds a FAD autoencoder run
  for images of the given size and channels."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise ConfigError(field, workdir, "is not a FAD autoencoder workdir (no "
                      "config.json): train one with python -m scnn_jax.fad "
                      "--config configs/fad_<dataset>.py --workdir DIR")
  cfg = json.loads(path.read_text())
  if cfg.get("task") != TASK_NAME:
    raise ConfigError(field, workdir, f"holds a {cfg.get('task')!r} run, not "
                      "a FAD autoencoder")
  d = cfg.get("data", {})
  for key, want in (("image_size", image_size), ("channels", channels)):
    if want is not None and d.get(key) != want:
      raise ConfigError(field, workdir, f"its autoencoder was trained on "
                        f"data.{key} = {d.get(key)}, this run uses {want}")
  if not (epath.Path(workdir) / "checkpoints").exists():
    raise ConfigError(field, workdir, "has no checkpoints: train it first")


def load_scorer(workdir, batch_size: int = 256) -> FadScorer:
  """The FAD scorer of a trained autoencoder workdir (with its reference)."""
  from scnn_jax import inference
  return FadScorer(inference.load(workdir).model, batch_size,
                   frechet.read_reference(workdir))


def write_reference(workdir, config=None) -> dict:
  """Latent statistics of the held-out (eval) set -> ``fad_reference.npz``."""
  from scnn_jax import data, inference
  workdir = epath.Path(workdir)
  config = config or inference.read_config(workdir)
  scorer = load_scorer(workdir)
  images = data.build(config).eval_set()["image"]
  feats = scorer.features(np.asarray(images, np.float32) / np.float32(255.0))
  return frechet.write_reference(workdir, feats)


# -----------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------


def _quiet_library_info(record) -> bool:
  # As train.py: keep Orbax's per-save INFO lines off the console.
  return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
  from absl import flags, logging

  from scnn_jax import trainer
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(_quiet_library_info)
  workdir = FLAGS.workdir or (
      f"runs/{epath.Path(FLAGS['config'].config_filename).stem}")
  if "://" not in workdir:       # Orbax wants absolute local paths
    workdir = os.path.abspath(workdir)
  try:
    summary = trainer.train_and_evaluate(FLAGS.config, workdir)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0:
    ref = write_reference(workdir, FLAGS.config)
    logging.info("FAD autoencoder in %s: held-out recon MSE %.5f; reference "
                 "statistics of %d held-out images in %s. Use it with "
                 "--config.metrics.fad_workdir=%s", workdir,
                 summary["eval"]["recon_mse"], ref["n"], ref["path"], workdir)


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags

  from scnn_jax import distributed
  config_flags.DEFINE_config_file(
      "config", None, "FAD autoencoder config (e.g. configs/fad_mnist5k.py).",
      lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Output directory (default: runs/<config file stem>).")
  distributed.define_flags()

  def _main(argv):
    distributed.initialize_from_flags()
    main(argv)

  flags.mark_flags_as_required(["config"])
  app.run(_main)
