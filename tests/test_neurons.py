import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scnn_jax.ops import neurons, surrogate

jax.config.update("jax_enable_x64", False)


def _currents(shape=(12, 3, 5), seed=0, scale=0.8):
  return np.random.default_rng(seed).normal(0.4, scale, shape).astype(np.float32)


def lif_loop(I, beta, thr, reset):
  """Paper-style loop written from the equations, in float64 numpy."""
  v = np.zeros(I.shape[1:])
  spikes, mem = [], []
  for t in range(I.shape[0]):
    u = beta * v + I[t]
    s = (u - thr >= 0).astype(np.float64)
    v = u - s * thr if reset == "subtract" else u * (1 - s)
    spikes.append(s)
    mem.append(v)
  return np.stack(spikes), np.stack(mem)


def alif_loop(X, tau, thr, v_reset, adapt=None):
  v = np.full(X.shape[1:], v_reset, np.float64)
  a = np.zeros(X.shape[1:])
  spikes = []
  for t in range(X.shape[0]):
    h = v + (1.0 / tau) * (X[t] - (v - v_reset))
    s = (h - (thr + a) >= 0).astype(np.float64)
    v = (1 - s) * h + s * v_reset
    if adapt is not None:
      a = math.exp(-1.0 / adapt[0]) * a + adapt[1] * s
    spikes.append(s)
  return np.stack(spikes)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_forward_matches_loop(reset):
  I = _currents()
  beta = np.array([0.5, 0.9, 0.975, 0.99, 1.0], np.float32)  # per channel
  s, v = neurons.lif_scan(I, beta=beta, threshold=0.7, reset=reset)
  s_ref, v_ref = lif_loop(I.astype(np.float64), beta, 0.7, reset)
  np.testing.assert_array_equal(s, s_ref)
  np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-5)
  assert 0.05 < float(s.mean()) < 0.95  # the comparison is not vacuous


def test_tau_gives_beta_exp_minus_dt_over_tau():
  np.testing.assert_allclose(neurons.beta_from_tau(40.0), math.exp(-1 / 40), rtol=1e-6)
  np.testing.assert_allclose(neurons.tau_from_beta(neurons.beta_from_tau(40.0)), 40.0,
                             rtol=1e-5)
  I = _currents()
  a = neurons.lif_scan(I, tau=40.0, threshold=1.0)
  b = neurons.lif_scan(I, beta=math.exp(-1 / 40), threshold=1.0)
  np.testing.assert_array_equal(a[0], b[0])
  with pytest.raises(ValueError, match="exactly one of beta= or tau="):
    neurons.lif_scan(I, beta=0.9, tau=10.0)


@pytest.mark.parametrize("adapt", [None, (5.0, 0.3)])
def test_alif_forward_matches_loop(adapt):
  X = _currents(scale=1.5)
  tau = np.array([1.5, 2.0, 3.0, 8.0, 30.0], np.float32)
  adaptation = None if adapt is None else neurons.Adaptation(*adapt)
  s, _ = neurons.alif_scan(X, tau=tau, threshold=0.5, v_reset=-0.1,
                           adaptation=adaptation)
  np.testing.assert_array_equal(
      s, alif_loop(X.astype(np.float64), tau, 0.5, -0.1, adapt))
  assert 0.05 < float(s.mean()) < 0.95


def test_adaptation_lowers_the_firing_rate():
  X = np.full((40, 4), 0.9, np.float32)
  s0, _ = neurons.alif_scan(X, tau=2.0, threshold=0.5)
  s1, _, a = neurons.alif_scan(X, tau=2.0, threshold=0.5,
                               adaptation=neurons.Adaptation(20.0, 0.5),
                               return_adaptation=True)
  assert float(s1.mean()) < float(s0.mean())
  assert float(a.max()) > 0


@pytest.mark.parametrize("detach", [False, True])
def test_bptt_gradient_equals_hand_derivation(detach):
  # T = 2, one neuron, subtract reset; L = s1 + s2.
  beta, th, I1, I2 = 0.8, 1.0, 1.3, 0.2
  g = lambda x: surrogate.derivative(x, "fast_sigmoid", 25.0)
  grad = jax.grad(lambda I: neurons.lif_scan(
      I, beta=beta, threshold=th, detach_reset=detach)[0].sum())(
          jnp.array([I1, I2]))
  u1 = I1
  u2 = beta * (u1 - th * 1.0) + I2
  g1, g2 = float(g(u1 - th)), float(g(u2 - th))
  dv1_du1 = 1.0 if detach else 1.0 - th * g1
  np.testing.assert_allclose(grad, [g1 + g2 * beta * dv1_du1, g2], rtol=1e-5)


def test_alif_gradient_equals_hand_derivation_at_t2():
  """Paper B's ALIF over T = 2 from rest, k = 1/tau = sigmoid(w):
  h1 = k x1, s1 = H(h1 - th), v1 = (1 - S1) h1 (reset detached),
  h2 = (1 - k) v1 + k x2, s2 = H(h2 - th); ATan surrogate (alpha 2):
  g(u) = 1 / (1 + (pi u)^2). For L = sum(s1 + 2 s2):
  dL/dth = -sum(g1 + 2 g2),
  dL/dk = sum(g1 x1 + 2 g2 ((1 - S1) x1 (1 - 2k) + x2)), dk/dw = k (1 - k).
  Two neurons: one silent at t = 1 (x1 = 0.8), one that fires and resets
  (x1 = 1.2), so both branches of the reset are in the sum."""
  x = jnp.asarray([[0.8, 1.2], [1.4, 0.6]])               # [T=2, 2 neurons]

  def loss(w, th):
    s, _ = neurons.alif_scan(x, tau=1.0 / jax.nn.sigmoid(w), threshold=th)
    return jnp.sum(s[0] + 2.0 * s[1])

  w, th = 0.0, 0.5
  gw, gth = jax.grad(loss, argnums=(0, 1))(w, th)
  k = 1.0 / (1.0 + np.exp(-w))
  x1, x2 = np.array([0.8, 1.2]), np.array([1.4, 0.6])
  h1 = k * x1
  S1 = (h1 >= th).astype(float)
  np.testing.assert_array_equal(S1, [0.0, 1.0])
  h2 = (1 - k) * (1 - S1) * h1 + k * x2
  g = lambda u: 1.0 / (1.0 + (np.pi * u) ** 2)
  g1, g2 = g(h1 - th), g(h2 - th)
  want_th = -np.sum(g1 + 2 * g2)
  want_k = np.sum(g1 * x1 + 2 * g2 * ((1 - S1) * x1 * (1 - 2 * k) + x2))
  np.testing.assert_allclose(gth, want_th, rtol=1e-6)
  np.testing.assert_allclose(gw, want_k * k * (1 - k), rtol=1e-6)


def test_vmap_over_parameters_equals_loop():
  I = jnp.asarray(_currents())
  betas = jnp.array([0.6, 0.8, 0.95])
  ths = jnp.array([0.5, 1.0, 1.5])
  f = lambda b, t: neurons.lif_scan(I, beta=b, threshold=t)[0]
  batched = jax.vmap(f)(betas, ths)
  for k in range(3):
    np.testing.assert_array_equal(batched[k], f(betas[k], ths[k]))
  gb = jax.vmap(jax.grad(lambda b: f(b, 1.0).sum()))(betas)
  for k in range(3):
    np.testing.assert_allclose(gb[k], jax.grad(lambda b: f(b, 1.0).sum())(betas[k]),
                               rtol=1e-6)


def test_chunked_sequence_equals_whole():
  I = _currents((20, 4))
  s, v = neurons.lif_scan(I, beta=0.9, threshold=1.0)
  s1, v1 = neurons.lif_scan(I[:7], beta=0.9, threshold=1.0)
  s2, v2 = neurons.lif_scan(I[7:], beta=0.9, threshold=1.0, v0=v1[-1])
  np.testing.assert_array_equal(np.concatenate([s1, s2]), s)
  np.testing.assert_allclose(np.concatenate([v1, v2]), v, rtol=1e-6)
  a = neurons.Adaptation(4.0, 0.2)
  s, v, ad = neurons.alif_scan(I, tau=3.0, threshold=0.5, adaptation=a,
                               return_adaptation=True)
  s1, v1, a1 = neurons.alif_scan(I[:9], tau=3.0, threshold=0.5, adaptation=a,
                                 return_adaptation=True)
  s2, _ = neurons.alif_scan(I[9:], tau=3.0, threshold=0.5, adaptation=a,
                            v0=v1[-1], a0=a1[-1])
  np.testing.assert_array_equal(np.concatenate([s1, s2]), s)


@pytest.mark.parametrize("scan", ["lif", "alif"])
def test_remat_gives_identical_gradients(scan):
  I = jnp.asarray(_currents())

  def loss(I, remat):
    if scan == "lif":
      s, v = neurons.lif_scan(I, beta=0.9, threshold=0.8, remat=remat)
    else:
      s, v = neurons.alif_scan(I, tau=2.5, threshold=0.5, remat=remat)
    return jnp.sum(s * jnp.arange(s.shape[-1])) + 0.1 * jnp.sum(v ** 2)

  g0 = jax.jit(jax.grad(loss), static_argnums=1)(I, False)
  g1 = jax.jit(jax.grad(loss), static_argnums=1)(I, True)
  # Equal up to float rounding: XLA may fuse the recomputed forward differently.
  np.testing.assert_allclose(g0, g1, rtol=1e-6, atol=1e-7)
  assert np.all(np.isfinite(g0)) and np.any(g0 != 0)


def test_bfloat16_currents_keep_float32_state():
  I = _currents()
  s, v = neurons.lif_scan(jnp.asarray(I, jnp.bfloat16), beta=0.9, threshold=1.0)
  assert s.dtype == jnp.bfloat16 and v.dtype == jnp.float32
  s32, _ = neurons.lif_scan(jnp.asarray(I, jnp.bfloat16).astype(jnp.float32),
                            beta=0.9, threshold=1.0)
  np.testing.assert_array_equal(s.astype(jnp.float32), s32)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="reset 'hard'.*subtract, zero"):
    neurons.lif_scan(jnp.zeros((2, 3)), beta=0.9, reset="hard")
  with pytest.raises(ValueError, match="T >= 1"):
    neurons.lif_scan(jnp.zeros((0, 3)), beta=0.9)
  with pytest.raises(ValueError, match="surrogate kind"):
    neurons.alif_scan(jnp.zeros((2, 3)), tau=2.0, threshold=0.5, surrogate="x")


# Refractory period: hand-computed trains, beta 1 (no leak), threshold 1.
# zero reset, R=0: fires at t1 (u 1.2), t2, t3 (2.0 each), t5 (0.3 + 0.9).
# R=1: t1 u=1.2 fires; t2 dead; t3 u=2.0 fires; t4 dead (0.3 lost); t5
# u=0.9; t6 u=1.8 fires. R=2: t1 fires; t2, t3 dead; t4 0.3; t5 1.2 fires. subtract, R=1: t1 fires (v 0.2); t2 dead
# (v held 0.2); t3 u=2.2 fires (v 1.2); t4 dead (v held, no spike although
# above threshold); t5 u=2.1 fires (v 1.1); t6 dead.
_REFR_INPUT = [0.6, 0.6, 2.0, 2.0, 0.3, 0.9, 0.9]


@pytest.mark.parametrize("reset, R, expected", [
    ("zero", 0, [0, 1, 1, 1, 0, 1, 0]),
    ("zero", 1, [0, 1, 0, 1, 0, 0, 1]),
    ("subtract", 1, [0, 1, 0, 1, 0, 1, 0]),
    ("zero", 2, [0, 1, 0, 0, 0, 1, 0]),
])
def test_refractory_spike_trains_match_hand_computed(reset, R, expected):
  I = jnp.asarray(_REFR_INPUT, jnp.float32)[:, None]
  s, v = neurons.lif_scan(I, beta=1.0, threshold=1.0, reset=reset,
                          refractory_steps=R)
  np.testing.assert_array_equal(s[:, 0], expected)
  if (reset, R) == ("subtract", 1):  # membrane held while refractory
    np.testing.assert_allclose(v[:, 0], [0.6, 0.2, 0.2, 1.2, 1.2, 1.1, 1.1],
                               rtol=1e-6)
  # The per-step contract of the layer gives the same train.
  from scnn_jax import nn
  lif = nn.LIF(beta=1.0, threshold=1.0, reset=reset, refractory_steps=R)
  state, out = lif.init_state((1,)), []
  for t in range(len(_REFR_INPUT)):
    state, s_t = lif.step(state, I[t])
    out.append(float(s_t[0]))
  assert out == expected


def test_refractory_caps_the_rate_and_chunks_continue():
  I = np.random.default_rng(0).uniform(1.0, 4.0, (24, 64)).astype(np.float32)
  s0, _ = neurons.lif_scan(I, beta=0.9, threshold=1.0, reset="zero")
  s1, _ = neurons.lif_scan(I, beta=0.9, threshold=1.0, reset="zero",
                           refractory_steps=1)
  assert float(s0.mean()) == 1.0                 # I >= threshold: every step
  assert float(s1.mean()) == 0.5                 # every other step
  assert not np.any(s1[1:] * s1[:-1])            # never two spikes in a row
  kw = dict(beta=0.9, threshold=1.0, reset="zero", refractory_steps=2)
  whole, _ = neurons.lif_scan(I, **kw)
  a, state = neurons.lif_scan(I[:5], return_final_state=True, **kw)
  b, _ = neurons.lif_scan(I[5:], v0=state, return_final_state=True, **kw)
  np.testing.assert_array_equal(np.concatenate([a, b]), whole)


def test_refractory_steps_must_be_a_nonnegative_int():
  for bad in (-1, 1.0, True):
    with pytest.raises(ValueError, match="refractory_steps must be an int >= 0"):
      neurons.lif_scan(jnp.zeros((2, 3)), beta=0.9, refractory_steps=bad)


def test_lif_row_equals_alif_frozen_at_init_with_half_the_atan_alpha():
  # docs/studies/paper_b.md's LIF row: v = 0.5 v + I, threshold 1 is ALIF
  # (tau 2, threshold 0.5) with the membrane doubled. The surrogate then sees
  # 2 (h - 0.5); ATan alpha 1 on it gives ALIF's alpha-2 input gradient
  # exactly, alpha 2 does not (half the width, twice the peak).
  x = jnp.asarray(_currents((8, 300), scale=0.8))
  w = jnp.asarray(np.random.default_rng(1).normal(size=(8, 300)), jnp.float32)
  alif = lambda x: neurons.alif_scan(x, tau=2.0, threshold=0.5,  # noqa: E731
                                     surrogate="atan", surrogate_param=2.0)[0]
  lif = lambda x, p: neurons.lif_scan(  # noqa: E731
      x, beta=0.5, threshold=1.0, reset="zero", surrogate="atan",
      surrogate_param=p, detach_reset=True)[0]
  np.testing.assert_array_equal(alif(x), lif(x, 1.0))
  g_alif = jax.grad(lambda x: jnp.sum(w * alif(x)))(x)
  g_lif = jax.grad(lambda x: jnp.sum(w * lif(x, 1.0)))(x)
  np.testing.assert_allclose(g_lif, g_alif, rtol=1e-5, atol=1e-6)
  g_lif2 = jax.grad(lambda x: jnp.sum(w * lif(x, 2.0)))(x)
  assert float(jnp.max(jnp.abs(g_lif2 - g_alif))) > 0.1
