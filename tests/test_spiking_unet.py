"""The spiking U-Net on a biharmonic prior (models/spiking_unet.py) and its
data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax.data import photos
from scnn_jax.models.spiking_unet import PriorSpikingUNet

NEURON = dict(tau=4.0, threshold=0.25, reset="subtract")


def _net(**kw):
  kw = dict(dict(width=4, depth=2, bottleneck_layers=1, T=4,
                 neuron_kwargs=NEURON, prior_iters=8), **kw)
  return PriorSpikingUNet(4, 3, rngs=nnx.Rngs(0), **kw)


def _batch(h, w, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  img = np.stack([0.5 + 0.3 * np.sin(4 * x + c) * np.cos(3 * y)
                  for c in range(3)], -1)[None].repeat(2, 0)
  img = (img + 0.05 * rng.normal(size=img.shape)).clip(0, 1)
  hole = np.zeros((2, h, w, 1), np.float32)
  hole[:, h // 4:h // 2, w // 3:2 * w // 3] = 1
  x = np.concatenate([img * (1 - hole), hole], -1).astype(np.float32)
  return jnp.asarray(x), img.astype(np.float32), hole


def test_untrained_net_is_the_prior_and_any_size_works():
  # The last conv starts at zero: the untrained output is the clipped
  # biharmonic fill, at odd sizes too (mirror-padded to a multiple of 4).
  x, _, hole = _batch(19, 26)
  net = _net()
  out = jax.jit(lambda x: net(x))(x)   # one compile, not op by op
  assert out.shape == (2, 19, 26, 3)
  prior = jax.jit(lambda x: net.prior(x))(x)
  np.testing.assert_array_equal(np.asarray(out),
                                np.clip(np.asarray(prior), 0, 1))


def test_spike_trains_drive_the_later_layers_and_time_matters():
  x, _, _ = _batch(16, 16)
  net = _net()
  h = net.stem[1](jax.nn.relu(net.stem[0](
      jnp.concatenate([net.prior(x), x[..., 3:]], -1))))
  trains = net.encode(jax.nn.relu(h))
  assert [t.shape for t in trains] == [(4, 2, 8, 8, 8), (4, 2, 4, 4, 16)]
  for s in trains:
    s = np.asarray(s)
    assert set(np.unique(s)) <= {0.0, 1.0}          # binary spikes
    assert 0.02 < s.mean() < 0.9                     # neither silent nor saturated
    # The trains change over time: a sizeable share of neurons neither
    # fires at every step nor stays silent, so the next layer's input
    # current changes from step to step.
    varying = (s.min(axis=0) != s.max(axis=0)).mean()
    assert varying > 0.05, varying
  # With one time step the second layer sees a different input current, so
  # its output differs: T is part of the computation, not a repeat count.
  short = _net(T=1)
  short.stem, short.down, short.bottleneck = net.stem, net.down, net.bottleneck
  t1 = short.encode(jax.nn.relu(h))
  assert not np.allclose(np.asarray(t1[-1]).mean(0),
                         np.asarray(trains[-1]).mean(0))


def test_surrogate_gradient_reaches_the_first_spiking_layer():
  x, img, hole = _batch(16, 16)
  net = _net()
  net.last.kernel[...] = 0.01 * jnp.ones_like(net.last.kernel[...])
  graphdef, state = nnx.split(net)

  def loss(state):
    out = nnx.merge(graphdef, state)(x)
    return jnp.sum(((out - img) * hole) ** 2)

  grads = jax.jit(jax.grad(loss))(state)
  g = np.asarray(grads["down"][0]["conv"]["kernel"][...])
  assert np.isfinite(g).all() and np.abs(g).max() > 0
  assert net.receptive_field == 1 + 2 + 2 + 2 + 4 + 2 * 4   # hand count: 17
  assert _net(depth=3).receptive_field == 35


def test_photos_split_is_by_whole_photo():
  assert not set(photos.PHOTOS_TRAIN) & set(photos.PHOTOS_VAL)
  names = set(photos.load_photos(3))
  assert names == set(photos.PHOTOS_TRAIN) | set(photos.PHOTOS_VAL)
  kept_out = {"camera", "coins", "moon", "brick", "grass", "hubble_deep_field"}
  assert not names & kept_out
  src = photos.PhotosSource(48, 3, 6, eval_seed=3)
  a, _ = src.eval_set()
  b, _ = photos.PhotosSource(48, 3, 6, eval_seed=3).eval_set()
  np.testing.assert_array_equal(a, b)
  assert a.shape == (6, 48, 48, 3) and a.dtype == np.uint8
  # Eval crops come from the held-out photos only: item k from photo k % 3.
  val = photos.load_photos(3)
  for k, crop in enumerate(a):
    img = val[photos.PHOTOS_VAL[k % 3]]
    hits = [(y, x) for y in range(img.shape[0] - 47)
            for x in range(img.shape[1] - 47)
            if img[y, x, 0] == crop[0, 0, 0] and
            np.array_equal(img[y:y + 48, x:x + 48], crop)]
    assert hits, k
  rng = np.random.default_rng(0)
  for _ in range(5):
    patch, _ = src.train_example(0, rng)
    assert patch.shape == (48, 48, 3) and patch.dtype == np.uint8
