"""Where a train step of the reference network spends its time (CPU).

    python benchmarks/profile_step.py --T 8 --same-flops [--out results.json]
    python benchmarks/profile_step.py --T 8 --user [--unroll full] --save
        # a user's own jax.jit step; --save: benchmarks/results/, for the report
    XLA_FLAGS=--xla_dump_to=/tmp/dump python benchmarks/profile_step.py ...

Compiles the step exactly as ``benchmarks/refnet/scnn.py`` does (same
flags: ``--same-flops`` is the literal network), runs it under
``jax.profiler.trace`` and sums the duration of every XLA CPU thunk by
kind: convolutions, layout transposes / copies, the neuron scans (everything
inside a while loop), broadcasts (input copies, upsampling), reductions,
concatenation / slicing of time chunks, dots (bias gradients), the rest.
Thunks of different threads overlap, and YNNPACK runs a conv on its own
worker threads, so the sums measure where work goes, not wall time; the
step's wall time is printed beside them. Writes the totals (ms per step)
and the 25 largest thunks as JSON.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scnn_jax.ops import backend  # noqa: E402

backend.tune_host_allocator()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.refnet import common, scnn  # noqa: E402

CATEGORIES = (  # (name, test on thunk name and op_name), first match wins
    ("conv", lambda n, op: n.startswith(("conv", "ynn"))),
    ("neuron scans (while loops)",
     lambda n, op: "while/body" in op or n.startswith("while")),
    ("layout transposes", lambda n, op: "transpose" in n),
    ("copies", lambda n, op: n.startswith("copy")),
    ("broadcasts (input copies, upsample)", lambda n, op: "broadcast" in n),
    ("reductions (upsample grad, means)", lambda n, op: "reduce" in n),
    ("chunk concat / split", lambda n, op: "concat" in n or "slice" in n),
    ("dots (bias grads, matmul convs)", lambda n, op: n.startswith("dot")),
    ("other", lambda n, op: True),
)
SKIP = ("ThunkExecutor", "$", "Pjit", "Common", "PjRt")


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--T", type=int, default=8)
  ap.add_argument("--same-flops", action="store_true")
  ap.add_argument("--user", action="store_true",
                  help="the headline's 'user' row: --same-flops, every conv "
                  "through lax.conv (no per-shape formulation), plain "
                  "jax.jit")
  ap.add_argument("--unroll", default="auto",
                  help="neuron scans: auto, full or a number of steps")
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--out", default="")
  ap.add_argument("--save", action="store_true",
                  help="write to benchmarks/results/profile_cpu_<network>_T<T>"
                  "[_unroll].json, where BENCHMARKS.md's report reads it")
  args = ap.parse_args()
  net_args = argparse.Namespace(
      chunk="auto", dtype="float32", order="fold", conv_impl="auto",
      unroll=args.unroll, scan_chunks="on", remat=False, input="static",
      upsample="fused", readout="mean-first",
      small_convs="xla" if args.user else "per-shape")
  if args.same_flops or args.user:
    net_args.input, net_args.upsample, net_args.readout = (
        "copies", "separate", "per-step")
  T = args.T
  x, img, mask = (jnp.asarray(a) for a in common.batch())
  graphdef, params, rest = nnx.split(scnn.build(net_args), nnx.Param, ...)
  tx = optax.adam(common.LR)

  def train_step(carry):
    params, opt_state, _ = carry

    def loss_fn(params):
      pred = nnx.merge(graphdef, params, rest)(x, T)
      return jnp.sum(mask * (pred - img) ** 2) / jnp.sum(mask)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  carry = (params, tx.init(params), jnp.zeros(()))
  jit = jax.jit if args.user else backend.jit
  step = jit(train_step, donate_argnums=0).lower(carry).compile()
  for _ in range(3):
    carry = jax.block_until_ready(step(carry))
  trace_dir = tempfile.mkdtemp(prefix="scnn_profile_")
  t0 = time.perf_counter()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      carry = jax.block_until_ready(step(carry))
  wall = (time.perf_counter() - t0) / args.steps * 1e3
  path = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]
  events = [e for e in json.load(gzip.open(path))["traceEvents"]
            if e.get("ph") == "X"]
  op_names = {}
  for line in step.as_text().splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"", line)
    if m:
      op_names[m.group(1)] = m.group(2)
  per_thunk = collections.Counter()
  for e in events:
    if not e["name"].startswith(SKIP):
      per_thunk[e["name"]] += e["dur"] / 1e3 / args.steps
  totals = collections.Counter()
  for name, ms in per_thunk.items():
    op = op_names.get(name, "")
    cat = next(c for c, test in CATEGORIES if test(name, op))
    totals[cat] += ms
  out = {
      "T": T, "B": common.B,
      "network": ("user" if args.user else "literal" if args.same_flops
                  else "default"), "unroll": args.unroll,
      "wall_ms_per_step": wall, "load_avg": os.getloadavg(),
      "thunk_ms_per_step": {k: round(v, 1) for k, v in totals.most_common()},
      "largest_thunks": [
          (name, round(ms, 1), op_names.get(name, "")[-80:])
          for name, ms in per_thunk.most_common(25)],
  }
  print(f"wall {wall:.0f} ms/step; thunk time by kind (ms/step):")
  for k, v in totals.most_common():
    print(f"  {v:7.1f}  {100 * v / sum(totals.values()):4.0f} %  {k}")
  if args.save and not args.out:
    unroll = {"auto": "", "full": "_unroll"}.get(args.unroll,
                                                 f"_unroll{args.unroll}")
    args.out = os.path.join(ROOT, "benchmarks", "results",
                            f"profile_cpu_{out['network']}_T{T}{unroll}.json")
  if args.out:
    print(f"wrote {args.out}")
    with open(args.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
