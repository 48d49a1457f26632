"""``train_and_evaluate(config, workdir)``: the training loop.

One batch, from ``train.py`` to the loss: ``scnn_jax/cli/train.py`` (flags)
-> this loop (``train_and_evaluate``) -> ``scnn_jax/runtime/steps.py`` (the
jitted per-device step) -> the task's loss (``scnn_jax/tasks/<task>.py``).

The loop validates the config once (``scnn_jax.config.schema``), builds the
task, data, model and optimizer (``scnn_jax.config.builders``), restores the
newest checkpoint, then runs the compiled steps, logging, evaluating and saving
on its schedule, under the watchdog (``scnn_jax.training.watchdog``: hangs,
SIGTERM). A vmap ablation trains its K points the same way
(``scnn_jax.runtime.ablation.Members``). With ``train.ema_decay > 0`` the
evaluations, sample grids and final results are those of the weights' moving
average (``scnn_jax.runtime.state``). What it writes besides metrics:
``scnn_jax.training.reports``. One run at a time writes a workdir
(``scnn_jax.runtime.workdir_lock``); a write the storage refuses stops the run
with ``stopping.WriteFailed``.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import nnx

from scnn_jax import tasks
from scnn_jax.config import builders, schema
from scnn_jax.data import images
from scnn_jax.runtime import (ablation, parallel, steps, storage_errors,
                              workdir_lock)
from scnn_jax.runtime import state as state_lib
from scnn_jax.runtime.checkpoint import (Checkpointer, abstract_like,
                                         last_complete_step)
from scnn_jax.runtime.state import Graphs
from scnn_jax.runtime.workdir_lock import WorkdirBusy  # noqa: F401
from scnn_jax.training import profiling, reports, stopping, watchdog
from scnn_jax.training.stopping import (NonFiniteLossError,  # noqa: F401
                                        Preempted, WriteFailed)
from scnn_jax.training.writers import MetricWriter, Progress

# The loop waits for step s - STEPS_IN_FLIGHT after dispatching step s. Unbounded
# run-ahead deadlocked multi-process CPU runs (docs/studies/
# reliability_drills.md, "Multi-process hangs"): XLA CPU blocks the 33rd
# queued launch on a device on a thread of the pool that must run the
# queued steps. Two steps ahead keep the device busy all the same.
STEPS_IN_FLIGHT = 2


# -----------------------------------------------------------------------------
# Evaluation
# -----------------------------------------------------------------------------


def host_eval_batches(mesh, eval_batches) -> list[dict]:
  """The whole global eval batches on this host (for the baselines)."""
  return [{k: parallel.to_host(v) for k, v in
           parallel.global_batch(mesh, b).items()} for b in eval_batches]


def evaluate(task, eval_fn, state, mesh, eval_batches, members,
             num_samples: int = 0):
  """Metrics over the fixed eval set, spike rates, and sample-grid rows.

  Returns ``(results, samples)``: lists with one entry per member
  (``ablation.Members``: one model, or the K points of a stacked state).
  """
  accs = [task.new_accumulator() for _ in range(len(members))]
  rates = [[] for _ in range(len(members))]
  samples = [None] * len(members)
  for i, local in enumerate(eval_batches):
    batch = parallel.global_batch(mesh, local)
    outputs, r = eval_fn(state, batch)
    host_batch = {k: parallel.to_host(v) for k, v in batch.items()}
    host_out = members.split({k: parallel.to_host(v)
                              for k, v in outputs.items()})
    r = members.split(jax.device_get(r))
    for k in range(len(members)):
      task.accumulate(accs[k], host_batch, host_out[k])
      rates[k].append(r[k])
      if i == 0 and num_samples:
        samples[k] = task.samples(host_batch, host_out[k], num_samples)
  results = []
  for acc, rs in zip(accs, rates):
    result = dict(acc.result())
    if rs and rs[0]:
      result["spike_rate"] = {n: float(np.mean([x[n] for x in rs]))
                              for n in rs[0]}
    results.append(result)
  return results, samples


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
  """Everything a training run compiles once: state, steps, mesh, key.

  ``state`` is replicated on the mesh; ``train_step(host_batch)`` advances it
  by one step (``host_batch``: this process's rows, numpy) and returns the
  step's metrics. ``members``: one model or the K points of an ablation.
  """
  task: tasks.Task
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  graphs: Graphs
  state: dict
  train_fn: object
  eval_fn: object
  key: jax.Array
  members: ablation.Members

  def train_step(self, host_batch: dict) -> dict:
    self.state, metrics = self.train_fn(
        self.state, parallel.global_batch(self.mesh, host_batch), self.key)
    return metrics

  def eval_step(self, host_batch: dict):
    return self.eval_fn(self.state, parallel.global_batch(self.mesh,
                                                          host_batch))


def setup(config, spec, devices=None) -> Run:
  """A ``Run`` of a VALIDATED ``config`` (``schema.validate``) over
  ``devices`` (default: all). ``spec``: the data's ``image_shape`` and
  ``num_classes`` (a dataset or ``builders.data_spec(config)``)."""
  task = tasks.get(config)
  mesh = parallel.make_mesh(devices)
  tx = builders.optimizer(config)
  members = ablation.Members.of(config)
  if members.stacked:
    state, graphs = ablation.create_stacked_state(list(members.points), spec,
                                                  tx)
  else:
    state, graphs = state_lib.create_state(builders.model(config, spec), tx,
                                           state_lib.uses_ema(config))
  train_fn, eval_fn = steps.compile_steps(task, graphs, tx, mesh,
                                          config.train.nan_policy,
                                          stacked=members.stacked,
                                          ema_decay=config.train.ema_decay)
  return Run(task=task, tx=tx, mesh=mesh, graphs=graphs,
             state=parallel.replicate(mesh, state), train_fn=train_fn,
             eval_fn=eval_fn,
             key=parallel.replicate(mesh, jax.random.key(config.seed)),
             members=members)


def restore(ckpt: Checkpointer, state: dict):
  """``(state, meta)`` of the newest checkpoint, in ``state``'s structure.

  Whether the run keeps an ``ema`` (``train.ema_decay``) may differ from the
  checkpoint's: one without it (EMA off, or written before the field) gives
  the rest, and the average starts at its params; one with an ``ema`` this
  run does not use gives all but that.
  """
  ema = state_lib.EMA_KEY
  keys = ckpt.state_keys()
  abstract = abstract_like(state)
  if keys is None or (ema in state) == (ema in keys):
    return ckpt.restore(abstract)
  # Whole trees only: a writer's Orbax handler cannot also restore partially.
  if ema in keys:
    restored, meta = ckpt.restore({**abstract, ema: jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32,
                                       sharding=a.sharding),
        abstract["params"])})
    del restored[ema]
    return restored, meta
  restored, meta = ckpt.restore({k: v for k, v in abstract.items()
                                 if k != ema})
  logging.info("the checkpoint has no moving average of the weights: it "
               "starts at its params")
  restored[ema] = state_lib.ema_init(restored["params"])
  return restored, meta


def init_from(state: dict, source) -> dict:
  """``state`` with the weights of workdir ``source``'s latest checkpoint.

  Every parameter whose path and shape the source model shares is copied
  (its moving average when it has one), into the params and, when this run
  keeps one, the moving average; the others keep their initialisation: e.g.
  a spiking net started from its non-spiking twin keeps its neurons' own
  initial tau and threshold. The optimizer starts afresh. A fresh run only
  (``train.init_from``); a resumed run restores its own checkpoint.
  """
  # the reader of workdirs, never a writer
  from scnn_jax.runtime import inference
  loaded = inference.load(source)
  theirs = dict(nnx.to_flat_state(loaded.state["params"]))
  ours = nnx.to_flat_state(state["params"])
  copied, kept = [], []
  for path, value in ours:
    other = theirs.get(path)
    if other is not None and other.shape == value.shape:
      copied.append(path)
    else:
      kept.append("/".join(map(str, path)))
  if not copied:
    raise ValueError(f"train.init_from = {source}: its model shares no "
                     "parameter (path and shape) with this one")

  def merged(tree):
    flat = dict(nnx.to_flat_state(tree))
    for path in copied:
      flat[path] = flat[path].replace(
          jnp.array(theirs[path][...], flat[path][...].dtype, copy=True))
    return nnx.from_flat_state(flat)

  state = dict(state, params=merged(state["params"]))
  if state_lib.EMA_KEY in state:
    state[state_lib.EMA_KEY] = merged(state[state_lib.EMA_KEY])
  # The other variables the two models share (a batch norm's running
  # statistics) come along too: the copied weights were trained with them.
  theirs_rest = dict(nnx.to_flat_state(loaded.state["rest"]))
  rest = dict(nnx.to_flat_state(state["rest"]))
  for path, value in rest.items():
    other = theirs_rest.get(path)
    if (other is not None and other.shape == value.shape
        and type(other) is type(value)):
      rest[path] = value.replace(
          jnp.array(other[...], value[...].dtype, copy=True))
  state["rest"] = nnx.from_flat_state(rest)
  logging.info("started from %s (step %d%s): %d parameters copied, %d kept "
               "their initialisation%s", source, loaded.step,
               ", its moving average" if loaded.ema else "", len(copied),
               len(kept), f" ({', '.join(kept)})" if kept else "")
  return state


def train_and_evaluate(config, workdir, *,
                       takeover_lock: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  With a ``config.ablation`` grid, trains all K points at once (see
  ``scnn_jax.runtime.ablation``). Returns the final results dict (also written
  to ``results.json``).

  The run holds the workdir's lock (``scnn_jax.runtime.workdir_lock``) from
  before its first write to its end: another run on the same workdir raises
  ``WorkdirBusy`` (``takeover_lock``: take a live object-store lease). A
  write that the storage refuses (full disk, quota, permissions, read-only)
  raises ``stopping.WriteFailed`` naming the path and the last complete
  checkpoint, with the completed checkpoints left as they were.
  """
  config = schema.validate(config)  # once, before the workdir or the data
  dataset = tasks.dataset(config)  # bad data fails before anything is written
  workdir = epath.Path(workdir)
  opened = []   # the checkpointer and metric writer, to drop on a failed write
  lock = None
  try:
    with storage_errors.writing(workdir):
      workdir.mkdir(parents=True, exist_ok=True)
    lock = workdir_lock.acquire(workdir, takeover=takeover_lock)
    return _train(config, dataset, workdir, lock, opened)
  except Exception as e:
    failure = storage_errors.write_failure(e)
    if failure is None:
      raise
    for thing in opened:
      thing.abandon()
    ckpt_dir = workdir / "checkpoints"
    raise stopping.WriteFailed(*failure, last_complete_step(ckpt_dir),
                               ckpt_dir) from None
  finally:
    if lock is not None:
      lock.release()


def _train(config, dataset, workdir, lock, opened) -> dict:
  """The body of ``train_and_evaluate``, in a locked ``workdir``."""
  is_main = jax.process_index() == 0
  t = config.train
  run = setup(config, dataset)
  task, mesh, state, members = run.task, run.mesh, run.state, run.members
  train_fn, eval_fn, key = run.train_fn, run.eval_fn, run.key
  if members.stacked:
    logging.info("vmap ablation: %d points in one program: %s", len(members),
                 ", ".join(members.names))

  ckpt = Checkpointer(workdir / "checkpoints", keep=t.keep_checkpoints,
                      config=config)
  opened.append(ckpt)
  meta = {"train_time_s": 0.0}
  if ckpt.latest_step() is not None:
    state, meta = restore(ckpt, state)
    logging.info("resuming from step %d (%s)", state_lib.current_step(state),
                 ckpt.directory)
  elif t.init_from is not None:
    state = parallel.replicate(mesh, init_from(state, t.init_from))
  start = state_lib.current_step(state)
  if is_main:
    with storage_errors.writing(workdir / "config.json"):
      reports.write_config(workdir, config, resumed=start > 0)
  writer = MetricWriter(workdir, active=is_main, resume_step=start)
  opened.append(writer)
  pidx, pcount = jax.process_index(), jax.process_count()
  eval_batches = dataset.eval_batches(t.eval_batch_size, pidx, pcount)
  logging.info("devices: %d (%s, %d processes); global batch %d; steps %d..%d",
               jax.device_count(), jax.devices()[0].platform, pcount,
               t.batch_size, start, t.steps)

  def run_eval(step):
    results, samples = evaluate(task, eval_fn, state, mesh, eval_batches,
                                members, t.num_sample_images)
    for name, r, smp in zip(members.names, results, samples):
      writer.write(step, "eval", r if name is None else {"point": name, **r})
      if is_main and smp is not None:
        sub = workdir / "samples" / name if name else workdir / "samples"
        with storage_errors.writing(sub / f"step_{step:06d}.png"):
          images.save_png(sub / f"step_{step:06d}.png",
                          images.grid(smp, scale=2))
      shown = "  ".join(f"{k} {r[k]:.4f}" for k in task.summary_keys()
                        if k in r)
      logging.info("eval at step %d%s: %s", step,
                   f" [{name}]" if name else "", shown)
    return results

  train_iter = parallel.DevicePrefetch(
      mesh, dataset.train_iterator(start, t.batch_size, pidx, pcount))
  progress = Progress(t.steps, start)
  watch = watchdog.Watchdog(t.watchdog_s, t.sigterm_grace_s,
                            total_steps=t.steps, start_step=start)
  if start:
    watch.saved(start)
  trace = profiling.StepTrace(t.profile_steps, workdir)
  pending, wait_s, loop_t0 = [], 0.0, time.time()
  session_t0, base_time = time.time(), float(meta["train_time_s"])
  eval_s, results = 0.0, None
  # The watchdog, its SIGTERM handler and the prefetch thread end with the
  # run, also when it stops on a non-finite loss or a preemption.
  try:
    for step in range(start, t.steps):
      t0 = time.time()
      batch = next(train_iter)
      wait_s += time.time() - t0
      done = step + 1
      with trace.step(step), watch.calling(done):
        state, step_metrics = train_fn(state, batch, key)
      trace.after(step, state)
      pending.append(step_metrics)
      watch.dispatched(done, step_metrics["loss"])
      evaluate_now = done % t.eval_every == 0 or done == t.steps
      save_now = done % t.checkpoint_every == 0 or done == t.steps
      log_now = done % t.log_every == 0 or done == t.steps
      # Wait for this step before logging, evaluating or saving here, under
      # the watchdog's step limit (not inside their longer-limit phases).
      watch.wait(done if log_now or evaluate_now or save_now
                 else done - STEPS_IN_FLIGHT)
      if log_now:
        host = jax.device_get(pending)
        pending = []
        stopping.check_finite(state, t.nan_policy, ckpt, members)
        elapsed = time.time() - loop_t0
        scalars = reports.train_scalars(host, members)
        scalars["input_wait_fraction"] = wait_s / max(elapsed, 1e-9)
        scalars["steps_per_s"] = len(host) / max(elapsed, 1e-9)
        writer.write(done, "train", scalars)
        logging.info(progress.line(done, scalars["loss"], f" (mean of "
                                   f"{len(members)} points)"
                                   if members.stacked else ""))
        wait_s, loop_t0 = 0.0, time.time()
      if evaluate_now:
        e0 = time.time()
        with watch.phase(f"evaluation at step {done}"):
          results = run_eval(done)
        eval_s += time.time() - e0
      if save_now:
        meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
        lock.check()   # a run whose lease was taken over writes no more
        with watch.phase(f"checkpoint save at step {done}"):
          if ckpt.save(done, state, meta, force=done == t.steps):
            watch.saved(done)
      if done < t.steps and watch.stop_requested(done):
        watch.wait(done)
        meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
        with watch.phase(f"checkpoint save at step {done} (preempted)"):
          if ckpt.latest_step() != done:
            ckpt.save(done, state, meta, force=True)
          ckpt.wait()
        writer.close()
        ckpt.close()
        raise stopping.Preempted(done, ckpt.directory)
    with watch.phase("final checkpoint write, evaluation and baselines"):
      ckpt.wait()
      if results is None:  # resumed a finished run: evaluate it again
        results = run_eval(start)
      meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
      # Every process takes part in gathering the batches (a collective);
      # only process 0 scores the baselines.
      host_batches = host_eval_batches(mesh, eval_batches)
      baselines = task.baselines(host_batches) if is_main else {}
      lock.check()
      with storage_errors.writing(workdir):
        summary = reports.finish(task, config, workdir, results, baselines,
                                 t.steps, meta["train_time_s"], members,
                                 dataset.image_shape, is_main)
  finally:
    watch.close()
    trace.close()
    train_iter.close()
  writer.close()
  ckpt.close()
  return summary
