"""Helpers shared by the JAX implementations (scnn_jax, spyx)."""

from __future__ import annotations

import jax


def device_peak_mb():
  """Peak bytes the accelerator's allocator handed out; None on CPU (where
  peak RSS is the measure)."""
  if jax.default_backend() == "cpu":
    return None
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2**20
