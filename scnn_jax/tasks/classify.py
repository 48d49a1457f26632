"""Image classification with paper B's spiking classifiers (``task="classify"``).

Batch (the data layer's): ``image`` [B, H, W, C] float32 in [0, 1], ``label``
[B] int32, ``valid`` [B] (0 marks padding rows of the last eval batch).

The model (``scnn_jax.models.classifier.SpikingClassifier``) returns the firing
rate of each class's voting group, ``rate = spike count / T`` in [0, 1], shape
[B, K]. Losses (``config.model.loss``):

* ``"mse_count"`` (paper B): ``MSE(rate, one_hot(label))``, the mean over the
  B * K entries (PyTorch's ``F.mse_loss``);
* ``"cross_entropy"``: softmax cross-entropy with logits = spike count =
  ``T * rate`` (the count, not the rate: rates in [0, 1] make a nearly flat
  softmax), the mean over the batch.

Both are returned as LOCAL sums (numerator, denominator;
``metrics.losses.class_loss_sums``) so the step's psum normalisation gives
the global-batch loss on any device count. The
prediction is the class with the highest rate (ties: the lowest index, as
``argmax``); the metric is accuracy on the fixed eval set.

Training augmentation (``config.model.augment``: none | crop | crop_flip,
``scnn_jax.data.augment``) runs on device, drawn per example from
``fold_in(key, example_id)`` so it does not depend on the device split.

Config fields (``config.model``; types and defaults in
``scnn_jax.config.schema``): ``name`` (mnistnet | cifar10net), ``width``,
``fc_width``, ``num_classes`` (also lets ``inference.load`` rebuild the model
without the dataset), ``vote_group``, ``pool`` (max | avg), ``dropout``,
``loss`` (mse_count | cross_entropy), ``input_mean`` / ``input_std`` (per
channel, applied inside the model), ``augment``, ``augment_pad``,
``alif_learn_tau`` / ``alif_learn_threshold`` (ALIF only; both False is a LIF
with paper B's dynamics, learn_tau alone is PLIF), and the neuron fields.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scnn_jax.data.augment import augment
from scnn_jax.metrics.losses import class_loss_sums, correct_sums
from scnn_jax.tasks.base import Task

AUGMENT_STREAM = 7  # fold_in constant: augmentation keys apart from the model's


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
    m = config.model
    self.loss_kind, self.T = m.loss, m.T
    self.augment_kind, self.augment_pad = m.augment, m.augment_pad

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
