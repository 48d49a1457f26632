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
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from scnn_jax import layers, metrics
from scnn_jax.config_lib import ConfigError
from scnn_jax.models.vae import (BatchNorm, ConvTranspose2d, check_image_size,
                                 dense, lecun_normal_np)

REFERENCE_FILE = "fad_reference.npz"
TASK_NAME = "fad_autoencoder"   # its trainer task (scnn_jax.tasks.generate)


def default_hidden(image_size: int) -> tuple[int, ...]:
  """FSVAE's widths: (32, 64, 128, 256), plus 512 per doubling beyond 32 px."""
  hidden = [32, 64, 128, 256]
  size = 32
  while size < image_size:
    hidden.append(hidden[-1] * 2)
    size *= 2
  while size > image_size and len(hidden) > 1:
    hidden.pop()
    size //= 2
  return tuple(hidden)


class FadAutoencoder(nnx.Module):
  """FSVAE's plain conv autoencoder (see the module docstring).

  ``image_shape`` ``(H, W, C)`` with H = W = ``2 * 2**len(hidden)``.
  """

  def __init__(self, image_shape, *, latent_dim=64, hidden=(32, 64, 128, 256),
               negative_slope=0.01, conv_impl="auto", rngs: nnx.Rngs):
    h, w, c = image_shape
    hidden = tuple(hidden)
    check_image_size(h, w, hidden)
    self.image_shape = (h, w, c)
    self.hidden = hidden
    self.latent_dim = latent_dim
    self.negative_slope = negative_slope
    convs, norms, cin = [], [], c
    for width in hidden:
      convs.append(layers.Conv2d(cin, width, 3, strides=2,
                                 padding=((1, 1), (1, 1)), impl=conv_impl,
                                 kernel_init=lecun_normal_np, rngs=rngs))
      norms.append(BatchNorm(width))
      cin = width
    self.enc_convs, self.enc_norms = nnx.List(convs), nnx.List(norms)
    flat = hidden[-1] * 4
    self.to_latent = dense(flat, latent_dim, rngs)
    self.from_latent = dense(latent_dim, flat, rngs)
    rev = hidden[::-1]
    ups, unorms = [], []
    for din, dout in list(zip(rev[:-1], rev[1:])) + [(rev[-1], rev[-1])]:
      ups.append(ConvTranspose2d(din, dout, strides=2, padding=1,
                                 output_padding=1, rngs=rngs))
      unorms.append(BatchNorm(dout))
    self.dec_convs, self.dec_norms = nnx.List(ups), nnx.List(unorms)
    self.final = ConvTranspose2d(rev[-1], c, strides=1, padding=1, rngs=rngs)

  def _act(self, x):
    return jax.nn.leaky_relu(x, self.negative_slope)

  def encode(self, images):
    """Latent codes ``[B, latent_dim]`` of images ``[B, H, W, C]`` in [0, 1]."""
    x = images * 2.0 - 1.0
    for conv, norm in zip(self.enc_convs, self.enc_norms):
      x = self._act(norm(conv(x)))
    return self.to_latent(x.reshape(x.shape[0], -1))

  def decode_pm1(self, z):
    """Latent codes -> images in [-1, 1] (tanh)."""
    x = self.from_latent(z).reshape((z.shape[0], 2, 2, self.hidden[-1]))
    for conv, norm in zip(self.dec_convs, self.dec_norms):
      x = self._act(norm(conv(x)))
    return jnp.tanh(self.final(x))

  def __call__(self, images):
    """Reconstructions in [0, 1] of images in [0, 1]."""
    return (self.decode_pm1(self.encode(images)) + 1.0) / 2.0


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


class FadScorer:
  """The trained FAD encoder of a workdir, jitted, on the default device."""

  def __init__(self, model: FadAutoencoder, batch_size: int = 256,
               reference=None):
    self.model = model
    self.batch_size = batch_size
    self.reference = reference  # (mu, sigma) or None
    graph, state = nnx.split(model)
    self._encode = jax.jit(
        lambda s, x: nnx.merge(graph, s).encode(x))
    self._state = jax.device_put(state)

  @classmethod
  def load(cls, workdir, batch_size: int = 256) -> "FadScorer":
    from scnn_jax import inference
    loaded = inference.load(workdir)
    ref = None
    path = epath.Path(workdir) / REFERENCE_FILE
    if path.exists():
      with path.open("rb") as f:
        data = np.load(f)
        ref = (data["mu"], data["sigma"])
    return cls(loaded.model, batch_size, ref)

  def features(self, images) -> np.ndarray:
    """Latent codes ``[N, D]`` of images ``[N, H, W, C]`` in [0, 1]."""
    images = np.asarray(images, np.float32)
    out = []
    b = self.batch_size
    for i in range(0, len(images), b):
      chunk = images[i:i + b]
      n = len(chunk)
      if n < b:  # one compiled shape
        chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:],
                                                chunk.dtype)])
      out.append(np.asarray(self._encode(self._state, chunk))[:n])
    if not out:
      return np.zeros((0, self.model.latent_dim), np.float32)
    return np.concatenate(out)

  def distance(self, images_a, images_b) -> float:
    """FAD between two image sets."""
    return fad_from_features(self.features(images_a), self.features(images_b))

  def distance_to_reference(self, images) -> float:
    if self.reference is None:
      raise FileNotFoundError(f"no {REFERENCE_FILE} in the workdir: run "
                              "python -m scnn_jax.fad on it")
    mu, sigma = metrics.gaussian_stats(self.features(images))
    return metrics.frechet_distance(mu, sigma, *self.reference)


def fad_from_features(features_a, features_b) -> float:
  """Frechet distance between the Gaussian fits of two feature sets."""
  return metrics.frechet_distance(*metrics.gaussian_stats(features_a),
                                  *metrics.gaussian_stats(features_b))


def write_reference(workdir, config=None) -> dict:
  """Latent statistics of the held-out (eval) set -> ``fad_reference.npz``."""
  from scnn_jax import data, inference
  workdir = epath.Path(workdir)
  config = config or inference.read_config(workdir)
  scorer = FadScorer.load(workdir)
  images = data.build(config).eval_set()["image"]
  feats = scorer.features(np.asarray(images, np.float32) / np.float32(255.0))
  mu, sigma = metrics.gaussian_stats(feats)
  with (workdir / REFERENCE_FILE).open("wb") as f:
    np.savez(f, mu=mu, sigma=sigma, n=len(feats))
  return {"n": len(feats), "path": str(workdir / REFERENCE_FILE)}


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
