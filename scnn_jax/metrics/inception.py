"""The Inception Score (IS) and FID of generated images, on Inception-v3
(``scnn_jax.models.inception``: the network and its weights file).

    net = inception.InceptionMetrics.load("pt_inception.npz")
    pool, logits = net.features(images)
    inception.inception_score(logits)            # (mean, std) over 10 splits
    inception.fid(pool_a, pool_b)
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from scnn_jax.metrics import frechet
from scnn_jax.models.inception import INPUT_SIZE, VARIANTS, InceptionV3, load


class InceptionMetrics:
  """A loaded Inception-v3, jitted on the default device, batched."""

  def __init__(self, model: InceptionV3, batch_size: int = 50):
    self.model = model
    self.batch_size = batch_size
    graph, state = nnx.split(model)
    self._state = jax.device_put(state)
    self._forward = jax.jit(lambda s, x: nnx.merge(graph, s)(x))

  @classmethod
  def load(cls, path, batch_size: int = 50, *, resize: int = INPUT_SIZE):
    return cls(load(path, resize=resize), batch_size)

  def features(self, images) -> tuple[np.ndarray, np.ndarray]:
    """``(pool [N, 2048], logits [N, classes])`` of images in [0, 1]."""
    images = np.asarray(images, np.float32)
    outs = list(frechet.in_fixed_batches(
        lambda x: self._forward(self._state, x), images, self.batch_size))
    pools, logits = [p for p, _ in outs], [l for _, l in outs]
    classes = VARIANTS[self.model.variant]
    if not pools:
      return np.zeros((0, 2048), np.float32), np.zeros((0, classes),
                                                       np.float32)
    return np.concatenate(pools), np.concatenate(logits)


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
  """IS = exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` parts.

  As the original (Salimans et al. 2016) and FSVAE code: softmax of the
  logits, split the set in ``splits`` consecutive parts, score each.
  """
  logits = np.asarray(logits, np.float64)
  if len(logits) < splits:
    splits = max(1, len(logits))
  logp = logits - logits.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  scores = []
  for part in np.array_split(logp, splits):
    p = np.exp(part)
    log_py = np.log(np.maximum(p.mean(0), 1e-300))
    kl = np.sum(p * (part - log_py), axis=-1)
    scores.append(float(np.exp(kl.mean())))
  return float(np.mean(scores)), float(np.std(scores))


def fid(features_a, features_b) -> float:
  """FID: Frechet distance between Gaussian fits of two pool-feature sets."""
  return frechet.distance_of_features(features_a, features_b)
