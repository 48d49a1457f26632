"""Models by name: ``config.model`` -> an ``nnx.Module``, without the trainer.

    from scnn_jax.models import registry
    model = registry.build(config, (32, 32, 3), rngs=nnx.Rngs(params=0))

``config`` is a validated config (``scnn_jax.config.schema.validate``: every
field present, defaults filled). The model is chosen by ``(config.task,
config.model.name)``, as big_vision picks ``models/<name>.py``: the same
function serves training (``scnn_jax.runtime.state``), inference
(``scnn_jax.runtime.inference``) and library users. ``image_shape`` is ``(H, W,
C)`` of the data; ``num_classes`` the dataset's (classification only).

The model classes take explicit keyword arguments (library use); this module
is the one place that maps config fields onto them, so it also says what the
schema (``scnn_jax.config.schema``) needs to know per model: the
``config.model`` fields that only some models of a task read (``READS``,
asked through ``readers``), and the rules between fields that only some
models have (``CHECKS``, run by ``check``).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from flax import nnx

from scnn_jax import nn
from scnn_jax.models import (classifier, fad_autoencoder, resunet, scnn,
                             spiking_decoder, spiking_unet, vae)
from scnn_jax.ops.checks import ConfigError, check_choice, check_int
from scnn_jax.ops.collectives import AXIS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def neuron_kwargs(m) -> dict:
  """``config.model`` -> keyword arguments of its neuron (each neuron says
  which fields it reads: ``nn.neurons.config_kwargs``)."""
  return nn.neurons.config_kwargs(m)


def _noise(m) -> dict:
  return dict(noise_std=m.noise_std if m.noise_std > 0 else None,
              noise_mode=m.noise_mode, noise_resample=m.noise_resample)


def _inpaint_common(m, image_shape, rngs) -> tuple[int, int, dict]:
  channels = image_shape[-1]
  in_channels = channels + (1 if m.mask_channel else 0)
  common = dict(width=m.width, num_layers=m.num_layers,
                output_activation=m.output_activation,
                conv_impl=m.conv_impl, dtype=DTYPES[m.dtype], rngs=rngs)
  return in_channels, channels, common


def _scnn(config, image_shape, num_classes, rngs):
  m = config.model
  cin, cout, common = _inpaint_common(m, image_shape, rngs)
  neuron = m.neuron
  if m.neuron_solver == "staircase":
    neuron = nn.LIFStaircase(**neuron_kwargs(m))
  return scnn.SCNN(cin, cout, T=m.T, neuron=neuron,
                   neuron_kwargs=neuron_kwargs(m), encoder=m.encoder,
                   decoder=m.decoder, order=m.order, remat=m.remat,
                   **_noise(m), **common)


def _cnn(config, image_shape, num_classes, rngs):
  cin, cout, common = _inpaint_common(config.model, image_shape, rngs)
  return scnn.CNN(cin, cout, **common)


def _spiking_decoder(config, image_shape, num_classes, rngs):
  """Paper B's decoders on a spiking output sequence."""
  m = config.model
  cin, cout, common = _inpaint_common(m, image_shape, rngs)
  return spiking_decoder.SpikingDecoderSCNN(
      cin, cout, T=m.T, neuron=m.neuron, neuron_kwargs=neuron_kwargs(m),
      spiking_layers=m.spiking_layers, encoder=m.encoder, decoder=m.decoder,
      order=m.order, remat=m.remat, **_noise(m), **common)


def _spiking_unet(config, image_shape, num_classes, rngs):
  """The spiking U-Net on a JAX biharmonic prior (the earlier shipped model)."""
  m = config.model
  cin, cout, _ = _inpaint_common(m, image_shape, rngs)
  return spiking_unet.PriorSpikingUNet(
      cin, cout, width=m.width, depth=m.depth,
      bottleneck_layers=m.bottleneck_layers, T=m.T, neuron=m.neuron,
      neuron_kwargs=neuron_kwargs(m), prior_order=m.prior_order,
      prior_iters=m.prior_iters, conv_impl=m.conv_impl,
      dtype=DTYPES[m.dtype], rngs=rngs)


def _resunet(activation):
  """The residual U-Net on a JAX biharmonic prior: spiking or its ReLU twin."""
  def build(config, image_shape, num_classes, rngs):
    m = config.model
    cin, cout, _ = _inpaint_common(m, image_shape, rngs)
    return resunet.PriorResUNet(
        cin, cout, activation=activation, width=m.width, depth=m.depth,
        blocks=m.blocks, T=m.T, neuron=m.neuron,
        neuron_kwargs=neuron_kwargs(m), norm=m.get("norm", "layer"),
        prior_order=m.prior_order, prior_iters=m.prior_iters,
        conv_impl=m.conv_impl, dtype=DTYPES[m.dtype], rngs=rngs)
  return build


def _classifier(config, image_shape, num_classes, rngs):
  """Paper B's MNISTNet / Cifar10Net."""
  m = config.model
  k = m.num_classes or num_classes
  if not k:
    raise ConfigError("model.num_classes", None,
                      "must be set: the dataset has no class labels")
  if num_classes and k != num_classes:
    raise ConfigError("model.num_classes", k,
                      f"must match the dataset's {num_classes}")
  kwargs = neuron_kwargs(m)
  if m.neuron == "alif":
    kwargs.update(learn_tau=m.alif_learn_tau,
                  learn_threshold=m.alif_learn_threshold)
  return classifier.SpikingClassifier(
      image_shape, k, arch=m.name, width=m.width, fc_width=m.fc_width, T=m.T,
      neuron=m.neuron, neuron_kwargs=kwargs, vote_group=m.vote_group,
      pool=m.pool, dropout=m.dropout,
      input_mean=tuple(m.input_mean or (0.0,)),
      input_std=tuple(m.input_std or (1.0,)), conv_impl=m.conv_impl,
      dtype=DTYPES[m.dtype], bn_axis_name=AXIS, rngs=rngs)


def _svae(config, image_shape, num_classes, rngs):
  """Paper B's fully spiking VAE (FSVAE / ESVAE latents, TAID decoding)."""
  m = config.model
  return vae.SpikingVAE(
      tuple(image_shape), T=m.T, latent_dim=m.latent_dim,
      hidden=tuple(m.hidden), latent=m.latent, k=m.k,
      image_decoder=m.image_decoder, decay=m.decay, neuron=m.neuron,
      neuron_kwargs=neuron_kwargs(m), scheduled_sampling=m.scheduled_sampling,
      total_steps=config.train.steps, esvae_lambda=m.esvae_lambda,
      conv_impl=m.conv_impl, rngs=rngs)


def fad_hidden(config) -> tuple[int, ...]:
  """The FAD autoencoder's widths: ``model.hidden``, or FSVAE's for the size."""
  hidden = tuple(config.model.hidden)
  return hidden or fad_autoencoder.default_hidden(config.data.image_size)


def _fad_ae(config, image_shape, num_classes, rngs):
  m = config.model
  return fad_autoencoder.FadAutoencoder(
      tuple(image_shape), latent_dim=m.latent_dim, hidden=fad_hidden(config),
      conv_impl=m.conv_impl, rngs=rngs)


Builder = Callable[..., nnx.Module]
MODELS: dict[str, dict[str, Builder]] = {
    "inpaint": {"scnn": _scnn, "cnn": _cnn,
                "spiking_decoder": _spiking_decoder,
                "spiking_unet": _spiking_unet,
                "spiking_resunet": _resunet("spiking"),
                "relu_resunet": _resunet("relu")},
    "classify": {arch: _classifier for arch in classifier.ARCHITECTURES},
    "generate": {"svae": _svae},
    "fad_autoencoder": {"fad_ae": _fad_ae},
}
TASKS = tuple(MODELS)

# Fields of one model or a few: the schema fills them for these models only
# (and its config reference names these as their readers), so a config of
# another model is not padded with settings it never reads.
_ON_PRIOR = ("depth", "prior_order", "prior_iters")   # nets on smooth_fill
READS: dict[str, tuple[str, ...]] = {
    "scnn": ("neuron_solver",),
    "spiking_decoder": ("spiking_layers",),
    "spiking_unet": _ON_PRIOR + ("bottleneck_layers",),
    "spiking_resunet": _ON_PRIOR + ("blocks", "norm"),
    "relu_resunet": _ON_PRIOR + ("blocks", "norm"),
}


def _check_spiking_decoder(m):
  # Of num_layers convs the last is the output conv: 1 to num_layers - 1
  # hidden layers can spike (the model refuses the rest only once built).
  if m.spiking_layers is not None:
    check_int("model.spiking_layers", m.spiking_layers, 1, m.num_layers - 1)


def _check_on_prior(m):
  # The prior is solved inside the holes, and only the mask channel says
  # where they are.
  check_choice("model.mask_channel", m.mask_channel, (True,))


# Rules a model adds to the schema's, run on a validated ``config.model``
# (every field present); each raises ``ConfigError`` naming the field.
CHECKS: dict[str, Callable] = {
    "spiking_decoder": _check_spiking_decoder,
    "spiking_unet": _check_on_prior,
    "spiking_resunet": _check_on_prior,
    "relu_resunet": _check_on_prior,
}


def readers(field: str) -> tuple[str, ...]:
  """The models that list ``config.model.<field>`` in ``READS``, in
  ``MODELS`` order; () for a field the schema fills for every model of the
  tasks that read it."""
  return tuple(name for models in MODELS.values() for name in models
               if field in READS.get(name, ()))


def check(m) -> None:
  """Raises ``ConfigError`` if ``config.model`` breaks a rule of its model
  (``CHECKS``); the schema calls it once the fields are checked one by
  one."""
  rule = CHECKS.get(m.name)
  if rule is not None:
    rule(m)


def build(config, image_shape, num_classes: int | None = None, *,
          rngs: nnx.Rngs) -> nnx.Module:
  """The model of ``config`` for data of ``image_shape`` (train mode)."""
  return MODELS[config.task][config.model.name](config, tuple(image_shape),
                                                 num_classes, rngs)


def _field(m, key):
  # A ConfigDict or the plain dict of a run's config.json.
  try:
    return m[key]
  except KeyError:
    raise ValueError(f"model.{key} is missing from the config") from None


def _resunet_specs(activation):
  def specs(m, image_shape, input_rate=None):
    del input_rate   # the prior reads the image itself
    adaptive = (_field(m, "neuron") == "alif"
                and bool(_field(m, "adaptation_increment")))
    return resunet.layer_specs(
        image_shape, activation=activation,
        widths=resunet.widths(_field(m, "width"), _field(m, "depth")),
        blocks=_field(m, "blocks"), T=_field(m, "T"), adaptive=adaptive,
        norm=m.get("norm", "layer"), prior_order=_field(m, "prior_order"),
        prior_iters=_field(m, "prior_iters"))
  return specs


# Inpainting models that describe their own arithmetic
# (``scnn_jax.models.specs``; read by ``scnn_jax.metrics.energy`` and the
# inpaint task's SynOps).
LAYER_SPECS: dict[str, Callable] = {
    "scnn": scnn.scnn_layer_specs,
    "cnn": scnn.cnn_layer_specs,
    "spiking_decoder": spiking_decoder.layer_specs,
    "spiking_resunet": _resunet_specs("spiking"),
    "relu_resunet": _resunet_specs("relu"),
}


def layer_specs(m, image_shape, input_rate: float | None = None):
  """``(models.specs.LayerSpec list, models.specs.OpCount list)`` of one
  ``(H, W, C)`` image, from ``config.model`` alone (a ConfigDict or the
  dict of a run's config.json: no model is built), as the model's own
  ``layer_specs`` gives; None for a model not in ``LAYER_SPECS``.
  ``input_rate``: the mean firing probability of a rate-encoded input."""
  fn = LAYER_SPECS.get(_field(m, "name"))
  return None if fn is None else fn(m, tuple(int(x) for x in image_shape),
                                    input_rate)
