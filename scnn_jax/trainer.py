"""``train_and_evaluate(config, workdir)``: the whole training run.

The train step is a pure function ``(state, batch, key) -> (state, metrics)``
of pytrees (the model enters as ``nnx.split`` state and is rebuilt with
``nnx.merge``), so ``jax.jit``, ``jax.shard_map`` and ``jax.vmap`` apply to it
directly. It is written per device (see ``scnn_jax.parallel`` for how that
maps to ``jax.pmap``) and compiled once.

Train state (a dict, also what Orbax saves):
  step, params (nnx.Param state), rest (other model variables: neuron
  parameters, batch statistics), opt_state, nonfinite (count of skipped
  non-finite steps), first_nonfinite (step of the first one, or -1).
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import nnx

from scnn_jax import (ablation, backend, data, images, optim, parallel,
                      profiling, tasks, watchdog)
from scnn_jax.checkpoint import Checkpointer, abstract_like
from scnn_jax.config_lib import ConfigError, check_choice, check_int
from scnn_jax.metrics.spikes import spike_rates
from scnn_jax.variables import SpikeRate
from scnn_jax.writers import MetricWriter, Progress

NAN_POLICIES = ("stop", "skip")
# The loop waits for step s - STEPS_IN_FLIGHT after dispatching step s. Unbounded
# run-ahead deadlocked multi-process CPU runs (issue 23): XLA CPU blocks the
# 33rd queued launch on a device on a thread of the pool that must run the
# queued steps. Two steps ahead keep the device busy all the same.
STEPS_IN_FLIGHT = 2


class NonFiniteLossError(FloatingPointError):
  """Training stopped because a step produced a NaN or inf loss/gradient."""


class Preempted(Exception):
  """SIGTERM (or a TPU maintenance event) stopped the run after a checkpoint.

  ``train.py`` exits with status 143 (128 + SIGTERM) so schedulers see an
  unfinished run; running the same command again resumes at ``step``.
  """

  def __init__(self, step: int, directory):
    self.step = step
    super().__init__(f"preempted: checkpoint saved at step {step} in "
                     f"{directory}; run the same command again to resume")


def validate(config) -> tasks.Task:
  """Checks every config field before anything is built or compiled."""
  task = tasks.get(config)
  check_int("seed", config.seed, 0)
  if config.get("init_seed") is not None:
    check_int("init_seed", config.init_seed, 0)
  task.validate(config)
  if ablation.enabled(config):
    ablation.points(config)  # validates the grid
  data.validate_config(config)
  t = config.train
  optim.validate(t)
  check_int("train.steps", t.steps, 1)
  for field in ("batch_size", "eval_batch_size", "log_every", "eval_every",
                "checkpoint_every", "keep_checkpoints"):
    check_int(f"train.{field}", t[field], 1)
  check_int("train.num_sample_images", t.num_sample_images, 0)
  check_choice("train.nan_policy", t.nan_policy, NAN_POLICIES)
  profiling.validate(t.get("profile_steps", ()))
  watchdog.validate(t)
  n = jax.device_count()
  for field in ("batch_size", "eval_batch_size"):
    if t[field] % n:
      raise ConfigError(f"train.{field}", t[field],
                        f"must be divisible by the number of devices ({n})")
  return task


# -----------------------------------------------------------------------------
# State and steps
# -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Graphs:
  """The static halves of the model: train-mode and eval-mode graphdefs."""
  train: nnx.GraphDef
  eval: nnx.GraphDef


def create_state(config, task, dataset, tx, seed=None):
  """A fresh train state and the model graphdefs."""
  if seed is None:
    seed = config.seed if config.get("init_seed") is None else config.init_seed
  model = task.build_model(config, dataset, nnx.Rngs(params=seed))
  model.train()
  graph_train, params, rest = nnx.split(model, nnx.Param, ...)
  model.eval()
  graph_eval = nnx.graphdef(model)
  state = {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "rest": rest,
      "opt_state": tx.init(params),
      "nonfinite": jnp.zeros((), jnp.int32),
      "first_nonfinite": jnp.full((), -1, jnp.int32),
  }
  return state, Graphs(graph_train, graph_eval)


def make_train_step(task, graph: nnx.GraphDef, tx, nan_policy: str):
  """The per-device train step (call inside ``shard_map`` over ``"data"``)."""

  def step(state, batch, key):
    ids = parallel.example_ids(batch["image"].shape[0])
    step_key = jax.random.fold_in(key, state["step"])

    def loss_fn(params):
      # Rngs count draws: build it inside the traced function that uses it.
      # Named streams for the library's layers; "default" serves any other
      # name a model asks for (nnx.Rngs falls back to it).
      rngs = nnx.Rngs(noise=step_key, encoder=jax.random.fold_in(step_key, 1),
                      default=jax.random.fold_in(step_key, 2))
      model = nnx.merge(graph, params, state["rest"])
      (num, den, aux), captured = nnx.capture(
          lambda m: task.loss(m, batch, rngs=rngs, example_ids=ids),
          SpikeRate)(model)
      # Each device's share of the global mean: psum of the shares is the
      # loss of the whole global batch, whatever the device count.
      loss = num / jnp.maximum(jax.lax.psum(den, parallel.AXIS), 1e-12)
      aux = {k: jax.lax.psum(n, parallel.AXIS) /
             jnp.maximum(jax.lax.psum(d, parallel.AXIS), 1e-12)
             for k, (n, d) in aux.items()}
      rest = nnx.state(model, nnx.Not(nnx.Param))
      return loss, (aux, spike_rates(captured), rest)

    # params are replicated (unvarying over "data") while the loss share is
    # per device: shard_map's autodiff sums the gradient over devices itself
    # (the transpose of the implicit broadcast), so grads are already those
    # of the global-batch loss. No explicit psum here, or they count n times.
    (loss, (aux, rates, rest)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state["params"])
    loss = jax.lax.psum(loss, parallel.AXIS)
    rates = jax.lax.pmean(rates, parallel.AXIS)
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    # "stop" freezes the state at the first bad step (the loop then raises);
    # "skip" drops bad updates and carries on.
    ok = finite if nan_policy == "skip" else finite & (state["nonfinite"] == 0)
    keep = lambda new, old: jax.tree.map(
        lambda a, b: jnp.where(ok, a, b), new, old)
    bad = ~finite
    new_state = {
        "step": state["step"] + 1,
        "params": keep(params, state["params"]),
        "rest": keep(rest, state["rest"]),
        "opt_state": keep(opt_state, state["opt_state"]),
        "nonfinite": state["nonfinite"] + bad.astype(jnp.int32),
        "first_nonfinite": jnp.where(bad & (state["first_nonfinite"] < 0),
                                     state["step"], state["first_nonfinite"]),
    }
    return new_state, {"loss": loss, "finite": finite, "spike_rate": rates,
                       **aux}

  return step


def make_eval_step(task, graph: nnx.GraphDef):
  """Per-device eval step: ``(state, batch) -> (outputs, spike rates)``."""

  def step(state, batch):
    model = nnx.merge(graph, state["params"], state["rest"])
    outputs, captured = nnx.capture(lambda m: task.predict(m, batch),
                                    SpikeRate)(model)
    return outputs, jax.lax.pmean(spike_rates(captured), parallel.AXIS)

  return step


def compile_steps(task, graphs: Graphs, tx, mesh, nan_policy: str,
                  stacked: bool = False):
  """jit(shard_map(step)) for training (state donated) and evaluation.

  ``stacked``: the state holds K models on a leading axis (vmap ablations);
  the per-device steps are vmapped over it, batch and key shared.
  """
  from jax.sharding import PartitionSpec as P
  train = make_train_step(task, graphs.train, tx, nan_policy)
  evaluate = make_eval_step(task, graphs.eval)
  out_batch = P(parallel.AXIS)
  if stacked:
    train = jax.vmap(train, in_axes=(0, None, None))
    evaluate = jax.vmap(evaluate, in_axes=(0, None))
    out_batch = P(None, parallel.AXIS)
  train = parallel.per_device(train, mesh, (P(), P(parallel.AXIS), P()),
                              (P(), P()))
  evaluate = parallel.per_device(evaluate, mesh, (P(), P(parallel.AXIS)),
                                 (out_batch, P()))
  return (backend.jit(train, donate_argnums=(0,)), backend.jit(evaluate))


# -----------------------------------------------------------------------------
# Evaluation
# -----------------------------------------------------------------------------


def evaluate(task, eval_fn, state, mesh, eval_batches, num_samples: int = 0,
             num_points: int | None = None):
  """Metrics over the fixed eval set, spike rates, and sample-grid rows.

  Returns ``(result, samples)``; with ``num_points`` (a stacked ablation
  state) both are lists with one entry per point.
  """
  K = num_points or 1
  accs = [task.new_accumulator() for _ in range(K)]
  rates = [[] for _ in range(K)]
  samples = [None] * K
  for i, local in enumerate(eval_batches):
    batch = parallel.global_batch(mesh, local)
    outputs, r = eval_fn(state, batch)
    host_batch = {k: parallel.to_host(v) for k, v in batch.items()}
    host_out = {k: parallel.to_host(v) for k, v in outputs.items()}
    r = jax.device_get(r)
    for k in range(K):
      pick = (lambda d: {n: v[k] for n, v in d.items()}) if num_points else (
          lambda d: d)
      out_k = pick(host_out)
      task.accumulate(accs[k], host_batch, out_k)
      rates[k].append(pick(r))
      if i == 0 and num_samples:
        samples[k] = task.samples(host_batch, out_k, num_samples)
  results = []
  for acc, rs in zip(accs, rates):
    result = dict(acc.result())
    if rs and rs[0]:
      result["spike_rate"] = {n: float(np.mean([x[n] for x in rs]))
                              for n in rs[0]}
    results.append(result)
  if num_points:
    return results, samples
  return results[0], samples[0]


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
  """Everything a training run compiles once: state, steps, mesh, key.

  ``state`` is replicated on the mesh; ``train_step(host_batch)`` advances it
  by one step (``host_batch``: this process's rows, numpy) and returns the
  step's metrics. ``points`` lists the ablation points (None: one model).
  """
  task: tasks.Task
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  graphs: Graphs
  state: dict
  train_fn: object
  eval_fn: object
  key: jax.Array
  points: list | None = None

  def train_step(self, host_batch: dict) -> dict:
    self.state, metrics = self.train_fn(
        self.state, parallel.global_batch(self.mesh, host_batch), self.key)
    return metrics

  def eval_step(self, host_batch: dict):
    return self.eval_fn(self.state, parallel.global_batch(self.mesh,
                                                          host_batch))


def setup(config, dataset, devices=None) -> Run:
  """Validates ``config`` and builds a ``Run`` over ``devices`` (default: all).

  ``dataset`` needs ``image_shape`` and ``num_classes`` (``data.build`` or
  ``inference.data_spec``).
  """
  task = validate(config)
  mesh = parallel.make_mesh(devices)
  tx = optim.build(config.train)
  points = None
  if ablation.enabled(config):
    points, state, graphs = ablation.create_stacked_state(
        config, task, dataset, tx, create_state)
  else:
    state, graphs = create_state(config, task, dataset, tx)
  train_fn, eval_fn = compile_steps(task, graphs, tx, mesh,
                                    config.train.nan_policy,
                                    stacked=points is not None)
  return Run(task=task, tx=tx, mesh=mesh, graphs=graphs,
             state=parallel.replicate(mesh, state), train_fn=train_fn,
             eval_fn=eval_fn,
             key=parallel.replicate(mesh, jax.random.key(config.seed)),
             points=points)


def train_and_evaluate(config, workdir) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  With a ``config.ablation`` grid, trains all K points at once (see
  ``scnn_jax.ablation``). Returns the final results dict (also written to
  ``results.json``).
  """
  validate(config)  # before touching the workdir or the data
  dataset = data.build(config)  # unusable data fails before anything is written
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  t = config.train
  run = setup(config, dataset)
  task, mesh, state, points = run.task, run.mesh, run.state, run.points
  train_fn, eval_fn, key = run.train_fn, run.eval_fn, run.key
  if points:
    logging.info("vmap ablation: %d points in one program: %s", len(points),
                 ", ".join(p.name for p in points))
  K = len(points) if points else None

  ckpt = Checkpointer(workdir / "checkpoints", keep=t.keep_checkpoints,
                      config=config)
  meta = {"train_time_s": 0.0}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract_like(state))
    logging.info("resuming from step %d (%s)", _step(state), ckpt.directory)
  start = _step(state)
  if is_main:
    _write_config(workdir, config, resumed=start > 0)
  writer = MetricWriter(workdir, active=is_main, resume_step=start)
  pidx, pcount = jax.process_index(), jax.process_count()
  eval_batches = dataset.eval_batches(t.eval_batch_size, pidx, pcount)
  logging.info("devices: %d (%s, %d processes); global batch %d; steps %d..%d",
               jax.device_count(), jax.devices()[0].platform, pcount,
               t.batch_size, start, t.steps)

  def run_eval(step):
    result, samples = evaluate(task, eval_fn, state, mesh, eval_batches,
                               t.num_sample_images, K)
    named = zip([p.name for p in points], result, samples) if points else [
        (None, result, samples)]
    for name, r, smp in named:
      writer.write(step, "eval", r if name is None else {"point": name, **r})
      if is_main and smp is not None:
        sub = workdir / "samples" / name if name else workdir / "samples"
        images.save_png(sub / f"step_{step:06d}.png",
                        images.grid(smp, scale=2))
      shown = "  ".join(f"{k} {r[k]:.4f}" for k in task.summary_keys()
                        if k in r)
      logging.info("eval at step %d%s: %s", step,
                   f" [{name}]" if name else "", shown)
    return result

  train_iter = parallel.DevicePrefetch(
      mesh, dataset.train_iterator(start, t.batch_size, pidx, pcount))
  progress = Progress(t.steps, start)
  watch = watchdog.Watchdog(*watchdog.validate(t), total_steps=t.steps,
                            start_step=start)
  if start:
    watch.saved(start)
  trace = profiling.StepTrace(t.get("profile_steps", ()), workdir)
  pending, wait_s, loop_t0 = [], 0.0, time.time()
  session_t0, base_time = time.time(), float(meta["train_time_s"])
  eval_s, result = 0.0, None
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
        _check_finite(state, t.nan_policy, ckpt, points)
        elapsed = time.time() - loop_t0
        scalars = _train_scalars(host, points)
        scalars["input_wait_fraction"] = wait_s / max(elapsed, 1e-9)
        scalars["steps_per_s"] = len(host) / max(elapsed, 1e-9)
        writer.write(done, "train", scalars)
        logging.info(progress.line(done, scalars["loss"],
                                   f" (mean of {K} points)" if K else ""))
        wait_s, loop_t0 = 0.0, time.time()
      if evaluate_now:
        e0 = time.time()
        with watch.phase(f"evaluation at step {done}"):
          result = run_eval(done)
        eval_s += time.time() - e0
      if save_now:
        meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
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
        raise Preempted(done, ckpt.directory)
    with watch.phase("final checkpoint write, evaluation and baselines"):
      ckpt.wait()
      if result is None:  # resumed a finished run: evaluate it again
        result = run_eval(start)
      meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
      summary = _finish(task, config, workdir, result, eval_batches, mesh,
                        t.steps, meta["train_time_s"], is_main, points,
                        dataset)
  finally:
    watch.close()
    trace.close()
    train_iter.close()
  writer.close()
  ckpt.close()
  return summary


# Fields that only say how long / how often: changing them on resume is normal.
_RUN_LENGTH_FIELDS = ("train.steps", "train.log_every", "train.eval_every",
                      "train.checkpoint_every", "train.keep_checkpoints",
                      "train.num_sample_images", "train.profile_steps",
                      "train.watchdog_s", "train.sigterm_grace_s",
                      "data.prefetch",
                      "data.num_threads", "data.num_workers")


def _write_config(workdir, config, resumed: bool):
  """config.json; on resume, warns about changes and keeps the old file."""
  path = workdir / "config.json"
  new = json.loads(config.to_json_best_effort())
  if resumed and path.exists():
    old = json.loads(path.read_text())
    changed = [(k, a, b) for k, (a, b) in _diff(old, new).items()
               if k not in _RUN_LENGTH_FIELDS]
    if changed:
      keep = workdir / f"config.{int(time.time())}.json"
      path.rename(keep)
      logging.warning(
          "resuming with a config that differs from the one that wrote the "
          "checkpoints (old one kept as %s): %s. The restored state keeps the "
          "checkpoint's values of model parameters.", keep.name,
          "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed))
  path.write_text(json.dumps(new, indent=2))


def _diff(a, b, prefix=""):
  out = {}
  for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if isinstance(x, dict) and isinstance(y, dict):
      out.update(_diff(x, y, f"{prefix}{k}."))
    elif x != y:
      out[f"{prefix}{k}"] = (x, y)
  return out


def _step(state) -> int:
  return int(np.max(jax.device_get(state["step"])))


def _train_scalars(host: list[dict], points) -> dict:
  """Mean loss / spike rates over the logged steps (and over points)."""
  loss = np.array([np.asarray(m["loss"], float) for m in host])   # [n(, K)]
  finite = np.array([np.asarray(m["finite"]) for m in host])
  masked = np.where(finite, loss, np.nan)
  per_point = np.nanmean(masked, axis=0) if masked.size else masked
  rates = {k: float(np.mean([np.mean(m["spike_rate"][k]) for m in host]))
           for k in host[-1]["spike_rate"]}
  scalars = {"loss": float(np.nanmean(per_point)) if np.isfinite(
      per_point).any() else float("nan"), "spike_rate": rates}
  if points:
    scalars["loss_per_point"] = {p.name: float(v)
                                 for p, v in zip(points, per_point)}
  return scalars


def _check_finite(state, nan_policy, ckpt, points=None):
  bad = np.atleast_1d(jax.device_get(state["nonfinite"]))
  if not bad.any():
    return
  first = np.atleast_1d(jax.device_get(state["first_nonfinite"]))
  if nan_policy == "stop" and (points is None or bad.all()):
    ckpt.wait()
    last = ckpt.latest_step()
    where = "" if points is None else " in every ablation point"
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {int(first.max())}{where}: "
        f"training stopped (train.nan_policy='stop'). The last good "
        f"checkpoint "
        f"{'is step ' + str(last) if last is not None else 'does not exist'}"
        f" in {ckpt.directory}; lower train.learning_rate, set "
        f"train.grad_clip, or use train.nan_policy='skip'.")
  names = ([p.name for p in points] if points else ["model"])
  frozen = ", ".join(f"{n} (step {int(f)})" for n, b, f in
                     zip(names, bad, first) if b)
  action = "frozen at their first" if nan_policy == "stop" else "skipping"
  logging.warning("non-finite loss/gradient, %s non-finite step: %s", action,
                  frozen)


def _finish(task, config, workdir, result, eval_batches, mesh, steps,
            train_time, is_main, points=None, dataset=None):
  host_batches = [{k: parallel.to_host(v) for k, v in
                   parallel.global_batch(mesh, b).items()}
                  for b in eval_batches]
  summary = {
      "baselines": task.baselines(host_batches) if is_main else {},
      "steps": steps,
      "train_time_s": round(train_time, 2),
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "platform": jax.devices()[0].platform,
      "model": config.model.name,
  }
  image_shape = dataset.image_shape if dataset is not None else None
  if points:
    synops = [task.synaptic_ops(p.config, image_shape, r.get("spike_rate", {}))
              for p, r in zip(points, result)]
    summary["points"] = [{"index": p.index, "name": p.name, "values": p.values,
                          "eval": r, "synops": s}
                         for p, r, s in zip(points, result, synops)]
  else:
    summary["eval"] = result
    synops = task.synaptic_ops(config, image_shape,
                               result.get("spike_rate", {}))
    if synops is not None:
      summary["synops"] = synops
  if is_main:
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    (workdir / "results.md").write_text(results_markdown(task, summary))
    if points:
      ablation.write_outputs(workdir, points, result, synops)
  return summary


def results_markdown(task, summary) -> str:
  rows = ([(p["name"], p["eval"]) for p in summary["points"]]
          if "points" in summary else [(summary["model"], summary["eval"])])
  keys = [k for k in task.summary_keys() if k in rows[0][1]]
  rows += list(summary["baselines"].items())
  lines = [f"| method | {' | '.join(keys)} |",
           "|---" * (len(keys) + 1) + "|"]
  for name, r in rows:
    lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) +
                 " |")
  text = "\n".join(lines) + "\n"
  rates = summary.get("eval", {}).get("spike_rate", {})
  if rates:
    text += "\nSpike rate per layer: " + ", ".join(
        f"{k} {v:.3f}" for k, v in rates.items()) + "\n"
  if summary.get("synops"):
    text += (f"\nSynaptic operations per image: {summary['synops']:.3e}\n")
  text += (f"\n{summary['steps']} steps, {summary['train_time_s']:.0f} s of "
           f"training on {summary['devices']} {summary['platform']} device(s)"
           f".\n")
  return text
