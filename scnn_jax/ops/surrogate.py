"""Spike function: Heaviside forward, surrogate derivative backward.

``spike(x)`` returns ``1`` where ``x >= 0`` and ``0`` elsewhere. Its true
derivative is zero almost everywhere, which would stop all learning, so the
backward pass substitutes a smooth *surrogate* derivative ``g'(x)``. The
argument ``x`` is ``membrane - threshold``; the function is elementwise and
knows nothing about time.

Kinds and their surrogate derivative at ``x`` (``p`` is ``param``):

=============  =======================================  ==============
kind           g'(x)                                    default ``p``
=============  =======================================  ==============
fast_sigmoid   1 / (1 + p|x|)^2   (SuperSpike)          25
atan           p / (2 (1 + (pi/2 p x)^2))   (paper B)   2
sigmoid        p s(px) (1 - s(px)),  s = logistic       4
triangle       max(0, 1 - |x|/p) / p                    1
rectangular    1[|x| < p/2] / p   (FSVAE)               1
=============  =======================================  ==============

``param`` may be a traced array (swept by vmap ablations, or learned): it is a
regular differentiable input, and since the forward pass does not depend on it
its own gradient is exactly zero.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

DEFAULT_PARAM = {
    "fast_sigmoid": 25.0,
    "atan": 2.0,
    "sigmoid": 4.0,
    "triangle": 1.0,
    "rectangular": 1.0,
}
KINDS = tuple(DEFAULT_PARAM)


def check_kind(kind: str) -> str:
  """Returns ``kind`` or raises a ValueError naming the allowed kinds."""
  if kind not in DEFAULT_PARAM:
    raise ValueError(
        f"unknown surrogate kind {kind!r}; allowed: {', '.join(KINDS)}")
  return kind


def derivative(x, kind: str = "fast_sigmoid", param=None):
  """The surrogate derivative g'(x) of ``kind`` (see the module table).

  Written so that every finite input gives a finite output in float32 and
  bfloat16: large ``|x|`` drives the denominators to ``inf`` and the result to
  zero, never to ``nan``.
  """
  check_kind(kind)
  x = jnp.asarray(x)
  p = jnp.asarray(DEFAULT_PARAM[kind] if param is None else param, x.dtype)
  if kind == "fast_sigmoid":
    return 1.0 / jnp.square(1.0 + p * jnp.abs(x))
  if kind == "atan":
    return p / (2.0 * (1.0 + jnp.square((math.pi / 2.0) * p * x)))
  if kind == "sigmoid":
    s = jax.nn.sigmoid(p * x)
    return p * s * (1.0 - s)
  if kind == "triangle":
    return jnp.maximum(0.0, 1.0 - jnp.abs(x) / p) / p
  # rectangular
  return jnp.where(jnp.abs(x) < p / 2.0, 1.0 / p, 0.0).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _spike(x, param, kind):
  del param, kind
  return (x >= 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(kind, primals, tangents):
  x, param = primals
  dx, _ = tangents  # the output does not depend on param: its tangent is 0
  return _spike(x, param, kind), derivative(x, kind, param) * dx


def spike(x, kind: str = "fast_sigmoid", param=None):
  """Heaviside step ``x >= 0 -> 1`` with the surrogate derivative of ``kind``.

  Args:
    x: any array, usually ``membrane - threshold``. The output has its shape
      and dtype.
    kind: one of ``KINDS``.
    param: width / slope of the surrogate; ``None`` takes the kind's default
      (``DEFAULT_PARAM``). A scalar or an array broadcastable to ``x``; may be
      traced.
  """
  check_kind(kind)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"spike() needs a floating-point input, got {x.dtype}")
  p = jnp.asarray(DEFAULT_PARAM[kind] if param is None else param, x.dtype)
  return _spike(x, p, kind)
