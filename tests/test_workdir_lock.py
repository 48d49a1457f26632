"""One writer per workdir (scnn_jax.runtime.workdir_lock): a flock on
filesystems, a lease on object stores; a second run refuses before it writes
anything, and readers neither take the lock nor write."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from scnn_jax.runtime import inference, workdir_lock
from scnn_jax.runtime.workdir_lock import WorkdirBusy, WorkdirTakenOver
from scnn_jax.training import trainer
from tests.workdirs import REPO, make_workdir, tiny_config

HOST = socket.gethostname()
HOLD = ("import sys, time\n"
        "from scnn_jax.runtime import workdir_lock\n"
        "lock = workdir_lock.acquire(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")


def _holder(path):
  """A child process holding the lock of ``path`` (until killed)."""
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_local_lock_refuses_a_second_holder_and_ends_with_its_process(
    tmp_path):
  lock = workdir_lock.acquire(tmp_path)
  info = json.loads((tmp_path / "lock.json").read_text())
  assert (info["host"], info["pid"]) == (HOST, os.getpid())
  t0 = time.time()
  with pytest.raises(WorkdirBusy) as busy:   # flock: per open file, also here
    workdir_lock.acquire(tmp_path)
  assert time.time() - t0 < 1
  message = str(busy.value)
  assert "\n" not in message
  assert message.startswith(
      f"workdir {tmp_path} is in use by another training run (pid "
      f"{os.getpid()} on host {HOST}, started ")
  assert f"UTC; lock {tmp_path / 'lock.json'}): only one run may write" in \
      message
  lock.release()
  workdir_lock.acquire(tmp_path).release()  # released: free again

  # Another process holds it; SIGKILL ends its lock with it, at once.
  child = _holder(tmp_path)
  with pytest.raises(WorkdirBusy, match=f"pid {child.pid} on host {HOST}"):
    workdir_lock.acquire(tmp_path)
  child.send_signal(signal.SIGKILL)
  child.wait()
  workdir_lock.acquire(tmp_path).release()


def _write_lease(path, **info):
  (path / "lock.json").write_text(json.dumps(
      {"host": HOST, "pid": os.getpid(), "started": time.time() - 5,
       "heartbeat": time.time(), "token": "someone", **info}))


def test_a_lease_is_renewed_refused_taken_over_and_lost(tmp_path, caplog):
  fast = dict(lease=True, settle_s=0.0, heartbeat_s=0.05)
  first = workdir_lock.acquire(tmp_path, **fast)
  beat0 = json.loads((tmp_path / "lock.json").read_text())["heartbeat"]
  time.sleep(0.3)
  assert json.loads((tmp_path / "lock.json").read_text())["heartbeat"] > beat0
  with pytest.raises(WorkdirBusy, match=r"lease .*lock.json renewed 0 s ago\)"
                     r": only one run may write a workdir. The lease is taken"
                     r" over once it has not been renewed for 180 s, or at "
                     r"once with --takeover_lock if that run is gone$"):
    workdir_lock.acquire(tmp_path, **fast)
  first.check()   # still its own

  with caplog.at_level("WARNING"):
    second = workdir_lock.acquire(tmp_path, takeover=True, **fast)
  taken = caplog.records[0].getMessage()
  assert taken.startswith(f"taking over the lock of workdir {tmp_path} from "
                          f"pid {os.getpid()} on host {HOST}, started ")
  assert taken.endswith(" UTC: --takeover_lock")
  t0 = time.time()
  while time.time() - t0 < 5:   # the first holder's next beat sees it
    try:
      first.check()
    except WorkdirTakenOver as e:
      assert "was taken over by pid" in str(e)
      assert "this run stopped without writing more" in str(e)
      break
    time.sleep(0.05)
  else:
    pytest.fail("the first holder never noticed the takeover")
  first.release()    # not its lease any more: left to the second
  token = json.loads((tmp_path / "lock.json").read_text())["token"]
  assert token == second.info["token"]
  second.release()
  assert not (tmp_path / "lock.json").exists()


def test_stale_gone_and_live_leases(tmp_path, caplog):
  fast = dict(lease=True, settle_s=0.0, heartbeat_s=60)
  # Not renewed for 1000 s, another host: stale, taken over.
  _write_lease(tmp_path, host="elsewhere", heartbeat=time.time() - 1000)
  with caplog.at_level("WARNING"):
    workdir_lock.acquire(tmp_path, **fast).release()
  assert "from pid %d on host elsewhere" % os.getpid() in caplog.text
  assert "its lease was last renewed 1000 s ago (stale after 180 s)" in \
      caplog.text
  # Renewed now, but its process on this host is gone (SIGKILL): at once.
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  _write_lease(tmp_path, pid=dead.pid)
  caplog.clear()
  with caplog.at_level("WARNING"):
    workdir_lock.acquire(tmp_path, **fast).release()
  assert caplog.text.rstrip().endswith("its process is gone")
  # Renewed now on another host: busy.
  _write_lease(tmp_path, host="elsewhere")
  with pytest.raises(WorkdirBusy, match="on host elsewhere"):
    workdir_lock.acquire(tmp_path, **fast)
  # An unreadable lease (a torn write) blocks nobody.
  (tmp_path / "lock.json").write_text('{"host": "elsew')
  caplog.clear()
  with caplog.at_level("WARNING"):
    workdir_lock.acquire(tmp_path, **fast).release()
  assert "its lease file is unreadable" in caplog.text


def test_a_run_on_a_busy_workdir_refuses_before_writing(tmp_path):
  lock = workdir_lock.acquire(tmp_path)
  try:
    t0 = time.time()
    with pytest.raises(WorkdirBusy, match=f"^workdir {tmp_path} is in use"):
      trainer.train_and_evaluate(tiny_config(), tmp_path)
    assert time.time() - t0 < 30   # before anything is compiled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock.json"]
  finally:
    lock.release()


def _snapshot(path):
  return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size)
          for p in path.rglob("*")}


def test_readers_neither_take_the_lock_nor_write(tmp_path):
  config = tiny_config()
  config.model.update(width=4, T=2)
  make_workdir(tmp_path, config)
  child = _holder(tmp_path)   # a training run holds the workdir
  try:
    before = _snapshot(tmp_path)
    loaded = inference.load(tmp_path)
    assert loaded.step == 5
    assert _snapshot(tmp_path) == before
    with pytest.raises(WorkdirBusy):   # still the child's
      workdir_lock.acquire(tmp_path)
  finally:
    child.kill()
    child.wait()


CLI = ["--config", "configs/base.py", "--cpu_devices=2",
       "--config.model.width=4", "--config.model.T=2",
       "--config.data.image_size=16", "--config.data.num_eval=8",
       "--config.train.batch_size=4", "--config.train.eval_batch_size=8",
       "--config.train.log_every=1", "--config.train.eval_every=1000",
       "--config.train.checkpoint_every=10", "--config.train.steps=30"]


@pytest.mark.slow
def test_a_second_train_py_refuses_and_the_first_run_completes(tmp_path):
  cache = f"--compilation_cache={tmp_path / 'cache'}"
  cmd = [sys.executable, "train.py", *CLI, f"--workdir={tmp_path / 'run'}",
         cache]
  first = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in first.stderr:
    lines.append(line)
    if "step  5/30" in line:
      break
  # Paused mid-run (as a scheduler's old job that still lives): the lock
  # stays with it.
  first.send_signal(signal.SIGSTOP)
  try:
    t0 = time.time()
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    took = time.time() - t0
  finally:
    first.send_signal(signal.SIGCONT)
  rest = first.communicate(timeout=300)[1]
  assert first.returncode == 0, rest[-2000:]
  assert second.returncode == 75, second.stderr[-2000:]
  assert took < 60
  errors = [l for l in second.stderr.splitlines() if l.startswith("error:")]
  assert errors == [l for l in second.stderr.splitlines()
                    if "error" in l.lower()]
  assert len(errors) == 1 and errors[0].startswith(
      f"error: workdir {tmp_path / 'run'} is in use by another training run "
      f"(pid {first.pid} on host {HOST}, started ")
  # The first run's records are whole: every step logged once, results.
  records = [json.loads(l) for l in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["kind"] == "train"] == list(
      range(1, 31))
  assert json.loads((tmp_path / "run" / "results.json").read_text())[
      "steps"] == 30
