"""python train.py --config configs/vae_mnist.py    (GPU/TPU; TFDS mnist)

Paper B's generation setting on MNIST: FSVAE (Kamata et al. AAAI 2022, its
public NetworkConfigs/MNIST.yaml) with paper B's TAID image decoder: 32x32
images (MNIST resized), conv widths 32/64/128/256, latent 128, k = 20,
T = 16, FSVAE's LIF and tdBN, autoregressive Bernoulli prior with scheduled
sampling, loss = MSE + FSVAE's MMD, AdamW (lr 1e-3, weight decay 1e-3),
150 epochs. ``--config.model.image_decoder=fixed_decay`` is FSVAE itself.

Differences: batch 256 instead of 250 (divisible by 8-device hosts), so 150
epochs are 35,200 steps; metrics on the first 10,000 test images (all), one
prior sample per held-out image. Needs the TFDS dataset prepared (``tfds
build mnist`` once, or ``--config.data.tfds_download=True``), and for FAD the
autoencoder of ``configs/fad_mnist.py``:

    python -m scnn_jax.fad --config configs/fad_mnist.py --workdir runs/fad_mnist
    python train.py --config configs/vae_mnist.py \\
        --config.metrics.fad_workdir=runs/fad_mnist \\
        --config.metrics.inception_weights=weights/pt_inception.npz
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
vae_mnist5k = sibling(__file__, "vae_mnist5k")


def tfds_data(c, name, *, image_size=32, channels=1, num_eval=10000,
              eval_split="test"):
  d = c.data
  d.source = "tfds"
  d.name = name
  d.image_size = image_size
  d.channels = channels
  d.train_split = "train"
  d.eval_split = eval_split
  d.num_eval = num_eval
  d.train_crop = "center"         # FSVAE resizes, it does not crop at random
  return c


def paper_train(c, *, num_train, epochs=150, batch_size=256):
  t = c.train
  steps_per_epoch = num_train // batch_size
  t.batch_size = batch_size
  t.steps = int(round(epochs * num_train / batch_size, -2))
  t.eval_batch_size = 512
  t.log_every = 200
  t.eval_every = 10 * steps_per_epoch
  t.checkpoint_every = 2 * steps_per_epoch
  return c


def get_config():
  c = vae_mnist5k.vae_fields(base.get_config())
  tfds_data(c, "mnist")
  return paper_train(c, num_train=60000)
