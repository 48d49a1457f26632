"""Inpainting training losses beyond the pooled hole MSE.

``log_mse_sums``: the mean over images of ``log(MSE_i + eps)``, MSE_i over
image i's hole pixels. The default loss (``metrics.masked_se_sums``) pools
squared errors over the batch, so the images with the largest errors
dominate it; the held-out metric, hole PSNR = -10 log10(MSE_i) averaged per
image, weighs every image alike. This loss is that metric up to the factor
-10 / ln 10 (and ``eps``), so training and evaluation agree.

Returned as local sums ``(numerator, denominator)`` (the trainer's
contract): ``sum_i valid_i log(MSE_i + eps)`` and ``sum_i valid_i``.
"""

from __future__ import annotations

import jax.numpy as jnp

LOSSES = ("mse", "log_mse")
EPS = 1e-5   # MSE floor: 50 dB, far above any hole PSNR reached here


def log_mse_sums(pred, target, mask, valid=None, eps: float = EPS):
  """``(sum_i v_i log(MSE_i + eps), sum_i v_i)`` over images with a hole."""
  pred = jnp.asarray(pred, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  w = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), pred.shape)
  count = jnp.sum(w, axis=(1, 2, 3))
  se = jnp.sum(jnp.where(w > 0, w * jnp.square(pred - target), 0.0),
               axis=(1, 2, 3))
  v = jnp.ones(pred.shape[:1], jnp.float32) if valid is None else (
      jnp.asarray(valid, jnp.float32))
  v = v * (count > 0)            # an image without a hole has no hole MSE
  per_image = jnp.log(se / jnp.maximum(count, 1.0) + eps)
  return jnp.sum(jnp.where(v > 0, v * per_image, 0.0)), jnp.sum(v)
