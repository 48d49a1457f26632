"""FSVAE's plain conv autoencoder, whose latent codes define FAD.

FAD (paper B / FSVAE) = the Frechet distance between Gaussian fits of the
latent codes this autoencoder, trained with MSE on the same dataset, gives to
two image sets (``scnn_jax.metrics.frechet``). The net is FSVAE's
``ann_ae.AE`` (public code): per hidden width a 3x3 stride-2 conv (padding 1)
-> BatchNorm -> LeakyReLU (32/64/128/256; CelebA 64x64 adds 512) down to
2x2, a linear layer to the latent code (64 for MNIST-like data, 128
otherwise), and the mirrored decoder (linear, 3x3 stride-2 transposed convs
-> BN -> LeakyReLU, a last transposed conv to the image channels, tanh). It
works on [-1, 1] images like FSVAE; the API takes [0, 1] images.

Trained by ``python -m scnn_jax.fad`` (``task = "fad_autoencoder"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.models.blocks import check_image_size
from scnn_jax.nn.conv import ConvTranspose2d
from scnn_jax.nn.init import dense, lecun_normal_np
from scnn_jax.nn.norms import BatchNorm


def default_hidden(image_size: int) -> tuple[int, ...]:
  """FSVAE's widths: (32, 64, 128, 256), plus 512 per doubling beyond 32 px."""
  hidden = [32, 64, 128, 256]
  size = 32
  while size < image_size:
    hidden.append(hidden[-1] * 2)
    size *= 2
  while size > image_size and len(hidden) > 1:
    hidden.pop()
    size //= 2
  return tuple(hidden)


class FadAutoencoder(nnx.Module):
  """FSVAE's plain conv autoencoder (see the module docstring).

  ``image_shape`` ``(H, W, C)`` with H = W = ``2 * 2**len(hidden)``.
  """

  def __init__(self, image_shape, *, latent_dim=64, hidden=(32, 64, 128, 256),
               negative_slope=0.01, conv_impl="auto", rngs: nnx.Rngs):
    h, w, c = image_shape
    hidden = tuple(hidden)
    check_image_size(h, w, hidden)
    self.image_shape = (h, w, c)
    self.hidden = hidden
    self.latent_dim = latent_dim
    self.negative_slope = negative_slope
    convs, norms, cin = [], [], c
    for width in hidden:
      convs.append(nn.Conv2d(cin, width, 3, strides=2,
                             padding=((1, 1), (1, 1)), impl=conv_impl,
                             kernel_init=lecun_normal_np, rngs=rngs))
      norms.append(BatchNorm(width))
      cin = width
    self.enc_convs, self.enc_norms = nnx.List(convs), nnx.List(norms)
    flat = hidden[-1] * 4
    self.to_latent = dense(flat, latent_dim, rngs)
    self.from_latent = dense(latent_dim, flat, rngs)
    rev = hidden[::-1]
    ups, unorms = [], []
    for din, dout in list(zip(rev[:-1], rev[1:])) + [(rev[-1], rev[-1])]:
      ups.append(ConvTranspose2d(din, dout, strides=2, padding=1,
                                 output_padding=1, rngs=rngs))
      unorms.append(BatchNorm(dout))
    self.dec_convs, self.dec_norms = nnx.List(ups), nnx.List(unorms)
    self.final = ConvTranspose2d(rev[-1], c, strides=1, padding=1, rngs=rngs)

  def _act(self, x):
    return jax.nn.leaky_relu(x, self.negative_slope)

  def encode(self, images):
    """Latent codes ``[B, latent_dim]`` of images ``[B, H, W, C]`` in [0, 1]."""
    x = images * 2.0 - 1.0
    for conv, norm in zip(self.enc_convs, self.enc_norms):
      x = self._act(norm(conv(x)))
    return self.to_latent(x.reshape(x.shape[0], -1))

  def decode_pm1(self, z):
    """Latent codes -> images in [-1, 1] (tanh)."""
    x = self.from_latent(z).reshape((z.shape[0], 2, 2, self.hidden[-1]))
    for conv, norm in zip(self.dec_convs, self.dec_norms):
      x = self._act(norm(conv(x)))
    return jnp.tanh(self.final(x))

  def __call__(self, images):
    """Reconstructions in [0, 1] of images in [0, 1]."""
    return (self.decode_pm1(self.encode(images)) + 1.0) / 2.0
