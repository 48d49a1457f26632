"""Inpainting training losses beyond the pooled hole MSE.

The default loss (``train.loss = "mse"``, ``metrics.masked_se_sums``) pools
squared errors over the batch, so the images with the largest errors (and
the largest holes) dominate it; the held-out metric, hole PSNR =
-10 log10(MSE_i) averaged per image, weighs every image alike. The per-image
losses here weigh every image alike too (MSE_i: image i's hole MSE, over its
hole pixels and all channels; images without a hole are left out):

* ``image_mse_sums`` (``"image_mse"``): the mean over images of ``MSE_i``;
* ``log_mse_sums`` (``"log_mse"``): the mean over images of
  ``log(MSE_i + eps)``: the hole PSNR up to the factor -10 / ln 10 (and
  ``eps``), so training and evaluation agree.

Both are returned as local sums ``(numerator, denominator)`` (the trainer's
contract): ``sum_i valid_i f(MSE_i)`` and ``sum_i valid_i``. Neither needs a
warm start: ``eps`` keeps the log finite at any error, and a batch without a
hole gives 0 / 0, which the train step turns into a loss of 0.
"""

from __future__ import annotations

import jax.numpy as jnp

LOSSES = ("mse", "log_mse", "image_mse")
EPS = 1e-5   # MSE floor: 50 dB, far above any hole PSNR reached here


def _per_image(pred, target, mask, valid):
  """``(MSE_i [N], weight_i [N])``: weight 0 for padding and hole-less images."""
  pred = jnp.asarray(pred, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  w = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), pred.shape)
  count = jnp.sum(w, axis=(1, 2, 3))
  se = jnp.sum(jnp.where(w > 0, w * jnp.square(pred - target), 0.0),
               axis=(1, 2, 3))
  v = jnp.ones(pred.shape[:1], jnp.float32) if valid is None else (
      jnp.asarray(valid, jnp.float32))
  v = v * (count > 0)            # an image without a hole has no hole MSE
  return se / jnp.maximum(count, 1.0), v


def log_mse_sums(pred, target, mask, valid=None, eps: float = EPS):
  """``(sum_i v_i log(MSE_i + eps), sum_i v_i)`` over images with a hole."""
  mse, v = _per_image(pred, target, mask, valid)
  return jnp.sum(jnp.where(v > 0, v * jnp.log(mse + eps), 0.0)), jnp.sum(v)


def image_mse_sums(pred, target, mask, valid=None):
  """``(sum_i v_i MSE_i, sum_i v_i)`` over images with a hole: every image
  weighs the same, whatever its hole size."""
  mse, v = _per_image(pred, target, mask, valid)
  return jnp.sum(jnp.where(v > 0, v * mse, 0.0)), jnp.sum(v)


# train.loss -> its sums; "mse" is ``metrics.masked_se_sums`` (pooled).
PER_IMAGE = {"log_mse": log_mse_sums, "image_mse": image_mse_sums}
