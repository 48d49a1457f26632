"""Neuron dynamics as pure functions. TIME IS AXIS 0 of every sequence here.

Two layers of API:

* ``lif_step`` / ``alif_step``: one time step, ``step(state, input_t) ->
  (new_state, spikes_t)``. This is the per-step contract every neuron obeys;
  a whole network can be advanced one step at a time with it.
* ``lif_scan`` / ``alif_scan``: ``jax.lax.scan`` of the step over a sequence
  ``currents[T, ...]``; return spikes ``[T, ...]`` and the membrane trace.

Neuron parameters (``beta``, ``tau``, ``threshold``, surrogate ``param``...) are
*arrays*: a scalar, per channel (shape ``[C]``) or per neuron, broadcast against
``currents.shape[1:]``. They are never baked into the trace as Python floats, so
``jax.vmap`` (ablations), ``jax.grad`` (ALIF learns tau and threshold) and
sweeps go straight through them.

Membrane state is kept in float32 (float64 if the currents are float64) even
when the currents are bfloat16: long leaky sums lose too much in 8 mantissa
bits. Spikes come out in the currents' dtype (0 and 1 are exact in any float).

Paper A's LIF, from its ODE ``C dV/dt = I - V/R`` (``tau = RC``): the exact
solution over one step ``dt`` with the current held constant is
``V_t = exp(-dt/tau) V_{t-1} + (1 - exp(-dt/tau)) R I_t``. The input gain
``(1 - exp(-dt/tau)) R`` is absorbed into the weights of the conv producing
``I``, which leaves ``v_t = beta v_{t-1} + I_t`` with ``beta = exp(-dt/tau)``:
tau 40 ms at dt 1 ms gives beta = exp(-1/40) = 0.9753.

Refractory period: paper A lists 1 ms. The reset alone is NOT one: with reset
to zero a neuron driven by a current >= threshold fires at every step (rate
1). ``refractory_steps=R`` makes it absolute: for the R steps after a spike
the neuron ignores its input, cannot fire and its membrane stays at the
post-reset value, which caps the rate at ``1 / (R + 1)`` (paper A at dt 1 ms:
R = 1, rate <= 1/2). The default R = 0 (no refractory period) is what the
configs use unless they set ``model.refractory_steps``.

A constant current from rest: ``lif_constant_current`` gives the spike train
in closed form (the firing rate is then a staircase of the current; see that
function), for direct-encoded inputs whose training noise is off or held
over T.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from scnn_jax.ops import surrogate as surrogate_lib

RESETS = ("subtract", "zero")


class Adaptation(NamedTuple):
  """Spike-triggered threshold adaptation for ``alif_scan``.

  The threshold seen at step t is ``threshold + a_{t-1}`` with
  ``a_t = exp(-1/tau) a_{t-1} + increment * s_t``: each spike raises it by
  ``increment``, and it decays back with time constant ``tau`` (in steps).
  Both fields may be arrays (per channel / per neuron) or traced values.
  """
  tau: jax.Array | float = 20.0
  increment: jax.Array | float = 0.1


def beta_from_tau(tau, dt=1.0):
  """Per-step decay ``exp(-dt/tau)`` of a leaky membrane with time constant tau."""
  return jnp.exp(-jnp.asarray(dt) / jnp.asarray(tau))


def tau_from_beta(beta, dt=1.0):
  """Inverse of ``beta_from_tau``."""
  return -jnp.asarray(dt) / jnp.log(jnp.asarray(beta))


def state_dtype(dtype) -> jnp.dtype:
  """Membrane dtype for currents of ``dtype``: float32, or float64 for float64."""
  return jnp.dtype(jnp.float64 if jnp.dtype(dtype) == jnp.float64
                   else jnp.float32)


def _check_sequence(currents) -> jax.Array:
  currents = jnp.asarray(currents)
  if currents.ndim < 1:
    raise ValueError("currents must have a leading time axis [T, ...], got a "
                     "scalar")
  if currents.shape[0] < 1:
    raise ValueError("currents must hold at least one time step (T >= 1), "
                     f"got shape {currents.shape}")
  if not jnp.issubdtype(currents.dtype, jnp.floating):
    raise TypeError(f"currents must be floating point, got {currents.dtype}")
  return currents


def _initial(value, like, dtype, default=0.0):
  """Initial state shaped like one step ``like``, filled with ``value``.

  Built as ``zeros_like(like) + value`` rather than ``broadcast_to``: inside
  ``shard_map`` the state must vary over the same mesh axes as the currents,
  or ``lax.scan`` rejects the carry.
  """
  value = default if value is None else value
  return jnp.zeros_like(like, dtype) + jnp.asarray(value, dtype)


# ----------------------------------------------------------------------------
# LIF
# ----------------------------------------------------------------------------


def lif_step(v, current, *, beta, threshold, reset="subtract",
             surrogate="fast_sigmoid", surrogate_param=None,
             detach_reset=False, refractory_steps=0):
  """One LIF step: ``(v_{t-1}, I_t) -> (v_t, s_t)``.

  ``u = beta v_{t-1} + I_t``; ``s_t = spike(u - threshold)``; then reset in the
  same step: ``v_t = u - s_t threshold`` ("subtract") or ``u (1 - s_t)``
  ("zero"). ``detach_reset`` stops the gradient through the reset term.

  With ``refractory_steps=R > 0`` the state is ``(v, left)``, ``left`` the
  refractory steps still to serve (0 = free; ``lif_initial_state``): a free
  neuron steps as above and a spike sets ``left = R``; a refractory one keeps
  ``v``, emits 0 (no gradient) and counts ``left`` down.
  """
  if refractory_steps:
    v, left = v
  u = beta * v + current.astype(v.dtype)
  s = surrogate_lib.spike(u - threshold, surrogate, surrogate_param)
  if refractory_steps:
    free = (left <= 0).astype(s.dtype)
    s = s * free
  r = lax.stop_gradient(s) if detach_reset else s
  if reset == "subtract":
    v_new = u - r * threshold
  elif reset == "zero":
    v_new = u * (1.0 - r)
  else:
    raise ValueError(f"unknown reset {reset!r}; allowed: {', '.join(RESETS)}")
  if not refractory_steps:
    return v_new, s
  v_new = jnp.where(free > 0, v_new, v)
  left = jnp.where(lax.stop_gradient(s) > 0, jnp.asarray(refractory_steps,
                                                          left.dtype),
                   jnp.maximum(left - 1, 0))
  return (v_new, left), s


def _lif_params(caller, beta, tau, dt, threshold, surrogate_param, dtype):
  """``(beta, threshold, surrogate_param)`` as arrays of the state dtype."""
  if (beta is None) == (tau is None):
    raise ValueError(f"{caller} needs exactly one of beta= or tau=")
  beta = beta_from_tau(tau, dt) if beta is None else beta
  sp = None if surrogate_param is None else jnp.asarray(surrogate_param, dtype)
  return jnp.asarray(beta, dtype), jnp.asarray(threshold, dtype), sp


def lif_initial_state(v0, refractory_steps=0):
  """The ``lif_step`` state for membrane ``v0``: ``v0`` itself, or
  ``(v0, zeros)`` (free to fire) when ``refractory_steps > 0``."""
  return (v0, jnp.zeros_like(v0)) if refractory_steps else v0


def check_refractory_steps(refractory_steps):
  if (isinstance(refractory_steps, bool)
      or not isinstance(refractory_steps, int) or refractory_steps < 0):
    raise ValueError("refractory_steps must be an int >= 0 (a static number "
                     f"of time steps), got {refractory_steps!r}")


def lif_scan(currents, *, beta=None, tau=None, dt=1.0, threshold=1.0,
             reset="subtract", surrogate="fast_sigmoid", surrogate_param=None,
             detach_reset=False, refractory_steps=0, v0=None, remat=False,
             unroll=1, return_final_state=False):
  """Leaky integrate-and-fire over time.

  Args:
    currents: input currents ``[T, ...]``, TIME ON AXIS 0.
    beta: membrane decay per step, array broadcastable to
      ``currents.shape[1:]``. Give either ``beta`` or ``tau``.
    tau: membrane time constant in units of ``dt``; ``beta = exp(-dt/tau)``.
    threshold: firing threshold (array, broadcast like ``beta``).
    reset: "subtract" (v -= threshold on a spike) or "zero" (v = 0).
    surrogate, surrogate_param: spike surrogate kind and its width / slope
      (see ``scnn_jax.ops.surrogate``).
    detach_reset: stop the gradient through the reset.
    refractory_steps: absolute refractory period in steps (a Python int;
      see ``lif_step``). 0: none.
    v0: initial state (default: membrane 0, free to fire): the membrane
      ``[...]``, or with ``refractory_steps > 0`` the pair ``(v, left)``.
      Pass the final state of the previous chunk to continue a sequence.
    remat: recompute the scan in the backward pass (``jax.checkpoint``): only
      the inputs are kept for backprop; gradients are identical.
    unroll: ``lax.scan`` unroll factor.
    return_final_state: return ``(spikes, state_T)`` instead of the
      membrane trace (``state_T`` as ``v0``): the scan then writes no
      ``[T, ...]`` membrane output (chunked execution,
      ``scnn_jax.nn.sequential``).

  Returns:
    ``(spikes, membrane)``, both ``[T, ...]``. ``membrane`` is the state after
    the reset of each step, so ``membrane[-1]`` is the final state.
  """
  currents = _check_sequence(currents)
  if reset not in RESETS:
    raise ValueError(f"unknown reset {reset!r}; allowed: {', '.join(RESETS)}")
  surrogate_lib.check_kind(surrogate)
  dtype = state_dtype(currents.dtype)
  beta, threshold, sp = _lif_params("lif_scan", beta, tau, dt, threshold,
                                    surrogate_param, dtype)
  check_refractory_steps(refractory_steps)
  if refractory_steps and v0 is not None:
    v0 = (_initial(v0[0], currents[0], dtype),
          _initial(v0[1], currents[0], dtype))
  else:
    v0 = lif_initial_state(_initial(v0, currents[0], dtype), refractory_steps)

  def run(currents, beta, threshold, sp, v0):
    def body(v, i):
      v, s = lif_step(v, i, beta=beta, threshold=threshold, reset=reset,
                      surrogate=surrogate, surrogate_param=sp,
                      detach_reset=detach_reset,
                      refractory_steps=refractory_steps)
      if return_final_state:
        return v, s.astype(currents.dtype)
      membrane = v[0] if refractory_steps else v
      return v, (s.astype(currents.dtype), membrane)
    v, out = lax.scan(body, v0, currents, unroll=unroll)
    return (out, v) if return_final_state else out

  if remat:
    run = jax.checkpoint(run)
  return run(currents, beta, threshold, sp, v0)


def constant_current_weights(T: int, refractory_steps: int = 0) -> np.ndarray:
  """``W [T, T]`` of ``lif_constant_current``: ``s_t = sum_k W[t, k] H_k``.

  ``P[t, k] = 1`` if a neuron that needs k integration steps per spike fires
  at step t (0-based): ``t + 1 + R`` a multiple of ``k + R``. Since
  ``[n == k] = H_k - H_{k-1}``, ``s_t = sum_k P[t, k] [n == k]
  = sum_k (P[t, k] - P[t, k + 1]) H_k`` with ``P[t, T + 1] = 0``.
  """
  t = np.arange(1, T + 1)[:, None] + refractory_steps
  period = np.arange(1, T + 2)[None, :] + refractory_steps
  fires = (t % period == 0).astype(np.float32)
  fires[:, -1] = 0.0
  return fires[:, :-1] - fires[:, 1:]


def lif_constant_current(current, T: int, *, beta=None, tau=None, dt=1.0,
                         threshold=1.0, refractory_steps=0,
                         surrogate="fast_sigmoid", surrogate_param=None):
  """LIF spikes ``[T, ...]`` (TIME ON AXIS 0) for a current CONSTANT over T.

  Closed form of ``lif_scan(broadcast(current, T), reset="zero")`` from rest
  (``v_0 = 0``), no scan. With ``I`` constant the membrane k steps after a
  reset is ``u_k = S_k I``, ``S_k = sum_{j<k} beta^j``. The neuron fires
  after ``n = min{k : S_k I >= threshold}`` steps (never if ``S_T I <
  threshold``), resets to zero, serves ``R = refractory_steps`` dead steps
  and starts again: spikes at the steps t (0-based) with ``t + 1 = j n +
  (j - 1) R``, j = 1, 2, ...; the count over T is ``floor((T + R) / (n +
  R))``. The firing rate is therefore a STAIRCASE of the current: at T = 8,
  R = 0 the counts are ``floor(8 / n)``: 0, 1, 2, 4 or 8 (five levels), at
  T = 16: 0, 1, 2, 3, 4, 5, 8, 16.

  Computed as ``s_t = sum_k W[t, k] H_k`` (``constant_current_weights``) with
  ``H_k = spike(S_k I - threshold)`` (1 iff ``n <= k``): the forward pass is
  the exact spike train, the backward pass puts the surrogate derivative of
  ``surrogate`` at each step of the staircase (``S_k g'(S_k I - threshold)``,
  on the membrane scale of ``lif_scan``'s surrogate). Not the same gradient
  as backprop through the scan, which also flows through the membrane
  history and the reset.

  Args:
    current: ``[...]``, one step's current (the same at every step).
    T: number of steps (static int).
    beta / tau / dt / threshold / surrogate / surrogate_param: as in
      ``lif_scan`` (arrays broadcast against ``current``).
    refractory_steps: as in ``lif_scan``.

  Returns:
    spikes ``[T, ...]`` in the current's dtype; equal to ``lif_scan``'s
    except where ``S_k I`` lies within rounding of the threshold (the scan
    sums ``u`` step by step, in a different order).
  """
  current = jnp.asarray(current)
  if not jnp.issubdtype(current.dtype, jnp.floating):
    raise TypeError(f"current must be floating point, got {current.dtype}")
  if not isinstance(T, int) or T < 1:
    raise ValueError(f"T must be an int >= 1, got {T!r}")
  check_refractory_steps(refractory_steps)
  surrogate_lib.check_kind(surrogate)
  dtype = state_dtype(current.dtype)
  beta, threshold, sp = _lif_params("lif_constant_current", beta, tau, dt,
                                    threshold, surrogate_param, dtype)
  steps = jnp.arange(T, dtype=dtype).reshape((T,) + (1,) * beta.ndim)
  s_k = jnp.cumsum(beta[None] ** steps, axis=0)      # S_1 .. S_T
  s_k = s_k.reshape(s_k.shape[:1] + (1,) * (current.ndim - beta.ndim)
                    + s_k.shape[1:])
  h = surrogate_lib.spike(s_k * current.astype(dtype)[None] - threshold,
                          surrogate, sp)
  w = jnp.asarray(constant_current_weights(T, refractory_steps), dtype)
  return jnp.tensordot(w, h, axes=1).astype(current.dtype)


# ----------------------------------------------------------------------------
# ALIF (paper B)
# ----------------------------------------------------------------------------


def alif_step(state, x, *, tau, threshold, v_reset=0.0, surrogate="atan",
              surrogate_param=None, detach_reset=True, adaptation=None):
  """One ALIF step: ``((v_{t-1}, a_{t-1}), X_t) -> ((v_t, a_t), S_t)``.

  Paper B: ``H_t = V_{t-1} + (1/tau)(X_t - (V_{t-1} - v_reset))``;
  ``S_t = spike(H_t - threshold - a_{t-1})``; hard reset
  ``V_t = (1 - S_t) H_t + S_t v_reset``. ``a`` is the adaptive threshold
  offset (always 0 without ``adaptation``).
  """
  v, a = state
  h = v + (x.astype(v.dtype) - (v - v_reset)) / tau
  s = surrogate_lib.spike(h - (threshold + a), surrogate, surrogate_param)
  r = lax.stop_gradient(s) if detach_reset else s
  v = (1.0 - r) * h + r * v_reset
  if adaptation is not None:
    a = jnp.exp(-1.0 / adaptation.tau) * a + adaptation.increment * s
  return (v, a), s


def alif_scan(currents, *, tau, threshold, v_reset=0.0, adaptation=None,
              surrogate="atan", surrogate_param=None, detach_reset=True,
              v0=None, a0=None, remat=False, unroll=1,
              return_adaptation=False, return_final_state=False):
  """Adaptive LIF of paper B over time (PLIF-style, learnable tau/threshold).

  Args:
    currents: ``X`` of shape ``[T, ...]``, TIME ON AXIS 0.
    tau: membrane time constant (> 1 for a leak in (0, 1)); paper B learns it
      as ``tau = 1 / sigmoid(w)``, which ``nn.ALIF`` does. Array,
      broadcast against ``currents.shape[1:]``.
    threshold: firing threshold (paper B: learnable, init 0.5).
    v_reset: reset potential; also the default initial membrane.
    adaptation: ``Adaptation(tau, increment)`` for a spike-triggered rising
      threshold, or None for paper B's neuron.
    surrogate: paper B uses ATan with alpha 2 (the default).
    detach_reset: paper B detaches the reset from the graph (default True).
    v0, a0: initial membrane and threshold offset (chunked sequences).
    remat, unroll: as in ``lif_scan``.
    return_adaptation: also return the threshold-offset trace ``a``.
    return_final_state: return ``(spikes, (v_T, a_T))`` and no traces.

  Returns:
    ``(spikes, membrane)`` (plus ``adaptation_trace`` if asked), each
    ``[T, ...]``; ``membrane`` is post-reset, so ``membrane[-1]`` is the final
    state.
  """
  currents = _check_sequence(currents)
  surrogate_lib.check_kind(surrogate)
  dtype = state_dtype(currents.dtype)
  tau = jnp.asarray(tau, dtype)
  threshold = jnp.asarray(threshold, dtype)
  v_reset = jnp.asarray(v_reset, dtype)
  sp = None if surrogate_param is None else jnp.asarray(surrogate_param, dtype)
  if adaptation is not None:
    adaptation = Adaptation(jnp.asarray(adaptation.tau, dtype),
                            jnp.asarray(adaptation.increment, dtype))
  state0 = (_initial(v0, currents[0], dtype, v_reset),
            _initial(a0, currents[0], dtype))

  def run(currents, tau, threshold, v_reset, sp, adaptation, state0):
    def body(state, x):
      state, s = alif_step(state, x, tau=tau, threshold=threshold,
                           v_reset=v_reset, surrogate=surrogate,
                           surrogate_param=sp, detach_reset=detach_reset,
                           adaptation=adaptation)
      if return_final_state:
        return state, s.astype(currents.dtype)
      return state, (s.astype(currents.dtype),) + state
    state, out = lax.scan(body, state0, currents, unroll=unroll)
    return (out, state) if return_final_state else out

  if remat:
    run = jax.checkpoint(run)
  if return_final_state:
    return run(currents, tau, threshold, v_reset, sp, adaptation, state0)
  spikes, membrane, a = run(currents, tau, threshold, v_reset, sp, adaptation,
                            state0)
  return (spikes, membrane, a) if return_adaptation else (spikes, membrane)
