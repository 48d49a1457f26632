"""python train.py --config configs/base.py    (3.5 min on 2 quiet CPU cores)

Paper A's SC-NN (one SpikingConv2d with LIF neurons, then five Conv2d; all
3x3, stride 1) inpainting 32x32 natural-image patches from the embedded
dataset shipped with the repo: no download, CPU is enough. Masks are 1-2
boxes covering 5-20 % of the patch. Every field can be overridden, e.g.
``--config.model.name=cnn`` for the baseline or ``--config.train.steps=200``.

Choices paper A leaves open, made here: width 32 (paper: not given), T = 8
steps with direct encoding, rate decoding of the spikes (mean over T), the
mask as an extra input channel, a sigmoid output for [0, 1] images, LIF with
tau 40 steps (paper: tau_m 40 ms at dt 1 ms, i.e. beta = exp(-1/40)),
threshold 1 and reset to zero (paper's V_reset 0), multiplicative training
noise N(1, 0.1) drawn once per image and held over the T steps (paper A lists
a noise time constant of 10 ms, longer than T steps of 1 ms), fast-sigmoid
surrogate of slope 25 (paper names none), and no refractory period (paper A
lists 1 ms: ``--config.model.refractory_steps=1``, which caps the rate at
1/2). With a current constant over T the spiking layer's rate is a fixed
5-level staircase of the conv output (docs/studies/quantiser.md).

Those choices are the schema's defaults (``scnn_jax/config/schema.py``; every
field with its default and meaning: docs/reference/config.md): this file
sets only what the schema leaves to the config, and the configs that extend
it what they change.
"""

from scnn_jax.config import schema


def get_config():
  # Every field the SC-NN reads, at its default: any of them can be
  # overridden (--config.model.tau=20).
  c = schema.defaults("inpaint", "scnn")
  m = c.model
  m.width = 32                    # channels of every hidden conv
  m.num_layers = 6                # 1 spiking + 5 ordinary convs (paper A)
  m.T = 8                         # time steps of the spiking layer
  m.threshold = 1.0               # firing threshold of the membrane

  d = c.data
  d.source = "embedded"           # shipped with the package: no download
  d.name = "natural"              # 32 px patches of natural photos
  d.image_size = 32
  d.channels = 3
  d.num_eval = 256                # size of the fixed eval set

  t = c.train
  t.steps = 1500
  t.batch_size = 32               # global; per device = batch_size / devices
  t.eval_batch_size = 64
  return c
