"""scnn_jax.metrics.losses: the per-image hole losses (log MSE, MSE), and
the eval loss that matches them."""

import numpy as np
import pytest

from configs import base
from scnn_jax import metrics, tasks
from scnn_jax.config import schema
from scnn_jax.metrics import losses


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
  num, den = losses.log_mse_sums(pred, target, mask, eps=0.0)
  expected = np.log((0.01 + 0.09) / 2) + np.log(0.25)
  np.testing.assert_allclose(float(num), expected, rtol=1e-6)
  assert float(den) == 2.0
  # valid = 0 drops an image (eval padding), even one full of NaN.
  pred[1] = np.nan
  num, den = losses.log_mse_sums(pred, target, mask,
                                 valid=np.array([1, 0, 1]), eps=0.0)
  np.testing.assert_allclose(float(num), np.log(0.05), rtol=1e-6)
  assert float(den) == 1.0


def test_image_mse_sums_by_hand():
  """Every image weighs the same, whatever its hole: unlike the pooled MSE."""
  target = np.zeros((2, 2, 2, 1), np.float32)
  pred = np.zeros_like(target)
  mask = np.zeros_like(target)
  pred[0, 0, 0], pred[0, 1, 1] = 0.1, 0.3    # image 0: 2-px hole, MSE 0.05
  mask[0, 0, 0] = mask[0, 1, 1] = 1
  pred[1], mask[1] = 0.5, 1                  # image 1: 4-px hole, MSE 0.25
  num, den = losses.image_mse_sums(pred, target, mask)
  assert float(den) == 2.0
  np.testing.assert_allclose(float(num) / float(den), (0.05 + 0.25) / 2,
                             rtol=1e-6)
  se, count = metrics.masked_se_sums(pred, target, mask)
  np.testing.assert_allclose(float(se) / float(count),
                             (0.01 + 0.09 + 4 * 0.25) / 6, rtol=1e-6)
  num, den = losses.image_mse_sums(pred, target, mask,
                                   valid=np.array([0.0, 1.0]))
  np.testing.assert_allclose([float(num), float(den)], [0.25, 1.0], rtol=1e-6)


def _eval_batches():
  rng = np.random.default_rng(3)
  for n in (3, 2):   # uneven batches; hole sizes differ per image
    image = rng.uniform(size=(n, 12, 12, 3)).astype(np.float32)
    mask = np.zeros((n, 12, 12, 1), np.float32)
    for i in range(n):
      mask[i, 2:4 + 2 * i, 3:9] = 1
    yield {"image": image, "mask": mask,
           "valid": np.ones((n,), np.float32)}, rng.uniform(
               size=image.shape).astype(np.float32)


@pytest.mark.parametrize("kind", losses.INPAINT_LOSSES)
def test_eval_loss_is_the_train_loss_over_the_eval_set(kind):
  """The eval results' ``loss`` is ``train.loss`` as the train step computes
  it, over the whole set: per-image values averaged over all images (mse:
  pooled over all hole entries)."""
  c = base.get_config()
  c.train.loss = kind
  task = tasks.get(schema.validate(c, devices=1))
  acc = task.new_accumulator()
  preds, images, masks = [], [], []
  for batch, pred in _eval_batches():
    task.accumulate(acc, batch, {"pred": pred})
    preds.append(pred), images.append(batch["image"]), masks.append(
        batch["mask"])
  whole = [np.concatenate(x) for x in (preds, images, masks)]
  fn = losses.PER_IMAGE.get(kind, metrics.masked_se_sums)
  num, den = fn(*whole)
  result = acc.result()
  np.testing.assert_allclose(result["loss"], float(num) / float(den),
                             rtol=1e-5)
  assert ("loss" in task.summary_keys()) == (kind != "mse")
