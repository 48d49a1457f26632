"""The reference network as a user writes it by hand in PyTorch: no SNN
library, a loop over T, channels-last convs and a custom spike autograd.

    python -m benchmarks.refnet.torch_loop --T 8
    python -m benchmarks.refnet.torch_loop --T 8 --autocast bfloat16
    python -m benchmarks.refnet.torch_loop --T 8 --device cuda --compile

The code a scnn_jax user would otherwise write: the spike is a
``torch.autograd.Function`` (Heaviside forward, fast-sigmoid surrogate
backward, slope 25), the membrane update is three tensor ops per layer and
step (``u = beta v + I``; ``s = H(u - 1)``; ``v = u - s``), the readout conv
runs at every step and the mean over T is taken after it: exactly the
literal network's FLOPs (common.py). ``--autocast bfloat16`` wraps the
forward in ``torch.autocast`` (bf16 convs, fp32 membrane: the state starts
as fp32 zeros and stays fp32 by promotion). ``--compile`` wraps the
forward in ``torch.compile`` (the train step's backward is compiled by
AOTAutograd with it).
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from benchmarks.refnet import common, torch_common


class Spike(torch.autograd.Function):
  """H(x) forward; fast-sigmoid surrogate 1 / (1 + k|x|)^2 backward."""

  @staticmethod
  def forward(ctx, x):
    ctx.save_for_backward(x)
    return (x >= 0).to(x.dtype)

  @staticmethod
  def backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g / torch.square(1.0 + common.SLOPE * torch.abs(x))


def main():
  ap = common.base_args(argparse.ArgumentParser())
  ap.add_argument("--autocast", default="none",
                  choices=("none", "bfloat16", "float16"))
  ap.add_argument("--compile", action="store_true",
                  help="torch.compile the forward (default mode)")
  args = ap.parse_args()
  torch_common.setup(args.threads)
  convs = torch_common.convs(device=args.device)
  autocast = (contextlib.nullcontext() if args.autocast == "none" else
              torch.autocast(torch.device(args.device).type,
                             dtype=getattr(torch, args.autocast)))

  def forward(x, T, rates=None):
    v = [0.0] * len(common.SPIKING)
    acc = 0.0
    for _ in range(T):
      h = x
      for i, name in enumerate(common.SPIKING):
        cur = torch_common.current(convs, name, h)
        u = common.BETA * v[i] + cur.float()
        s = Spike.apply(u - common.THRESHOLD)
        v[i] = u - s * common.THRESHOLD
        h = s.to(cur.dtype)
        if rates is not None:
          rates[i] += float(h.float().mean()) / T
      acc = acc + convs["out"](h).float()
    return torch.sigmoid(acc / T)

  def autocast_forward(x, T):
    with autocast:
      return forward(x, T)

  net = torch.compile(autocast_forward) if args.compile else autocast_forward

  def rates_fn(x, T):
    r = [0.0] * len(common.SPIKING)
    with autocast:
      forward(x, T, r)
    return r

  variant = "hand loop, channels-last"
  if args.autocast != "none":
    variant += f", {args.autocast} autocast"
  if args.compile:
    variant += ", torch.compile"
  torch_common.run(net, convs.parameters(), args, "pytorch",
                   f"torch {torch.__version__}", rates_fn, variant=variant)


if __name__ == "__main__":
  main()
