"""scnn_jax.models.baselines: mean fill and biharmonic inpainting keep the known
pixels, biharmonic wins on smooth images, edge masks."""

import numpy as np
import pytest

from scnn_jax import metrics
from scnn_jax.models import baselines


def _smooth_images():
  yy, xx = np.mgrid[0:28, 0:28] / 27.0
  gray = (0.2 + 0.6 * (0.7 * xx + 0.3 * yy))[None, ..., None].astype(np.float32)
  rgb = np.stack([xx, yy, (xx + yy) / 2], -1)[None].astype(np.float32)
  mask = np.zeros((1, 28, 28, 1), np.float32)
  mask[0, 6:16, 9:21] = 1
  return gray, rgb, mask


# ------------------------------------------------------------- spikes and energy


def test_baselines_keep_known_pixels_and_biharmonic_wins():
  gray, rgb, mask = _smooth_images()
  for image in (gray, rgb):
    known = np.broadcast_to(mask, image.shape) == 0
    fills = {name: baselines.baseline_predictions(name, image, mask) for name in baselines.BASELINES}
    for name, out in fills.items():
      assert out.dtype == np.float32 and out.shape == image.shape
      assert np.array_equal(out[known], image[known]), name
    err = {n: float(metrics.masked_mse(o, image, mask)) for n, o in fills.items()}
    assert err["biharmonic"] < 1e-4 < err["mean_fill"]
  # mean_fill uses the mean of the KNOWN pixels, per channel.
  out = baselines.mean_fill(rgb, mask)
  known_mean = rgb[0][mask[0, ..., 0] == 0].astype(np.float64).mean(axis=0)
  np.testing.assert_allclose(out[0, 10, 10], known_mean, rtol=1e-6)


def test_baseline_edge_masks():
  _, rgb, _ = _smooth_images()
  none, full = np.zeros((1, 28, 28, 1)), np.ones((1, 28, 28, 1))
  for fn in (baselines.mean_fill, baselines.biharmonic):
    assert np.array_equal(fn(rgb, none), rgb)
    assert np.all(fn(rgb, full) == 0.5)
  assert baselines.biharmonic(rgb[0], full[0]).shape == (28, 28, 3)  # single image
  with pytest.raises(ValueError, match="unknown baseline 'lama'"):
    baselines.baseline_predictions("lama", rgb, none)
