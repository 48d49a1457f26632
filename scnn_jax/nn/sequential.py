"""A stack of spiking and stateless layers run through time, whole or in chunks.

SEQUENCES ARE TIME-MAJOR: ``[T, B, H, W, C]``.

``SpikingSequential([...])`` holds spiking layers (anything with
``run(x, state, keys, example_ids) -> (y, state)``, e.g.
``nn.SpikingConv2d``) and stateless ones (``nn.Conv2d``,
``Upsample2d``, any callable on ``[T, B, ...]``). Two ways to run it, with the
same outputs and gradients (tests/test_perf_features.py):

* ``chunk=None``: layer by layer over the whole sequence. Each spiking layer
  convolves all ``T*B`` images at once ("fold") and then runs its neuron
  ``lax.scan`` over T. Backprop memory grows linearly with T.
* ``chunk=C``: the whole network advances ``C`` steps at a time, carrying
  every layer's neuron state from chunk to chunk. With ``remat=True`` each
  chunk is ``jax.checkpoint``-ed so that the backward pass keeps only the
  chunk inputs and the neuron states at chunk boundaries and recomputes one
  chunk at a time. Only a loop forces XLA to recompute one chunk at a time
  (in straight-line code XLA CPU's scheduler hoisted all recomputations and
  the buffers did not shrink), so the chunks after the first run in a
  ``lax.scan`` with a checkpointed body (``scan_chunks=True``, the default;
  ``False`` = a Python loop). On the 2-core CPU of BENCHMARKS.md, T = 32,
  ``chunk=4, remat=True``: XLA step buffers 395 MB (1346 MB for
  ``chunk=None``, 376 MB at T = 8) at the same train speed. Convs inside
  that loop stay on XLA CPU's fast path because ``conv.conv2d`` writes their
  gradients as canonical convs. Without ``remat`` the chunks are a Python
  loop (for streaming state through long sequences, and for speed on CPU).
* ``chunk="auto"`` (the default): ``AUTO_CHUNK_CPU`` = 4 steps on CPU, the
  whole sequence on GPU/TPU. On the 2-core CPU (reference network of
  BENCHMARKS.md, train steps interleaved in one process) chunks of 4 vs
  ``chunk=None``: 302 / 622 / 1483 ms vs 323 / 663 / 1797 ms at T = 8 / 16
  / 32 with a static input (``net(x, T=T)``); with T copies of the input
  4-10 % slower at T = 8 / 16 (457 vs 438, 1092 vs 990 ms) and 15 % faster
  at T = 32 (2080 vs 2454 ms). Folded over all of T the convs' working set
  outgrows the caches. On a GPU larger folded convs are better.

Within a chunk the convs run folded over ``C*B`` images (fold order), the
largest convs the chunk allows.

Direct encoding: ``net(x, T=T)`` with a static ``x [B, H, W, C]`` (no time
axis) means the same input at every step. It passes unbroadcast through
the leading ``Conv2d`` / ``Upsample2d`` layers and into the first
``SpikingConv2d``, whose conv then runs once per chunk instead of once per
step (exactly the outputs of feeding ``[T, B, ...]`` copies); any other
layer gets it broadcast over the chunk's steps.

Training noise: each spiking layer draws step t's noise from
``step_keys(key, T)[t]`` whatever the chunking, so chunked and whole runs see
the same noise. Spike rates: under ``nnx.capture(net, SpikeRate)`` each
spiking layer records one rate for the whole sequence (the mean over all T
steps, whatever the chunking), as a lone layer's call does, with or
without ``remat`` (so the trainer, which captures rates in its loss, trains
a rematerialised stack).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax.nn.conv import Conv2d, SpikingConv2d, StaticInput
from scnn_jax.nn.remat import captures_hidden, checkpointed
from scnn_jax.ops.conv import upsample_nearest


class Upsample2d(nnx.Module):
  """Nearest upsampling ``[..., H, W, C] -> [..., f*H, f*W, C]``.

  Followed by a 3x3 conv, prefer ``SpikingConv2d(..., upsample=2)`` /
  ``Conv2d(..., upsample=2)``: same result, 2.25x fewer FLOPs.
  """

  def __init__(self, factor: int = 2):
    self.factor = factor

  def __call__(self, x):
    return upsample_nearest(x, self.factor)


class Lambda(nnx.Module):
  """A stateless function as a layer (applied to the whole chunk)."""

  def __init__(self, fn: Callable):
    self.fn = fn

  def __call__(self, x):
    return self.fn(x)


# chunk="auto" on CPU (see the module docstring for the measurements).
AUTO_CHUNK_CPU = 4


def resolve_chunk(chunk, platform: str | None = None):
  """``"auto"`` -> ``AUTO_CHUNK_CPU`` on CPU, None (whole sequence) on
  GPU/TPU. Other values pass through."""
  if chunk == "auto":
    platform = platform or jax.default_backend()
    return AUTO_CHUNK_CPU if platform == "cpu" else None
  return chunk


def _is_spiking(layer) -> bool:
  return hasattr(layer, "run") and hasattr(layer, "init_state")


def _takes_static(layer) -> bool:
  # Layers that map a static [B, ...] input to what copies over T would
  # give: per-image stateless ones keep it static, SpikingConv2d turns it
  # into a sequence after its (single) conv.
  return isinstance(layer, (Conv2d, Upsample2d,
                            SpikingConv2d))


def _record_rate(layer, rate):
  # SpikingConv2d records through its neuron module (same capture path as
  # its own call); bare neuron layers record themselves.
  getattr(layer, "neuron", layer).record_rate(rate)


class SpikingSequential(nnx.Module):
  """Layers applied in order to a time-major sequence (module docstring).

  Args:
    layers: modules or callables; spiking ones follow the ``run`` contract.
    chunk: steps per chunk; None: the whole sequence at once; "auto": by
      backend (``resolve_chunk``).
    remat: checkpoint each chunk (with a chunk size) or the whole stack.
    scan_chunks: run the checkpointed chunks in a ``lax.scan`` (True) or a
      Python loop (False: same numbers, but XLA may then keep every chunk's
      recomputation alive at once).
  """

  def __init__(self, layers: Sequence, *, chunk: int | str | None = "auto",
               remat: bool = False, scan_chunks: bool = True):
    if not (chunk is None or chunk == "auto" or (
        isinstance(chunk, int) and not isinstance(chunk, bool)
        and chunk >= 1)):
      raise ValueError("chunk must be 'auto', None or an int >= 1, got "
                       f"{chunk!r}")
    self.layers = nnx.List([l if isinstance(l, nnx.Module) else Lambda(l)
                            for l in layers])
    self.chunk = chunk
    self.remat = remat
    self.scan_chunks = scan_chunks

  def __call__(self, x, *, T: int | None = None,
               rngs: nnx.Rngs | None = None,
               deterministic: bool | None = None, example_ids=None):
    """Outputs ``[T, B, ...]`` for a sequence ``x [T, B, ...]``, or for a
    static ``x [B, ...]`` repeated over ``T`` steps (direct encoding)."""
    static = T is not None
    if static:
      if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
      if x.ndim != 4:
        raise ValueError("with T= the input is one static image batch "
                         f"[B, H, W, C] repeated over T steps; got shape "
                         f"{x.shape} (pass a [T, B, ...] sequence without "
                         "T=)")
    else:
      T = x.shape[0]
    keys = [l.step_keys(l.noise_key(rngs, deterministic), T)
            if _is_spiking(l) and hasattr(l, "noise_key") else None
            for l in self.layers]
    fn = type(self)._chunk
    if self.remat:
      fn = lambda m, *args: checkpointed(m, type(m)._chunk, *args)
    chunk = resolve_chunk(self.chunk)
    C = T if chunk is None else min(chunk, T)
    states = [None] * len(self.layers)
    outs = []
    # Per spiking layer: sum over chunks of (chunk's mean rate x its length).
    rate_sums = [0.0 if _is_spiking(l) else None for l in self.layers]

    def add_rates(rates, steps):
      for i, r in enumerate(rates):
        if r is not None:
          rate_sums[i] += r * steps

    def chunk_x(start, stop):
      if static:
        return StaticInput(x, stop - start)
      return x[start:stop]

    start = 0
    if self.remat and self.scan_chunks and T // C > 1:
      # The first chunk runs outside the loop and gives the state structure;
      # the other whole chunks run in a lax.scan with a checkpointed body.
      k0 = [None if k is None else k[:C] for k in keys]
      y, states, rates = fn(self, chunk_x(0, C), states, k0, example_ids)
      outs.append(y)
      add_rates(rates, C)
      n = T // C - 1
      # nnx.split fails while nnx.capture's stores are attached (a list of
      # layers); rates are recorded below, outside the split module.
      with captures_hidden(self):
        graphdef, mstate = nnx.split(self)

      def body(states, xs):
        xc, kc = xs
        if static:  # the same input in every chunk: not scanned over
          xc = StaticInput(x, C)
        m = nnx.merge(graphdef, mstate)
        y, states, rates = type(m)._chunk(m, xc, states, kc, example_ids)
        return states, (y, rates)

      xs = (None if static else
            x[C:C * (n + 1)].reshape((n, C) + x.shape[1:]))
      ks = [None if k is None else
            k[C:C * (n + 1)].reshape((n, C) + k.shape[1:]) for k in keys]
      states, (ys, rates) = jax.lax.scan(jax.checkpoint(body), states,
                                         (xs, ks), length=n)
      outs.append(ys.reshape((n * C,) + ys.shape[2:]))
      add_rates([None if r is None else jnp.sum(r) for r in rates], C)
      start = C * (n + 1)
    for start in range(start, T, C):
      stop = min(start + C, T)
      chunk_keys = [None if k is None else k[start:stop] for k in keys]
      y, states, rates = fn(self, chunk_x(start, stop), states, chunk_keys,
                            example_ids)
      outs.append(y)
      add_rates(rates, stop - start)
    for layer, total in zip(self.layers, rate_sums):
      if total is not None:
        _record_rate(layer, total / T)
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=0)

  def _chunk(self, x, states, keys, example_ids):
    """(output, new states, per-layer mean spike rate or None) of a chunk.

    ``x`` is the chunk ``[C, B, ...]`` or a ``nn.StaticInput`` (direct
    encoding: one ``[B, ...]`` input for all C steps).
    """
    new_states, rates = [], []
    for layer, state, k in zip(self.layers, states, keys):
      rate = None
      static = isinstance(x, StaticInput)
      if static and not _takes_static(layer):
        x, static = jnp.broadcast_to(x.x, (x.T,) + x.x.shape), False
      if _is_spiking(layer):
        if static:
          x, state = layer.run(x.x, state, k, example_ids, T=x.T)
        else:
          x, state = layer.run(x, state, k, example_ids)
        rate = jnp.mean(x.astype(jnp.float32))
      elif static:
        x = StaticInput(layer(x.x), x.T)
      else:
        x = layer(x)
      new_states.append(state)
      rates.append(rate)
    if isinstance(x, StaticInput):  # no layer consumed the time axis
      x = jnp.broadcast_to(x.x, (x.T,) + x.x.shape)
    return x, new_states, rates

