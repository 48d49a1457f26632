"""scnn_jax: hybrid spiking-convolutional networks in JAX / Flax NNX.

Sequences are TIME-MAJOR everywhere: ``[T, B, H, W, C]``.

    from scnn_jax import surrogate, neurons, layers

The package is layered (docs/explanation/layers.md): ``ops`` (pure
functions) -> ``nn`` (NNX modules) -> ``models``, ``metrics``, ``data`` ->
``config`` -> ``runtime`` -> ``tasks`` -> ``training`` -> ``cli``. The
names above are the library's short user API: ``layers`` is ``scnn_jax.nn``;
``surrogate``, ``neurons``, ``conv`` and ``backend`` are ``scnn_jax.ops``'
modules; ``encoders`` and ``decoders`` ``scnn_jax.nn``'s.
"""

# Before the imports: every module may read it while the package loads.
__version__ = "0.1.0"

from scnn_jax import nn  # noqa: E402
from scnn_jax.nn import decoders, encoders  # noqa: E402,F401
from scnn_jax.nn.variables import NeuronParam, SpikeRate  # noqa: E402,F401
from scnn_jax.ops import backend, conv, neurons, surrogate  # noqa: E402,F401

# The layer API under the name it had before the package was layered.
layers = nn
