"""scnn_jax.inpaint_losses: per-image log hole MSE."""

import numpy as np

from scnn_jax import inpaint_losses


def test_log_mse_sums_by_hand():
  target = np.zeros((3, 2, 2, 1), np.float32)
  pred = np.zeros_like(target)
  mask = np.zeros_like(target)
  pred[0, 0, 0] = 0.1          # image 0: hole of 2 px, errors 0.1 and 0.3
  pred[0, 1, 1] = 0.3
  mask[0, 0, 0] = mask[0, 1, 1] = 1
  pred[1] = 0.5                # image 1: whole image hole, error 0.5
  mask[1] = 1
  pred[2] = 0.9                # image 2: no hole: does not count
  num, den = inpaint_losses.log_mse_sums(pred, target, mask, eps=0.0)
  expected = np.log((0.01 + 0.09) / 2) + np.log(0.25)
  np.testing.assert_allclose(float(num), expected, rtol=1e-6)
  assert float(den) == 2.0
  # valid = 0 drops an image (eval padding), even one full of NaN.
  pred[1] = np.nan
  num, den = inpaint_losses.log_mse_sums(pred, target, mask,
                                         valid=np.array([1, 0, 1]), eps=0.0)
  np.testing.assert_allclose(float(num), np.log(0.05), rtol=1e-6)
  assert float(den) == 1.0
