"""Classical inpainting baselines (numpy, host side), scored like the models.

Images are float ``[N, H, W, C]`` in [0, 1] (a single ``[H, W, C]`` image is
accepted too); masks ``[N, H, W, 1]`` (or ``[N, H, W]``), 1 = hole, 0 = known,
binarised at 0.5. Every baseline returns float32 images of the input's shape
whose KNOWN pixels are copied bit-exactly from the input: a baseline's
prediction is already its composite.

* ``mean_fill``: each hole pixel gets the per-image, per-channel mean of that
  image's known pixels; an image that is all hole gets 0.5 (mid-grey, the
  centre of the [0, 1] range).
* ``biharmonic``: ``skimage.restoration.inpaint_biharmonic`` per image
  (channel_axis=-1, grayscale included), output clipped to [0, 1]. An image
  without a hole is copied; an image that is all hole has nothing to
  interpolate from and falls back to ``mean_fill`` (i.e. 0.5).
"""

from __future__ import annotations

import numpy as np

BASELINES = ("mean_fill", "biharmonic")
ALL_HOLE_FILL = 0.5


def _prepare(images, masks):
  """float32 ``[N, H, W, C]`` images, bool ``[N, H, W]`` holes, squeeze flag."""
  images = np.asarray(images, dtype=np.float32)
  masks = np.asarray(masks)
  single = images.ndim == 3
  if single:
    images, masks = images[None], masks[None]
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C] or [H, W, C], got shape "
                     f"{images.shape}")
  if masks.ndim == 4:
    if masks.shape[-1] != 1:
      raise ValueError(f"masks must have one channel [N, H, W, 1], got shape "
                       f"{masks.shape}")
    masks = masks[..., 0]
  if masks.shape != images.shape[:3]:
    raise ValueError(f"mask shape {masks.shape} does not match images "
                     f"{images.shape} (expected [N, H, W, 1])")
  return images, masks > 0.5, single


def _finish(out, single):
  return out[0] if single else out


def _mean_fill_one(image, hole):
  """Holes of one ``[H, W, C]`` image filled with its known-pixel mean."""
  out = image.copy()
  known = ~hole
  if not known.any():
    out[...] = ALL_HOLE_FILL
  elif hole.any():
    fill = image[known].astype(np.float64).mean(axis=0)  # [C]
    out[hole] = fill.astype(np.float32)
  return out


def mean_fill(images, masks):
  """Fill holes with the per-image, per-channel mean of the known pixels.

  An image whose mask is all hole is filled with 0.5. Known pixels are copied
  exactly. Returns float32 of the images' shape.
  """
  images, holes, single = _prepare(images, masks)
  out = np.stack([_mean_fill_one(im, h) for im, h in zip(images, holes)])
  return _finish(out, single)


def _biharmonic_one(image, hole):
  from skimage.restoration import inpaint_biharmonic  # import only when used
  if not hole.any():
    return image.copy()
  if hole.all():
    return _mean_fill_one(image, hole)
  filled = inpaint_biharmonic(image.astype(np.float64), hole, channel_axis=-1)
  filled = np.clip(filled, 0.0, 1.0).astype(np.float32)
  # inpaint_biharmonic leaves known pixels alone up to the float64 round trip;
  # copy them from the input so they are bit-exact.
  return np.where(hole[..., None], filled, image)


def biharmonic(images, masks):
  """Biharmonic inpainting (scikit-image) per image, clipped to [0, 1].

  No hole: the image is copied. All hole: falls back to ``mean_fill`` (0.5).
  Known pixels are copied exactly. Returns float32 of the images' shape.
  """
  images, holes, single = _prepare(images, masks)
  out = np.stack([_biharmonic_one(im, h) for im, h in zip(images, holes)])
  return _finish(out, single)


def baseline_predictions(name: str, images, masks):
  """Predictions of the baseline called ``name`` (one of ``BASELINES``)."""
  if name == "mean_fill":
    return mean_fill(images, masks)
  if name == "biharmonic":
    return biharmonic(images, masks)
  raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINES)}")
