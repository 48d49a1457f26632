"""Image classification with paper B's spiking classifiers (``task="classify"``).

Batch (the data layer's): ``image`` [B, H, W, C] float32 in [0, 1], ``label``
[B] int32, ``valid`` [B] (0 marks padding rows of the last eval batch); the
``mask`` the data layer adds for inpainting is ignored.

The model (``scnn_jax.models.classifier.SpikingClassifier``) returns the firing
rate of each class's voting group, ``rate = spike count / T`` in [0, 1], shape
[B, K]. Losses (``config.model.loss``):

* ``"mse_count"`` (paper B): ``MSE(rate, one_hot(label))``, the mean over the
  B * K entries (PyTorch's ``F.mse_loss``);
* ``"cross_entropy"``: softmax cross-entropy with logits = spike count =
  ``T * rate`` (the count, not the rate: rates in [0, 1] make a nearly flat
  softmax), the mean over the batch.

Both are returned as LOCAL sums (numerator, denominator) so the trainer's
psum normalisation gives the global-batch loss on any device count. The
prediction is the class with the highest rate (ties: the lowest index, as
``argmax``); the metric is accuracy on the fixed eval set.

Training augmentation (``config.model.augment``), on device, drawn per example
from ``fold_in(key, example_id)`` so it does not depend on the device split:
``"none"``, ``"crop"`` (pad the [0, 1] image by ``augment_pad`` pixels of 0,
then crop a random window of the original size: torchvision's
``RandomCrop(size, padding)`` before ``Normalize``, as in paper B's code), or
``"crop_flip"`` (plus a random horizontal flip; paper B's CIFAR-10 recipe).
Paper B's MNIST recipe is a random affine (rotation 30 deg, translation 15 %,
scale 0.85-1.11); ``"crop"`` with pad 4 covers only its translation part.

Config fields (``config.model``), beyond the shared neuron fields checked by
``inpaint.validate_neuron``: ``name`` (mnistnet | cifar10net), ``width``,
``fc_width``, ``num_classes`` (also lets ``inference.load`` rebuild the model
without the dataset), ``vote_group``, ``pool`` (max | avg), ``dropout``,
``loss`` (mse_count | cross_entropy), ``input_mean`` / ``input_std`` (per
channel, applied inside the model), ``augment``, ``augment_pad``,
``alif_learn_tau`` / ``alif_learn_threshold`` (ALIF only; both False is a LIF
with paper B's dynamics, learn_tau alone is PLIF).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scnn_jax import parallel
from scnn_jax.config_lib import ConfigError, check_choice, check_int, check_number
from scnn_jax.models import classifier
from scnn_jax.tasks.base import Task
from scnn_jax.tasks.inpaint import DTYPES, validate_neuron
from scnn_jax.tasks.neuron_fields import neuron_kwargs

LOSSES = ("mse_count", "cross_entropy")
AUGMENTS = ("none", "crop", "crop_flip")
AUGMENT_STREAM = 7  # fold_in constant: augmentation keys apart from the model's


def _m(config, key, default):
  return config.model.get(key, default)


def class_loss_sums(rate, label, kind: str, T: int, valid=None):
  """``(numerator, denominator)`` of the loss over this batch's valid rows.

  ``rate`` [B, K] = spike count / T; ``label`` [B] int.
  """
  k = rate.shape[-1]
  valid = (jnp.ones(rate.shape[:1], rate.dtype) if valid is None
           else valid.astype(rate.dtype))
  onehot = jax.nn.one_hot(label, k, dtype=rate.dtype)
  if kind == "mse_count":
    per_example = jnp.sum((rate - onehot) ** 2, axis=-1)
    return jnp.sum(valid * per_example), jnp.sum(valid) * k
  if kind == "cross_entropy":
    logp = jax.nn.log_softmax(rate * T, axis=-1)
    per_example = -jnp.sum(onehot * logp, axis=-1)
    return jnp.sum(valid * per_example), jnp.sum(valid)
  raise ValueError(f"unknown loss {kind!r}; allowed: {', '.join(LOSSES)}")


def correct_sums(rate, label, valid=None):
  """``(number correct, number of valid rows)``."""
  valid = (jnp.ones(rate.shape[:1], jnp.float32) if valid is None
           else valid.astype(jnp.float32))
  hit = (jnp.argmax(rate, axis=-1) == label).astype(jnp.float32)
  return jnp.sum(valid * hit), jnp.sum(valid)


def augment(images, key, example_ids, kind: str, pad: int):
  """Random crop (zero padding) and optional flip of ``images [B, H, W, C]``.

  Example i's randomness comes from ``fold_in(key, example_ids[i])``.
  """
  if kind == "none":
    return images

  def one(img, i):
    k_crop, k_flip = jax.random.split(jax.random.fold_in(key, i))
    if pad:
      padded = jnp.pad(img, ((pad, pad), (pad, pad), (0, 0)))
      dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
      img = jax.lax.dynamic_slice(padded, (dy, dx, 0), img.shape)
    if kind == "crop_flip":
      img = jnp.where(jax.random.bernoulli(k_flip), img[:, ::-1], img)
    return img

  return jax.vmap(one)(images, jnp.asarray(example_ids))


class ClassificationAccumulator:
  """Host-side eval accumulator: accuracy (and the mean MSE-count loss)."""

  def __init__(self):
    self.correct = 0.0
    self.count = 0.0
    self.se = 0.0
    self.classes = None

  def update(self, rate, label, valid=None):
    rate, label = np.asarray(rate, np.float64), np.asarray(label)
    valid = np.ones(len(label)) if valid is None else np.asarray(valid, np.float64)
    k = rate.shape[-1]
    self.classes = k
    self.correct += float(np.sum(valid * (np.argmax(rate, -1) == label)))
    self.count += float(np.sum(valid))
    onehot = np.eye(k)[label]
    self.se += float(np.sum(valid[:, None] * (rate - onehot) ** 2))

  def result(self) -> dict[str, float]:
    if not self.count:
      return {"accuracy": float("nan"), "error": float("nan"),
              "mse_count": float("nan"), "num_examples": 0.0}
    acc = self.correct / self.count
    return {"accuracy": acc, "error": 1.0 - acc,
            "mse_count": self.se / (self.count * self.classes),
            "num_examples": self.count}


class ClassifyTask(Task):
  name = "classify"

  def __init__(self, config):
    self.loss_kind = _m(config, "loss", "mse_count")
    self.T = config.model.T
    self.augment_kind = _m(config, "augment", "none")
    self.augment_pad = _m(config, "augment_pad", 4)

  def validate(self, config) -> None:
    m = config.model
    check_choice("model.name", m.name, classifier.ARCHITECTURES)
    check_int("model.width", m.width, 1)
    check_int("model.fc_width", _m(config, "fc_width", 2048), 1)
    num_classes = _m(config, "num_classes", None)
    if num_classes is not None:
      check_int("model.num_classes", num_classes, 2)
    check_int("model.vote_group", _m(config, "vote_group", 10), 1)
    check_choice("model.pool", _m(config, "pool", "max"), classifier.POOLS)
    check_number("model.dropout", _m(config, "dropout", 0.5), low=0, high=1,
                 high_open=True)
    check_choice("model.loss", _m(config, "loss", "mse_count"), LOSSES)
    check_choice("model.augment", _m(config, "augment", "none"), AUGMENTS)
    check_int("model.augment_pad", _m(config, "augment_pad", 4), 0)
    channels = config.data.channels
    for field in ("input_mean", "input_std"):
      value = _m(config, field, None)
      if value is None:
        continue
      if (not isinstance(value, (tuple, list)) or
          len(value) not in (1, channels) or
          not all(isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"model.{field}", value,
                          f"must be a tuple of 1 or {channels} numbers")
    if any(v <= 0 for v in _m(config, "input_std", None) or ()):
      raise ConfigError("model.input_std", m.input_std, "must be > 0")
    for field in ("alif_learn_tau", "alif_learn_threshold"):
      if not isinstance(_m(config, field, True), bool):
        raise ConfigError(f"model.{field}", m[field], "must be True or False")
    validate_neuron(m)
    if m.noise_std:
      raise ConfigError("model.noise_std", m.noise_std,
                        "must be 0 for task=classify (paper B adds no noise)")
    if m.order != "fold":
      raise ConfigError("model.order", m.order,
                        "must be 'fold' for task=classify")

  def build_model(self, config, dataset, rngs):
    m = config.model
    num_classes = _m(config, "num_classes", None) or dataset.num_classes
    if not num_classes:
      raise ConfigError("model.num_classes", None,
                        "must be set: the dataset has no class labels")
    if dataset.num_classes and num_classes != dataset.num_classes:
      raise ConfigError("model.num_classes", num_classes,
                        f"must match the dataset's {dataset.num_classes}")
    kwargs = neuron_kwargs(m)
    if m.neuron == "alif":
      kwargs.update(learn_tau=_m(config, "alif_learn_tau", True),
                    learn_threshold=_m(config, "alif_learn_threshold", True))
    return classifier.SpikingClassifier(
        dataset.image_shape, num_classes, arch=m.name, width=m.width,
        fc_width=_m(config, "fc_width", 2048), T=m.T, neuron=m.neuron,
        neuron_kwargs=kwargs, vote_group=_m(config, "vote_group", 10),
        pool=_m(config, "pool", "max"), dropout=_m(config, "dropout", 0.5),
        input_mean=_m(config, "input_mean", None) or (0.0,),
        input_std=_m(config, "input_std", None) or (1.0,),
        conv_impl=m.conv_impl, dtype=DTYPES[m.dtype],
        bn_axis_name=parallel.AXIS, rngs=rngs)

  def loss(self, model, batch, *, rngs, example_ids):
    images = batch["image"]
    if self.augment_kind != "none":
      key = jax.random.fold_in(rngs.augment(), AUGMENT_STREAM)
      images = augment(images, key, example_ids, self.augment_kind,
                       self.augment_pad)
    rate = model(images, rngs=rngs, example_ids=example_ids)
    valid = batch.get("valid")
    num, den = class_loss_sums(rate, batch["label"], self.loss_kind, self.T,
                               valid)
    return num, den, {"accuracy": correct_sums(rate, batch["label"], valid)}

  def predict(self, model, batch):
    rate = model(batch["image"])
    return {"rate": rate, "pred": jnp.argmax(rate, axis=-1)}

  def new_accumulator(self):
    return ClassificationAccumulator()

  def accumulate(self, acc, host_batch, host_outputs):
    acc.update(host_outputs["rate"], host_batch["label"],
               host_batch.get("valid"))

  def summary_keys(self):
    return ("accuracy", "mse_count")
