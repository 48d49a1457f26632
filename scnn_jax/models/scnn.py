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
from scnn_jax.models.specs import OpCount, conv3x3, field

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


def bytes_per_pixel(width: int, T: int) -> int:
  """Estimated peak activation memory of the forward pass per pixel (bytes):
  ``4 * width * (3 * T + 4)`` (T = 1 for the CNN), float32 maps, ~3 alive
  per time step in the spiking layer plus a few for the convs. Conservative:
  XLA's compiled memory analysis on CPU gives 1152 B/px for the base SC-NN
  (width 32, T 8; estimate 3584), 256 for the CNN (estimate 896), 12800 for
  width 64, T 16 (estimate 13312) and 511 for the shipped spiking U-Net
  (width 16, T 4; estimate 1024)."""
  return 4 * int(width) * (3 * int(T) + 4)


class StrideOne:
  """What the stride-1 inpainting nets declare about themselves
  (``scnn_jax/models/__init__.py``): every layer a 3x3 conv, so an output
  pixel sees ``num_layers`` px on each side; global only through a TAID
  decoder."""

  @property
  def receptive_radius(self) -> int:
    return self.num_layers * (3 // 2)

  @property
  def global_receptive_field(self) -> str | None:
    return getattr(getattr(self, "decoder", None), "global_receptive_field",
                   None)

  @property
  def bytes_per_pixel(self) -> int:
    return bytes_per_pixel(self.width, self.T)


def input_layer(m, input_rate):
  """How the first conv sees the image: once (direct encoding), or at each
  of the T steps on the spikes of a rate-encoded input."""
  if field(m, "encoder", "direct") != "rate":
    return dict(steps=1)
  if input_rate is None:
    raise ValueError("energy: model.encoder='rate' needs input_rate (the "
                     "mean firing probability of the encoded input)")
  return dict(in_is_spikes=True, rate=input_rate, steps=field(m, "T", 1))


def layout(m, image_shape):
  """``((H, W), input channels, output channels, per-layer widths)``."""
  h, w, c = image_shape
  cin = c + (1 if field(m, "mask_channel", True) else 0)
  widths = [field(m, "width")] * (field(m, "num_layers") - 1) + [c]
  return (h, w), cin, c, widths


def scnn_layer_specs(m, image_shape, input_rate: float | None = None):
  """``(LayerSpec list, OpCount list)`` of one ``(H, W, C)`` image through
  the SC-NN (``models.specs``): the spiking layer's conv on the image (once
  when direct-encoded), the next conv on its spikes at each of the T steps,
  the others once; one MAC per neuron and step for the neuron updates.
  ``input_rate``: the mean firing probability of a rate-encoded input."""
  hw, cin, _, outs = layout(m, image_shape)
  width, T = field(m, "width"), field(m, "T", 1)
  specs = [conv3x3("spiking", cin, width, hw, **input_layer(m, input_rate)),
           conv3x3("conv1", width, outs[1], hw, in_is_spikes=True,
                   rate_key="spiking/neuron", steps=T)]
  specs += [conv3x3(f"conv{i}", width, outs[i], hw)
            for i in range(2, len(outs))]
  neurons = float(hw[0] * hw[1] * width * T)
  return specs, [OpCount("neurons", macs=neurons, ann_macs=0.0)]


def cnn_layer_specs(m, image_shape, input_rate: float | None = None):
  """``(LayerSpec list, OpCount list)`` of the CNN: every conv once."""
  del input_rate   # the CNN reads the image itself
  hw, cin, _, outs = layout(m, image_shape)
  specs = [conv3x3(f"conv{i}", cin if i == 0 else field(m, "width"), outs[i],
                   hw) for i in range(len(outs))]
  return specs, [OpCount("neurons", macs=0.0, ann_macs=0.0)]


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


class SCNN(StrideOne, nnx.Module):
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
    self.width, self.T, self.num_layers = width, T, num_layers

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


class CNN(StrideOne, nnx.Module):
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
    self.width, self.T, self.num_layers = width, 1, num_layers

  def __call__(self, x, *, rngs=None, example_ids=None):
    del rngs, example_ids
    with jax.named_scope("first"):
      h = jax.nn.relu(self.first(x))
    return _head(self.convs, h, self.output_activation)
