# %% [markdown]
# # scnn_jax in five minutes (runs on a laptop CPU in under a minute)
#
#     pip install .            # once; or from a clone: PYTHONPATH=. python ...
#     python examples/walkthrough.py [--workdir runs/walkthrough]
#
# A script in cells (`# %%`): VS Code and Jupytext open it as a notebook.
# CI runs it (tests/test_examples.py). It
#
# 1. builds a spiking conv layer and looks at its spikes,
# 2. trains paper A's SC-NN (small) for a few hundred steps,
# 3. inpaints an image with the trained checkpoint,
# 4. trains three SC-NNs with different membrane time constants in ONE
#    compiled program (a vmap sweep).
#
# Sequences are TIME-MAJOR: `[T, B, H, W, C]`.

# %%
import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scnn_jax import layers, neurons
from scnn_jax.config import files as config_files
from scnn_jax.training import trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
base = config_files.load(REPO / "configs" / "base.py")  # configs/base.py


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", default="runs/walkthrough")
  return p.parse_args(argv)


# %% [markdown]
# ## 1. A spiking layer
# `SpikingConv2d` = conv, then LIF neurons over T steps. A static image with
# `T=` is fed at every step (direct encoding; the conv runs once).

# %%
def spiking_layer_demo():
  layer = layers.SpikingConv2d(
      3, 8, 3, neuron_kwargs=dict(tau=10.0, threshold=1.0, reset="zero"),
      rngs=nnx.Rngs(0))
  image = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))  # [B, H, W, C]
  spikes = layer(2.0 * image, T=8)                               # [T, B, H, W, 8]
  print(f"spikes {spikes.shape}, rate {float(spikes.mean()):.3f} per neuron "
        "per step")
  # The neuron dynamics are plain functions of arrays: v_t = beta v + I_t.
  s, v = neurons.lif_scan(jnp.full((6,), 0.4), beta=0.9, threshold=1.0,
                          reset="zero")
  print("one LIF neuron, constant input 0.4: spikes", s.astype(int).tolist(),
        "membrane", [round(float(x), 3) for x in v])
  return float(spikes.mean())


# %% [markdown]
# ## 2. Train paper A's SC-NN (small) for 300 steps
# The same config the command line uses (`scnn-train --config
# configs/base.py`), made small: width 8, T = 4, 16x16 patches. The workdir
# gets checkpoints, metrics.jsonl, TensorBoard events and a profile of steps
# 200-201 (`train.profile_steps`; open it with TensorBoard or XProf).

# %%
def small_config(steps):
  c = base.get_config()
  c.model.width, c.model.T = 8, 4
  c.data.image_size, c.data.num_eval = 16, 32
  t = c.train
  t.steps, t.batch_size, t.eval_batch_size = steps, 16, 32
  t.log_every, t.eval_every, t.checkpoint_every = 100, steps, steps
  t.num_sample_images = 4
  return c


def train_demo(workdir):
  c = small_config(300)
  c.train.profile_steps = (200, 202)
  summary = trainer.train_and_evaluate(c, workdir)
  records = [json.loads(line) for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in records if r["kind"] == "train"]
  print(f"train loss {losses[0]:.4f} (first 100 steps) -> {losses[-1]:.4f} "
        "(last 100)")
  e, b = summary["eval"], summary["baselines"]
  print(f"held-out hole PSNR: SC-NN {e['hole_psnr']:.2f} dB, mean fill "
        f"{b['mean_fill']['hole_psnr']:.2f} dB, biharmonic "
        f"{b['biharmonic']['hole_psnr']:.2f} dB")
  return summary, losses


# %% [markdown]
# ## 3. Inpaint an image with the checkpoint
# `inference.load` rebuilds the model from the workdir; `Inpainter` runs it on
# an image of any size (tiled if large). Here a 48x48 crop of a training photo
# with a box hole (`scnn-inpaint --workdir ... --image ... --mask ...` does the
# same from the command line).

# %%
def inpaint_demo(workdir):
  from PIL import Image

  from scnn_jax.runtime import inference, inpainter
  loaded = inference.load(workdir)
  with np.load(REPO / "scnn_jax" / "data" / "embedded" / "natural.npz") as f:
    pixels = f["astronaut"][100:148, 150:198]                  # uint8 [48, 48, 3]
  holes = np.zeros(pixels.shape[:2], bool)
  holes[18:28, 20:30] = True
  out = inpainter.Inpainter(loaded.model, loaded.config).inpaint(pixels, holes)
  Image.fromarray(out).save(workdir / "inpainted.png")
  err = lambda a: float(np.mean((a[holes] / 255.0 - pixels[holes] / 255.0)**2))
  mean_fill = pixels.copy()
  mean_fill[holes] = pixels[~holes].mean(axis=0).astype(np.uint8)
  print(f"hole MSE: SC-NN {err(out):.5f}, mean fill {err(mean_fill):.5f}; "
        f"known pixels unchanged: {bool(np.all(out[~holes] == pixels[~holes]))}")
  return err(out), err(mean_fill)


# %% [markdown]
# ## 4. A vmap sweep: three membrane time constants in one program
# `config.ablation.grid` stacks K model states and vmaps the train step; all
# points see the same batches. The workdir gets ablation.csv / ablation.md.

# %%
def sweep_demo(workdir):
  c = small_config(60)
  c.ablation.grid = {"model": {"tau": [2.0, 10.0, 40.0]}}
  summary = trainer.train_and_evaluate(c, workdir)
  for p in summary["points"]:
    print(f"{p['name']:>8}: hole PSNR {p['eval']['hole_psnr']:.2f} dB, spike "
          f"rate {np.mean(list(p['eval']['spike_rate'].values())):.3f}")
  return summary


# %%
def main(argv=None):
  args = parse_args(argv)
  root = pathlib.Path(args.workdir).absolute()
  rate = spiking_layer_demo()
  summary, losses = train_demo(root / "train")
  hole_mse = inpaint_demo(root / "train")
  sweep = sweep_demo(root / "sweep")
  return {"rate": rate, "summary": summary, "losses": losses,
          "hole_mse": hole_mse, "sweep": sweep}


if __name__ == "__main__":
  main(sys.argv[1:])
