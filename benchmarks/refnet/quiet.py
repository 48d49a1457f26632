"""The quiet-machine gate of reference_net.py: a measured process starts only
when other processes leave the cores alone, and its record says how loaded
the machine was before, during and after it.

Speed figures from a shared 2-core machine depend more on the neighbours
than on the code (BENCHMARKS.md once showed 0.2 steps/s for a step that runs
at 2.4 on the same machine when quiet), and the libraries suffer unequally:
PyTorch's OpenMP threads wait for each other at every op and lose more than
XLA's when a core is taken. So the runner waits for quiet, refuses with one
line naming the load when it does not come, and writes the loads down.

Two measures, because the 1-minute load average lags: it is what a reader
knows and what the reports print, but it still counts the benchmark's own
previous process for a minute or two (a 30 s process on 2 cores leaves ~0.8
behind it, decaying with a 1-minute time constant), and holding every
process to it would add about a minute of waiting per process. Before the
first process nothing of ours has run, so the gate holds the 1-minute load
itself to ``max_load``. Before every process it also samples for
``sample_s`` seconds, while the runner sleeps, how many cores the rest of
the machine keeps busy (/proc/stat, steal time included: a hypervisor's
other guests take cores too) and holds that to ``max_busy``: the same
question without the lag. During the process it subtracts the process's
own CPU time from the machine's busy time, so a neighbour that started
mid-measurement marks the record "loaded" too.

Framework-neutral and free of measuring: the readers, ``sleep`` and the
clock are parameters, so tests drive it with fake ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable


def read_loadavg(path: str = "/proc/loadavg") -> tuple[float, float, float]:
  """The 1-, 5- and 15-minute load averages."""
  with open(path) as f:
    one, five, fifteen = f.read().split()[:3]
  return float(one), float(five), float(fifteen)


def read_cpu_times(path: str = "/proc/stat") -> tuple[float, float]:
  """(busy, total) CPU seconds of the whole machine since boot, all cores.

  Busy = user + nice + system + irq + softirq + steal (guest time is already
  inside user); total adds idle and iowait.
  """
  with open(path) as f:
    fields = [int(v) for v in f.readline().split()[1:]]
  fields += [0] * (8 - len(fields))
  user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
  tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
  busy = user + nice + system + irq + softirq + steal
  return busy / tick, (busy + idle + iowait) / tick


class LoadRefused(Exception):
  """The machine did not become quiet in time; ``str()`` is the one line
  the runner prints."""


def _fmt_load(load) -> str:
  return " / ".join(f"{x:.2f}" for x in load)


@dataclasses.dataclass
class Gate:
  """Waits for quiet before each measured process and records the loads.

  ``before()`` returns the gate record of the next process (or raises
  ``LoadRefused``); ``after(record, child_cpu_s)`` completes it once the
  process has exited. ``allow_load``: measure anyway when the wait runs
  out, and mark the records ``loaded``.
  """

  max_load: float = 0.5
  max_busy: float = 0.2
  wait_s: float = 600.0
  poll_s: float = 10.0
  sample_s: float = 3.0
  allow_load: bool = False
  cores: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
  read_loadavg: Callable[[], tuple] = read_loadavg
  read_cpu: Callable[[], tuple] = read_cpu_times
  sleep: Callable[[float], None] = time.sleep
  clock: Callable[[], float] = time.monotonic
  say: Callable[[str], None] = print
  started: bool = False  # a measured process has run: its load still counts

  def busy_cores(self) -> float:
    """Cores the machine keeps busy over ``sample_s`` while we sleep."""
    busy0, total0 = self.read_cpu()
    self.sleep(self.sample_s)
    busy1, total1 = self.read_cpu()
    return _cores(busy1 - busy0, total1 - total0, self.cores)

  def _reasons(self, load, busy) -> list[str]:
    out = []
    if not self.started and load[0] > self.max_load:
      out.append(f"1-minute load {load[0]:.2f} > {self.max_load:g}")
    if busy > self.max_busy:
      out.append(f"other processes busy on {busy:.2f} of {self.cores} cores "
                 f"> {self.max_busy:g}")
    return out

  def refusal(self, load, busy, waited_s) -> str:
    waited = (f"{waited_s:.0f} s" if waited_s < 120 else
              f"{waited_s / 60:.0f} min")
    return (f"refused: not a quiet machine after {waited} of waiting: "
            f"1-minute load {load[0]:.2f} (1 / 5 / 15 min: "
            f"{_fmt_load(load)}), other processes busy on {busy:.2f} of "
            f"{self.cores} cores (limits: load {self.max_load:g} before the "
            f"first process, {self.max_busy:g} busy cores before each); stop "
            f"them or pass --allow-load to measure anyway (records marked "
            f"loaded)")

  def before(self) -> dict:
    t0 = last_said = None
    while True:
      load = self.read_loadavg()
      busy = self.busy_cores()
      reasons = self._reasons(load, busy)
      t0 = self.clock() if t0 is None else t0  # the first sample is no wait
      waited = self.clock() - t0
      if not reasons:
        loaded = False
        break
      if waited >= self.wait_s:
        if not self.allow_load:
          raise LoadRefused(self.refusal(load, busy, waited))
        self.say(f"  measuring on a loaded machine (--allow-load): "
                 f"{'; '.join(reasons)}")
        loaded = True
        break
      if last_said is None or waited - last_said >= 60:
        self.say(f"  waiting for a quiet machine ({waited:.0f} s of "
                 f"{self.wait_s:.0f}): {'; '.join(reasons)}")
        last_said = waited
      self.sleep(min(self.poll_s, max(self.wait_s - waited, 0.0)))
    return {"load_before": list(load), "others_before": round(busy, 3),
            "waited_s": round(waited, 1), "loaded": loaded,
            "_cpu0": self.read_cpu()}

  def after(self, record: dict, child_cpu_s: float) -> dict:
    """Completes ``record``: the load after, the cores other processes used
    while it ran (machine busy time less the process's own CPU time)."""
    busy1, total1 = self.read_cpu()
    busy0, total0 = record.pop("_cpu0")
    window_s = (total1 - total0) / self.cores
    others = (_cores(busy1 - busy0 - child_cpu_s, total1 - total0, self.cores)
              if window_s > 0 else float("nan"))
    others = max(others, 0.0) if not math.isnan(others) else others
    record.update(load_after=list(self.read_loadavg()),
                  others_during=round(others, 3))
    if others > self.max_busy:
      record["loaded"] = True
    self.started = True
    return record


def _cores(busy_s: float, total_s: float, cores: int) -> float:
  """Busy CPU seconds over a window as a number of cores."""
  return busy_s / (total_s / cores) if total_s > 0 else 0.0


def summary(records) -> str:
  """One sentence on the loads of ``records`` (each with a gate record's
  fields), for the reports."""
  recs = [r for r in records if "load_before" in r]
  if not recs:
    return "loads not recorded (measured before the quiet-machine gate)"
  lo = lambda key: min(r[key][0] for r in recs)
  hi = lambda key: max(r[key][0] for r in recs)
  during = [r["others_during"] for r in recs
            if not math.isnan(r.get("others_during", float("nan")))]
  loaded = sum(bool(r.get("loaded")) for r in recs)
  return (f"{len(recs)} measured processes; 1-minute load "
          f"{lo('load_before'):.2f}-{hi('load_before'):.2f} before them and {lo('load_after'):.2f}-"
          f"{hi('load_after'):.2f} after (their own load included); other "
          f"processes used at most {max(during, default=0.0):.2f} cores while "
          f"they ran; {loaded} marked loaded")
