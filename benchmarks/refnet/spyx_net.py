"""The reference network in spyx 1.0 (Flax NNX, ``spyx.nn.run`` =
``lax.scan`` over T of the whole network, plain ``jax.jit``).

    python -m benchmarks.refnet.spyx_net --T 8

spyx's built-in LIF fires from the previous step's membrane, so the
reference neuron is written on spyx's stateful-layer interface
(``initial_state(batch)``, ``__call__(x, V) -> (spikes, V)``) with spyx's
own superspike surrogate (k = 25).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import spyx  # noqa: E402
import spyx.nn as snn  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.refnet import common, jax_common  # noqa: E402


class RefLIF(nnx.Module):
  """v = beta v + I; s = H(v - th); v -= s th (same step)."""

  def __init__(self, hidden_shape):
    self.hidden_shape = hidden_shape
    self.spike = spyx.axn.superspike(common.SLOPE)

  def __call__(self, x, V):
    V = common.BETA * V + x
    s = self.spike(V - common.THRESHOLD)
    return s, V - s * common.THRESHOLD

  def initial_state(self, batch_size):
    return jnp.zeros((batch_size,) + self.hidden_shape)


class Upsample(nnx.Module):
  def __call__(self, x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def build():
  rngs = nnx.Rngs(0)
  w = common.weights()

  def conv(name):
    cin, cout, stride, _ = common.LAYERS[name]
    c = nnx.Conv(cin, cout, (3, 3), strides=stride, padding="SAME",
                 rngs=rngs)
    c.kernel[...] = jnp.asarray(w[name][0])
    c.bias[...] = jnp.asarray(w[name][1])
    return c

  return snn.Sequential(
      conv("c1"), RefLIF((28, 28, 32)), conv("c2"), RefLIF((14, 14, 64)),
      conv("c3"), RefLIF((14, 14, 64)), Upsample(), conv("c4"),
      RefLIF((28, 28, 32)), conv("out"))


def main():
  args = common.base_args(argparse.ArgumentParser()).parse_args()
  T = args.T
  x, img, mask = (jnp.asarray(a) for a in common.batch())
  model = build()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def predict(params):
    m = nnx.merge(graphdef, params, rest)
    y, _ = snn.run(m, jnp.broadcast_to(x, (T,) + x.shape))
    return jax.nn.sigmoid(jnp.mean(y, axis=0))

  def rates(params):
    m = nnx.merge(graphdef, params, rest)
    seq = jnp.broadcast_to(x, (T,) + x.shape)
    out = []
    h = seq
    for layer in m.layers:
      if isinstance(layer, RefLIF):
        def body(V, i, layer=layer):
          s, V = layer(i, V)
          return V, s
        _, h = jax.lax.scan(body, jnp.zeros(h.shape[1:]), h)
        out.append(float(jnp.mean(h)))
      else:
        h = jax.vmap(layer)(h)
    return out

  tx = optax.adam(common.LR)

  def loss_fn(params):
    return jnp.sum(mask * (predict(params) - img) ** 2) / jnp.sum(mask)

  @jax.jit
  def step(carry):
    params, opt_state, _ = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  r = rates(params)
  carry, rec = common.train_and_time(
      step, (params, tx.init(params), jnp.zeros(())), steps=args.steps,
      budget_s=args.budget, sync=jax.block_until_ready)
  infer = jax.jit(predict)
  t_inf = common.time_inference(lambda: infer(carry[0]),
                                sync=jax.block_until_ready)
  rec.update(impl="spyx", variant="spyx.nn.run (lax.scan)",
             version=f"spyx {getattr(spyx, '__version__', '?')}, jax "
             f"{jax.__version__}", rates=r, infer_img_s=common.B / t_inf,
             xla_mb=None, dev_peak_mb=jax_common.device_peak_mb())
  common.finish(rec, T)


if __name__ == "__main__":
  main()
