"""Cross-library check of scnn_jax.nn.nir: snnTorch and norse import our NIR
file and must produce the same spikes as scnn_jax on the same input.

    python benchmarks/nir_crosscheck.py [--peer-python .venv-bench/bin/python] \
        [--out benchmarks/results/nir_crosscheck.json]

The scnn_jax side (this environment) builds two networks from fixed seeds,
exports each with ``scnn_jax.nn.nir.export`` to a ``.nir`` file and runs it on a
fixed input; the peer side (``--peer-python``: a venv with torch, snntorch,
norse, nir, nirtorch; see requirements-bench.txt, never a dependency of
scnn_jax) reads the same files with ``snntorch.import_nir.import_from_nir``
and ``norse.torch.from_nir``, steps them over T, and returns their spikes.
Networks:

* ``paper_a_spiking_layer``: paper A's SpikingConv2d as configs/base.py
  builds it (width 32, 3x3 conv of the masked image + mask, LIF tau 40 steps,
  threshold 1, reset to zero), eval mode (no training noise), T = 8,
  input [8, 4, 32, 32, 4] (direct encoding: the same image at every step).
* ``paper_a_spiking_layer_unit_r``: the same layer exported with
  ``unit_r=True`` (each LIF's r = tau / dt folded into the conv before it, r
  = 1 written): for readers that ignore NIR's r, as norse 1.1.0 does.
* ``conv_pool_dense``: conv 2->8 + LIF, 2x2 average pool, flatten, affine
  8*8*8 -> 10 + LIF (per-layer parameters), T = 10, batch 1 (snnTorch's
  importer passes NIR's per-example Flatten(start_dim=0) to torch unchanged,
  which then also flattens the batch axis; with one example the result is
  the same); ``conv_pool_dense_unit_r``: the same with ``unit_r=True``.

Both are scored as the fraction of spike entries that differ and the number
of output spikes on each side. NIR fires when v > threshold, scnn_jax when
v >= threshold; float rounding near the threshold can flip rare spikes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
DT = 1e-4  # seconds per step: what snnTorch's importer assumes


# -----------------------------------------------------------------------------
# scnn_jax side
# -----------------------------------------------------------------------------


def _networks():
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from scnn_jax import nn
  from scnn_jax.config import builders
  from scnn_jax.config import files as config_files
  from scnn_jax.nn import nir as snir

  base = config_files.load(REPO / "configs" / "base.py")
  c = base.get_config()
  model = builders.model(c, seed=0)
  model.eval()
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 4))
  x = jnp.broadcast_to(x, (8,) + x.shape)
  yield "paper_a_spiking_layer", model.spiking, (32, 32, 4), x, False
  yield "paper_a_spiking_layer_unit_r", model.spiking, (32, 32, 4), x, True

  rngs = nnx.Rngs(2)
  chain = [nn.SpikingConv2d(2, 8, 3, neuron_kwargs=dict(
               beta=0.9, threshold=0.5, reset="zero"), rngs=rngs),
           snir.AvgPool2d((2, 2)), snir.Flatten(),
           nnx.Linear(8 * 8 * 8, 10, rngs=rngs),
           nn.LIF(beta=0.8, threshold=0.2, reset="zero")]
  x = 3.0 * jax.random.uniform(jax.random.key(3), (10, 1, 16, 16, 2))
  yield "conv_pool_dense", chain, (16, 16, 2), x, False
  yield "conv_pool_dense_unit_r", chain, (16, 16, 2), x, True


def scnn_jax_side(tmp: pathlib.Path):
  import nir
  import numpy as np

  from scnn_jax.nn import nir as snir
  cases = []
  for name, module, shape, x, unit_r in _networks():
    path = tmp / f"{name}.nir"
    nir.write(path, snir.export(module, shape, dt=DT, unit_r=unit_r))
    y = x
    for layer in (module if isinstance(module, list) else [module]):
      y = layer(y)
    np.savez(tmp / f"{name}.npz", x=np.asarray(x), spikes=np.asarray(y))
    cases.append(name)
  return cases


# -----------------------------------------------------------------------------
# peer side (torch; no jax imported)
# -----------------------------------------------------------------------------


def _run_torch(net, x_nchw, reset):
  import torch
  reset(net)
  outs = []
  with torch.no_grad():
    for x_t in x_nchw:
      out = net(x_t)
      if isinstance(out, tuple):  # (output, state) from some executors
        out = out[0]
      outs.append(out.detach().numpy())
  return outs


def peer_side(tmp: pathlib.Path, cases):
  import warnings

  import nir
  import numpy as np
  import torch
  warnings.filterwarnings("ignore")
  results = {"versions": {}}
  import norse
  import snntorch
  from snntorch import utils as snn_utils
  from snntorch.import_nir import import_from_nir
  results["versions"] = {"torch": torch.__version__,
                         "snntorch": snntorch.__version__,
                         "norse": getattr(norse, "__version__", "?"),
                         "nir": getattr(nir, "__version__", "?")}
  for name in cases:
    data = np.load(tmp / f"{name}.npz")
    x = np.moveaxis(data["x"], -1, 2)          # [T, B, C, H, W]
    want = data["spikes"]
    if want.ndim == 5:
      want = np.moveaxis(want, -1, 2)
    graph = nir.read(tmp / f"{name}.nir")
    row = {"spikes_scnn_jax": int(want.sum()), "entries": int(want.size)}
    for lib in ("snntorch", "norse"):
      try:
        if lib == "snntorch":
          net = import_from_nir(graph)
          got = _run_torch(net, torch.from_numpy(x), snn_utils.reset)
        else:
          import norse.torch as nt
          net = nt.from_nir(graph, dt=DT)
          got = _norse_run(net, torch.from_numpy(x))
        got = np.stack([np.asarray(g).reshape(want.shape[1:]) for g in got])
        row[lib] = {"spikes": int(got.sum()),
                    "differing_entries": int(np.sum(got != want)),
                    "differing_fraction": float(np.mean(got != want))}
      except Exception as e:  # noqa: BLE001 - the failure is the result
        row[lib] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    results[name] = row
  return results


def _norse_run(net, x):
  import torch
  state, outs = None, []
  with torch.no_grad():
    for x_t in x:
      out, state = net(x_t, state)
      outs.append(out.detach().numpy())
  return outs


# -----------------------------------------------------------------------------


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--peer-python",
                  default=str(REPO / ".venv-bench" / "bin" / "python"))
  ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                       "nir_crosscheck.json"))
  ap.add_argument("--peer", help=argparse.SUPPRESS)  # internal: tmp dir
  args = ap.parse_args()
  if args.peer:
    tmp = pathlib.Path(args.peer)
    cases = json.loads((tmp / "cases.json").read_text())
    (tmp / "peer.json").write_text(json.dumps(peer_side(tmp, cases)))
    return
  sys.path.insert(0, str(REPO))
  import jax

  import scnn_jax
  with tempfile.TemporaryDirectory() as d:
    tmp = pathlib.Path(d)
    cases = scnn_jax_side(tmp)
    (tmp / "cases.json").write_text(json.dumps(cases))
    subprocess.run([args.peer_python, __file__, "--peer", str(tmp)],
                   check=True)
    peer = json.loads((tmp / "peer.json").read_text())
  peer["versions"].update(scnn_jax=scnn_jax.__version__,
                          jax=jax.__version__, dt=DT,
                          python=platform.python_version())
  pathlib.Path(args.out).write_text(json.dumps(peer, indent=2) + "\n")
  print(json.dumps(peer, indent=2))


if __name__ == "__main__":
  main()
