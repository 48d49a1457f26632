"""Why multi-process CPU training hung, reduced to plain JAX.

    python scripts/collective_hang_repro.py                  # unbounded run-ahead: hangs
    python scripts/collective_hang_repro.py --in-flight 2    # the trainer's bound: never

Each trial starts 2 processes x 4 CPU devices (gloo collectives), jits a
shard_map step with a psum (like the train step), and dispatches ``--steps``
steps without waiting for results (``--in-flight 0``) or waiting for step
``s - K`` after dispatching step ``s`` (``--in-flight K``). Each process
prints a line after every dispatch; a trial in which neither process gets
one further for ``--stall`` seconds counts as hung (a slow trial on a busy
machine still progresses).

The mechanism (jaxlib 0.10.2, XLA CPU client): every device may hold at most
32 launched computations; the 33rd launch blocks, and it blocks on a thread
of the client's pool, the same pool that runs the launched computations. That
pool has max(cores, local devices) threads = 4 here, and a collective step
needs all 4 local devices running at once. When the host runs >= 32 steps
ahead, blocked launches can take pool threads while the oldest step waits
for its other devices: neither ever proceeds. Whether it happens depends on
the order the pool picks tasks, hence "9 of 10", and on the host running far
ahead (slow steps, fast input). The pool size follows the environment
variable ``PJRT_NPROC`` when set (else the core count): with
``PJRT_NPROC=16`` the pool has room for the blocked launches and the
unbounded run finishes. ``--host-thread`` builds the inputs in a
background thread like ``parallel.DevicePrefetch``; ``--processes 1`` runs
one process of 8 devices (no gloo) for comparison.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time


def child(args):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  jax.config.update("jax_num_cpu_devices", 8 // args.processes)
  if args.processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{args.port}",
                               num_processes=args.processes,
                               process_id=args.process_id)
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  rows = NamedSharding(mesh, P("data"))
  local = 8 // args.processes * 16

  def step(w, x):
    h = jnp.tanh(x @ w)
    for _ in range(4):
      h = jnp.tanh(h @ w)
    g = jax.lax.psum(h.T @ x, "data")
    return w - 1e-4 * g, jax.lax.psum(jnp.sum(h), "data")

  step = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data")),
                               out_specs=(P(), P())), donate_argnums=(0,))
  w = jax.make_array_from_process_local_data(
      NamedSharding(mesh, P()), np.eye(256, dtype=np.float32))

  def batch(i):
    x = np.random.default_rng([i, jax.process_index()]).normal(
        size=(local, 256)).astype(np.float32)
    return jax.make_array_from_process_local_data(rows, x)

  batches = [None] * args.steps
  if args.host_thread:
    ready = [threading.Event() for _ in range(args.steps)]
    def work():
      for i in range(args.steps):
        batches[i] = batch(i)
        ready[i].set()
    threading.Thread(target=work, daemon=True).start()
  losses = []
  for i in range(args.steps):
    if args.host_thread:
      ready[i].wait()
      x = batches[i]
    else:
      x = batch(i)
    w, loss = step(w, x)
    losses.append(loss)
    if args.in_flight and i >= args.in_flight:
      jax.block_until_ready(losses[i - args.in_flight])
    print("dispatched", i, flush=True)
  print("DONE", float(np.sum(jax.device_get(losses))), flush=True)


def trial(args, script) -> tuple[bool, int]:
  """(finished, steps dispatched by the slower process)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  flags = ["--steps", str(args.steps), "--in-flight", str(args.in_flight),
           "--processes", str(args.processes), "--port", str(port)]
  if args.host_thread:
    flags.append("--host-thread")
  procs = [subprocess.Popen([sys.executable, script, "--child",
                             "--process-id", str(p)] + flags,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True) for p in range(args.processes)]
  # [steps dispatched, finished, time of the last line]; start-up (import,
  # distributed init, compilation) gets --startup seconds more.
  progress = [[0, False, time.time() + args.startup] for _ in procs]

  def read(p, mine):
    for line in p.stdout:
      mine[0] += line.startswith("dispatched")
      mine[1] |= line.startswith("DONE")
      mine[2] = time.time()

  readers = [threading.Thread(target=read, args=(p, mine), daemon=True)
             for p, mine in zip(procs, progress)]
  for r in readers:
    r.start()
  while any(p.poll() is None for p in procs):
    if time.time() - max(m[2] for m in progress) > args.stall:
      break  # no process dispatched a step for --stall seconds
    time.sleep(0.2)
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.wait()
  for r in readers:
    r.join(timeout=5)
  ok = all(p.returncode == 0 and m[1] for p, m in zip(procs, progress))
  return ok, min(m[0] for m in progress)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--in-flight", type=int, default=0,
                      help="wait for step s-K after dispatching step s; 0: never")
  parser.add_argument("--processes", type=int, default=2, choices=(1, 2))
  parser.add_argument("--host-thread", action="store_true",
                      help="build input arrays in a background thread")
  parser.add_argument("--stall", type=float, default=30.0,
                      help="hung: no process dispatched a step for this long")
  parser.add_argument("--startup", type=float, default=120.0)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args)
  script = os.path.abspath(__file__)
  hung = 0
  for t in range(args.trials):
    t0 = time.time()
    ok, reached = trial(args, script)
    hung += not ok
    state = "finished" if ok else f"HUNG after {reached} dispatched steps"
    print(f"trial {t + 1}: {state} ({time.time() - t0:.0f} s)", flush=True)
  nproc = os.environ.get("PJRT_NPROC")
  print(f"{args.processes} process(es), {os.cpu_count()} cores"
        f"{f', PJRT_NPROC={nproc}' if nproc else ''}, in-flight bound "
        f"{args.in_flight or 'none'}, inputs built in "
        f"{'a background thread' if args.host_thread else 'the loop'}: "
        f"{hung} of {args.trials} trials hung ({args.steps} steps; hung = no "
        f"step dispatched for {args.stall:.0f} s)")


if __name__ == "__main__":
  main()
