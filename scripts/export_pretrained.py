"""Exports a trained inpainting workdir as params only, for shipping.

    python scripts/export_pretrained.py --workdir runs/i18_unet_s0 \
        --out scnn_jax/pretrained/spiking_unet

Writes ``config.json`` and ``params.npz`` (``inference.export_params``),
checks that the written folder restores to the same outputs as the
workdir's checkpoint, and prints the sizes. A run trained with
``train.ema_decay > 0`` exports its moving average of the weights (what it
evaluated; ``inference.load``), not the raw params.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
  from scnn_jax import inference
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  loaded = inference.load(args.workdir)
  shapes = inference.export_params(loaded, args.out)
  again = inference.load_params(args.out)
  rng = np.random.default_rng(0)
  c = int(loaded.config.data.channels)
  image = rng.uniform(size=(2, 40, 48, c)).astype(np.float32)
  mask = np.zeros((2, 40, 48, 1), np.float32)
  mask[:, 10:25, 12:30] = 1
  batch = {"image": image, "mask": mask}
  def predict(loaded):   # jitted: op-by-op the prior's loops are slow
    import jax
    from flax import nnx
    graphdef, state = nnx.split(loaded.model)
    from scnn_jax.models.scnn import masked_input
    mask_channel = loaded.config.model.mask_channel
    fwd = jax.jit(lambda s, b: nnx.merge(graphdef, s)(masked_input(
        b["image"], b["mask"], mask_channel)))
    return np.asarray(fwd(state, batch))

  a, b = predict(loaded), predict(again)
  if not np.array_equal(a, b):
    raise SystemExit(f"exported model differs: max |diff| {np.abs(a - b).max()}")
  size = (Path(args.out) / inference.PARAMS_FILE).stat().st_size
  n = sum(int(np.prod(s)) for s in shapes.values())
  print(f"wrote {args.out}: {len(shapes)} arrays, {n:,} parameters, "
        f"params.npz {size / 1e6:.2f} MB (step {loaded.step}"
        f"{', moving average of the weights' if loaded.ema else ''}); "
        "restores to identical outputs")


if __name__ == "__main__":
  main()
