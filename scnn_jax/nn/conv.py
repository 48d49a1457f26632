"""Conv layers: ``Conv2d``, paper A's ``SpikingConv2d`` and a PyTorch-style
``ConvTranspose2d``. SEQUENCES ARE TIME-MAJOR: ``[T, B, H, W, C]``.

The convs themselves are ``scnn_jax.ops.conv``'s formulations; the neurons
of ``SpikingConv2d`` are ``scnn_jax.nn.neurons``'.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from scnn_jax.nn.init import lecun_normal_np
from scnn_jax.nn.neurons import make_neuron
from scnn_jax.nn.remat import checkpointed
from scnn_jax.nn.variables import NeuronParam
from scnn_jax.ops import conv as conv_lib
from scnn_jax.ops import neurons as dynamics

ORDERS = ("fold", "step")
NOISE_MODES = ("multiplicative", "additive")
NOISE_RESAMPLE = ("step", "sequence")


class StaticInput(nnx.Pytree):
  """A direct-encoded input: ``x [B, ...]`` repeated over ``T`` steps.

  Passed between layers in place of ``T`` copies so that a conv of it runs
  once (``SpikingConv2d.run``, ``sequential.SpikingSequential``).
  """

  def __init__(self, x, T: int):
    self.x = nnx.data(x)
    self.T = T


class Conv2d(nnx.Module):
  """2-D conv over any leading axes: ``[..., H, W, Cin] -> [..., H', W', Cout]``.

  Leading axes (time and batch of a sequence) are folded into one batch axis,
  so calling it on ``[T, B, H, W, C]`` convolves all T steps at once.
  ``impl`` picks the formulation (``scnn_jax.ops.conv``): "xla", "matmul",
  "taps", or "auto" (``ops.conv.AUTO_IMPL``). ``upsample=f`` first
  upsamples the input (nearest, x f): "nearest upsample then conv" in one
  layer, computed without building the upsampled image for f=2, 3x3, "SAME"
  (``ops.conv.upsample_conv2d``: 2.25x fewer FLOPs).
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
    ``scnn_jax.ops.backend`` options and on GPU/TPU it is the fastest.
  * ``order="step"``: conv and neuron update both inside the scan body; needs
    only one step's currents in memory. As fast as "fold" for one layer on
    CPU (``ops.conv.conv2d`` keeps the conv's backward on the fast path inside
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
  building the upsampled image (``ops.conv.upsample_conv2d``).
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
        jnp.full((), noise_std, jnp.float32))
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
    (``scnn_jax.nn.sequential``) with the same result as one call. ``keys``
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
    # shard_map axes as the data (see ops.neurons._initial).
    like = jnp.zeros_like(x[:, :1, :1, :1], dynamics.state_dtype(x.dtype))
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


def transposed_conv_kernel_to_phases(kernel):
  """A 3x3 stride-2 transposed-conv kernel as a 2x2 conv with 4x outputs.

  ``kernel [3, 3, Cin, Cout]`` -> ``[2, 2, Cin, 4 * Cout]`` ordered
  ``(row phase, column phase, Cout)``. With padding 1 and output padding 1,
  output row ``2m`` sees input row ``m`` through kernel row 1, and output row
  ``2m + 1`` sees rows ``m`` and ``m + 1`` through kernel rows 0 and 2 (in
  cross-correlation form); the same holds for columns.
  """
  kh, kw, cin, cout = kernel.shape
  if (kh, kw) != (3, 3):
    raise ValueError(f"phase form needs a 3x3 kernel, got {kernel.shape}")
  padded = jnp.concatenate([kernel, jnp.zeros((1, 3, cin, cout), kernel.dtype)],
                           0)
  padded = jnp.concatenate([padded, jnp.zeros((4, 1, cin, cout),
                                               kernel.dtype)], 1)
  taps = jnp.array([[1, 3], [0, 2]])  # [phase, tap] -> kernel index (3 = zero)
  # k[a, b, :, p, q, :] = padded[taps[p, a], taps[q, b]]
  rows = taps.T[:, None, :, None]      # [a, 1, p, 1]
  cols = taps.T[None, :, None, :]      # [1, b, 1, q]
  k = padded[rows, cols]               # [a, b, p, q, Cin, Cout]
  k = jnp.transpose(k, (0, 1, 4, 2, 3, 5))
  return k.reshape(2, 2, cin, 4 * cout)


class ConvTranspose2d(nnx.Module):
  """PyTorch-style ``ConvTranspose2d`` (3x3), NHWC, over any leading axes.

  ``strides=2, padding=1, output_padding=1`` doubles H and W (FSVAE's
  upsampling layer); ``strides=1, padding=1`` keeps them. The kernel is HWIO
  in cross-correlation form: a PyTorch weight ``w [Cin, Cout, kh, kw]``
  corresponds to ``w.transpose(2, 3, 0, 1)[::-1, ::-1]``.

  ``impl="phase"`` (default) computes the stride-2 case as one 2x2 conv with
  4x output channels followed by depth-to-space: 16 instead of 36 multiply-
  adds per output pixel-channel of the zero-dilated form, and a plain conv
  that stays on every backend's fast path. ``impl="dilated"`` is the textbook
  ``lhs_dilation`` form (same numbers).
  """

  def __init__(self, in_features, out_features, kernel_size=3, *, strides=1,
               padding=1, output_padding=0, impl="phase", rngs: nnx.Rngs):
    if kernel_size != 3:
      raise ValueError("ConvTranspose2d supports 3x3 kernels")
    if strides not in (1, 2):
      raise ValueError(f"strides must be 1 or 2, got {strides}")
    if impl not in ("phase", "dilated"):
      raise ValueError(f"unknown impl {impl!r}; allowed: phase, dilated")
    self.kernel = nnx.Param(lecun_normal_np(
        rngs.params(), (3, 3, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
    self.strides = strides
    self.padding = padding
    self.output_padding = output_padding
    self.impl = impl
    self.out_features = out_features

  def __call__(self, x):
    lead = x.shape[:-3]
    x4 = x.reshape((-1,) + x.shape[-3:])
    kernel = self.kernel[...].astype(x.dtype)
    s, p, op = self.strides, self.padding, self.output_padding
    dn = ("NHWC", "HWIO", "NHWC")
    if s == 2 and self.impl == "phase" and (p, op) == (1, 1):
      n, h, w, _ = x4.shape
      xp = jnp.pad(x4, ((0, 0), (0, 1), (0, 1), (0, 0)))
      y = lax.conv_general_dilated(xp, transposed_conv_kernel_to_phases(kernel),
                                   (1, 1), "VALID", dimension_numbers=dn)
      c = self.out_features
      y = y.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
      y = y.reshape(n, 2 * h, 2 * w, c)
    else:
      lo, hi = 2 - p, 2 - p + op
      y = lax.conv_general_dilated(x4, kernel, (1, 1), ((lo, hi), (lo, hi)),
                                   lhs_dilation=(s, s), dimension_numbers=dn)
    y = y + self.bias[...].astype(y.dtype)
    return y.reshape(lead + y.shape[1:])
