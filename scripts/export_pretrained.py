"""Exports a trained inpainting workdir as params only, for shipping.

    python scripts/export_pretrained.py --workdir runs/inpaint_unetft_s0 \
        --out scnn_jax/pretrained/spiking_resunet
    python scripts/export_pretrained.py --params old_export/ --out new/
        # an older export (params.npz) rewritten as params.safetensors

Writes ``config.json`` and ``params.safetensors``
(``inference.export_params``; a ``params.npz`` left in ``--out`` by an older
export is removed, other files such as ``MODEL_CARD.md`` stay; with
``--params`` the source's ``config.json`` is copied as it is), checks that
the written folder restores to the same outputs as its source, and prints
the sizes. A run trained with ``train.ema_decay > 0`` exports its moving
average of the weights (what it evaluated; ``inference.load``), not the raw
params.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
  from scnn_jax.runtime import inference
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir", help="a training workdir (checkpoint)")
  source.add_argument("--params", help="a params-only export folder "
                      "(params.safetensors or an older params.npz)")
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  source_config = None
  if args.workdir:
    loaded = inference.load(args.workdir)
  else:
    loaded = inference.load_params(args.params)
    # Kept as written: the reader completes missing fields the same way.
    source_config = (Path(args.params) / "config.json").read_text()
  rng = np.random.default_rng(0)
  c = int(loaded.config.data.channels)
  image = rng.uniform(size=(2, 40, 48, c)).astype(np.float32)
  mask = np.zeros((2, 40, 48, 1), np.float32)
  mask[:, 10:25, 12:30] = 1
  batch = {"image": image, "mask": mask}

  def predict(loaded):   # jitted: op-by-op the prior's loops are slow
    import jax
    from flax import nnx

    from scnn_jax.models.scnn import masked_input
    graphdef, state = nnx.split(loaded.model)
    mask_channel = loaded.config.model.mask_channel
    fwd = jax.jit(lambda s, b: nnx.merge(graphdef, s)(masked_input(
        b["image"], b["mask"], mask_channel)))
    return np.asarray(fwd(state, batch))

  a = predict(loaded)    # before --out is written: it may be --params
  shapes = inference.export_params(loaded, args.out)
  if source_config is not None:
    (Path(args.out) / "config.json").write_text(source_config)
  b = predict(inference.load_params(args.out))
  if not np.array_equal(a, b):
    raise SystemExit(
        f"exported model differs: max |diff| {np.abs(a - b).max()}")
  size = (Path(args.out) / inference.PARAMS_FILE).stat().st_size
  n = sum(int(np.prod(s)) for s in shapes.values())
  print(f"wrote {args.out}: {len(shapes)} arrays, {n:,} parameters, "
        f"{inference.PARAMS_FILE} {size / 1e6:.2f} MB (step {loaded.step}"
        f"{', moving average of the weights' if loaded.ema else ''}); "
        "restores to identical outputs")


if __name__ == "__main__":
  main()
