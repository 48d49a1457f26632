"""Model definitions (Flax NNX). Spiking sequences inside are time-major.

One module per model family: ``scnn`` (paper A's SC-NN and its CNN),
``spiking_decoder`` (paper B's decoders on a spiking output), ``spiking_unet``
(issue 18), ``classifier`` (paper B's MNISTNet / Cifar10Net), ``vae`` (paper
B's spiking VAE), ``fad_autoencoder`` (FAD's feature net). ``registry``
builds one from a config by name.
"""

from scnn_jax.models.scnn import CNN, SCNN  # noqa: F401
from scnn_jax.models.classifier import SpikingClassifier  # noqa: F401
from scnn_jax.models.spiking_decoder import SpikingDecoderSCNN  # noqa: F401
