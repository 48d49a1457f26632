"""scnn_jax.data.images: a user's image and mask files in the model's format."""

import numpy as np
from PIL import Image

from scnn_jax.data import images
from tests.workdirs import rand_image


def test_image_modes_are_converted_to_the_checkpoint_channels():
  rng = np.random.default_rng(0)
  rgb = rand_image(rng, 5, 7, "RGB")
  gray = rand_image(rng, 5, 7, "L")
  rgba = rand_image(rng, 5, 7, "RGBA")

  a, notes = images.to_model_pixels(rgb, 3)
  np.testing.assert_array_equal(a, np.asarray(rgb))
  assert notes == []
  a, notes = images.to_model_pixels(gray, 3)
  np.testing.assert_array_equal(a, np.repeat(np.asarray(gray)[..., None], 3, -1))
  assert "replicated to RGB" in notes[0]
  a, notes = images.to_model_pixels(rgba, 3)
  np.testing.assert_array_equal(a, np.asarray(rgba)[..., :3])
  assert "alpha channel dropped" in notes[0]
  a, notes = images.to_model_pixels(rgb, 1)
  np.testing.assert_array_equal(a[..., 0], np.asarray(rgb.convert("L")))
  assert "converted to grayscale" in notes[0]
  a, _ = images.to_model_pixels(gray.convert("LA"), 1)
  np.testing.assert_array_equal(a[..., 0], np.asarray(gray))
  a, notes = images.to_model_pixels(rgb.convert("P"), 3)
  np.testing.assert_array_equal(a, np.asarray(rgb.convert("P").convert("RGB")))
  wide = Image.fromarray(np.array([[0, 257 * 7, 65535]], np.uint16))
  a, notes = images.to_model_pixels(wide, 1)
  np.testing.assert_array_equal(a[..., 0], [[0, 7, 255]])
  assert "16-bit" in notes[0]
  assert a.dtype == np.uint8 and a.flags.c_contiguous


def test_mask_threshold_is_50_percent_and_transparent_is_known():
  levels = np.array([[0, 127, 128, 255]], np.uint8)
  np.testing.assert_array_equal(images.mask_to_holes(Image.fromarray(levels)),
                                [[False, False, True, True]])
  rgb = np.zeros((1, 3, 3), np.uint8)
  rgb[0, 0] = 255                  # white: hole
  rgb[0, 1] = (255, 0, 0)          # red: luma 76 -> known
  rgb[0, 2] = (128, 128, 128)      # mid grey: hole
  np.testing.assert_array_equal(images.mask_to_holes(Image.fromarray(rgb)),
                                [[True, False, True]])
  rgba = np.full((1, 3, 4), 255, np.uint8)
  rgba[0, 1, 3] = 0                # white but transparent: known
  rgba[0, 2, 3] = 100              # white at 39 % alpha: known
  np.testing.assert_array_equal(images.mask_to_holes(Image.fromarray(rgba)),
                                [[True, False, False]])
  bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
  np.testing.assert_array_equal(images.mask_to_holes(bits), [[False, True]])
  wide = Image.fromarray(np.array([[32767, 32768]], np.uint16))
  np.testing.assert_array_equal(images.mask_to_holes(wide), [[False, True]])


def test_unreadable_files_are_named(tmp_path):
  import pytest
  (tmp_path / "bad.png").write_bytes(b"not a png")
  with pytest.raises(images.ImageError, match=r"cannot read image .*bad\.png: "
                     "not an image Pillow can decode"):
    images.read_image_file(tmp_path / "bad.png")
  with pytest.raises(images.ImageError, match=r"mask .*nope\.png not found"):
    images.read_image_file(tmp_path / "nope.png", "mask")
