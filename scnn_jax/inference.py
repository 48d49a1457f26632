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

from scnn_jax import optim, tasks
from scnn_jax.checkpoint import Checkpointer, abstract_like


@dataclasses.dataclass
class Loaded:
  model: nnx.Module          # eval mode
  config: ml_collections.ConfigDict
  task: tasks.Task
  step: int
  state: dict                # the full restored train state


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


def load(workdir, step: int | None = None) -> Loaded:
  """The model of ``workdir`` at ``step`` (default: the latest checkpoint)."""
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
  state, graphs = trainer.create_state(config, task, data_spec(config), tx)
  state, _ = ckpt.restore(abstract_like(state), step)
  ckpt.close()
  model = nnx.merge(graphs.eval, state["params"], state["rest"])
  return Loaded(model=model, config=config, task=task,
                step=int(jax.device_get(state["step"])), state=state)
