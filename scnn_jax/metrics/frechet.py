"""The Frechet distance between Gaussian fits of feature sets (FID, FAD), and
the FAD scorer.

FAD (paper B / FSVAE) is the Frechet distance between the latent codes that a
plain conv autoencoder (``scnn_jax.models.fad_autoencoder``), trained with MSE
on the same dataset, gives to generated and held-out images; FID the same
with Inception-v3 pool features (``scnn_jax.metrics.inception``). Both use
``frechet_distance`` here.

    scorer = FadScorer(model, reference=read_reference(workdir))
    scorer.distance(generated, held_out)      # images [N, H, W, C] in [0, 1]
    scorer.distance_to_reference(generated)   # vs fad_reference.npz

(``scnn_jax.runtime.inference.load(workdir).model`` is a trained autoencoder;
the generate task builds its scorer that way.)
"""

from __future__ import annotations

import jax
import numpy as np
from etils import epath
from flax import nnx

REFERENCE_FILE = "fad_reference.npz"


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """``(mu [D], sigma [D, D])`` of features ``[N, D]`` (float64, unbiased cov)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must be [N, D] with N >= 2, got {f.shape}")
  return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID / FAD).

  ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))`` in
  float64, with ``tr sqrtm(S1 S2) = sum_i sqrt(lambda_i(R S2 R))``, ``R =
  S1^(1/2)``: two ``eigh`` of symmetric PSD matrices instead of the
  Schur-based ``scipy.linalg.sqrtm`` of the non-symmetric product, which for
  2048-d, rank-deficient Inception covariances (fewer images than
  dimensions) is far slower and unstable. Eigenvalues below 0 (rounding) are
  clipped; the value equals the ``sqrtm`` formula up to rounding (tested).
  """
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  s1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma "
                     f"{s1.shape} {s2.shape}")
  w, v = np.linalg.eigh((s1 + s1.T) / 2)
  root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  a = root @ s2 @ root
  ev = np.clip(np.linalg.eigvalsh((a + a.T) / 2), 0, None)
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2)
               - 2.0 * np.sum(np.sqrt(ev)))


def distance_of_features(features_a, features_b) -> float:
  """Frechet distance between the Gaussian fits of two feature sets."""
  return frechet_distance(*gaussian_stats(features_a),
                          *gaussian_stats(features_b))


def read_reference(workdir) -> tuple[np.ndarray, np.ndarray] | None:
  """``(mu, sigma)`` of ``<workdir>/fad_reference.npz``, or None if absent."""
  path = epath.Path(workdir) / REFERENCE_FILE
  if not path.exists():
    return None
  with path.open("rb") as f:
    data = np.load(f)
    return data["mu"], data["sigma"]


def write_reference(workdir, features) -> dict:
  """Gaussian fit of ``features`` -> ``<workdir>/fad_reference.npz``."""
  mu, sigma = gaussian_stats(features)
  path = epath.Path(workdir) / REFERENCE_FILE
  with path.open("wb") as f:
    np.savez(f, mu=mu, sigma=sigma, n=len(features))
  return {"n": len(features), "path": str(path)}


def in_fixed_batches(forward, images, batch_size: int):
  """``forward(chunk)`` over ``images`` in chunks of ``batch_size`` rows.

  The last chunk is zero-padded so ``forward`` compiles once; yields each
  chunk's outputs (one array or a tuple) cut back to its real rows.
  """
  for i in range(0, len(images), batch_size):
    chunk = images[i:i + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros(
          (batch_size - n,) + chunk.shape[1:], chunk.dtype)])
    out = forward(chunk)
    if isinstance(out, tuple):
      yield tuple(np.asarray(o)[:n] for o in out)
    else:
      yield np.asarray(out)[:n]


class FadScorer:
  """A trained FAD encoder (``model.encode``: images in [0, 1] -> codes),
  jitted, on the default device; ``reference``: ``(mu, sigma)`` or None."""

  def __init__(self, model: nnx.Module, batch_size: int = 256,
               reference=None):
    self.model = model
    self.batch_size = batch_size
    self.reference = reference
    graph, state = nnx.split(model)
    self._encode = jax.jit(lambda s, x: nnx.merge(graph, s).encode(x))
    self._state = jax.device_put(state)

  def features(self, images) -> np.ndarray:
    """Latent codes ``[N, D]`` of images ``[N, H, W, C]`` in [0, 1]."""
    images = np.asarray(images, np.float32)
    out = list(in_fixed_batches(lambda x: self._encode(self._state, x),
                                images, self.batch_size))
    if not out:
      return np.zeros((0, self.model.latent_dim), np.float32)
    return np.concatenate(out)

  def distance(self, images_a, images_b) -> float:
    """FAD between two image sets."""
    return distance_of_features(self.features(images_a),
                                self.features(images_b))

  def distance_to_reference(self, images) -> float:
    if self.reference is None:
      raise FileNotFoundError(f"no {REFERENCE_FILE} in the workdir: run "
                              "python -m scnn_jax.fad on it")
    return frechet_distance(*gaussian_stats(self.features(images)),
                            *self.reference)
