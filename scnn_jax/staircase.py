"""LIF neurons solved in closed form for a current constant over time.

``LIFStaircase`` is a drop-in neuron for ``layers.SpikingConv2d`` whose
sequence call returns the exact spike train ``[T, B, ..., C]`` (TIME FIRST) of
``layers.LIF`` with reset to zero, computed without a scan from the current
of the FIRST step (``neurons.lif_constant_current``). It is exact wherever
that current is the same at every step and the neurons start at rest: paper
A's SC-NN with direct encoding and its training noise off or held over T
(``noise_resample="sequence"``), i.e. ``configs/base.py``. There its firing
rate is a fixed staircase of the conv output, and the SC-NN is a CNN whose
first activation is that quantiser: ``model.neuron_solver="staircase"``
trains exactly that network (same forward pass, the surrogate derivative at
each step of the staircase backward) to test whether the spiking layer does
anything else (docs/studies/quantiser.md).

It has no per-step contract (``step`` raises): a time-varying input
(Bernoulli encoding, noise drawn per step) or a chunked sequence needs the
scan, and the task refuses those configs.
"""

from __future__ import annotations

from scnn_jax import layers, neurons


class LIFStaircase(layers.LIF):
  """``layers.LIF`` (reset to zero) for an input constant over T, closed form.

  Same parameters and state layout as ``layers.LIF``, so checkpoints, vmap
  ablations and spike-rate recording work unchanged. ``run(currents, state)``
  ignores ``currents[1:]`` and ``state`` (it assumes rest) and returns
  ``(spikes, None)``: there is no final membrane to continue from.
  """

  def __init__(self, *, reset="zero", **kwargs):
    if reset != "zero":
      raise ValueError("LIFStaircase is the closed form for reset='zero' "
                       f"only, got reset={reset!r}")
    super().__init__(reset=reset, **kwargs)

  def _closed_form(self, currents):
    kw = self._kwargs()
    return neurons.lif_constant_current(
        currents[0], len(currents), beta=kw["beta"],
        threshold=kw["threshold"], refractory_steps=self.refractory_steps,
        surrogate=self.surrogate, surrogate_param=kw["surrogate_param"])

  def run(self, currents, state=None):
    del state  # from rest, by construction
    return self._closed_form(currents), None

  def scan(self, currents, state=None):
    raise NotImplementedError("LIFStaircase has no membrane trace; use "
                              "layers.LIF for it")

  def step(self, state, current):
    raise NotImplementedError(
        "LIFStaircase is the closed form of a whole sequence with a constant "
        "input; it has no per-step update (use layers.LIF)")
