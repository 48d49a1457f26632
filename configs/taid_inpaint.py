"""python train.py --config configs/taid_inpaint.py   (2 CPU cores, minutes)

Paper B's decoder question on inpainting: a spiking network whose output is
a real-valued SEQUENCE [T, B, H, W, C] (``model.name="spiking_decoder"``,
``scnn_jax/models/spiking_decoder.py``), turned into the image by the
decoder named in ``model.decoder``:

* ``rate``: mean over T;
* ``fixed_decay``: FSVAE's ``sum_t 0.8^(T-1-t) X_t``;
* ``taid``: paper B's learned temporal attention (T x T matrix, sigmoid
  weights from the spatial means of each step);

(each followed by the sigmoid output, see the model's docstring). The
table in docs/studies/paper_b.md (scripts/paper_b_tables.py) trains this
config with each decoder and ``--config.model.name=cnn`` (the same widths and depth without
spikes, run once) for the same number of steps.

Sized for 2 CPU cores: 4 convs (3 spiking conv + ALIF layers, then the last
conv at every step), width 16, T = 8, batch 16, on the embedded 32x32
natural patches with paper A's box masks (5-20 % of the patch). Neurons: paper
B's ALIF (tau 2 and threshold 0.5 learned, ATan surrogate), no training
noise (the comparison is about decoders).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")

STEPS = 800


def get_config():
  c = base.get_config()
  m = c.model
  m.name = "spiking_decoder"      # spiking_decoder | cnn (baseline row)
  m.decoder = "taid"              # rate | fixed_decay | taid | membrane
  m.width = 16
  m.num_layers = 4
  m.spiking_layers = 3            # all hidden layers spiking
  m.T = 8
  m.neuron = "alif"
  m.alif_tau = 2.0
  m.threshold = 0.5
  m.surrogate = "atan"
  m.surrogate_param = 2.0
  m.noise_std = 0.0
  t = c.train
  t.steps = STEPS
  t.batch_size = 16
  t.eval_batch_size = 64
  t.log_every = 100
  t.eval_every = 400
  t.checkpoint_every = 400
  return c
