"""Image generation (paper B): a fully spiking VAE scored with MSE, FAD, IS, FID.

``task = "generate"`` trains ``scnn_jax.models.vae.SpikingVAE`` on the images
of ``config.data`` (labels and masks are ignored). Batch: ``image`` [B, H, W,
C] in [0, 1], ``valid`` [B], ``example_id`` [B].

Training loss (FSVAE's, per example then averaged over the global batch):
the reconstruction MSE on [-1, 1] images plus the distance term of the latent
variant (``model.latent``): FSVAE's PSP-filtered "MMD" between posterior and
prior firing probabilities (weight 1), or ESVAE's RBF MMD between posterior
and prior firing rates (weight ``model.esvae_lambda``).

Evaluation (every ``train.eval_every`` steps and at the end, into
``metrics.jsonl`` and ``results.json``), on the fixed held-out set:

* ``recon_mse``: MSE of the reconstructions on [0, 1] images (pooled over
  pixels); ``recon_mse_pm1`` = 4x, the [-1, 1] scale FSVAE / ESVAE report.
* ``fad``: Frechet Autoencoder Distance between one prior sample per held-out
  image and the held-out images, with the FAD autoencoder trained by
  ``python -m scnn_jax.fad`` and named by ``metrics.fad_workdir``. Without it
  results say so (``fad_status``) instead of failing.
* ``inception_score`` (+ ``_std``) of the samples and ``fid`` between samples
  and held-out images, with the Inception-v3 weights file
  ``metrics.inception_weights`` (``scnn_jax.metrics.inception``); skipped, with
  ``inception_status``, when not given.

The latent sampling at eval is deterministic: row i (eval index) draws from
``fold_in(key(metrics.sample_seed), i)``, so scores and sample grids do not
depend on batch sizes or device counts, and successive evals of one run show
the same latent draws. Sample grids: rows input | reconstruction | prior
sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scnn_jax.metrics import frechet, inception
from scnn_jax.runtime import inference
from scnn_jax.tasks.base import Task


class GenerationAccumulator:
  """Host-side eval metrics of the generate task (see the module docstring).

  Features for FAD / IS / FID are computed batch by batch, so only feature
  vectors are kept.
  """

  def __init__(self, fad_scorer=None, inception_net=None, *, fad_status=None,
               inception_status=None, splits: int = 10):
    self.fad = fad_scorer
    self.inception = inception_net
    self.fad_status = fad_status
    self.inception_status = inception_status
    self.splits = splits
    self.se = 0.0
    self.count = 0
    self.n = 0
    self.fad_real, self.fad_fake = [], []
    self.pool_real, self.pool_fake, self.logits_fake = [], [], []

  def update(self, images, recon, samples, valid=None):
    images = np.asarray(images, np.float32)
    keep = (np.ones(len(images), bool) if valid is None
            else np.asarray(valid) > 0)
    images, recon = images[keep], np.asarray(recon, np.float32)[keep]
    samples = np.asarray(samples, np.float32)[keep]
    self.se += float(np.sum(np.square(recon.astype(np.float64) - images)))
    self.count += images.size
    self.n += len(images)
    if not len(images):
      return
    if self.fad is not None:
      self.fad_real.append(self.fad.features(images))
      self.fad_fake.append(self.fad.features(samples))
    if self.inception is not None:
      self.pool_real.append(self.inception.features(images)[0])
      pool, logits = self.inception.features(samples)
      self.pool_fake.append(pool)
      self.logits_fake.append(logits)

  def result(self) -> dict:
    mse = self.se / max(self.count, 1)
    out = {"recon_mse": mse, "recon_mse_pm1": 4.0 * mse,
           "num_images": self.n}
    if self.fad is not None and self.n >= 2:
      out["fad"] = frechet.distance_of_features(
          np.concatenate(self.fad_fake), np.concatenate(self.fad_real))
    else:
      out["fad_status"] = self.fad_status or "too few images"
    if self.inception is not None and self.n >= 2:
      out["inception_score"], out["inception_score_std"] = (
          inception.inception_score(np.concatenate(self.logits_fake),
                                       self.splits))
      out["fid"] = inception.fid(np.concatenate(self.pool_fake),
                                    np.concatenate(self.pool_real))
    else:
      out["inception_status"] = self.inception_status or "too few images"
    return out


def load_fad_scorer(workdir, batch_size: int = 256) -> frechet.FadScorer:
  """The FAD scorer of a trained autoencoder workdir, with its reference
  statistics (``python -m scnn_jax.fad`` writes both)."""
  return frechet.FadScorer(inference.load(workdir).model, batch_size,
                           frechet.read_reference(workdir))


class GenerateTask(Task):
  name = "generate"

  def __init__(self, config):
    met = config.metrics
    self.sample_seed = met.sample_seed
    self.fad_workdir = met.fad_workdir
    self.inception_weights = met.inception_weights
    self.inception_batch_size = met.inception_batch_size
    self.inception_splits = met.inception_splits
    self._fad = None
    self._inception_net = None

  # -- training ----------------------------------------------------------------
  def loss(self, model, batch, *, rngs, example_ids):
    image = batch["image"]
    out = model.forward(image, key=rngs.latent(), example_ids=example_ids)
    target = image * 2.0 - 1.0
    mse = jnp.mean(jnp.square(out.recon - target), axis=(1, 2, 3))   # [B]
    valid = batch.get("valid", jnp.ones(image.shape[:1], jnp.float32))
    n = jnp.sum(valid)
    if out.distance.ndim:                       # fsvae: per example
      dist = jnp.sum(out.distance * valid)
    else:                                       # esvae: one batch statistic
      dist = out.distance * n
    mse_sum = jnp.sum(mse * valid)
    return mse_sum + dist, n, {"recon_mse_pm1": (mse_sum, n),
                               "distance": (dist, n)}

  # -- evaluation --------------------------------------------------------------
  def predict(self, model, batch):
    key = jax.random.key(self.sample_seed)
    ids = batch["example_id"]
    recon = model.reconstruct(batch["image"], key=jax.random.fold_in(key, 0),
                              example_ids=ids)
    sample = model.sample(ids.shape[0], jax.random.fold_in(key, 1),
                          example_ids=ids)
    return {"recon": recon, "sample": sample}

  def _scorers(self):
    fad_status = inception_status = None
    if self.fad_workdir is None:
      fad_status = ("not computed: no FAD autoencoder (train one with python "
                    "-m scnn_jax.fad --config configs/fad_<data>.py, then "
                    "--config.metrics.fad_workdir=DIR)")
    elif self._fad is None:
      self._fad = load_fad_scorer(self.fad_workdir)
    if self.inception_weights is None:
      inception_status = ("not computed: no Inception weights (see "
                          "docs/studies/paper_b_generation.md; "
                          "--config.metrics.inception_weights=PATH)")
    elif self._inception_net is None:
      self._inception_net = inception.InceptionMetrics.load(
          self.inception_weights, self.inception_batch_size)
    return fad_status, inception_status

  def new_accumulator(self):
    fad_status, inception_status = self._scorers()
    return GenerationAccumulator(self._fad, self._inception_net,
                                 fad_status=fad_status,
                                 inception_status=inception_status,
                                 splits=self.inception_splits)

  def accumulate(self, acc, host_batch, host_outputs):
    acc.update(host_batch["image"], host_outputs["recon"],
               host_outputs["sample"], host_batch.get("valid"))

  def samples(self, host_batch, host_outputs, n):
    return [host_batch["image"][:n], host_outputs["recon"][:n],
            host_outputs["sample"][:n]]

  def summary_keys(self):
    return ("recon_mse", "fad", "inception_score", "fid")


# -----------------------------------------------------------------------------
# The FAD autoencoder's task (model and scoring: scnn_jax.fad)
# -----------------------------------------------------------------------------


class LatentAccumulator:
  """Reconstruction MSE and the Gaussian fit of the latent codes."""

  def __init__(self):
    self.se = 0.0
    self.count = 0
    self.latents: list[np.ndarray] = []

  def update(self, images, recon, latent, valid=None):
    images, recon = np.asarray(images, np.float64), np.asarray(recon,
                                                               np.float64)
    keep = (np.ones(len(images), bool) if valid is None
            else np.asarray(valid) > 0)
    self.se += float(np.sum(np.square(recon - images)[keep]))
    self.count += int(keep.sum()) * int(np.prod(images.shape[1:]))
    self.latents.append(np.asarray(latent, np.float64)[keep])

  def result(self) -> dict:
    mse = self.se / max(self.count, 1)
    out = {"recon_mse": mse, "recon_mse_pm1": 4.0 * mse}
    z = np.concatenate(self.latents) if self.latents else np.zeros((0, 1))
    out["num_images"] = int(len(z))
    if len(z) >= 2:
      out["latent_mean_norm"] = float(np.linalg.norm(z.mean(0)))
      out["latent_std_mean"] = float(z.std(0).mean())
    return out


class FadAutoencoderTask(Task):
  """``task = "fad_autoencoder"``: trains the FAD autoencoder with MSE."""
  name = "fad_autoencoder"

  def loss(self, model, batch, *, rngs, example_ids):
    del rngs, example_ids
    image = batch["image"]
    recon = model.decode_pm1(model.encode(image))
    se = jnp.mean(jnp.square(recon - (image * 2.0 - 1.0)), axis=(1, 2, 3))
    valid = batch.get("valid", jnp.ones(image.shape[:1], jnp.float32))
    return jnp.sum(se * valid), jnp.sum(valid), {}

  def predict(self, model, batch):
    z = model.encode(batch["image"])
    return {"recon": (model.decode_pm1(z) + 1.0) / 2.0, "latent": z}

  def new_accumulator(self):
    return LatentAccumulator()

  def accumulate(self, acc, host_batch, host_outputs):
    acc.update(host_batch["image"], host_outputs["recon"],
               host_outputs["latent"], host_batch.get("valid"))

  def samples(self, host_batch, host_outputs, n):
    return [host_batch["image"][:n], host_outputs["recon"][:n]]

  def summary_keys(self):
    return ("recon_mse",)
