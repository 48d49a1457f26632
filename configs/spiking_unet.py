"""python train.py --config configs/spiking_unet.py    (2 CPU cores)

A spiking U-Net that corrects a biharmonic fill (``model.name =
"spiking_unet"``, ``scnn_jax/models/spiking_unet.py``): the masked image's
biharmonic fill is computed in JAX (``scnn_jax/ops/smooth_fill.py``: fixed
coarse-to-fine conjugate-gradient steps, so it runs on CPU, GPU and TPU),
and the net predicts a correction of it on the hole pixels. The encoder is
spiking: ``depth`` 3x3 stride-2 SpikingConv2d layers (LIF) and one more at
the coarsest scale, each driven by the spike train of the layer before it;
the decoder reads each scale's spike rate through U-Net skips.

Time matters here (unlike paper A's SC-NN in configs/base.py, whose one
layer sees a constant current with tau 40 >> T 8): tau = T = 4 steps,
reset by subtraction, threshold 0.25 (at 1.0 the initial net is silent
below the first layer: 0-1 % spikes; at 0.25 15-30 %), so the first layer's spike trains are periodic with a
phase set by the current and every later layer integrates a current that
changes at every step, with a leak that forgets within the sequence.

Data: the embedded ``photos`` set (11 scikit-image photos, split by photo:
9 train, chelsea / coffee / gravel held out), 64 x 64 augmented crops
(scale 0.5-1, flips, 90-degree turns), box holes of 3-15 % of the crop (1-3
boxes: a box side up to ~1/3 of the crop), batch 8. Adam 1e-3 with a cosine
decay. ``configs/scnn_photos.py`` trains paper A's SC-NN and the CNN on the
same data, masks and batch for the comparison.

``scripts/inpaint_eval.py`` scores the trained model at 64 and 128 px with
box and stroke holes against biharmonic inpainting (docs/how-to/inpaint.md).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def get_config():
  c = base.get_config()
  m = c.model
  m.name = "spiking_unet"
  m.width = 16                    # channels at full resolution (x2 per scale, max x4)
  m.depth = 3                     # stride-2 spiking layers: the net works at H/8
  m.bottleneck_layers = 1         # extra spiking layers at H/8
  m.T = 4                         # 8 doubles the step time (1.28 vs 0.63 s, batch 16, loaded CPU)
  m.neuron = "lif"
  m.tau = 4.0                     # = T: the membrane forgets within the sequence
  m.reset = "subtract"
  m.threshold = 0.25
  m.noise_std = 0.0               # no training noise
  m.prior_order = 2               # 2: biharmonic, 1: harmonic
  m.prior_iters = 24              # CG steps per pyramid level
  photos_data(c)
  return c


def photos_data(c):
  """Data, masks and batch shared with configs/scnn_photos.py."""
  d = c.data
  d.name = "photos"
  d.image_size = 64
  d.num_eval = 96
  k = c.masks
  k.kind = "box"
  k.ratio_min = 0.03
  k.ratio_max = 0.15
  k.max_boxes = 3
  t = c.train
  t.steps = 1000
  t.batch_size = 8                # 16 ran at 0.5 steps/s on the shared 2-core CPU
  t.learning_rate = 1e-3
  t.schedule = "cosine"
  t.warmup_steps = 50
  t.grad_clip = 1.0
  t.loss = "mse"                  # mse (pooled over the batch) | log_mse (per image, = -hole PSNR)
  t.log_every = 50
  t.eval_every = 100               # the quality-vs-time curve
  t.eval_batch_size = 48
  t.checkpoint_every = 100
