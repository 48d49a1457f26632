"""Does bf16 train like fp32? Loss curves of the reference network, both ways.

    python benchmarks/bf16_curve.py --T 8 --steps 60 --out benchmarks/results/bf16_curve.json

Trains the literal reference network (benchmarks/refnet, ``--same-flops``)
from the same weights on the same batch with Adam, once in float32 and once
with ``SpikingConv2d(dtype=bfloat16)`` / ``Conv2d(dtype=bfloat16)`` (bf16
conv inputs and weights, fp32 master weights and membrane state), and
prints / writes both loss curves and their largest relative gap. Speed is
measured by benchmarks/reference_net.py (bf16 rows), not here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scnn_jax.ops import backend  # noqa: E402

backend.tune_host_allocator()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.refnet import common, scnn  # noqa: E402


def curve(dtype: str, T: int, steps: int) -> list[float]:
  args = argparse.Namespace(
      chunk="auto", dtype=dtype, order="fold", conv_impl="auto",
      unroll="auto", scan_chunks="on", remat=False, input="copies",
      upsample="separate", readout="per-step", small_convs="per-shape")
  x, img, mask = (jnp.asarray(a) for a in common.batch())
  graphdef, params, rest = nnx.split(scnn.build(args), nnx.Param, ...)
  tx = optax.adam(common.LR)

  def loss_fn(params):
    pred = nnx.merge(graphdef, params, rest)(x, T)
    return jnp.sum(mask * (pred - img) ** 2) / jnp.sum(mask)

  @backend.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state, losses = tx.init(params), []
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  return losses


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--T", type=int, default=8)
  ap.add_argument("--steps", type=int, default=60)
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  fp32 = curve("float32", args.T, args.steps)
  bf16 = curve("bfloat16", args.T, args.steps)
  gap = np.abs(np.array(bf16) - np.array(fp32)) / np.array(fp32)
  print("step  fp32     bf16")
  for i in range(0, args.steps, max(1, args.steps // 12)):
    print(f"{i + 1:4d}  {fp32[i]:.5f}  {bf16[i]:.5f}")
  print(f"last  {fp32[-1]:.5f}  {bf16[-1]:.5f}; largest relative gap "
        f"{gap.max():.3f} (step {int(gap.argmax()) + 1}), median "
        f"{np.median(gap):.3f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"T": args.T, "B": common.B, "network": "literal",
                 "fp32": fp32, "bf16": bf16,
                 "max_rel_gap": float(gap.max()),
                 "median_rel_gap": float(np.median(gap))}, f, indent=1)


if __name__ == "__main__":
  main()
