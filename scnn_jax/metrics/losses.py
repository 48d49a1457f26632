"""In-jit inpainting losses: the composite and hole / full-image squared errors.

Conventions (every module of ``scnn_jax.metrics``): images float32 in [0, 1],
NHWC ``[N, H, W, C]``; masks float32 ``[N, H, W, 1]`` (or ``[N, H, W, C]``),
1 = hole (missing), 0 = known; an optional ``valid`` float ``[N]`` weight
marks padded rows (0) to ignore (``None`` = all rows count with weight 1).
The data range is 1.

Definitions (quoted by docs/reference/metrics.md):

* **composite** = known pixels from the image, hole pixels from the prediction
  (mask binarised at 0.5). Every image metric scores the composite, so known
  pixels never count as error.
* **masked MSE** (the training loss) = sum over valid images, hole pixels and
  all channels of ``(pred - target)^2``, divided by the number of such
  (pixel, channel) entries: pooled over the batch, not a mean of per-image
  values. With no hole pixel at all (no hole, or every ``valid`` weight 0) it
  is defined as 0, with zero gradient: never NaN. Its gradient w.r.t. a hole
  entry is ``2 (p - t) / count``, 0 on known pixels.
* **full MSE** (paper A's "validation loss") = MSE of the composite against
  the target over all pixels and channels of the valid images (= hole squared
  error / total entries, so it shrinks with the hole ratio).

Per-image inpainting losses (``train.loss``): the default ``"mse"`` pools
squared errors over the batch, so the images with the largest errors (and
the largest holes) dominate it; the held-out metric, hole PSNR =
-10 log10(MSE_i) averaged per image, weighs every image alike. The
per-image losses weigh every image alike too (MSE_i: image i's hole MSE,
over its hole pixels and all channels; images without a hole are left out):

* ``image_mse_sums`` (``"image_mse"``): the mean over images of ``MSE_i``;
* ``log_mse_sums`` (``"log_mse"``): the mean over images of
  ``log(MSE_i + eps)``: the hole PSNR up to the factor -10 / ln 10 (and
  ``eps``), so training and evaluation agree. Neither needs a warm start:
  ``eps`` keeps the log finite at any error, and a batch without a hole
  gives 0 / 0, which the train step turns into a loss of 0.

The ``*_sums`` functions return LOCAL ``(numerator, denominator)`` pairs: the
train step sums both over devices, so the loss is that of the global batch.
All functions are jittable and differentiable.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Classification losses (paper B): MSE of the count rate against the one-hot
# label (PyTorch's F.mse_loss, the mean over B * K), or softmax cross-entropy
# on the spike count T * rate.
CLASS_LOSSES = ("mse_count", "cross_entropy")


def check_shapes(pred, target, mask=None, valid=None):
  """Shape checks (static, so they also run under jit)."""
  if pred.ndim != 4 or pred.shape != target.shape:
    raise ValueError(f"images must be [N, H, W, C] of equal shape, got "
                     f"{pred.shape} and {target.shape}")
  if mask is not None:
    n, h, w, c = pred.shape
    if mask.ndim != 4 or mask.shape[:3] != (n, h, w) or mask.shape[3] not in (1, c):
      raise ValueError(f"mask must be [N, H, W, 1] (or [N, H, W, C]) for "
                       f"images {pred.shape}, got {mask.shape}")
  if valid is not None and valid.shape != pred.shape[:1]:
    raise ValueError(f"valid must be [N] = {pred.shape[:1]}, got {valid.shape}")


def valid_weights(valid, n):
  """``valid`` as float32 ``[n]`` weights (all ones when None)."""
  if valid is None:
    return jnp.ones((n,), jnp.float32)
  return jnp.asarray(valid, jnp.float32)


def composite(pred, image, mask):
  """Known pixels from ``image``, hole pixels (mask > 0.5) from ``pred``.

  Exact on both sides (a ``jnp.where``, not a blend); gradient flows to
  ``pred`` on hole pixels only. Jittable.
  """
  pred, image, mask = jnp.asarray(pred), jnp.asarray(image), jnp.asarray(mask)
  check_shapes(pred, image, mask)
  return jnp.where(mask > 0.5, pred, image)


def masked_se_sums(pred, target, mask, valid=None):
  """``(sum_sq_err, count)`` over hole entries of valid images (float32 scalars).

  ``sum_sq_err = sum_{n,h,w,c} valid_n mask_nhw (pred - target)^2`` and
  ``count = sum_{n,h,w,c} valid_n mask_nhw``: psum both over devices, then
  ``masked_mse_from_sums``. The mask is used as a weight (binary in practice).
  """
  pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
  v = valid_weights(valid, pred.shape[0])
  check_shapes(pred, target, mask, v)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape) * v[:, None, None, None]
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  # where, not w * err: garbage (NaN) in a padded row must not leak in.
  return jnp.sum(jnp.where(w > 0, w * err, 0.0)), jnp.sum(w)


def masked_mse_from_sums(sum_sq_err, count):
  """``sum_sq_err / count``, 0 (with zero gradient) when ``count == 0``."""
  safe = jnp.where(count > 0, count, 1.0)
  return jnp.where(count > 0, sum_sq_err / safe, 0.0)


def masked_mse(pred, target, mask, valid=None):
  """Mean squared error over hole pixels (all channels) of valid images.

  THE training loss. Pooled: total hole squared error / number of hole
  entries in the batch. 0 (finite, zero gradient) when there is no hole
  entry. ``d loss / d pred = 2 valid mask (pred - target) / count``.
  Jittable, differentiable.
  """
  return masked_mse_from_sums(*masked_se_sums(pred, target, mask, valid))


def masked_mse_per_image(pred, target, mask):
  """``[N]`` hole MSE of each image (0 for an image without a hole)."""
  pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
  check_shapes(pred, target, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  return masked_mse_from_sums(jnp.sum(w * err, axis=(1, 2, 3)),
                              jnp.sum(w, axis=(1, 2, 3)))


def full_se_sums(pred, image, mask, valid=None):
  """``(sum_sq_err, count)`` of the composite over every entry of valid images."""
  pred, image, mask = jnp.asarray(pred), jnp.asarray(image), jnp.asarray(mask)
  comp = composite(pred, image, mask)
  v = valid_weights(valid, pred.shape[0])
  check_shapes(pred, image, mask, v)
  err = jnp.sum(jnp.square(comp.astype(jnp.float32) - image.astype(jnp.float32)),
                axis=(1, 2, 3))
  entries = math.prod(pred.shape[1:])
  return jnp.sum(jnp.where(v > 0, v * err, 0.0)), jnp.sum(v) * entries


def full_mse(pred, image, mask, valid=None):
  """MSE of the composite against ``image`` over all pixels and channels.

  Paper A's "validation loss" figure. Equals the hole squared error divided
  by ALL entries, so it shrinks with the hole ratio. 0 when every ``valid``
  weight is 0. Jittable.
  """
  return masked_mse_from_sums(*full_se_sums(pred, image, mask, valid))


# ---------------------------------------------------------------- classification


def class_loss_sums(rate, label, kind: str, T: int, valid=None):
  """``(numerator, denominator)`` of the loss over this batch's valid rows.

  ``rate`` [B, K] = spike count / T; ``label`` [B] int.
  """
  k = rate.shape[-1]
  valid = (jnp.ones(rate.shape[:1], rate.dtype) if valid is None
           else valid.astype(rate.dtype))
  onehot = jax.nn.one_hot(label, k, dtype=rate.dtype)
  if kind == "mse_count":
    per_example = jnp.sum((rate - onehot) ** 2, axis=-1)
    return jnp.sum(valid * per_example), jnp.sum(valid) * k
  if kind == "cross_entropy":
    logp = jax.nn.log_softmax(rate * T, axis=-1)
    per_example = -jnp.sum(onehot * logp, axis=-1)
    return jnp.sum(valid * per_example), jnp.sum(valid)
  raise ValueError(f"unknown loss {kind!r}; allowed: {', '.join(CLASS_LOSSES)}")


def correct_sums(rate, label, valid=None):
  """``(number correct, number of valid rows)``."""
  valid = (jnp.ones(rate.shape[:1], jnp.float32) if valid is None
           else valid.astype(jnp.float32))
  hit = (jnp.argmax(rate, axis=-1) == label).astype(jnp.float32)
  return jnp.sum(valid * hit), jnp.sum(valid)


# train.loss of the inpainting task.
INPAINT_LOSSES = ("mse", "log_mse", "image_mse")
LOG_MSE_EPS = 1e-5   # MSE floor: 50 dB, far above any hole PSNR reached here


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


def log_mse_sums(pred, target, mask, valid=None, eps: float = LOG_MSE_EPS):
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
