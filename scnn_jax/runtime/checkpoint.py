"""Orbax checkpoints of the train state, written atomically.

Orbax writes each step into a temporary directory and renames it when the save
is complete, so a run killed at any moment leaves only complete checkpoints
(plus, at worst, a temporary directory that is ignored). All hosts take part
in every save; Orbax coordinates them.

Every checkpoint's small JSON ``meta`` records the ``scnn_jax_version`` that
wrote it and, when the Checkpointer knows the run's config, its
``config_sha256`` (``config_hash``: the same digest for the same
``config.json``), so a checkpoint can be matched to the code and the config
that produced it.

Readers (``scnn_jax.runtime.inference``, the ablation export) open a workdir
with ``read_only=True``: Orbax then neither creates nor cleans anything, so a
reader started while the training run is writing a checkpoint (Orbax writes into
a temporary directory first) leaves that save intact, and ``restore(...,
partial=True)`` reads only the parts of the state it asks for (the model's
parameters, not the optimizer state).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging as pylogging
import sys
import time

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from scnn_jax import __version__
from scnn_jax.runtime import storage_errors


def config_hash(config) -> str:
  """SHA-256 of a config (ConfigDict or dict) as canonical JSON."""
  if hasattr(config, "to_json_best_effort"):
    config = json.loads(config.to_json_best_effort())
  text = json.dumps(config, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


class CheckpointError(RuntimeError):
  """No checkpoint in the directory could be restored."""


@contextlib.contextmanager
def _quiet_read_only_notice(active: bool):
  """Drops Orbax's "Given directory is read only" warning: a reader is
  read-only on purpose, and the inpainting command's stderr is for the user."""
  def keep(record):
    return "Given directory is read only" not in record.getMessage()
  logger = logging.get_absl_logger()
  if active:
    logger.addFilter(keep)
  try:
    yield
  finally:
    if active:
      logger.removeFilter(keep)


def _storage_noise(record) -> bool:
  """False for Orbax's own reports of a write the storage refused (a full
  disk...): each of its background threads logs the error with a traceback,
  and asyncio the futures of the writes given up; the training loop reports
  it in one line (``stopping.WriteFailed``)."""
  if record.levelno < pylogging.ERROR or not (
      "/orbax/" in record.pathname or record.name == "asyncio"):
    return True
  error = record.exc_info[1] if record.exc_info else None
  if error is not None and storage_errors.write_failure(error):
    return False
  try:
    text = record.getMessage()
  except Exception:  # noqa: BLE001 - a malformed record: keep it
    return True
  return not any(m in text for m in storage_errors.MESSAGES)


def _drop_closed_loop_noise():
  """Installs (once) a ``sys.unraisablehook`` that drops "Event loop is
  closed": when one part of an Orbax save fails, Orbax closes that save's
  event loop while TensorStore still completes the other writes, and each
  completion reports the closed loop (dozens of tracebacks for one full
  disk). Every other unraisable exception goes to the previous hook."""
  previous = sys.unraisablehook
  if getattr(previous, "_scnn_jax", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and
            str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)
  hook._scnn_jax = True
  sys.unraisablehook = hook


def last_complete_step(directory) -> int | None:
  """The newest checkpoint in ``directory`` that was written completely
  (what a restart resumes from), read without touching anything; None when
  there is none or the directory cannot be listed."""
  try:
    reader = Checkpointer(directory, read_only=True)
  except Exception:  # noqa: BLE001 - missing or unreadable: none
    return None
  try:
    return reader.latest_step()
  finally:
    with contextlib.suppress(Exception):
      reader.close()


def _barrier(name: str):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a train-state pytree in
  ``directory``.

  ``config``: the run's config; its ``config_hash`` goes into every save's
  meta (with the scnn_jax version, which is always stamped).
  """

  def __init__(self, directory, *, keep: int = 3, config=None,
               read_only: bool = False):
    # Orbax needs absolute paths ("runs/base" from the command line is not);
    # gs:// and other URLs already are.
    self.directory = epath.Path(directory)
    if not self.directory.is_absolute():
      self.directory = self.directory.absolute()
    self.read_only = read_only
    if read_only:
      # A reader must not touch the directory: cleaning temporary
      # directories here would delete a save the training run has in flight.
      options = ocp.CheckpointManagerOptions(
          read_only=True, create=False, cleanup_tmp_directories=False,
          save_interval_steps=0, max_to_keep=None)
    else:
      # cleanup_tmp_directories: a process killed mid-save leaves its
      # unfinished temporary directory behind; it is removed on restart.
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    with _quiet_read_only_notice(read_only):
      self._manager = ocp.CheckpointManager(self.directory, options=options)
    if not read_only:   # once per process (a filter is added only once)
      logging.get_absl_logger().addFilter(_storage_noise)
      pylogging.getLogger("asyncio").addFilter(_storage_noise)
      _drop_closed_loop_noise()
    self._stamp = {"scnn_jax_version": __version__}
    if config is not None:
      self._stamp["config_sha256"] = config_hash(config)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def state_keys(self, step: int | None = None) -> set[str] | None:
    """The top-level keys of the state saved at ``step`` (default: the
    latest), read from its metadata alone; None when there is no such
    checkpoint or its metadata is unreadable. Tells what a checkpoint holds
    before restoring it (an ``ema`` or not: ``scnn_jax.runtime.state``)."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    handler = ocp.StandardCheckpointHandler()
    try:
      tree = handler.metadata(self.directory / str(step) / "state").tree
    except Exception as e:  # noqa: BLE001 - the restore then says what is wrong
      logging.warning("no metadata for checkpoint step %d in %s (%s)", step,
                      self.directory, type(e).__name__)
      return None
    finally:
      handler.close()
    return set(tree)

  def save(self, step: int, state, meta: dict | None = None, *,
           force: bool = False) -> bool:
    """Saves the ``state`` pytree and a small JSON ``meta`` dict at ``step``.

    ``meta`` gets this writer's version / config stamp (replacing the values
    a restored meta carried from an older writer).
    """
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave({**(meta or {}), **self._stamp})), force=force)
    if saved:
      logging.info("checkpoint saved at step %d in %s", step, self.directory)
    return saved

  def restore(self, abstract_state, step: int | None = None, *,
              partial: bool = False):
    """``(state, meta)`` of ``step``, or of the newest READABLE checkpoint.

    ``abstract_state`` gives the structure, shapes and shardings to restore
    into (a pytree of arrays or ``jax.ShapeDtypeStruct``; see
    ``abstract_like``); with ``partial=True`` it may be a subtree of the saved
    state (e.g. ``{"step", "params", "rest"}`` without ``opt_state``), and
    only that is read. Without ``step``, an unreadable latest checkpoint
    (truncated files, missing metadata...) is skipped with a warning naming
    what was wrong, and the previous one is restored; a writer renames the
    skipped directory ``<step>.corrupt-<time>`` (kept for inspection, ignored
    by Orbax) so that the step can be written again (a read-only reader moves
    nothing). If no checkpoint restores, nothing is moved and the error lists
    why each failed.
    """
    if step is not None:
      return self._restore(abstract_state, step, partial)
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    failed = []
    for s in steps:
      try:
        result = self._restore(abstract_state, s, partial)
      except Exception as e:  # noqa: BLE001 - any failure means "unreadable"
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        logging.warning("checkpoint step %d in %s is unreadable (%s)", s,
                        self.directory, reason)
        failed.append((s, reason))
        continue
      if failed and not self.read_only:
        # An older step restored into the same structure, so the newer ones
        # are damaged, not mismatched: move them aside.
        moved = [self._quarantine(f) for f, _ in failed]
        logging.warning("restored checkpoint step %d instead of %d; moved the "
                        "unreadable ones to %s", s, steps[0],
                        ", ".join(str(m) for m in moved))
      return result
    raise CheckpointError(
        f"no checkpoint in {self.directory} could be restored: " + "; ".join(
            f"step {s}: {r}" for s, r in failed) + ". If the config changed "
        "since they were written, train in a new --workdir; nothing was "
        "moved or deleted.")

  def _restore(self, abstract_state, step, partial=False):
    if partial:
      state_args = ocp.args.PyTreeRestore(
          item=abstract_state, partial_restore=True,
          restore_args=ocp.checkpoint_utils.construct_restore_args(
              abstract_state))
    else:
      state_args = ocp.args.StandardRestore(abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=state_args, meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"] or {})

  def _quarantine(self, step: int):
    src = self.directory / str(step)
    dst = self.directory / f"{step}.corrupt-{int(time.time())}"
    if jax.process_index() == 0 and src.exists():
      src.rename(dst)
    _barrier(f"quarantine_{step}")
    self._manager.reload()
    return dst

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()

  def abandon(self):
    """Closes after a failed write: the save in flight is given up (its
    temporary directory is removed at the next start) and its error, already
    reported, is not raised again."""
    with contextlib.suppress(Exception):
      self._manager.close()


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing ``state``, for restore."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
