"""Shared by the tests: a tiny inpainting config and workdirs made without
training (config.json + a checkpoint, as train.py leaves them)."""

from pathlib import Path

import jax
import numpy as np
from flax import nnx

from configs import base
from scnn_jax.config import builders, schema
from scnn_jax.runtime import ablation, state
from scnn_jax.runtime.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]


def tiny_config():
  """configs/base.py at 16x16 px, width 8, T = 4, 6 steps of batch 8."""
  c = base.get_config()
  c.model.width, c.model.T = 8, 4
  c.data.image_size, c.data.num_eval = 16, 24
  c.train.update(steps=6, batch_size=8, eval_batch_size=16, log_every=2,
                 eval_every=3, checkpoint_every=3, num_sample_images=4)
  return c


def hole_batches(n, b, hw, hole, seed=0):
  """``n`` inpainting batches of ``b`` uniform-noise ``hw`` x ``hw`` images,
  every image with the same hole ``hole = (rows, cols)`` (two slices)."""
  rng = np.random.default_rng(seed)
  for _ in range(n):
    mask = np.zeros((b, hw, hw, 1), np.float32)
    mask[(slice(None),) + hole] = 1.0
    yield {"image": rng.uniform(size=(b, hw, hw, 3)).astype(np.float32),
           "mask": mask, "valid": np.ones((b,), np.float32)}


def make_workdir(path, config, step=5, nudge_rest=False):
  """A workdir as train.py leaves it (config.json + an Orbax checkpoint of
  the train state), without the cost of training: the weights are the
  initial ones, with biases nudged so every layer matters (an ``ema``, with
  ``train.ema_decay``, stays at the init; ``nudge_rest``: the batch
  statistics too). An ablation config gets its
  stacked state. Returns ``(path, state)``."""
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  config = schema.validate(config)
  (path / "config.json").write_text(config.to_json_best_effort(indent=2))
  tx = builders.optimizer(config)
  if ablation.enabled(config):
    s, _ = ablation.create_stacked_state(ablation.points(config),
                                         builders.data_spec(config), tx)
  else:
    s, _ = state.create_state(builders.model(config), tx,
                              state.uses_ema(config))
  s["params"] = jax.tree.map(lambda x: x + 0.05, s["params"])
  if nudge_rest:      # batch statistics that differ from their init
    s["rest"] = nnx.from_flat_state([
        (p, v.replace(v[...] + 0.25) if isinstance(v, nnx.BatchStat) else v)
        for p, v in nnx.to_flat_state(s["rest"])])
  s["step"] = s["step"] + step
  ckpt = Checkpointer(path / "checkpoints")
  ckpt.save(step, s, force=True)
  ckpt.wait()
  ckpt.close()
  return path, s
