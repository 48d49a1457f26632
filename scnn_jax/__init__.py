"""scnn_jax: hybrid spiking-convolutional networks in JAX / Flax NNX.

Sequences are TIME-MAJOR everywhere: ``[T, B, H, W, C]``.

    from scnn_jax import surrogate, neurons, layers
"""

from scnn_jax import backend, conv, decoders, encoders, layers, neurons, surrogate  # noqa: F401
from scnn_jax.variables import NeuronParam, SpikeRate  # noqa: F401

__version__ = "0.1.0"
