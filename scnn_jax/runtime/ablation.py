"""vmap ablations: K configurations of one model in ONE compiled program.

``config.ablation.grid`` mirrors the config tree with a list of values per
swept field, e.g.::

    c.ablation.grid = {"model": {"tau": [5.0, 10.0, 20.0, 40.0],
                                 "threshold": [0.5, 1.0, 1.5]}}

``mode="grid"`` takes the cartesian product (here 12 points), ``"zip"`` pairs
the lists. Each point k gets its own config (the base config with its values)
and its own init seed ``seed + k`` (``share_init=True``: all ``seed``); all
points see the same batches, masks and noise keys (``seed``).

The K model / optimizer states are stacked on a new leading axis and the
per-device train step runs over it inside the usual ``jit(shard_map(...))``
(``scnn_jax.runtime.steps``): K models, one compilation, one data pipeline, the
training noise drawn once for all. How the points run is a per-backend
choice with the same numbers (``steps.points_per_pass``): a loop over them
on XLA CPU, where one model already fills the cores and stacked activations
fall out of cache; ``jax.vmap`` over all of them on GPU/TPU. This works
for every field that only changes the VALUES in the model state (neuron
parameters are arrays: ``NeuronParam`` / ``nnx.Param``):
``scnn_jax.config.schema.SWEEPABLE``. A field that changes shapes or static
settings (width, T, neuron kind, surrogate kind...) or the optimizer (one
optimizer serves all points) is rejected by the schema before compilation;
a value that changes the structure anyway (a 0 that removes a layer's
noise) by ``create_stacked_state``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import jax
import jax.numpy as jnp

from scnn_jax.config import builders
from scnn_jax.config.schema import SWEEPABLE, flatten_grid  # noqa: F401
from scnn_jax.ops.checks import ConfigError
from scnn_jax.runtime import state as state_lib


@dataclasses.dataclass(frozen=True)
class Point:
  index: int
  values: dict          # {"model.tau": 10.0, ...}
  config: object        # the full config of this point (no ablation section)

  @property
  def name(self) -> str:
    return "_".join(f"{k.split('.')[-1]}={fmt(v)}"
                    for k, v in self.values.items()) or f"point{self.index}"


def fmt(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def enabled(config) -> bool:
  """Whether ``config`` is a vmap ablation (a non-empty ``ablation.grid``)."""
  return bool(config.get("ablation")) and bool(flatten_grid(
      config.ablation.grid))


def points(config) -> list[Point]:
  """The K points of a validated ``config.ablation``, in grid order."""
  a = config.ablation
  grid = flatten_grid(a.grid)
  fields = list(grid)
  if a.mode == "zip":
    combos = list(zip(*grid.values()))
  else:
    combos = list(itertools.product(*grid.values()))
  out = []
  for k, combo in enumerate(combos):
    c = copy.deepcopy(config)
    with c.unlocked():
      c.ablation.grid = {}
      c.init_seed = config.seed if a.share_init else config.seed + k
      for field, value in zip(fields, combo):
        _set(c, field, value)
    out.append(Point(k, dict(zip(fields, combo)), c))
  return out


def _set(config, dotted, value):
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  current = node[leaf]
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  node[leaf] = value


def stack(states: list):
  """K pytrees of equal structure -> one with a leading K axis on every leaf."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def unstack(state, k: int):
  """Point ``k`` of a stacked state (an ordinary single-model state)."""
  return jax.tree.map(lambda x: x[k], state)


def stacked(pts: list[Point], make):
  """``make(point) -> (state, graphs)`` for every point, stacked.

  Raises ConfigError when a point's model structure differs from point 0's
  (a swept value that is not value-only for this model).
  """
  states, graphs = [], None
  for p in pts:
    state, g = make(p)
    if graphs is None:
      graphs = g
    elif g != graphs:
      raise ConfigError("ablation.grid", {k: v for k, v in p.values.items()},
                        "these values change the model's structure (e.g. a 0 "
                        "that removes a layer's noise): all points must share "
                        "one structure")
    states.append(state)
  return stack(states), graphs


def create_stacked_state(pts: list[Point], spec, tx):
  """Stacked train states of all points (their own init seeds) + the shared
  graphdefs; ``spec``: the data's ``image_shape`` / ``num_classes``. With
  ``train.ema_decay`` (one value for all points) each has its ``ema``."""
  return stacked(pts, lambda p: state_lib.create_state(
      builders.model(p.config, spec), tx, state_lib.uses_ema(p.config)))


def stacked_model_state(pts: list[Point], spec, ema: bool = False):
  """Stacked ``state.MODEL_KEYS`` parts (no optimizer) + graphdefs; ``ema``:
  the averages in place of the params (``state.model_state``)."""
  def make(p):
    graphs, s = state_lib.model_state(builders.model(p.config, spec), ema)
    return s, graphs
  return stacked(pts, make)


@dataclasses.dataclass(frozen=True)
class Members:
  """The models one run trains: a single model, or the K points of a vmap
  ablation stacked on a leading axis. The loop and its reports treat both
  alike: one entry per member (``name`` None for a single model)."""
  points: tuple[Point, ...] | None = None

  @classmethod
  def of(cls, config) -> "Members":
    return cls(tuple(points(config)) if enabled(config) else None)

  @property
  def stacked(self) -> bool:
    return self.points is not None

  def __len__(self) -> int:
    return len(self.points) if self.stacked else 1

  @property
  def names(self) -> list[str | None]:
    return [p.name for p in self.points] if self.stacked else [None]

  def split(self, tree) -> list:
    """Per-member views of a (host) tree whose leaves lead with K if stacked."""
    if not self.stacked:
      return [tree]
    return [jax.tree.map(lambda x, k=k: x[k], tree) for k in range(len(self))]
