"""Load a trained model from a workdir: its config.json and latest checkpoint.

    from scnn_jax import inference
    loaded = inference.load("runs/base")
    restored = loaded.model(inputs)       # eval mode (no training noise)

Needs nothing but the workdir: the config that trained it is read back from
``config.json``, and no dataset is opened (the input shape comes from the
config).
"""

from __future__ import annotations

import dataclasses
import json
import types

import jax
import ml_collections
from etils import epath
from flax import nnx

from scnn_jax import ablation, optim, tasks
from scnn_jax.checkpoint import Checkpointer, abstract_like


class PointError(ValueError):
  """``point`` does not fit the workdir (ablation or single model)."""


@dataclasses.dataclass
class Loaded:
  model: nnx.Module          # eval mode
  config: ml_collections.ConfigDict  # of the model (an ablation point's own)
  task: tasks.Task
  step: int
  state: dict                # the restored train state (of the point)
  point: int | None = None   # ablation point index, None for single runs
  point_name: str | None = None


def read_config(workdir) -> ml_collections.ConfigDict:
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(
        f"{path} not found: is {workdir} a scnn_jax workdir (made by "
        f"train.py)?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def data_spec(config):
  """What building a model needs to know about the data, without loading it."""
  d = config.data
  return types.SimpleNamespace(
      image_shape=(d.image_size, d.image_size, d.channels),
      num_classes=config.model.get("num_classes"))


def load(workdir, step: int | None = None, point: int | None = None) -> Loaded:
  """The model of ``workdir`` at ``step`` (default: the latest checkpoint).

  An ablation workdir (``config.ablation`` grid) holds K models stacked on a
  leading axis: ``point=k`` picks one; single-model workdirs take no point.
  """
  from scnn_jax import trainer  # trainer imports the data stack: keep lazy
  config = read_config(workdir)
  task = tasks.get(config)
  ckpt_dir = epath.Path(workdir) / "checkpoints"
  ckpt = Checkpointer(ckpt_dir, keep=config.train.keep_checkpoints)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(
        f"no checkpoint in {ckpt_dir}: train first (python train.py "
        f"--config ... --workdir {workdir})")
  tx = optim.build(config.train)
  points = None
  if ablation.enabled(config):
    points, state, graphs = ablation.create_stacked_state(
        config, task, data_spec(config), tx, trainer.create_state)
    K = len(points)
    if point is None:
      raise PointError(f"{workdir} holds an ablation of {K} models: pick one "
                       f"with point k (0..{K - 1})")
    if not 0 <= point < K:
      raise PointError(f"point {point}: this ablation has {K} points "
                       f"(0..{K - 1})")
  else:
    if point is not None:
      raise PointError(f"{workdir} holds a single model (its config has no "
                       "ablation grid): give no point")
    state, graphs = trainer.create_state(config, task, data_spec(config), tx)
  state, _ = ckpt.restore(abstract_like(state), step)
  ckpt.close()
  name = None
  if points is not None:
    state, config, name = (ablation.unstack(state, point),
                           points[point].config, points[point].name)
  model = nnx.merge(graphs.eval, state["params"], state["rest"])
  return Loaded(model=model, config=config, task=task,
                step=int(jax.device_get(state["step"])), state=state,
                point=point, point_name=name)
