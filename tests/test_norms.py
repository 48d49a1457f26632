"""scnn_jax.nn.norms: the one BatchNorm (tdBN over time, batch and space;
PyTorch's and Flax's running-variance conventions), and nn.conv's
PyTorch-style transposed conv."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scnn_jax import nn


def test_transposed_conv_matches_pytorch_definition():
  """out[o] = sum over o = 2 i - 1 + k of x[i] W[k] (PyTorch ConvTranspose2d
  with stride 2, padding 1, output padding 1; W = kernel flipped), in both
  formulations."""
  rngs = nnx.Rngs(0)
  phase = nn.ConvTranspose2d(3, 5, strides=2, padding=1, output_padding=1,
                              rngs=rngs)
  dilated = nn.ConvTranspose2d(3, 5, strides=2, padding=1, output_padding=1,
                                impl="dilated", rngs=rngs)
  dilated.kernel[...] = phase.kernel[...]
  x = np.random.default_rng(1).normal(size=(2, 3, 4, 3)).astype(np.float32)
  w = np.asarray(phase.kernel[...])[::-1, ::-1]
  want = np.zeros((2, 6, 8, 5))
  for i in range(3):
    for j in range(4):
      for a in range(3):
        for b in range(3):
          oh, ow = 2 * i - 1 + a, 2 * j - 1 + b
          if 0 <= oh < 6 and 0 <= ow < 8:
            want[:, oh, ow] += x[:, i, j] @ w[a, b]
  for layer in (phase, dilated):
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), want,
                               atol=1e-5)


def test_tdbn_normalises_over_time_batch_space_and_tracks_running_stats():
  bn = nn.BatchNorm(2, gain=0.4, axis_name=None)
  x = np.random.default_rng(0).normal(3.0, 2.0, (4, 5, 3, 3, 2))
  y = np.asarray(bn(jnp.asarray(x, jnp.float32)))
  np.testing.assert_allclose(y.mean((0, 1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std((0, 1, 2, 3)), 0.4, rtol=1e-3)
  n = x[..., 0].size
  np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * x.mean((0, 1, 2, 3)),
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(bn.var[...]),
                             0.9 + 0.1 * x.var((0, 1, 2, 3)) * n / (n - 1),
                             rtol=1e-5)


def test_flax_convention_tracks_the_biased_variance():
  """running_var="biased" (the classifier) moves the running variance to the
  batch's biased variance, as nnx.BatchNorm does; training statistics are
  the batch's either way."""
  x = np.random.default_rng(1).normal(-1.0, 3.0, (6, 4, 4, 3))
  biased = nn.BatchNorm(3, momentum=0.1, running_var="biased",
                        axis_name=None)
  y = np.asarray(biased(jnp.asarray(x, jnp.float32)))
  np.testing.assert_allclose(np.asarray(biased.var[...]),
                             0.9 + 0.1 * x.var((0, 1, 2)), rtol=1e-5)
  flax_bn = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
  want = np.asarray(flax_bn(jnp.asarray(x, jnp.float32)))
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(biased.var[...]),
                             np.asarray(flax_bn.var[...]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(biased.mean[...]),
                             np.asarray(flax_bn.mean[...]), rtol=1e-5,
                             atol=1e-7)
  biased.use_running_average = True          # eval: the running statistics
  np.testing.assert_allclose(
      np.asarray(biased(jnp.asarray(x, jnp.float32))),
      (x - np.asarray(biased.mean[...])) / np.sqrt(
          np.asarray(biased.var[...]) + 1e-5), rtol=1e-4, atol=1e-5)
