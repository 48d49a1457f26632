"""The reference network in snnTorch (hand loop over T, channels-last).

    python -m benchmarks.refnet.snntorch_net --T 8

snn.Leaky with reset_mechanism="subtract" and reset_delay=False resets in the
same step, as the reference neuron does; surrogate fast_sigmoid(slope=25).
"""

from __future__ import annotations

import argparse

import snntorch as snn
import torch
from snntorch import surrogate

from benchmarks.refnet import common, torch_common


def main():
  args = common.base_args(argparse.ArgumentParser()).parse_args()
  torch_common.setup(args.threads)
  convs = torch_common.convs(device=args.device)
  lif = [snn.Leaky(beta=common.BETA, threshold=common.THRESHOLD,
                   spike_grad=surrogate.fast_sigmoid(slope=common.SLOPE),
                   reset_mechanism="subtract", reset_delay=False
                   ).to(args.device)
         for _ in common.SPIKING]

  def forward(x, T, rates=None):
    mems = [l.reset_mem() for l in lif]
    mems = [None] * 4
    acc = 0
    for _ in range(T):
      h = x
      for i, name in enumerate(common.SPIKING):
        cur = torch_common.current(convs, name, h)
        if mems[i] is None:
          mems[i] = torch.zeros_like(cur)
        h, mems[i] = lif[i](cur, mems[i])
        if rates is not None:
          rates[i] += float(h.mean()) / T
      acc = acc + convs["out"](h)
    return torch.sigmoid(acc / T)

  def rates_fn(x, T):
    r = [0.0] * 4
    forward(x, T, r)
    return r

  torch_common.run(forward, convs.parameters(), args, "snnTorch",
                   f"snntorch {snn.__version__}, torch {torch.__version__}",
                   rates_fn)


if __name__ == "__main__":
  main()
