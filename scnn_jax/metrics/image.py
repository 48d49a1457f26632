"""Host-side image metrics of inpainting: PSNR, hole PSNR, SSIM and their
accumulation over an eval set.

Conventions and the losses they build on: ``scnn_jax.metrics.losses``.
Definitions (quoted by docs/reference/metrics.md):

* **PSNR** = per image ``10 log10(1 / max(MSE_i, 1e-10))`` of composite vs
  target over the whole image (data range 1; the MSE floor caps a perfect
  image at 100 dB), then the valid-weighted mean over images. Equal to
  ``dm_pix.psnr`` wherever ``MSE_i >= 1e-10``.
* **hole PSNR** = the same formula with ``MSE_i`` taken over image i's hole
  pixels only (all channels); images without a hole are left out of the mean.
  Unlike full-image PSNR it does not grow as holes get smaller.
* **SSIM** = ``dm_pix.ssim`` of composite vs target per image (Gaussian window
  11, sigma 1.5, k1 0.01, k2 0.03, max_val 1; for C > 1 the mean over channels
  of the per-channel SSIM maps; needs H, W >= 11), then the valid-weighted
  mean over images.
* **image MSE** = the mean over images with a hole of each image's hole MSE
  (the per-image ``train.loss = "image_mse"``; ``masked_mse`` instead pools
  the hole entries of all images, so large holes weigh more); **image log
  MSE** = the same mean of ``log(MSE_hole_i + losses.LOG_MSE_EPS)`` (the
  ``"log_mse"`` loss). Both are what those losses compute on a batch, here
  over the whole eval set.
* A mean over zero images (every ``valid`` 0, or no image with a hole for the
  hole PSNR and the image MSEs) is NaN: the metric is undefined there, not 0.

Over many batches ``InpaintingAccumulator`` gives exactly the values of one
call on the concatenated set: masked/full MSE pooled over all entries, PSNR,
hole PSNR, SSIM and the image MSEs as means of per-image values.
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from scnn_jax.metrics.losses import (LOG_MSE_EPS, check_shapes, composite,
                                     valid_weights)

MSE_FLOOR = 1e-10  # PSNR of a perfect image: 10 log10(1 / 1e-10) = 100 dB
PSNR_CAP_DB = 100.0
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
METRIC_KEYS = ("masked_mse", "full_mse", "psnr", "hole_psnr", "ssim",
               "image_mse", "image_log_mse")


def _weighted_mean(values, weights):
  """sum(w x) / sum(w); NaN when sum(w) == 0. Rows with w == 0 never leak NaN."""
  weights = jnp.asarray(weights, jnp.float32)
  values = jnp.where(weights > 0, values, 0.0)
  total = jnp.sum(weights)
  safe = jnp.where(total > 0, total, 1.0)
  return jnp.where(total > 0, jnp.sum(weights * values) / safe, jnp.nan)


def _psnr_from_mse(mse):
  return -10.0 * jnp.log10(jnp.maximum(mse, MSE_FLOOR))


def psnr_per_image(a, b):
  """``[N]`` PSNR in dB, data range 1, MSE floored at 1e-10 (cap 100 dB)."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  check_shapes(a, b)
  return _psnr_from_mse(dm_pix.mse(a, b))


def psnr(composite_img, target, valid=None):
  """Mean over valid images of the per-image PSNR (``psnr_per_image``).

  Pass the composite (``composite(pred, image, mask)``). NaN if no image is
  valid. Jittable.
  """
  values = psnr_per_image(composite_img, target)
  return _weighted_mean(values, valid_weights(valid, values.shape[0]))


def hole_psnr_per_image(pred_or_composite, target, mask):
  """``[N]`` PSNR from each image's hole-pixel MSE; NaN for an image without a hole.

  Identical for the raw prediction and the composite (they agree on holes).
  """
  pred, target, mask = (jnp.asarray(pred_or_composite), jnp.asarray(target),
                        jnp.asarray(mask))
  check_shapes(pred, target, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  sse, count = jnp.sum(w * err, axis=(1, 2, 3)), jnp.sum(w, axis=(1, 2, 3))
  values = _psnr_from_mse(sse / jnp.where(count > 0, count, 1.0))
  return jnp.where(count > 0, values, jnp.nan)


def hole_psnr(pred_or_composite, target, mask, valid=None):
  """Mean over valid images WITH a hole of the hole-only PSNR.

  Per image: ``10 log10(1 / max(MSE_hole_i, 1e-10))`` with ``MSE_hole_i`` the
  mean of ``(pred - target)^2`` over that image's hole pixels and all
  channels. Images without a hole are excluded; NaN if none is left.
  Jittable.
  """
  values = hole_psnr_per_image(pred_or_composite, target, mask)
  has_hole = jnp.sum(jnp.asarray(mask), axis=(1, 2, 3)) > 0
  weights = valid_weights(valid, values.shape[0]) * has_hole
  return _weighted_mean(values, weights)


def ssim_per_image(a, b):
  """``[N]`` SSIM (``dm_pix.ssim``: window 11, sigma 1.5, max_val 1).

  Color images: mean over channels of the per-channel SSIM maps (dm-pix does
  no color transform). Needs H, W >= 11.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  check_shapes(a, b)
  if min(a.shape[1:3]) < SSIM_FILTER_SIZE:
    raise ValueError(f"SSIM needs images of at least {SSIM_FILTER_SIZE}x"
                     f"{SSIM_FILTER_SIZE} (its Gaussian window), got "
                     f"{a.shape[1]}x{a.shape[2]}")
  return dm_pix.ssim(a, b, max_val=1.0, filter_size=SSIM_FILTER_SIZE,
                     filter_sigma=SSIM_FILTER_SIGMA)


def ssim(composite_img, target, valid=None):
  """Mean over valid images of the per-image SSIM (``ssim_per_image``). Jittable."""
  values = ssim_per_image(composite_img, target)
  return _weighted_mean(values, valid_weights(valid, values.shape[0]))


# ---------------------------------------------------------------- evaluation

@jax.jit
def _per_image_stats(pred, image, mask):
  comp = composite(pred, image, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(comp - image)
  return dict(
      hole_se=jnp.sum(w * err, axis=(1, 2, 3)),
      hole_count=jnp.sum(w, axis=(1, 2, 3)),
      full_se=jnp.sum(err, axis=(1, 2, 3)),
      psnr=psnr_per_image(comp, image),
      hole_psnr=hole_psnr_per_image(comp, image, mask),
      ssim=ssim_per_image(comp, image),
  )


class InpaintingAccumulator:
  """Sums per-image statistics over batches; ``result()`` = metrics of the whole set.

  ``update(pred, image, mask, valid=None)`` takes one batch (numpy or JAX,
  host-addressable); per-image values are computed in float32 by one jitted
  function (compiled once per batch shape) and summed on the host in
  float64. ``result()`` returns ``METRIC_KEYS`` (``masked_mse``,
  ``full_mse``, ``psnr``, ``hole_psnr``, ``ssim``, ``image_mse``,
  ``image_log_mse``) as Python floats, equal to ``evaluate_inpainting`` on the
  concatenation of all batches. ``num_images`` / ``num_hole_images`` count
  the (weighted) images seen.
  """

  def __init__(self):
    self.reset()

  def reset(self):
    self._sums = dict(hole_se=0.0, hole_count=0.0, full_se=0.0, full_count=0.0,
                      psnr=0.0, hole_psnr=0.0, ssim=0.0, image_mse=0.0,
                      image_log_mse=0.0)
    self.num_images = 0.0
    self.num_hole_images = 0.0

  def update(self, pred, image, mask, valid=None):
    pred = jnp.asarray(pred, jnp.float32)
    image = jnp.asarray(image, jnp.float32)
    mask = jnp.asarray(mask, jnp.float32)
    check_shapes(pred, image, mask)
    n = pred.shape[0]
    v = np.ones((n,)) if valid is None else np.asarray(valid, np.float64)
    if v.shape != (n,):
      raise ValueError(f"valid must be [N] = ({n},), got {v.shape}")
    stats = {k: np.asarray(x, np.float64)
             for k, x in _per_image_stats(pred, image, mask).items()}
    has_hole = stats["hole_count"] > 0
    hv = np.where(has_hole, v, 0.0)
    s = self._sums
    def wsum(weights, x):  # padded rows (weight 0) never leak NaN
      return float(np.sum(np.where(weights > 0, weights * x, 0.0)))

    s["hole_se"] += wsum(v, stats["hole_se"])
    s["hole_count"] += wsum(v, stats["hole_count"])
    s["full_se"] += wsum(v, stats["full_se"])
    s["full_count"] += float(np.sum(v)) * math.prod(pred.shape[1:])
    s["psnr"] += wsum(v, stats["psnr"])
    s["ssim"] += wsum(v, stats["ssim"])
    s["hole_psnr"] += wsum(hv, stats["hole_psnr"])
    mse = stats["hole_se"] / np.maximum(stats["hole_count"], 1.0)
    s["image_mse"] += wsum(hv, mse)
    s["image_log_mse"] += wsum(hv, np.log(mse + LOG_MSE_EPS))
    self.num_images += float(np.sum(v))
    self.num_hole_images += float(np.sum(hv))
    return self

  def result(self) -> dict[str, float]:
    s = self._sums

    def ratio(a, b, empty):
      return a / b if b > 0 else empty

    return dict(
        masked_mse=ratio(s["hole_se"], s["hole_count"], 0.0),
        full_mse=ratio(s["full_se"], s["full_count"], 0.0),
        psnr=ratio(s["psnr"], self.num_images, math.nan),
        hole_psnr=ratio(s["hole_psnr"], self.num_hole_images, math.nan),
        ssim=ratio(s["ssim"], self.num_images, math.nan),
        image_mse=ratio(s["image_mse"], self.num_hole_images, math.nan),
        image_log_mse=ratio(s["image_log_mse"], self.num_hole_images,
                            math.nan),
    )


def evaluate_inpainting(pred, image, mask, valid=None) -> dict[str, float]:
  """``METRIC_KEYS`` of one batch (Python floats).

  Scored on ``composite(pred, image, mask)``; definitions in the module
  docstring. For many batches use ``InpaintingAccumulator``.
  """
  return InpaintingAccumulator().update(pred, image, mask, valid).result()
