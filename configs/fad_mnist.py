"""python -m scnn_jax.fad --config configs/fad_mnist.py --workdir runs/fad_mnist

The FAD autoencoder for configs/vae_mnist.py (FSVAE's main_ann_ae.py:
ann_ae.AE, latent 64, AdamW 1e-3, batch 250 -> 256, 150 epochs) on
TFDS mnist at 32x32. Reference statistics: the held-out (test) images.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
fad_mnist5k = sibling(__file__, "fad_mnist5k")
vae_mnist = sibling(__file__, "vae_mnist")


def get_config():
  c = fad_mnist5k.fad_fields(base.get_config(), latent_dim=64)
  vae_mnist.tfds_data(c, "mnist", image_size=32, channels=1)
  return vae_mnist.paper_train(c, num_train=60000)
