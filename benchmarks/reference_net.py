"""Issue 6: the reference network in scnn_jax and its peers, side by side.

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
virtual environment (``--peer-python``, default /work/venv-bench/bin/python;
requirements-bench.txt) so scnn_jax's own jax/flax stay as pinned.

All processes get the same environment: 2 intra-op threads (torch
``set_num_threads``, OMP/MKL), and the glibc malloc settings of
``scnn_jax.backend.GLIBC_TUNABLES`` (keep freed memory mapped: fresh
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
import subprocess
import tempfile
import sys
import time
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.refnet import common  # noqa: E402

MODULES = {"scnn_jax": "scnn", "snntorch": "snntorch_net",
           "norse": "norse_net", "spyx": "spyx_net"}
PEERS = ("snntorch", "norse", "spyx")
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
  if args.gpu and impl in ("snntorch", "norse"):
    cmd += ["--device", "cuda"]
  env = dict(os.environ, PYTHONPATH=_pythonpath(), OMP_NUM_THREADS="2",
             MKL_NUM_THREADS="2",
             GLIBC_TUNABLES=GLIBC_TUNABLES,
             SCNN_PEAK_GFLOPS=str(common.PEAK_GFLOPS),
             SCNN_PEAK_NAME=common.PEAK_NAME)
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


def main_table(res, Ts):
  gpu = any(v.get("dev_peak_mb") is not None for v in res.values())
  mem = "peak device MB | peak RSS MB" if gpu else "peak RSS MB"
  lines = ["| library | variant | T | train steps/s | vs fastest peer | "
           f"inference img/s | % {common.PEAK_NAME} | executed % | {mem} | "
           "compile s | loss first -> last (steps) | spike rates % | "
           "cpu avail |", "|---" * (14 if gpu else 13) + "|"]
  summary = {}
  for T in Ts:
    rows = [v for (i, var, t), v in res.items() if t == T and
            (i != "scnn_jax" or var in ("default", "same FLOPs"))]
    peers = [v["steps_per_s"] for v in rows if v["impl"] != "scnn_jax"]
    best = max(peers) if peers else None
    for v in sorted(rows, key=lambda v: -v["steps_per_s"]):
      ratio = (f"{v['steps_per_s'] / best:.2f}" if best and
               v["impl"] == "scnn_jax" else "")
      if v["impl"] == "scnn_jax":
        summary[(T, v["variant"])] = (v["steps_per_s"], best, v["pct_peak"],
                                      v.get("exec_pct_peak"))
      lines.append(
          f"| {v['impl']} | {v['variant']} | {T} | {v['steps_per_s']:.2f} | "
          f"{ratio} | {v['infer_img_s']:.0f} | {v['pct_peak']:.1f} | "
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


def machine():
  model = "?"
  try:
    with open("/proc/cpuinfo") as f:
      for l in f:
        if l.startswith("model name"):
          model = l.split(":", 1)[1].strip()
          break
    flags = open("/proc/cpuinfo").read()
    isa = "+".join(x for x in ("avx2", "fma", "avx512f") if f" {x}" in flags)
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
                  "(default /work/venv-bench/bin/python; with --gpu this "
                  "python)")
  ap.add_argument("--gpu", action="store_true",
                  help="run on the GPU: JAX's default backend, PyTorch "
                  "peers on cuda, %% of --peak-gflops, device memory "
                  "columns, writes BENCHMARKS_GPU.md")
  ap.add_argument("--peak-gflops", type=float, default=494_700.0,
                  help="with --gpu: the peak the %% column divides by "
                  "(default: H100 SXM dense TF32, 494.7 TFLOP/s; f32 convs "
                  "run as TF32 in JAX and PyTorch by default)")
  ap.add_argument("--only", nargs="+",
                  choices=("main", "remat", "extras", "layer"),
                  default=("main", "remat", "extras", "layer"),
                  help="sections to measure (the others can come from "
                  "--results-in)")
  ap.add_argument("--extra-variants", nargs="+",
                  choices=("bf16", "unroll", "order", "malloc", "chunk"),
                  default=("bf16", "unroll", "order", "malloc", "chunk"),
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
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--write", default=os.path.join(ROOT, "BENCHMARKS.md"),
                  help="markdown file to (re)generate; '' to skip")
  args = ap.parse_args()
  if args.quick:
    args.T, args.rounds, args.remat_T, args.no_extras = [8], 1, [], True
  if args.gpu:
    common.PEAK_GFLOPS = args.peak_gflops
    common.PEAK_NAME = "TF32 peak"
    if args.write == os.path.join(ROOT, "BENCHMARKS.md"):
      args.write = os.path.join(ROOT, "BENCHMARKS_GPU.md")
  if args.peer_python is None:
    args.peer_python = (sys.executable if args.gpu else
                        "/work/venv-bench/bin/python")
  if not os.path.exists(args.peer_python):
    print(f"peer python {args.peer_python} not found: running scnn_jax only "
          "(pip install -r requirements-bench.txt in a separate venv)")
    args.impls = ["scnn_jax"]
  log_path = args.log
  log = open(log_path, "w")
  t0 = time.time()

  res = {}
  for path in args.results_in:
    with open(path) as f:
      for r in json.load(f):
        res[(r["impl"], r["variant"], r["T"])] = r
  if "main" in args.only:
    print("== main table", flush=True)
    spyx_max_T = 32 if args.gpu else args.spyx_max_T
    jobs = [(i, T, []) for T in args.T for i in args.impls
            if not (i == "spyx" and T > spyx_max_T)]
    if "scnn_jax" in args.impls:
      jobs += [("scnn_jax", T, ["--same-flops"]) for T in args.T]
    res.update(run_jobs(jobs, args, log))

  remat_keys, extra_keys = [], []
  if "scnn_jax" in args.impls and args.remat_T and "remat" in args.only:
    print("== remat / chunking", flush=True)
    rjobs = []
    for T in args.remat_T:
      rjobs.append(("scnn_jax", T, []))
      rjobs.append(("scnn_jax", T, ["--chunk", "none"]))
      rjobs.append(("scnn_jax", T, ["--chunk", "none", "--remat"]))
      rjobs.append(("scnn_jax", T, ["--chunk", str(args.chunk), "--remat"]))
    rres = run_jobs([j for j in rjobs if j[2] or ("scnn_jax", "default", j[1])
                     not in res], args, log, args.extra_rounds)
    res.update({k: v for k, v in rres.items() if k not in res})
    for T in args.remat_T:
      remat_keys += [("scnn_jax", "default", T),
                     ("scnn_jax", "whole sequence", T),
                     ("scnn_jax", "whole sequence, remat", T),
                     ("scnn_jax", f"chunk {args.chunk}, remat", T)]
  if ("scnn_jax" in args.impls and not args.no_extras and
      "extras" in args.only):
    print("== mixed precision, order, unroll, malloc", flush=True)
    xjobs = {"bf16": [("scnn_jax", 8, ["--dtype", "bfloat16"])],
             "unroll": [("scnn_jax", 8, ["--unroll", "full"]),
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
    if args.gpu:  # the mixed-precision switch is meant for accelerators
      xjobs["bf16"].append(("scnn_jax", 32, ["--dtype", "bfloat16"]))
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

  table, summary = main_table(res, args.T)
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
                     versions=versions(args), argv=" ".join(sys.argv[1:]),
                     res=res, args=args,
                     date=datetime.date.today().isoformat())
    print(f"wrote {args.write}")
  elif args.write:
    from benchmarks.refnet import report
    report.write(args.write, table=table, summary=summary,
                 remat=variant_table(res, remat_keys) if remat_keys else "",
                 extras=variant_table(res, extra_keys) if extra_keys else "",
                 layer=layer_out, machine=machine(), versions=versions(args),
                 argv=" ".join(sys.argv[1:]), res=res, args=args,
                 date=datetime.date.today().isoformat())
    print(f"wrote {args.write}")
  print(f"commands and failures logged in {log_path}")


if __name__ == "__main__":
  main()
