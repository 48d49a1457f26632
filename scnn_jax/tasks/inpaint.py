"""Image inpainting (paper A): restore the hole pixels of a masked image.

Batch: ``image`` [B, H, W, C] in [0, 1], ``mask`` [B, H, W, 1] with 1 = hole
(the task's data transform, ``masks.HoleMasks``), ``valid`` [B] (0
marks padding rows of the last eval batch). The model sees the masked image
(holes set to 0) plus, unless ``model.mask_channel`` is False (paper A), the
mask as an extra channel (``models.scnn.masked_input``). Models:
``models.registry`` (``scnn``, ``cnn``, ``spiking_decoder``,
``spiking_unet``). The loss (``train.loss``) is the MSE over the hole
pixels of the batch (``"mse"``, ``metrics.masked_se_sums``) or a mean over
images of a per-image hole loss (``"image_mse"``, ``"log_mse"``:
``scnn_jax.metrics.losses``); metrics are computed on the composite (known
pixels from the input, hole pixels from the model). The eval results (and
the baselines') also hold ``loss``: that same loss over the whole eval set
(``EVAL_LOSS_KEYS``), comparable with the train records' ``loss``.
"""

from __future__ import annotations

from scnn_jax import metrics
from scnn_jax.data import masks
from scnn_jax.metrics import losses, spikes
from scnn_jax.models import registry
from scnn_jax.models import baselines as baselines_lib
from scnn_jax.models.scnn import masked_input
from scnn_jax.nn import encoders
from scnn_jax.tasks.base import Task

# train.loss -> the eval metric that is that loss over the eval set: pooled
# over all hole entries for "mse", a mean over images for the others.
EVAL_LOSS_KEYS = {"mse": "masked_mse", "image_mse": "image_mse",
                  "log_mse": "image_log_mse"}


class InpaintTask(Task):
  name = "inpaint"

  @classmethod
  def data_transform(cls, config):
    """The hole masks (``config.masks``), added as ``mask`` to every
    example."""
    return masks.HoleMasks.from_config(config)

  def __init__(self, config):
    self.mask_channel = config.model.mask_channel
    self.loss_kind = config.train.loss   # losses.INPAINT_LOSSES

  def inputs(self, batch):
    return masked_input(batch["image"], batch["mask"], self.mask_channel)

  def loss(self, model, batch, *, rngs, example_ids):
    pred = model(self.inputs(batch), rngs=rngs, example_ids=example_ids)
    if self.loss_kind in losses.PER_IMAGE:
      num, den = losses.PER_IMAGE[self.loss_kind](
          pred, batch["image"], batch["mask"], batch.get("valid"))
      return num, den, {}
    se, count = metrics.masked_se_sums(pred, batch["image"], batch["mask"],
                                       batch.get("valid"))
    return se, count, {}

  def predict(self, model, batch):
    pred = model(self.inputs(batch), rngs=encoders.eval_rngs())
    return {"pred": pred,
            "composite": metrics.composite(pred, batch["image"], batch["mask"])}

  def new_accumulator(self):
    return _WithLoss(EVAL_LOSS_KEYS[self.loss_kind])

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
    for name in baselines_lib.BASELINES:
      acc = self.new_accumulator()
      for b in eval_batches:
        pred = baselines_lib.baseline_predictions(name, b["image"], b["mask"])
        acc.update(pred, b["image"], b["mask"], b.get("valid"))
      out[name] = acc.result()
    return out

  def synaptic_ops(self, config, image_shape, rates):
    """SynOps per image of the net's own spikes, from the layer specs its
    model declares (``models.registry.layer_specs``: for the SC-NN the conv
    after the spiking layer runs on its spikes at each of the T steps; 0 for
    a model without spiking layers); None where the model declares none or
    a rate it needs was not measured. Input spikes of a rate-encoded image
    are the data's, not the net's: not counted (input rate 0)."""
    m = config.model
    if image_shape is None:
      return None
    described = registry.layer_specs(m, image_shape, input_rate=0.0)
    if described is None:
      return None
    specs, _ = described
    if not {s.rate_key for s in specs if s.rate_key} <= set(rates):
      return None
    return float(spikes.synaptic_ops(specs, rates, timesteps=m.T)["synops"])

  def summary_keys(self):
    keys = ("masked_mse", "full_mse", "psnr", "hole_psnr", "ssim")
    # With "mse" the loss is masked_mse itself: no second column for it.
    return keys if self.loss_kind == "mse" else keys + ("loss",)


class _WithLoss(metrics.InpaintingAccumulator):
  """``InpaintingAccumulator`` whose result also holds ``loss`` (the run's
  ``train.loss`` over the set: the metric ``key``)."""

  def __init__(self, key: str):
    self.loss_key = key
    super().__init__()

  def result(self):
    r = super().result()
    return {**r, "loss": r[self.loss_key]}
