"""scnn_jax.runtime.checkpoint: the version + config stamp of every checkpoint,
read-only readers (a save in flight stays intact), partial restores."""

import hashlib
import json

import jax.numpy as jnp
import numpy as np
import pytest

import scnn_jax
from configs import base
from scnn_jax.runtime import checkpoint


def test_config_hash_is_the_digest_of_config_json():
  c = base.get_config()
  h = checkpoint.config_hash(c)
  # The trainer writes config.json from the same JSON: re-reading it gives
  # the same digest, so a checkpoint can be matched to its config file.
  assert checkpoint.config_hash(json.loads(c.to_json_best_effort())) == h
  canonical = json.dumps(json.loads(c.to_json_best_effort()), sort_keys=True,
                         separators=(",", ":"))
  assert h == hashlib.sha256(canonical.encode()).hexdigest()
  c.model.tau = 5.0
  assert checkpoint.config_hash(c) != h


def test_every_checkpoint_records_version_and_config(tmp_path):
  c = base.get_config()
  state = {"w": jnp.arange(3.0)}
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", config=c)
  # A meta restored from an older writer: its stamp is replaced, the rest kept.
  ckpt.save(1, state, {"train_time_s": 2.5, "scnn_jax_version": "0.0.1",
                       "config_sha256": "old"}, force=True)
  ckpt.wait()
  restored, meta = ckpt.restore(checkpoint.abstract_like(state))
  ckpt.close()
  np.testing.assert_array_equal(restored["w"], [0.0, 1.0, 2.0])
  assert meta == {"train_time_s": 2.5,
                  "scnn_jax_version": scnn_jax.__version__,
                  "config_sha256": checkpoint.config_hash(c)}


def _tmp_dirs(path):
  return [p.name for p in path.iterdir() if "tmp" in p.name]


def test_a_reader_leaves_a_save_in_flight_intact(tmp_path):
  """A reader opening the workdir of a run that is writing a checkpoint
  (Orbax writes into ``<step>.orbax-checkpoint-tmp`` first) must not delete
  it. A writer-style manager (``cleanup_tmp_directories=True``, what readers
  used before) removes that directory in its constructor, and the save then
  fails; ``read_only=True`` leaves it, and the save completes."""
  big = {"step": jnp.int32(1), "params": {"w": jnp.ones((4096, 4096))}}
  writer = checkpoint.Checkpointer(tmp_path)
  writer.save(1, big, force=True)
  writer.wait()
  writer.save(2, big, force=True)            # asynchronous: still writing
  in_flight = _tmp_dirs(tmp_path)
  assert in_flight, "the save finished before the reader came"
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  assert _tmp_dirs(tmp_path) == in_flight    # left alone
  assert reader.latest_step() == 1           # only complete checkpoints
  reader.close()
  writer.wait()
  assert writer.all_steps() == [1, 2] and not _tmp_dirs(tmp_path)
  writer.close()
  reread = checkpoint.Checkpointer(tmp_path, read_only=True)
  state, _ = reread.restore(checkpoint.abstract_like(big))
  assert int(state["step"]) == 1 and reread.latest_step() == 2
  reread.close()


def test_partial_restore_reads_only_the_model(tmp_path):
  state = {"step": jnp.int32(4), "params": {"w": jnp.arange(6.0)},
           "rest": {"b": jnp.ones(2)}, "opt_state": {"mu": jnp.zeros(6)}}
  writer = checkpoint.Checkpointer(tmp_path)
  writer.save(4, state, force=True)
  writer.wait()
  want = {k: state[k] for k in ("step", "params", "rest")}
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  # What a checkpoint holds is known before restoring it (an "ema" or not).
  assert reader.state_keys() == reader.state_keys(4) == set(state)
  assert reader.state_keys(3) is None
  got, meta = reader.restore(checkpoint.abstract_like(want), partial=True)
  assert set(got) == {"step", "params", "rest"}
  np.testing.assert_array_equal(got["params"]["w"], np.arange(6.0))
  assert meta["scnn_jax_version"] == scnn_jax.__version__
  with pytest.raises(Exception):   # a full restore needs the whole tree
    reader.restore(checkpoint.abstract_like(want), 4)


def test_a_reader_falls_back_over_a_damaged_checkpoint_and_moves_nothing(
    tmp_path):
  state = {"w": jnp.arange(3.0)}
  writer = checkpoint.Checkpointer(tmp_path)
  for step in (1, 2):
    writer.save(step, {"w": state["w"] + step}, force=True)
  writer.wait()
  for f in (tmp_path / "2").rglob("*"):
    if f.is_file() and "ocdbt" not in f.name and f.suffix != ".json":
      f.write_bytes(b"garbage")
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  got, _ = reader.restore(checkpoint.abstract_like(state))
  np.testing.assert_array_equal(got["w"], [1.0, 2.0, 3.0])   # step 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]
