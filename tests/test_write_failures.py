"""A full disk, a read-only workdir or a refused write is an ordinary error:
one line naming the path, the error and the last complete checkpoint, the
completed checkpoints intact, and the same command resumes once there is
room (scnn_jax.runtime.storage_errors, stopping.WriteFailed)."""

import errno
import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

from scnn_jax.data import images
from scnn_jax.runtime import inference, storage_errors, workdir_lock
from scnn_jax.training import trainer
from scnn_jax.training.stopping import WriteFailed
from tests.workdirs import REPO, tiny_config

# TensorStore's status text for a full disk, as Orbax re-raises it.
TS_FULL = (
    'RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/15.orbax-'
    'checkpoint-tmp/state/_sharding": Failed writing: "/w/checkpoints/15.'
    'orbax-checkpoint-tmp/state/_sharding.__lock": Failed to write 11537 '
    "bytes to file 7: No space left on device [os_error_code='28']")


def test_write_failure_recognises_storage_errors_only():
  full = OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl")
  assert storage_errors.write_failure(full) == (
      "/w/metrics.jsonl", "the disk is full (No space left on device)")
  assert storage_errors.write_failure(ValueError(TS_FULL)) == (
      "/w/checkpoints/15.orbax-checkpoint-tmp/state/_sharding.__lock",
      "the disk is full (No space left on device)")
  try:   # raised from one: found through the chain
    try:
      raise OSError(errno.EROFS, "Read-only file system", "/w/lock.json")
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as e:
    assert storage_errors.write_failure(e) == (
        "/w/lock.json", "the filesystem is read-only (Read-only file system)")
  assert storage_errors.write_failure(
      OSError("Forbidden: b/bucket/o/run%2Fmetrics.jsonl\nno access")) == (
          "b/bucket/o/run%2Fmetrics.jsonl",
          "permission denied (HTTP 403 Forbidden)")
  assert storage_errors.write_failure(
      OSError(errno.EDQUOT, "Disk quota exceeded"))[1].startswith(
          "the disk quota is exceeded")
  # Not a storage error: left alone.
  for other in (FileNotFoundError(errno.ENOENT, "gone", "/w/x"),
                ValueError("Error opening zarr driver: shape mismatch"),
                KeyError("params")):
    assert storage_errors.write_failure(other) is None
  # A write that says which error but not which file gets its path.
  with pytest.raises(OSError) as named:
    with storage_errors.writing("/w/samples/step_000006.png"):
      raise OSError(errno.ENOSPC, "No space left on device")
  assert named.value.filename == "/w/samples/step_000006.png"


def test_a_refused_sample_write_stops_in_one_line_and_resumes(tmp_path,
                                                              monkeypatch,
                                                              caplog):
  real = images.save_png

  def full_at_step_6(path, image):
    if str(path).endswith("step_000006.png"):
      raise OSError(errno.ENOSPC, "No space left on device")  # no filename
    return real(path, image)

  monkeypatch.setattr(images, "save_png", full_at_step_6)
  config = tiny_config()
  config.model.update(width=4, T=2)
  with pytest.raises(WriteFailed) as failed:
    trainer.train_and_evaluate(config, tmp_path)
  assert str(failed.value) == (
      f"the disk is full (No space left on device) writing "
      f"{tmp_path}/samples/step_000006.png: training stopped; the last "
      f"complete checkpoint is step 3 in {tmp_path}/checkpoints. Make room "
      "(or fix the permissions) and run the same command again to resume")
  assert failed.value.__suppress_context__    # no traceback chain
  assert int(jax.device_get(inference.load(tmp_path).state["step"])) == 3
  workdir_lock.acquire(tmp_path).release()    # the failed run let it go

  monkeypatch.setattr(images, "save_png", real)   # room again
  with caplog.at_level("INFO"):
    summary = trainer.train_and_evaluate(config, tmp_path)
  assert "resuming from step 3" in caplog.text
  assert summary["steps"] == 6
  steps = [json.loads(l)["step"] for l in
           (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(steps) and steps[-1] == 6


# -----------------------------------------------------------------------------
# A real full disk: a 400 kB tmpfs in a private mount namespace
# -----------------------------------------------------------------------------

CMD = ("python train.py --config configs/base.py --workdir=$MNT/run "
       "--cpu_devices=2 --config.model.width=4 --config.model.T=2 "
       "--config.data.image_size=16 --config.data.num_eval=8 "
       "--config.train.batch_size=4 --config.train.eval_batch_size=8 "
       "--config.train.log_every=1 --config.train.eval_every=5 "
       "--config.train.checkpoint_every=5 --config.train.keep_checkpoints=3 "
       "--config.train.steps=30 --compilation_cache=$OUT/cache")

# Each stage's stderr goes to $OUT/<stage>.err and its exit status to
# $OUT/<stage>.rc; the workdir is copied out before the mount goes.
SCRIPT = f"""
set -u
mount -t tmpfs -o size=400k tmpfs "$MNT" || exit 90
{CMD} 2> "$OUT/full.err"; echo $? > "$OUT/full.rc"
cp -a "$MNT/run" "$OUT/after_full"
mount -o remount,ro "$MNT"
{CMD} 2> "$OUT/readonly.err"; echo $? > "$OUT/readonly.rc"
mount -o remount,rw,size=20m "$MNT"
{CMD} 2> "$OUT/room.err"; echo $? > "$OUT/room.rc"
cp -a "$MNT/run" "$OUT/final"
"""


def _in_mount_namespace(script, env):
  """Runs ``script`` with bash in a private mount namespace (as root, or
  as root of a new user namespace); skips when neither is allowed."""
  for flags in (["--mount"], ["--user", "--map-root-user", "--mount"]):
    probe = subprocess.run(["unshare", *flags, "--propagation", "private",
                            "true"], capture_output=True)
    if probe.returncode == 0:
      return subprocess.run(["unshare", *flags, "--propagation", "private",
                             "bash", "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
  pytest.skip("needs a private mount namespace (unshare --mount)")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare")
def test_a_full_disk_stops_cleanly_and_the_same_command_resumes(tmp_path):
  mnt, out = tmp_path / "mnt", tmp_path / "out"
  mnt.mkdir()
  out.mkdir()
  env = {**os.environ, "MNT": str(mnt), "OUT": str(out),
         "PATH": os.path.dirname(sys.executable) + os.pathsep +
         os.environ["PATH"]}
  done = _in_mount_namespace(SCRIPT, env)
  if (out / "full.rc").exists() is False:
    pytest.skip(f"could not mount a tmpfs: {done.stderr[-500:]}")

  def stage(name):
    return int((out / f"{name}.rc").read_text()), (
        out / f"{name}.err").read_text()

  code, err = stage("full")
  assert code == 74, err[-3000:]
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, err[-3000:]
  assert errors[0].startswith(
      "error: the disk is full (No space left on device) writing "
      f"{mnt}/run/"), errors
  for noise in ("Traceback", "Event loop is closed", "RESOURCE_EXHAUSTED",
                "No space left on device [os_error_code"):
    assert noise not in err, err[-3000:]
  named = errors[0].split("the last complete checkpoint is step ")[1]
  last = int(named.split()[0])
  assert named.startswith(f"{last} in {mnt}/run/checkpoints. Make room")
  # Every completed checkpoint is readable; the newest is the one named.
  after = out / "after_full"
  done_steps = sorted(int(p.name) for p in (after / "checkpoints").iterdir()
                      if p.name.isdigit())
  assert done_steps and done_steps[-1] == last
  assert int(jax.device_get(inference.load(after).state["step"])) == last

  code, err = stage("readonly")
  assert code == 74, err[-3000:]
  assert [l for l in err.splitlines() if l.startswith("error:")] == [
      f"error: the filesystem is read-only (Read-only file system) writing "
      f"{mnt}/run/lock.json: training stopped; the last complete checkpoint "
      f"is step {last} in {mnt}/run/checkpoints. Make room (or fix the "
      "permissions) and run the same command again to resume"]

  code, err = stage("room")
  assert code == 0, err[-3000:]
  assert f"resuming from step {last} " in err
  final = out / "final"
  assert json.loads((final / "results.json").read_text())["steps"] == 30
  assert not [p.name for p in (final / "checkpoints").iterdir()
              if "orbax-checkpoint-tmp" in p.name]
  assert int(jax.device_get(inference.load(final).state["step"])) == 30
