"""Variable types scnn_jax adds to Flax NNX's (filter with them in nnx.state),
and the write of a variable that also works inside the trainer's step."""

from flax import errors, nnx


class NeuronParam(nnx.Variable):
  """A neuron parameter that the optimizer leaves alone but ablations sweep.

  LIF's beta and threshold, surrogate slopes and the noise std are stored as
  ``NeuronParam``: arrays in the model state, so ``jax.vmap`` over stacked
  states trains models with different values in one program.
  """


class SpikeRate(nnx.Intermediate):
  """Mean firing rate (spikes per neuron per step) sown by a spiking module."""


def assign(module: nnx.Module, name: str, value) -> None:
  """``module.<name>[...] = value`` that also works in the trainer's step.

  The trainer merges the model inside its differentiated loss from state
  created one trace level up; NNX refuses to mutate such variables
  (``TraceContextError``). The module itself belongs to the current trace, so
  the attribute is then rebound to a fresh variable of the same type, which
  ``nnx.state(model)`` (what the trainer carries forward) returns.
  """
  var = getattr(module, name)
  try:
    var[...] = value
  except errors.TraceContextError:
    setattr(module, name, type(var)(value, **var.get_metadata()))
