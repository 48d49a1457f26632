"""Flax NNX spiking layers. SEQUENCES ARE TIME-MAJOR: ``[T, B, H, W, C]``.

Every spiking module obeys one per-step contract and offers a sequence call
built on it:

* ``init_state(shape)`` -> the neuron state for one step's input ``shape``;
* ``step(state, x_t)`` -> ``(state, spikes_t)`` advances ONE time step;
* ``__call__(x)`` runs the whole ``[T, ...]`` sequence (a ``lax.scan``).

Neuron parameters live in the module state: LIF's ``beta`` / ``threshold`` and
every surrogate slope are ``NeuronParam`` variables (not trained, but stacked
and swept by vmap ablations); ALIF's tau (through ``tau = 1/sigmoid(w)``) and
threshold are ``nnx.Param`` (trained, as in paper B). Spike rates are sown as
``SpikeRate`` intermediates; collect them with ``nnx.capture(model, SpikeRate)``.
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
from flax import nnx

from scnn_jax import conv as conv_lib
from scnn_jax import neurons
from scnn_jax import surrogate as surrogate_lib
from scnn_jax.variables import NeuronParam, SpikeRate
# Encoders and decoders are part of the layer API; they live in small modules.
from scnn_jax.decoders import (DECODERS, FixedDecayDecoder, MembraneReadout,  # noqa: F401
                               RateDecoder, TAID, make_decoder)
from scnn_jax.encoders import (ENCODERS, DirectEncoder, RateEncoder,  # noqa: F401
                               make_encoder)

NEURONS = ("lif", "alif")
ORDERS = ("fold", "step")
NOISE_MODES = ("multiplicative", "additive")
NOISE_RESAMPLE = ("step", "sequence")


def _full(shape, value, dtype=jnp.float32):
  return jnp.full(shape, value, dtype)


# "auto" unroll of the neuron scans, per backend.
# XLA CPU: rolled. Once bias gradients stopped fusing with the neuron backward
# pass (conv.add_bias), a fully unrolled scan was no faster than the rolled
# loop at T <= 8 (reference network, T=8: rolled 416 ms vs unrolled 436 ms,
# interleaved; single layer 208 vs 226 ms) and compiled 2-3x slower; partial
# unrolling and full unrolling beyond ~12 steps were slower still
# (BENCHMARKS.md, "unroll" rows). GPU/TPU: full unroll for short sequences
# saves a while-loop iteration (kernel launches) per step; not measured here.
AUTO_UNROLL_MAX_T = 8


class StaticInput(nnx.Pytree):
  """A direct-encoded input: ``x [B, ...]`` repeated over ``T`` steps.

  Passed between layers in place of ``T`` copies so that a conv of it runs
  once (``SpikingConv2d.run``, ``sequential.SpikingSequential``).
  """

  def __init__(self, x, T: int):
    self.x = nnx.data(x)
    self.T = T


def resolve_unroll(unroll, T: int, platform: str | None = None):
  """``"auto"`` -> rolled (1) on CPU; on GPU/TPU full unroll for
  ``T <= AUTO_UNROLL_MAX_T``, else rolled. Other values pass through."""
  if unroll == "auto":
    platform = platform or jax.default_backend()
    if platform == "cpu":
      return 1
    return True if T <= AUTO_UNROLL_MAX_T else 1
  return unroll


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
  """Leaky integrate-and-fire neurons (``neurons.lif_scan``).

  Args:
    beta: decay per step (default 0.9); or give ``tau`` (steps) instead.
    threshold: firing threshold.
    shape: parameter shape, broadcast against one step's input: ``()`` for one
      value per layer, ``(C,)`` per channel.
    trainable: make beta and threshold ``nnx.Param`` instead of
      ``NeuronParam``.
    reset, surrogate, surrogate_param, detach_reset, refractory_steps, remat:
      see ``neurons.lif_scan``. With ``refractory_steps > 0`` the state is
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
        beta = float(neurons.beta_from_tau(tau))
    beta = 0.9 if beta is None else beta
    if reset not in neurons.RESETS:
      raise ValueError(f"unknown reset {reset!r}; allowed: "
                       f"{', '.join(neurons.RESETS)}")
    surrogate_lib.check_kind(surrogate)
    neurons.check_refractory_steps(refractory_steps)
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

  def _kwargs(self):
    return dict(beta=self.beta[...], threshold=self.threshold[...],
                reset=self.reset, surrogate=self.surrogate,
                surrogate_param=self.surrogate_param[...],
                detach_reset=self.detach_reset,
                refractory_steps=self.refractory_steps)

  def scan(self, currents, state=None):
    """``(spikes, membrane)`` over ``currents [T, ...]``; see ``lif_scan``."""
    return neurons.lif_scan(currents, v0=state, remat=self.remat,
                            unroll=resolve_unroll(self.unroll, len(currents)),
                            **self._kwargs())

  def run(self, currents, state=None):
    """``(spikes, final_state)``: the scan without a membrane trace."""
    return neurons.lif_scan(currents, v0=state, remat=self.remat,
                            unroll=resolve_unroll(self.unroll, len(currents)),
                            return_final_state=True, **self._kwargs())

  def init_state(self, shape, dtype=jnp.float32):
    return neurons.lif_initial_state(
        jnp.zeros(shape, neurons.state_dtype(dtype)), self.refractory_steps)

  def step(self, state, current):
    return neurons.lif_step(state, current, **self._kwargs())


class ALIF(_Neuron):
  """Paper B's adaptive LIF: learnable time constant and threshold.

  ``tau = 1 / sigmoid(w)`` with ``w`` an ``nnx.Param`` initialised so that tau
  starts at ``tau`` (paper B: 2, i.e. w = 0); ``threshold`` is an
  ``nnx.Param`` (paper B init 0.5). ``adaptation`` (an ``neurons.Adaptation``)
  adds the spike-triggered rising threshold; its fields are ``NeuronParam``.
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
      adaptation = neurons.Adaptation(*adaptation)
      self.adapt_tau = NeuronParam(_full(shape, adaptation.tau))
      self.adapt_increment = NeuronParam(_full(shape, adaptation.increment))
    self.adaptive = adaptation is not None
    self.surrogate = surrogate
    self.detach_reset = detach_reset
    self.remat = remat
    self.unroll = unroll

  @property
  def tau(self):
    return 1.0 / jax.nn.sigmoid(self.w[...])

  def _kwargs(self):
    adaptation = None
    if self.adaptive:
      adaptation = neurons.Adaptation(self.adapt_tau[...],
                                      self.adapt_increment[...])
    return dict(tau=self.tau, threshold=self.threshold[...],
                v_reset=self.v_reset[...], surrogate=self.surrogate,
                surrogate_param=self.surrogate_param[...],
                detach_reset=self.detach_reset, adaptation=adaptation)

  def scan(self, currents, state=None):
    v0, a0 = (None, None) if state is None else state
    return neurons.alif_scan(currents, v0=v0, a0=a0, remat=self.remat,
                             unroll=resolve_unroll(self.unroll, len(currents)),
                             **self._kwargs())

  def run(self, currents, state=None):
    """``(spikes, (v_T, a_T))``: the scan without traces."""
    v0, a0 = (None, None) if state is None else state
    return neurons.alif_scan(currents, v0=v0, a0=a0, remat=self.remat,
                             unroll=resolve_unroll(self.unroll, len(currents)),
                             return_final_state=True, **self._kwargs())

  def init_state(self, shape, dtype=jnp.float32):
    dtype = neurons.state_dtype(dtype)
    return (jnp.broadcast_to(self.v_reset[...].astype(dtype), shape),
            jnp.zeros(shape, dtype))

  def step(self, state, x):
    return neurons.alif_step(state, x, **self._kwargs())


def make_neuron(kind: str, **kwargs) -> LIF | ALIF:
  """``LIF(**kwargs)`` or ``ALIF(**kwargs)`` by name."""
  if kind == "lif":
    return LIF(**kwargs)
  if kind == "alif":
    return ALIF(**kwargs)
  raise ValueError(f"unknown neuron {kind!r}; allowed: {', '.join(NEURONS)}")


class Conv2d(nnx.Module):
  """2-D conv over any leading axes: ``[..., H, W, Cin] -> [..., H', W', Cout]``.

  Leading axes (time and batch of a sequence) are folded into one batch axis,
  so calling it on ``[T, B, H, W, C]`` convolves all T steps at once.
  ``impl`` picks the formulation (``scnn_jax.conv``): "xla", "matmul",
  "taps", or "auto" (``conv.AUTO_IMPL``). ``upsample=f`` first
  upsamples the input (nearest, x f): "nearest upsample then conv" in one
  layer, computed without building the upsampled image for f=2, 3x3, "SAME"
  (``conv.upsample_conv2d``: 2.25x fewer FLOPs).
  """

  def __init__(self, in_features, out_features, kernel_size=3, *, strides=1,
               padding="SAME", use_bias=True, impl="auto", upsample=1,
               dtype=None,
               param_dtype=jnp.float32,
               kernel_init=nnx.initializers.lecun_normal(),
               bias_init=nnx.initializers.zeros_init(), rngs: nnx.Rngs):
    kh, kw = conv_lib._pairs(kernel_size, "kernel_size")
    self.kernel = nnx.Param(kernel_init(rngs.params(),
                                        (kh, kw, in_features, out_features),
                                        param_dtype))
    self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,),
                                     param_dtype)) if use_bias else None)
    self.impl = conv_lib.resolve_impl(impl)
    if upsample != 1 and strides not in (1, (1, 1)):
      raise ValueError("Conv2d: upsample needs strides=1, got "
                       f"strides={strides}")
    if not (isinstance(upsample, int) and upsample >= 1):
      raise ValueError(f"upsample must be an int >= 1, got {upsample!r}")
    self.upsample = upsample
    self.strides = strides
    self.padding = padding
    self.dtype = dtype
    self.in_features = in_features
    self.out_features = out_features

  def __call__(self, x):
    lead = x.shape[:-3]
    dtype = self.dtype or x.dtype
    kernel = self.kernel[...].astype(dtype)
    flat = x.reshape((-1,) + x.shape[-3:]).astype(dtype)
    if self.upsample != 1:
      y = conv_lib.upsample_conv2d(flat, kernel, factor=self.upsample,
                                   padding=self.padding, impl=self.impl)
    else:
      y = conv_lib.conv2d(flat, kernel, strides=self.strides,
                          padding=self.padding, impl=self.impl)
    if self.bias is not None:
      y = conv_lib.add_bias(y, self.bias[...].astype(dtype))
    return y.reshape(lead + y.shape[1:])


class SpikingConv2d(nnx.Module):
  """Paper A's SNNConv2d: conv, training noise, spiking neurons.

  Input ``x``: ``[T, B, H, W, Cin]``, TIME-MAJOR. Output: spikes
  ``[T, B, H', W', Cout]`` in the input dtype (or ``dtype``).

  Two execution orders give the same result:

  * ``order="fold"``: the conv runs once over all ``T*B`` images, then the
    neuron ``lax.scan`` runs over T. The default: on CPU with
    ``scnn_jax.backend`` options and on GPU/TPU it is the fastest.
  * ``order="step"``: conv and neuron update both inside the scan body; needs
    only one step's currents in memory. As fast as "fold" for one layer on
    CPU (``conv.conv2d`` keeps the conv's backward on the fast path inside
    the rolled scan), ~5 % slower on the reference network.

  Noise (paper A): while training (``deterministic=False``), the conv output
  ``I`` becomes ``I * (1 + std * N(0, 1))`` ("multiplicative", paper A's text)
  or ``I + std * N(0, 1)`` ("additive"). ``noise_std=None`` disables it; a
  number (paper A: 0.1) is stored as a sweepable ``NeuronParam``. Training-mode
  noise needs ``rngs=nnx.Rngs(noise=key)`` at call time. With
  ``example_ids`` (int ``[B]``, e.g. positions in the global batch) the noise
  of example i is drawn from ``fold_in(key, example_ids[i])``, so it does not
  depend on how a batch is split over devices or hosts. ``noise_resample``:
  "step" draws fresh noise at every time step; "sequence" draws once and
  holds it over the T steps (paper A's noise time constant, 10 ms, is longer
  than T steps of 1 ms; and it costs T times fewer random numbers).

  Direct encoding: called with a static input ``x [B, H, W, Cin]`` and
  ``T=``, the layer sees the same image at every step; since the conv is
  linear and its input does not change, it runs ONCE and its output is
  broadcast over T (exactly the result of feeding ``[T, B, ...]`` copies).

  ``remat=True`` checkpoints the whole layer: only its input is kept for the
  backward pass; conv and scan are recomputed.

  ``upsample=2`` upsamples the input (nearest) before the conv, without
  building the upsampled image (``conv.upsample_conv2d``).
  """

  def __init__(self, in_features, out_features, kernel_size=3, *, strides=1,
               padding="SAME", use_bias=True, neuron="lif",
               neuron_kwargs=None, noise_std=None,
               noise_mode="multiplicative", noise_resample="step",
               order="fold", conv_impl="auto",
               remat=False, dtype=None, param_dtype=jnp.float32,
               kernel_init=nnx.initializers.lecun_normal(), upsample=1,
               rngs: nnx.Rngs):
    if order not in ORDERS:
      raise ValueError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")
    if noise_mode not in NOISE_MODES:
      raise ValueError(f"unknown noise_mode {noise_mode!r}; allowed: "
                       f"{', '.join(NOISE_MODES)}")
    if noise_resample not in NOISE_RESAMPLE:
      raise ValueError(f"unknown noise_resample {noise_resample!r}; allowed: "
                       f"{', '.join(NOISE_RESAMPLE)}")
    self.conv = Conv2d(in_features, out_features, kernel_size, strides=strides,
                       padding=padding, use_bias=use_bias, impl=conv_impl,
                       upsample=upsample, dtype=dtype,
                       param_dtype=param_dtype, kernel_init=kernel_init,
                       rngs=rngs)
    self.neuron = (neuron if isinstance(neuron, nnx.Module)
                   else make_neuron(neuron, **(neuron_kwargs or {})))
    self.noise_std = None if noise_std is None else NeuronParam(
        _full((), noise_std))
    self.noise_mode = noise_mode
    self.noise_resample = noise_resample
    self.order = order
    self.remat = remat
    self.deterministic = False

  # -- per-step contract -------------------------------------------------
  def init_state(self, in_shape, dtype=jnp.float32):
    """Neuron state for one step's input of shape ``[B, H, W, Cin]``."""
    up = self.conv.upsample
    hw = conv_lib.output_hw(tuple(up * d for d in in_shape[-3:-1]),
                            self.conv.kernel.shape[:2],
                            self.conv.strides, self.conv.padding)
    return self.neuron.init_state(
        tuple(in_shape[:-3]) + hw + (self.conv.out_features,), dtype)

  def step(self, state, x_t, key=None, example_ids=None):
    """One time step: ``x_t [B, H, W, Cin]`` -> ``(state, spikes_t)``.

    ``key`` is this step's noise key (``step_keys(key, T)[t]`` reproduces
    the sequence call).
    """
    return self.neuron.step(
        state, self._noisy(self.conv(x_t), key, example_ids))

  # -- sequence call -----------------------------------------------------
  def __call__(self, x, *, T: int | None = None,
               rngs: nnx.Rngs | None = None,
               deterministic: bool | None = None, example_ids=None):
    """Spikes ``[T, B, H', W', Cout]`` for ``x [T, B, H, W, Cin]``, or for a
    static ``x [B, H, W, Cin]`` repeated over ``T`` steps (direct encoding)."""
    if x.ndim == 4:
      if not isinstance(T, int) or T < 1:
        raise ValueError("a static input [B, H, W, C] is repeated over T "
                         f"steps: pass T= (an int >= 1), got T={T!r}")
    elif x.ndim == 5:
      if T is not None and T != x.shape[0]:
        raise ValueError(f"T={T} but the sequence has {x.shape[0]} steps")
      T = x.shape[0]
    else:
      raise ValueError("SpikingConv2d expects a time-major sequence "
                       f"[T, B, H, W, C] or a static [B, H, W, C] with T=, "
                       f"got shape {x.shape}")
    keys = self.step_keys(self.noise_key(rngs, deterministic), T)
    spikes, _ = self.run(x, None, keys, example_ids, T=T)
    self.neuron.record_rate(spikes)
    return spikes

  def run(self, x, state=None, keys=None, example_ids=None, T=None):
    """``(spikes, final_state)`` for a chunk ``x [T, B, H, W, Cin]``.

    Starts from ``state`` (``init_state`` if None) and returns the state
    after the last step, so a long sequence can run chunk by chunk
    (``scnn_jax.sequential``) with the same result as one call. ``keys``
    (``[T]`` keys, the chunk's slice of ``step_keys``) turns the training
    noise on. Honours ``remat``; records no spike rate. A static
    ``x [B, H, W, Cin]`` needs ``T``.
    """
    if x.ndim == 4:
      x = StaticInput(x, T)
    if self.remat:
      return checkpointed(self, type(self)._forward, x, state, keys,
                          example_ids)
    return self._forward(x, state, keys, example_ids)

  def noise_key(self, rngs: nnx.Rngs | None, deterministic=None):
    """The call's noise key, or None when no noise is drawn."""
    deterministic = (self.deterministic if deterministic is None
                     else deterministic)
    if self.noise_std is None or deterministic:
      return None
    if rngs is None:
      raise ValueError(
          "SpikingConv2d adds training noise (noise_std is set): call it "
          "with rngs=nnx.Rngs(noise=key), or switch to inference with "
          "model.eval() / deterministic=True")
    return rngs.noise()

  def step_keys(self, key, T: int):
    """Per-step noise keys ``[T]`` (None stays None).

    Step t's noise comes from ``keys[t]`` in every execution order (fold,
    step, chunked), so they all draw the same numbers. With
    ``noise_resample="sequence"`` all T keys are the same key.
    """
    if key is None:
      return None
    if self.noise_resample == "sequence":
      return jnp.broadcast_to(key, (T,))
    return jax.random.split(key, T)

  def _initial_state(self, x, step_shape):
    # zeros [B, 1, 1, 1] from the input: makes the state vary over the same
    # shard_map axes as the data (see neurons._initial).
    like = jnp.zeros_like(x[:, :1, :1, :1], neurons.state_dtype(x.dtype))
    return jax.tree.map(lambda s: s + like,
                        self.init_state(step_shape, x.dtype))

  def _forward(self, x, state, keys, example_ids):
    static = isinstance(x, StaticInput)
    if static:
      x, T = x.x, x.T
    if state is None:
      step = x if static else x[0]
      state = self._initial_state(step, step.shape)
    if self.order == "fold" or static:
      if static:  # the conv of an unchanging input: once, then broadcast
        current = self.conv(x)
        if keys is not None and self.noise_resample == "sequence":
          current = self._noisy(current, keys[0], example_ids)
          keys = None
        current = jnp.broadcast_to(current, (T,) + current.shape)
      else:
        current = self.conv(x)
      if keys is not None:
        if self.noise_resample == "sequence":  # one draw, held over T
          current = jax.vmap(
              lambda c: self._noisy(c, keys[0], example_ids))(current)
        else:
          current = jax.vmap(
              lambda c, k: self._noisy(c, k, example_ids))(current, keys)
      return self.neuron.run(current, state)
    out_dtype = self.conv.dtype or x.dtype
    xs = (x, keys if keys is not None else jnp.zeros((x.shape[0],)))

    def body(state, inputs):
      x_t, k_t = inputs
      state, s_t = self.step(state, x_t, None if keys is None else k_t,
                             example_ids)
      return state, s_t.astype(out_dtype)

    state, spikes = jax.lax.scan(body, state, xs)
    return spikes, state

  def _noisy(self, current, key, example_ids=None):
    """Noise on one step's current ``[B, ...]`` from that step's ``key``."""
    if key is None:
      return current
    if example_ids is None:
      eps = jax.random.normal(key, current.shape, current.dtype)
    else:
      eps = jax.vmap(
          lambda i: jax.random.normal(jax.random.fold_in(key, i),
                                      current.shape[1:], current.dtype)
      )(jnp.asarray(example_ids))
    std = self.noise_std[...].astype(current.dtype)
    if self.noise_mode == "multiplicative":
      return current * (1.0 + std * eps)
    return current + std * eps
