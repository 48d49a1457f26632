"""python -m scnn_jax.fad --config configs/fad_celeb_a.py --workdir runs/fad_celeb_a

The FAD autoencoder for configs/vae_celeb_a.py (FSVAE's main_ann_ae.py:
ann_ae.AELarge, latent 128, AdamW 1e-3, batch 250 -> 256, 150 epochs) on
TFDS celeb_a at 64x64. Reference statistics: the held-out (test) images.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
fad_mnist5k = sibling(__file__, "fad_mnist5k")
vae_mnist = sibling(__file__, "vae_mnist")


def get_config():
  c = fad_mnist5k.fad_fields(base.get_config(), latent_dim=128)
  vae_mnist.tfds_data(c, "celeb_a", image_size=64, channels=3)
  return vae_mnist.paper_train(c, num_train=162770)
