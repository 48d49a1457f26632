"""train.profile_steps: a jax.profiler trace of a step range, with named scopes."""

import jax
import jax.numpy as jnp
import pytest

from scnn_jax.training import profiling


def test_trace_covers_the_step_range_with_named_scopes(tmp_path):
  @jax.jit
  def step(x):
    with jax.named_scope("spiking_part"):
      return jnp.tanh(x) * 2.0

  trace = profiling.StepTrace((1, 3), tmp_path)
  x, started = jnp.ones((8,)), []
  for i in range(5):
    with trace.step(i):
      x = step(x)
    started.append(trace.active)
    trace.after(i, x)
  trace.close()
  # Tracing from step 1 through step 2 only.
  assert started == [False, True, True, False, False]
  files = list((tmp_path / "tensorboard" / "plugins" / "profile").glob(
      "*/*.xplane.pb"))
  assert len(files) == 1
  data = files[0].read_bytes()
  assert b"spiking_part" in data  # the scope names the op in the trace
  assert b"train" in data         # the StepTraceAnnotation


def test_profile_steps_off_traces_nothing(tmp_path):
  trace = profiling.StepTrace((), tmp_path)
  with trace.step(0):
    pass
  trace.after(0, None)
  assert not (tmp_path / "tensorboard").exists()
