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
# # Your first spiking layer
#
# A spiking neuron keeps a membrane potential, adds its input current to it
# at every time step, and emits a spike (a 1) when the potential reaches a
# threshold. In this tutorial you
#
# 1. drive a LIF and an adaptive LIF (ALIF) neuron with a current and plot
#    their membrane and spikes,
# 2. see how a network of them can be trained at all: surrogate gradients,
# 3. train a tiny spiking net on the shipped MNIST subset (seconds),
# 4. train several of them with different membrane time constants in one
#    program with `jax.vmap`,
# 5. export the net to NIR, the format other SNN tools read.
#
# It runs on a laptop CPU in about a minute (`pip install 'scnn_jax[nir]'`
# for part 5).
#
# **Time is axis 0**: every sequence in `scnn_jax` is `[T, ...]`, e.g.
# `[T, B, H, W, C]` for a spiking conv layer; plots put time on the x axis.

# %% tags=["parameters"]
import os

# CI sets SCNN_TUTORIAL_TINY=1 to run this notebook on fewer steps.
TINY = os.environ.get("SCNN_TUTORIAL_TINY", "0") == "1"

# %%
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import nir
import numpy as np
import optax
from flax import nnx

from scnn_jax import layers, neurons, plotting, surrogate
from scnn_jax.data import sources
from scnn_jax.metrics.spikes import spike_rates
from scnn_jax.nn import SpikeRate, SpikingSequential
from scnn_jax.nn import nir as snir
from scnn_jax.runtime import ablation

TRAIN_STEPS = 40 if TINY else 300
T = 4 if TINY else 8                      # time steps per image
TAUS = [2.0, 8.0, 32.0] if TINY else [1.5, 3.0, 6.0, 12.0, 24.0]

# %% [markdown]
# ## 1. A LIF neuron
#
# The leaky integrate-and-fire neuron: `v_t = beta * v_{t-1} + I_t` with
# `beta = exp(-1/tau)` (tau in steps); a spike when `v_t >= threshold`,
# after which `v` drops by the threshold ("subtract" reset). Three neurons
# get a step current of three strengths from step 10 on. Held for long, a
# current `I` takes `v` up to `I / (1 - beta)`: the weakest one (0.08,
# with tau = 10: 0.84) stays below the threshold of 1 and never fires.
#
# `scan` returns the membrane after each step's reset, so a spike shows as a
# drop of the trace (a triangle on top marks it), not as a point above the
# threshold line.

# %%
steps = 100
current = np.zeros((steps, 3), np.float32)          # [T, neurons]
current[10:] = [0.08, 0.12, 0.25]

lif = layers.LIF(tau=10.0, threshold=1.0)
spikes, membrane = lif.scan(jnp.asarray(current))   # both [T, 3]
print("spikes per neuron:", np.asarray(spikes.sum(0)).astype(int))

fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
plotting.membrane_trace(membrane, top, threshold=1.0, spikes=spikes,
                        labels=["I = 0.08", "I = 0.12", "I = 0.25"],
                        title="LIF, tau = 10 steps")
plotting.spike_raster(spikes, bottom)
top.set_xlabel("")                                  # shared with the raster
plt.tight_layout()
plt.show()

# %% [markdown]
# ## An adaptive LIF (ALIF)
#
# In `layers.ALIF` (time constant and threshold are learnable parameters)
# `v` relaxes towards the input (`v += (I - v) / tau`, so a constant `I`
# above the threshold fires) and resets to 0 after a spike. With
# `adaptation=(tau_a, increment)` every spike also raises its threshold by
# `increment`, which decays back with time constant `tau_a`: under a
# constant drive it fires fast, then slower and slower until the two balance
# (spike-frequency adaptation). The layer wraps the pure function
# `neurons.alif_scan`, which can also return the threshold offset `a`.
# In the plot the membrane creeps up towards the drive and the raised
# threshold decays down towards it: the next spike comes where they meet.

# %%
drive = np.zeros((steps, 1), np.float32)
drive[10:] = 1.5
alif = layers.ALIF(tau=3.0, threshold=1.0, adaptation=(30.0, 0.3))
a_spikes, a_membrane = alif.scan(jnp.asarray(drive))
_, _, offset = neurons.alif_scan(
    jnp.asarray(drive), tau=alif.tau, threshold=1.0,
    adaptation=neurons.Adaptation(30.0, 0.3), return_adaptation=True)
times = np.flatnonzero(np.asarray(a_spikes[:, 0]))
print("ALIF spike times:", times.tolist())
print("intervals grow:", np.diff(times).tolist())

ax = plotting.membrane_trace(a_membrane, spikes=a_spikes, labels=["membrane"],
                             title="ALIF under a constant drive")
ax.plot(1.0 + np.asarray(offset[:, 0]), "--", color="C3",
        label="threshold + a")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# ## 2. Surrogate gradients
#
# The spike is a step function of `v - threshold`: its derivative is 0
# everywhere except at the step, so plain backprop would learn nothing.
# `surrogate.spike` keeps the exact step in the forward pass and puts a
# smooth bump, the *surrogate derivative*, in the backward pass. Below,
# `jax.grad` of `surrogate.spike` (dots) is exactly the analytic surrogate
# `surrogate.derivative` (lines), for four kinds.

# %%
x = jnp.linspace(-1.0, 1.0, 401)
kinds = ["fast_sigmoid", "atan", "sigmoid", "triangle"]
fig, (fwd, bwd) = plt.subplots(1, 2, figsize=(11, 3.5))
fwd.plot(x, surrogate.spike(x), "k")
fwd.set_title("forward: spike(v - threshold)")
fwd.set_xlabel("v - threshold")
for kind in kinds:
  grad = jax.grad(lambda u, kind=kind: surrogate.spike(u, kind))
  autodiff = jax.vmap(grad)(x)
  analytic = surrogate.derivative(x, kind)
  assert np.allclose(autodiff, analytic, rtol=1e-6, atol=1e-7), kind
  (line,) = bwd.plot(x, analytic, label=kind)
  bwd.plot(x[::20], autodiff[::20], "o", color=line.get_color(), ms=3)
bwd.set_title("backward: jax.grad (dots) = surrogate (lines)")
bwd.set_xlabel("v - threshold")
bwd.set_yscale("log")
bwd.legend(fontsize="small")
plt.tight_layout()
plt.show()

# %% [markdown]
# Through time the gradient flows along the membrane too: here the
# derivative of the LIF's spike count over 50 steps with respect to its
# constant input current. The count is a staircase of the current; its
# surrogate gradient is not zero, so a loss on spikes can move the weights
# that make the current.

# %%
def spike_count(i):
  s, _ = layers.LIF(tau=10.0, threshold=1.0).scan(jnp.full((50,), i))
  return s.sum()


for i in (0.05, 0.12, 0.3):
  print(f"I = {i:.2f}: {int(spike_count(i))} spikes, "
        f"d count / dI = {float(jax.grad(spike_count)(i)):.1f}")

# %% [markdown]
# ## 3. Train a tiny spiking net
#
# The MNIST subset shipped in the package (5,000 digits, a fixed 4000 / 1000
# split). The net: a spiking conv layer (`SpikingConv2d`, conv then LIF
# neurons, 8 channels, stride 2) sees the digit at each of T steps; a linear
# layer reads its spike train, and the class scores are the mean of its
# output over time. `SpikingSequential` runs the layers over `[T, B, ...]`.
# Reset to zero and a symmetric padding (1 px) make the net exportable to
# NIR (part 5).

# %%
mnist = sources.load_npz(sources.embedded_path("mnist5k.npz"))
train_idx, val_idx = sources.mnist5k_split(mnist["labels"])
# [N, 28, 28, 1] in [0, 1]
images = (mnist["images"][..., None] / 255.0).astype(np.float32)
labels = mnist["labels"]
x_val, y_val = jnp.asarray(images[val_idx]), jnp.asarray(labels[val_idx])


class TinySNN(nnx.Module):
  """``[B, 28, 28, 1]`` digits -> ``[B, 10]`` class scores over T steps."""

  def __init__(self, tau: float, T: int, rngs: nnx.Rngs):
    self.spiking = SpikingSequential([
        layers.SpikingConv2d(1, 8, 3, strides=2, padding=1, rngs=rngs,
                             neuron_kwargs=dict(tau=tau, threshold=1.0,
                                                reset="zero")),
        snir.Flatten(),                              # [T, B, 14 * 14 * 8]
        nnx.Linear(14 * 14 * 8, 10, rngs=rngs),
    ])
    self.T = T

  def __call__(self, x):
    return self.spiking(x, T=self.T).mean(axis=0)   # [T, B, 10] -> [B, 10]


net = TinySNN(tau=5.0, T=T, rngs=nnx.Rngs(0))

# %% [markdown]
# A functional train step: split the module into its trained parameters
# (`nnx.Param`) and the rest (the neurons' beta and threshold, which the
# optimizer leaves alone), take the gradient with respect to the former.

# %%
graphdef, params, rest = nnx.split(net, nnx.Param, ...)
tx = optax.adam(3e-3)


def loss_fn(params, rest, x, y):
  scores = nnx.merge(graphdef, params, rest)(x)
  return optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()


def train_step(params, rest, opt_state, x, y):
  loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def evaluate(params, rest, x, y):
  model = nnx.merge(graphdef, params, rest)
  scores, captured = nnx.capture(model, SpikeRate)(x)
  rate = spike_rates(captured)["spiking/layers/0/neuron"]
  return jnp.mean(jnp.argmax(scores, -1) == y), rate


def batches(seed, n, batch=64):
  rng = np.random.default_rng(seed)
  for _ in range(n):
    i = rng.choice(train_idx, batch, replace=False)
    yield jnp.asarray(images[i]), jnp.asarray(labels[i])


step, evaluate_jit = jax.jit(train_step), jax.jit(evaluate)
opt_state = tx.init(params)
start = time.perf_counter()
losses = []
for x, y in batches(0, TRAIN_STEPS):
  params, opt_state, loss = step(params, rest, opt_state, x, y)
  losses.append(float(loss))
accuracy, rate = evaluate_jit(params, rest, x_val, y_val)
print(f"{TRAIN_STEPS} steps in {time.perf_counter() - start:.1f} s: loss "
      f"{np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}")
print(f"validation accuracy {float(accuracy):.1%}, "
      f"spike rate {float(rate):.3f}")

plt.figure(figsize=(5, 2.5))
plt.plot(losses)
plt.xlabel("train step")
plt.ylabel("loss")
plt.show()

# %% [markdown]
# The trained layer's spikes for one digit: a raster of 40 of its
# 14 x 14 x 8 neurons, time along the x axis. We take the neurons that fire
# at all, from the busiest (bottom) to the quietest (top), every n-th of
# them: the same image at every step makes each neuron fire at its own
# steady rate.

# %%
nnx.update(net, params)
digit = x_val[:1]
train = net.spiking.layers[0](digit, T=T)                 # [T, 1, 14, 14, 8]
flat = np.asarray(train).reshape(T, -1)                   # [T, neurons]
counts = flat.sum(0)
active = np.flatnonzero(counts > 0)
ranked = active[np.argsort(-counts[active], kind="stable")]
shown = ranked[::max(1, len(ranked) // 40)][:40]
print(f"{len(active)} of {flat.shape[1]} neurons fire for this digit")
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3),
                                  gridspec_kw=dict(width_ratios=[1, 3]))
left.imshow(digit[0, ..., 0], cmap="gray")
left.set_title(f"label {int(y_val[0])}")
left.axis("off")
plotting.spike_raster(flat, right, neurons=shown, title="layer 0 spikes")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. A vmap sweep over tau
#
# How does the membrane time constant change what the net learns? Build one
# net per tau (the same initial weights: only beta differs), stack their
# states on a new leading axis (`ablation.stack`) and `jax.vmap` the same
# train step over it: K nets, one compiled program, the same batches. This
# is what `scnn-train` does for `config.ablation.grid = {"model": {"tau":
# [...]}}` (`scnn_jax/runtime/ablation.py`).

# %%
splits = [nnx.split(TinySNN(tau=tau, T=T, rngs=nnx.Rngs(0)), nnx.Param, ...)
          for tau in TAUS]
assert all(g == graphdef for g, _, _ in splits)     # one structure for all
k_params = ablation.stack([p for _, p, _ in splits])   # leaves [K, ...]
k_rest = ablation.stack([r for _, _, r in splits])
k_opt = jax.vmap(tx.init)(k_params)
k_step = jax.jit(jax.vmap(train_step, in_axes=(0, 0, 0, None, None)))
k_eval = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None, None)))

start = time.perf_counter()
for x, y in batches(0, TRAIN_STEPS):
  k_params, k_opt, k_loss = k_step(k_params, k_rest, k_opt, x, y)
k_accuracy, k_rate = k_eval(k_params, k_rest, x_val, y_val)
print(f"{len(TAUS)} nets x {TRAIN_STEPS} steps in "
      f"{time.perf_counter() - start:.1f} s")
for tau, acc, r in zip(TAUS, k_accuracy, k_rate):
  print(f"tau {tau:5.1f}: accuracy {float(acc):.1%}, spike rate {float(r):.3f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(TAUS, k_accuracy, "o-", label="validation accuracy")
ax.plot(TAUS, k_rate, "s--", label="spike rate")
ax.set_xscale("log")
ax.set_xticks(TAUS, [f"{tau:g}" for tau in TAUS])
ax.minorticks_off()
ax.set_xlabel("tau (steps)")
ax.set_ylim(0, 1)
ax.legend()
plt.show()

# %% [markdown]
# Here every step sees the same image and T is short, so expect tau to move
# the spike rate more than the accuracy; time constants matter most when the
# input itself changes over time (event cameras, audio).

# %% [markdown]
# ## 5. Export to NIR
#
# NIR (the Neuromorphic Intermediate Representation) is a graph of
# continuous-time neuron and synapse nodes that snnTorch, norse, spyx, Lava
# and neuromorphic hardware toolchains read. `scnn_jax.nn.nir.export` writes
# the spiking part (conv, LIF, flatten, linear); the mean over time is the
# readout outside the graph. Importing it back gives a module that computes
# the same outputs.

# %%
# The shape of one time step's input, [H, W, C]: no T, no batch.
graph = snir.export(net.spiking, input_shape=(28, 28, 1))
print({name: type(node).__name__ for name, node in graph.nodes.items()})
path = Path(tempfile.mkdtemp()) / "tiny_snn.nir"
nir.write(path, graph)
again = snir.import_(nir.read(path))
sequence = jnp.broadcast_to(x_val[:16], (T,) + x_val[:16].shape)  # [T, B, ...]
ours, theirs = net.spiking(x_val[:16], T=T), again(sequence)
difference = float(jnp.abs(ours - theirs).max())
print(f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KiB); max "
      f"difference after the round trip: {difference:.2e}")
