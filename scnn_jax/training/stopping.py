"""Why a training run stops before its last step, and the check for it.

* ``Preempted``: SIGTERM (or a TPU maintenance event) stopped the run after a
  checkpoint (``scnn_jax.training.watchdog`` turns the signal into a stop
  request); ``train.py`` exits with status 143.
* ``NonFiniteLossError``: a step produced a NaN or inf loss or gradient and
  ``train.nan_policy = "stop"``; ``check_finite`` raises it (or warns under
  ``"skip"`` and for single ablation points).
* ``WriteFailed``: a checkpoint, metrics, sample or results write hit a full
  disk, a quota, a permission error or a read-only filesystem
  (``scnn_jax.runtime.storage_errors`` recognises them, also inside Orbax's and
  TensorStore's errors); ``train.py`` exits with status 74 after one line
  naming the path, the error and the last complete checkpoint.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging


class NonFiniteLossError(FloatingPointError):
  """Training stopped because a step produced a NaN or inf loss/gradient."""


class Preempted(Exception):
  """SIGTERM (or a TPU maintenance event) stopped the run after a checkpoint.

  ``train.py`` exits with status 143 (128 + SIGTERM) so schedulers see an
  unfinished run; running the same command again resumes at ``step``.
  """

  def __init__(self, step: int, directory):
    self.step = step
    super().__init__(f"preempted: checkpoint saved at step {step} in "
                     f"{directory}; run the same command again to resume")


def check_finite(state, nan_policy: str, ckpt, members) -> None:
  """Raises ``NonFiniteLossError`` if the state froze on a non-finite step
  under ``nan_policy="stop"`` (for an ablation: in every point); warns about
  frozen or skipped steps otherwise. ``members``: ``ablation.Members``."""
  bad = np.atleast_1d(jax.device_get(state["nonfinite"]))
  if not bad.any():
    return
  first = np.atleast_1d(jax.device_get(state["first_nonfinite"]))
  if nan_policy == "stop" and (not members.stacked or bad.all()):
    ckpt.wait()
    last = ckpt.latest_step()
    where = " in every ablation point" if members.stacked else ""
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {int(first.max())}{where}: "
        f"training stopped (train.nan_policy='stop'). The last good "
        f"checkpoint "
        f"{'is step ' + str(last) if last is not None else 'does not exist'}"
        f" in {ckpt.directory}; lower train.learning_rate, set "
        f"train.grad_clip, or use train.nan_policy='skip'.")
  names = [n or "model" for n in members.names]
  frozen = ", ".join(f"{n} (step {int(f)})" for n, b, f in
                     zip(names, bad, first) if b)
  action = "frozen at their first" if nan_policy == "stop" else "skipping"
  logging.warning("non-finite loss/gradient, %s non-finite step: %s", action,
                  frozen)


class WriteFailed(OSError):
  """A write to the workdir failed for lack of room or rights.

  ``train.py`` exits with status 74 (sysexits' EX_IOERR); once there is
  room (or the rights are fixed) the same command resumes from
  ``last_step``, the newest checkpoint that was written completely.
  """

  def __init__(self, path: str, what: str, last_step: int | None,
               directory):
    self.path, self.what, self.last_step = path, what, last_step
    last = (f"the last complete checkpoint is step {last_step} in "
            f"{directory}" if last_step is not None else
            f"there is no complete checkpoint in {directory} yet")
    super().__init__(
        f"{what} writing {path}: training stopped; {last}. Make room (or "
        "fix the permissions) and run the same command again to resume")
