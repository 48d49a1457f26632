"""The train state of one model, as the steps and Orbax see it.

Train state (a dict of pytrees, also what a checkpoint holds):
  step, params (``nnx.Param`` state), rest (the model's other variables:
  neuron parameters, batch statistics), opt_state, nonfinite (count of
  skipped non-finite steps), first_nonfinite (step of the first one, or -1).

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

# The parts of the state that make up the model (what inference restores).
MODEL_KEYS = ("step", "params", "rest")


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


def create_state(model: nnx.Module, tx: optax.GradientTransformation):
  """A fresh train state of ``model`` and its graphdefs."""
  graphs, params, rest = split_model(model)
  state = {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "rest": rest,
      "opt_state": tx.init(params),
      "nonfinite": jnp.zeros((), jnp.int32),
      "first_nonfinite": jnp.full((), -1, jnp.int32),
  }
  return state, graphs


def model_state(model: nnx.Module) -> tuple[Graphs, dict]:
  """The graphdefs and ``MODEL_KEYS`` part of a state, for restoring a
  model without its optimizer (``scnn_jax.inference``)."""
  graphs, params, rest = split_model(model)
  return graphs, {"step": jnp.zeros((), jnp.int32), "params": params,
                  "rest": rest}


def current_step(state) -> int:
  """The state's step (the largest over stacked ablation points)."""
  return int(np.max(jax.device_get(state["step"])))
