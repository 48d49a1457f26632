"""The reference network in norse (LIFBoxCell, hand loop over T,
channels-last).

    python -m benchmarks.refnet.norse_net --T 8

norse integrates ``v += dt / tau (I - v)``: with dt * tau_mem_inv = 0.1 that
is ``v = 0.9 v + 0.1 I``, the reference membrane scaled by 0.1, so the
threshold is 0.1 and the superspike slope 250 (= 25 / 0.1); reset by
subtraction (norse's ``reset_subtract``).
"""

from __future__ import annotations

import argparse

import norse
import torch
from norse.torch import LIFBoxCell, LIFBoxParameters
from norse.torch.functional.reset import reset_subtract

from benchmarks.refnet import common, torch_common


def main():
  args = common.base_args(argparse.ArgumentParser()).parse_args()
  torch_common.setup(args.threads)
  convs = torch_common.convs(device=args.device)
  scale = 1.0 - common.BETA  # dt * tau_mem_inv
  t = lambda v: torch.as_tensor(v, device=args.device)
  p = LIFBoxParameters(tau_mem_inv=t(scale / 1e-3), v_leak=t(0.0),
                       v_th=t(common.THRESHOLD * scale), v_reset=t(0.0),
                       method="super", alpha=t(common.SLOPE / scale),
                       reset_method=reset_subtract)
  cells = [LIFBoxCell(p, dt=1e-3).to(args.device) for _ in common.SPIKING]

  def forward(x, T, rates=None):
    states = [None] * 4
    acc = 0
    for _ in range(T):
      h = x
      for i, name in enumerate(common.SPIKING):
        cur = torch_common.current(convs, name, h)
        h, states[i] = cells[i](cur, states[i])
        if rates is not None:
          rates[i] += float(h.mean()) / T
      acc = acc + convs["out"](h)
    return torch.sigmoid(acc / T)

  def rates_fn(x, T):
    r = [0.0] * 4
    forward(x, T, r)
    return r

  torch_common.run(forward, convs.parameters(), args, "norse",
                   f"norse {norse.__version__}, torch {torch.__version__}",
                   rates_fn)


if __name__ == "__main__":
  main()
