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

from scnn_jax import backend, data, images, optim, parallel, tasks
from scnn_jax.checkpoint import Checkpointer, abstract_like
from scnn_jax.config_lib import ConfigError, check_choice, check_int
from scnn_jax.variables import SpikeRate
from scnn_jax.writers import MetricWriter, Progress

NAN_POLICIES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
  """Training stopped because a step produced a NaN or inf loss/gradient."""


def validate(config) -> tasks.Task:
  """Checks every config field before anything is built or compiled."""
  task = tasks.get(config)
  check_int("seed", config.seed, 0)
  task.validate(config)
  data.validate_config(config)
  t = config.train
  optim.validate(t)
  check_int("train.steps", t.steps, 1)
  for field in ("batch_size", "eval_batch_size", "log_every", "eval_every",
                "checkpoint_every", "keep_checkpoints"):
    check_int(f"train.{field}", t[field], 1)
  check_int("train.num_sample_images", t.num_sample_images, 0)
  check_choice("train.nan_policy", t.nan_policy, NAN_POLICIES)
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
  seed = config.seed if seed is None else seed
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


def _rates(captured) -> dict:
  """Captured SpikeRate state -> {"layer/path": mean rate} (inside jit)."""
  out = {}
  for path, var in nnx.to_flat_state(captured):
    name = "/".join(str(p) for p in path[:-1]) or "rate"
    out[name] = jnp.mean(jnp.stack(var.get_value()))
  return out


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
      return loss, (aux, _rates(captured), rest)

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
    return outputs, jax.lax.pmean(_rates(captured), parallel.AXIS)

  return step


def compile_steps(task, graphs: Graphs, tx, mesh, nan_policy: str):
  """jit(shard_map(step)) for training (state donated) and evaluation."""
  from jax.sharding import PartitionSpec as P
  train = parallel.per_device(make_train_step(task, graphs.train, tx,
                                              nan_policy),
                              mesh, (P(), P(parallel.AXIS), P()), (P(), P()))
  evaluate = parallel.per_device(make_eval_step(task, graphs.eval), mesh,
                                 (P(), P(parallel.AXIS)),
                                 (P(parallel.AXIS), P()))
  return (backend.jit(train, donate_argnums=(0,)), backend.jit(evaluate))


# -----------------------------------------------------------------------------
# Evaluation
# -----------------------------------------------------------------------------


def evaluate(task, eval_fn, state, mesh, eval_batches, num_samples: int = 0):
  """Metrics over the fixed eval set, spike rates, and sample-grid rows."""
  acc = task.new_accumulator()
  rates, samples = [], None
  for i, local in enumerate(eval_batches):
    batch = parallel.global_batch(mesh, local)
    outputs, r = eval_fn(state, batch)
    host_batch = {k: parallel.to_host(v) for k, v in batch.items()}
    host_out = {k: parallel.to_host(v) for k, v in outputs.items()}
    task.accumulate(acc, host_batch, host_out)
    rates.append(jax.device_get(r))
    if i == 0 and num_samples:
      samples = task.samples(host_batch, host_out, num_samples)
  result = dict(acc.result())
  if rates and rates[0]:
    result["spike_rate"] = {k: float(np.mean([r[k] for r in rates]))
                            for k in rates[0]}
  return result, samples


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------


def train_and_evaluate(config, workdir) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  Returns the final results dict (also written to ``results.json``).
  """
  task = validate(config)
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  t = config.train
  dataset = data.build(config)
  mesh = parallel.make_mesh()
  tx = optim.build(t)
  state, graphs = create_state(config, task, dataset, tx)
  state = parallel.replicate(mesh, state)

  ckpt = Checkpointer(workdir / "checkpoints", keep=t.keep_checkpoints)
  meta = {"train_time_s": 0.0}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract_like(state))
    logging.info("resuming from step %d (%s)", int(state["step"]),
                 ckpt.directory)
  start = int(jax.device_get(state["step"]))
  if is_main:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  writer = MetricWriter(workdir, active=is_main, resume_step=start)
  train_fn, eval_fn = compile_steps(task, graphs, tx, mesh, t.nan_policy)
  key = parallel.replicate(mesh, jax.random.key(config.seed))
  pidx, pcount = jax.process_index(), jax.process_count()
  eval_batches = dataset.eval_batches(t.eval_batch_size, pidx, pcount)
  logging.info("devices: %d (%s, %d processes); global batch %d; steps %d..%d",
               jax.device_count(), jax.devices()[0].platform, pcount,
               t.batch_size, start, t.steps)

  def run_eval(step):
    result, samples = evaluate(task, eval_fn, state, mesh, eval_batches,
                               t.num_sample_images)
    writer.write(step, "eval", result)
    if is_main and samples is not None:
      images.save_png(workdir / "samples" / f"step_{step:06d}.png",
                      images.grid(samples, scale=2))
    shown = "  ".join(f"{k} {result[k]:.4f}" for k in task.summary_keys()
                      if k in result)
    logging.info("eval at step %d: %s", step, shown)
    return result

  train_iter = dataset.train_iterator(start, t.batch_size, pidx, pcount)
  progress = Progress(t.steps, start)
  pending, wait_s, loop_t0 = [], 0.0, time.time()
  session_t0, base_time = time.time(), float(meta["train_time_s"])
  eval_s, result = 0.0, None
  for step in range(start, t.steps):
    t0 = time.time()
    batch = parallel.global_batch(mesh, next(train_iter))
    wait_s += time.time() - t0
    state, step_metrics = train_fn(state, batch, key)
    pending.append(step_metrics)
    done = step + 1
    if done % t.log_every == 0 or done == t.steps:
      host = jax.device_get(pending)
      pending = []
      _check_finite(state, t.nan_policy, ckpt)
      losses = [float(m["loss"]) for m in host if m["finite"]]
      loss = float(np.mean(losses)) if losses else float("nan")
      elapsed = time.time() - loop_t0
      scalars = {"loss": loss, "input_wait_fraction": wait_s / max(elapsed,
                                                                    1e-9),
                 "spike_rate": {k: float(np.mean([m["spike_rate"][k]
                                                  for m in host]))
                                for k in host[-1]["spike_rate"]}}
      scalars["steps_per_s"] = len(host) / max(elapsed, 1e-9)
      writer.write(done, "train", scalars)
      logging.info(progress.line(done, loss))
      wait_s, loop_t0 = 0.0, time.time()
    if done % t.eval_every == 0 or done == t.steps:
      e0 = time.time()
      result = run_eval(done)
      eval_s += time.time() - e0
    if done % t.checkpoint_every == 0 or done == t.steps:
      meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
      ckpt.save(done, state, meta, force=done == t.steps)
  ckpt.wait()
  if result is None:  # resumed a finished run: evaluate it again
    result = run_eval(start)
  meta["train_time_s"] = base_time + time.time() - session_t0 - eval_s
  summary = _finish(task, config, workdir, result, eval_batches, mesh,
                    t.steps, meta["train_time_s"], is_main)
  writer.close()
  ckpt.close()
  return summary


def _check_finite(state, nan_policy, ckpt):
  bad = int(jax.device_get(state["nonfinite"]))
  if not bad:
    return
  first = int(jax.device_get(state["first_nonfinite"]))
  if nan_policy == "stop":
    ckpt.wait()
    last = ckpt.latest_step()
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {first}: training stopped "
        f"(train.nan_policy='stop'). The last good checkpoint "
        f"{'is step ' + str(last) if last is not None else 'does not exist'}"
        f" in {ckpt.directory}; lower train.learning_rate, set "
        f"train.grad_clip, or use train.nan_policy='skip'.")
  logging.warning("%d non-finite steps skipped so far (first at step %d)",
                  bad, first)


def _finish(task, config, workdir, result, eval_batches, mesh, steps,
            train_time, is_main):
  host_batches = [{k: parallel.to_host(v) for k, v in
                   parallel.global_batch(mesh, b).items()}
                  for b in eval_batches]
  summary = {
      "eval": result,
      "baselines": task.baselines(host_batches) if is_main else {},
      "steps": steps,
      "train_time_s": round(train_time, 2),
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "platform": jax.devices()[0].platform,
      "model": config.model.name,
  }
  if is_main:
    (workdir / "results.json").write_text(json.dumps(summary, indent=2))
    (workdir / "results.md").write_text(results_markdown(task, summary))
  return summary


def results_markdown(task, summary) -> str:
  keys = [k for k in task.summary_keys() if k in summary["eval"]]
  rows = [(summary["model"], summary["eval"])] + list(
      summary["baselines"].items())
  lines = [f"| method | {' | '.join(keys)} |",
           "|---" * (len(keys) + 1) + "|"]
  for name, r in rows:
    lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) +
                 " |")
  rates = summary["eval"].get("spike_rate", {})
  text = "\n".join(lines) + "\n"
  if rates:
    text += "\nSpike rate per layer: " + ", ".join(
        f"{k} {v:.3f}" for k, v in rates.items()) + "\n"
  text += (f"\n{summary['steps']} steps, {summary['train_time_s']:.0f} s of "
           f"training on {summary['devices']} {summary['platform']} device(s)"
           f".\n")
  return text
