"""One writer per workdir: the lock a training run takes before it writes.

Two runs writing one workdir (a scheduler restarting a job whose old process
still lives, a command started twice, two overrides sharing ``runs/base``)
interleave their checkpoints and overwrite each other's ``metrics.jsonl``.
``acquire(workdir)`` is called by the training loop before it writes anything;
a second run then refuses within seconds with one line naming the workdir and
the holder (``WorkdirBusy``; ``train.py`` exits with status 75).

The lock is ``<workdir>/lock.json``: the holder's host, pid, start time and a
random token, as JSON.

* **Local and network filesystems**: the file is held with ``fcntl.flock``.
  The kernel drops the lock when its process ends in any way (also SIGKILL),
  so a local lock is never stale and there is nothing to take over: stop the
  run that holds it.
* **Object stores** (``gs://``, ``s3://``: no locks there): the file is a
  lease. Its holder rewrites the ``heartbeat`` time every ``HEARTBEAT_S``
  seconds; a lease not renewed for ``STALE_S`` seconds is stale, and the next
  run takes it over and says so. A lease whose holder ran on this host and
  whose process is gone (killed) is taken over at once. ``takeover=True``
  (``train.py --takeover_lock``) takes a live lease at once: for a run known
  to be gone whose lease is not stale yet (its VM was preempted a minute
  ago). A new lease is written, then read back ``SETTLE_S`` later: of two runs
  that start together only the one whose write landed last finds its own
  token and goes on. A run whose lease was taken over stops at its next
  checkpoint save (``WorkdirTakenOver``) instead of writing on beside the new
  holder. Lease ages compare the hosts' clocks (NTP-synchronised on cloud
  VMs).

Several processes (a TPU pod): process 0 takes the lock; the others wait for
its answer, and all raise if it could not be taken. Readers
(``scnn_jax.runtime.inference``, the inpainting command, the ablation export,
the table scripts) never take it and never write to the workdir.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid

from absl import logging
from etils import epath

LOCK_FILE = "lock.json"
HEARTBEAT_S = 30.0      # how often a lease holder renews its lease
STALE_S = 180.0         # a lease not renewed for this long is taken over
SETTLE_S = 1.0          # a new lease is read back this much later


class WorkdirBusy(RuntimeError):
  """Another training run holds the workdir's lock."""


class WorkdirTakenOver(WorkdirBusy):
  """Another run took this run's lease over: this one must stop writing."""


def is_object_store(path) -> bool:
  return "://" in str(path)


def _proc_start(pid: int) -> str | None:
  """The start time of process ``pid`` (Linux, clock ticks since boot): with
  the pid it names a process even after the pid is reused."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      return f.read().rsplit(b")", 1)[1].split()[19].decode()
  except (OSError, IndexError):
    return None


def _alive_here(info: dict) -> bool | None:
  """Whether the holder described by ``info`` runs on this host (True or
  False), or None when it ran on another host."""
  if info.get("host") != socket.gethostname():
    return None
  pid = info.get("pid")
  if not isinstance(pid, int):
    return None
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # someone else's process: it exists
  start = info.get("pid_start")
  return start is None or _proc_start(pid) in (None, start)


def describe(info: dict | None) -> str:
  """``pid 123 on host h, started 2026-11-26 10:00:00 UTC``."""
  if not info:
    return "a run whose lock file is being written or is unreadable"
  started = info.get("started")
  when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
          if isinstance(started, (int, float)) else "at an unknown time")
  return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, "
          f"started {when}")


def _holder_info(token: str) -> dict:
  now = time.time()
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "pid_start": _proc_start(os.getpid()), "started": now,
          "heartbeat": now, "token": token}


def _read(path: epath.Path) -> dict | None:
  """The lock file's JSON; None when it is absent, empty or unreadable."""
  try:
    info = json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}
  return info if isinstance(info, dict) else {}


def _write(path: epath.Path, info: dict) -> None:
  """Replaces the lease whole: one upload on an object store; a temporary
  file renamed over it elsewhere, so no reader sees half of it."""
  if is_object_store(path):
    path.write_text(json.dumps(info))
    return
  tmp = path.with_name(f"{path.name}.{info['token']}.tmp")
  tmp.write_text(json.dumps(info))
  tmp.replace(path)


class Lock:
  """A held workdir lock; ``release()`` it (also a context manager).

  ``check()`` raises ``WorkdirTakenOver`` once another run has taken the
  lease over (object stores; a local lock cannot be taken).
  """

  def __init__(self, path: epath.Path, info: dict | None, fd: int | None,
               heartbeat_s: float):
    self.path, self.info, self._fd = path, info, fd
    self._lost: dict | None = None
    self._stop = threading.Event()
    self._thread = None
    if info is not None and fd is None:   # a lease: keep it renewed
      self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,),
                                      name="workdir-lease", daemon=True)
      self._thread.start()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()

  def check(self) -> None:
    if self._lost is not None:
      raise WorkdirTakenOver(
          f"the lock of workdir {self.path.parent} was taken over by "
          f"{describe(self._lost)}: this run stopped without writing more "
          "(only one run may write a workdir)")

  def _beat(self, every: float):
    failing = False
    while not self._stop.wait(every):
      try:
        try:
          now = json.loads(self.path.read_text())
        except FileNotFoundError:
          now = None            # removed: no longer this run's either
        except ValueError:
          now = {}
        # Any other error (the store unreachable) is retried below.
        if not isinstance(now, dict) or now.get("token") != self.info["token"]:
          self._lost = now if isinstance(now, dict) else {}
          logging.error("%s: the lease is no longer this run's (now held by "
                        "%s)", self.path, describe(now))
          return
        self.info = {**self.info, "heartbeat": time.time()}
        _write(self.path, self.info)
        failing = False
      except Exception as e:  # noqa: BLE001 - retried at the next beat
        if not failing:
          logging.warning("cannot renew the lease %s (%s: %s); retrying every "
                          "%.0f s", self.path, type(e).__name__, e, every)
        failing = True

  def release(self) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join(timeout=10)
      self._thread = None
      with contextlib.suppress(Exception):
        held = _read(self.path)
        if held and held.get("token") == self.info["token"]:
          self.path.unlink()
    if self._fd is not None:
      import fcntl
      with contextlib.suppress(OSError):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _acquire_local(workdir: epath.Path, path: epath.Path) -> Lock:
  import fcntl
  fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise WorkdirBusy(
        f"workdir {workdir} is in use by another training run "
        f"({describe(_read(path))}; lock {path}): only one run may write a "
        "workdir. Wait for it or stop it, or train in another --workdir"
        ) from None
  except BaseException:
    os.close(fd)
    raise
  info = _holder_info(uuid.uuid4().hex)
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(info).encode(), 0)
  os.fsync(fd)
  return Lock(path, info, fd, 0.0)


def _acquire_lease(workdir: epath.Path, path: epath.Path, takeover: bool,
                   stale_s: float, heartbeat_s: float,
                   settle_s: float) -> Lock:
  held = _read(path)
  if held is not None:
    age = time.time() - held.get("heartbeat", 0.0) if held else float("inf")
    alive = _alive_here(held) if held else None
    if alive is False:
      why = "its process is gone"
    elif age > stale_s:
      why = (f"its lease was last renewed {age:.0f} s ago (stale after "
             f"{stale_s:.0f} s)" if held else "its lease file is unreadable")
    elif takeover:
      why = "--takeover_lock"
    else:
      raise WorkdirBusy(
          f"workdir {workdir} is in use by another training run "
          f"({describe(held)}; lease {path} renewed {age:.0f} s ago): only "
          f"one run may write a workdir. The lease is taken over once it "
          f"has not been renewed for {stale_s:.0f} s, or at once with "
          "--takeover_lock if that run is gone")
    logging.warning("taking over the lock of workdir %s from %s: %s",
                    workdir, describe(held), why)
  info = _holder_info(uuid.uuid4().hex)
  _write(path, info)
  time.sleep(settle_s)
  now = _read(path)
  if not now or now.get("token") != info["token"]:
    raise WorkdirBusy(
        f"workdir {workdir} is in use by another training run "
        f"({describe(now)}; lease {path}), which started at the same time "
        "as this one: only one run may write a workdir")
  return Lock(path, info, None, heartbeat_s)


def acquire(workdir, *, takeover: bool = False, stale_s: float = STALE_S,
            heartbeat_s: float = HEARTBEAT_S, settle_s: float = SETTLE_S,
            lease: bool | None = None) -> Lock:
  """Takes the lock of ``workdir`` (which must exist) for this run.

  Raises ``WorkdirBusy`` (one line naming the workdir and the holder) when
  another run holds it. Every process calls it; process 0 takes the lock.
  ``lease``: force the object-store lease (True) or ``flock`` (False)
  instead of choosing by the path (tests).
  """
  import jax
  workdir = epath.Path(workdir)
  path = workdir / LOCK_FILE
  use_lease = is_object_store(workdir) if lease is None else lease

  def take():
    if use_lease:
      return _acquire_lease(workdir, path, takeover, stale_s, heartbeat_s,
                            settle_s)
    return _acquire_local(workdir, path)

  if jax.process_count() == 1:
    return take()
  import numpy as np
  from jax.experimental import multihost_utils
  lock, error = Lock(path, None, None, 0.0), None
  if jax.process_index() == 0:
    try:
      lock = take()
    except Exception as e:  # noqa: BLE001 - re-raised once all processes know
      error = e
  ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
  if error is not None:
    raise error
  if not ok:
    raise WorkdirBusy(f"workdir {workdir}: process 0 could not take its lock "
                      "(its error says why)")
  return lock
