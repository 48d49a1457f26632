"""python -m scnn_jax.fad --config configs/fad_mnist5k.py --workdir runs/fad_mnist5k

The FAD autoencoder (FSVAE's ann_ae.AE: 4 x [conv 3x3 s2 + BN + LeakyReLU],
32/64/128/256 channels, linear to a 64-d code; MSE; AdamW 1e-3) on the
embedded MNIST 5k at 32x32, the data of ``configs/vae_mnist5k.py``. A few
minutes on CPU. Its workdir is reused by every generation run that names it
(``--config.metrics.fad_workdir``); the held-out latent statistics go to
``fad_reference.npz`` there.
"""

from ml_collections import config_dict

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def fad_fields(c, latent_dim=64):
  c.task = "fad_autoencoder"
  c.model = m = config_dict.ConfigDict()
  m.name = "fad_ae"
  m.latent_dim = latent_dim       # FSVAE: 64 (MNIST, Fashion), 128 (CIFAR, CelebA)
  m.hidden = ()                   # () = FSVAE's widths for data.image_size
  m.conv_impl = "auto"
  t = c.train
  t.optimizer = "adamw"           # FSVAE's main_ann_ae.py: AdamW(lr 1e-3)
  t.learning_rate = 1e-3
  t.weight_decay = 1e-2           # AdamW's PyTorch default
  t.schedule = "constant"
  t.num_sample_images = 8
  return c


def get_config():
  c = fad_fields(base.get_config(), latent_dim=64)
  d = c.data
  d.source = "embedded"
  d.name = "mnist5k"
  d.image_size = 32
  d.channels = 1
  d.num_eval = 1000
  d.train_crop = "center"
  t = c.train
  t.steps = 1500                  # 12 epochs of the 4,000 training images
  t.batch_size = 32
  t.eval_batch_size = 200
  t.log_every = 100
  t.eval_every = 500
  t.checkpoint_every = 500
  return c
