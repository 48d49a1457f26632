"""Stress drill: the 2-process training command, many times in a row.

    python scripts/stress_drill.py                      # 20 runs + 20 under load
    python scripts/stress_drill.py --runs 3 --load-runs 0 --steps 120

Each run is the multi-host command of docs/how-to/multi_host.md on localhost
(``configs/base.py``, 2 processes x 4 CPU devices, gloo collectives) in a
fresh workdir, with the flags of the hang's report
(docs/studies/reliability_drills.md): ``--config.train.steps=S
--config.train.eval_every=S --config.train.checkpoint_every=S/2
--config.train.log_every=S/2`` (S = ``--steps``, 120 by default: 60 steps
between two host syncs, enough for the old trainer to run 32 steps ahead and
deadlock; the eval set is 64 patches instead of 256, ``--num-eval``, to save
time). ``--load-runs`` repeats it while a third process keeps every core
busy (numpy matrix products). A run counts as finished when both processes
exit 0 within ``--timeout`` seconds; runs are identical when their final
parameters (sha256 of every array) and final eval metrics are equal.
``--preempt-runs`` runs send SIGTERM to both processes at a random moment of
training: both must save at the same step and exit 143, and the rerun of the
same command must finish with the same parameters as the others.
``--old-loop`` runs the trainer as it was before the fix of the hang (no bound
on the steps in flight; add ``-- --config.train.watchdog_s=120`` so that a
hung run ends by itself): most of its runs hang.

Writes ``--out`` (JSON: machine, command, one record per run) and prints a
table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PHASES = ("quiet", "preempt", "load")
LOAD = ("import numpy as np\n"
        "a = np.random.default_rng(0).random((768, 768))\n"
        "while True:\n"
        "  a = np.tanh(a @ a)\n")


# train.py with the loop's bound on steps in flight removed (the old loop).
OLD_LOOP = ("import sys; from scnn_jax.training import trainer; "
            "trainer.STEPS_IN_FLIGHT = 10**9; from scnn_jax.cli import train; "
            "sys.argv[0] = 'train.py'; train.run()")


def command(workdir, port, pid, steps, num_eval, extra, old_loop=False):
  entry = ["-c", OLD_LOOP] if old_loop else ["train.py"]
  return [sys.executable, *entry, "--config", "configs/base.py",
          "--cpu_devices=4", f"--coordinator_address=localhost:{port}",
          "--num_processes=2", f"--process_id={pid}", f"--workdir={workdir}",
          f"--config.train.steps={steps}", f"--config.train.eval_every={steps}",
          f"--config.train.checkpoint_every={steps // 2}",
          f"--config.train.log_every={steps // 2}",
          f"--config.data.num_eval={num_eval}", *extra]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def params_digest(workdir) -> str:
  import jax
  import numpy as np
  from scnn_jax.runtime import inference
  params = jax.device_get(inference.load(workdir).state["params"])
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]


def one_run(workdir, steps, num_eval, timeout, extra, logdir,
            sigterm_after=None, old_loop=False) -> dict:
  port = free_port()
  logs = [open(logdir / f"p{pid}.log", "a") for pid in (0, 1)]
  t0 = time.time()
  procs = [subprocess.Popen(command(workdir, port, pid, steps, num_eval,
                                    extra, old_loop),
                            cwd=REPO, stdout=logs[pid],
                            stderr=subprocess.STDOUT) for pid in (0, 1)]
  if sigterm_after is not None:  # seconds after training started
    while "devices:" not in (logdir / "p0.log").read_text():
      time.sleep(0.5)
    time.sleep(sigterm_after)
    for p in procs:
      p.send_signal(signal.SIGTERM)
  codes, hung = [], False
  for p in procs:
    try:
      codes.append(p.wait(timeout=max(timeout - (time.time() - t0), 1)))
    except subprocess.TimeoutExpired:
      hung = True
      codes.append(None)
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait()
  for f in logs:
    f.close()
  record = {"codes": codes, "hung": hung, "wall_s": round(time.time() - t0, 1)}
  if sigterm_after is not None:
    saved = [re.findall(r"preempted: checkpoint saved at step (\d+)",
                        (logdir / f"p{pid}.log").read_text()) for pid in (0, 1)]
    record["preempted_at"] = [int(x[-1]) if x else None for x in saved]
  if codes == [0, 0]:
    result = json.loads((Path(workdir) / "results.json").read_text())
    record["eval"] = result["eval"]
    record["params_sha256"] = params_digest(workdir)
  return record


def machine() -> dict:
  model = ""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
          "loadavg_at_start": os.getloadavg(), "python": platform.python_version()}


def drill(label, n, args, extra, tmp, records, save):
  """``n`` runs of one phase; ``save()`` rewrites the JSON after each, so an
  interrupted drill keeps the runs it finished."""
  rng = random.Random(0)
  for i in range(n):
    workdir = tmp / f"{label}_{i:02d}"
    logdir = tmp / f"{label}_{i:02d}_logs"
    logdir.mkdir(parents=True)
    preempted = None
    if label == "preempt":
      r = one_run(workdir, args.steps, args.num_eval, args.timeout, extra,
                  logdir, sigterm_after=rng.uniform(5.0, 60.0))
      preempted = {"codes": r["codes"], "at": r["preempted_at"]}
    r = one_run(workdir, args.steps, args.num_eval, args.timeout, extra,
                logdir, old_loop=args.old_loop)
    r.update(phase=label, run=i + 1, loadavg=round(os.getloadavg()[0], 1))
    if preempted:
      r["sigterm"] = preempted
    records.append(r)
    save()
    state = ("HUNG" if r["hung"] else "HUNG (watchdog: exit 124)"
             if 124 in r["codes"] else "finished" if r["codes"] == [0, 0]
             else f"FAILED {r['codes']}")
    if preempted and not (preempted["codes"] == [143, 143] and
                          preempted["at"][0] == preempted["at"][1] and
                          preempted["at"][0] is not None):
      state = f"FAILED preemption {preempted}"
    elif preempted:
      state += (f" (SIGTERM: both saved step {preempted['at'][0]}, exit 143; "
                "resumed)")
    print(f"{label} run {i + 1}/{n}: {state} in {r['wall_s']:.0f} s "
          f"(load {r['loadavg']}), params {r.get('params_sha256')}",
          flush=True)
    if not state.startswith("finished"):
      keep = Path(args.keep_failed) / f"{label}_{i:02d}_logs"
      shutil.copytree(logdir, keep, dirs_exist_ok=True)
      print(f"  logs kept in {keep}", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)


def summarize(info, args, records, t0):
  """The drill's JSON: machine, command, counts per phase, every record."""
  done = [r for r in records if r["codes"] == [0, 0] and
          r.get("sigterm", {}).get("codes", [143, 143]) == [143, 143]]
  digests = {r["params_sha256"] for r in done}
  evals = {json.dumps(r["eval"], sort_keys=True) for r in done}
  return {
      "machine": info,
      "command": " ".join(command("WORKDIR", "PORT", "P", args.steps,
                                  args.num_eval, args.extra,
                                  args.old_loop)[1:]),
      "old_loop": args.old_loop,
      "steps": args.steps, "timeout_s": args.timeout,
      "finished": {p: sum(r["phase"] == p and r in done for r in records)
                   for p in PHASES},
      "runs": {p: sum(r["phase"] == p for r in records) for p in PHASES},
      "identical_results": len(digests) <= 1 and len(evals) <= 1,
      "params_sha256": sorted(digests), "total_s": round(time.time() - t0),
      "records": records,
  }


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--runs", type=int, default=20)
  ap.add_argument("--load-runs", type=int, default=20)
  ap.add_argument("--preempt-runs", type=int, default=2)
  ap.add_argument("--steps", type=int, default=120)
  ap.add_argument("--num-eval", type=int, default=64)
  ap.add_argument("--old-loop", action="store_true",
                  help="the trainer without the bound on steps in flight")
  ap.add_argument("--timeout", type=float, default=1200.0,
                  help="seconds before a run counts as hung")
  ap.add_argument("--out", default=str(REPO / "docs" / "results" /
                                       "stress_drill.json"))
  ap.add_argument("--keep-failed", default=str(REPO / "runs" / "stress_drill"))
  ap.add_argument("extra", nargs="*", help="more train.py flags, after --")
  args = ap.parse_args()
  tmp = Path(tempfile.mkdtemp(prefix="stress_drill_"))
  info = machine()
  records, t0 = [], time.time()

  def save():
    summary = summarize(info, args, records, t0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary

  try:
    drill("quiet", args.runs, args, args.extra, tmp, records, save)
    drill("preempt", args.preempt_runs, args, args.extra, tmp, records, save)
    if args.load_runs:
      load = subprocess.Popen([sys.executable, "-c", LOAD])
      try:
        drill("load", args.load_runs, args, args.extra, tmp, records, save)
      finally:
        load.kill()
        load.wait()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  summary = save()
  walls = lambda p: [r["wall_s"] for r in records if r["phase"] == p]
  print(f"\n{info['cpu']}, {info['cores']} cores; {args.steps} steps per run; "
        f"{summary['total_s']} s in all; written to {args.out}\n")
  print("| runs | finished | identical results | wall per run (s) |")
  print("|---|---|---|---|")
  for p, name in (("quiet", "2-process command, in a row"),
                  ("preempt", "SIGTERM to both processes, then the same "
                   "command again"),
                  ("load", "the same, a third process loading every core")):
    if summary["runs"][p]:
      w = walls(p)
      name += " (the old loop, no bound on steps in flight)" * args.old_loop
      print(f"| {name} | {summary['finished'][p]}/{summary['runs'][p]} | "
            f"{'yes' if summary['identical_results'] else 'NO'} | "
            f"{min(w):.0f}-{max(w):.0f} |")
  ok = (summary["identical_results"] and
        sum(summary["finished"].values()) == len(records))
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
