"""The reference network in scnn_jax and its peers, side by side.

    python benchmarks/reference_net.py                 # full run, writes BENCHMARKS.md
    python benchmarks/reference_net.py --quick         # T=8 only, 1 round, no extras
    python benchmarks/reference_net.py --T 8 16 --impls scnn_jax snntorch
    python benchmarks/reference_net.py --gpu           # on a GPU machine:
        # one python with jax[cuda] + CUDA torch, snntorch, norse, spyx;
        # writes BENCHMARKS_GPU.md

Every measurement runs in a fresh process (``python -m benchmarks.refnet.<impl>``),
and the processes are interleaved: round r runs every (T, implementation) once,
in an order rotated by r, so load from other processes on a shared machine
hits all implementations alike; each figure is the median over rounds of
per-process medians. The peers (snnTorch, norse, spyx) run from a separate
virtual environment (``--peer-python``, default ``.venv-bench/bin/python``
in the repository; requirements-bench.txt) so scnn_jax's own jax/flax stay
as pinned.

All processes get the same environment: 2 intra-op threads (torch
``set_num_threads``, OMP/MKL), ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP
threads sleep rather than spin: PyTorch's defence against other processes'
load; XLA does not use OpenMP), and the glibc malloc settings of
``scnn_jax.ops.backend.GLIBC_TUNABLES`` (keep freed memory mapped: fresh
page-faulting of large buffers cost every library ~25 %).

Printed and written to BENCHMARKS.md: train steps/s (forward + backward +
Adam), inference images/s, % of the fp32 peak, peak RSS, compile (first
step) time, loss over the training steps on the fixed batch, spike rates per
layer, and the ratio of scnn_jax to the fastest peer; then the remat /
chunking table (speed and memory at T = 8, 16, 32), mixed precision, the
execution-order / unroll alternatives, and the single-layer neuron-scan
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

from benchmarks.refnet import common  # noqa: E402

MODULES = {"scnn_jax": "scnn", "pytorch": "torch_loop",
           "snntorch": "snntorch_net", "norse": "norse_net",
           "spyx": "spyx_net"}
PEERS = ("pytorch", "snntorch", "norse", "spyx")
# The reference every scnn_jax row is divided by: the hand-written PyTorch
# loop (benchmarks/refnet/torch_loop.py), fp32, at the same T.
HAND = ("pytorch", "hand loop, channels-last")
GLIBC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold="
                  "1073741824:glibc.malloc.arena_max=1")


def _pythonpath():
  # The repo first, then whatever the caller had (e.g. carried packages).
  return os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)


def run_job(impl, T, extra, args, log):
  python = sys.executable if impl == "scnn_jax" else args.peer_python
  steps = args.steps if T <= 8 else args.steps_long
  budget = args.budget
  if impl == "spyx" and not args.gpu:  # ~100x slower on CPU: a few steps
    steps, budget = min(steps, args.spyx_steps), 1.0
  cmd = [python, "-m", f"benchmarks.refnet.{MODULES[impl]}", "--T", str(T),
         "--steps", str(steps), "--budget", str(budget)] + list(extra)
  if args.gpu and impl in ("pytorch", "snntorch", "norse"):
    cmd += ["--device", "cuda"]
  env = dict(os.environ, PYTHONPATH=_pythonpath(), OMP_NUM_THREADS="2",
             MKL_NUM_THREADS="2", OMP_WAIT_POLICY=args.omp_wait_policy,
             GLIBC_TUNABLES=GLIBC_TUNABLES,
             SCNN_PEAK_GFLOPS=str(common.PEAK_GFLOPS),
             SCNN_PEAK_NAME=common.PEAK_NAME)
  if "--no-xla-flag" in extra:  # scnn_jax imported without its XLA flag
    env["SCNN_JAX_XLA_FLAGS"] = "0"
    cmd = [c for c in cmd if c != "--no-xla-flag"]
  if args.default_malloc or "--default-malloc" in extra:
    env.pop("GLIBC_TUNABLES")
    env["SCNN_BENCH_DEFAULT_MALLOC"] = "1"
    cmd = [c for c in cmd if c != "--default-malloc"]
  t0 = time.time()
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
  log.write(f"$ {' '.join(cmd[1:])}  ({time.time() - t0:.0f} s)\n")
  if p.returncode or not line:
    log.write(p.stdout[-2000:] + p.stderr[-4000:] + "\n")
    print(f"  FAILED {impl} T={T} {extra}: {p.stderr.strip()[-300:]}",
          flush=True)
    return None
  rec = json.loads(line[-1][len("RESULT "):])
  if common.B != 32:
    rec["variant"] += f", B={common.B}"
  if "--no-xla-flag" in extra:
    rec["variant"] += ", no XLA flag"
  if "--default-malloc" in extra or args.default_malloc:
    rec["variant"] += ", default malloc"
  dev = (f"device {rec['dev_peak_mb']:6.0f} MB  "
         if rec.get("dev_peak_mb") is not None else "")
  print(f"  {impl:9s} T={T:2d} {rec['variant']:28s} "
        f"{rec['steps_per_s']:6.2f} steps/s  {rec['pct_peak']:5.1f} % peak  "
        f"rss {rec['peak_rss_mb']:6.0f} MB  {dev}cpu avail "
        f"{rec['cpu_avail']:.2f}  ({time.time() - t0:.0f} s)", flush=True)
  return rec


def run_jobs(jobs, args, log, rounds=None):
  """jobs: list of (impl, T, extra). Interleaved rounds, rotated order."""
  recs = defaultdict(list)
  rounds = args.rounds if rounds is None else rounds
  for r in range(rounds):
    print(f"round {r + 1}/{rounds}", flush=True)
    k = r % len(jobs)
    for impl, T, extra in jobs[k:] + jobs[:k]:
      rec = run_job(impl, T, extra, args, log)
      if rec is not None:
        recs[(impl, rec["variant"], T)].append(rec)
  out = {}
  for key, rs in recs.items():
    m = dict(rs[0])
    for f in ("steps_per_s", "infer_img_s", "gflops", "pct_peak", "compile_s",
              "cpu_avail", "step_s"):
      m[f] = float(np.median([r[f] for r in rs]))
    for f in ("peak_rss_mb", "dev_peak_mb"):
      vals = [r[f] for r in rs if r.get(f) is not None]
      m[f] = float(np.median(vals)) if vals else None
    m["runs"] = len(rs)
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
    batch = v["variant"][v["variant"].find(", B="):] if ", B=" in v[
        "variant"] else ""
    ref = res.get((HAND[0], HAND[1] + batch, v["T"]))
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
LOCAL_PATH_OPTIONS = ("--results-out", "--log", "--write", "--peer-python")


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


def machine():
  model = "?"
  try:
    with open("/proc/cpuinfo") as f:
      for l in f:
        if l.startswith("model name"):
          model = l.split(":", 1)[1].strip()
          break
    isa = "+".join(cpu_isa()) or "?"
  except OSError:
    isa = "?"
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
  return (f"{gpu}{model}, {os.cpu_count()} cores ({isa}), {mem:.0f} GiB RAM, "
          f"{platform.system()} {platform.release()}, Python "
          f"{platform.python_version()}; {common.PEAK_NAME} taken as "
          f"{common.PEAK_GFLOPS:.0f} GFLOP/s")


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
                  "for --results-in)")
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
                  help="run everything with glibc's default malloc")
  ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                  help="bf16 rows in the main table (scnn_jax model.dtype="
                  "bfloat16 vs PyTorch bf16 autocast); auto: on GPU and on "
                  "CPUs with AVX512-BF16 or AMX")
  ap.add_argument("--omp-wait-policy", default="PASSIVE",
                  choices=("PASSIVE", "ACTIVE"),
                  help="OMP_WAIT_POLICY of every process. PASSIVE: PyTorch's "
                  "idle OpenMP threads sleep instead of spinning; on the "
                  "shared 2-core machine under load, ACTIVE made the hand "
                  "loop 17x slower (0.022 vs 0.38 steps/s, T = 8)")
  ap.add_argument("--load", default="",
                  help="with --only none: the load averages the measuring "
                  "run printed (for the report)")
  ap.add_argument("--rows", nargs="+",
                  choices=("default", "plain", "bf16", "compile"),
                  default=("default", "plain", "bf16", "compile"),
                  help="main-table rows besides the peers and scnn_jax's "
                  "literal network: scnn_jax's default (shortcuts), plain "
                  "jax.jit, bf16 (with --bf16), torch.compile (GPU)")
  ap.add_argument("--remat-variants", nargs="+",
                  choices=("default", "whole", "whole-remat", "chunk-remat"),
                  default=("default", "whole", "whole-remat", "chunk-remat"))
  ap.add_argument("--batch", type=int, default=common.B,
                  help="batch size B of every implementation")
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--write", default=os.path.join(ROOT, "BENCHMARKS.md"),
                  help="markdown file to (re)generate; '' to skip")
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
  log_path = args.log
  log = open(log_path, "w")
  t0 = time.time()

  res, main_keys = {}, None
  args.load = args.load or f"{load_avg()} (report only)"
  for path in args.results_in:
    with open(path) as f:
      for r in json.load(f):
        res[(r["impl"], r["variant"], r["T"])] = r
  if "main" in args.only:
    print("== main table", flush=True)
    spyx_max_T = 32 if args.gpu else args.spyx_max_T
    jobs = [(i, T, []) for T in args.T for i in args.impls
            if not (i == "spyx" and T > spyx_max_T)]
    if "default" not in args.rows:
      jobs = [j for j in jobs if j[0] != "scnn_jax"]
    if "scnn_jax" in args.impls:
      jobs += [("scnn_jax", T, ["--same-flops"]) for T in args.T]
      if "plain" in args.rows:
        jobs += [("scnn_jax", T, ["--same-flops", "--jit", "plain"])
                 for T in args.T]
      if not args.gpu:  # every conv through lax.conv (no per-shape choice)
        jobs += [("scnn_jax", args.T[0], ["--same-flops", "--small-convs",
                                          "xla"])]
      if "plain" in args.rows and not args.gpu:
        # the silent slow path the process-wide flag exists to close
        jobs += [("scnn_jax", args.T[0], ["--same-flops", "--jit", "plain",
                                          "--no-xla-flag"])]
    if args.bf16 and "bf16" in args.rows:
      if "scnn_jax" in args.impls:
        jobs += [("scnn_jax", T, ["--same-flops", "--dtype", "bfloat16"])
                 for T in args.T]
      if "pytorch" in args.impls:
        jobs += [("pytorch", T, ["--autocast", "bfloat16"]) for T in args.T]
    if args.gpu and "pytorch" in args.impls and "compile" in args.rows:
      jobs += [("pytorch", T, ["--compile"]) for T in args.T]
    before = load_avg()
    print(f"load average before: {before}", flush=True)
    main = run_jobs(jobs, args, log)
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
                     not in res], args, log, args.extra_rounds)
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
             "malloc": [("scnn_jax", 8, ["--default-malloc"])],
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
    xres = run_jobs(xjobs, args, log, args.extra_rounds)
    res.update(xres)
    extra_keys = [("scnn_jax", "default", 8)] + list(xres) + [
        ("scnn_jax", "default", 16), ("scnn_jax", "default", 32)] + [
        ("scnn_jax", "whole sequence", T) for T in (8, 16, 32)
        if ("scnn_jax", "whole sequence", T) not in xres]
  layer_out = ""
  if ("scnn_jax" in args.impls and not args.no_extras and
      "layer" in args.only):
    print("== single layer (benchmarks/spiking_conv.py)", flush=True)
    p = subprocess.run([sys.executable, "benchmarks/spiking_conv.py", "--all"]
                       + (["--rounds", "50"] if args.gpu else []),
                       cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=_pythonpath()))
    layer_out = "\n".join(l for l in p.stdout.splitlines()
                          if l.startswith(("|", "neuron-scan", "jax ")))
    print(layer_out)
  log.close()
  if args.results_out:
    with open(args.results_out, "w") as f:
      json.dump(list(res.values()), f, indent=1)

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
    report.write(args.write, table=table, summary=summary,
                 remat=variant_table(res, remat_keys) if remat_keys else "",
                 extras=variant_table(res, extra_keys) if extra_keys else "",
                 layer=layer_out, machine=machine(), versions=versions(args),
                 argv=shown_argv(sys.argv[1:]), res=res, args=args,
                 date=datetime.date.today().isoformat(), load=args.load)
    print(f"wrote {args.write}")
  print(f"commands and failures logged in {log_path}")


if __name__ == "__main__":
  main()
