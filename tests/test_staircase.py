"""The closed-form LIF staircase (scnn_jax.nn.neurons) against the simulated
LIF (scnn_jax.ops.neurons) and its use as paper A's spiking layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax import nn
from scnn_jax.models import scnn
from scnn_jax.ops import neurons, surrogate

BETA = float(np.exp(-1 / 40))   # configs/base.py: tau 40 steps


@pytest.mark.parametrize("T, R", [(8, 0), (16, 0), (8, 1), (5, 2)])
def test_closed_form_equals_the_scan(T, R):
  rng = np.random.default_rng(T + R)
  I = rng.uniform(-0.3, 1.6, (400, 3)).astype(np.float32)
  beta = np.array([0.5, BETA, 1.0], np.float32)          # per channel
  s, _ = neurons.lif_scan(jnp.broadcast_to(I, (T,) + I.shape), beta=beta,
                          threshold=1.0, reset="zero", refractory_steps=R)
  c = neurons.lif_constant_current(I, T, beta=beta, threshold=1.0,
                                   refractory_steps=R)
  np.testing.assert_array_equal(c, s)
  counts = set(np.asarray(c.sum(0)).astype(int).ravel())
  assert len(counts) >= 3                 # several steps of the staircase hit


def test_staircase_levels_and_trains_by_hand():
  # beta 0.5, threshold 1: S_k = 1, 1.5, 1.75, 1.875, ...: a current in
  # [1/S_k, 1/S_{k-1}) fires every k steps, at t = k-1, 2k-1, ...
  trains = neurons.lif_constant_current(
      jnp.array([1.2, 0.7, 0.6, 0.55, 0.4]), 8, beta=0.5, threshold=1.0)
  np.testing.assert_array_equal(trains.T, [
      [1, 1, 1, 1, 1, 1, 1, 1],     # n = 1: 8 spikes
      [0, 1, 0, 1, 0, 1, 0, 1],     # n = 2: 4
      [0, 0, 1, 0, 0, 1, 0, 0],     # n = 3: 2
      [0, 0, 0, 1, 0, 0, 0, 1],     # n = 4: 2 (floor(8/4))
      [0] * 8])                     # S_inf I = 0.8 < 1: never
  # T = 8 from rest: counts floor(8/n) = 8, 4, 2, 2, 1, 1, 1, 1 -> 5 levels.
  I = jnp.linspace(0.0, 1.2, 2001)
  counts = neurons.lif_constant_current(I, 8, beta=BETA, threshold=1.0).sum(0)
  assert sorted(set(np.asarray(counts).astype(int))) == [0, 1, 2, 4, 8]


def test_gradient_is_the_surrogate_at_each_step_of_the_staircase():
  T, beta, I = 4, 0.5, 0.62
  g = jax.grad(lambda i: neurons.lif_constant_current(
      i, T, beta=beta, threshold=1.0).sum())(I)
  # count = sum_k w_k H(S_k I - 1), w_k = floor(T/k) - floor(T/(k+1)).
  S = np.cumsum(beta ** np.arange(T))
  w = np.array([T // k - T // (k + 1) for k in range(1, T + 1)])
  d = surrogate.derivative(S * I - 1.0, "fast_sigmoid", 25.0)
  np.testing.assert_allclose(g, np.sum(w * S * np.asarray(d)), rtol=1e-5)


def _scnn(neuron, kw):
  return scnn.SCNN(4, 3, width=8, T=8, num_layers=2, neuron=neuron,
                    neuron_kwargs=kw, noise_std=0.1,
                    noise_resample="sequence", rngs=nnx.Rngs(0))


def test_scnn_with_the_staircase_computes_the_same_images():
  kw = dict(tau=40.0, threshold=1.0, reset="zero")
  a = _scnn("lif", kw)
  # larger currents, so that neurons fire at many rates
  a.spiking.conv.kernel[...] = 4.0 * a.spiking.conv.kernel[...]
  b = nnx.clone(a)
  b.spiking.neuron = nn.LIFStaircase(**kw)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 4))
  # Training noise on (one draw held over T): same images, same spikes.
  run = nnx.jit(lambda m: m(x, rngs=nnx.Rngs(noise=3)))
  np.testing.assert_array_equal(run(a), run(b))
  rate = nnx.jit(lambda m: jnp.mean(m.spiking(x, T=8,
                                              rngs=nnx.Rngs(noise=3))))(a)
  assert 0.02 < float(rate) < 0.9
  grads = nnx.jit(nnx.grad(lambda m: jnp.mean(run(m) ** 2)))(b)
  grad = grads["spiking"]["conv"]["kernel"][...]
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
