"""Orbax checkpoints of the train state, written atomically.

Orbax writes each step into a temporary directory and renames it when the save
is complete, so a run killed at any moment leaves only complete checkpoints
(plus, at worst, a temporary directory that is ignored). All hosts take part
in every save; Orbax coordinates them.
"""

from __future__ import annotations

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a train-state pytree in ``directory``."""

  def __init__(self, directory, *, keep: int = 3):
    self.directory = epath.Path(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, meta: dict | None = None, *,
           force: bool = False) -> bool:
    """Saves the ``state`` pytree and a small JSON ``meta`` dict at ``step``."""
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(meta or {})), force=force)
    if saved:
      logging.info("checkpoint saved at step %d in %s", step, self.directory)
    return saved

  def restore(self, abstract_state, step: int | None = None):
    """``(state, meta)`` of ``step`` (default: latest).

    ``abstract_state`` gives the structure, shapes and shardings to restore
    into (a pytree of arrays or ``jax.ShapeDtypeStruct``; see
    ``abstract_like``).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"] or {})

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing ``state``, for restore."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
