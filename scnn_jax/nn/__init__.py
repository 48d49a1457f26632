"""The layer API: Flax NNX modules. SEQUENCES ARE TIME-MAJOR: ``[T, B, ...]``.

    from scnn_jax import nn                  # also: from scnn_jax import layers
    conv = nn.SpikingConv2d(3, 16, neuron="lif", rngs=nnx.Rngs(params=0))
    spikes = conv(images, T=8)               # [8, B, H, W, 16]

One module per kind of layer, each built on the pure functions of
``scnn_jax.ops``: ``neurons`` (LIF, ALIF, the closed-form staircase),
``conv`` (``Conv2d``, ``SpikingConv2d``, ``ConvTranspose2d``), ``norms``
(tdBN), ``encoders`` / ``decoders`` (image <-> sequence), ``sequential``
(a stack run whole or in chunks), ``variables`` (the variable types vmap
ablations sweep and spike rates are recorded in), ``init`` and ``remat``.
``nir`` (NIR export and import) needs the ``nir`` extra and is imported by
name: ``from scnn_jax.nn import nir``.
"""

from scnn_jax.nn.conv import (NOISE_MODES, NOISE_RESAMPLE,  # noqa: F401
                              ORDERS, Conv2d, ConvTranspose2d, SpikingConv2d,
                              StaticInput)
from scnn_jax.nn.decoders import (DECODERS, TAID,  # noqa: F401
                                  FixedDecayDecoder, MembraneReadout,
                                  RateDecoder, make_decoder)
from scnn_jax.nn.encoders import (ENCODERS, DirectEncoder,  # noqa: F401
                                  RateEncoder, make_encoder)
from scnn_jax.nn.init import dense, lecun_normal_np  # noqa: F401
from scnn_jax.nn.neurons import (ALIF, LIF, NEURONS,  # noqa: F401
                                 LIFStaircase, make_neuron, resolve_unroll)
from scnn_jax.nn.norms import BatchNorm  # noqa: F401
from scnn_jax.nn.remat import captures_hidden, checkpointed  # noqa: F401
from scnn_jax.nn.sequential import (Lambda, SpikingSequential,  # noqa: F401
                                    Upsample2d)
from scnn_jax.nn.variables import NeuronParam, SpikeRate, assign  # noqa: F401
