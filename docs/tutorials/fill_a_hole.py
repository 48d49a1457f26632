# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fill a hole in a photo with a spiking network
#
# In this tutorial you
#
# 1. cut a hole in a photo,
# 2. fill it with the spiking residual U-Net shipped inside `scnn_jax` (no
#    training),
# 3. compare it with two classical fills, scikit-image's biharmonic
#    inpainting and OpenCV's Telea method, by the PSNR over the hole,
# 4. look inside the net: its spike trains and a membrane potential.
#
# It runs on a laptop CPU in about a minute. You need
# `pip install 'scnn_jax[eval]'` (OpenCV for the Telea baseline). The same
# fill from the command line: `scnn-inpaint --image photo.png --mask
# mask.png --out filled.png`.
#
# **Time in `scnn_jax` is axis 0**: a spike train has shape
# `[T, B, H, W, C]` (T time steps, then batch, height, width, channels).

# %% tags=["parameters"]
import os

# CI sets SCNN_TUTORIAL_TINY=1 to run this notebook on a small crop.
TINY = os.environ.get("SCNN_TUTORIAL_TINY", "0") == "1"

# %%
import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from scipy import ndimage
from skimage import data, draw

from scnn_jax import plotting, pretrained
from scnn_jax.metrics.image import hole_psnr
from scnn_jax.models import baselines
from scnn_jax.models.scnn import masked_input
from scnn_jax.runtime.inpainter import Inpainter

# %% [markdown]
# ## 1. A photo and a hole
#
# Chelsea the cat ships with scikit-image. The model has never seen her: she
# is one of the held-out evaluation photos of the data it was trained on.
# Holes are a boolean mask, `True` = missing. We draw a round hole on the
# forehead and a brush stroke across the cheek.

# %%
photo = data.chelsea()                       # uint8 [H, W, 3]
if TINY:
  photo = photo[60:188, 96:288]              # a 128 x 192 crop: eye and fur
H, W = photo.shape[:2]

holes = np.zeros((H, W), bool)
centre = (int(0.25 * H), int(0.62 * W))      # row, column of the round hole
rr, cc = draw.disk(centre, 0.07 * min(H, W), shape=(H, W))
holes[rr, cc] = True
stroke = np.zeros((H, W), bool)
rr, cc = draw.line(int(0.62 * H), int(0.12 * W), int(0.82 * H), int(0.45 * W))
stroke[rr, cc] = True
holes |= ndimage.binary_dilation(stroke, iterations=max(2, H // 60))
print(f"photo {W}x{H} px, {holes.mean():.1%} of it missing")

shown = photo.copy()
shown[holes] = (255, 0, 255)
plt.figure(figsize=(5, 5 * H / W))
plt.imshow(shown)
plt.title("the hole (magenta)")
plt.axis("off")
plt.show()

# %% [markdown]
# ## 2. Fill it with the shipped spiking net
#
# `pretrained.load()` builds the model from its `config.json` and fills it
# with the shipped weights (what it is, how it was trained and how well it
# does: `MODEL_CARD.md` beside them, in `pretrained.path()`). `Inpainter`
# runs it on an image of any size and returns a uint8 image whose known
# pixels are the photo's, byte for byte. The model first solves a smooth
# (biharmonic) fill of the hole, then a U-Net whose encoder convs are driven
# by the spike trains of adaptive LIF neurons corrects it. The first call
# compiles the model for this image size (seconds); later calls are fast.

# %%
loaded = pretrained.load()
model = loaded.model
print(loaded.config.model.name, "T =", loaded.config.model.T, "time steps")

inpainter = Inpainter(model, loaded.config)
start = time.perf_counter()
filled = inpainter.inpaint(photo, holes)
print(f"filled in {time.perf_counter() - start:.1f} s (with compilation)")
assert np.array_equal(filled[~holes], photo[~holes])   # known pixels kept

# %% [markdown]
# ## 3. Compare with biharmonic and OpenCV Telea
#
# `scnn_jax.models.baselines` wraps `skimage.restoration.inpaint_biharmonic` and
# `cv2.inpaint(..., cv2.INPAINT_TELEA)`, on float images in [0, 1]. We score
# every fill by the PSNR over the hole pixels only (higher is better): PSNR
# over the whole image would mostly measure the pixels nobody changed.
#
# One photo and one hole decide little: fills of thin holes in smooth fur
# are close to each other, and the order of three methods can change with
# the crop. The model card compares them over many held-out crops.

# %%
target = photo / 255.0
fills = {
    "spiking net": filled / 255.0,
    "biharmonic": baselines.biharmonic(target, holes),
    "OpenCV Telea": baselines.opencv_telea(target, holes),
}
psnr = {name: float(hole_psnr(f[None], target[None], holes[None, ..., None]))
        for name, f in fills.items()}
for name, value in psnr.items():
  print(f"hole PSNR {name:>14}: {value:5.2f} dB")

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.4 * H / W + 0.6))
panels = [("original", target)] + list(fills.items())
for ax, (name, image) in zip(axes, panels):
  ax.imshow(np.clip(image, 0, 1))
  ax.contour(holes, levels=[0.5], colors="m", linewidths=0.6)
  ax.set_title(name if name == "original" else f"{name}\n{psnr[name]:.2f} dB")
  ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Inside the net: spike trains
#
# `nnx.capture(model, ..., method_outputs=nnx.Intermediate)` runs the model
# and keeps the output of every method of every submodule. Before each
# stride-2 conv of the encoder sits a norm-and-neurons module,
# `model.down_acts[i]`: it returns the spike train `[T, B, h, w, c]` (**time
# on axis 0**) that drives the conv, and its `norm` returns the input
# current of its neurons. We keep those and let XLA drop the rest of the net.
# (The net pads the image to a multiple of 16 px, so the maps are a little
# larger than the photo divided by 2, 4, 8.)

# %%
x = masked_input(jnp.asarray(target[None], jnp.float32),
                 jnp.asarray(holes[None, ..., None], jnp.float32))


@nnx.jit
def record(model, x):
  _, seen = nnx.capture(model, nnx.Intermediate,
                        method_outputs=nnx.Intermediate)(x)
  acts = seen["down_acts"]
  trains = [acts[i]["__call__"].get_value()[0]
            for i in range(len(model.down_acts))]
  current = acts[1]["norm"]["__call__"].get_value()[0]
  return trains, current


trains, current = record(model, x)
for i, s in enumerate(trains):
  print(f"down_acts[{i}] spikes {tuple(s.shape)} [T, B, h, w, c], "
        f"rate {float(s.mean()):.3f} spikes per neuron per step")

# %% [markdown]
# Where does the net fire? The firing rate (spikes per neuron per step,
# averaged over time and channels) of each of these layers, at its own
# resolution (halved at every scale), on one colour scale. Look for the
# photo's edges and for the hole, which the net is told about through a
# mask channel of its input.

# %%
maps = [np.asarray(s[:, 0].mean(axis=(0, 3))) for s in trains]  # [h, w] each
top = max(float(m.max()) for m in maps)
fig, axes = plt.subplots(1, len(maps), figsize=(12, 2.8 * H / W + 0.6))
for i, (ax, m) in enumerate(zip(axes, maps)):
  im = ax.imshow(m, cmap="magma", vmin=0, vmax=top)
  ax.set_title(f"down_acts[{i}]: {m.shape[0]}x{m.shape[1]}")
  ax.axis("off")
fig.colorbar(im, ax=axes, label="firing rate")
plt.show()

# %% [markdown]
# A spike raster of the neurons (one per channel) of `down_acts[1]` at the
# centre of the round hole: time runs along the x axis, one row per neuron,
# one tick per spike. The net runs only a few time steps (T, printed in
# part 2), so each neuron's message is a count of 0 to T spikes.

# %%
s1 = np.asarray(trains[1][:, 0])                          # [T, h, w, c]
y1, x1 = centre[0] // 2, centre[1] // 2                   # half resolution
plotting.spike_raster(s1[:, y1, x1], title="down_acts[1] at the hole's centre")
plt.show()

# %% [markdown]
# ## 5. A membrane potential
#
# The neurons of a layer are a module of their own (`down_acts[i].neuron`),
# here paper B's adaptive LIF (ALIF) with a learned time constant `tau` and
# threshold per channel: `h_t = v_{t-1} + (I_t - v_{t-1}) / tau`, a spike
# when `h_t` reaches the threshold, after which the membrane `v_t` is reset
# to 0. `neuron.scan(currents)` replays it on the recorded input currents
# `[T, ...]` and returns the spikes and the membrane after each step's
# reset; its spikes are exactly the layer's.
#
# A membrane after its reset never shows the crossing that made the spike,
# so we rebuild the potential before the reset, `h_t`, from the membrane of
# the step before, and plot it minus each neuron's own threshold: a spike
# (a triangle on top) is where the trace is at or above the dashed line at
# 0. Three neurons with different spike counts.

# %%
neuron = model.down_acts[1].neuron
spikes, membrane = neuron.scan(current)                   # [T, 1, h, w, c]
assert bool(jnp.all(spikes == trains[1]))
before = jnp.concatenate([jnp.zeros_like(membrane[:1]), membrane[:-1]])
potential = before + (current - before) / neuron.tau      # h_t, [T, ...]
margin = potential - neuron.threshold[...]                # per channel
here = (slice(None), 0, y1, x1)
counts = np.asarray(spikes[here]).sum(0)
# The first neuron of each of the three highest spike counts.
picks = [int(np.flatnonzero(counts == c)[0])
         for c in sorted(set(counts.tolist()), reverse=True)[:3]]
print("spike counts of the neurons drawn:", counts[picks].astype(int).tolist())
plotting.membrane_trace(margin[here], threshold=0.0, spikes=spikes[here],
                        neurons=picks,
                        title="down_acts[1] neurons at the hole's centre")
plt.ylabel("potential before reset - threshold")
plt.show()

# %% [markdown]
# Next: the tutorial *Your first spiking layer* builds and trains spiking
# layers from scratch; the inpainting how-to guide covers the command line,
# large photos and training your own inpainting model.
