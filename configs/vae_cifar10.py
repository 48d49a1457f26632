"""python train.py --config configs/vae_cifar10.py    (GPU/TPU; TFDS cifar10)

Paper B's CIFAR-10 generation setting (paper B: FSVAE IS / FID / FAD
2.94 / 175.5 / 133.9 -> with TAID 3.53 / 171.1 / 120.5): FSVAE's
NetworkConfigs/CIFAR10.yaml, i.e. ``configs/vae_mnist.py`` with 3 channels
(32x32, widths 32/64/128/256, latent 128, k = 20, T = 16, 150 epochs).

Differences: batch 256 (FSVAE 250); no random horizontal flip (FSVAE's
training transform has one; the data pipeline has no flip). FAD autoencoder:
``configs/fad_cifar10.py`` (latent 128).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
vae_mnist = sibling(__file__, "vae_mnist")
vae_mnist5k = sibling(__file__, "vae_mnist5k")


def get_config():
  c = vae_mnist5k.vae_fields(base.get_config())
  vae_mnist.tfds_data(c, "cifar10", channels=3)
  return vae_mnist.paper_train(c, num_train=50000)
