"""PyTorch side of the reference network: conv stack, weight loading, train
loop. The neuron is supplied by the peer library (snnTorch, norse)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.refnet import common


def setup(threads: int):
  torch.set_num_threads(threads)
  torch.manual_seed(0)


def sync_of(device: str):
  """What makes a timer wait for the device's queued work."""
  if device.startswith("cuda"):
    return lambda r: (torch.cuda.synchronize(), r)[1]
  return lambda r: r


def peak_device_mb(device: str):
  if device.startswith("cuda"):
    return torch.cuda.max_memory_allocated() / 2**20
  return None


def convs(channels_last=True, device="cpu"):
  mods = {}
  for name, (cin, cout, stride, _) in common.LAYERS.items():
    conv = torch.nn.Conv2d(cin, cout, 3, stride, padding=1)
    k, b = common.weights()[name]
    with torch.no_grad():
      conv.weight.copy_(torch.from_numpy(k).permute(3, 2, 0, 1))  # HWIO->OIHW
      conv.bias.copy_(torch.from_numpy(b))
    mods[name] = conv
  m = torch.nn.ModuleDict(mods).to(device)
  if channels_last:
    m = m.to(memory_format=torch.channels_last)
  return m


def stride2_pad(conv, x):
  # TF/JAX "SAME" for stride 2 on an even size pads (0, 1); PyTorch's
  # padding=1 pads (1, 1). Pad explicitly so all libraries compute the same.
  return F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)


def current(convs, name, h):
  """Input current of spiking layer ``name`` for its input ``h`` (NCHW):
  the explicit stride-2 padding of c2, nearest upsampling before c4."""
  if name == "c2":
    return stride2_pad(convs[name], h)
  if name == "c4":
    h = F.interpolate(h, scale_factor=2, mode="nearest")
  return convs[name](h)


def batch(channels_last=True, device="cpu"):
  x, img, mask = common.batch()
  to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(
      device)
  x, img, mask = to(x), to(img), to(mask)
  if channels_last:
    x = x.to(memory_format=torch.channels_last)
  return x, img, mask


def run(net_forward, params, args, impl, version, rates_fn,
        variant="channels-last"):
  """Train/infer timing of ``net_forward(x, T) -> pred`` (NCHW)."""
  x, img, mask = batch(device=args.device)
  sync = sync_of(args.device)
  T = args.T
  with torch.no_grad():
    rates = rates_fn(x, T)
  opt = torch.optim.Adam(params, lr=common.LR)

  def step(_):
    opt.zero_grad(set_to_none=True)
    pred = net_forward(x, T)
    loss = torch.sum(mask * (pred - img) ** 2) / torch.sum(mask)
    loss.backward()
    opt.step()
    return loss.detach()

  _, rec = common.train_and_time(step, None, steps=args.steps,
                                 budget_s=args.budget, loss_of=lambda l: l,
                                 sync=sync)

  def infer():
    with torch.no_grad():
      return net_forward(x, T)

  t_inf = common.time_inference(infer, sync=sync)
  rec.update(impl=impl, variant=variant, version=version,
             rates=rates, infer_img_s=common.B / t_inf, xla_mb=None,
             dev_peak_mb=peak_device_mb(args.device))
  common.finish(rec, T)
