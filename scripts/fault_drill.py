"""Fault drills: kill, preempt and corrupt a real training run, check nothing is lost.

    python scripts/fault_drill.py [--trials 5] [--steps 120] [--drills ...]

Each drill trains the same tiny ``configs/base.py`` run through ``train.py``
in fresh processes and compares the final parameters BITWISE with an
uninterrupted run of the same command:

* sigkill: ``kill -9`` at random moments (some right as a checkpoint save
  starts), restart the same command until it finishes.
* sigterm: SIGTERM at random moments; the run must exit 143 within 60 s with a
  checkpoint at the step it reached, and resume from exactly that step.
* corrupt: truncate / strip metadata / overwrite with garbage the newest
  checkpoint of a finished-half run; the restart must warn, fall back to the
  previous checkpoint and finish.
* hang: a step made to hang (a host callback that sleeps for an hour) at
  random steps; the watchdog (``train.watchdog_s=10``) must end the run with
  status 124 naming the step, and the restart resume from the newest
  checkpoint. Then SIGTERM during a hung step: once (exit 143 after
  ``train.sigterm_grace_s=3``), and twice (exit 143 at once).

* busy: a second run of the same command while the first is paused (as a
  scheduler's old job that still lives) must exit 75 within 60 s with one
  line naming the workdir and the holder; the first then finishes with every
  step logged once.
* disk full: the workdir on a tmpfs (a private mount namespace) too small
  for the run, sized at random; the run must exit 74 with one line naming
  the path and the last complete checkpoint (no traceback), and the same
  command, once the tmpfs is enlarged, resume from that checkpoint. Needs
  ``unshare`` and the right to mount (root, or user namespaces).
* gs://: SIGKILL at random moments of a run whose workdir is on a GCS
  emulator on localhost (fake-gcs-server, ``tests/gcs_emulator.py``); each
  restart takes over the dead run's lease and resumes.

``--drills`` picks some (default: all). ``--stress-json`` adds the rows of a
``scripts/stress_drill.py`` result (the multi-host 2-process command, many
times) to the table.

"nothing lost" means: every restart resumed from the newest complete
checkpoint on disk, no complete checkpoint vanished except by the keep-last-k
rotation, and the final parameters equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cmd(workdir, steps, every):
  return [sys.executable, "train.py", "--config", "configs/base.py",
          f"--workdir={workdir}", "--cpu_devices=2",
          "--config.model.width=4", "--config.model.T=2",
          "--config.data.image_size=16", "--config.data.num_eval=8",
          "--config.train.batch_size=4", "--config.train.eval_batch_size=8",
          "--config.train.log_every=1", "--config.train.eval_every=100000",
          f"--config.train.checkpoint_every={every}",
          "--config.train.keep_checkpoints=2",
          f"--config.train.steps={steps}"]


def complete_steps(workdir) -> list[int]:
  d = Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir()
                if p.name.isdigit()) if d.exists() else []


def final_params(workdir):
  import jax
  from scnn_jax.runtime import inference
  return jax.device_get(inference.load(workdir).state["params"])


def same(a, b) -> bool:
  import jax
  import numpy as np
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def run_until(workdir, steps, every, stop_at_step, sig, delay, env=None):
  """Starts the run, sends ``sig`` once it logs ``stop_at_step``."""
  proc = subprocess.Popen(cmd(workdir, steps, every), cwd=REPO, text=True,
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          env=env)
  resumed_from, sent = 0, False
  pattern = re.compile(r"\bstep\s+(\d+)/%d" % steps)
  lines = []
  for line in proc.stderr:
    lines.append(line)
    m = re.search(r"resuming from step (\d+)", line)
    if m:
      resumed_from = int(m.group(1))
    m = pattern.search(line)
    if m and not sent and int(m.group(1)) >= stop_at_step:
      time.sleep(delay)
      proc.send_signal(sig)
      sent = True
      t_sent = time.time()
  proc.wait()
  return {"code": proc.returncode, "resumed_from": resumed_from,
          "sent": sent, "exit_s": time.time() - t_sent if sent else None,
          "log": "".join(lines)}


# train.py with the step whose state step is $FAULT_DRILL_HANG_AT made to hang.
HANGING_TRAIN = r"""
import importlib, os, sys, time
import jax
from scnn_jax.cli import train
from scnn_jax.training import trainer

hang_at = int(os.environ["FAULT_DRILL_HANG_AT"])
# Where the loop gets its per-device train step from.
where = (trainer if hasattr(trainer, "make_train_step") else
         importlib.import_module("scnn_jax.runtime.steps"))
real = where.make_train_step

def make_train_step(*args, **kwargs):
  step = real(*args, **kwargs)
  def hanging(state, batch, key):
    def host(s):
      if int(s) == hang_at:
        print("HANGING", flush=True)
        time.sleep(3600)
    jax.debug.callback(host, state["step"])
    return step(state, batch, key)
  return hanging

where.make_train_step = make_train_step
sys.argv[0] = "train.py"
train.run()
"""


def run_hanging(workdir, steps, every, hang_at, flags, sigterms=0):
  """Trains until step ``hang_at + 1`` hangs; sends ``sigterms`` SIGTERMs."""
  proc = subprocess.Popen(
      [sys.executable, "-c", HANGING_TRAIN, *cmd(workdir, steps, every)[2:],
       *flags], cwd=REPO, text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, env={**os.environ,
                                   "FAULT_DRILL_HANG_AT": str(hang_at)})
  for line in proc.stdout:
    if "HANGING" in line:
      break
  t_hang = time.time()
  for _ in range(sigterms):
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
  try:
    _, err = proc.communicate(timeout=300)
  except subprocess.TimeoutExpired:
    proc.kill()
    _, err = proc.communicate()
  return proc.returncode, time.time() - t_hang, err


def drill_hang(tmp, reference, steps, every, trials):
  rng = random.Random(2)
  workdir = tmp / "drill_hang"
  step = r"train step {n} of %d( \(inside its call\))?" % steps
  cases = [("watchdog", ["--config.train.watchdog_s=10"], 0, 124,
            "watchdog: " + step + " hung")] * trials + [
      ("SIGTERM once", ["--config.train.watchdog_s=-1",
                        "--config.train.sigterm_grace_s=3"], 1, 143,
       "SIGTERM: " + step + " did not return within "
       r"train.sigterm_grace_s = 3 s"),
      ("SIGTERM twice", ["--config.train.watchdog_s=-1"], 2, 143,
       "second SIGTERM: exiting at once")]
  width = (steps - 20) // len(cases)
  passed, lost = 0, False
  for i, (name, flags, sigterms, want, text) in enumerate(cases):
    before = complete_steps(workdir)
    hang_at = max(3 + i * width + rng.randrange(width),
                  (before[-1] if before else 0) + 3)
    code, took, err = run_hanging(workdir, steps, every, hang_at, flags,
                                  sigterms)
    after = complete_steps(workdir)
    ok = (code == want and re.search(text.format(n=hang_at + 1), err) and
          (before[-1] if before else 0) <= (after[-1] if after else 0)
          <= hang_at)
    ok &= f"the last checkpoint is step {after[-1]}" in err if after else True
    lost |= any(s >= (after[-2] if len(after) > 1 else 0)
                for s in before if s not in after)
    passed += ok
    print(f"  {name}: step {hang_at + 1} hung; exit {code} {took:.1f} s "
          f"later, checkpoints now {after}{'' if ok else '  <-- FAILED'}",
          flush=True)
    if not ok:
      print(err[-2000:], flush=True)
  code, resumed, err = finish(workdir, steps, every)
  equal = code == 0 and same(final_params(workdir), reference)
  print(f"  finished (resumed from {resumed}): params equal to uninterrupted "
        f"run: {equal}", flush=True)
  return len(cases), passed, equal and not lost


def finish(workdir, steps, every, env=None):
  out = subprocess.run(cmd(workdir, steps, every), cwd=REPO, text=True,
                       capture_output=True, env=env)
  m = re.search(r"resuming from step (\d+)", out.stderr)
  return out.returncode, int(m.group(1)) if m else 0, out.stderr


def drill_kill(tmp, reference, steps, every, trials, sig):
  rng = random.Random(0 if sig == signal.SIGKILL else 1)
  workdir = tmp / f"drill_{sig.name.lower()}"
  passed, lost = 0, False
  # One target in each of `trials` equal segments of the run, and always a
  # few steps past the checkpoint the run will resume from: a target it has
  # already passed would only fire as the run finishes (a drill bug, not a
  # trainer one).
  width = (steps - 20) // trials
  for i in range(trials):
    before = complete_steps(workdir)
    start = before[-1] if before else 0
    target = 3 + i * width + rng.randrange(width)
    if sig == signal.SIGKILL and i % 2:
      # Half of the SIGKILLs land right as a checkpoint save starts.
      target = max(target - target % every, every)
    target = min(max(target, start + 3), steps - 15)
    r = run_until(workdir, steps, every, target, sig,
                  delay=rng.uniform(0.0, 0.3))
    after = complete_steps(workdir)
    ok = r["sent"] and r["resumed_from"] == (before[-1] if before else 0)
    if sig == signal.SIGTERM:
      ok &= r["code"] == 143 and r["exit_s"] < 60 and bool(after) and \
          f"checkpoint saved at step {after[-1]}" in r["log"]
    else:
      ok &= r["code"] == -signal.SIGKILL
    # A complete checkpoint may only vanish by keep-last-k rotation.
    rotated = [s for s in before if s not in after]
    lost |= any(s >= (after[-2] if len(after) > 1 else 0) for s in rotated)
    passed += ok
    print(f"  {sig.name} at step >= {target}: exit {r['code']}, resumed "
          f"from {r['resumed_from']}, checkpoints now {after}"
          f"{'' if ok else '  <-- FAILED'}", flush=True)
  code, resumed, err = finish(workdir, steps, every)
  equal = code == 0 and same(final_params(workdir), reference)
  print(f"  finished (resumed from {resumed}): params equal to uninterrupted "
        f"run: {equal}", flush=True)
  return trials, passed, equal and not lost


def drill_corrupt(tmp, reference, steps, every):
  damages = {
      "truncated files": lambda d: [_truncate(f) for f in _files(d)],
      "missing metadata": lambda d: [os.remove(f) for f in _files(d)
                                     if os.path.basename(f) in (
                                         "_METADATA", "manifest.ocdbt")],
      "garbage bytes": lambda d: [_garbage(f) for f in _files(d)],
  }
  passed = 0
  equal_all = True
  for name, damage in damages.items():
    workdir = tmp / f"drill_corrupt_{name.replace(' ', '_')}"
    half = steps // 2
    subprocess.run(cmd(workdir, half, every), cwd=REPO, capture_output=True,
                   check=True)
    latest = complete_steps(workdir)[-1]
    damage(Path(workdir) / "checkpoints" / str(latest))
    code, resumed, err = finish(workdir, steps, every)
    ok = (code == 0 and "is unreadable" in err and resumed < latest and
          any(p.name.startswith(f"{latest}.corrupt-")
              for p in (Path(workdir) / "checkpoints").iterdir()))
    equal = ok and same(final_params(workdir), reference)
    passed += ok
    equal_all &= equal
    print(f"  {name}: fell back to step {resumed} (latest was {latest}), "
          f"final params equal: {equal}{'' if ok else '  <-- FAILED'}",
          flush=True)
  return len(damages), passed, equal_all


def drill_busy(tmp, reference, steps, every, trials):
  rng = random.Random(3)
  passed, intact = 0, True
  for i in range(trials):
    workdir = tmp / f"drill_busy_{i}"
    target = rng.randrange(3, steps - 10)
    first = subprocess.Popen(cmd(workdir, steps, every), cwd=REPO, text=True,
                             stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
    pattern = re.compile(r"\bstep\s+(\d+)/%d" % steps)
    for line in first.stderr:
      m = pattern.search(line)
      if m and int(m.group(1)) >= target:
        break
    first.send_signal(signal.SIGSTOP)
    try:
      t0 = time.time()
      second = subprocess.run(cmd(workdir, steps, every), cwd=REPO,
                              text=True, capture_output=True, timeout=300)
      took = time.time() - t0
    finally:
      first.send_signal(signal.SIGCONT)
    first.communicate()
    errors = [l for l in second.stderr.splitlines() if l.startswith("error")]
    ok = (second.returncode == 75 and took < 60 and len(errors) == 1 and
          errors[0].startswith(f"error: workdir {workdir} is in use by "
                               f"another training run (pid {first.pid} ")
          and first.returncode == 0)
    logged = [json.loads(l) for l in
              (workdir / "metrics.jsonl").read_text().splitlines()]
    whole = [r["step"] for r in logged if r["kind"] == "train"] == list(
        range(1, steps + 1))
    equal = first.returncode == 0 and same(final_params(workdir), reference)
    passed += ok and whole
    intact &= equal and whole
    print(f"  second run at step >= {target}: exit {second.returncode} "
          f"{took:.1f} s later; first run: exit {first.returncode}, every "
          f"step logged once: {whole}, params equal: {equal}"
          f"{'' if ok and whole else '  <-- FAILED'}", flush=True)
    if not ok:
      print(second.stderr[-1500:], flush=True)
  return trials, passed, intact


# The disk-full drill, in a private mount namespace: a tmpfs of $SIZE kB,
# the run, the tmpfs enlarged, the same command again; stderr and exit
# status of both to $OUT, the finished workdir copied out.
DISK_FULL = """
set -u
mount -t tmpfs -o size=${SIZE}k tmpfs "$MNT" || exit 90
$CMD 2> "$OUT/full.err"; echo $? > "$OUT/full.rc"
mount -o remount,size=100m "$MNT"
$CMD 2> "$OUT/room.err"; echo $? > "$OUT/room.rc"
cp -a "$MNT/run" "$OUT/final"
"""


def _unshare_flags():
  for flags in (["--mount"], ["--user", "--map-root-user", "--mount"]):
    if shutil.which("unshare") and subprocess.run(
        ["unshare", *flags, "--propagation", "private", "true"],
        capture_output=True).returncode == 0:
      return flags
  return None


def drill_disk_full(tmp, reference, steps, every, trials):
  flags = _unshare_flags()
  if flags is None:
    print("  skipped: no private mount namespace (unshare --mount)")
    return trials, 0, False
  rng = random.Random(4)
  ref_kb = int(subprocess.run(["du", "-sk", str(tmp / "reference")],
                              capture_output=True, text=True
                              ).stdout.split()[0])
  passed, intact = 0, True
  for i in range(trials):
    mnt, out = tmp / f"disk_full_{i}_mnt", tmp / f"disk_full_{i}"
    mnt.mkdir()
    out.mkdir()
    size = int(ref_kb * rng.uniform(0.55, 1.0))
    env = {**os.environ, "MNT": str(mnt), "OUT": str(out),
           "SIZE": str(size), "CMD": " ".join(
               shlex.quote(a) for a in cmd(mnt / "run", steps, every))}
    subprocess.run(["unshare", *flags, "--propagation", "private", "bash",
                    "-c", DISK_FULL], cwd=REPO, env=env, capture_output=True)
    if not (out / "room.rc").exists():
      print(f"  {size} kB: the tmpfs could not be mounted  <-- FAILED")
      intact = False
      continue
    code = int((out / "full.rc").read_text())
    err = (out / "full.err").read_text()
    errors = [l for l in err.splitlines() if l.startswith("error")]
    named = re.search(r"the last complete checkpoint is step (\d+)",
                      errors[0] if errors else "")
    last = named.group(1) if named else "0"   # none yet: starts from 0
    room_code = int((out / "room.rc").read_text())
    resumed = re.search(r"resuming from step (\d+)",
                        (out / "room.err").read_text())
    checks = {
        "exit 74": code == 74,
        "one error line: the disk is full": len(errors) == 1 and
        errors[0].startswith("error: the disk is full"),
        "no traceback or asyncio noise": "Traceback" not in err and
        "Event loop is closed" not in err,
        "with room: exit 0": room_code == 0,
        "resumed from the named step": (resumed.group(1) if resumed
                                        else "0") == last,
    }
    equal = room_code == 0 and same(final_params(out / "final"), reference)
    ok = all(checks.values())
    passed += ok
    intact &= equal
    failed = ", ".join(k for k, v in checks.items() if not v)
    print(f"  {size} kB tmpfs: exit {code}, last complete step {last}; "
          f"with room: exit {room_code}, resumed from "
          f"{resumed.group(1) if resumed else 0}, params equal: {equal}"
          f"{'  <-- FAILED: ' + failed if failed else ''}", flush=True)
    if not ok:
      print(err[-2000:], flush=True)
  return trials, passed, intact


def drill_gcs(tmp, reference, steps, every, trials):
  from tests import gcs_emulator
  rng = random.Random(5)
  workdir = "gs://bucket/drill"
  with gcs_emulator.running() as url:
    env = {**os.environ, **gcs_emulator.env(url)}
    gcs_emulator.use_in_this_process(url)
    from scnn_jax.runtime import checkpoint

    def latest():
      gcs_emulator.forget_listings()
      return checkpoint.last_complete_step(f"{workdir}/checkpoints") or 0

    passed, width = 0, (steps - 20) // trials
    for i in range(trials):
      start = latest()
      target = min(max(3 + i * width + rng.randrange(width), start + 3),
                   steps - 15)
      r = run_until(workdir, steps, every, target, signal.SIGKILL,
                    rng.uniform(0.0, 0.3), env=env)
      taken = i == 0 or "its process is gone" in r["log"]
      ok = (r["sent"] and r["code"] == -signal.SIGKILL and taken and
            r["resumed_from"] == start)
      passed += ok
      print(f"  SIGKILL at step >= {target}: resumed from "
            f"{r['resumed_from']}, lease taken over: {taken}, latest "
            f"checkpoint now {latest()}{'' if ok else '  <-- FAILED'}",
            flush=True)
    code, resumed, err = finish(workdir, steps, every, env=env)
    gcs_emulator.forget_listings()
    equal = code == 0 and same(final_params(workdir), reference)
    print(f"  finished (resumed from {resumed}): params equal to "
          f"uninterrupted run: {equal}", flush=True)
  return trials, passed, equal


def stress_rows(path):
  """(drill, trials, passed, identical) rows of a stress_drill.py JSON."""
  if not path:
    return []
  import json
  r = json.loads(Path(path).read_text())
  names = {"quiet": "2 processes x 4 CPU devices, multi-host command, in a row",
           "preempt": "the same, SIGTERM to both processes, resume",
           "load": "the same, a third process loading every core"}
  return [(f"{names[p]} ({r['steps']} steps)", r["runs"][p], r["finished"][p],
           r["identical_results"]) for p in names if r["runs"].get(p)]


def _files(step_dir):
  return [f for f in glob.glob(str(step_dir / "state" / "**" / "*"),
                               recursive=True) if os.path.isfile(f)]


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(max(os.path.getsize(path) // 3, 1))


def _garbage(path):
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.write(os.urandom(max(size, 16)))


DRILLS = {
    "sigkill": ("SIGKILL at random moments (half as a save starts)",
                lambda *a: drill_kill(*a, signal.SIGKILL)),
    "sigterm": ("SIGTERM (preemption): save, exit 143, resume",
                lambda *a: drill_kill(*a, signal.SIGTERM)),
    "corrupt": ("corrupt latest checkpoint: fall back, finish",
                lambda *a: drill_corrupt(*a[:4])),
    "hang": ("hung step: watchdog exit 124 / SIGTERM exit 143, resume",
             drill_hang),
    "busy": ("second run on a busy workdir: exit 75, first run complete",
             drill_busy),
    "disk_full": ("disk full: exit 74 in one line, resume with room",
                  drill_disk_full),
    "gcs": ("gs:// workdir (GCS emulator): SIGKILL, take the lease, resume",
            drill_gcs),
}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--trials", type=int, default=5)
  ap.add_argument("--steps", type=int, default=120)
  ap.add_argument("--every", type=int, default=10,
                  help="checkpoint every N steps")
  ap.add_argument("--stress-json", default=None,
                  help="a stress_drill.py result whose rows join the table")
  ap.add_argument("--drills", default=",".join(DRILLS),
                  help=f"comma-separated, of {','.join(DRILLS)}")
  args = ap.parse_args()
  chosen = args.drills.split(",")
  unknown = sorted(set(chosen) - set(DRILLS))
  if unknown:
    ap.error(f"unknown drills {unknown}: pick from {','.join(DRILLS)}")
  tmp = Path(tempfile.mkdtemp(prefix="fault_drill_"))
  try:
    t0 = time.time()
    print("uninterrupted reference run ...", flush=True)
    subprocess.run(cmd(tmp / "reference", args.steps, args.every), cwd=REPO,
                   capture_output=True, check=True)
    reference = final_params(tmp / "reference")
    rows = []
    a = (tmp, reference, args.steps, args.every)
    for name in chosen:
      title, run = DRILLS[name]
      print(f"{name} drill", flush=True)
      rows.append((title, *run(*a, args.trials)))
    print(f"\n{args.steps} steps per run, checkpoint every {args.every}, "
          f"keep 2; {time.time() - t0:.0f} s in all\n")
    print("| drill | trials | passed | nothing lost (final params bitwise "
          "equal) |")
    print("|---|---|---|---|")
    rows += stress_rows(args.stress_json)
    for name, trials, passed, intact in rows:
      print(f"| {name} | {trials} | {passed} | {'yes' if intact else 'NO'} |")
    if not all(p == t and i for _, t, p, i in rows):
      sys.exit(1)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
