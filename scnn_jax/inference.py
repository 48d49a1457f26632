"""Load a trained model from a workdir: its config.json and latest checkpoint.

    from scnn_jax import inference
    loaded = inference.load("runs/base")
    restored = loaded.model(inputs)       # eval mode (no training noise)

Needs nothing but the workdir: the config that trained it is read back from
``config.json`` (fields it lacks because it is older than they are get their
defaults, ``schema.complete``), the model is built from it by name
(``models.registry``; no trainer, optimizer, task or dataset), and only the
model's part of the checkpoint (``state.MODEL_KEYS``: parameters and other
model variables) is restored, with Orbax opened READ-ONLY: a workdir that is
still training, even in the middle of a checkpoint save, is left untouched.
A checkpoint that holds a moving average of the weights (``train.ema_decay``,
``scnn_jax.state``) loads the average, as the run evaluated it; one without
(EMA off, or older) loads its params.

A model can also be shipped as its trained parameters alone (no optimizer
state, no Orbax): ``export_params(loaded, folder)`` writes ``config.json``
and ``params.npz`` (one array per ``nnx.Param``, keyed by its path), and
``load_params(folder)`` rebuilds the model from them. ``scnn_jax.pretrained``
ships one such folder inside the package.
"""

from __future__ import annotations

import dataclasses
import io
import json

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from scnn_jax import builders, schema, state as state_lib, sweep
from scnn_jax.builders import data_spec  # noqa: F401  (what a model needs)
from scnn_jax.checkpoint import Checkpointer, abstract_like


class PointError(ValueError):
  """``point`` does not fit the workdir (ablation or single model)."""


@dataclasses.dataclass
class Loaded:
  model: nnx.Module          # eval mode
  config: ml_collections.ConfigDict  # of the model (an ablation point's own)
  step: int
  state: dict                # the restored params / rest / step (of the point)
  point: int | None = None   # ablation point index, None for single runs
  point_name: str | None = None
  ema: bool = False          # state["params"] is the weights' moving average


def read_config(workdir) -> ml_collections.ConfigDict:
  """``<workdir>/config.json``, completed with the schema's defaults."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(
        f"{path} not found: is {workdir} a scnn_jax workdir (made by "
        f"train.py)?")
  return schema.complete(json.loads(path.read_text()))


def _checked(config):
  # Values only: the files a run needed and its device count do not matter
  # for rebuilding the model.
  return schema.validate(config, devices=1, check_files=False)


def load(workdir, step: int | None = None, point: int | None = None) -> Loaded:
  """The model of ``workdir`` at ``step`` (default: the latest checkpoint).

  An ablation workdir (``config.ablation`` grid) holds K models stacked on a
  leading axis: ``point=k`` picks one; single-model workdirs take no point.
  The model's weights are the checkpoint's ``ema`` when it has one.
  """
  config = _checked(read_config(workdir))
  ckpt_dir = epath.Path(workdir) / "checkpoints"
  if not ckpt_dir.exists():
    raise FileNotFoundError(
        f"no checkpoint in {ckpt_dir}: train first (python train.py "
        f"--config ... --workdir {workdir})")
  ckpt = Checkpointer(ckpt_dir, read_only=True)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(
        f"no checkpoint in {ckpt_dir}: train first (python train.py "
        f"--config ... --workdir {workdir})")
  spec = builders.data_spec(config)
  keys = ckpt.state_keys(step)
  # What the checkpoint holds decides, not config.json: a run that turned
  # EMA on when resumed rewrote config.json before its first save with one.
  ema = (state_lib.EMA_KEY in keys) if keys is not None else (
      state_lib.uses_ema(config))
  points = None
  if sweep.enabled(config):
    points = sweep.points(config)
    K = len(points)
    if point is None:
      raise PointError(f"{workdir} holds an ablation of {K} models: pick one "
                       f"with point k (0..{K - 1})")
    if not 0 <= point < K:
      raise PointError(f"point {point}: this ablation has {K} points "
                       f"(0..{K - 1})")
    state, graphs = sweep.stacked_model_state(points, spec, ema)
  else:
    if point is not None:
      raise PointError(f"{workdir} holds a single model (its config has no "
                       "ablation grid): give no point")
    graphs, state = state_lib.model_state(builders.model(config, spec), ema)
  state, _ = ckpt.restore(abstract_like(state), step, partial=True)
  ckpt.close()
  if ema:   # the average takes the params' place (state.eval_params)
    state = {"step": state["step"], "params": state[state_lib.EMA_KEY],
             "rest": state["rest"]}
  name = None
  if points is not None:
    state, config, name = (sweep.unstack(state, point),
                           points[point].config, points[point].name)
  model = nnx.merge(graphs.eval, state["params"], state["rest"])
  return Loaded(model=model, config=config,
                step=int(jax.device_get(state["step"])), state=state,
                point=point, point_name=name, ema=ema)


PARAMS_FILE = "params.npz"


def _param_key(path) -> str:
  return "/".join(str(p) for p in path)


def export_params(loaded: Loaded, folder) -> dict:
  """Writes ``config.json`` and ``params.npz`` (float32 ``nnx.Param``s only)
  of a loaded model to ``folder``; returns ``{key: shape}``."""
  folder = epath.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  params = nnx.state(loaded.model, nnx.Param)
  arrays = {_param_key(path): np.asarray(v[...], np.float32)
            for path, v in nnx.to_flat_state(params)}
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  (folder / PARAMS_FILE).write_bytes(buf.getvalue())
  (folder / "config.json").write_text(
      loaded.config.to_json_best_effort(indent=2) + "\n")
  return {k: a.shape for k, a in arrays.items()}


def load_params(folder, *, step: int = 0) -> Loaded:
  """The model of an ``export_params`` folder, in eval mode.

  Raises ``FileNotFoundError`` naming a missing file and ``ValueError`` when
  ``params.npz`` does not fit the model its ``config.json`` builds.
  """
  folder = epath.Path(folder)
  config = read_config(folder)
  path = folder / PARAMS_FILE
  if not path.exists():
    raise FileNotFoundError(f"{path} not found")
  with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
    arrays = {k: npz[k] for k in npz.files}
  model = builders.model(_checked(config), seed=0)
  params = nnx.state(model, nnx.Param)
  flat = list(nnx.to_flat_state(params))
  want = {_param_key(p) for p, _ in flat}
  if want != set(arrays):
    missing, extra = sorted(want - set(arrays)), sorted(set(arrays) - want)
    raise ValueError(f"{path} does not fit the model of its config.json: "
                     f"missing {missing[:3]}, unexpected {extra[:3]}")
  for p, var in flat:
    a = arrays[_param_key(p)]
    if a.shape != var[...].shape:
      raise ValueError(f"{path}: {_param_key(p)} has shape {a.shape}, the "
                       f"model needs {var[...].shape}")
    var[...] = jax.numpy.asarray(a, var[...].dtype)
  nnx.update(model, params)
  model.eval()
  return Loaded(model=model, config=config, step=step,
                state={"params": params})
