"""Per-backend compiler settings for the steps scnn_jax compiles.

XLA CPU's default convolution runs at ~15 GFLOP/s on a 2-core AVX2 machine
(value + grad of a 32->64 3x3 conv over 256 28x28 images); routing it through
YNNPACK (``xla_cpu_experimental_ynn_fusion_type``) gives ~105 GFLOP/s on the
same machine, about 2/3 of the fp32 peak. The option is a per-compilation
setting, so it is passed to ``jax.jit(..., compiler_options=...)`` instead of
the process-wide ``XLA_FLAGS``: users' own jitted code is left alone.

Library users who build their own training loop get the same speed with
``scnn_jax.backend.jit(fn)`` or ``jax.jit(fn, compiler_options=
scnn_jax.backend.compiler_options())``.
"""

from __future__ import annotations

import functools

import jax

_CPU_OPTIONS = {
    # Any YNN fusion type switches convolutions to YNNPACK; "dot" alone is
    # the smallest change that does it (see BENCHMARKS.md for the sweep).
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
}


def compiler_options(platform: str | None = None) -> dict[str, str] | None:
  """XLA options for ``jax.jit(compiler_options=...)`` on ``platform``.

  ``platform`` defaults to ``jax.default_backend()``. Returns None where the
  defaults are already the fast path (GPU, TPU).
  """
  platform = platform or jax.default_backend()
  return dict(_CPU_OPTIONS) if platform == "cpu" else None


def jit(fun=None, **kwargs):
  """``jax.jit`` with this backend's ``compiler_options`` (overridable)."""
  if fun is None:
    return functools.partial(jit, **kwargs)
  kwargs.setdefault("compiler_options", compiler_options())
  return jax.jit(fun, **kwargs)
