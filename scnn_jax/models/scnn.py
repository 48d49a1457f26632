"""Paper A's SC-NN and its same-size CNN baseline (inpainting networks).

Both map an input ``[B, H, W, C_in]`` (the masked image, plus the mask as an
extra channel unless disabled) to a restored image ``[B, H, W, C_out]`` in
[0, 1]. Every conv is 3x3, stride 1, padding 1 (paper A, Fig. 1): the spatial
size never changes, so any image size works, but the receptive field of six
layers is only 13 px: hole pixels further than 6 px from any known pixel see no
context.

Inside the SC-NN, the spiking layer runs over a TIME-MAJOR sequence
``[T, B, H, W, C]``; a decoder (default: rate, the mean over T) turns its spike
train back into one feature map for the five ordinary convs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn

OUTPUT_ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "clip": lambda x: jnp.clip(x, 0.0, 1.0),
}


def masked_input(image, mask, mask_channel: bool = True):
  """The inpainting models' input: the image with its holes set to 0, and
  (``mask_channel``, default; paper A: False) the mask as an extra channel.

  ``image`` ``[B, H, W, C]`` in [0, 1], ``mask`` ``[B, H, W, 1]`` (1 = hole)
  -> ``[B, H, W, C (+ 1)]``.
  """
  masked = image * (1.0 - mask)
  if mask_channel:
    return jnp.concatenate([masked, mask], axis=-1)
  return masked


def _conv_stack(width, out_channels, n, impl, dtype, rngs):
  convs = [nn.Conv2d(width, width, 3, impl=impl, dtype=dtype, rngs=rngs)
           for _ in range(n - 1)]
  convs.append(nn.Conv2d(width, out_channels, 3, impl=impl, dtype=dtype,
                         rngs=rngs))
  return nnx.List(convs)


def _head(convs, h, output_activation):
  # Named scopes label the ops in profiles (README, "Profiling").
  with jax.named_scope("head"):
    for conv in convs[:-1]:
      h = jax.nn.relu(conv(h))
    return OUTPUT_ACTIVATIONS[output_activation](
        convs[-1](h).astype(jnp.float32))


class SCNN(nnx.Module):
  """Paper A: one SpikingConv2d (conv + LIF) then ``num_layers - 1`` Conv2d.

  ``x [B, H, W, C_in]`` is encoded to ``[T, B, H, W, C_in]`` (direct: the
  same image at every step, which the spiking layer convolves only once),
  the spiking layer emits ``[T, B, H, W, width]``
  spikes, the decoder reduces them over T, and ReLU convs follow; the last
  conv has ``output_activation`` (sigmoid: paper A's ReLU output is not
  bounded to [0, 1]).
  """

  def __init__(self, in_channels, out_channels, *, width=32, T=8,
               num_layers=6, neuron="lif", neuron_kwargs=None,
               noise_std=0.1, noise_mode="multiplicative",
               noise_resample="sequence", encoder="direct",
               decoder="rate", output_activation="sigmoid", order="fold",
               conv_impl="auto", remat=False, dtype=None, rngs: nnx.Rngs):
    self.encoder = nn.make_encoder(encoder, T)
    self.spiking = nn.SpikingConv2d(
        in_channels, width, 3, neuron=neuron, neuron_kwargs=neuron_kwargs,
        noise_std=noise_std, noise_mode=noise_mode,
        noise_resample=noise_resample, order=order,
        conv_impl=conv_impl, remat=remat, dtype=dtype, rngs=rngs)
    self.decoder = nn.make_decoder(decoder, T, rngs=rngs)
    self.convs = _conv_stack(width, out_channels, num_layers - 1, conv_impl,
                             dtype, rngs)
    self.output_activation = output_activation

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    if isinstance(self.encoder, nn.DirectEncoder):
      # The same image at every step: the spiking layer convolves it once.
      with jax.named_scope("spiking"):
        spikes = self.spiking(x, T=self.encoder.T, rngs=rngs,
                              example_ids=example_ids)
    else:
      with jax.named_scope("encode"):
        x = self.encoder(x, rngs=rngs)
      with jax.named_scope("spiking"):
        spikes = self.spiking(x, rngs=rngs, example_ids=example_ids)
    with jax.named_scope("decode"):
      h = self.decoder(spikes)
    return _head(self.convs, h, self.output_activation)


class CNN(nnx.Module):
  """The baseline: the same network with the spiking layer a Conv2d + ReLU."""

  def __init__(self, in_channels, out_channels, *, width=32, num_layers=6,
               output_activation="sigmoid", conv_impl="auto", dtype=None,
               rngs: nnx.Rngs, **unused_spiking_options):
    del unused_spiking_options  # same config as SCNN; the rest is spiking-only
    self.first = nn.Conv2d(in_channels, width, 3, impl=conv_impl,
                           dtype=dtype, rngs=rngs)
    self.convs = _conv_stack(width, out_channels, num_layers - 1,
                             conv_impl, dtype, rngs)
    self.output_activation = output_activation

  def __call__(self, x, *, rngs=None, example_ids=None):
    del rngs, example_ids
    with jax.named_scope("first"):
      h = jax.nn.relu(self.first(x))
    return _head(self.convs, h, self.output_activation)
