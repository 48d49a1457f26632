"""Tasks the trainer can run, by ``config.task``."""

from __future__ import annotations

from scnn_jax.config_lib import check_choice
from scnn_jax.tasks.base import Task
from scnn_jax.tasks.classify import ClassifyTask
from scnn_jax.tasks.generate import FadAutoencoderTask, GenerateTask
from scnn_jax.tasks.inpaint import InpaintTask

TASKS: dict[str, type[Task]] = {"inpaint": InpaintTask}
TASKS["classify"] = ClassifyTask
TASKS.update(generate=GenerateTask, fad_autoencoder=FadAutoencoderTask)


def get(config) -> Task:
  check_choice("task", config.task, TASKS)
  return TASKS[config.task](config)
