"""Paper B's two comparisons on the embedded data, as tables in docs/paper_b.md.

    python scripts/paper_b_tables.py --table classify   # 3 rows x 3 seeds, ~2.5 min each
    python scripts/paper_b_tables.py --table taid       # 4 rows x 3 seeds, ~2 min each
    python scripts/paper_b_tables.py --table all [--parallel 3]

Each row is one ordinary ``train.py`` run (its exact command is printed in the
table) with its own workdir under ``--runs`` (default ``runs/paper_b``); a
finished workdir is not retrained (``train.py`` resumes it and only
re-evaluates), so re-running the script after an interruption continues where
it stopped. The rows of a table share the config, data, seed and number of
steps; only the field named in the row changes. ``--write_only`` rebuilds the
tables from existing workdirs; ``--parallel N`` trains N rows of a table at
once (each row's wall and CPU time is recorded in its ``timing.json``). The
tables go between the marker comments of
``--doc`` (default docs/paper_b.md), which keeps the prose around them.

Tables:

* ``classify``: configs/mnist5k_alif.py (paper B's MNISTNet at width 32 on
  the 4k/1k embedded MNIST subset), neuron kind varied: fixed LIF, ALIF
  (paper B: learned tau and threshold), ALIF + spike-triggered threshold
  adaptation. Held-out accuracy on the 1,000 validation images.
* ``taid``: configs/taid_inpaint.py (the spiking-decoder inpainting model on
  the embedded natural patches), decoder kind varied: rate, fixed decay
  (FSVAE), TAID; plus the same-size CNN baseline. Hole PSNR, SSIM, masked MSE
  on the fixed eval set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (row name, shown label, overrides)
CLASSIFY_ROWS = [
    ("lif", "LIF (fixed: beta 0.5, threshold 1.0)",
     ["--config.model.neuron=lif", "--config.model.threshold=1.0"]),
    ("alif", "ALIF, paper B (learned tau and threshold)", []),
    ("alif_adapt", "ALIF + threshold adaptation (+0.2 per spike, tau 4)",
     ["--config.model.adaptation_increment=0.2"]),
]
TAID_ROWS = [
    ("rate", "spiking, rate decoder (mean over T)",
     ["--config.model.decoder=rate"]),
    ("fixed_decay", "spiking, fixed-decay decoder (FSVAE, 0.8^(T-1-t))",
     ["--config.model.decoder=fixed_decay"]),
    ("taid", "spiking, TAID decoder (paper B)",
     ["--config.model.decoder=taid"]),
    ("cnn", "CNN baseline (same widths, no spikes)",
     ["--config.model.name=cnn"]),
]
TABLES = {
    "classify": ("configs/mnist5k_alif.py", CLASSIFY_ROWS),
    "taid": ("configs/taid_inpaint.py", TAID_ROWS),
}
PAPER_B = {"mnist": 99.78, "mnist_plif": 99.72, "cifar10": 93.89,
           "cifar10_plif": 93.72}


def command(config, workdir, overrides):
  """The command as shown (run from the repo root). The workdir is absolute
  because Orbax rejects relative checkpoint paths."""
  return ["python", "train.py", f"--config={config}",
          f"--workdir=$PWD/{workdir}", *overrides]


def run_row(config, workdir, overrides, log):
  """Runs one row; returns (wall seconds, CPU seconds of the process)."""
  cmd = [sys.executable, "train.py", f"--config={config}",
         f"--workdir={REPO / workdir}", *overrides]
  print("$", _shown(config, workdir, overrides), flush=True)
  t0 = time.time()
  with open(log, "a") as f:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise RuntimeError(f"row failed ({proc.returncode}); see {log}")
  return time.time() - t0, usage.ru_utime + usage.ru_stime


def _results(workdir):
  path = REPO / workdir / "results.json"
  return json.loads(path.read_text()) if path.exists() else None


def _timing(workdir):
  path = REPO / workdir / "timing.json"
  return json.loads(path.read_text()) if path.exists() else None


def _times(r, timing):
  """Train time (trainer's, wall), whole-command wall and CPU time, in min."""
  out = f"{r['train_time_s'] / 60:.1f} min"
  if timing:
    out += (f" / {timing['wall_s'] / 60:.1f} min / "
            f"{timing['cpu_s'] / 60:.1f} min")
  return out


def workdir_of(runs, table, name, seed):
  return f"{runs}/{table}_{name}" + (f"_seed{seed}" if seed else "")


def seed_overrides(seed):
  return [f"--config.seed={seed}"] if seed else []


def _runs_of(runs, table, name, seeds):
  """[(seed, results, timing)] of the finished runs of one row."""
  out = []
  for seed in seeds:
    workdir = workdir_of(runs, table, name, seed)
    r = _results(workdir)
    if r is not None:
      out.append((seed, r, _timing(workdir)))
  return out


def _mean_sd(values, fmt):
  values = [v for v in values if v is not None]
  if not values:
    return "(not run)"
  mean = sum(values) / len(values)
  if len(values) < 2:
    return fmt.format(mean)
  sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
  return f"{fmt.format(mean)} ± {fmt.format(sd)}"


def _cpu(done):
  cpu = [t["cpu_s"] / 60 for _, _, t in done if t]
  wall = [t["wall_s"] / 60 for _, _, t in done if t]
  if not cpu:
    return ""
  return (f"{sum(cpu) / len(cpu):.1f} min CPU, "
          f"{min(wall):.0f}-{max(wall):.0f} min wall")


def _commands(table, config, rows, runs, seeds):
  lines = ["", "Commands (seed s > 0 adds `--config.seed=s` and the workdir "
           "suffix `_seed<s>`; seeds " + ", ".join(map(str, seeds)) + "):",
           ""]
  for name, label, overrides in rows:
    lines.append(f"* {label}: `{_shown(config, workdir_of(runs, table, name, 0), overrides)}`")
  return lines


def classify_table(runs, config, seeds):
  head = " | ".join(f"seed {s}" for s in seeds)
  lines = [f"| neuron | {head} | mean ± sd | time per run |",
           "|---" * (len(seeds) + 3) + "|"]
  for name, label, _ in CLASSIFY_ROWS:
    done = {seed: r for seed, r, _ in _runs_of(runs, "classify", name, seeds)}
    accs = [100 * done[s]["eval"]["accuracy"] if s in done else None
            for s in seeds]
    cells = " | ".join("" if a is None else f"{a:.1f} %" for a in accs)
    lines.append(f"| {label} | {cells} | {_mean_sd(accs, '{:.2f}')} % "
                 f"| {_cpu(_runs_of(runs, 'classify', name, seeds))} |")
  lines += _commands("classify", config, CLASSIFY_ROWS, runs, seeds)
  lines += [
      "",
      "Held-out accuracy on the 1,000 validation images of the embedded "
      "mnist5k subset (one image = 0.1 %; the binomial standard error of "
      "one run at 96 % is about 0.6 %).",
      "",
      f"For reference only, paper B on the full datasets (60,000 / 50,000 "
      f"training images, width 128 / 256, 10,000 test images): MNIST "
      f"{PAPER_B['mnist']} % (ALIF; PLIF {PAPER_B['mnist_plif']} %), CIFAR-10 "
      f"{PAPER_B['cifar10']} % (PLIF {PAPER_B['cifar10_plif']} %). The rows "
      f"above are on the embedded 5k MNIST subset (4,000 training images) "
      f"with a 4x narrower net trained for minutes: they are not comparable "
      f"to those figures, only to each other."]
  return "\n".join(lines)


def taid_table(runs, config, seeds):
  lines = ["| model / decoder | hole PSNR (dB) | hole PSNR per seed | SSIM "
           "| masked MSE | PSNR | time per run |",
           "|---|---|---|---|---|---|---|"]
  baselines = None
  for name, label, _ in TAID_ROWS:
    done = _runs_of(runs, "taid", name, seeds)
    evals = [r["eval"] for _, r, _ in done]
    for _, r, _ in done:
      baselines = r.get("baselines") or baselines
    per_seed = " / ".join(f"{e['hole_psnr']:.2f}" for e in evals)
    col = lambda k, fmt: _mean_sd([e[k] for e in evals], fmt)  # noqa: E731
    lines.append(f"| {label} | {col('hole_psnr', '{:.2f}')} | {per_seed} "
                 f"| {col('ssim', '{:.4f}')} | {col('masked_mse', '{:.5f}')} "
                 f"| {col('psnr', '{:.2f}')} | {_cpu(done)} |")
  for name, e in (baselines or {}).items():
    lines.append(f"| {name} (no learning) | {e['hole_psnr']:.2f} | "
                 f"| {e['ssim']:.4f} | {e['masked_mse']:.5f} "
                 f"| {e['psnr']:.2f} | |")
  lines += _commands("taid", config, TAID_ROWS, runs, seeds)
  lines += ["", "Mean ± sd over the seeds; metrics on the fixed eval set "
            "(256 patches of the two held-out photos, fixed masks)."]
  return "\n".join(lines)


def _shown(config, workdir, overrides):
  return " ".join(command(config, workdir, overrides))


def write_table(doc, table, text):
  doc = REPO / doc
  start, end = f"<!-- {table}-table -->", f"<!-- /{table}-table -->"
  body = doc.read_text() if doc.exists() else ""
  block = f"{start}\n{text}\n{end}"
  if start in body and end in body:
    body = body[:body.index(start)] + block + body[body.index(end) +
                                                  len(end):]
  else:
    body += f"\n{block}\n"
  doc.write_text(body)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--table", choices=("classify", "taid", "all"),
                      default="all")
  parser.add_argument("--runs", default="runs/paper_b")
  parser.add_argument("--doc", default="docs/paper_b.md")
  parser.add_argument("--write_only", action="store_true")
  parser.add_argument("--parallel", type=int, default=1,
                      help="rows of a table trained at the same time")
  parser.add_argument("--seeds", default="0,1,2",
                      help="comma-separated config.seed values per row")
  args = parser.parse_args()
  seeds = [int(x) for x in args.seeds.split(",")]
  names = ("classify", "taid") if args.table == "all" else (args.table,)
  for table in names:
    config, rows = TABLES[table]
    if not args.write_only:
      todo = []
      for seed in seeds:
        for name, _, overrides in rows:
          workdir = workdir_of(args.runs, table, name, seed)
          (REPO / workdir).mkdir(parents=True, exist_ok=True)
          if _results(workdir) is not None and _timing(workdir) is not None:
            print(f"{workdir}: done, skipped", flush=True)
            continue
          todo.append((workdir, overrides + seed_overrides(seed)))
      errors = []

      def work(workdir, overrides):
        try:
          wall, cpu = run_row(config, workdir, overrides,
                              REPO / workdir / "train.log")
          (REPO / workdir / "timing.json").write_text(json.dumps(
              {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "parallel_rows": args.parallel}))
        except RuntimeError as e:
          errors.append(str(e))

      for i in range(0, len(todo), args.parallel):
        threads = [threading.Thread(target=work, args=row)
                   for row in todo[i:i + args.parallel]]
        for t in threads:
          t.start()
        for t in threads:
          t.join()
      if errors:
        raise SystemExit("; ".join(errors))
    text = (classify_table if table == "classify" else taid_table)(
        args.runs, config, seeds)
    write_table(args.doc, table, text)
    print(text, flush=True)


if __name__ == "__main__":
  main()
