"""Spiking neuron modules: LIF, paper B's ALIF and the closed-form staircase.

SEQUENCES ARE TIME-MAJOR: ``[T, B, ...]``. Every neuron obeys one per-step
contract and offers a sequence call built on it:

* ``init_state(shape)`` -> the neuron state for one step's input ``shape``;
* ``step(state, x_t)`` -> ``(state, spikes_t)`` advances ONE time step;
* ``__call__(x)`` runs the whole ``[T, ...]`` sequence (a ``lax.scan`` of
  ``scnn_jax.ops.neurons``).

Each neuron kind says which ``config.model`` fields it reads
(``config_kwargs``) and is made by name (``NEURON_TYPES``, ``make_neuron``):
a new kind is its dynamics in ``scnn_jax.ops.neurons`` and a class here
(docs/guides/extending.md).

Neuron parameters live in the module state: LIF's ``beta`` / ``threshold`` and
every surrogate slope are ``NeuronParam`` variables (not trained, but stacked
and swept by vmap ablations); ALIF's tau (through ``tau = 1/sigmoid(w)``) and
threshold are ``nnx.Param`` (trained, as in paper B). Spike rates are sown as
``SpikeRate`` intermediates; collect them with ``nnx.capture(model, SpikeRate)``.

``LIFStaircase`` solves LIF in closed form for a current constant over time:
a drop-in neuron for ``nn.SpikingConv2d`` whose
sequence call returns the exact spike train ``[T, B, ..., C]`` (TIME FIRST) of
``LIF`` with reset to zero, computed without a scan from the current
of the FIRST step (``ops.neurons.lif_constant_current``). It is exact wherever
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

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax.nn.variables import NeuronParam, SpikeRate
from scnn_jax.ops import neurons as dynamics
from scnn_jax.ops import surrogate as surrogate_lib

def _full(shape, value, dtype=jnp.float32):
  return jnp.full(shape, value, dtype)


def _common_kwargs(m) -> dict:
  # What every neuron reads of config.model.
  return dict(threshold=m.threshold, surrogate=m.surrogate,
              surrogate_param=m.surrogate_param)


# "auto" unroll of the neuron scans, per backend.
# XLA CPU: rolled. Once bias gradients stopped fusing with the neuron backward
# pass (ops.conv.add_bias), a fully unrolled scan was no faster than the rolled
# loop at T <= 8 (reference network, T=8: rolled 416 ms vs unrolled 436 ms,
# interleaved; single layer 208 vs 226 ms) and compiled 2-3x slower; partial
# unrolling and full unrolling beyond ~12 steps were slower still
# (BENCHMARKS.md, "unroll" rows). GPU/TPU: full unroll for short sequences
# saves a while-loop iteration (kernel launches) per step; not measured here.
AUTO_UNROLL_MAX_T = 8


def resolve_unroll(unroll, T: int, platform: str | None = None):
  """``"auto"`` -> rolled (1) on CPU; on GPU/TPU full unroll for
  ``T <= AUTO_UNROLL_MAX_T``, else rolled. Other values pass through."""
  if unroll == "auto":
    platform = platform or jax.default_backend()
    if platform == "cpu":
      return 1
    return True if T <= AUTO_UNROLL_MAX_T else 1
  return unroll


class _Neuron(nnx.Module):
  """Shared sequence call and rate recording of the neuron modules."""

  def __call__(self, currents):
    """Spikes ``[T, ...]`` for currents ``[T, ...]`` (time on axis 0)."""
    spikes, _ = self.run(currents)
    self.record_rate(spikes)
    return spikes

  def record_rate(self, spikes):
    # Only under nnx.capture: outside it, sow would add a variable to the
    # module (changing its graph between calls) and is deprecated.
    if hasattr(self, "__captures__"):
      self.sow(SpikeRate, "rate", jnp.mean(spikes.astype(jnp.float32)))


class LIF(_Neuron):
  """Leaky integrate-and-fire neurons (``ops.neurons.lif_scan``).

  Args:
    beta: decay per step (default 0.9); or give ``tau`` (steps) instead.
    threshold: firing threshold.
    shape: parameter shape, broadcast against one step's input: ``()`` for one
      value per layer, ``(C,)`` per channel.
    trainable: make beta and threshold ``nnx.Param`` instead of
      ``NeuronParam``.
    reset, surrogate, surrogate_param, detach_reset, refractory_steps, remat:
      see ``ops.neurons.lif_scan``. With ``refractory_steps > 0`` the state is
      ``(membrane, refractory steps left)``.
    unroll: ``lax.scan`` unroll; "auto" picks by backend and T
      (``resolve_unroll``).
  """

  def __init__(self, *, beta=None, tau=None, threshold=1.0, reset="subtract",
               surrogate="fast_sigmoid", surrogate_param=None,
               detach_reset=False, refractory_steps=0, shape=(),
               trainable=False, remat=False, unroll="auto"):
    if beta is not None and tau is not None:
      raise ValueError("LIF takes beta= or tau=, not both")
    if tau is not None:
      # Concrete even while the model is built abstractly (nnx.eval_shape),
      # and the same float32 exp as an eager build, so loaded models match.
      with jax.ensure_compile_time_eval():
        beta = float(dynamics.beta_from_tau(tau))
    beta = 0.9 if beta is None else beta
    if reset not in dynamics.RESETS:
      raise ValueError(f"unknown reset {reset!r}; allowed: "
                       f"{', '.join(dynamics.RESETS)}")
    surrogate_lib.check_kind(surrogate)
    dynamics.check_refractory_steps(refractory_steps)
    var = nnx.Param if trainable else NeuronParam
    self.beta = var(_full(shape, beta))
    self.threshold = var(_full(shape, threshold))
    if surrogate_param is None:
      surrogate_param = surrogate_lib.DEFAULT_PARAM[surrogate]
    self.surrogate_param = NeuronParam(_full((), surrogate_param))
    self.reset = reset
    self.surrogate = surrogate
    self.detach_reset = detach_reset
    self.refractory_steps = refractory_steps
    self.remat = remat
    self.unroll = unroll

  @staticmethod
  def config_kwargs(m) -> dict:
    """``config.model`` -> the keyword arguments of a LIF: the fields it
    reads (``tau`` or ``beta``, ``threshold``, ``reset``...)."""
    timing = dict(beta=m.beta) if m.beta is not None else dict(tau=m.tau)
    return dict(_common_kwargs(m), reset=m.reset, detach_reset=m.detach_reset,
                refractory_steps=m.refractory_steps, **timing)

  def _kwargs(self):
    return dict(beta=self.beta[...], threshold=self.threshold[...],
                reset=self.reset, surrogate=self.surrogate,
                surrogate_param=self.surrogate_param[...],
                detach_reset=self.detach_reset,
                refractory_steps=self.refractory_steps)

  def scan(self, currents, state=None):
    """``(spikes, membrane)`` over ``currents [T, ...]``; see ``lif_scan``."""
    return dynamics.lif_scan(currents, v0=state, remat=self.remat,
                            unroll=resolve_unroll(self.unroll, len(currents)),
                            **self._kwargs())

  def run(self, currents, state=None):
    """``(spikes, final_state)``: the scan without a membrane trace."""
    return dynamics.lif_scan(currents, v0=state, remat=self.remat,
                            unroll=resolve_unroll(self.unroll, len(currents)),
                            return_final_state=True, **self._kwargs())

  def init_state(self, shape, dtype=jnp.float32):
    return dynamics.lif_initial_state(
        jnp.zeros(shape, dynamics.state_dtype(dtype)), self.refractory_steps)

  def step(self, state, current):
    return dynamics.lif_step(state, current, **self._kwargs())


class ALIF(_Neuron):
  """Paper B's adaptive LIF: learnable time constant and threshold.

  ``tau = 1 / sigmoid(w)`` with ``w`` an ``nnx.Param`` initialised so that tau
  starts at ``tau`` (paper B: 2, i.e. w = 0); ``threshold`` is an
  ``nnx.Param`` (paper B init 0.5). ``adaptation`` (an
  ``ops.neurons.Adaptation``) adds the spike-triggered rising threshold; its
  fields are ``NeuronParam``.
  """

  def __init__(self, *, tau=2.0, threshold=0.5, v_reset=0.0, adaptation=None,
               surrogate="atan", surrogate_param=None, detach_reset=True,
               shape=(), learn_tau=True, learn_threshold=True, remat=False,
               unroll="auto"):
    if not tau > 1.0:
      raise ValueError(f"ALIF tau must be > 1 (tau = 1/sigmoid(w)), got {tau}")
    surrogate_lib.check_kind(surrogate)
    self.w = (nnx.Param if learn_tau else NeuronParam)(
        _full(shape, -math.log(tau - 1.0)))
    self.threshold = (nnx.Param if learn_threshold else NeuronParam)(
        _full(shape, threshold))
    self.v_reset = NeuronParam(_full((), v_reset))
    if surrogate_param is None:
      surrogate_param = surrogate_lib.DEFAULT_PARAM[surrogate]
    self.surrogate_param = NeuronParam(_full((), surrogate_param))
    if adaptation is not None:
      adaptation = dynamics.Adaptation(*adaptation)
      self.adapt_tau = NeuronParam(_full(shape, adaptation.tau))
      self.adapt_increment = NeuronParam(_full(shape, adaptation.increment))
    self.adaptive = adaptation is not None
    self.surrogate = surrogate
    self.detach_reset = detach_reset
    self.remat = remat
    self.unroll = unroll

  @staticmethod
  def config_kwargs(m) -> dict:
    """``config.model`` -> the keyword arguments of an ALIF: ``alif_tau``,
    ``threshold``, and the adaptation while ``adaptation_increment`` > 0."""
    adaptation = None
    if m.adaptation_increment:
      adaptation = dynamics.Adaptation(m.adaptation_tau,
                                       m.adaptation_increment)
    return dict(_common_kwargs(m), tau=m.alif_tau, adaptation=adaptation)

  @property
  def tau(self):
    return 1.0 / jax.nn.sigmoid(self.w[...])

  def _kwargs(self):
    adaptation = None
    if self.adaptive:
      adaptation = dynamics.Adaptation(self.adapt_tau[...],
                                      self.adapt_increment[...])
    return dict(tau=self.tau, threshold=self.threshold[...],
                v_reset=self.v_reset[...], surrogate=self.surrogate,
                surrogate_param=self.surrogate_param[...],
                detach_reset=self.detach_reset, adaptation=adaptation)

  def scan(self, currents, state=None):
    v0, a0 = (None, None) if state is None else state
    return dynamics.alif_scan(currents, v0=v0, a0=a0, remat=self.remat,
                             unroll=resolve_unroll(self.unroll, len(currents)),
                             **self._kwargs())

  def run(self, currents, state=None):
    """``(spikes, (v_T, a_T))``: the scan without traces."""
    v0, a0 = (None, None) if state is None else state
    return dynamics.alif_scan(currents, v0=v0, a0=a0, remat=self.remat,
                             unroll=resolve_unroll(self.unroll, len(currents)),
                             return_final_state=True, **self._kwargs())

  def init_state(self, shape, dtype=jnp.float32):
    dtype = dynamics.state_dtype(dtype)
    return (jnp.broadcast_to(self.v_reset[...].astype(dtype), shape),
            jnp.zeros(shape, dtype))

  def step(self, state, x):
    return dynamics.alif_step(state, x, **self._kwargs())


# The neurons by name: ``model.neuron`` and ``make_neuron``.
NEURON_TYPES: dict[str, type[_Neuron]] = {"lif": LIF, "alif": ALIF}
NEURONS = tuple(NEURON_TYPES)


def make_neuron(kind: str, **kwargs) -> _Neuron:
  """The neuron ``kind`` (``NEURONS``) made with ``kwargs``."""
  if kind not in NEURON_TYPES:
    raise ValueError(f"unknown neuron {kind!r}; allowed: "
                     f"{', '.join(NEURONS)}")
  return NEURON_TYPES[kind](**kwargs)


def config_kwargs(m) -> dict:
  """``config.model`` -> the keyword arguments of its ``model.neuron``."""
  return NEURON_TYPES[m.neuron].config_kwargs(m)


class LIFStaircase(LIF):
  """``LIF`` (reset to zero) for an input constant over T, closed form.

  Same parameters and state layout as ``LIF``, so checkpoints, vmap
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
    return dynamics.lif_constant_current(
        currents[0], len(currents), beta=kw["beta"],
        threshold=kw["threshold"], refractory_steps=self.refractory_steps,
        surrogate=self.surrogate, surrogate_param=kw["surrogate_param"])

  def run(self, currents, state=None):
    del state  # from rest, by construction
    return self._closed_form(currents), None

  def scan(self, currents, state=None):
    raise NotImplementedError("LIFStaircase has no membrane trace; use "
                              "LIF for it")

  def step(self, state, current):
    raise NotImplementedError(
        "LIFStaircase is the closed form of a whole sequence with a constant "
        "input; it has no per-step update (use LIF)")
