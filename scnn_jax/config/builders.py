"""Config -> the objects a run is made of: data spec, model, optimizer.

Every function takes a validated config (``scnn_jax.config.schema.validate``)
and reads its fields directly. Models come from ``scnn_jax.models.registry`` by
name, so building one needs no trainer, task or dataset:

    spec = builders.data_spec(config)          # image shape, classes: no I/O
    model = builders.model(config, spec)       # train mode
    tx = builders.optimizer(config)

The dataset comes with its task's transform: ``scnn_jax.tasks.dataset``.
"""

from __future__ import annotations

import dataclasses

import optax
from flax import nnx

from scnn_jax.models import registry


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What building a model needs to know about the data."""
  image_shape: tuple[int, int, int]
  num_classes: int | None = None


def data_spec(config) -> DataSpec:
  """The data's shape from the config alone (no dataset is opened)."""
  d = config.data
  return DataSpec((d.image_size, d.image_size, d.channels),
                  config.model.get("num_classes"))


def init_seed(config) -> int:
  """The parameter-init seed: ``init_seed`` if set, else ``seed``."""
  return config.seed if config.init_seed is None else config.init_seed


def model(config, spec=None, *, seed: int | None = None) -> nnx.Module:
  """The model of ``config`` (train mode), initialised from ``seed``
  (default ``init_seed(config)``). ``spec``: a ``DataSpec`` or a dataset
  (``image_shape``, ``num_classes``); default ``data_spec(config)``."""
  spec = data_spec(config) if spec is None else spec
  seed = init_seed(config) if seed is None else seed
  return registry.build(config, spec.image_shape, spec.num_classes,
                        rngs=nnx.Rngs(params=seed))


def learning_rate(train):
  """The schedule: linear warmup, then constant or cosine decay to 0."""
  lr, warmup = train.learning_rate, train.warmup_steps
  if train.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup,
        decay_steps=max(train.steps, warmup + 1))
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
        [warmup])
  return lr


def optimizer(config) -> optax.GradientTransformation:
  """``config.train``'s optax optimizer: ``train.optimizer`` (adam | adamw |
  sgd; paper A: Adam at a constant 1e-3) with the schedule
  (``learning_rate``: constant or cosine, after a linear warmup), preceded
  by global-norm clipping if ``train.grad_clip`` > 0."""
  train = config.train
  lr = learning_rate(train)
  if train.optimizer == "adam":
    tx = optax.adam(lr)
  elif train.optimizer == "adamw":
    tx = optax.adamw(lr, weight_decay=train.weight_decay)
  else:
    tx = optax.sgd(lr, momentum=0.9)
  if train.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(train.grad_clip), tx)
  return tx

