"""python train.py --config configs/relu_resunet.py

The non-spiking twin of ``configs/spiking_resunet.py``: the same residual
U-Net on a biharmonic prior (``scnn_jax/models/resunet.py``) with ReLU where
the spiking net has neurons, no time axis; same data, masks, loss and
budget. It is the control row of every spiking-inpainting table.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def get_config():
  c = base.get_config()
  m = c.model
  m.name = "relu_resunet"
  resunet_model(c)
  resunet_training(c)
  return c


def resunet_model(c):
  """The architecture shared by the spiking net and its twin."""
  m = c.model
  m.width = 16                    # channels at full resolution (x2 per scale, max x8)
  m.depth = 4                     # stride-2 blocks: the net works down to H/16
  m.blocks = 1                    # residual blocks per scale
  m.norm = "batch"                # tdBN while training, an affine map at inference
  m.noise_std = 0.0
  m.prior_order = 2               # 2: biharmonic, 1: harmonic
  m.prior_iters = 24              # CG steps per pyramid level


def resunet_training(c):
  """Data, masks, loss and budget shared by the spiking net and its twin."""
  d = c.data
  d.name = "openphotos"
  d.image_size = 128
  d.num_eval = 48
  d.dead_leaves_mix = 0.25        # a quarter of the crops: procedural dead leaves
  k = c.masks
  k.kind = "mixed"                # boxes or brush strokes
  k.stroke_fraction = 0.5
  k.ratio_min = 0.03
  k.ratio_max = 0.25
  k.max_boxes = 2
  t = c.train
  t.steps = 2000
  t.batch_size = 8
  t.learning_rate = 1e-3
  t.schedule = "cosine"
  t.warmup_steps = 100
  t.grad_clip = 1.0
  t.loss = "log_mse"              # per image, from step 0: = -hole PSNR
  t.ema_decay = 0.998
  t.log_every = 50
  t.eval_every = 500
  t.eval_batch_size = 16
  t.checkpoint_every = 250
