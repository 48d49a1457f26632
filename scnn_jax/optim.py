"""Optax optimizer from a validated ``config.train`` (``scnn_jax.schema``:
``train.optimizer`` adam | adamw | sgd, ``train.schedule`` constant | cosine).

Paper A trains with Adam at a constant learning rate of 1e-3; warmup + cosine
decay and global-norm clipping are options.
"""

from __future__ import annotations

import optax

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
