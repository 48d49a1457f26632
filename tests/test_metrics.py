"""scnn_jax.metrics against hand counts: the in-jit losses (hole MSE,
classification), PSNR / SSIM and their accumulation, spike rates and
synaptic operations, the Frechet distance (FID, FAD) and the FAD scorer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from scnn_jax import metrics, nn
from scnn_jax.metrics import energy, losses
from scnn_jax.models.fad_autoencoder import FadAutoencoder
from scnn_jax.models.specs import LayerSpec
from scnn_jax.nn.variables import SpikeRate


def _batch(n=3, h=6, w=5, c=3, seed=0):
  rng = np.random.default_rng(seed)
  pred = rng.random((n, h, w, c), dtype=np.float32)
  image = rng.random((n, h, w, c), dtype=np.float32)
  mask = (rng.random((n, h, w, 1)) < 0.4).astype(np.float32)
  return pred, image, mask


# ------------------------------------------------------------- masked MSE

def test_masked_mse_hand_computation_and_gradient():
  pred, image, mask = _batch()
  hole = np.broadcast_to(mask, pred.shape) > 0
  expected = np.mean((pred[hole] - image[hole]) ** 2)  # pooled over holes
  np.testing.assert_allclose(metrics.masked_mse(pred, image, mask), expected, rtol=1e-6)
  sse, count = metrics.masked_se_sums(pred, image, mask)
  assert float(count) == hole.sum()
  np.testing.assert_allclose(sse / count, expected, rtol=1e-6)

  grad = jax.grad(metrics.masked_mse)(jnp.asarray(pred), image, mask)
  np.testing.assert_allclose(grad, np.where(hole, 2 * (pred - image) / hole.sum(), 0.0),
                             rtol=1e-5, atol=1e-9)
  assert np.all(np.asarray(grad)[~hole] == 0.0)  # known pixels get no gradient

  per = metrics.masked_mse_per_image(pred, image, mask)
  for i in range(len(pred)):
    np.testing.assert_allclose(per[i], np.mean((pred[i][hole[i]] - image[i][hole[i]]) ** 2),
                               rtol=1e-6)
  # Jittable.
  np.testing.assert_allclose(jax.jit(metrics.masked_mse)(pred, image, mask), expected, rtol=1e-6)


def test_masked_mse_no_hole_all_hole_and_valid_weights():
  pred, image, _ = _batch(n=4, h=16, w=12)  # SSIM (in evaluate_inpainting) needs >= 11x11
  zero, ones = np.zeros((4, 16, 12, 1), np.float32), np.ones((4, 16, 12, 1), np.float32)
  loss, grad = jax.value_and_grad(metrics.masked_mse)(jnp.asarray(pred), image, zero)
  assert float(loss) == 0.0 and bool(jnp.all(grad == 0))  # defined as 0, no NaN
  np.testing.assert_allclose(metrics.masked_mse(pred, image, ones),
                             np.mean((pred - image) ** 2), rtol=1e-6)
  np.testing.assert_allclose(metrics.full_mse(pred, image, ones),
                             np.mean((pred - image) ** 2), rtol=1e-6)
  assert float(metrics.masked_mse_per_image(pred, image, zero).sum()) == 0.0

  # Padded rows (valid 0) are ignored, even when they hold garbage.
  junk = pred.copy()
  junk[3] = np.nan
  valid = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
  loss, grad = jax.value_and_grad(metrics.masked_mse)(jnp.asarray(pred), image, ones, valid)
  np.testing.assert_allclose(loss, np.mean((pred[:3] - image[:3]) ** 2), rtol=1e-6)
  assert bool(jnp.all(grad[3] == 0))
  np.testing.assert_allclose(metrics.psnr(np.where(np.isnan(junk), 0, junk), image, valid),
                             metrics.psnr(pred[:3], image[:3]), rtol=1e-6)
  assert np.isfinite(float(metrics.psnr(junk, image, valid)))
  np.testing.assert_allclose(metrics.masked_mse(junk, image, ones, valid),
                             np.mean((pred[:3] - image[:3]) ** 2), rtol=1e-6)
  assert np.isfinite(float(metrics.full_mse(junk, image, ones, valid)))
  assert all(np.isfinite(v) for v in metrics.evaluate_inpainting(junk, image, ones, valid).values())
  loss, grad = jax.value_and_grad(metrics.masked_mse)(jnp.asarray(pred), image, ones,
                                                       np.zeros(4, np.float32))
  assert float(loss) == 0.0 and bool(jnp.all(grad == 0))
  assert float(metrics.full_mse(pred, image, ones, np.zeros(4, np.float32))) == 0.0
  assert math.isnan(float(metrics.psnr(pred, image, np.zeros(4, np.float32))))


def test_composite_and_full_mse():
  pred, image, mask = _batch()
  comp = np.asarray(metrics.composite(pred, image, mask))
  hole = np.broadcast_to(mask, pred.shape) > 0
  assert np.array_equal(comp[~hole], image[~hole]) and np.array_equal(comp[hole], pred[hole])
  np.testing.assert_allclose(metrics.full_mse(pred, image, mask),
                             np.mean((comp - image) ** 2), rtol=1e-6)
  with pytest.raises(ValueError, match=r"mask must be \[N, H, W, 1\]"):
    metrics.composite(pred, image, mask[:, :, :2])


# ------------------------------------------------------------- PSNR / SSIM

def test_psnr_closed_form_cap_and_hole_psnr():
  image = np.full((2, 8, 8, 3), 0.5, np.float32)
  pred = image.copy()
  pred[0] += 0.1  # MSE 0.01 -> 20 dB
  pred[1] += 0.01  # MSE 1e-4 -> 40 dB
  per = metrics.psnr_per_image(pred, image)
  np.testing.assert_allclose(per, 10 * np.log10(1 / np.array([0.01, 1e-4])), rtol=1e-4)
  np.testing.assert_allclose(metrics.psnr(pred, image), 30.0, rtol=1e-4)
  np.testing.assert_allclose(metrics.psnr(pred, image, np.array([0.0, 1.0])), 40.0, rtol=1e-4)
  import dm_pix
  np.testing.assert_allclose(per, dm_pix.psnr(pred, image), rtol=1e-5)
  assert float(metrics.psnr(image, image)) == pytest.approx(metrics.PSNR_CAP_DB)

  # Hole PSNR ignores known pixels: a huge known-pixel error changes nothing.
  mask = np.zeros((2, 8, 8, 1), np.float32)
  mask[0, 2:4, 2:6] = 1
  pred = image.copy()
  pred[0, 2:4, 2:6] += 0.1  # hole error of image 0: MSE 0.01 -> 20 dB
  wild = pred.copy()
  wild[0, 6:] = 1.0
  wild[1] = 0.0  # image 1 has no hole: excluded from the mean
  for p in (pred, wild):
    np.testing.assert_allclose(metrics.hole_psnr(p, image, mask), 20.0, rtol=1e-4)
  assert np.isnan(metrics.hole_psnr_per_image(pred, image, mask)[1])
  assert math.isnan(float(metrics.hole_psnr(pred, image, np.zeros_like(mask))))
  # Full-image PSNR of the composite is higher: the hole is 1/8 of the image.
  comp = metrics.composite(pred, image, mask)
  np.testing.assert_allclose(metrics.psnr_per_image(comp, image)[0],
                             10 * np.log10(1 / (0.01 * 8 / 64)), rtol=1e-4)


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3)])
def test_ssim_gray_and_rgb(shape):
  rng = np.random.default_rng(1)
  image = rng.random(shape, dtype=np.float32)
  np.testing.assert_allclose(metrics.ssim(image, image), 1.0, atol=1e-5)
  noisy = np.clip(image + 0.1 * rng.standard_normal(shape, dtype=np.float32), 0, 1)
  per = metrics.ssim_per_image(noisy, image)
  assert per.shape == (2,) and bool(jnp.all(per < 0.99)) and bool(jnp.all(per > 0))
  np.testing.assert_allclose(metrics.ssim(noisy, image, np.array([1.0, 0.0])), per[0], rtol=1e-6)


def test_ssim_too_small():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(np.zeros((1, 8, 8, 1), np.float32), np.zeros((1, 8, 8, 1), np.float32))


# ------------------------------------------------------------- evaluation

def test_accumulator_equals_concatenation():
  # Shapes shared with the test above: the jitted per-image statistics compile once.
  pred, image, mask = _batch(n=4, h=16, w=12, c=3, seed=2)
  mask[1] = 0.0  # an image without a hole
  valid = np.array([1, 1, 1, 0], np.float32)
  whole = metrics.evaluate_inpainting(pred, image, mask, valid)
  acc = metrics.InpaintingAccumulator()
  acc.update(pred[:2], image[:2], mask[:2], valid[:2])
  acc.update(pred[2:], image[2:], mask[2:], valid[2:])
  split = acc.result()
  assert set(whole) == set(metrics.METRIC_KEYS)
  for key in metrics.METRIC_KEYS:
    assert isinstance(split[key], float)
    np.testing.assert_allclose(split[key], whole[key], rtol=1e-6, err_msg=key)
  # ... and equals the JAX functions on the valid rows of the composite.
  comp = metrics.composite(pred, image, mask)
  v = slice(0, 3)
  np.testing.assert_allclose(whole["masked_mse"], metrics.masked_mse(pred[v], image[v], mask[v]), rtol=1e-5)
  np.testing.assert_allclose(whole["full_mse"], metrics.full_mse(pred[v], image[v], mask[v]), rtol=1e-5)
  np.testing.assert_allclose(whole["psnr"], metrics.psnr(comp[v], image[v]), rtol=1e-5)
  np.testing.assert_allclose(whole["hole_psnr"], metrics.hole_psnr(pred[v], image[v], mask[v]), rtol=1e-5)
  np.testing.assert_allclose(whole["ssim"], metrics.ssim(comp[v], image[v]), rtol=1e-5)
  for key, sums in (("image_mse", losses.image_mse_sums),
                    ("image_log_mse", losses.log_mse_sums)):
    num, den = sums(pred, image, mask, valid)   # the image without a hole: out
    np.testing.assert_allclose(whole[key], num / den, rtol=1e-5, err_msg=key)
  assert acc.num_images == 3 and acc.num_hole_images == 2


# ------------------------------------------------------------- baselines


def test_spike_rates_from_capture():
  class Net(nnx.Module):  # bare neurons: cheap to build, same capture paths as layers

    def __init__(self):
      self.a = nn.LIF(beta=0.5)
      self.blocks = nnx.List([nn.LIF(threshold=0.5)])

    def __call__(self, x):
      return self.blocks[0](self.a(x) * 2.0)

  x = jnp.asarray(np.random.default_rng(0).random((4, 2, 6, 6, 1), dtype=np.float32)) * 3
  y, captured = nnx.capture(Net(), SpikeRate)(x)
  rates = metrics.spike_rates(captured)
  assert set(rates) == {"a", "blocks/0"}
  np.testing.assert_allclose(rates["blocks/0"], float(y.mean()), rtol=1e-6)
  assert 0.0 < rates["a"] <= 1.0
  assert metrics.spike_rates({"x": {"rate": (0.2, 0.4)}}) == {"x": pytest.approx(0.3)}


def test_synaptic_ops_and_energy_hand_count():
  T = 4
  spec = [
      # Conv on the static image: real-valued input, computed once.
      dict(name="conv1", kind="conv", in_shape=(8, 8, 1), out_shape=(8, 8, 4), kernel=(3, 3)),
      # Stride-2 conv on spikes of conv1's neurons.
      dict(name="conv2", kind="conv", in_shape=(8, 8, 4), out_shape=(4, 4, 6), kernel=(3, 3),
           in_is_spikes=True, rate_key="conv1/neuron"),
      dict(name="fc", kind="dense", in_shape=(4, 4, 6), out_shape=(10,),
           in_is_spikes=True, rate=0.5),
  ]
  rates = {"conv1/neuron": 0.25}
  ops = metrics.synaptic_ops(spec, rates, timesteps=T)
  macs1 = 8 * 8 * 4 * 9 * 1
  macs2 = 4 * 4 * 6 * 9 * 4
  macs3 = 96 * 10
  # conv2: input spikes per step = 0.25 * 256 = 64, each drives 3*3*6/(2*2) synapses.
  syn2 = T * 64 * (9 * 6 / 4)
  syn3 = T * (0.5 * 96) * 10
  assert ops["layers"]["conv2"]["fan_out"] == 9 * 6 / 4
  assert ops["layers"]["conv1"]["macs"] == macs1 and ops["layers"]["conv2"]["macs"] == macs2
  assert ops["synops"] == pytest.approx(syn2 + syn3)
  assert ops["snn_macs"] == macs1
  assert ops["ann_macs"] == macs1 + macs2 + macs3
  estimate = energy.estimate(spec, rates=rates, timesteps=T)
  snn = 0.9e-12 * (syn2 + syn3) + 4.6e-12 * macs1
  ann = 4.6e-12 * (macs1 + macs2 + macs3)
  assert estimate["energy_j"] == pytest.approx(snn)
  assert estimate["cnn_energy_j"] == pytest.approx(ann)
  assert estimate["energy_ratio"] == pytest.approx(snn / ann)
  tr = LayerSpec("up", "conv_transpose", (4, 4, 6), (8, 8, 2), (3, 3))
  assert tr.macs == 4 * 4 * 6 * 9 * 2 and tr.fan_out == 18
  with pytest.raises(ValueError, match="rate_key 'nope'"):
    metrics.synaptic_ops([dict(spec[1], rate_key="nope")], rates, T)
  with pytest.raises(ValueError, match="unknown kind 'lstm'"):
    metrics.synaptic_ops([dict(spec[0], kind="lstm")])


# ------------------------------------------------------------- Frechet distance

def test_frechet_distance():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
  s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([4.0, 0.5, 0.5])
  closed = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
  np.testing.assert_allclose(metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)),
                             closed, rtol=1e-10)
  feats = np.random.default_rng(0).standard_normal((500, 16)) @ np.diag(np.linspace(0.5, 2, 16))
  mu, sigma = metrics.gaussian_stats(feats)
  assert mu.shape == (16,) and sigma.shape == (16, 16)
  assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-6
  # Near-singular covariances (fewer samples than dimensions) stay finite.
  few = np.random.default_rng(1).standard_normal((8, 32))
  mu, sigma = metrics.gaussian_stats(few)
  d = metrics.frechet_distance(mu, sigma, mu + 1.0, sigma)
  assert np.isfinite(d) and d == pytest.approx(32.0, abs=1e-2)
  np.testing.assert_allclose(metrics.frechet_distance(0.0, 1.0, 3.0, 4.0), 9 + 1 + 4 - 4)


def _rotation(d, seed):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return q


def test_frechet_distance_closed_form():
  # Commuting covariances R diag(a) R^T and R diag(b) R^T:
  # d = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  d = 6
  rng = np.random.default_rng(0)
  r = _rotation(d, 1)
  a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.5, 3.0, d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = r @ np.diag(a) @ r.T, r @ np.diag(b) @ r.T
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
      want, rel=1e-9)
  # Non-commuting, rank-deficient covariances (fewer samples than dimensions,
  # as Inception features): the textbook formula with scipy's sqrtm.
  c1 = np.cov(rng.normal(size=(5, d)), rowvar=False)
  c2 = np.cov(rng.normal(size=(40, d)) * np.arange(1, d + 1), rowvar=False)
  textbook = (np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2)
              - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real))
  assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(
      textbook, rel=1e-6)
  # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
  assert metrics.frechet_distance([1.0], [[4.0]], [-2.0], [[1.0]]) == \
      pytest.approx(9.0 + 1.0)
  # From samples: the Gaussian fits converge to the closed form.
  n = 200_000
  xa = rng.normal(size=(n, d)) * np.sqrt(a) @ r.T + mu1
  xb = rng.normal(size=(n, d)) * np.sqrt(b) @ r.T + mu2
  assert metrics.distance_of_features(xa, xb) == pytest.approx(want, rel=0.02)


def _tiny_scorer():
  model = FadAutoencoder((8, 8, 1), latent_dim=6, hidden=(4, 8),
                             rngs=nnx.Rngs(0))
  model.eval()
  return metrics.FadScorer(model, batch_size=32)


def test_fad_of_a_set_against_itself_is_zero():
  scorer = _tiny_scorer()
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(50, 8, 8, 1)).astype(np.float32)
  feats = scorer.features(images)          # 2 batches, the last one padded
  assert feats.shape == (50, 6)
  # Eval-mode codes are per image: padding and batch position do not matter.
  np.testing.assert_allclose(scorer.features(images[40:]), feats[40:],
                             rtol=1e-5, atol=1e-6)
  assert abs(scorer.distance(images, images)) < 1e-6
  other = np.clip(images * 0.5 + 0.4, 0, 1)
  assert scorer.distance(images, other) > 1e-3
  np.testing.assert_allclose(
      scorer.distance(images, other),
      metrics.distance_of_features(scorer.features(images),
                                   scorer.features(other)), rtol=1e-12)


# ------------------------------------------------------------- classification

def test_mse_count_and_cross_entropy_losses():
  rate = jnp.asarray([[0.8, 0.1, 0.0], [0.2, 0.4, 0.6], [1.0, 0.0, 0.0]])
  label = jnp.asarray([0, 2, 1])
  valid = jnp.asarray([1.0, 1.0, 0.0])                          # row 2 = padding
  num, den = losses.class_loss_sums(rate, label, "mse_count", 8, valid)
  onehot = np.eye(3)[[0, 2, 1]]
  se = ((np.asarray(rate) - onehot) ** 2).sum(-1)
  assert float(den) == 6.0                                      # 2 rows x K
  np.testing.assert_allclose(float(num) / float(den), se[:2].sum() / 6,
                             rtol=1e-6)
  # Paper B's loss on the full batch is torch's F.mse_loss (mean over B*K).
  num, den = losses.class_loss_sums(rate, label, "mse_count", 8)
  np.testing.assert_allclose(float(num) / float(den), se.mean() / 3, rtol=1e-6)
  num, den = losses.class_loss_sums(rate, label, "cross_entropy", 8, valid)
  logits = 8 * np.asarray(rate)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -logp[np.arange(3), [0, 2, 1]]
  np.testing.assert_allclose(float(num) / float(den), ce[:2].mean(), rtol=1e-5)
  correct, n = losses.correct_sums(rate, label, valid)
  assert (float(correct), float(n)) == (2.0, 2.0)
