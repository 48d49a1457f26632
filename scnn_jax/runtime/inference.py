"""Load a trained model from a workdir: its config.json and latest checkpoint.

    from scnn_jax.runtime import inference
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
``scnn_jax.runtime.state``) loads the average, as the run evaluated it; one
without (EMA off, or older) loads its params.

A model can also be shipped as its trained parameters alone (no optimizer
state, no Orbax): ``export_params(loaded, folder)`` writes ``config.json``
and ``params.safetensors`` (one float32 array per ``nnx.Param``, keyed by its
path; safetensors holds raw arrays and a JSON header, so reading one runs no
code, unlike a pickle), and ``load_params(folder)`` rebuilds the model from
them; folders exported before safetensors hold ``params.npz`` (the same
arrays and keys), which ``load_params`` still reads. ``scnn_jax.pretrained``
ships one such folder inside the package.

Neither loader initialises weights that the file then overwrites: the model
is built abstractly (traced, as ``nnx.eval_shape`` does: shapes only), so
loading costs the reading of the file, not an eager initialisation of every
layer (seconds for the U-Nets on a CPU). ``load`` restores every variable
from the checkpoint; ``load_params`` computes the ones that are not trained
parameters (neuron constants such as LIF's beta, ``variables.NeuronParam``)
from the config (``abstract_model``).
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

from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors, save as save_safetensors

from scnn_jax import __version__
from scnn_jax.config import builders, schema
# What building a model needs to know of the data, for readers of workdirs.
from scnn_jax.config.builders import data_spec  # noqa: F401
from scnn_jax.data.images import first_line
from scnn_jax.runtime import state as state_lib


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
  return schema.complete(json.loads(path.read_text()), written=True)


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
  # Orbax and the sweep machinery: imported here, so that loading a shipped
  # model (load_params) does not pay for them.
  from scnn_jax.runtime import ablation
  from scnn_jax.runtime.checkpoint import Checkpointer
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
  if ablation.enabled(config):
    points = ablation.points(config)
    K = len(points)
    if point is None:
      raise PointError(f"{workdir} holds an ablation of {K} models: pick one "
                       f"with point k (0..{K - 1})")
    if not 0 <= point < K:
      raise PointError(f"point {point}: this ablation has {K} points "
                       f"(0..{K - 1})")
    build = lambda: ablation.stacked_model_state(points, spec, ema)  # noqa: E731
  else:
    if point is not None:
      raise PointError(f"{workdir} holds a single model (its config has no "
                       "ablation grid): give no point")
    build = lambda: state_lib.model_state(  # noqa: E731
        builders.model(config, spec), ema)[::-1]
  state, graphs = _abstract_state(build)
  state, _ = ckpt.restore(state, step, partial=True)
  ckpt.close()
  if ema:   # the average takes the params' place (state.eval_params)
    state = {"step": state["step"], "params": state[state_lib.EMA_KEY],
             "rest": state["rest"]}
  name = None
  if points is not None:
    state, config, name = (ablation.unstack(state, point),
                           points[point].config, points[point].name)
  model = nnx.merge(graphs.eval, state["params"], state["rest"])
  return Loaded(model=model, config=config,
                step=int(jax.device_get(state["step"])), state=state,
                point=point, point_name=name, ema=ema)


PARAMS_FILE = "params.safetensors"
NPZ_PARAMS_FILE = "params.npz"   # folders exported before safetensors


def _abstract_state(build):
  """``build() -> (state, static)`` traced, not run: the state's shapes and
  dtypes as ``jax.ShapeDtypeStruct``s (placed on the default device, for
  Orbax to restore into) and the static part (graphdefs) as built."""
  static = []

  def arrays():
    state, aux = build()
    static.append(aux)
    return state
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(arrays))
  return shapes, static[0]


def _param_key(path) -> str:
  return "/".join(str(p) for p in path)


def abstract_model(config, spec=None):
  """``(graphdef, params, rest)`` of ``config``'s model in eval mode, built
  abstractly: ``params`` (the ``nnx.Param`` state) holds ShapeDtypeStructs,
  nothing initialised; ``rest`` (every other variable: neuron constants...)
  holds concrete arrays. One jitted trace of the model's constructor, which
  returns only ``rest``: XLA drops the parameter initialisers as dead code,
  and the persistent compilation cache, when on, keeps the small program.
  ``nnx.merge(graphdef, params_with_values, rest)`` is the model."""
  static = {}

  def build():
    model = builders.model(config, spec, seed=0)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    static["graphdef"] = graphdef
    static["params"] = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    return rest
  rest = jax.jit(build)()
  return static["graphdef"], static["params"], rest


# What an export holds: the weights, and the running statistics of batch
# norms (at inference a batch norm is the affine map they define).
EXPORTED = (nnx.Param, nnx.BatchStat)


def export_params(loaded: Loaded, folder) -> dict:
  """Writes ``config.json`` and ``params.safetensors`` (float32
  ``nnx.Param``s and ``nnx.BatchStat``s, keyed by their path in the model)
  of a loaded model to ``folder``, replacing an older export's
  ``params.npz``; returns ``{key: shape}``."""
  folder = epath.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  params = nnx.state(loaded.model, nnx.Any(*EXPORTED))
  arrays = {_param_key(path): np.ascontiguousarray(v[...], np.float32)
            for path, v in nnx.to_flat_state(params)}
  (folder / PARAMS_FILE).write_bytes(save_safetensors(arrays, metadata={
      "format": "scnn_jax params", "scnn_jax_version": __version__,
      "model": str(loaded.config.model.name)}))
  if (folder / NPZ_PARAMS_FILE).exists():   # one params file per folder
    (folder / NPZ_PARAMS_FILE).unlink()
  config = loaded.config.copy_and_resolve_references()
  if config.get("train", {}).get("init_from"):
    # The weights it started from are in this file now; the path named a
    # workdir on the machine that trained it.
    with config.unlocked():
      config.train.init_from = None
  (folder / "config.json").write_text(
      config.to_json_best_effort(indent=2) + "\n")
  return {k: a.shape for k, a in arrays.items()}


def read_params(folder) -> tuple[epath.Path, dict[str, np.ndarray]]:
  """``(path, {key: array})`` of an export folder's params file:
  ``params.safetensors``, else an older export's ``params.npz``.
  ``FileNotFoundError`` when there is neither, ``ValueError`` naming the file
  when it cannot be read."""
  folder = epath.Path(folder)
  path = folder / PARAMS_FILE
  if path.exists():
    try:
      return path, load_safetensors(path.read_bytes())
    except (SafetensorError, ValueError) as e:
      raise ValueError(f"{path} is not a readable safetensors file "
                       f"({first_line(e)})") from None
  old = folder / NPZ_PARAMS_FILE
  if not old.exists():
    raise FileNotFoundError(f"{path} not found")
  try:
    with np.load(io.BytesIO(old.read_bytes()), allow_pickle=False) as npz:
      return old, {k: npz[k] for k in npz.files}
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"{old} is not a readable .npz file "
                     f"({first_line(e)})") from None


def load_params(folder, *, step: int = 0) -> Loaded:
  """The model of an ``export_params`` folder, in eval mode.

  Raises ``FileNotFoundError`` naming a missing file and ``ValueError`` when
  the params file does not fit the model its ``config.json`` builds.
  """
  folder = epath.Path(folder)
  config = read_config(folder)
  path, arrays = read_params(folder)
  graphdef, abstract, rest = abstract_model(_checked(config))
  flat = list(nnx.to_flat_state(abstract))
  rest_flat = list(nnx.to_flat_state(rest))
  stats = [(p, v) for p, v in rest_flat if isinstance(v, nnx.BatchStat)]
  want = {_param_key(p) for p, _ in flat + stats}
  if want != set(arrays):
    missing, extra = sorted(want - set(arrays)), sorted(set(arrays) - want)
    raise ValueError(f"{path} does not fit the model of its config.json: "
                     f"missing {missing[:3]}, unexpected {extra[:3]}")
  def filled(p, var):
    a, need = arrays[_param_key(p)], var.get_value()
    if a.shape != need.shape:
      raise ValueError(f"{path}: {_param_key(p)} has shape {a.shape}, the "
                       f"model needs {need.shape}")
    return var.replace(jax.numpy.asarray(a, need.dtype))

  params = nnx.from_flat_state([(p, filled(p, v)) for p, v in flat])
  if stats:
    rest = nnx.from_flat_state([
        (p, filled(p, v) if isinstance(v, nnx.BatchStat) else v)
        for p, v in rest_flat])
  model = nnx.merge(graphdef, params, rest)
  return Loaded(model=model, config=config, step=step,
                state={"params": params})
