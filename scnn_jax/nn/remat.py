"""A module's method under ``jax.checkpoint``, and ``nnx.capture``'s stores
kept out of the way while the module is split for it."""

from __future__ import annotations

import contextlib

import jax
from flax import nnx


@contextlib.contextmanager
def captures_hidden(module: nnx.Module):
  """Detaches ``nnx.capture``'s per-module stores for the ``with`` block.

  Under ``nnx.capture`` every submodule holds a ``__captures__`` attribute;
  for an ``nnx.List`` of layers its key sits beside the integer keys and
  ``nnx.split`` then fails sorting them. Wrap the split in this block: the
  module merged from it carries no stores, so code run on that copy
  (``checkpointed``, chunk scans) records no rates; record them on the
  original module afterwards.
  """
  held = [(m, m.__captures__) for _, m in nnx.iter_modules(module)
          if hasattr(m, "__captures__")]
  for m, _ in held:
    delattr(m, "__captures__")
  try:
    yield
  finally:
    for m, captures in held:
      m.__captures__ = nnx.data(captures)


def checkpointed(module: nnx.Module, method, *args):
  """``method(module, *args)`` under ``jax.checkpoint`` (rematerialised).

  A pure function of the module's split state, rather than ``nnx.remat``:
  works the same inside jax transforms over ``nnx.merge``-d modules (the
  trainer's ``nnx.split`` / ``nnx.merge`` step), where ``nnx.remat``'s
  write-back of unchanged variables fails with a trace-level error. The
  method must not mutate the module (nor record spike rates: it runs with
  the module's captures hidden).
  """
  with captures_hidden(module):
    graphdef, state = nnx.split(module)

  def pure(state, *args):
    return method(nnx.merge(graphdef, state), *args)

  return jax.checkpoint(pure)(state, *args)
