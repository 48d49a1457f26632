import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scnn_jax.ops import surrogate

# The derivatives of the issue, written independently of the library.
ANALYTIC = {
    "fast_sigmoid": lambda x, p: 1.0 / (1.0 + p * np.abs(x)) ** 2,
    "atan": lambda x, p: p / (2.0 * (1.0 + (math.pi / 2.0 * p * x) ** 2)),
    "sigmoid": lambda x, p: p * (1 / (1 + np.exp(-p * x))) * (1 - 1 / (1 + np.exp(-p * x))),
    "triangle": lambda x, p: np.maximum(0.0, 1.0 - np.abs(x) / p) / p,
    "rectangular": lambda x, p: (np.abs(x) < p / 2.0) / p,
}


def test_forward_is_heaviside_with_zero_firing():
  x = jnp.array([-2.0, -1e-7, 0.0, 1e-7, 3.0])
  for kind in surrogate.KINDS:
    np.testing.assert_array_equal(surrogate.spike(x, kind), [0, 0, 1, 1, 1])


@pytest.mark.parametrize("kind", surrogate.KINDS)
@pytest.mark.parametrize("param", [None, 0.7, 3.0])
def test_gradient_is_the_analytic_derivative(kind, param):
  x = np.linspace(-2.0, 2.0, 41).astype(np.float32) + 0.013  # avoid box edges
  p = surrogate.DEFAULT_PARAM[kind] if param is None else param
  grad = jax.vmap(jax.grad(lambda v: surrogate.spike(v, kind, param)))(x)
  np.testing.assert_allclose(grad, ANALYTIC[kind](x.astype(np.float64), p),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", surrogate.KINDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_finite_everywhere(kind, dtype):
  big = float(jnp.finfo(dtype).max)
  x = jnp.array([-big, -1e30, -1e4, -1.0, 0.0, 1e-30, 1.0, 1e4, 1e30, big],
                dtype)
  for param in [None, 1e-3, 1e3]:
    y, g = jax.vmap(jax.value_and_grad(
        lambda v: surrogate.spike(v, kind, param)))(x)
    assert y.dtype == dtype and g.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(g))), (kind, dtype, param, g)


def test_param_may_be_traced_swept_and_has_zero_gradient():
  x = jnp.linspace(-1, 1, 9)
  slopes = jnp.array([1.0, 5.0, 25.0])
  grads = jax.vmap(lambda p: jax.grad(
      lambda v: surrogate.spike(v, "fast_sigmoid", p).sum())(x))(slopes)
  for p, g in zip(slopes, grads):
    np.testing.assert_allclose(g, ANALYTIC["fast_sigmoid"](np.asarray(x), float(p)),
                               rtol=1e-6)
  dparam = jax.grad(lambda p: surrogate.spike(x, "atan", p).sum())(2.0)
  assert float(dparam) == 0.0
  # A per-element param broadcast against x.
  per = jnp.linspace(0.5, 3.0, 9)
  g = jax.grad(lambda v: surrogate.spike(v, "triangle", per).sum())(x)
  np.testing.assert_allclose(g, ANALYTIC["triangle"](np.asarray(x), np.asarray(per)),
                             rtol=1e-6)


def test_errors_name_the_allowed_values():
  with pytest.raises(ValueError, match="unknown surrogate kind 'relu'.*atan"):
    surrogate.spike(jnp.zeros(3), "relu")
  with pytest.raises(TypeError, match="floating-point"):
    surrogate.spike(jnp.zeros(3, jnp.int32))
