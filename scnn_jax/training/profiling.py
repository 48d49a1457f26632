"""A ``jax.profiler`` trace of a range of train steps (``train.profile_steps``).

``train.profile_steps = (start, stop)`` traces steps ``start .. stop - 1``
(0-based loop steps; a resumed run traces them only if it has not passed
them) into ``<workdir>/tensorboard/plugins/profile/<time>/``, where
TensorBoard's profile plugin and XProf look for it. Each step is annotated
(``StepTraceAnnotation``), so XProf's step views split the trace by step; the
models' ``jax.named_scope`` names (encode, spiking, decode, head...) appear in
the op names. Skip the first step: it compiles.
"""

from __future__ import annotations

import contextlib

import jax
from absl import logging
from etils import epath



class StepTrace:
  """Starts the trace before step ``start``, stops it after step ``stop - 1``."""

  def __init__(self, profile_steps, workdir):
    """``profile_steps``: ``()`` or ``(start, stop)``, validated by
    ``scnn_jax.config.schema`` (``train.profile_steps``)."""
    steps = tuple(profile_steps or ())
    self.start, self.stop = steps if steps else (None, None)
    self.logdir = str(epath.Path(workdir) / "tensorboard")
    self.active = False

  @contextlib.contextmanager
  def step(self, step: int):
    """Wraps the call of train step ``step`` (0-based)."""
    if self.start is None:
      yield
      return
    if step == self.start:
      logging.info("profiling steps %d..%d into %s", self.start,
                   self.stop - 1, self.logdir)
      jax.profiler.start_trace(self.logdir)
      self.active = True
    if self.active:
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        yield
    else:
      yield

  def after(self, step: int, state):
    """After step ``step``'s call: ends the trace once its last step is done."""
    if self.active and step + 1 >= self.stop:
      jax.block_until_ready(state)  # the trace must cover the async work
      self.close()

  def close(self):
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      logging.info("profile written to %s", self.logdir)
