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
* ``opencv_telea`` / ``opencv_ns``: OpenCV's ``cv2.inpaint`` with
  ``INPAINT_TELEA`` (fast marching, Telea 2004) or ``INPAINT_NS``
  (Navier-Stokes, Bertalmio et al. 2001), radius ``OPENCV_RADIUS`` px, per
  image on uint8 pixels (OpenCV's methods take 8-bit images): the hole
  values are the uint8 result / 255. For evaluation only
  (``scripts/inpaint_eval.py``): OpenCV comes from the optional
  ``opencv-python-headless`` (``pip install 'scnn_jax[eval]'``), imported
  when one of them runs; training scores ``BASELINES`` alone.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("mean_fill", "biharmonic")
OPENCV_BASELINES = ("opencv_telea", "opencv_ns")
OPENCV_RADIUS = 3
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


def _cv2():
  try:
    import cv2  # optional: evaluation only
  except ImportError as e:
    raise ImportError("the OpenCV baselines need opencv-python-headless: "
                      "pip install 'scnn_jax[eval]'") from e
  return cv2


def _opencv_one(image, hole, flag):
  if not hole.any():
    return image.copy()
  if hole.all():
    return _mean_fill_one(image, hole)
  cv2 = _cv2()
  pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
  filled = cv2.inpaint(np.ascontiguousarray(pixels), hole.astype(np.uint8),
                       OPENCV_RADIUS, getattr(cv2, flag))
  filled = filled.reshape(image.shape).astype(np.float32) / np.float32(255)
  # Known pixels from the float input: the uint8 round trip is OpenCV's
  # limitation, not part of its answer.
  return np.where(hole[..., None], filled, image)


def _opencv(images, masks, flag):
  images, holes, single = _prepare(images, masks)
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"OpenCV inpainting takes 1 or 3 channels, got "
                     f"{images.shape[-1]}")
  out = np.stack([_opencv_one(im, h, flag) for im, h in zip(images, holes)])
  return _finish(out, single)


def opencv_telea(images, masks):
  """``cv2.inpaint(..., INPAINT_TELEA)``, radius ``OPENCV_RADIUS``, on uint8.

  No hole: copied; all hole: ``mean_fill`` (0.5). Known pixels are copied
  exactly from the (float) input. Returns float32 of the images' shape.
  """
  return _opencv(images, masks, "INPAINT_TELEA")


def opencv_ns(images, masks):
  """``cv2.inpaint(..., INPAINT_NS)`` (Navier-Stokes), as ``opencv_telea``."""
  return _opencv(images, masks, "INPAINT_NS")


_ALL = {"mean_fill": mean_fill, "biharmonic": biharmonic,
        "opencv_telea": opencv_telea, "opencv_ns": opencv_ns}


def baseline_predictions(name: str, images, masks):
  """Predictions of the baseline called ``name`` (``BASELINES`` or
  ``OPENCV_BASELINES``)."""
  if name not in _ALL:
    raise ValueError(f"unknown baseline {name!r}; allowed: "
                     f"{', '.join(_ALL)}")
  return _ALL[name](images, masks)
