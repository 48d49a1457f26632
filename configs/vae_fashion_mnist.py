"""python train.py --config configs/vae_fashion_mnist.py    (GPU/TPU; TFDS)

``configs/vae_mnist.py`` on Fashion-MNIST (FSVAE's NetworkConfigs/
FASHION.yaml: the same network and training). FAD autoencoder:
``configs/fad_fashion_mnist.py``.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
vae_mnist = sibling(__file__, "vae_mnist")
vae_mnist5k = sibling(__file__, "vae_mnist5k")


def get_config():
  c = vae_mnist5k.vae_fields(base.get_config())
  vae_mnist.tfds_data(c, "fashion_mnist")
  return vae_mnist.paper_train(c, num_train=60000)
