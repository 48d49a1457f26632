"""Image files (Pillow, through etils.epath): reading a user's images and
masks in the format a model expects, writing PNGs and sample grids.

Reading is for the inpainting command and API (``scnn_jax.runtime.inpainter``):
any Pillow mode is converted to the checkpoint's grayscale / RGB uint8 pixels
(``to_model_pixels``), and a mask image to holes (``mask_to_holes``: white =
missing). Files that cannot be read raise ``ImageError`` naming the file.
"""

from __future__ import annotations

import io

import numpy as np
from etils import epath
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm", ".pgm")
MASK_THRESHOLD = 0.5  # a mask pixel is a hole when its gray level >= 50 %

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N",
               "F")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit PNGs load so


class ImageError(ValueError):
  """A file that is not a readable image (the message names it)."""


def first_line(e: BaseException) -> str:
  """The first line of an exception's message (or its type's name)."""
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


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


# --------------------------------------------------------------------------
# Reading images and masks
# --------------------------------------------------------------------------


def read_image_file(path, what: str = "image", *,
                    decode: bool = True) -> Image.Image:
  """Opens and decodes ``path``; ``ImageError`` naming it when that fails.

  ``decode=False`` reads the header only (format, size, mode: cheap), to
  check files before any work; errors in the pixel data then show when the
  image is decoded.
  """
  path = epath.Path(path)
  if not path.exists():
    raise ImageError(f"{what} {path} not found")
  if path.is_dir():
    raise ImageError(f"{what} {path} is a directory, not an image file")
  try:
    data = path.read_bytes()
  except OSError as e:
    raise ImageError(f"cannot read {what} {path}: "
                     f"{e.strerror or first_line(e)}") from None
  buf = io.BytesIO(data)
  try:
    img = Image.open(buf)
    if decode:
      img.load()
  except Image.DecompressionBombError as e:
    raise ImageError(f"cannot read {what} {path}: {e}") from None
  except Image.UnidentifiedImageError:
    raise ImageError(f"cannot read {what} {path}: not an image Pillow can "
                     "decode (unknown file format)") from None
  except (OSError, ValueError, SyntaxError) as e:
    # Pillow names the stream it read, our in-memory copy: name the file.
    reason = first_line(e).replace(repr(buf), str(path))
    raise ImageError(f"cannot read {what} {path}: not an image Pillow can "
                    f"decode ({reason})") from None
  return img


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
  """16-bit grayscale (Pillow modes I / I;16*) -> uint8, rounded."""
  a = np.asarray(img).astype(np.int64)
  return np.clip((a + 128) // 257, 0, 255).astype(np.uint8)


def to_model_pixels(img: Image.Image, channels: int
                    ) -> tuple[np.ndarray, list[str]]:
  """``img`` as uint8 ``[H, W, channels]`` and notes on what was converted.

  ``channels`` 3: RGB (grayscale is replicated, alpha dropped, palette / CMYK
  / other modes converted by Pillow). ``channels`` 1: grayscale (colour is
  reduced to Pillow's luma ``L = 0.299 R + 0.587 G + 0.114 B``). 16-bit
  grayscale is scaled to 8 bits. The output is written in this same format,
  so "known pixels unchanged" holds for these pixels. Raises ``ValueError``
  for modes Pillow cannot convert.
  """
  if channels not in (1, 3):
    raise ValueError(f"the checkpoint expects {channels}-channel images; "
                     "only 1 (grayscale) and 3 (RGB) are supported")
  mode = img.mode
  notes = []
  if mode == "P":
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
  elif mode in ("RGBa", "La"):  # premultiplied alpha
    img = img.convert("RGBA" if mode == "RGBa" else "LA")
  if img.mode in _ALPHA_MODES:
    notes.append(f"alpha channel dropped ({mode} -> "
                 f"{'RGB' if channels == 3 else 'L'}; transparent pixels keep "
                 "their stored colour)")
  gray = img.mode in _GRAY_MODES
  if img.mode in _WIDE_MODES:
    arr = _wide_to_uint8(img)
    notes.append("16-bit image reduced to 8 bits")
  elif gray:
    arr = np.asarray(img.convert("L"))
  else:
    if img.mode not in ("RGB", "RGBA"):
      notes.append(f"converted from mode {mode} to RGB")
    rgb = img.convert("RGB")
    arr = np.asarray(rgb.convert("L") if channels == 1 else rgb)
  if arr.ndim == 2:
    arr = arr[..., None]
  if channels == 3 and arr.shape[-1] == 1:
    arr = np.repeat(arr, 3, axis=-1)
    notes.append("grayscale image replicated to RGB (the checkpoint is RGB)")
  elif channels == 1 and not gray:
    notes.append("colour image converted to grayscale (the checkpoint is "
                 "grayscale; Pillow luma)")
  return np.ascontiguousarray(arr, dtype=np.uint8), notes


def mask_to_holes(img: Image.Image) -> np.ndarray:
  """A mask image -> bool ``[H, W]``, True = hole (missing pixel).

  The gray level of each pixel (Pillow's luma for colour masks, 16-bit masks
  scaled to [0, 1]) times its alpha (transparent = black = known) is
  thresholded at 50 %: 8-bit levels >= 128 are holes, <= 127 known.
  """
  mode = img.mode
  if mode == "1":
    return np.asarray(img, dtype=bool).copy()
  if mode == "P":
    img = img.convert("RGBA")
    mode = "RGBA"
  if mode in _WIDE_MODES:
    level = np.asarray(img).astype(np.float64) / 65535.0
    return level >= MASK_THRESHOLD
  alpha = None
  if mode in _ALPHA_MODES:
    rgba = img.convert("RGBA" if mode in ("RGBA", "PA", "RGBa") else "LA")
    alpha = np.asarray(rgba)[..., -1].astype(np.int64)
    img = rgba.convert("RGB" if rgba.mode == "RGBA" else "L")
  level = np.asarray(img.convert("L")).astype(np.int64)
  if alpha is None:
    return 2 * level >= 255                   # level / 255 >= 0.5
  return 2 * level * alpha >= 255 * 255     # (level / 255) * (alpha / 255)
