"""The neuron fields of ``config.model``, shared by every spiking task.

One place that validates ``neuron``, ``threshold``, ``surrogate``,
``surrogate_param``, ``reset``, ``refractory_steps``, ``beta`` / ``tau``,
``alif_tau`` and the adaptation fields, and turns them into ``layers.LIF`` /
``layers.ALIF`` keyword arguments, so that every task accepts and rejects the
same values.
"""

from __future__ import annotations

from scnn_jax import layers, neurons, surrogate
from scnn_jax.config_lib import (ConfigError, check_choice, check_int,
                                 check_number)


def validate(m, prefix="model") -> None:
  """Checks the fields ``neuron_kwargs`` reads (errors name ``prefix.field``)."""
  check_choice(f"{prefix}.neuron", m.neuron, layers.NEURONS)
  check_number(f"{prefix}.threshold", m.threshold, low=0, low_open=True)
  check_choice(f"{prefix}.surrogate", m.surrogate, surrogate.KINDS)
  if m.surrogate_param is not None:
    check_number(f"{prefix}.surrogate_param", m.surrogate_param, low=0,
                 low_open=True)
  refractory = m.get("refractory_steps", 0)
  check_int(f"{prefix}.refractory_steps", refractory, 0)
  if m.neuron == "lif":
    check_choice(f"{prefix}.reset", m.reset, neurons.RESETS)
    if m.beta is not None:
      check_number(f"{prefix}.beta", m.beta, low=0, high=1, low_open=True)
    else:
      check_number(f"{prefix}.tau", m.tau, low=0, low_open=True)
  else:
    if refractory:
      raise ConfigError(f"{prefix}.refractory_steps", refractory,
                        "must be 0 for neuron='alif' (LIF only)")
    check_number(f"{prefix}.alif_tau", m.alif_tau, low=1, low_open=True)
    if m.adaptation_increment:
      check_number(f"{prefix}.adaptation_tau", m.adaptation_tau, low=0,
                   low_open=True)


def neuron_kwargs(m) -> dict:
  """``config.model`` -> keyword arguments of ``layers.LIF`` / ``layers.ALIF``."""
  common = dict(threshold=m.threshold, surrogate=m.surrogate,
                surrogate_param=m.surrogate_param)
  if m.neuron == "lif":
    timing = dict(beta=m.beta) if m.beta is not None else dict(tau=m.tau)
    return dict(common, reset=m.reset, detach_reset=m.detach_reset,
                refractory_steps=m.get("refractory_steps", 0), **timing)
  adaptation = None
  if m.adaptation_increment:
    adaptation = neurons.Adaptation(m.adaptation_tau, m.adaptation_increment)
  return dict(common, tau=m.alif_tau, adaptation=adaptation)
