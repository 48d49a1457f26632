"""scnn_jax.training.writers: TensorBoard events inside the workdir (for
gs:// too), and a TensorBoard failure leaves the run going."""

import json
import struct

import pytest

from scnn_jax.training import writers


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
