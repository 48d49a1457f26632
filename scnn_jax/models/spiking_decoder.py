"""Inpainting with a spiking decoder path: the image is decoded from a sequence.

Paper A's SC-NN (``models.scnn.SCNN``) decodes the spikes of its one
spiking layer right away (rate: mean over T) and finishes with ordinary convs.
Paper B's question is how to turn a spiking network's output SEQUENCE into an
image: a fixed rule (rate; FSVAE's fixed decay ``sum_t 0.8^(T-1-t) X_t``) or
a learned temporal attention (TAID). This model keeps the time axis to the
end so that the decoder choice matters:

    x [B, H, W, C_in]
      -> encoder (direct: the same input at each step)     [T, B, H, W, C_in]
      -> ``spiking_layers`` SpikingConv2d (3x3 conv + LIF / ALIF) -> spikes
      -> the remaining hidden layers: 3x3 Conv2d + ReLU at every step
      -> last 3x3 Conv2d at every step: a REAL-VALUED sequence
                                                            [T, B, H, W, C_out]
      -> decoder (``nn.decoders``: rate | fixed_decay | taid | membrane)
      -> output activation (sigmoid: [0, 1] images)         [B, H, W, C_out]

TIME-MAJOR inside: every sequence is ``[T, B, H, W, C]``. All layers are 3x3,
stride 1 (paper A), so the net is ``num_layers`` convs deep, like the SCNN and
CNN of the same config; unlike them, every layer runs at each of the T steps.

The decoders end in the model's ``output_activation`` instead of their own
tanh: paper B's ``tanh(sum_t a_t X_t)`` maps to [-1, 1];
``sigmoid(z) = (tanh(z / 2) + 1) / 2`` is the same map rescaled to [0, 1]
images, and the factor 1/2 is absorbed by the last conv's weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.models.scnn import (OUTPUT_ACTIVATIONS, StrideOne, input_layer,
                                  layout)
from scnn_jax.models.specs import OpCount, conv3x3, field


def layer_specs(m, image_shape, input_rate: float | None = None):
  """``(LayerSpec list, OpCount list)`` of one ``(H, W, C)`` image
  (``models.specs``): every layer runs at each of the T steps, those after
  a spiking layer on its spikes; neuron updates and the time decoder (one
  MAC per output value and step: a weighted sum over T) as one count."""
  hw, cin, c, outs = layout(m, image_shape)
  width, T = field(m, "width"), field(m, "T", 1)
  n_spiking = field(m, "spiking_layers", None) or len(outs) - 1
  specs = []
  for i in range(len(outs)):
    if i == 0:
      kw = input_layer(m, input_rate)
    elif i <= n_spiking:           # fed by spiking layer i - 1
      kw = dict(in_is_spikes=True, rate_key=f"spiking/{i - 1}/neuron",
                steps=T)
    else:                          # ReLU conv on real values, every step
      kw = dict(steps=T)
    specs.append(conv3x3(f"layer{i}", cin if i == 0 else width, outs[i], hw,
                         **kw))
  h, w = hw
  updates = float(h * w * width * T * n_spiking) + float(h * w * c * T)
  return specs, [OpCount("neurons", macs=updates, ann_macs=0.0)]


class SpikingDecoderSCNN(StrideOne, nnx.Module):
  """Spiking inpainting net whose output sequence goes through a decoder.

  Args:
    in_channels, out_channels: image (+ mask) channels in, image channels out.
    width: hidden channels; num_layers: convs in total (>= 2).
    spiking_layers: how many of the ``num_layers - 1`` hidden layers are
      spiking (from the input side); default all of them.
    T, neuron, neuron_kwargs, noise_std, noise_mode, noise_resample,
      encoder, order, conv_impl, remat, dtype: as ``models.scnn.SCNN``
      (each spiking layer has its own neuron parameters and training noise;
      ``noise_resample=None`` keeps ``SpikingConv2d``'s default).
    decoder: ``scnn_jax.nn.decoders.DECODERS`` name (TAID's T x T matrix is a
      trained ``nnx.Param``).
  """

  def __init__(self, in_channels, out_channels, *, width=32, T=8,
               num_layers=6, spiking_layers=None, neuron="lif",
               neuron_kwargs=None, noise_std=None,
               noise_mode="multiplicative", noise_resample=None,
               encoder="direct", decoder="taid",
               output_activation="sigmoid", order="fold", conv_impl="auto",
               remat=False, dtype=None, rngs: nnx.Rngs):
    if num_layers < 2:
      raise ValueError(f"num_layers must be >= 2, got {num_layers}")
    spiking_layers = (num_layers - 1 if spiking_layers is None
                      else spiking_layers)
    if not 1 <= spiking_layers <= num_layers - 1:
      raise ValueError(f"spiking_layers must be in [1, {num_layers - 1}], "
                       f"got {spiking_layers}")
    self.encoder = nn.make_encoder(encoder, T)
    noise = dict(noise_std=noise_std, noise_mode=noise_mode)
    if noise_resample is not None:   # SpikingConv2d's default otherwise
      noise["noise_resample"] = noise_resample
    spiking, convs = [], []
    for i in range(num_layers - 1):
      cin = in_channels if i == 0 else width
      if i < spiking_layers:
        spiking.append(nn.SpikingConv2d(
            cin, width, 3, neuron=neuron, neuron_kwargs=neuron_kwargs,
            order=order, conv_impl=conv_impl, remat=remat, dtype=dtype,
            rngs=rngs, **noise))
      else:
        convs.append(nn.Conv2d(cin, width, 3, impl=conv_impl, dtype=dtype,
                               rngs=rngs))
    self.spiking = nnx.List(spiking)
    self.convs = nnx.List(convs)
    self.last = nn.Conv2d(width, out_channels, 3, impl=conv_impl,
                          dtype=dtype, rngs=rngs)
    self.decoder = nn.make_decoder(decoder, T, rngs=rngs)
    self.output_activation = output_activation
    self.width, self.T, self.num_layers = width, T, num_layers

  def sequence(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    """The real-valued output sequence ``[T, B, H, W, C_out]`` (pre-decoder)."""
    h = self.encoder(x, rngs=rngs)
    for layer in self.spiking:
      h = layer(h, rngs=rngs, example_ids=example_ids)
    for conv in self.convs:
      h = jax.nn.relu(conv(h))
    return self.last(h)

  def __call__(self, x, *, rngs: nnx.Rngs | None = None, example_ids=None):
    with jax.named_scope("spiking"):
      seq = self.sequence(x, rngs=rngs, example_ids=example_ids)
    with jax.named_scope("decode"):
      return OUTPUT_ACTIVATIONS[self.output_activation](
          self.decoder(seq.astype(jnp.float32)))
