"""The contract between the generic training loop and a task (inpaint,
classify, generate, fad_autoencoder).

The loop owns the run, sharding, checkpoints and files; the model comes from
``scnn_jax.models.registry`` by name and the config is checked by
``scnn_jax.config.schema``. A task owns what is specific to its job: the loss,
the predictions and the metrics. The model-facing methods (``loss``,
``predict``) run INSIDE the jitted per-device step (``scnn_jax.runtime.steps``)
on this device's rows of the batch; they must be pure JAX.
"""

from __future__ import annotations

import abc
from typing import Any

from flax import nnx


class Task(abc.ABC):
  """Built once per run as ``TaskClass(config)`` (a validated config)."""
  name: str = ""

  def __init__(self, config):
    del config

  @classmethod
  def data_transform(cls, config):
    """What this task adds to every example of its dataset: an object with
    ``train`` / ``eval`` (``scnn_jax/data/pipeline.py``), or None for plain
    images and labels. A classmethod: the data is opened before (and
    without) the task."""
    del config
    return None

  @abc.abstractmethod
  def loss(self, model: nnx.Module, batch: dict, *, rngs: nnx.Rngs,
           example_ids):
    """Training loss as LOCAL sums: ``(numerator, denominator, aux)``.

    The step divides ``numerator`` by the ``denominator`` summed over all
    devices, so the result equals the single-device loss of the global batch.
    ``aux`` maps metric names to ``(numerator, denominator)`` pairs treated
    the same way.
    """

  @abc.abstractmethod
  def predict(self, model: nnx.Module, batch: dict) -> dict[str, Any]:
    """Deterministic eval outputs, each with the batch on axis 0."""

  @abc.abstractmethod
  def new_accumulator(self):
    """A host-side metric accumulator with ``result() -> dict``."""

  @abc.abstractmethod
  def accumulate(self, acc, host_batch: dict, host_outputs: dict) -> None:
    """Adds one eval batch (numpy, whole global batch) to ``acc``."""

  def samples(self, host_batch: dict, host_outputs: dict, n: int):
    """Rows of images ``[n, H, W, C]`` for the sample grid, or None."""
    return None

  def baselines(self, eval_batches: list[dict]) -> dict[str, dict]:
    """Non-learned baselines scored on the same eval set (name -> metrics)."""
    return {}

  def synaptic_ops(self, config, image_shape, rates: dict) -> float | None:
    """Estimated synaptic operations per image (``metrics.synaptic_ops``)."""
    return None

  def summary_keys(self) -> tuple[str, ...]:
    """Eval metrics shown in progress lines and results.md, in order."""
    return ()
