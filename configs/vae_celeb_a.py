"""python train.py --config configs/vae_celeb_a.py    (GPU/TPU; TFDS celeb_a)

Paper B's CelebA generation setting (paper B: FSVAE IS / FID / FAD
3.69 / 101.6 / 112.9 -> with TAID 4.31 / 99.54 / 105.3): FSVAE's
NetworkConfigs/CelebA.yaml, "FSVAE_large": 64x64 images, conv widths
32/64/128/256/512, latent 128, k = 20, T = 16, 150 epochs.

Differences: batch 256 (FSVAE 250); framing: FSVAE centre-crops 148x148 of
the 178x218 photos before resizing to 64 (a face close-up), the data
pipeline resizes the shorter side to 64 and centre-crops (the whole width of
the photo, more background); no random horizontal flip. Metrics on 10,000
test images. FAD autoencoder: ``configs/fad_celeb_a.py`` (FSVAE's AELarge,
latent 128).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
vae_mnist = sibling(__file__, "vae_mnist")
vae_mnist5k = sibling(__file__, "vae_mnist5k")


def get_config():
  c = vae_mnist5k.vae_fields(base.get_config())
  c.model.hidden = (32, 64, 128, 256, 512)
  vae_mnist.tfds_data(c, "celeb_a", image_size=64, channels=3)
  return vae_mnist.paper_train(c, num_train=162770)
