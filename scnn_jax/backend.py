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

import ctypes
import functools
import sys

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


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def tune_host_allocator(*, trim_threshold: int = 1 << 30) -> bool:
  """Keeps freed host memory in the process for reuse (glibc only).

  XLA CPU allocates every output and temporary buffer of a step with malloc.
  glibc serves blocks above 32 MiB with a fresh ``mmap`` and unmaps them on
  free, so every step page-faults its large buffers in again: on the 2-core
  machine of BENCHMARKS.md writing a fresh 51 MB buffer took 32 ms instead of
  3.5 ms, and a whole train step of the reference network spends ~25 % of
  its time in the kernel. This switches malloc to one arena that never
  mmaps and keeps up to ``trim_threshold`` bytes of freed memory, so steady
  state steps reuse already-mapped pages. Peak RSS is unchanged; memory is
  returned to the OS less eagerly.

  Process-wide, so it is opt-in: the trainer and the benchmarks call it. The
  environment variable ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
  glibc.malloc.trim_threshold=1073741824:glibc.malloc.arena_max=1`` does the
  same for any program (the benchmarks set it for the PyTorch peers too).
  Returns False (and does nothing) where glibc's ``mallopt`` is unavailable.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  ok = mallopt(_M_MMAP_MAX, 0) == 1
  ok &= mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
  ok &= mallopt(_M_ARENA_MAX, 1) == 1
  return bool(ok)


GLIBC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold="
                  "1073741824:glibc.malloc.arena_max=1")
