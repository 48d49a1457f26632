"""Per-backend compiler settings for the steps scnn_jax compiles.

XLA CPU's default convolution ran at ~15 GFLOP/s on a 2-core AVX2 machine
(value + grad of a 32->64 3x3 conv over 256 28x28 images); routing it through
YNNPACK (``xla_cpu_experimental_ynn_fusion_type``) gave ~105 GFLOP/s on the
same machine, about 2/3 of the fp32 peak. On an Intel Xeon with AMX a plain
``jax.jit`` train step of the reference network ran at 0.6x the speed of one
compiled with the option; on an AMD EPYC with AVX-512 (jaxlib 0.10.2, which
already sends convs to YNNPACK there) both ran alike.

So that a plain ``jax.jit`` / ``nnx.jit`` around scnn_jax layers is not the
slow path, importing scnn_jax sets the option process-wide through
``XLA_FLAGS`` (``configure_process``), which XLA reads when JAX starts its
CPU backend. It is skipped, and the first conv traced outside
``backend.jit`` warns once with the one-line fix, when:

* JAX's backends were already running when scnn_jax was imported (import
  scnn_jax before the first JAX computation);
* the jaxlib is not one this option was tested with (an unknown XLA flag in
  ``XLA_FLAGS`` aborts the process, so it is never set blindly);
* ``SCNN_JAX_XLA_FLAGS=0`` (opt out: the process's other jitted code keeps
  XLA's defaults; then compile steps with ``backend.jit``).

``XLA_FLAGS`` that already name the option are left alone. ``backend.jit(fn)``
and ``jax.jit(fn, compiler_options=backend.compiler_options())`` pass the
option per compilation and work in every case.

Importing scnn_jax also tunes glibc's malloc for XLA CPU's large per-step
buffers (``tune_host_allocator``; ``SCNN_JAX_HOST_ALLOCATOR=0`` opts out),
which was worth ~25 % of a train step's speed on the 2-core machine of
BENCHMARKS.md.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
import os
import sys
import warnings

import jax

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
_CPU_OPTIONS = {
    # Any YNN fusion type switches convolutions to YNNPACK; "dot" alone is
    # the smallest change that does it (see BENCHMARKS.md for the sweep).
    _OPTION: "LIBRARY_FUSION_TYPE_DOT",
}
# jaxlib (major, minor) versions whose XLA knows the option.
_TESTED_JAXLIB = ((0, 10),)
OPT_OUT_ENV = "SCNN_JAX_XLA_FLAGS"
FIX = ("compile the step with scnn_jax.ops.backend.jit(fn) (or jax.jit(fn, "
       "compiler_options=scnn_jax.ops.backend.compiler_options())), or import "
       "scnn_jax before the first JAX computation")

_in_backend_jit = contextvars.ContextVar("scnn_jax_in_backend_jit",
                                         default=False)
_warned = False


def _jaxlib_version() -> tuple[int, int]:
  import jaxlib.version
  major, minor = jaxlib.version.__version__.split(".")[:2]
  return int(major), int(minor)


def configure_process() -> str:
  """Sets the fast-conv XLA option in ``XLA_FLAGS`` if it safely can.

  Returns what happened: "set", "user" (``XLA_FLAGS`` already names it),
  "off" (``SCNN_JAX_XLA_FLAGS=0``), "untested" (another jaxlib) or "late"
  (JAX's backends already started; the flag would be ignored).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if _OPTION in flags:
    return "user"
  if os.environ.get(OPT_OUT_ENV, "1") == "0":
    return "off"
  try:
    if _jaxlib_version() not in _TESTED_JAXLIB:
      return "untested"
  except (ImportError, ValueError, AttributeError):
    return "untested"
  from jax._src import xla_bridge
  if xla_bridge.backends_are_initialized():
    return "late"
  os.environ["XLA_FLAGS"] = " ".join(
      f for f in (flags, f"--{_OPTION}={_CPU_OPTIONS[_OPTION]}") if f)
  return "set"


PROCESS_FLAG = configure_process()
"""What ``configure_process`` did when scnn_jax was imported."""


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

  @functools.wraps(fun)
  def traced(*args, **kw):
    token = _in_backend_jit.set(True)
    try:
      return fun(*args, **kw)
    finally:
      _in_backend_jit.reset(token)

  return jax.jit(traced, **kwargs)


def check_fast_conv_path():
  """Warns once if a conv is traced on CPU where it may miss YNNPACK.

  Called by ``conv.conv2d`` while tracing: silent when the process flag is
  set (or the user set it, or opted out) and inside ``backend.jit``.
  """
  global _warned
  if (_warned or PROCESS_FLAG in ("set", "user", "off")
      or _in_backend_jit.get() or jax.default_backend() != "cpu"):
    return
  _warned = True
  reason = {"late": "JAX's backends started before scnn_jax was imported",
            "untested": "this jaxlib is not one scnn_jax tested the option "
                        "with"}[PROCESS_FLAG]
  warnings.warn(
      f"scnn_jax: this conv is compiled without the XLA CPU option "
      f"{_OPTION} ({reason}); XLA CPU's default conv path was 1.7-7x "
      f"slower on the CPUs measured. Fix: {FIX}.", stacklevel=3)


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

  Importing scnn_jax calls it (``configure_allocator``), so a user's own
  ``jax.jit`` step around scnn_jax layers gets it as the trainer does; it is
  process-wide, and ``SCNN_JAX_HOST_ALLOCATOR=0`` opts out. The environment
  variable ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
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
ALLOCATOR_OPT_OUT_ENV = "SCNN_JAX_HOST_ALLOCATOR"


def configure_allocator() -> str:
  """``tune_host_allocator`` unless opted out: what importing scnn_jax does.

  Returns "set", "off" (``SCNN_JAX_HOST_ALLOCATOR=0``) or "unavailable"
  (no glibc ``mallopt``: macOS, musl, Windows).
  """
  if os.environ.get(ALLOCATOR_OPT_OUT_ENV, "1") == "0":
    return "off"
  return "set" if tune_host_allocator() else "unavailable"


PROCESS_ALLOCATOR = configure_allocator()
"""What ``configure_allocator`` did when scnn_jax was imported."""
