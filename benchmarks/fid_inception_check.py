"""Trust check of FID / IS: pytorch-fid's FID Inception vs scnn_jax's
(scnn_jax.models.inception, scnn_jax.metrics.inception).

    python benchmarks/fid_inception_check.py [--peer-python .venv-fid/bin/python] \
        [--out benchmarks/results/fid_inception_check.json]

The peer (``--peer-python``: torch, torchvision and pytorch-fid, e.g.
``pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0`` in its own
venv; never a dependency of scnn_jax) builds pytorch-fid's FID Inception-v3
(``pytorch_fid.inception.InceptionV3([3], use_fid_inception=True)``, its own
code: FIDInceptionA/C/E blocks, resize to 299, scaling to [-1, 1]) with RANDOM
weights (the download of the real ones is replaced by keeping torchvision's
random init; BatchNorm running statistics and affine parameters are then
randomised too, so that every tensor of the file matters), saves the state
dict as a ``.pth`` and computes on the same images the 2048-d pool features
and the 1008 logits (``fc`` of the pool). This side converts the ``.pth`` with
``scripts/convert_inception_weights.py`` (torch-free reader), loads it with
``scnn_jax.metrics.inception`` and computes the same two outputs. Printed and
written: max |difference| and the relative error ``max|a - b| / max|b|`` of
each.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def images(n=6, size=64, seed=0):
  """Fixed test images [N, H, W, 3] in [0, 1]: smooth gradients + noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
  base = np.stack([xx, yy, 0.5 * (xx + yy)], -1)[None]
  return np.clip(0.6 * base + 0.4 * rng.random((n, size, size, 3)), 0,
                 1).astype(np.float32)


def peer_side(tmp: pathlib.Path):
  import torch
  import torchvision
  from pytorch_fid import inception as pfi
  torch.manual_seed(0)
  keep = "__keep_random_init__"
  original = torchvision.models.inception.Inception3.load_state_dict

  def load_state_dict(self, sd, *args, **kwargs):
    if isinstance(sd, str) and sd == keep:
      return None
    return original(self, sd, *args, **kwargs)

  pfi.load_state_dict_from_url = lambda *a, **k: keep
  torchvision.models.inception.Inception3.load_state_dict = load_state_dict
  try:
    net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                          resize_input=True, normalize_input=True,
                          use_fid_inception=True)
    fid_net = pfi.fid_inception_v3()  # same code: holds fc for the logits
  finally:
    torchvision.models.inception.Inception3.load_state_dict = original
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for m in fid_net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
        m.weight.copy_(0.8 + 0.4 * torch.rand(m.num_features, generator=gen))
        m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
  # The feature extractor's blocks are the same layers as fid_net's: load it.
  sd = fid_net.state_dict()
  blocks = [m for block in net.blocks for m in block]
  names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", None,
           "Conv2d_3b_1x1", "Conv2d_4a_3x3", None, "Mixed_5b", "Mixed_5c",
           "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
           "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", None]
  assert len(blocks) == len(names), len(blocks)
  for m, name in zip(blocks, names):
    if name is not None:
      m.load_state_dict({k[len(name) + 1:]: v for k, v in sd.items()
                         if k.startswith(name + ".")})
  net.eval()
  fid_net.eval()
  torch.save(sd, tmp / "random_fid_inception.pth")
  x = torch.from_numpy(np.load(tmp / "images.npy")).permute(0, 3, 1, 2)
  with torch.no_grad():
    pool = net(x)[0][:, :, 0, 0]
    logits = fid_net.fc(pool)
  np.savez(tmp / "peer.npz", pool=pool.numpy(), logits=logits.numpy())
  import pytorch_fid
  (tmp / "peer.json").write_text(json.dumps({
      "torch": torch.__version__, "torchvision": torchvision.__version__,
      "pytorch_fid": pytorch_fid.__version__}))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--peer-python",
                  default=str(REPO / ".venv-fid" / "bin" / "python"))
  ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                       "fid_inception_check.json"))
  ap.add_argument("--peer", help=argparse.SUPPRESS)  # internal: tmp dir
  args = ap.parse_args()
  if args.peer:
    peer_side(pathlib.Path(args.peer))
    return
  sys.path.insert(0, str(REPO))
  sys.path.insert(0, str(REPO / "scripts"))
  import jax

  import convert_inception_weights
  from scnn_jax.metrics import inception
  with tempfile.TemporaryDirectory() as d:
    tmp = pathlib.Path(d)
    x = images()
    np.save(tmp / "images.npy", x)
    subprocess.run([args.peer_python, __file__, "--peer", str(tmp)],
                   check=True)
    variant = convert_inception_weights.convert(
        tmp / "random_fid_inception.pth", tmp / "converted.npz")
    pool, logits = inception.InceptionMetrics.load(
        tmp / "converted.npz").features(x)
    peer = np.load(tmp / "peer.npz")
    versions = json.loads((tmp / "peer.json").read_text())
  result = {"variant": variant, "images": list(x.shape),
            "versions": {**versions, "jax": jax.__version__,
                         "python": platform.python_version()}}
  for name, ours in (("pool", pool), ("logits", logits)):
    ref = peer[name]
    diff = float(np.max(np.abs(np.asarray(ours) - ref)))
    result[name] = {"shape": list(ref.shape), "max_abs_diff": diff,
                    "max_abs_ref": float(np.max(np.abs(ref))),
                    "relative": diff / float(np.max(np.abs(ref)))}
  pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
