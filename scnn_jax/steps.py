"""The jitted per-device train and eval steps (the pmap-style step).

The train step is a pure function ``(state, batch, key) -> (state, metrics)``
of pytrees (the model enters as ``nnx.split`` state, ``scnn_jax.state``, and
is rebuilt with ``nnx.merge``), so ``jax.jit``, ``jax.shard_map`` and
``jax.vmap`` apply to it directly. It is written per device (see
``scnn_jax.parallel`` for how that maps to ``jax.pmap``) and compiled once.
A task supplies what is specific to it: its loss (local sums) and its
predictions; the steps know nothing else of it. With ``train.ema_decay``
the train step also updates the weights' moving average and the eval step
evaluates it (``scnn_jax.state``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from scnn_jax import backend, parallel
from scnn_jax import state as state_lib
from scnn_jax.metrics.spikes import spike_rates
from scnn_jax.state import Graphs
from scnn_jax.variables import SpikeRate


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


def compile_steps(task, graphs: Graphs, tx, mesh, nan_policy: str,
                  stacked: bool = False, ema_decay: float = 0.0):
  """jit(shard_map(step)) for training (state donated) and evaluation of
  ``task`` (its ``loss`` and ``predict``).

  ``stacked``: the state holds K models on a leading axis (vmap ablations);
  the per-device steps are vmapped over it, batch and key shared (each
  point's ``ema`` averages its own params). ``ema_decay``: ``train.ema_decay``.
  """
  train = make_train_step(task.loss, graphs.train, tx, nan_policy, ema_decay)
  evaluate = make_eval_step(task.predict, graphs.eval)
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
