"""Writes BENCHMARKS.md from a reference_net.py run: the headline table and
the goal first, the details and the explanations after them. Also rewrites
the generated headline block of the performance study page."""

from __future__ import annotations

import json
import os
import statistics

from benchmarks.refnet import common, quiet

# Row name (reference_net.ROWS, the implementations, bf16 rows) -> the name
# the tables show. The headline's order is this dict's.
ROW_NAMES = {
    "pytorch": "PyTorch, hand-written loop",
    "user": "**scnn_jax, your own `jax.jit` step**",
    "unroll": "the same, `unroll=True`",
    "user-malloc": "the same, `SCNN_JAX_HOST_ALLOCATOR=0`",
    "no-xla-flag": "the same, `SCNN_JAX_XLA_FLAGS=0`",
    "literal": "scnn_jax literal, `backend.jit`, per-shape small convs",
    "plain": "scnn_jax literal, `jax.jit`, per-shape small convs",
    "scnn_jax": "scnn_jax default (exact shortcuts, fewer FLOPs)",
    "passive": "PyTorch, `OMP_WAIT_POLICY=PASSIVE`",
    "torch-malloc": "PyTorch, `GLIBC_TUNABLES` (scnn_jax's malloc)",
    "norse": "norse",
    "snntorch": "snnTorch",
    "spyx": "spyx",
    "bf16": "scnn_jax literal, bf16 convs",
    "torch-bf16": "PyTorch, bf16 autocast",
    "compile": "PyTorch, `torch.compile`",
}
HAND_ROW = "pytorch"
GOAL = 1.1
GOAL_T = (8, 16)


def row_of(rec) -> str:
  """The row a record belongs to; records from before the rows had names
  get theirs from the variant."""
  if rec.get("row"):
    return rec["row"]
  impl, variant = rec["impl"], rec["variant"]
  if impl != "scnn_jax":
    return {"hand loop, channels-last": "pytorch", "channels-last": impl,
            "hand loop, channels-last, bfloat16 autocast": "torch-bf16"
            }.get(variant, f"{impl}: {variant}")
  return {"default": "scnn_jax", "same FLOPs": "literal",
          "same FLOPs, plain jax.jit": "plain",
          "same FLOPs, bfloat16": "bf16",
          "same FLOPs, plain jax.jit, xla small convs": "user",
          }.get(variant, f"scnn_jax: {variant}")


def _by_row(main):
  return {(row_of(r), r["T"]): r for r in main}


def ratio(a, b):
  """(median ratio of a's to b's steps/s, per-round ratios): paired by
  round where both records keep their rounds, else the medians' ratio."""
  if not a or not b:
    return None, []
  ra = {p["round"]: p["steps_per_s"] for p in a.get("per_round", [])}
  rb = {p["round"]: p["steps_per_s"] for p in b.get("per_round", [])}
  both = sorted(set(ra) & set(rb))
  if both:
    per = [ra[r] / rb[r] for r in both]
    return statistics.median(per), per
  return a["steps_per_s"] / b["steps_per_s"], []


def _load(rec) -> str:
  per = [p for p in rec.get("per_round", []) if "load_before" in p]
  if not per:
    return "not recorded"
  med = lambda k: statistics.median(p[k][0] for p in per)
  return f"{med('load_before'):.2f} -> {med('load_after'):.2f}"


def _name(row) -> str:
  return ROW_NAMES.get(row, row)


def _ordered(by_row, Ts):
  rows = list(dict.fromkeys(r for r, _ in by_row))
  rows.sort(key=lambda r: list(ROW_NAMES).index(r) if r in ROW_NAMES
            else len(ROW_NAMES))
  return [(r, T) for T in Ts for r in rows if (r, T) in by_row]


def headline_table(main, Ts) -> str:
  by_row = _by_row(main)
  lines = ["| row | T | train steps/s | vs hand loop | per round | cpu avail "
           "| 1-min load before -> after |", "|---" * 7 + "|"]
  for row, T in _ordered(by_row, Ts):
    v = by_row[(row, T)]
    r, per = ratio(v, by_row.get((HAND_ROW, T)))
    if row == HAND_ROW:
      per = []  # the reference itself
    flag = " (loaded)" if v.get("loaded") else ""
    lines.append(
        f"| {_name(row)}{flag} | {T} | {v['steps_per_s']:.2f} | "
        + (f"{r:.2f}" if r is not None else "") + " | "
        + " / ".join(f"{x:.2f}" for x in per) + " | "
        f"{v['cpu_avail']:.2f} | {_load(v)} |")
  return "\n".join(lines)


def details_table(main, Ts) -> str:
  by_row = _by_row(main)
  lines = ["| row | T | inference img/s | peak RSS MB | compile s | "
           "loss first -> last (steps) | spike rates % | processes |",
           "|---" * 8 + "|"]
  for row, T in _ordered(by_row, Ts):
    v = by_row[(row, T)]
    rates = "/".join(f"{100 * x:.0f}" for x in v["rates"])
    lines.append(
        f"| {_name(row)} | {T} | {v['infer_img_s']:.0f} | "
        f"{v['peak_rss_mb']:.0f} | {v['compile_s']:.1f} | "
        f"{v['loss_first']:.4f} -> {v['loss_last']:.4f} "
        f"({v['steps_timed'] + 1}) | {rates} | {v.get('runs', 1)} |")
  return "\n".join(lines)


def goal_lines(main, Ts) -> list[str]:
  """The goal's verdict and the comparisons that explain it."""
  by_row = _by_row(main)
  get = lambda row, T: by_row.get((row, T))
  out = []
  measured = [T for T in GOAL_T if get("user", T) and get(HAND_ROW, T)]
  if measured:
    rs = {T: ratio(get("user", T), get(HAND_ROW, T)) for T in measured}
    loaded = sum(p.get("loaded", False) for T in measured
                 for row in ("user", HAND_ROW)
                 for p in get(row, T).get("per_round", []))
    rounds = min(len(ratio(get("user", T), get(HAND_ROW, T))[1]) or 1
                 for T in measured)
    quiet_known = all("load_before" in p for T in measured
                      for row in ("user", HAND_ROW)
                      for p in get(row, T).get("per_round", []))
    if loaded or not quiet_known:
      verdict = ("not decided: " + (f"{loaded} of the processes were loaded"
                                    if loaded else "loads not recorded"))
    elif len(measured) < len(GOAL_T) or rounds < 3:
      verdict = "not decided: needs T = 8 and 16, 3 rounds"
    else:
      verdict = ("**met**" if all(r >= GOAL for r, _ in rs.values())
                 else "**NOT met**")
    out.append(
        f"- **Goal: the literal network in your own `jax.jit` step at >= "
        f"{GOAL}x the hand-written PyTorch loop** (T = 8 and 16, median of "
        f"3 interleaved rounds, quiet machine): " + ", ".join(
            f"T = {T}: **{rs[T][0]:.2f}x**" for T in measured)
        + f": {verdict}."
        + ("" if verdict == "**met**" else
           " Where the time goes: section \"Where the time goes\" below."))
  for a, b, text in (
      ("user", "torch-malloc", "both with scnn_jax's malloc setting (PyTorch "
       "given `GLIBC_TUNABLES`)"),
      ("user-malloc", HAND_ROW, "both with glibc's default malloc "
       "(`SCNN_JAX_HOST_ALLOCATOR=0`)"),
      ("unroll", "user", "LIF scans fully unrolled (`unroll=True`) / the "
       "default rolled scans, same step"),
      ("passive", HAND_ROW, "PyTorch with `OMP_WAIT_POLICY=PASSIVE` / "
       "without"),
      ("scnn_jax", HAND_ROW, "scnn_jax's default network (the three exact "
       "shortcuts) / the hand loop")):
    parts = []
    for T in Ts:
      r, per = ratio(get(a, T), get(b, T))
      if r is not None:
        parts.append(f"T = {T}: {r:.2f}x" + (
            f" ({' / '.join(f'{x:.2f}' for x in per)})" if per else ""))
    if parts:
      out.append(f"- {text}: " + ", ".join(parts) + ".")
  libs = []
  for T in Ts:
    peers = [v for (row, t), v in by_row.items() if t == T and row in (
        "snntorch", "norse", "spyx")]
    if peers and get("user", T):
      best = max(peers, key=lambda v: v["steps_per_s"])
      libs.append(f"T = {T}: {ratio(get('user', T), best)[0]:.2f}x "
                  f"{ROW_NAMES[row_of(best)]}")
  if libs:
    out.append("- Your own `jax.jit` step against the fastest SNN library "
               "measured: " + ", ".join(libs) + ".")
  return out


def _results(name):
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "results",
                      name)
  try:
    with open(path) as f:
      return json.load(f)
  except OSError:
    return None


def _profile() -> str:
  profs = [(label, p) for label, p in (
      ("rolled (default)", _results("profile_cpu_user_T8.json")),
      ("unroll=True", _results("profile_cpu_user_T8_unroll.json")))
           if p]
  if not profs:
    prof = _results("profile_cpu_literal_T8.json")
    if not prof:
      return ""
    profs = [("literal network, `backend.jit`, per-shape small convs", prof)]
  kinds = list(dict.fromkeys(k for _, p in profs
                             for k in p["thunk_ms_per_step"]))
  head = " | ".join(
      f"{label}: load {p['load_avg'][0]:.1f}, wall {p['wall_ms_per_step']:.0f}"
      f" ms" for label, p in profs)
  lines = [f"| kind | {head} |", "|---" * (len(profs) + 1) + "|"]
  for k in kinds:
    cells = []
    for _, p in profs:
      total = sum(p["thunk_ms_per_step"].values())
      v = p["thunk_ms_per_step"].get(k)
      cells.append("" if v is None else f"{100 * v / total:.0f} %")
    lines.append(f"| {k} | " + " | ".join(cells) + " |")
  return ("Shares of the summed XLA CPU thunk time per train step, T = 8 "
          "(`benchmarks/profile_step.py`, records in `benchmarks/results/`):"
          "\n\n" + "\n".join(lines))


STUDY_BEGIN, STUDY_END = "<!-- headline -->", "<!-- /headline -->"


def update_study(path, block) -> bool:
  """Replaces the text between the headline markers of ``path``."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return False
  if STUDY_BEGIN not in text or STUDY_END not in text:
    return False
  a = text.index(STUDY_BEGIN) + len(STUDY_BEGIN)
  b = text.index(STUDY_END)
  with open(path, "w") as f:
    f.write(text[:a] + "\n" + block.strip() + "\n" + text[b:])
  return True


def write(path, *, main, remat, extras, layer, machine, versions, argv, args,
          date, load="?", study=""):
  Ts = sorted({r["T"] for r in main})
  per = [p for r in main for p in r.get("per_round", [])]
  loads = (quiet.summary(per) if any("load_before" in p for p in per)
           else f"loads not recorded per process; {load}")
  goal = "\n".join(goal_lines(main, Ts))
  table = headline_table(main, Ts)
  profile = _profile()
  sections = []
  if remat:
    sections.append(f"""## Rematerialisation and time chunks (memory)

`SpikingSequential(chunk=C, remat=True)` advances the whole network C steps
at a time and checkpoints each chunk (the chunks after the first in a
`lax.scan`), so backprop keeps only the chunk inputs and the neuron states
at chunk boundaries; "whole sequence, remat" checkpoints the whole stack.
"XLA buffers" = arguments + outputs + temporaries of the compiled step
(exact, `compiled.memory_analysis()`); peak RSS moves by hundreds of MB
between processes of one configuration, so compare memory by the buffers.

{remat}""")
  if extras:
    sections.append(f"""## Mixed precision, execution order, unroll, allocator (T = 8 unless shown)

{extras}""")
  if layer:
    sections.append(f"""## Single layer: neuron-scan overhead

`python benchmarks/spiking_conv.py --all`: value + grad of one
SpikingConv2d (T=8, B=32, 28x28, 32->64) vs the same conv + ReLU, in one
process, interleaved.

{layer}""")
  measured_sections = "\n\n".join(sections)
  text = f"""# Benchmarks

Regenerated by `python benchmarks/reference_net.py {argv}` on {date}. The
tables are measured; the text after them is `benchmarks/refnet/report.py`.
Sections this run did not measure (rematerialisation, execution order,
single layer) are in this file's git history.

**Machine:** {machine}. **Versions:** {versions}.
**Loads:** {loads}.

## Headline: your own `jax.jit` step against a hand-written PyTorch loop

{goal}

{table}

Train steps/s = forward + backward (full BPTT) + Adam on a fixed batch,
B = {common.B}, median over the processes of a row; "vs hand loop" = the
median over rounds of the ratio to the hand loop's process of the same round
and T ("per round"). The headline pair runs with each library's defaults and
no environment variables; every other setting is a row of its own.

## How it was measured

- **Quiet machine.** Before each process the runner waits until other
  processes leave the cores idle: the 1-minute load average at most
  {args.max_load:g} before the first process, and at most {args.max_busy:g}
  cores kept busy by other processes (sampled from `/proc/stat` while the
  runner sleeps) before every process; after {args.load_wait:g} minutes it
  refuses with one line naming the load. Each record keeps the 1-minute load
  before and after its process (after includes the process's own load) and
  the cores other processes used while it ran; a record is "loaded" if that
  exceeded the limit or the run was told to measure anyway
  (`--allow-load`). "cpu avail" = a process's CPU time / (wall x cores):
  near 1.00 on a quiet machine for a process that keeps both cores busy.
- **Interleaved rounds.** Every measurement is a fresh process; a round runs
  every row at every T once, each round starting at a different point of the
  list; figures are medians over rounds of per-process medians of the timed
  steps (the first step, with compilation, is "compile s").
- **Defaults.** The processes get none of the caller's tuning variables
  (`XLA_FLAGS`, `GLIBC_TUNABLES`, `OMP_*`, `MKL_*`, `SCNN_JAX_*`, ...).
  scnn_jax runs with what its import sets: the YNNPACK conv option in
  `XLA_FLAGS` and glibc malloc kept mapped (`scnn_jax.ops.backend`). PyTorch
  runs with its own: 2 intra-op threads (`torch.set_num_threads(2)`, one
  per core), default malloc, no `OMP_WAIT_POLICY`. Rows that change a
  setting say which.
- The same weights (uniform +-3/sqrt(fan_in)) and batch everywhere
  (`benchmarks/refnet/common.py`); spike rates per LIF layer at the initial
  weights and the losses in the details table show the rows compute the same
  network.

## The rows

- **PyTorch, hand-written loop** (`benchmarks/refnet/torch_loop.py`): what a
  user writes instead of a library. For t in 1..T and each layer: a
  channels-last `nn.Conv2d` (stride-2 padding made explicit), `u = 0.9 v +
  I`, `s = Spike.apply(u - 1)` (Heaviside forward, fast-sigmoid surrogate
  1/(1 + 25|x|)^2 backward, a `torch.autograd.Function`), `v = u - s`;
  `F.interpolate` before c4; the readout conv at every step, mean over T,
  sigmoid; Adam.
- **scnn_jax, your own `jax.jit` step** (`benchmarks/refnet/scnn.py
  --same-flops --jit plain --small-convs xla`): the same network written
  with scnn_jax's layers at their defaults, the peers' FLOPs exactly (T
  copies of the input, `Upsample2d` then the conv, the readout conv at every
  step) in a plain `jax.jit` train step with `optax.adam`. Library defaults
  inside: time chunks of 4 steps on CPU, fold order (each conv once over a
  chunk's 4 x B images), rolled neuron `lax.scan`, bias gradients as
  matmuls, loop-safe conv gradients. "`unroll=True`": the same with the
  LIF scans fully unrolled, the candidate default for short scans on CPU
  (bit-identical results). "`SCNN_JAX_HOST_ALLOCATOR=0`": without the
  malloc tuning that importing scnn_jax does.
- **scnn_jax literal, per-shape small convs**: the same network with the
  two opt-in formulations that suit its smallest convs on CPU (the 2->32
  input conv as im2col, `conv_impl="matmul"`; the 32->1 readout as
  `impl="taps"`), compiled with `scnn_jax.ops.backend.jit`.
- **scnn_jax default**: the network as the library offers it, with three
  exact identities that a hand loop could use too: the direct-encoded input
  goes in once (`net(x, T=T)`), nearest upsample + c4 is
  `SpikingConv2d(upsample=2)` (2.25x fewer FLOPs in c4), and the readout
  runs on the mean spikes (a conv is linear). Same outputs and gradients up
  to rounding, about a third fewer FLOPs.
- **PyTorch, `OMP_WAIT_POLICY=PASSIVE`**: idle OpenMP threads sleep instead
  of spinning, PyTorch's defence against other processes' load (on a loaded
  machine spinning made the hand loop up to 17x slower). **`GLIBC_TUNABLES`**:
  PyTorch with the malloc setting scnn_jax's import makes (keep freed memory
  mapped: fresh page faults of large buffers cost a step ~25 %).
- **snnTorch 1.0, norse 1.1, spyx 1.0** (`benchmarks/refnet/`): each
  library's neuron in the same hand loop with channels-last convs (snnTorch
  `snn.Leaky`, subtract reset, fires after the pending reset, so 1-2 points
  lower spike rates; norse `LIFBoxCell`, membrane x 0.1); spyx runs its
  convs inside one rolled `lax.scan` over T, where XLA CPU's conv backward
  is ~30x slower.

Details of the same processes:

{details_table(main, Ts)}

## Where the time goes

{profile}

Leads from profiles of the headline's scnn_jax step (shares of thunk time,
small batches and a loaded machine: directions to measure, not figures):

- **Rolled LIF scans.** In the default (rolled) step the neuron scans'
  while loops and a set of copy thunks without an op name (they vanish
  with the loops, so most likely the loops' carried buffers) are a large
  share; with `unroll=True` both disappear and concatenations of the
  per-step outputs take their place, at a larger cost: on the quiet Xeon
  the unrolled step was 0.97x the rolled one at T = 8 and 0.84x at T = 16
  (the headline's `unroll=True` row), so the CPU default stays rolled
  (`scnn_jax.nn.neurons.resolve_unroll`).
- **Input copies.** The literal network broadcasts the input to T copies;
  that broadcast and the adds after it are among the largest single thunks
  of the rolled step. The default network feeds the input once.
- **Layout transposes** around the gradient convs (`conv.input_grad`,
  `conv.kernel_grad` run as plain NHWC x HWIO convs of explicitly
  transposed operands, which keeps them fast inside loops) are a steady
  share of the backward pass, rolled or unrolled.
- **Conv time is understated** here: YNNPACK runs a conv partly on worker
  threads outside its thunk. Measured earlier on the 2-core AMD EPYC: the
  64-channel 3x3 convs at ~70-150 GFLOP/s fwd + bwd, the 2->32 input conv
  at ~15 and the 32->1 readout at ~7 (tiny channel counts vectorise
  poorly), against an fp32 peak of ~157.

Tried earlier and not kept (no change beyond the noise): a hand-written LIF
backward pass, the upsample gradient as strided-slice adds, the bias
gradient as a plain reduction, JAX's own conv transpose rules.

## Per-backend defaults and why

- **Convs:** `lax.conv` through YNNPACK
  (`xla_cpu_experimental_ynn_fusion_type`), which importing scnn_jax puts
  into `XLA_FLAGS` (`SCNN_JAX_XLA_FLAGS=0` opts out; where it cannot, the
  first conv compiled outside `scnn_jax.ops.backend.jit` warns once): ~4x
  XLA CPU's default conv on an AVX2 machine, 1.7x on a Xeon with AMX.
- **Order "fold"** (each conv once over a time chunk's images, then the
  neuron scan); "step" order (convs inside the scan) was a few % slower on
  the reference network.
- **Time chunks of 4 on CPU** (`chunk="auto"`; the whole sequence on
  GPU/TPU): folded over all of T the convs' working set outgrows the caches.
- **Unroll "auto"** = rolled on CPU, full unroll of short scans on GPU/TPU:
  rolled compiles 2-3x faster and, on the quiet Xeon of the headline, ran
  1.03x the unrolled step at T = 8 and 1.19x at T = 16.
- **Bias gradient as a matmul** (`conv.add_bias`): XLA CPU fused the bias
  reduction with the neuron backward pass and recomputed the scan inside a
  slow reduce loop.
- **Conv formulation "xla" for every layer** (`conv.AUTO_IMPL`): per-shape
  formulations win for the smallest convs only (row "per-shape small
  convs"), so they stay opt-in.
- **Host allocator:** glibc mmaps and unmaps every buffer > 32 MB, so each
  step page-faulted ~1 GB of fresh memory; keeping it mapped made the
  reference step ~25 % faster. Importing scnn_jax does it
  (`SCNN_JAX_HOST_ALLOCATOR=0` opts out).
- **Remat** is off by default (one extra forward); `SpikingSequential(
  chunk=4, remat=True)` keeps a step's memory flat in T.

{measured_sections}{"" if not measured_sections else chr(10) * 2}## GPU

[BENCHMARKS_GPU.md](BENCHMARKS_GPU.md) (one NVIDIA H100, `bash
benchmarks/gpu_suite.sh OUTDIR`): the literal network at T = 8 trained at
520 steps/s, 2.52x the fastest peer (spyx 207; the PyTorch peers run
eagerly, one small kernel launch per op and step); 4 % of the TF32 peak,
since B = 32 at 28x28 is far too small to load an H100; chunk 8 + remat kept
the step's XLA buffers at 1.28x from T = 8 to T = 32.

## Trainer throughput

`python train.py --config configs/base.py` on the 2-core CPU (quiet,
steady state from `metrics.jsonl`): `scnn` (T = 8, width 32) 7.6 train
steps/s, `cnn` 12.1, input wait 2.4 and 3.7 % of the wall time. On one H100 the
same config is input-bound with reader threads (~100 steps/s, wait 24-30 %);
`data.num_workers` builds batches in worker processes.
"""
  with open(path, "w") as f:
    f.write(text)
  if study:
    update_study(study, f"""Measured on {date}; {machine}
(`python benchmarks/reference_net.py {argv}`; loads: {loads}):

{goal}

{table}""")
