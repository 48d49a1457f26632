"""The reference network in scnn_jax and its peers, side by side.

    python benchmarks/reference_net.py --headline      # the quiet-machine
        # headline: T = 8 and 16, 3 interleaved rounds; writes BENCHMARKS.md
    python benchmarks/reference_net.py --quick         # T=8 only, 1 round, no extras
    python benchmarks/reference_net.py --T 8 16 --impls scnn_jax snntorch
    python benchmarks/reference_net.py --gpu           # on a GPU machine:
        # one python with jax[cuda] + CUDA torch, snntorch, norse, spyx;
        # writes BENCHMARKS_GPU.md

Every measurement runs in a fresh process (``python -m benchmarks.refnet.<impl>``),
and the processes are interleaved: round r runs every (T, row) once, in an
order rotated by r, so a slow drift of the machine hits all rows alike; each
figure is the median over rounds of per-process medians, and each ratio the
median over rounds of the ratio within the round. The peers (PyTorch,
snnTorch, norse, spyx) run from a separate virtual environment
(``--peer-python``, default ``.venv-bench/bin/python`` in the repository;
requirements-bench.txt) so scnn_jax's own jax/flax stay as pinned.

Quiet machine (``refnet/quiet.py``): before each process the runner waits
until other processes leave the cores idle (``--max-load``, ``--max-busy``,
``--load-wait``) and otherwise refuses with one line naming the load
(``--allow-load`` measures anyway and marks the records "loaded"); every
record carries the 1-minute load before and after its process and the cores
other processes used while it ran. Run nothing else meanwhile.

Each library runs with its own defaults: the processes get no tuning
environment variables (the caller's ``XLA_FLAGS``, ``GLIBC_TUNABLES``,
``OMP_*``, ``MKL_*``, ``SCNN_JAX_*``, ... are removed), so scnn_jax has
what its import sets (the YNNPACK conv option, the glibc malloc tuning) and
PyTorch its own (2 intra-op threads set in the script, as a user on this
machine would). Other settings are rows of their own, labelled with the
variable: ``OMP_WAIT_POLICY=PASSIVE`` for PyTorch, scnn_jax's malloc
setting given to PyTorch (``GLIBC_TUNABLES``) or taken from scnn_jax
(``SCNN_JAX_HOST_ALLOCATOR=0``), ...

Printed and written to BENCHMARKS.md (``refnet/report.py``): the headline
table (train steps/s, forward + backward + Adam, and the ratio to the
hand-written PyTorch loop per round), the goal, the loads, then the details
(inference, memory, compile time, losses, spike rates) and the explanations;
with the sections in ``--only``, the remat / chunking table, the
execution-order / unroll alternatives and the single-layer neuron-scan
overhead (benchmarks/spiking_conv.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import tempfile
import sys
import time
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.refnet import common, quiet  # noqa: E402

MODULES = {"scnn_jax": "scnn", "pytorch": "torch_loop",
           "snntorch": "snntorch_net", "norse": "norse_net",
           "spyx": "spyx_net"}
PEERS = ("pytorch", "snntorch", "norse", "spyx")
# The reference every scnn_jax row is divided by: the hand-written PyTorch
# loop (benchmarks/refnet/torch_loop.py), fp32, at the same T.
HAND = ("pytorch", "hand loop, channels-last")
GLIBC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold="
                  "1073741824:glibc.malloc.arena_max=1")

# The literal network as a user writes it in their own step: every layer at
# its defaults (no per-shape conv formulation), a plain jax.jit, and no
# environment variables (the runner's default).
USER_STEP = ["--same-flops", "--jit", "plain", "--small-convs", "xla"]
# Rows of the main table besides each implementation's own (--rows):
# name -> (implementation, arguments, setting). The implementations'
# rows (--impls) are the peers as their authors write them and scnn_jax's
# "default" row.
ROWS = {
    "user": ("scnn_jax", USER_STEP, ""),
    "literal": ("scnn_jax", ["--same-flops"], ""),
    "plain": ("scnn_jax", ["--same-flops", "--jit", "plain"], ""),
    "unroll": ("scnn_jax", USER_STEP + ["--unroll", "full"], ""),
    "user-malloc": ("scnn_jax", USER_STEP, "default-malloc"),
    "no-xla-flag": ("scnn_jax", USER_STEP, "no-xla-flag"),
    "passive": ("pytorch", [], "passive"),
    "torch-malloc": ("pytorch", [], "tuned-malloc"),
}
# Settings a row may add to the processes' environment, with the label its
# variant gets. The headline rows have none: each library's defaults.
SETTINGS = {
    "": ({}, ""),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "OMP_WAIT_POLICY=PASSIVE"),
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, "OMP_WAIT_POLICY=ACTIVE"),
    "tuned-malloc": ({"GLIBC_TUNABLES": GLIBC_TUNABLES}, "GLIBC_TUNABLES"),
    "default-malloc": ({"SCNN_JAX_HOST_ALLOCATOR": "0"},
                       "SCNN_JAX_HOST_ALLOCATOR=0"),
    "no-xla-flag": ({"SCNN_JAX_XLA_FLAGS": "0"}, "SCNN_JAX_XLA_FLAGS=0"),
}
# Variables that change how a library runs: never inherited from the
# caller's shell, so the default rows get the defaults.
TUNING_VARS = ("XLA_FLAGS", "GLIBC_TUNABLES", "LD_PRELOAD")
TUNING_PREFIXES = ("OMP_", "MKL_", "KMP_", "MALLOC_", "SCNN_JAX_")
# --headline: the quiet-machine run behind BENCHMARKS.md's headline table
# (about 20-25 minutes on the 2-core machine); explicit options override.
HEADLINE = dict(T=[8, 16], rounds=3, impls=["pytorch", "scnn_jax", "norse"],
                rows=["default", "user", "unroll", "user-malloc", "literal",
                      "passive", "torch-malloc"],
                only=["main"], steps=20, steps_long=10, budget=20.0,
                bf16="off", results_out=os.path.join(
                    ROOT, "benchmarks", "results", "cpu_headline.json"))


def _pythonpath():
  # The repo first, then whatever the caller had (e.g. carried packages).
  return os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)


def clean_environ(environ=None):
  """The caller's environment less the tuning variables (``TUNING_VARS``,
  ``TUNING_PREFIXES``); returns (environment, the names removed)."""
  environ = dict(os.environ if environ is None else environ)
  removed = sorted(k for k in environ if k in TUNING_VARS or
                   k.startswith(TUNING_PREFIXES))
  for k in removed:
    del environ[k]
  return environ, removed


def job_env(impl, setting, args):
  """Environment and variant label of one process: the cleaned caller's
  environment, the benchmark's own settings, then the row's setting (and
  the process-wide --omp-wait-policy / --default-malloc)."""
  env, _ = clean_environ()
  env.update(PYTHONPATH=_pythonpath(),
             SCNN_PEAK_GFLOPS=str(common.PEAK_GFLOPS),
             SCNN_PEAK_NAME=common.PEAK_NAME)
  labels = []
  settings = [setting]
  if args.omp_wait_policy != "default":
    settings.append(args.omp_wait_policy.lower())
  if args.default_malloc:
    settings.append("default-malloc")
  for name in dict.fromkeys(settings):  # in order, once each
    extra, label = SETTINGS[name]
    if name == "default-malloc" and impl != "scnn_jax":
      continue  # PyTorch's default already
    env.update(extra)
    if label:
      labels.append(label)
  return env, labels


def run_job(impl, T, extra, args, log, setting="", gate=None):
  python = sys.executable if impl == "scnn_jax" else args.peer_python
  steps = args.steps if T <= 8 else args.steps_long
  budget = args.budget
  if impl == "spyx" and not args.gpu:  # ~100x slower on CPU: a few steps
    steps, budget = min(steps, args.spyx_steps), 1.0
  cmd = [python, "-m", f"benchmarks.refnet.{MODULES[impl]}", "--T", str(T),
         "--steps", str(steps), "--budget", str(budget)] + list(extra)
  if args.gpu and impl in ("pytorch", "snntorch", "norse"):
    cmd += ["--device", "cuda"]
  env, labels = job_env(impl, setting, args)
  state = gate.before() if gate is not None else None
  cpu0 = _children_cpu_s()
  t0 = time.time()
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.time() - t0
  if gate is not None:
    state = gate.after(state, _children_cpu_s() - cpu0)
  line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
  shown_env = " ".join(f"{k}={v}" for k, v in env.items()
                       if os.environ.get(k) != v and k != "PYTHONPATH")
  log.write(f"$ {shown_env} {' '.join(cmd[1:])}  ({wall:.0f} s)"
            + (f"  gate {json.dumps(state)}" if state else "") + "\n")
  if p.returncode or not line:
    log.write(p.stdout[-2000:] + p.stderr[-4000:] + "\n")
    print(f"  FAILED {impl} T={T} {extra} {labels}: "
          f"{p.stderr.strip()[-300:]}", flush=True)
    return None
  rec = json.loads(line[-1][len("RESULT "):])
  if common.B != 32:
    rec["variant"] += f", B={common.B}"
  for label in labels:
    rec["variant"] += f", {label}"
  rec["setting"] = ", ".join(labels)
  rec["process_s"] = wall
  rec["machine"] = args.machine
  if state:
    rec.update(state)
  dev = (f"device {rec['dev_peak_mb']:6.0f} MB  "
         if rec.get("dev_peak_mb") is not None else "")
  load = (f"  load {state['load_before'][0]:.2f} -> "
          f"{state['load_after'][0]:.2f}, others {state['others_during']:.2f}"
          + (" LOADED" if state["loaded"] else "") if state else "")
  print(f"  {impl:9s} T={T:2d} {rec['variant']:40s} "
        f"{rec['steps_per_s']:6.2f} steps/s  "
        f"rss {rec['peak_rss_mb']:6.0f} MB  {dev}cpu avail "
        f"{rec['cpu_avail']:.2f}  ({wall:.0f} s){load}", flush=True)
  return rec


def _children_cpu_s():
  """CPU seconds of this process's finished children (all their threads)."""
  import resource
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


# Per-process figures kept in a record's "per_round" list (the rest of a
# merged record is the medians).
PER_ROUND = ("round", "steps_per_s", "step_s", "cpu_avail", "load_before",
             "load_after", "others_before", "others_during", "waited_s",
             "loaded", "process_s")


def run_jobs(jobs, args, log, rounds=None, gate=None):
  """jobs: list of (impl, T, extra[, setting[, row]]). Interleaved rounds,
  rotated order. Returns {(impl, variant, T): record of medians, with the
  per-process figures in "per_round"}."""
  jobs = [tuple(j) + ("", None)[len(j) - 3:] for j in jobs]
  recs = defaultdict(list)
  rounds = args.rounds if rounds is None else rounds
  for r in range(rounds):
    print(f"round {r + 1}/{rounds}", flush=True)
    k = r * len(jobs) // rounds  # each round starts elsewhere in the list
    for impl, T, extra, setting, row in jobs[k:] + jobs[:k]:
      rec = run_job(impl, T, extra, args, log, setting, gate)
      if rec is not None:
        rec["round"] = r
        rec["row"] = row or impl
        recs[(impl, rec["variant"], T)].append(rec)
  return aggregate(recs)


def aggregate(recs):
  """{key: [per-process records]} -> {key: one record of medians}."""
  out = {}
  for key, rs in recs.items():
    m = {k: v for k, v in rs[0].items() if k not in PER_ROUND}
    for f in ("steps_per_s", "infer_img_s", "gflops", "pct_peak", "compile_s",
              "cpu_avail", "step_s", "exec_pct_peak", "process_s"):
      vals = [r[f] for r in rs if r.get(f) is not None]
      if vals:
        m[f] = float(np.median(vals))
    for f in ("peak_rss_mb", "dev_peak_mb"):
      vals = [r[f] for r in rs if r.get(f) is not None]
      m[f] = float(np.median(vals)) if vals else None
    m["runs"] = len(rs)
    m["loaded"] = any(r.get("loaded", False) for r in rs)
    m["per_round"] = [{f: r[f] for f in PER_ROUND if f in r} for r in rs]
    out[key] = m
  return out


def fmt_rates(r):
  return "/".join(f"{100 * x:.0f}" for x in r)


def _pct(x):
  return "" if x is None else f"{x:.1f}"


def _dev(v):
  return "" if v.get("dev_peak_mb") is None else f"{v['dev_peak_mb']:.0f}"


def per_cpu_s(v):
  """Train steps per CPU-second of the process (all its threads): the step
  rate with the other processes' share of the cores taken out. Counts
  spinning threads as work; PyTorch runs with OMP_WAIT_POLICY=PASSIVE."""
  return 1.0 / (v["step_s"] * v["cpu_avail"] * (os.cpu_count() or 1))


def main_table(res, Ts, keys=None):
  """Markdown table of the main section and, per (T, scnn_jax variant),
  {sps, hand, peer, pct, exec}: steps/s, the fp32 hand-written PyTorch
  loop's and the fastest other peer's steps/s at that T."""
  gpu = any(v.get("dev_peak_mb") is not None for v in res.values())
  mem = "peak device MB | peak RSS MB" if gpu else "peak RSS MB"
  lines = ["| library | variant | T | train steps/s | vs hand loop | "
           "steps per CPU-s | vs hand loop (CPU) | "
           f"inference img/s | % {common.PEAK_NAME} | executed % | {mem} | "
           "compile s | loss first -> last (steps) | spike rates % | "
           "cpu avail |", "|---" * (16 if gpu else 15) + "|"]
  summary = {}
  keys = list(res) if keys is None else [k for k in keys if k in res]
  def hand_loop(v, rate=lambda r: r["steps_per_s"]):
    # the fp32 hand loop at the same T and batch
    batch = re.search(r", B=\d+", v["variant"])
    ref = res.get((HAND[0], HAND[1] + (batch.group(0) if batch else ""),
                   v["T"]))
    return rate(ref) if ref else None

  for T in Ts:
    rows = [res[k] for k in keys if k[2] == T]
    peers = [v["steps_per_s"] for v in rows if v["impl"] not in
             ("scnn_jax", "pytorch")]
    best = max(peers) if peers else None
    for v in sorted(rows, key=lambda v: -v["steps_per_s"]):
      hand = hand_loop(v)
      hand_cpu = hand_loop(v, per_cpu_s)
      ratio = f"{v['steps_per_s'] / hand:.2f}" if hand else ""
      ratio_cpu = f"{per_cpu_s(v) / hand_cpu:.2f}" if hand_cpu else ""
      if v["impl"] == "scnn_jax":
        summary[(T, v["variant"])] = dict(
            sps=v["steps_per_s"], hand=hand, peer=best, pct=v["pct_peak"],
            exec=v.get("exec_pct_peak"), cpu_avail=v["cpu_avail"],
            sps_cpu=per_cpu_s(v), hand_cpu=hand_cpu)
      lines.append(
          f"| {v['impl']} | {v['variant']} | {T} | {v['steps_per_s']:.2f} | "
          f"{ratio} | {per_cpu_s(v):.2f} | {ratio_cpu} | "
          f"{v['infer_img_s']:.0f} | {v['pct_peak']:.1f} | "
          f"{_pct(v.get('exec_pct_peak'))} | "
          + (f"{_dev(v)} | " if gpu else "") +
          f"{v['peak_rss_mb']:.0f} | {v['compile_s']:.1f} | "
          f"{v['loss_first']:.4f} -> {v['loss_last']:.4f} "
          f"({v['steps_timed'] + 1}) | {fmt_rates(v['rates'])} | "
          f"{v['cpu_avail']:.2f} |")
  return "\n".join(lines), summary


def variant_table(res, keys):
  gpu = any(res[k].get("dev_peak_mb") is not None for k in keys if k in res)
  mem = "peak device MB | peak RSS MB" if gpu else "peak RSS MB"
  lines = [f"| variant | T | train steps/s | % {common.PEAK_NAME} | "
           f"XLA buffers MB | {mem} | compile s | loss first -> last | "
           "cpu avail |", "|---" * (10 if gpu else 9) + "|"]
  for key in keys:
    if key not in res:
      continue
    v = res[key]
    xla = f"{v['xla_mb']:.0f}" if v.get("xla_mb") else ""
    lines.append(
        f"| {v['variant']} | {v['T']} | {v['steps_per_s']:.2f} | "
        f"{v['pct_peak']:.1f} | {xla} | "
        + (f"{_dev(v)} | " if gpu else "") + f"{v['peak_rss_mb']:.0f} | "
        f"{v['compile_s']:.1f} | {v['loss_first']:.4f} -> "
        f"{v['loss_last']:.4f} | {v['cpu_avail']:.2f} |")
  return "\n".join(lines)


def cpu_isa():
  """The ISA extensions that decide fp32 / bf16 conv speed on this CPU."""
  with open("/proc/cpuinfo") as f:
    for l in f:
      if l.startswith("flags"):
        flags = set(l.split(":", 1)[1].split())
        break
    else:
      return []
  names = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512",
           "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX",
           "amx_bf16": "AMX-BF16"}
  return [n for f, n in names.items() if f in flags]


def load_avg():
  try:
    with open("/proc/loadavg") as f:
      return " / ".join(f.read().split()[:3])
  except OSError:
    return "?"


# Options that only say where files go on the machine that ran the command:
# left out of the command line the reports show.
LOCAL_PATH_OPTIONS = ("--results-out", "--log", "--write", "--write-study",
                      "--peer-python")


def shown_argv(argv) -> str:
  """The command line for the reports, without ``LOCAL_PATH_OPTIONS``
  (``--opt value`` and ``--opt=value``); a value with spaces is quoted."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
      continue
    if a in LOCAL_PATH_OPTIONS:
      skip = True
      continue
    if a.split("=", 1)[0] in LOCAL_PATH_OPTIONS:
      continue
    # Double quotes read better than shlex's '"'"' around an apostrophe.
    out.append(a if shlex.quote(a) == a else
               '"' + re.sub(r'(["\\$`])', r"\\\1", a) + '"')
  return " ".join(out)


def cpu_model():
  """The CPU's model name, with family / model / stepping where the name
  alone is generic (VMs often say only "Intel(R) Xeon(R) Processor")."""
  info = {}
  try:
    with open("/proc/cpuinfo") as f:
      for l in f:
        if ":" in l:
          k, v = (x.strip() for x in l.split(":", 1))
          info.setdefault(k, v)
        elif info:
          break
  except OSError:
    return platform.processor() or "?"
  ids = ", ".join(f"{k} {info[k]}" for k in ("cpu family", "model",
                                              "stepping") if k in info)
  return f"{info.get('model name', '?')}" + (f" ({ids})" if ids else "")


def machine(peak=True):
  isa = "+".join(cpu_isa()) or "?"
  mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  gpu = ""
  try:
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
         "--format=csv,noheader"], capture_output=True, text=True,
        timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    pass
  gpu = f"GPU: {gpu} (driver); host: " if gpu else ""
  return (f"{gpu}{cpu_model()}, {os.cpu_count()} cores ({isa}), {mem:.0f} "
          f"GiB RAM, {platform.system()} {platform.release()}, Python "
          f"{platform.python_version()}" + (
              f"; {common.PEAK_NAME} taken as {common.PEAK_GFLOPS:.0f} "
              f"GFLOP/s" if peak else ""))


def versions(args):
  out = []
  for py, code in ((sys.executable, "import jax, flax; print('jax', "
                    "jax.__version__, 'flax', flax.__version__)"),
                   (args.peer_python, "import torch, snntorch, norse; "
                    "print('torch', torch.__version__, 'snntorch', "
                    "snntorch.__version__, 'norse', norse.__version__)")):
    try:
      out.append(subprocess.run([py, "-c", code], capture_output=True,
                                text=True).stdout.strip())
    except OSError:
      pass
  return "; ".join(o for o in out if o)


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--headline", action="store_true",
                  help="the quiet-machine headline run: " + ", ".join(
                      f"--{k.replace('_', '-')} " + (
                          " ".join(map(str, v)) if isinstance(v, list)
                          else str(v)) for k, v in HEADLINE.items())
                  + " (explicit options override)")
  ap.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32])
  ap.add_argument("--impls", nargs="+", default=list(MODULES))
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--extra-rounds", type=int, default=1,
                  help="rounds of the remat / variant sections")
  ap.add_argument("--steps", type=int, default=50,
                  help="train steps per process for T <= 8")
  ap.add_argument("--steps-long", type=int, default=20,
                  help="train steps per process for T > 8")
  ap.add_argument("--spyx-steps", type=int, default=4)
  ap.add_argument("--spyx-max-T", type=int, default=8)
  ap.add_argument("--budget", type=float, default=30.0,
                  help="max seconds of timed steps per process")
  ap.add_argument("--peer-python", default=None,
                  help="python with torch, snntorch, norse and spyx "
                  "(default .venv-bench/bin/python in the repository; with "
                  "--gpu this python)")
  ap.add_argument("--gpu", action="store_true",
                  help="run on the GPU: JAX's default backend, PyTorch "
                  "peers on cuda, %% of --peak-gflops, device memory "
                  "columns, writes BENCHMARKS_GPU.md")
  ap.add_argument("--peak-gflops", type=float, default=494_700.0,
                  help="with --gpu: the peak the %% column divides by "
                  "(default: H100 SXM dense TF32, 494.7 TFLOP/s; f32 convs "
                  "run as TF32 in JAX and PyTorch by default)")
  ap.add_argument("--only", nargs="+",
                  choices=("main", "remat", "extras", "layer", "none"),
                  default=("main", "remat", "extras", "layer"),
                  help="sections to measure (the others can come from "
                  "--results-in; 'none': only write the report)")
  ap.add_argument("--extra-variants", nargs="+",
                  choices=("unroll", "order", "malloc", "chunk"),
                  default=("unroll", "order", "malloc", "chunk"),
                  help="which alternatives the extras section measures")
  ap.add_argument("--results-in", nargs="*", default=[],
                  help="JSON files of earlier --results-out runs to merge "
                  "(e.g. sections measured in separate sessions)")
  ap.add_argument("--results-out",
                  default=os.path.join(tempfile.gettempdir(),
                                       "reference_net_results.json"),
                  help="write this run's (merged) records as JSON (input "
                  "for --results-in); also written, with what was measured "
                  "so far, when the quiet-machine gate refuses")
  ap.add_argument("--log", default=os.path.join(tempfile.gettempdir(),
                                                "reference_net.log"))
  ap.add_argument("--remat-T", type=int, nargs="*", default=[8, 16, 32])
  ap.add_argument("--chunk", type=int, default=4,
                  help="chunk of the 'chunk C, remat' rows (the H100 tables "
                  "of BENCHMARKS_GPU.md were measured with 8; pass --chunk 8 "
                  "to regenerate them from benchmarks/results/)")
  ap.add_argument("--no-extras", action="store_true",
                  help="skip mixed precision, order/unroll and the "
                  "single-layer benchmark")
  ap.add_argument("--default-malloc", action="store_true",
                  help="every process with glibc's default malloc "
                  "(SCNN_JAX_HOST_ALLOCATOR=0 for scnn_jax; labelled)")
  ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                  help="bf16 rows in the main table (scnn_jax model.dtype="
                  "bfloat16 vs PyTorch bf16 autocast); auto: on GPU and on "
                  "CPUs with AVX512-BF16 or AMX")
  ap.add_argument("--omp-wait-policy", default="default",
                  choices=("default", "PASSIVE", "ACTIVE"),
                  help="OMP_WAIT_POLICY of every process (labelled); "
                  "default: unset, PyTorch's default. Row 'passive' measures "
                  "PASSIVE beside the default instead: it makes PyTorch's "
                  "idle OpenMP threads sleep rather than spin, a defence "
                  "against other processes' load (on the shared 2-core "
                  "machine under load, spinning made the hand loop 17x "
                  "slower)")
  ap.add_argument("--max-load", type=float, default=0.5,
                  help="quiet machine: the 1-minute load average the first "
                  "process waits for")
  ap.add_argument("--max-busy", type=float, default=0.2,
                  help="quiet machine: the cores other processes may keep "
                  "busy before and while each process runs")
  ap.add_argument("--load-wait", type=float, default=10.0,
                  help="minutes to wait for a quiet machine before each "
                  "process, then refuse")
  ap.add_argument("--allow-load", action="store_true",
                  help="measure on a loaded machine when the wait runs "
                  "out (the records are marked 'loaded' and the report "
                  "says so)")
  ap.add_argument("--no-gate", action="store_true",
                  help="no quiet-machine gate and no load records (GPU "
                  "machines, smoke runs)")
  ap.add_argument("--load", default="",
                  help="with --only none: the load averages the measuring "
                  "run printed (for the report)")
  ap.add_argument("--rows", nargs="+",
                  choices=("default",) + tuple(ROWS) + ("bf16", "compile"),
                  default=("default", "literal", "plain", "user", "bf16",
                           "compile"),
                  help="main-table rows besides the peers: scnn_jax's "
                  "default (shortcuts); literal (the literal network, "
                  "backend.jit, per-shape small convs); plain (the same, "
                  "plain jax.jit); user (the literal network in a plain "
                  "jax.jit step with every layer at its defaults: the "
                  "headline); unroll (user, LIF scans unrolled); user-malloc "
                  "(user, SCNN_JAX_HOST_ALLOCATOR=0); no-xla-flag (user, "
                  "SCNN_JAX_XLA_FLAGS=0, first T); passive (PyTorch, "
                  "OMP_WAIT_POLICY=PASSIVE); torch-malloc (PyTorch with "
                  "scnn_jax's GLIBC_TUNABLES); bf16 (with --bf16); "
                  "torch.compile (GPU)")
  ap.add_argument("--remat-variants", nargs="+",
                  choices=("default", "whole", "whole-remat", "chunk-remat"),
                  default=("default", "whole", "whole-remat", "chunk-remat"))
  ap.add_argument("--batch", type=int, default=common.B,
                  help="batch size B of every implementation")
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--write", default=os.path.join(ROOT, "BENCHMARKS.md"),
                  help="markdown file to (re)generate; '' to skip")
  ap.add_argument("--write-study",
                  default=os.path.join(ROOT, "docs", "studies",
                                       "performance.md"),
                  help="page whose generated headline block (between "
                  "<!-- headline --> markers) is rewritten with --write; "
                  "'' to skip")
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument("--headline", action="store_true")
  if pre.parse_known_args()[0].headline:
    ap.set_defaults(**HEADLINE)
  args = ap.parse_args()
  args.bf16 = (args.bf16 == "on" or args.bf16 == "auto" and (
      args.gpu or bool({"AVX512-BF16", "AMX-BF16"} & set(cpu_isa()))))
  common.B = args.batch
  os.environ["SCNN_BENCH_B"] = str(args.batch)  # for every child process
  if args.quick:
    args.T, args.rounds, args.remat_T, args.no_extras = [8], 1, [], True
  if args.gpu:
    common.PEAK_GFLOPS = args.peak_gflops
    common.PEAK_NAME = "TF32 peak"
    if args.write == os.path.join(ROOT, "BENCHMARKS.md"):
      args.write = os.path.join(ROOT, "BENCHMARKS_GPU.md")
  if args.peer_python is None:
    args.peer_python = (sys.executable if args.gpu else
                        os.path.join(ROOT, ".venv-bench", "bin", "python"))
  if not os.path.exists(args.peer_python):
    print(f"peer python {args.peer_python} not found: running scnn_jax only "
          "(pip install -r requirements-bench.txt in a separate venv)")
    args.impls = ["scnn_jax"]
  args.machine = machine(peak=args.gpu)
  _, removed = clean_environ()
  if removed:
    print("not passed to the measured processes (each library's defaults): "
          + ", ".join(removed), flush=True)
  gate = None if args.no_gate or "none" in args.only else quiet.Gate(
      max_load=args.max_load, max_busy=args.max_busy,
      wait_s=60.0 * args.load_wait, allow_load=args.allow_load)
  log_path = args.log
  log = open(log_path, "w")
  t0 = time.time()

  res, main_keys = {}, None
  args.load = args.load or f"{load_avg()} (report only)"
  for path in args.results_in:
    with open(path) as f:
      for r in json.load(f):
        res[(r["impl"], r["variant"], r["T"])] = r

  def save():
    if args.results_out:
      with open(args.results_out, "w") as f:
        json.dump(list(res.values()), f, indent=1)

  try:
    main_keys, remat_keys, extra_keys, layer_out = measure(
        args, res, log, gate)
  except quiet.LoadRefused as e:
    log.close()
    save()
    sys.exit(f"reference_net.py: {e}")
  log.close()
  save()

  if main_keys is None:  # report only: every merged record of the main run
    main_keys = [k for k in res if k not in remat_keys + extra_keys
                 or k[1].startswith("default")]
  table, summary = main_table(res, args.T, main_keys)
  print("\n" + table)
  print(f"\nflops per train step: {common.flops_per_step(1) / 1e9:.2f} GFLOP "
        f"x T; total wall {time.time() - t0:.0f} s")
  if remat_keys:
    print("\n" + variant_table(res, remat_keys))
  if extra_keys:
    print("\n" + variant_table(res, extra_keys))
  if args.write and args.gpu:
    from benchmarks.refnet import report_gpu
    report_gpu.write(args.write, table=table, summary=summary,
                     remat=variant_table(res, remat_keys) if remat_keys
                     else "",
                     extras=variant_table(res, extra_keys) if extra_keys
                     else "", layer=layer_out, machine=machine(),
                     versions=versions(args), argv=shown_argv(sys.argv[1:]),
                     res=res, args=args,
                     date=datetime.date.today().isoformat())
    print(f"wrote {args.write}")
  elif args.write:
    from benchmarks.refnet import report
    report.write(args.write, main=[res[k] for k in main_keys],
                 remat=variant_table(res, remat_keys) if remat_keys else "",
                 extras=variant_table(res, extra_keys) if extra_keys else "",
                 layer=layer_out, machine=_measured_on(
                     [res[k] for k in main_keys], args.machine),
                 versions=versions(args), argv=shown_argv(sys.argv[1:]),
                 args=args, date=datetime.date.today().isoformat(),
                 load=args.load, study=args.write_study)
    print(f"wrote {args.write}" + (f" and the headline of {args.write_study}"
                                   if args.write_study else ""))
  print(f"commands, loads and failures logged in {log_path}")


def _measured_on(records, here):
  """The machine the records were measured on (this one if they do not
  say: records from before they did)."""
  names = {r.get("machine") for r in records} - {None}
  return names.pop() if len(names) == 1 else here


def main_jobs(args):
  """(impl, T, extra, setting, row) of the main table, in the order of a
  round."""
  spyx_max_T = 32 if args.gpu else args.spyx_max_T
  jobs = [(i, T, [], "", i) for T in args.T for i in args.impls
          if not (i == "spyx" and T > spyx_max_T)]
  if "default" not in args.rows:
    jobs = [j for j in jobs if j[0] != "scnn_jax"]
  for name, (impl, extra, setting) in ROWS.items():
    if name not in args.rows or impl not in args.impls:
      continue
    if args.gpu and name in ("user-malloc", "torch-malloc", "no-xla-flag"):
      continue  # host settings: they matter on CPU only
    # the silent slow path the process-wide flag exists to close: once
    Ts = args.T[:1] if name == "no-xla-flag" else args.T
    jobs += [(impl, T, extra, setting, name) for T in Ts]
  if args.bf16 and "bf16" in args.rows:
    if "scnn_jax" in args.impls:
      jobs += [("scnn_jax", T, ["--same-flops", "--dtype", "bfloat16"], "",
                "bf16") for T in args.T]
    if "pytorch" in args.impls:
      jobs += [("pytorch", T, ["--autocast", "bfloat16"], "", "torch-bf16")
               for T in args.T]
  if args.gpu and "pytorch" in args.impls and "compile" in args.rows:
    jobs += [("pytorch", T, ["--compile"], "", "compile") for T in args.T]
  # Interleave by T too: a round alternates the rows of one T before the next.
  return sorted(jobs, key=lambda j: args.T.index(j[1]))


def measure(args, res, log, gate):
  """Runs the sections of --only into ``res``; returns (main keys or None,
  remat keys, extra keys, single-layer output)."""
  main_keys = None
  if "main" in args.only:
    print("== main table", flush=True)
    before = load_avg()
    print(f"load average before: {before}", flush=True)
    main = run_jobs(main_jobs(args), args, log, gate=gate)
    args.load = (f"1 / 5 / 15-minute load averages {before} before the "
                 f"main table's processes, {load_avg()} after")
    print(f"load average: {args.load}", flush=True)
    res.update(main)
    main_keys = list(main)

  remat_keys, extra_keys = [], []
  if "scnn_jax" in args.impls and args.remat_T and "remat" in args.only:
    print("== remat / chunking", flush=True)
    rjobs = []
    for T in args.remat_T:
      for name, extra in (("default", []), ("whole", ["--chunk", "none"]),
                          ("whole-remat", ["--chunk", "none", "--remat"]),
                          ("chunk-remat", ["--chunk", str(args.chunk),
                                           "--remat"])):
        if name in args.remat_variants:
          rjobs.append(("scnn_jax", T, extra))
    rres = run_jobs([j for j in rjobs if j[2] or ("scnn_jax", "default", j[1])
                     not in res], args, log, args.extra_rounds, gate)
    res.update({k: v for k, v in rres.items() if k not in res})

  for T in args.remat_T:  # measured above or merged from --results-in
    remat_keys += [k for k in (("scnn_jax", "default", T),
                               ("scnn_jax", "whole sequence", T),
                               ("scnn_jax", "whole sequence, remat", T),
                               ("scnn_jax", f"chunk {args.chunk}, remat", T))
                   if k in res]
  if ("scnn_jax" in args.impls and not args.no_extras and
      "extras" in args.only):
    print("== mixed precision, order, unroll, malloc", flush=True)
    xjobs = {"unroll": [("scnn_jax", 8, ["--unroll", "full"]),
                        ("scnn_jax", 8, ["--unroll", "1"]),
                        ("scnn_jax", 16, ["--unroll", "full"]),
                        ("scnn_jax", 16, ["--unroll", "1"])],
             "order": [("scnn_jax", 8, ["--order", "step", "--conv-impl",
                                        "xla"]),
                       ("scnn_jax", 8, ["--order", "step", "--conv-impl",
                                        "matmul"])],
             "malloc": [("scnn_jax", 8, [], "default-malloc")],
             # "whole sequence" rows come from the remat section if it ran
             "chunk": [("scnn_jax", T, ["--chunk", c])
                       for T, c in ((8, "none"), (16, "none"), (32, "none"),
                                    (16, "8"), (32, "8"))
                       if ("scnn_jax", "whole sequence" if c == "none" else
                           f"chunk {c}", T) not in res]}
    if args.gpu:
      xjobs.pop("malloc")  # the host allocator matters on CPU only
    xjobs = [j for name in xjobs if name in args.extra_variants
             for j in xjobs[name]]
    xres = run_jobs(xjobs, args, log, args.extra_rounds, gate)
    res.update(xres)
    extra_keys = [("scnn_jax", "default", 8)] + list(xres) + [
        ("scnn_jax", "default", 16), ("scnn_jax", "default", 32)] + [
        ("scnn_jax", "whole sequence", T) for T in (8, 16, 32)
        if ("scnn_jax", "whole sequence", T) not in xres]
  layer_out = ""
  if ("scnn_jax" in args.impls and not args.no_extras and
      "layer" in args.only):
    print("== single layer (benchmarks/spiking_conv.py)", flush=True)
    if gate is not None:
      gate.after(gate.before(), 0.0)  # quiet before it; not recorded
    p = subprocess.run([sys.executable, "benchmarks/spiking_conv.py", "--all"]
                       + (["--rounds", "50"] if args.gpu else []),
                       cwd=ROOT, capture_output=True, text=True,
                       env=job_env("scnn_jax", "", args)[0])
    layer_out = "\n".join(l for l in p.stdout.splitlines()
                          if l.startswith(("|", "neuron-scan", "jax ")))
    print(layer_out)
  return main_keys, remat_keys, extra_keys, layer_out


if __name__ == "__main__":
  main()
