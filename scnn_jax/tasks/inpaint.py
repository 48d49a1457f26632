"""Image inpainting (paper A): restore the hole pixels of a masked image.

Batch: ``image`` [B, H, W, C] in [0, 1], ``mask`` [B, H, W, 1] with 1 = hole,
``valid`` [B] (0 marks padding rows of the last eval batch). The model sees
the masked image (holes set to 0) plus, unless ``model.mask_channel`` is
False (paper A), the mask as an extra channel. The loss is the MSE over hole
pixels (``metrics.masked_se_sums``); metrics are computed on the composite
(known pixels from the input, hole pixels from the model).
"""

from __future__ import annotations

import jax.numpy as jnp

from scnn_jax import conv as conv_lib
from scnn_jax import inpaint_losses
from scnn_jax import decoders, encoders, layers, metrics, staircase
from scnn_jax.config_lib import (ConfigError, check_choice, check_int,
                                 check_number)
from scnn_jax.models import inpainting, spiking_inpainting, spiking_unet
from scnn_jax.tasks import neuron_fields
from scnn_jax.tasks.base import Task
from scnn_jax.tasks.neuron_fields import neuron_kwargs

MODELS = ("scnn", "cnn", "spiking_decoder", "spiking_unet")
NEURON_SOLVERS = ("scan", "staircase")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def validate_neuron(m, prefix="model") -> None:
  """Checks the neuron fields shared by every spiking model config."""
  check_int(f"{prefix}.T", m.T, 1)
  neuron_fields.validate(m, prefix)
  check_number(f"{prefix}.noise_std", m.noise_std, low=0)
  check_choice(f"{prefix}.noise_mode", m.noise_mode, layers.NOISE_MODES)
  check_choice(f"{prefix}.noise_resample", _noise_resample(m),
               layers.NOISE_RESAMPLE)
  check_choice(f"{prefix}.order", m.order, layers.ORDERS)
  check_choice(f"{prefix}.conv_impl", m.conv_impl, conv_lib.IMPL_CHOICES)
  check_choice(f"{prefix}.dtype", m.dtype, DTYPES)


def _noise_resample(m) -> str:
  # Workdirs written before the field existed were trained with fresh noise
  # at every step.
  return m.get("noise_resample", "step")


def _validate_staircase(m) -> None:
  """The closed form (``scnn_jax.staircase``) is exact only for paper A's
  SC-NN with a current constant over T, from rest, reset to zero."""
  check_choice("model.neuron_solver", m.neuron_solver, NEURON_SOLVERS)
  need = "for model.neuron_solver='staircase' (closed form: input constant " \
         "over T)"
  if m.name != "scnn":
    raise ConfigError("model.name", m.name, f"must be 'scnn' {need}")
  if m.neuron != "lif":
    raise ConfigError("model.neuron", m.neuron, f"must be 'lif' {need}")
  if m.reset != "zero":
    raise ConfigError("model.reset", m.reset, f"must be 'zero' {need}")
  if m.encoder != "direct":
    raise ConfigError("model.encoder", m.encoder, f"must be 'direct' {need}")
  if m.noise_std > 0 and _noise_resample(m) != "sequence":
    raise ConfigError("model.noise_resample", _noise_resample(m),
                      f"must be 'sequence' (or model.noise_std 0) {need}")


class InpaintTask(Task):
  name = "inpaint"

  def __init__(self, config):
    self.mask_channel = config.model.mask_channel
    self.loss_kind = config.train.get("loss", "mse")   # inpaint_losses.LOSSES

  def validate(self, config) -> None:
    m = config.model
    check_choice("model.name", m.name, MODELS)
    check_int("model.width", m.width, 1)
    check_int("model.num_layers", m.num_layers, 2)
    check_choice("model.output_activation", m.output_activation,
                 inpainting.OUTPUT_ACTIVATIONS)
    check_choice("model.encoder", m.encoder, encoders.ENCODERS)
    check_choice("model.decoder", m.decoder, decoders.DECODERS)
    validate_neuron(m)
    check_choice("train.loss", config.train.get("loss", "mse"),
                 inpaint_losses.LOSSES)
    if m.get("neuron_solver", "scan") != "scan":
      _validate_staircase(m)
    if m.name == "spiking_decoder":
      spiking_inpainting.validate(m)
    if m.name == "spiking_unet":
      spiking_unet.validate(m)
      # Its prior needs the mask as an input channel.
      check_choice("model.mask_channel", m.mask_channel, (True,))

  def build_model(self, config, dataset, rngs):
    m = config.model
    channels = dataset.image_shape[-1]
    in_channels = channels + (1 if m.mask_channel else 0)
    common = dict(width=m.width, num_layers=m.num_layers,
                  output_activation=m.output_activation,
                  conv_impl=m.conv_impl, dtype=DTYPES[m.dtype], rngs=rngs)
    if m.name == "cnn":
      return inpainting.CNN(in_channels, channels, **common)
    if m.name == "spiking_unet":   # issue 18: spiking U-Net on a JAX prior
      return spiking_unet.PriorSpikingUNet(
          in_channels, channels, width=m.width, depth=m.depth,
          bottleneck_layers=m.bottleneck_layers, T=m.T, neuron=m.neuron,
          neuron_kwargs=neuron_kwargs(m), prior_order=m.prior_order,
          prior_iters=m.prior_iters, conv_impl=m.conv_impl,
          dtype=DTYPES[m.dtype], rngs=rngs)
    if m.name == "spiking_decoder":   # paper B's decoders on a spiking output
      return spiking_inpainting.SpikingDecoderSCNN(
          in_channels, channels, T=m.T, neuron=m.neuron,
          neuron_kwargs=neuron_kwargs(m),
          spiking_layers=m.get("spiking_layers", None),
          noise_std=m.noise_std if m.noise_std > 0 else None,
          noise_mode=m.noise_mode, noise_resample=_noise_resample(m),
        encoder=m.encoder, decoder=m.decoder,
          order=m.order, remat=m.remat, **common)
    neuron = m.neuron
    if m.get("neuron_solver", "scan") == "staircase":
      neuron = staircase.LIFStaircase(**neuron_kwargs(m))
    return inpainting.SCNN(
        in_channels, channels, T=m.T, neuron=neuron,
        neuron_kwargs=neuron_kwargs(m),
        noise_std=m.noise_std if m.noise_std > 0 else None,
        noise_mode=m.noise_mode, noise_resample=_noise_resample(m),
        encoder=m.encoder, decoder=m.decoder,
        order=m.order, remat=m.remat, **common)

  def inputs(self, batch):
    masked = batch["image"] * (1.0 - batch["mask"])
    if self.mask_channel:
      return jnp.concatenate([masked, batch["mask"]], axis=-1)
    return masked

  def loss(self, model, batch, *, rngs, example_ids):
    pred = model(self.inputs(batch), rngs=rngs, example_ids=example_ids)
    if self.loss_kind == "log_mse":   # per-image log hole MSE (issue 18)
      num, den = inpaint_losses.log_mse_sums(
          pred, batch["image"], batch["mask"], batch.get("valid"))
      return num, den, {}
    se, count = metrics.masked_se_sums(pred, batch["image"], batch["mask"],
                                       batch.get("valid"))
    return se, count, {}

  def predict(self, model, batch):
    pred = model(self.inputs(batch))
    return {"pred": pred,
            "composite": metrics.composite(pred, batch["image"], batch["mask"])}

  def new_accumulator(self):
    return metrics.InpaintingAccumulator()

  def accumulate(self, acc, host_batch, host_outputs):
    acc.update(host_outputs["pred"], host_batch["image"], host_batch["mask"],
               host_batch.get("valid"))

  def samples(self, host_batch, host_outputs, n):
    image, mask = host_batch["image"][:n], host_batch["mask"][:n]
    masked = image * (1.0 - mask) + mask * 0.5  # holes shown grey
    return [masked, host_outputs["pred"][:n], host_outputs["composite"][:n],
            image]

  def baselines(self, eval_batches):
    out = {}
    for name in ("mean_fill", "biharmonic"):
      acc = metrics.InpaintingAccumulator()
      for b in eval_batches:
        pred = metrics.baseline_predictions(name, b["image"], b["mask"])
        acc.update(pred, b["image"], b["mask"], b.get("valid"))
      out[name] = acc.result()
    return out

  def synaptic_ops(self, config, image_shape, rates):
    """SynOps per image of the SC-NN's event-driven part.

    The conv after the spiking layer is linear, so on event-driven hardware
    it runs on the spikes themselves (T steps, one accumulate per spike and
    synapse) and the rate decoder after it: that layer counts as SynOps, the
    spiking layer's own conv (real-valued image input) and the later convs
    as MACs (``metrics.synaptic_ops``).
    """
    m = config.model
    if m.name != "scnn" or image_shape is None:
      return None
    h, w, c = image_shape
    cin = c + (1 if m.mask_channel else 0)
    shape = lambda ch: (h, w, ch)
    specs = [metrics.LayerSpec("spiking", "conv", shape(cin), shape(m.width),
                               (3, 3), steps=m.T),
             metrics.LayerSpec("conv1", "conv", shape(m.width),
                               shape(m.width if m.num_layers > 2 else c),
                               (3, 3), in_is_spikes=True,
                               rate_key="spiking/neuron", steps=m.T)]
    if "spiking/neuron" not in rates:
      return None
    return float(metrics.synaptic_ops(specs, rates, timesteps=m.T)["synops"])

  def summary_keys(self):
    return ("masked_mse", "full_mse", "psnr", "hole_psnr", "ssim")
