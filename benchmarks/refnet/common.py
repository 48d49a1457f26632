"""Shared spec of the reference network ("SC-NN block") for every
implementation: weights, batch, FLOP count, timing loop, result record.

Framework-neutral: numpy only, so the PyTorch peers import it from their own
virtual environment. Kernels are HWIO float32, the same numbers in every
library (PyTorch gets them transposed to OIHW).

Network: input [B, 28, 28, 2] (masked image, mask) fed at each of T steps
(direct encoding); conv 2->32 3x3 -> LIF; conv 32->64 3x3 stride 2 -> LIF
(14x14); conv 64->64 3x3 -> LIF; nearest upsample x2, conv 64->32 3x3 -> LIF
(28x28); readout conv 32->1 3x3 on the spikes, mean over T, sigmoid. LIF:
v = beta v + I, s = H(v - 1), v -= s (subtract reset, same step), beta 0.9,
fast-sigmoid surrogate k = 25. Loss: MSE over the hole pixels. Adam 1e-3,
full BPTT.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

B = int(os.environ.get("SCNN_BENCH_B", "32"))  # reference_net.py --batch
SIZE = 28
BETA = 0.9
THRESHOLD = 1.0
SLOPE = 25.0
LR = 1e-3
# name: (cin, cout, stride, input size)
LAYERS = {
    "c1": (2, 32, 1, 28),
    "c2": (32, 64, 2, 28),
    "c3": (64, 64, 1, 14),
    "c4": (64, 32, 1, 28),
    "out": (32, 1, 1, 28),
}
SPIKING = ("c1", "c2", "c3", "c4")
# fp32 peak of the benchmark machine: 2 cores x 2 FMA units x 8 lanes x 2
# FLOP x 2.45 GHz (AMD EPYC, AVX2 + FMA). reference_net.py --gpu sets both
# for the accelerator (f32 convs run as TF32 on NVIDIA tensor cores in JAX
# and PyTorch alike, so that is the peak that bounds them).
PEAK_GFLOPS = float(os.environ.get("SCNN_PEAK_GFLOPS", "156.8"))
PEAK_NAME = os.environ.get("SCNN_PEAK_NAME", "fp32 peak")


def _forward_flops(name: str) -> int:
  """FLOP of one forward pass of conv ``name`` over the batch (one step)."""
  cin, cout, stride, size = LAYERS[name]
  out = size // stride
  return 2 * B * out * out * 9 * cin * cout


def flops_per_step(T: int) -> float:
  """Nominal FLOP of one train step: 3 x the forward convs (fwd, dx, dW)."""
  return 3.0 * sum(_forward_flops(name) for name in LAYERS) * T


def executed_flops(T: int, *, c1_runs: int | None = None,
                   c4_fused: bool = False,
                   readout_runs: int | None = None) -> float:
  """FLOP one train step actually executes (the peers: all defaults).

  Unlike ``flops_per_step`` it leaves out c1's input gradient (nobody
  computes it) and follows scnn_jax's exact shortcuts: ``c1_runs`` convs of
  the static input (once per time chunk instead of T times), the fused
  upsample-conv (2.25x fewer FLOPs in c4), ``readout_runs`` readout convs
  (once on the mean spikes instead of T times).
  """
  runs = {"c1": T if c1_runs is None else c1_runs,
          "out": T if readout_runs is None else readout_runs}
  total = 0.0
  for name in LAYERS:
    fwd = _forward_flops(name) * runs.get(name, T)
    if name == "c4" and c4_fused:
      fwd /= 2.25
    total += (2.0 if name == "c1" else 3.0) * fwd
  return total


def weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """HWIO kernels and biases, uniform +-3/sqrt(fan_in) (+-1/sqrt for bias).

  3x PyTorch's default kernel bound: with the default init spiking dies out
  by layer 3 at T=4; with this one every LIF layer fires at 10-30 %.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for name, (cin, cout, _, _) in LAYERS.items():
    bound = 1.0 / np.sqrt(9 * cin)
    k = rng.uniform(-3 * bound, 3 * bound, (3, 3, cin, cout))
    b = rng.uniform(-bound, bound, (cout,))
    out[name] = (k.astype(np.float32), b.astype(np.float32))
  return out


def batch(seed: int = 1):
  """(x [B, 28, 28, 2], image [B, 28, 28, 1], mask [B, 28, 28, 1]), NHWC.

  Smooth random images (sums of random sinusoids) with 30 % of the pixels
  masked; x = (image * (1 - mask), mask).
  """
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE),
                       indexing="ij")
  img = np.zeros((B, SIZE, SIZE), np.float64)
  for _ in range(4):
    f = rng.uniform(1, 4, (B, 2, 1, 1))
    p = rng.uniform(0, 2 * np.pi, (B, 1, 1))
    img += np.sin(2 * np.pi * (f[:, 0] * yy + f[:, 1] * xx) + p)
  img = (img - img.min()) / (img.max() - img.min())
  mask = (rng.uniform(size=(B, SIZE, SIZE)) < 0.3).astype(np.float64)
  x = np.stack([img * (1 - mask), mask], -1)
  return (x.astype(np.float32), img[..., None].astype(np.float32),
          mask[..., None].astype(np.float32))


def peak_rss_mb() -> float:
  """Peak resident memory since the process started or ``reset_peak_rss``."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
  """Starts a new peak-RSS window here (Linux); False where it cannot.

  The train-phase peak must not include what the process did before (the
  eager spike-rate pass over the whole sequence at T = 32 alone reaches
  ~1.7 GB): freed heap is first handed back to the OS (``malloc_trim``,
  which the benchmarks' tuned allocator would otherwise keep mapped), then
  the kernel's high-water mark is reset to the current RSS.
  """
  try:
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except (OSError, AttributeError):
    return False


class Timer:
  """Wall and process-CPU time of calls; ``sync`` blocks on the result."""

  def __init__(self, sync=lambda r: r):
    self.sync = sync
    self.wall, self.cpu = [], []

  def __call__(self, fn, *args):
    c0, t0 = time.process_time(), time.perf_counter()
    r = self.sync(fn(*args))
    self.wall.append(time.perf_counter() - t0)
    self.cpu.append(time.process_time() - c0)
    return r


def train_and_time(step, state, *, steps: int, budget_s: float,
                   sync=lambda r: r, loss_of=lambda r: r[-1]):
  """Runs ``state = step(state)`` up to ``steps`` times (at least 3, at most
  ``budget_s`` seconds after the first call); returns (state, record).

  The first call includes compilation. Step time = median of the others.
  ``peak_rss_mb`` is the peak resident memory of this training phase alone
  (None where the peak cannot be reset).
  """
  window = reset_peak_rss()
  timer = Timer(sync)
  losses = []
  t_start = None
  for i in range(steps):
    state = timer(step, state)
    losses.append(float(loss_of(state)))
    if i == 0:
      t_start = time.perf_counter()
    elif i >= 3 and time.perf_counter() - t_start > budget_s:
      break
  wall = np.array(timer.wall[1:])
  cpu = np.array(timer.cpu[1:])
  med = float(np.median(wall))
  cores = os.cpu_count() or 1
  return state, {
      "compile_s": timer.wall[0],
      "step_s": med,
      "steps_timed": len(wall),
      "cpu_avail": float(np.median(cpu / wall)) / cores,
      "losses": losses,
      "peak_rss_mb": peak_rss_mb() if window else None,
  }


def time_inference(fn, *, calls: int = 10, sync=lambda r: r):
  timer = Timer(sync)
  timer(fn)  # compile / warm up
  for _ in range(calls):
    timer(fn)
  return float(np.median(timer.wall[1:]))


def finish(record: dict, T: int):
  """Adds derived figures and prints the record as one JSON line."""
  record["T"] = T
  record["steps_per_s"] = 1.0 / record["step_s"]
  record["gflops"] = flops_per_step(T) / record["step_s"] / 1e9
  record["pct_peak"] = 100.0 * record["gflops"] / PEAK_GFLOPS
  record.setdefault("exec_flops", executed_flops(T))
  record["exec_pct_peak"] = (100.0 * record["exec_flops"] / record["step_s"]
                             / 1e9 / PEAK_GFLOPS)
  if record.get("peak_rss_mb") is None:  # no train-phase window: whole run
    record["peak_rss_mb"] = peak_rss_mb()
  record.setdefault("dev_peak_mb", None)
  losses = record["losses"]
  record["loss_first"], record["loss_last"] = losses[0], losses[-1]
  record["loss_falls"] = bool(losses[-1] < losses[0])
  del record["losses"]
  print("RESULT " + json.dumps(record), flush=True)
  sys.stdout.flush()


def base_args(parser):
  parser.add_argument("--T", type=int, default=8)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--budget", type=float, default=60.0,
                      help="max seconds of timed train steps")
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--device", default="cpu",
                      help="PyTorch device of the peers (cpu or cuda); the "
                      "JAX implementations use JAX's default backend")
  return parser
