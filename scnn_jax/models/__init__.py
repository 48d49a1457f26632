"""Model definitions (Flax NNX). Spiking sequences inside are time-major."""

from scnn_jax.models.inpainting import CNN, SCNN  # noqa: F401
from scnn_jax.models.classifier import SpikingClassifier  # noqa: F401
from scnn_jax.models.spiking_inpainting import SpikingDecoderSCNN  # noqa: F401
