"""Tasks the training loop can run, by ``config.task``.

A task owns its loss, predictions and metrics (``base.Task``) and the
transform its data needs (``Task.data_transform``): ``dataset(config)`` is
a config's data as its task sees it.
"""

from __future__ import annotations

from scnn_jax import data
from scnn_jax.tasks.base import Task
from scnn_jax.tasks.classify import ClassifyTask
from scnn_jax.tasks.generate import FadAutoencoderTask, GenerateTask
from scnn_jax.tasks.inpaint import InpaintTask

TASKS: dict[str, type[Task]] = {
    "inpaint": InpaintTask, "classify": ClassifyTask,
    "generate": GenerateTask, "fad_autoencoder": FadAutoencoderTask,
}


def dataset(config) -> data.Dataset:
  """The dataset of a validated ``config`` with its task's transform
  (inpainting: the hole masks)."""
  return data.build(config, TASKS[config.task].data_transform(config))


def get(config) -> Task:
  """The task of a validated ``config`` (``scnn_jax.config.schema``)."""
  return TASKS[config.task](config)
