"""Ends a run that stops making progress; makes SIGTERM work even then.

A train step that never returns (a collective waiting for a peer that will
not come, a stuck host callback, a dead filesystem) used to hang a run for
ever, and SIGTERM could not end it: Python runs signal handlers only between
bytecodes of the main thread, and the main thread was inside XLA. The
``Watchdog`` runs in its own thread:

* **Hang**: when no train step finishes for ``train.watchdog_s`` seconds, it
  logs which step hung, dumps the Python stack of every thread
  (``faulthandler``) and exits with ``HUNG_EXIT_CODE`` (124), so that a
  scheduler restarts the run; the restart resumes from the last checkpoint
  (Orbax writes them atomically, so exiting at any moment leaves the last
  complete one intact). ``watchdog_s = 0`` (default) is automatic: 10x the
  median step time, at least 5 minutes, once 3 steps are timed. The first
  step of a session (it compiles), evaluations and checkpoint saves get at
  least 30 minutes, also with a fixed ``watchdog_s``; ``-1`` turns the
  watchdog off. In case even this thread
  cannot run (a C extension holding the GIL), ``faulthandler``'s own timer
  exits 60 s later (exit status 1, stacks printed).
* **SIGTERM**: the first asks the loop to save a checkpoint and stop after
  the current step, as before (several processes: JAX's preemption sync
  point, so every process stops at the same step). A second SIGTERM, or a
  step that has not returned ``train.sigterm_grace_s`` seconds after the
  first, exits at once with status 143 and a message naming the last
  checkpoint. The signal reaches this thread through a wakeup file
  descriptor (``signal.set_wakeup_fd``), written by the C-level handler even
  while the main thread is blocked.

With several processes JAX's preemption notifier owns SIGTERM (a C handler
that only sets a flag). The watchdog installs its handler in front of it and
calls the C handler on the first SIGTERM, so JAX still sees it (Linux only;
elsewhere JAX's handler is left alone and a hung multi-process run ends by
the hang limit only).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import faulthandler
import math
import os
import select
import signal
import statistics
import sys
import threading
import time

import jax
from absl import logging


HUNG_EXIT_CODE = 124        # as coreutils' timeout: "it did not finish in time"
SIGTERM_EXIT_CODE = 143     # 128 + SIGTERM
AUTO_FACTOR = 10.0          # auto limit: this many median step times...
AUTO_MIN_S = 300.0          # ...but never less than this
STARTUP_S = 1800.0          # first steps (compilation), evaluations, saves
WARMUP_STEPS = 3            # timed steps before the auto limit applies
BACKSTOP_S = 60.0           # faulthandler's own exit, after the limit
POLL_S = 0.25


class _CHandler:
  """A signal's handler installed outside Python (JAX's preemption notifier:
  a C function that sets a flag), read with glibc's ``sigaction`` so that it
  can be called from Python and put back later.

  Python's ``signal.getsignal`` cannot see such a handler (it reports what
  Python itself installed), so ``find`` asks the C library.
  """

  class _Sigaction(ctypes.Structure):  # glibc's struct sigaction
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]

  _SA_SIGINFO = 4
  UNUSABLE = "unusable"

  def __init__(self, signum, libc, action):
    self.signum, self._libc, self._action = signum, libc, action
    self._call = ctypes.CFUNCTYPE(None, ctypes.c_int)(action.handler)

  @classmethod
  def find(cls, signum: int):
    """The foreign C handler of ``signum``; None if there is none (the
    default, ignored, or a Python handler); ``UNUSABLE`` if there is one that
    cannot be called from here (not Linux, a three-argument handler)."""
    if callable(signal.getsignal(signum)):
      return None  # Python's own handler
    if not sys.platform.startswith("linux"):
      return cls.UNUSABLE if signal.getsignal(signum) is None else None
    try:
      libc = ctypes.CDLL(None, use_errno=True)
      action = cls._Sigaction()
      if libc.sigaction(signum, None, ctypes.byref(action)) != 0:
        return cls.UNUSABLE
    except (OSError, AttributeError):
      return cls.UNUSABLE
    if action.handler in (None, 0, 1):
      return None  # SIG_DFL or SIG_IGN
    if action.flags & cls._SA_SIGINFO:
      return cls.UNUSABLE
    return cls(signum, libc, action)

  def __call__(self):
    self._call(self.signum)

  def restore(self):
    self._libc.sigaction(self.signum, ctypes.byref(self._action), None)


class Watchdog:
  """See the module docstring. Create it in the loop's thread, ``close()`` it.

  Steps are counted from the start of training (step n brings the count
  to n). The loop wraps the call of step n in ``calling(n)``, hands one of
  its outputs to ``dispatched(n, output)`` and calls ``wait(m)`` to block
  until step m has finished (dispatch is asynchronous: the watchdog learns
  that steps finished from these waits, and at a hang asks the outputs which
  step is the first unfinished one). It reports ``saved(n)`` (a checkpoint
  of step n is being written) and wraps evaluations and saves in
  ``phase(name)``; ``stop_requested(n)`` is the preemption test after step
  n. ``exit_fn``, ``backstop`` and ``clock`` exist for tests.
  """

  def __init__(self, watchdog_s: float = 0.0, grace_s: float = 60.0, *,
               total_steps: int | None = None, start_step: int = 0,
               exit_fn=os._exit, backstop: bool = True,
               clock=time.monotonic):
    self.watchdog_s, self.grace_s = float(watchdog_s), float(grace_s)
    self.multi = jax.process_count() > 1
    self._exit, self._total, self._clock = exit_fn, total_steps, clock
    self._backstop = backstop and self.watchdog_s >= 0
    self._lock = threading.Lock()
    self._finished, self._last = start_step, self._clock()
    self._calling, self._in_flight = None, collections.deque()
    self._first_done = False   # a step finished in this session
    self._timing = False       # the next interval is one step's time
    self._phase = None
    self._durations = collections.deque(maxlen=200)
    self._checkpoint = None
    self._stop = threading.Event()
    self._closed = threading.Event()
    self._sigterm_at, self._sigterms = None, 0
    self._armed = (None, 0.0)   # (limit, when) of the faulthandler timer
    self._c_handler, self._wakeup_fd_active = None, False
    self._signals = self._install_signals()
    self._thread = threading.Thread(target=self._watch, name="watchdog",
                                    daemon=True)
    self._thread.start()
    self._arm_backstop()

  # -- what the loop reports ------------------------------------------------
  @contextlib.contextmanager
  def calling(self, n: int):
    """Around the call of step ``n`` (it may run synchronously)."""
    self._calling = n
    try:
      yield
    finally:
      self._calling = None

  def dispatched(self, n: int, output):
    """Step ``n``'s call returned; ``output`` is ready once it has run."""
    with self._lock:
      self._in_flight.append((n, output))

  def wait(self, n: int):
    """Blocks until step ``n`` (and every step before it) has finished."""
    with self._lock:
      done = [x for m, x in self._in_flight if m <= n]
    jax.block_until_ready(done)
    with self._lock:
      while self._in_flight and self._in_flight[0][0] <= n:
        self._in_flight.popleft()
    self._finished_upto(n)

  def _finished_upto(self, n: int):
    now = self._clock()
    with self._lock:
      if n <= self._finished:
        return
      if self._timing and self._phase is None:
        self._durations.append((now - self._last) / (n - self._finished))
      self._timing = self._phase is None
      self._first_done = True
      self._finished, self._last = n, now
    self._arm_backstop()

  def _scan_in_flight(self):
    """(last dispatched step whose output is ready, first whose is not)."""
    with self._lock:
      in_flight = list(self._in_flight)
    ready = None
    for n, output in in_flight:
      try:
        done = all(x.is_ready() for x in jax.tree.leaves(output))
      except Exception:  # noqa: BLE001 -- a deleted array, a test double
        done = False
      if not done:
        return ready, n
      ready = n
    return ready, None

  def _hung_step(self) -> str:
    """The first unfinished step, from the outputs of the dispatched ones."""
    of = f" of {self._total}" if self._total else ""
    ready, first = self._scan_in_flight()
    if first is not None:
      return f"train step {first}{of}"
    calling = self._calling
    if calling is not None:
      return f"train step {calling}{of} (inside its call)"
    return (f"the loop after train step {ready or self._finished} (every "
            "dispatched step has finished: see the main thread's stack)")

  def saved(self, n: int):
    self._checkpoint = n

  @contextlib.contextmanager
  def phase(self, name: str):
    """An evaluation or a checkpoint save: the startup limit applies."""
    with self._lock:
      self._phase, self._last = name, self._clock()
    self._arm_backstop()
    try:
      yield
    finally:
      with self._lock:
        self._phase, self._last, self._timing = None, self._clock(), False
      self._arm_backstop()

  def stop_requested(self, n: int) -> bool:
    """Save and stop after step ``n``? (SIGTERM / TPU maintenance event)."""
    if self.multi:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(n)
    return self._stop.is_set()

  def limit(self) -> float:
    """Seconds the pending step (or phase) may take."""
    with self._lock:
      return self._limit_locked()

  def _limit_locked(self) -> float:
    if self._phase is not None or not self._first_done:
      return max(self.watchdog_s, STARTUP_S)
    if self.watchdog_s > 0:
      return self.watchdog_s
    if len(self._durations) < WARMUP_STEPS:
      return STARTUP_S
    return max(AUTO_MIN_S, AUTO_FACTOR * statistics.median(self._durations))

  def close(self):
    self._closed.set()
    if self._signals is not None and self._signals[3] is not None:
      os.write(self._signals[3], b"\0")  # wakes the thread's select
    self._thread.join(timeout=5)
    if self._backstop:
      faulthandler.cancel_dump_traceback_later()
    if self._signals is not None:
      previous_handler, previous_fd, rfd, wfd = self._signals
      signal.signal(signal.SIGTERM, previous_handler)
      if self._c_handler is not None:
        self._c_handler.restore()
      if rfd is not None:
        signal.set_wakeup_fd(previous_fd)
        os.close(rfd)
        os.close(wfd)
      self._signals = None

  # -- signals ----------------------------------------------------------------
  def _install_signals(self):
    """(previous handler, previous wakeup fd, read fd, write fd) or None.

    The signal reaches ``_watch`` through the wakeup fd; where something
    else owns the wakeup fd (an event loop, a notebook) the handler itself
    acts, which it can only do when the main thread runs Python.
    """
    if threading.current_thread() is not threading.main_thread():
      return None  # handlers can only be set from the main thread
    found = _CHandler.find(signal.SIGTERM)  # JAX's preemption notifier?
    if found is _CHandler.UNUSABLE:
      logging.info("SIGTERM stays with the handler installed outside Python "
                   "(JAX's preemption notifier): a second SIGTERM will not "
                   "end a hung step")
      return None
    self._c_handler = found
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    previous_fd = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    if previous_fd != -1:  # an event loop owns it: leave it alone
      signal.set_wakeup_fd(previous_fd)
      os.close(rfd)
      os.close(wfd)
      rfd = wfd = previous_fd = None
    self._wakeup_fd_active = rfd is not None
    previous_handler = signal.signal(signal.SIGTERM, self._python_handler)
    if previous_handler is None:  # set outside Python: restore() puts it back
      previous_handler = signal.SIG_DFL
    return previous_handler, previous_fd, rfd, wfd

  def _python_handler(self, signum, frame):
    del signum, frame
    if not self._wakeup_fd_active:
      self._on_sigterm()  # no wakeup fd: act here
    # else: the C-level handler has written to the wakeup fd; _watch acts.

  def _on_sigterm(self):
    self._sigterms += 1
    if self._sigterms >= 2:
      self._die(SIGTERM_EXIT_CODE, "second SIGTERM: exiting at once without "
                "saving a checkpoint")
      return
    self._sigterm_at = self._clock()
    if self._c_handler is not None:
      self._c_handler()  # JAX's preemption notifier sees the signal too
    self._stop.set()
    logging.warning("SIGTERM: saving a checkpoint after the current step (a "
                    "second SIGTERM, or the step not returning within %.0f s, "
                    "exits at once)", self.grace_s)

  # -- the thread ---------------------------------------------------------------
  def _watch(self):
    rfd = self._signals[2] if self._signals else None
    while not self._closed.is_set():
      if rfd is not None:
        ready, _, _ = select.select([rfd], [], [], POLL_S)
        if ready:
          try:
            received = os.read(rfd, 64)
          except OSError:
            received = b""
          for signum in received:
            if signum == signal.SIGTERM:
              self._on_sigterm()
      else:
        self._closed.wait(POLL_S)
      if self._closed.is_set():
        return
      self._check(self._clock())

  def _poll_finished(self):
    """Steps whose outputs became ready count as finished, also while the
    loop waits for a later one (progress is seen step by step)."""
    ready, _ = self._scan_in_flight()
    if ready is not None:
      self._finished_upto(ready)

  def _check(self, now: float):
    self._poll_finished()
    with self._lock:
      waited = now - self._last
      limit = self._limit_locked()
      phase = self._phase
      since_sigterm = (None if self._sigterm_at is None or
                       self._last > self._sigterm_at else now - self._sigterm_at)
    saving = phase is not None and phase.startswith("checkpoint")
    if since_sigterm is not None and since_sigterm > self.grace_s and not saving:
      self._die(SIGTERM_EXIT_CODE,
                f"SIGTERM: {phase or self._hung_step()} did not return within "
                f"train.sigterm_grace_s = {self.grace_s:.0f} s; exiting at "
                "once without saving a checkpoint")
    elif self.watchdog_s >= 0 and waited > limit:
      how = ("train.watchdog_s" if self.watchdog_s > 0 else
             f"auto: {AUTO_FACTOR:.0f}x the median step time, at least "
             f"{AUTO_MIN_S:.0f} s; {STARTUP_S:.0f} s for the first step, "
             "evaluations and saves")
      self._die(HUNG_EXIT_CODE,
                f"watchdog: {phase or self._hung_step()} hung: nothing finished for "
                f"{waited:.0f} s (limit {limit:.0f} s, {how}); the stack of "
                "every thread follows")

  def _die(self, code: int, message: str):
    ckpt = (f"the last checkpoint is step {self._checkpoint}"
            if self._checkpoint is not None else "no checkpoint was saved by "
            "this session")
    line = (f"{message}; {ckpt}. Exiting with status {code}; rerun the same "
            "command to resume.")
    print(line, file=sys.stderr, flush=True)
    if code == HUNG_EXIT_CODE:
      try:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
      except (AttributeError, ValueError, OSError):  # stderr without a fileno
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    for stream in (sys.stdout, sys.stderr):
      with contextlib.suppress(Exception):
        stream.flush()
    self._exit(code)
    self._closed.set()  # only reached with a test's exit_fn

  def _arm_backstop(self):
    if not self._backstop or self._closed.is_set():
      return
    # Re-arming costs ~0.1 ms (a new timer thread): at most once a second
    # unless the limit changed; the timer is BACKSTOP_S late anyway.
    limit, now = self.limit(), time.monotonic()
    if limit != self._armed[0] or now - self._armed[1] > 1.0:
      faulthandler.dump_traceback_later(limit + BACKSTOP_S, exit=True)
      self._armed = (limit, now)
