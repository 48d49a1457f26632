"""The train state of one model, as the steps and Orbax see it.

Train state (a dict of pytrees, also what a checkpoint holds):
  step, params (``nnx.Param`` state), rest (the model's other variables:
  neuron parameters, batch statistics), opt_state, nonfinite (count of
  skipped non-finite steps), first_nonfinite (step of the first one, or -1),
  and, only with ``train.ema_decay > 0``, ema (``EMA_KEY``).

ema: an exponential moving average of ``params`` (the same tree, float32:
the params' own dtype, which the layers create float32 in every model),
updated by the train step after the optimizer (``ema_update``): with ``n``
the number of updates before this one,
``ema = d ema + (1 - d) params``, ``d = min(decay, (1 + n) / (10 + n))``.
The warm-up ``d`` (TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``) keeps the average from clinging to the initial weights: d
is 0.1 at the first update and reaches ``decay`` after about
``1 / (1 - decay)`` of them. A non-finite step leaves it as it was.
Evaluation, sample grids, the final results and ``scnn_jax.runtime.inference``
use it in place of ``params`` (``eval_params``); ``params`` stays the weights
the optimizer trains, and ``rest`` (batch statistics, non-``Param`` neuron
variables) is not averaged. A state without ``ema`` (EMA off, or a checkpoint
from before the field) evaluates ``params``.

The model itself enters the jitted steps as ``nnx.split`` state and is
rebuilt with ``nnx.merge(graph, params, rest)``; ``Graphs`` holds its static
halves in train and eval mode.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

# The parts of the state that make up the model (what inference restores;
# with an average, its EMA_KEY takes the place of "params").
MODEL_KEYS = ("step", "params", "rest")
EMA_KEY = "ema"


@dataclasses.dataclass(frozen=True)
class Graphs:
  """The static halves of the model: train-mode and eval-mode graphdefs."""
  train: nnx.GraphDef
  eval: nnx.GraphDef


def split_model(model: nnx.Module) -> tuple[Graphs, nnx.State, nnx.State]:
  """``(graphs, params, rest)`` of a freshly built model (train mode)."""
  model.train()
  graph_train, params, rest = nnx.split(model, nnx.Param, ...)
  model.eval()
  graph_eval = nnx.graphdef(model)
  return Graphs(graph_train, graph_eval), params, rest


def uses_ema(config) -> bool:
  """Whether the states of ``config`` (validated) hold an ``ema``."""
  return config.train.ema_decay > 0


def ema_init(params):
  """The average's start: a float32 copy of ``params`` (its own buffers, so
  donating the state never donates one buffer twice)."""
  return jax.tree.map(lambda p: jnp.array(p, jnp.float32, copy=True), params)


def ema_update(ema, params, decay: float, step):
  """The average after an update that produced ``params``; ``step``: the
  number of updates before it (the state's ``step``). See the module
  docstring for the warm-up."""
  n = jnp.asarray(step, jnp.float32)
  d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
  new = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  return optax.incremental_update(new, ema, 1.0 - d)


def eval_params(state):
  """The weights a state is evaluated with: its ``ema`` if it has one, else
  its ``params``."""
  return state.get(EMA_KEY, state["params"])


def create_state(model: nnx.Module, tx: optax.GradientTransformation,
                 ema: bool = False):
  """A fresh train state of ``model`` and its graphdefs; ``ema``: with the
  average (``uses_ema``), starting at the initial params."""
  graphs, params, rest = split_model(model)
  state = {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "rest": rest,
      "opt_state": tx.init(params),
      "nonfinite": jnp.zeros((), jnp.int32),
      "first_nonfinite": jnp.full((), -1, jnp.int32),
  }
  if ema:
    state[EMA_KEY] = ema_init(params)
  return state, graphs


def model_state(model: nnx.Module, ema: bool = False) -> tuple[Graphs, dict]:
  """The graphdefs and ``MODEL_KEYS`` part of a state, for restoring a
  model without its optimizer (``scnn_jax.runtime.inference``); ``ema``: the
  average in place of ``params`` (same tree, float32)."""
  graphs, params, rest = split_model(model)
  weights = {EMA_KEY: ema_init(params)} if ema else {"params": params}
  return graphs, {"step": jnp.zeros((), jnp.int32), **weights, "rest": rest}


def current_step(state) -> int:
  """The state's step (the largest over stacked ablation points)."""
  return int(np.max(jax.device_get(state["step"])))
