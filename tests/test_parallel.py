"""scnn_jax.runtime.parallel: the pmap-style step sharded over "data" gives the
same result on 1 and 8 devices; the device prefetch keeps order and errors."""

import jax
import numpy as np
import pytest

from tests.workdirs import run_steps, step_batches, step_config


@pytest.mark.parametrize("model", ["scnn", "cnn"])
def test_one_and_eight_devices_agree(model):
  # Training noise is on (noise_std 0.1): per-example noise keys make it
  # independent of the split.
  config = step_config(name=model)
  l1, p1 = run_steps(config, 1)
  l8, p8 = run_steps(config, 8)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  assert l1[-1] < l1[0]  # it trains
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_device_prefetch_keeps_order_shards_and_raises_source_errors():
  from scnn_jax.runtime import parallel
  mesh = parallel.make_mesh()
  host = list(step_batches(5))
  it = parallel.DevicePrefetch(mesh, iter(host), size=2)
  got = list(it)
  assert len(got) == 5
  for g, h in zip(got, host):
    assert g["image"].sharding.spec == parallel.batch_sharded(mesh).spec
    np.testing.assert_array_equal(np.asarray(g["image"]), h["image"])

  def failing():
    yield host[0]
    raise ValueError("unreadable file x.png")

  it = parallel.DevicePrefetch(mesh, failing())
  next(it)
  with pytest.raises(ValueError, match="x.png"):
    next(it)
  # An endless source stops with close() (the trainer's exits).
  it = parallel.DevicePrefetch(mesh, iter(lambda: host[0], None), size=1)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  # ... and a closable source (grain's worker processes) is closed after it.
  endless = (host[0] for _ in iter(int, 1))
  it = parallel.DevicePrefetch(mesh, endless, size=1)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  assert endless.gi_frame is None  # generator.close() ran
