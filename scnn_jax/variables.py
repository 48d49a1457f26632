"""Variable types scnn_jax adds to Flax NNX's (filter with them in nnx.state)."""

from flax import nnx


class NeuronParam(nnx.Variable):
  """A neuron parameter that the optimizer leaves alone but ablations sweep.

  LIF's beta and threshold, surrogate slopes and the noise std are stored as
  ``NeuronParam``: arrays in the model state, so ``jax.vmap`` over stacked
  states trains models with different values in one program.
  """


class SpikeRate(nnx.Intermediate):
  """Mean firing rate (spikes per neuron per step) sown by a spiking module."""
