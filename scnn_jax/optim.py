"""Optax optimizer from ``config.train``.

Paper A trains with Adam at a constant learning rate of 1e-3; warmup + cosine
decay and global-norm clipping are options.
"""

from __future__ import annotations

import optax

from scnn_jax.config_lib import check_choice, check_int, check_number

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def validate(train) -> None:
  check_choice("train.optimizer", train.optimizer, OPTIMIZERS)
  check_choice("train.schedule", train.schedule, SCHEDULES)
  check_number("train.learning_rate", train.learning_rate, low=0, low_open=True)
  check_int("train.warmup_steps", train.warmup_steps, 0)
  check_number("train.grad_clip", train.grad_clip, low=0)
  check_number("train.weight_decay", train.weight_decay, low=0)


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


def build(train) -> optax.GradientTransformation:
  """``train.optimizer`` with the schedule, preceded by clipping if > 0."""
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
