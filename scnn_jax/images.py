"""Image grids and PNG files (Pillow), written through etils.epath."""

from __future__ import annotations

import io

import numpy as np
from etils import epath
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """float images in [0, 1] -> uint8 (values outside are clipped)."""
  return (np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0 + 0.5
          ).astype(np.uint8)


def grid(rows: list[np.ndarray], pad: int = 2, scale: int = 1) -> np.ndarray:
  """Rows of images ``[n, H, W, C]`` -> one uint8 image, white padding.

  Every row must have the same ``n, H, W``; grayscale rows (C = 1) are shown
  as RGB when other rows are RGB.
  """
  rows = [np.asarray(r, np.float32) for r in rows]
  channels = max(r.shape[-1] for r in rows)
  rows = [np.repeat(r, channels, -1) if r.shape[-1] != channels else r
          for r in rows]
  n, h, w, _ = rows[0].shape
  out = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, channels),
                np.float32)
  for i, row in enumerate(rows):
    for j in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = row[j]
  out = to_uint8(out)
  if scale > 1:
    out = out.repeat(scale, 0).repeat(scale, 1)
  return out[..., 0] if channels == 1 else out


def save_png(path, image: np.ndarray) -> None:
  """Writes a uint8 (or [0, 1] float) HxW or HxWxC array as PNG."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = to_uint8(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(buf.getvalue())
