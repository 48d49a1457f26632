"""python train.py --config configs/vae_mnist5k.py    (2 CPU cores, ~10 min; embedded data)

Paper B's generator on the embedded 5,000-image MNIST subset (4,000 train /
1,000 held out), resized to 32x32: a fully spiking VAE (FSVAE's architecture
and autoregressive Bernoulli latent, ``scnn_jax.models.vae``) with paper B's
TAID image decoder; ``--config.model.image_decoder=fixed_decay`` gives
FSVAE's fixed-decay decoder. T = 16 as in paper B.

CPU-sized against the paper settings (``configs/vae_mnist.py``): conv widths
16/32/64/128 instead of 32/64/128/256, latent 32 instead of 128 (ESVAE's
MNIST latent size), k = 20 kept, batch 32, 800 steps (6.4 epochs of the 4,000
training images) instead of 150 epochs of 60,000. Same optimizer as FSVAE
(AdamW 1e-3, weight decay 1e-3).

FAD needs the FAD autoencoder of this dataset, trained once:

    python -m scnn_jax.fad --config configs/fad_mnist5k.py --workdir runs/fad_mnist5k
    python train.py --config configs/vae_mnist5k.py \
        --config.metrics.fad_workdir=runs/fad_mnist5k

IS / FID need Inception weights (docs/studies/paper_b_generation.md):
``--config.metrics.inception_weights=weights/pt_inception.npz``.
"""

from ml_collections import config_dict

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def vae_fields(c):
  """The generate task's model and metrics fields (paper B / FSVAE)."""
  c.task = "generate"
  c.model = m = config_dict.ConfigDict()
  m.name = "svae"
  m.T = 16                        # paper B / FSVAE
  m.latent = "fsvae"              # fsvae (autoregressive Bernoulli) | esvae
  m.latent_dim = 128
  m.hidden = (32, 64, 128, 256)   # encoder conv widths (decoder mirrors)
  m.k = 20                        # FSVAE: neurons per latent channel
  m.image_decoder = "taid"        # taid (paper B) | fixed_decay (FSVAE)
  m.decay = 0.8                   # fixed_decay: sum_t decay^(T-1-t) X_t
  m.scheduled_sampling = True     # FSVAE's scheduled sampling of the prior
  m.esvae_lambda = 1e-3           # esvae: MMD weight (ESVAE's MNIST config)
  m.conv_impl = "auto"
  # FSVAE's LIF: u_t = 0.25 u_{t-1} (1 - o_{t-1}) + I_t, o_t = [u_t > 0.2],
  # rectangular surrogate of width 1.
  m.neuron = "lif"                # lif | alif
  m.beta = 0.25
  m.tau = config_dict.placeholder(float)
  m.threshold = 0.2
  m.reset = "zero"
  m.detach_reset = False
  m.surrogate = "rectangular"
  m.surrogate_param = 1.0
  m.alif_tau = 2.0                # alif only
  m.adaptation_tau = 20.0
  m.adaptation_increment = 0.0

  c.metrics = k = config_dict.ConfigDict()
  k.fad_workdir = config_dict.placeholder(str)        # python -m scnn_jax.fad
  k.inception_weights = config_dict.placeholder(str)  # converted .npz
  k.sample_seed = 0               # eval latent draws (fixed across evals)
  k.inception_batch_size = 50
  k.inception_splits = 10

  t = c.train
  t.optimizer = "adamw"           # FSVAE: AdamW(lr 1e-3, weight_decay 1e-3)
  t.learning_rate = 1e-3
  t.weight_decay = 1e-3
  t.schedule = "constant"
  t.num_sample_images = 8
  return c


def get_config():
  c = vae_fields(base.get_config())
  m = c.model
  m.latent_dim = 32
  m.hidden = (16, 32, 64, 128)
  d = c.data
  d.source = "embedded"
  d.name = "mnist5k"
  d.image_size = 32               # FSVAE resizes MNIST to 32x32
  d.channels = 1
  d.num_eval = 1000               # all held-out images
  d.train_crop = "center"         # 28 -> 32 is a resize: nothing to crop
  t = c.train
  t.steps = 800
  t.batch_size = 32
  t.eval_batch_size = 200
  t.log_every = 50
  t.eval_every = 400
  t.checkpoint_every = 400
  return c
