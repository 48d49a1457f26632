"""Tasks the training loop can run, by ``config.task``."""

from __future__ import annotations

from scnn_jax.tasks.base import Task
from scnn_jax.tasks.classify import ClassifyTask
from scnn_jax.tasks.generate import FadAutoencoderTask, GenerateTask
from scnn_jax.tasks.inpaint import InpaintTask

TASKS: dict[str, type[Task]] = {
    "inpaint": InpaintTask, "classify": ClassifyTask,
    "generate": GenerateTask, "fad_autoencoder": FadAutoencoderTask,
}


def get(config) -> Task:
  """The task of a validated ``config`` (``scnn_jax.config.schema``)."""
  return TASKS[config.task](config)
