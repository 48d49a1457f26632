"""Runs the (row, seed) training runs behind a results table, resumably.

A *table* is a list of rows; a row is a config file plus ``--config.*``
overrides; every row is trained once per seed with ``--config.seed=s``
(data order, masks, training noise and initialisation all follow it, so rows
that share a seed see the same batches and holes: paired comparisons). Each
finished run leaves one small JSON under ``docs/results/<table>/`` (metrics,
spike rates, SynOps, the run's model config, wall and CPU time, CPU model
and load) that the table scripts read; a run whose JSON exists is skipped,
so an interrupted queue continues where it stopped. Workdirs go to
``runs/tables_<table>/`` (git-ignored; ``train.py`` resumes them too).

Used by ``scripts/quantiser_table.py``, ``scripts/paper_b_tables.py`` and
``scripts/vae_table.py``; nothing here knows about a particular table.
Runs are started ``nice``d, at most ``jobs`` at a time; two drivers may run
at once (a run is claimed with a lock file before it starts). Each run trains
with COMMITTED code: ``train.py`` runs in an export of one commit (``CODE``)
under ``runs/code/<commit>/``, so that edits in progress in the working tree
(it is shared) never leak into a table and all rows train the same code; the
commit is recorded with each result.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


# Linux keeps a process's peak resident memory across exec, so a child's
# ``ru_maxrss`` starts at whatever its parent held (a test runner that has
# compiled models: gigabytes). A small Python launcher runs the command as its
# own child and reports that grandchild's peak; the launcher's own start-up
# (about 10 MB) is the remaining overcount.
_LAUNCHER = """import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
  f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def run_measured(cmd: list[str], **popen) -> tuple[int, dict]:
  """Runs ``cmd`` to completion: its exit status and a dict with its peak
  resident memory (``peak_rss_mb``, its own, not its parent's) and CPU
  seconds (``user_s``, ``sys_s``). ``popen`` goes to ``subprocess.Popen``."""
  with tempfile.TemporaryDirectory() as tmp:
    report = Path(tmp) / "maxrss"
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(report), *cmd], **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    peak_kib = int(report.read_text()) if report.exists() else 0
  return os.waitstatus_to_exitcode(status), {
      "peak_rss_mb": round(peak_kib / 1024, 1),   # KiB on Linux
      "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2)}


@dataclasses.dataclass(frozen=True)
class Row:
  name: str            # file-name stem of the row's results
  label: str           # shown in the table
  config: str          # config file, relative to the repo
  overrides: tuple = ()   # "{runs}" stands for the table's runs/tables_<table>


def result_path(table: str, row: Row, seed: int) -> Path:
  return RESULTS / table / f"{row.name}_seed{seed}.json"


def workdir_of(table: str, row: Row, seed: int) -> Path:
  return REPO / "runs" / f"tables_{table}" / f"{row.name}_seed{seed}"


def shown_command(row: Row, seed: int) -> str:
  """The command as a user types it (workdir left to its default; ``{runs}``
  in an override shows as ``runs``)."""
  extra = [f"--config.seed={seed}"] if seed else []
  overrides = [o.replace("{runs}", "runs") for o in row.overrides]
  return " ".join(["python train.py", f"--config={row.config}",
                   *overrides, *extra])


def cpu_info() -> dict:
  """CPU model, core count and the vector ISA flags that matter to XLA."""
  model, flags = platform.processor() or "unknown", set()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
      elif line.startswith("flags"):
        flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
         if f in flags]
  return {"cpu_model": model, "cores": os.cpu_count(), "isa": isa}


# Every run of a table trains the same code: this commit (env SEED_RUNS_CODE
# overrides; "HEAD" = the newest).
CODE = os.environ.get("SEED_RUNS_CODE", "d4cfec2")


def code_snapshot(ref: str = CODE) -> tuple[str, Path]:
  """``(commit, dir)``: ``git archive <ref>`` unpacked once per commit."""
  commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO,
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  target = REPO / "runs" / "code" / commit
  if not (target / "train.py").exists():
    tmp = target.with_name(f"{commit}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    try:
      tmp.rename(target)
    except OSError:   # another driver unpacked it first
      subprocess.run(["rm", "-rf", str(tmp)], check=True)
  return commit, target


def load_result(table: str, row: Row, seed: int) -> dict | None:
  path = result_path(table, row, seed)
  return json.loads(path.read_text()) if path.exists() else None


def _claim(path: Path) -> bool:
  lock = path.with_suffix(".lock")
  lock.parent.mkdir(parents=True, exist_ok=True)
  try:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    try:
      pid = int(lock.read_text() or 0)
      os.kill(pid, 0)
      return False          # a live driver holds it
    except (ValueError, ProcessLookupError, PermissionError):
      lock.unlink(missing_ok=True)   # stale claim of a dead driver
      return _claim(path)
  os.write(fd, str(os.getpid()).encode())
  os.close(fd)
  return True


def history(workdir: Path) -> dict:
  """Eval metrics by step and the median train rate, from metrics.jsonl."""
  path = Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return {}
  evals, rates, waits = [], [], []
  for line in path.read_text().splitlines():
    r = json.loads(line)
    if r.get("kind") == "eval":
      evals.append({k: v for k, v in r.items()
                    if isinstance(v, (int, float)) and k != "time"})
    elif r.get("kind") == "train":
      if "steps_per_s" in r:
        rates.append(r["steps_per_s"])
      if "input_wait_fraction" in r:
        waits.append(r["input_wait_fraction"])
  median = lambda v: sorted(v)[len(v) // 2] if v else None  # noqa: E731
  return {"eval_curve": evals, "median_steps_per_sec": median(rates),
          "median_input_wait_fraction": median(waits)}


def _compact(summary: dict, config: dict) -> dict:
  """The parts of a run's results.json and config.json the tables need."""
  out = {k: summary[k] for k in ("steps", "train_time_s", "platform",
                                 "devices", "model") if k in summary}
  out["eval"] = summary.get("eval")
  if "points" in summary:
    out["points"] = summary["points"]
  if summary.get("synops") is not None:
    out["synops"] = summary["synops"]
  out["baselines"] = summary.get("baselines", {})
  out["config"] = {k: config[k] for k in ("task", "seed", "init_seed",
                                          "model", "train", "data", "masks")
                   if k in config}
  return out


def run_one(table: str, row: Row, seed: int, *, nice: int = 5,
            log_dir: Path | None = None) -> dict | None:
  """Trains one (row, seed) unless its JSON exists; returns the JSON dict."""
  path = result_path(table, row, seed)
  if path.exists() or not _claim(path):
    return load_result(table, row, seed)
  try:
    workdir = workdir_of(table, row, seed)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    overrides = [o.replace("{runs}", str(workdir.parent))
                 for o in row.overrides]
    cmd = ["nice", "-n", str(nice), sys.executable, "train.py",
           f"--config={row.config}", f"--workdir={workdir}",
           *overrides, f"--config.seed={seed}"]
    log = (log_dir or workdir.parent) / f"{row.name}_seed{seed}.log"
    print(f"[{time.strftime('%H:%M:%S')}] start {table}/{row.name} seed {seed}",
          flush=True)
    resumed = (workdir / "checkpoints").exists()   # times cover the rest only
    load_start = os.getloadavg()[0]
    commit, code = code_snapshot()
    t0 = time.time()
    with open(log, "a") as f:
      code, usage = run_measured(cmd, cwd=code, stdout=f,
                                 stderr=subprocess.STDOUT)
    if code:
      print(f"FAILED {table}/{row.name} seed {seed} (exit {code}); see {log}",
            flush=True)
      return None
    summary = json.loads((workdir / "results.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    import jax  # the venv's version; not imported at module level (fast CLI)
    record = dict(
        table=table, row=row.name, label=row.label, seed=seed,
        command=shown_command(row, seed), config_file=row.config,
        overrides=list(row.overrides), **_compact(summary, config),
        **history(workdir), max_rss_mb=round(usage["peak_rss_mb"]),
        resumed=resumed, wall_s=round(time.time() - t0, 1),
        cpu_s=round(usage["user_s"] + usage["sys_s"], 1),
        load_start=round(load_start, 2),
        load_end=round(os.getloadavg()[0], 2), jax=jax.__version__,
        date=datetime.date.today().isoformat(), git=commit, **cpu_info())
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{time.strftime('%H:%M:%S')}] done {table}/{row.name} seed {seed}"
          f" in {record['wall_s'] / 60:.1f} min", flush=True)
    return record
  finally:
    path.with_suffix(".lock").unlink(missing_ok=True)


def run_all(table: str, rows: list[Row], seeds, *, jobs: int = 2,
            nice: int = 5, row_major: bool = False) -> None:
  """Every (row, seed) without a result, ``jobs`` at a time. Seed-major by
  default (all rows of seed 0 first, so a partial queue already pairs
  rows); ``row_major``: all seeds of the first row first."""
  pairs = ([(row, s) for row in rows for s in seeds] if row_major else
           [(row, s) for s in seeds for row in rows])
  todo = [(row, s) for row, s in pairs
          if not result_path(table, row, s).exists()]
  print(f"{table}: {len(todo)} runs to do, {jobs} at a time", flush=True)
  with futures.ThreadPoolExecutor(jobs) as pool:
    list(pool.map(lambda rs: run_one(table, rs[0], rs[1], nice=nice), todo))


def collect(table: str, rows: list[Row], seeds) -> dict:
  """{row name: {seed: record}} of the finished runs."""
  out = {}
  for row in rows:
    out[row.name] = {s: r for s in seeds
                     if (r := load_result(table, row, s)) is not None}
  return out


# ---------------------------------------------------------------- statistics


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (n - 1); sd is nan for one value."""
  values = [float(v) for v in values]
  n = len(values)
  if n == 0:
    return math.nan, math.nan
  mean = sum(values) / n
  if n < 2:
    return mean, math.nan
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def t_halfwidth(sd: float, n: int) -> float:
  """Half-width of the two-sided 95 % Student-t interval of a mean of n."""
  if n < 2:
    return math.nan
  from scipy import stats
  return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def fmt_mean_sd(values, digits: int = 2, unit: str = "") -> str:
  """``mean ± sd unit``; ``(not run)`` without values (no unit)."""
  mean, sd = mean_sd(values)
  if math.isnan(mean):
    return "(not run)"
  if math.isnan(sd):
    return f"{mean:.{digits}f}{unit} (1 seed)"
  return f"{mean:.{digits}f} ± {sd:.{digits}f}{unit}"


def paired(a: dict, b: dict) -> list[tuple[int, float]]:
  """Per-seed differences ``a[s] - b[s]`` over the seeds both have."""
  return [(s, a[s] - b[s]) for s in sorted(set(a) & set(b))]


def fmt_paired(diffs, digits: int = 2, unit: str = "") -> str:
  """``mean ± sd [95 % t-interval] (per seed: ...)`` of paired differences."""
  if not diffs:
    return "(no shared seeds)"
  values = [d for _, d in diffs]
  mean, sd = mean_sd(values)
  per_seed = " / ".join(f"{d:+.{digits}f}" for d in values)
  if len(values) < 2:
    return f"{mean:+.{digits}f}{unit} (1 seed)"
  h = t_halfwidth(sd, len(values))
  return (f"{mean:+.{digits}f} ± {sd:.{digits}f}{unit} "
          f"[{mean - h:+.{digits}f}, {mean + h:+.{digits}f}] ({per_seed})")


def machine_line(records) -> str:
  """One line naming the CPUs, jax versions, commits and load of the runs."""
  records = list(records)
  if not records:
    return ""
  cpus = sorted({f"{r.get('cpu_model')} ({r.get('cores')} cores, "
                 f"{' '.join(r.get('isa', []))})" for r in records})
  jaxes = sorted({r.get("jax", "?") for r in records})
  commits = sorted({r.get("git", "?") for r in records})
  loads = [r["load_start"] for r in records if "load_start" in r]
  dates = sorted({r.get("date", "?") for r in records})
  load = (f"; 1-min load average at start {min(loads):.1f}-{max(loads):.1f} "
          "(shared machine)" if loads else "")
  return (f"Ran on {'; '.join(cpus)}, jax {', '.join(jaxes)}, code "
          f"{', '.join(commits)}, {dates[0]}"
          + (f" to {dates[-1]}" if len(dates) > 1 else "") + load + ".")


def write_block(doc: Path, marker: str, text: str) -> None:
  """Replaces the text between ``<!-- marker -->`` and ``<!-- /marker -->``
  in ``doc`` (appends the block if the markers are missing)."""
  start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
  body = doc.read_text() if doc.exists() else ""
  block = f"{start}\n{text.rstrip()}\n{end}"
  if start in body and end in body:
    body = body[:body.index(start)] + block + body[body.index(end) + len(end):]
  else:
    body += f"\n{block}\n"
  doc.write_text(body)


def fmt_minutes(records) -> str:
  """``CPU / wall`` minutes per run (mean CPU; wall range), fresh runs only
  (a resumed run's times cover only its last part)."""
  fresh = [r for r in records if not r.get("resumed")]
  if not fresh:
    return ""
  cpu = sum(r["cpu_s"] for r in fresh) / len(fresh) / 60
  lo = min(r["wall_s"] for r in fresh) / 60
  hi = max(r["wall_s"] for r in fresh) / 60
  wall = f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
  return f"{cpu:.1f} / {wall}"
