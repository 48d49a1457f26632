"""The jitted per-device train and eval steps (the pmap-style step).

The train step is a pure function ``(state, batch, key) -> (state, metrics)``
of pytrees (the model enters as ``nnx.split`` state, ``scnn_jax.runtime.state``,
and is rebuilt with ``nnx.merge``), so ``jax.jit``, ``jax.shard_map`` and
``jax.vmap`` apply to it directly. It is written per device (see
``scnn_jax.runtime.parallel`` for how that maps to ``jax.pmap``) and compiled
once. A task supplies what is specific to it: its loss (local sums) and its
predictions; the steps know nothing else of it. With ``train.ema_decay`` the
train step also updates the weights' moving average and the eval step evaluates
it (``scnn_jax.runtime.state``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from scnn_jax.metrics.spikes import spike_rates
from scnn_jax.nn.variables import SpikeRate
from scnn_jax.ops import backend
from scnn_jax.runtime import parallel
from scnn_jax.runtime import state as state_lib
from scnn_jax.runtime.state import Graphs


def make_train_step(task_loss, graph: nnx.GraphDef, tx, nan_policy: str,
                    ema_decay: float = 0.0):
  """The per-device train step (call inside ``shard_map`` over ``"data"``).

  ``task_loss(model, batch, *, rngs, example_ids) -> (numerator, denominator,
  aux)``: a task's loss as LOCAL sums (``scnn_jax.tasks.base.Task.loss``).
  ``ema_decay > 0``: the state holds ``ema`` (``state.create_state(...,
  ema=True)``), updated after the optimizer (``state.ema_update``).
  """

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
          lambda m: task_loss(m, batch, rngs=rngs, example_ids=ids),
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
    if ema_decay:
      ema = state_lib.ema_update(state[state_lib.EMA_KEY], params, ema_decay,
                                 state["step"])
      new_state[state_lib.EMA_KEY] = keep(ema, state[state_lib.EMA_KEY])
    return new_state, {"loss": loss, "finite": finite, "spike_rate": rates,
                       **aux}

  return step


def make_eval_step(predict_fn, graph: nnx.GraphDef):
  """Per-device eval step: ``(state, batch) -> (outputs, spike rates)``;
  ``predict_fn(model, batch) -> dict`` (``Task.predict``). Runs the
  state's ``ema`` when it has one (``state.eval_params``)."""

  def step(state, batch):
    model = nnx.merge(graph, state_lib.eval_params(state), state["rest"])
    outputs, captured = nnx.capture(lambda m: predict_fn(m, batch),
                                    SpikeRate)(model)
    return outputs, jax.lax.pmean(spike_rates(captured), parallel.AXIS)

  return step


def points_per_pass(platform: str) -> int | None:
  """How many stacked points one pass of a vmap ablation's step runs at once
  (``compile_steps``): None = all K (``jax.vmap``), n = a loop over groups of
  n points.

  XLA CPU: 1. One width-16 SC-NN already keeps 2 cores busy, so running the
  points side by side gains no parallelism, while stacking them multiplies
  every elementwise array (the LIF scan's T-step residuals, ReLU masks) by
  K and pushes it out of cache. ``benchmarks/ablation_step.py`` on
  ``configs/ablation.py`` (12 points; 2-core EPYC Zen 4 loaded by another
  job, load average 3.7-4.9): the loop 1.28-1.35 s per step, 0.71-0.84x
  twelve one-point steps; the vmap 2.0-2.2 s, 1.19-1.33x (2.1-2.7 s while
  each point still drew its own noise). Groups of 3 were slower than 1.
  GPU / TPU: all points (docs/studies/ablation.md: on an H100 one width-16
  model leaves the device idle, and the vmapped sweep cost 0.17x the
  separate runs).
  """
  return 1 if platform == "cpu" else None


def _over_points(fn, n: int | None):
  """``fn(point_state, *shared)`` applied to every point of a stacked state
  (leading axis K), ``n`` points at a time (``points_per_pass``); outputs
  stacked on a leading K axis either way."""
  def over(state, *shared):
    if n is None:
      return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(state, *shared)
    return jax.lax.map(lambda s: fn(s, *shared), state,
                       batch_size=None if n == 1 else n)

  return over


def _stacked_train(train, n: int | None):
  """The train step of K stacked points, ``n`` at a time (``_over_points``).

  The points advance together, so their step counters are equal: every point
  gets point 0's, unbatched, and with it the same step key it would have
  folded in itself. The training noise drawn from that key is then computed
  once per step, not once per point (XLA hoists it out of the loop over the
  points; under vmap it is broadcast).
  """
  over = _over_points(
      lambda s, batch, key, step: train({**s, "step": step}, batch, key), n)

  def step(state, batch, key):
    return over(state, batch, key, state["step"][0])

  return step


def compile_steps(task, graphs: Graphs, tx, mesh, nan_policy: str,
                  stacked: bool = False, ema_decay: float = 0.0,
                  points_at_once: int | None | str = "auto"):
  """jit(shard_map(step)) for training (state donated) and evaluation of
  ``task`` (its ``loss`` and ``predict``).

  ``stacked``: the state holds K models on a leading axis (vmap ablations);
  the per-device steps run every point on the shared batch and key (each
  point's ``ema`` averages its own params), ``points_at_once`` of them at a
  time: "auto" = ``points_per_pass`` of the mesh's platform, None = all
  (``jax.vmap``), n = a loop over groups of n. Same numbers up to float
  rounding order. ``ema_decay``: ``train.ema_decay``.
  """
  train = make_train_step(task.loss, graphs.train, tx, nan_policy, ema_decay)
  evaluate = make_eval_step(task.predict, graphs.eval)
  out_batch = P(parallel.AXIS)
  if stacked:
    if points_at_once == "auto":
      points_at_once = points_per_pass(mesh.devices.flat[0].platform)
    train = _stacked_train(train, points_at_once)
    evaluate = _over_points(evaluate, points_at_once)
    out_batch = P(None, parallel.AXIS)
  train = parallel.per_device(train, mesh, (P(), P(parallel.AXIS), P()),
                              (P(), P()))
  evaluate = parallel.per_device(evaluate, mesh, (P(), P(parallel.AXIS)),
                                 (out_batch, P()))
  return (backend.jit(train, donate_argnums=(0,)), backend.jit(evaluate))
