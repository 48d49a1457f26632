"""What a run records beside its results: the version + config stamp of every
checkpoint, and TensorBoard events inside the workdir (for gs:// too)."""

import json
import struct

import jax.numpy as jnp
import numpy as np
import pytest

import scnn_jax
from configs import base
from scnn_jax import checkpoint, writers


def test_config_hash_is_the_digest_of_config_json():
  c = base.get_config()
  h = checkpoint.config_hash(c)
  # The trainer writes config.json from the same JSON: re-reading it gives
  # the same digest, so a checkpoint can be matched to its config file.
  assert checkpoint.config_hash(json.loads(c.to_json_best_effort())) == h
  assert len(h) == 64 and int(h, 16) >= 0
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


def _scalars(event_file):
  """(tag, step, value) of every scalar in a TFRecord event file."""
  from tensorboardX.proto import event_pb2
  data, out, i = event_file.read_bytes(), [], 0
  while i < len(data):
    (n,) = struct.unpack("<Q", data[i:i + 8])
    event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
    i += 12 + n + 4  # length, its crc, record, its crc
    for v in event.summary.value:
      out.append((v.tag, event.step, round(v.simple_value, 6)))
  return out


def test_tensorboard_events_are_written_inside_the_workdir(tmp_path):
  w = writers.MetricWriter(tmp_path)
  w.write(10, "train", {"loss": 0.25, "spike_rate": {"spiking": 0.125}})
  w.close()
  files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(files) == 1
  assert _scalars(files[0]) == [("train/loss", 10, 0.25),
                                ("train/spike_rate/spiking", 10, 0.125)]


def test_remote_workdir_events_go_to_the_remote_workdir(monkeypatch):
  # No bucket here: record where the writer is opened. The local test above
  # runs the same open_tensorboard call.
  import tensorboardX
  opened = []
  monkeypatch.setattr(tensorboardX, "SummaryWriter", opened.append)
  writers.open_tensorboard("gs://bucket/runs/paper_a")
  assert opened == ["gs://bucket/runs/paper_a/tensorboard"]


def test_tensorboard_failure_leaves_the_run_going(monkeypatch, tmp_path):
  import tensorboardX

  def broken(logdir):
    raise ImportError("`google-cloud-storage` must be installed")
  monkeypatch.setattr(tensorboardX, "SummaryWriter", broken)
  w = writers.MetricWriter(tmp_path)
  w.write(1, "train", {"loss": 1.0})
  w.close()
  assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss"] == 1.0
