"""2-D convolution in three formulations with identical results.

* ``"xla"``: ``lax.conv_general_dilated``. Fast on GPU/TPU, and on CPU when the
  step is compiled with ``scnn_jax.ops.backend.compiler_options()`` (XLA CPU
  then routes convs through YNNPACK; without those options its conv runs at
  ~15 GFLOP/s here). On CPU its gradients are written as ordinary forward convs
  of explicitly transposed operands (``input_grad``, ``kernel_grad``): with
  JAX's own transpose rules the backward of a conv inside a rolled
  ``lax.scan`` fell off XLA CPU's fast path (~1-2.4 GFLOP/s, the trap of
  BENCHMARKS.md); written this way it runs as fast inside the loop as
  outside.
* ``"matmul"``: patch extraction (im2col) followed by one matmul. On CPU
  faster than "xla" for very few input channels (the 2 -> 32 input layer:
  10.6-10.8 vs 12.7-15.2 ms for the kernel gradient of 128 28x28 images),
  slower from about 8 input channels up.
* ``"taps"``: one matmul of the unpadded input with all kernel taps at once
  (``[N*H*W, Cin] x [Cin, kh*kw*Cout]``), then the taps' shifted outputs are
  summed. It reads the input once instead of kh*kw times, which can pay off
  for very few output channels (readouts): value + grad of 32 -> 1 channels
  over 256 images 16-25 ms vs 42-48 ms with "xla", 64 -> 3 over 128 images
  22-44 vs 56-68 ms; slower from 8 output channels up. The gain depends on
  what XLA fuses around it (followed by ``sin`` instead of ``tanh`` the
  32 -> 1 case ran no faster): time it in your own step.
* ``"auto"``: "xla" (``AUTO_IMPL`` says why it does not pick per shape).

All give the same numbers up to float rounding order; the measurements are
from the 2-core CPU of BENCHMARKS.md with ``backend.compiler_options()``.

Arrays are NHWC, kernels HWIO (the Flax convention). These functions know
nothing about time: fold ``[T, B]`` into the batch before calling them.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from scnn_jax.ops import backend

IMPLS = ("xla", "matmul", "taps")
IMPL_CHOICES = ("auto",) + IMPLS  # what a config or layer may name
Padding = str | int | Sequence[tuple[int, int]]

# What impl="auto" means, on every backend. The per-shape CPU wins of
# "matmul" (input layers) and "taps" (readouts) did not move a whole train
# step: configs/base.py 224.8 ms/step with "xla" everywhere vs 225.2 ms with
# the fastest impl per layer (the literal reference network of BENCHMARKS.md:
# 4 % faster), while a per-shape default would change the float rounding of
# every figure the README reproduces. Both stay one config field away.
AUTO_IMPL = "xla"


def resolve_impl(impl: str) -> str:
  """The formulation ``impl`` names ("auto" -> ``AUTO_IMPL``)."""
  if impl == "auto":
    return AUTO_IMPL
  if impl not in IMPLS:
    raise ValueError(f"unknown conv impl {impl!r}; allowed: "
                     f"{', '.join(IMPL_CHOICES)}")
  return impl


def _pairs(value, name) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  value = tuple(value)
  if len(value) != 2:
    raise ValueError(f"{name} must be an int or a pair, got {value!r}")
  return value


def explicit_padding(padding: Padding, in_hw, kernel_hw, strides):
  """((top, bottom), (left, right)) for "SAME", "VALID", an int or pairs."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, "
                       f"got {padding!r}")
    return tuple(lax.padtype_to_pads(in_hw, kernel_hw, strides,
                                     padding.upper()))
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple(_pairs(p, "padding") for p in padding)


def conv2d(x, kernel, *, strides=1, padding: Padding = "SAME", impl="auto",
           precision=None):
  """Cross-correlation of ``x [N, H, W, Cin]`` with ``kernel [kh, kw, Cin, Cout]``.

  ``impl`` chooses the formulation (module docstring); all give the same
  numbers up to float rounding order.
  """
  impl = resolve_impl(impl)
  if x.ndim != 4:
    raise ValueError(f"conv2d expects x of shape [N, H, W, C], got {x.shape}")
  kh, kw, cin, cout = kernel.shape
  if x.shape[-1] != cin:
    raise ValueError(f"input has {x.shape[-1]} channels, kernel expects {cin}")
  strides = _pairs(strides, "strides")
  pads = explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
  if impl == "xla":
    backend.check_fast_conv_path()
    kernel = _varying_like(kernel, x)
    return _xla_conv(tuple(strides), tuple(map(tuple, pads)), precision)(
        x, kernel)
  if impl == "taps":
    return _conv2d_taps(x, kernel, strides, pads, precision)
  return _conv2d_matmul(x, kernel, strides, pads, precision)


@functools.lru_cache(maxsize=None)
def _xla_conv(strides, pads, precision):
  """``lax.conv`` with a custom VJP: canonical gradient convs on CPU
  (``input_grad``, ``kernel_grad``) and a batching rule that loops over models.

  Under ``jax.vmap`` with both the input and the kernel batched (the K
  models of a vmapped ablation, each with its own weights and activations)
  JAX's rule turns K convs into one grouped conv with K groups, which XLA
  CPU runs ~2x slower than K ordinary convs (measured, 12 models, 16
  channels, value+grad: 227 vs 125 ms). Here that case runs K ordinary convs,
  forward and backward; every other case (only the input batched: fold into
  the batch; only the kernel batched: stack output channels) keeps JAX's
  rule. Same numbers either way.
  """
  def conv(x, kernel):
    return lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision)

  def conv_vjp(x, kernel, g):
    if jax.default_backend() != "cpu":
      # cuDNN / TPU convs take any operand layout; JAX's rule is fine there
      # and the explicit transposes would only add copies.
      return jax.vjp(conv, x, kernel)[1](g)
    return (input_grad(g, kernel, x.shape[1:3], strides, pads, precision),
            kernel_grad(x, g, kernel.shape[:2], strides, pads, precision))

  forward, backward = _per_model(conv), _per_model(conv_vjp)

  @jax.custom_vjp
  def f(x, kernel):
    return forward(x, kernel)

  def f_fwd(x, kernel):
    return forward(x, kernel), (x, kernel)

  def f_bwd(res, g):
    return backward(*res, g)

  f.defvjp(f_fwd, f_bwd)
  return f


def input_grad(g, kernel, in_hw, strides, pads, precision=None):
  """Gradient of ``conv2d`` (impl "xla") w.r.t. its input ``[N, H, W, Cin]``.

  ``g [N, Ho, Wo, Cout]`` is the output gradient and ``in_hw`` the input's
  (H, W). The transposed conv as an ordinary NHWC x HWIO conv of the
  stride-dilated gradient with the flipped kernel, its in/out channels
  swapped explicitly (JAX's rule swaps them through dimension numbers, which
  inside a rolled ``lax.scan`` on XLA CPU runs up to 7x slower: 64->32 conv
  over 128 28x28 images, value + grad, 4-step scan 3975 ms vs 534 ms for the
  same four steps unrolled).
  """
  kh, kw = kernel.shape[:2]
  # Input rows the forward conv never read (stride remainder) get zero
  # gradient through the right/bottom padding.
  pad = [(k - 1 - lo, size - (o - 1) * s - 1 + lo)
         for (lo, _), k, size, o, s in
         zip(pads, (kh, kw), in_hw, g.shape[1:3], strides)]
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
  return lax.conv_general_dilated(
      g, flipped, (1, 1), pad, lhs_dilation=tuple(strides),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)


def kernel_grad(x, g, kernel_hw, strides, pads, precision=None):
  """Gradient of ``conv2d`` (impl "xla") w.r.t. its HWIO kernel.

  ``x [N, H, W, Cin]`` is the conv input, ``g [N, Ho, Wo, Cout]`` the output
  gradient. The same numbers as JAX's transpose rule, but written as an
  ordinary NHWC x HWIO conv of explicitly transposed operands: the batch
  axis becomes the contracted feature axis (``x -> [Cin, H, W, N]``,
  ``g -> [Ho, Wo, N, Cout]``, the output gradient dilated by the stride).
  JAX's rule expresses this conv through swapped dimension numbers instead,
  and inside a rolled ``lax.scan`` XLA CPU then keeps the operands in a
  layout its fast conv path does not take: measured 1.0 vs 124 GFLOP/s
  (value + grad of a 32->64 conv over 128 28x28 images in a 4-step
  checkpointed scan; outside loops both run at the same speed).
  """
  kh, kw = kernel_hw
  ho, wo = g.shape[1:3]
  # Right/bottom padding that makes the output exactly kh x kw: the forward
  # conv may leave input rows unused when (H + pads - kh) % stride != 0.
  pad = [(lo, k - size - lo + (o - 1) * s)
         for (lo, _), k, size, o, s in
         zip(pads, (kh, kw), x.shape[1:3], (ho, wo), strides)]
  out = lax.conv_general_dilated(
      jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)),
      (1, 1), pad, rhs_dilation=tuple(strides),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
  return jnp.transpose(out, (1, 2, 0, 3))


def _per_model(fn):
  """``fn(x, kernel, *rest)`` that vmaps as a loop when x and kernel are batched."""
  looped = jax.custom_batching.custom_vmap(fn)

  @looped.def_vmap
  def rule(axis_size, in_batched, *args):
    if in_batched[0] and in_batched[1]:
      outs = [looped(*[a[i] if b else a for a, b in zip(args, in_batched)])
              for i in range(axis_size)]
      out = jax.tree.map(lambda *o: jnp.stack(o), *outs)
    else:
      out = jax.vmap(fn, in_axes=[0 if b else None for b in in_batched])(
          *args)
    return out, jax.tree.map(lambda _: True, out)

  return looped


def _padded_out_hw(x, kernel, strides, pads):
  """``x`` zero-padded on H, W (any trailing axes kept) and the output size."""
  kh, kw = kernel.shape[:2]
  (pt, pb), (pl, pr) = pads
  ho = (x.shape[1] + pt + pb - kh) // strides[0] + 1
  wo = (x.shape[2] + pl + pr - kw) // strides[1] + 1
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr)) + ((0, 0),) * (x.ndim - 3))
  return xp, ho, wo


def _tap_window(xp, i, j, ho, wo, strides):
  """What kernel tap (i, j) reads for each output pixel: rows i, i + sh, ...
  and columns j, j + sw, ... of the padded ``xp [N, H, W, ...]``."""
  sh, sw = strides
  rest = xp.shape[3:]
  return lax.slice(xp, (0, i, j) + (0,) * len(rest),
                   (xp.shape[0], i + (ho - 1) * sh + 1,
                    j + (wo - 1) * sw + 1) + rest,
                   (1, sh, sw) + (1,) * len(rest))


def _conv2d_matmul(x, kernel, strides, pads, precision):
  kh, kw, cin, cout = kernel.shape
  xp, ho, wo = _padded_out_hw(x, kernel, strides, pads)
  # Channel order (i, j, c) matches kernel.reshape(kh * kw * cin, cout).
  cols = [_tap_window(xp, i, j, ho, wo, strides)
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  n = x.shape[0]
  out = jnp.dot(patches.reshape(n * ho * wo, kh * kw * cin),
                kernel.reshape(kh * kw * cin, cout), precision=precision)
  return out.reshape(n, ho, wo, cout)


def _conv2d_taps(x, kernel, strides, pads, precision):
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  # Partial sums in fp32 even for bf16 operands (what a conv accumulates in).
  acc = jnp.promote_types(x.dtype, jnp.float32)
  taps = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin, kh * kw * cout)
  z = jnp.dot(x.reshape(n * h * w, cin), taps, precision=precision,
              preferred_element_type=acc).reshape(n, h, w, kh, kw, cout)
  # Padding the per-tap outputs equals padding the input: zeros map to 0.
  zp, ho, wo = _padded_out_hw(z, kernel, strides, pads)
  y = sum(_tap_window(zp, i, j, ho, wo, strides)[:, :, :, i, j]
          for i in range(kh) for j in range(kw))
  return y.astype(jnp.result_type(x, kernel))


def upsample_nearest(x, factor: int = 2):
  """Nearest-neighbour upsampling of ``x [..., H, W, C]`` by ``factor``."""
  x = jnp.repeat(x, factor, axis=-3)
  return jnp.repeat(x, factor, axis=-2)


def _phase_taps(kernel, axis, phase):
  # Along one spatial axis, a 3-tap kernel over a x2 nearest-upsampled input
  # touches only 2 input pixels: output 2i reads inputs (i-1, i, i) and
  # output 2i+1 reads (i, i, i+1), so the taps sharing an input add up.
  k0, k1, k2 = jnp.split(kernel, 3, axis=axis)
  if phase == 0:
    return jnp.concatenate([k0, k1 + k2], axis)
  return jnp.concatenate([k0 + k1, k2], axis)


def upsample_conv2d(x, kernel, *, factor=2, padding: Padding = "SAME",
                    impl="auto", precision=None):
  """``conv2d(upsample_nearest(x, factor), kernel)`` (stride 1).

  For the common case (factor 2, 3x3 kernel, "SAME") it never builds the
  upsampled image: each of the 4 output phases (even/odd row x column) is a
  2x2 conv of the low-resolution input with summed taps, then the phases are
  interleaved. That is 16 instead of 36 multiply-adds per input pixel and
  channel pair (2.25x fewer FLOPs) and 4x less conv input traffic; measured
  2.1x faster value+grad for 64->32 channels at 14->28 px (BENCHMARKS.md).
  Other cases upsample explicitly. Same numbers up to float rounding order.
  """
  kh, kw = kernel.shape[:2]
  same = isinstance(padding, str) and padding.upper() == "SAME"
  if factor == 1:
    return conv2d(x, kernel, padding=padding, impl=impl, precision=precision)
  if not (factor == 2 and (kh, kw) == (3, 3) and same):
    return conv2d(upsample_nearest(x, factor), kernel, padding=padding,
                  impl=impl, precision=precision)
  n, h, w, _ = x.shape
  rows = []
  for a in (0, 1):
    ka = _phase_taps(kernel, 0, a)
    cols = []
    for b in (0, 1):
      kab = _phase_taps(ka, 1, b)
      pads = ((1, 0) if a == 0 else (0, 1), (1, 0) if b == 0 else (0, 1))
      cols.append(conv2d(x, kab, padding=pads, impl=impl,
                         precision=precision))
    rows.append(jnp.stack(cols, axis=3))  # [N, H, W, 2 (b), Cout]
  y = jnp.stack(rows, axis=2)  # [N, H, 2 (a), W, 2 (b), Cout]
  return y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])


def add_bias(y, bias):
  """``y + bias`` over the last axis, with a fast bias gradient on XLA CPU.

  Autodiff turns the bias gradient into ``sum(g, axis=all but last)``; XLA CPU
  fuses that reduction with whatever produced ``g`` (a ReLU mask, a whole
  unrolled neuron backward pass) into one reduce loop that recomputes the
  producers and runs 10-40x slower than the materialised sum. Here the
  gradient is a matmul ``ones[1, N] @ g[N, C]``: ``g`` is materialised anyway
  (the conv backward reads it) and the dot is never fused with elementwise
  producers. Measured (BENCHMARKS.md, "bias gradient"): conv+ReLU value+grad
  237 -> 181 ms, SpikingConv2d 477 -> 226 ms. Same numbers up to summation
  order.
  """
  return _add_bias(y, _varying_like(bias, y))


def _varying_like(param, x):
  """``param`` with the varying mesh axes of ``x`` (a no-op outside shard_map).

  Inside shard_map a replicated parameter meets activations that vary over
  the mesh. Giving it their varying axes before a custom VJP keeps the
  implicit broadcast -- whose transpose is the psum of the parameter's
  gradient -- in JAX's autodiff, and the custom VJP sees matching types.
  """
  return param + jnp.zeros_like(x[(0,) * x.ndim]).astype(param.dtype)


@jax.custom_vjp
def _add_bias(y, bias):
  return y + bias


def _add_bias_fwd(y, bias):
  return y + bias, None


def _add_bias_bwd(_, g):
  c = g.shape[-1]
  flat = g.reshape(-1, c)
  ones = jnp.ones((1, flat.shape[0]), g.dtype)
  db = lax.dot_general(ones, flat, (((1,), (0,)), ((), ())),
                       preferred_element_type=jnp.float32)[0]
  return g, db.astype(g.dtype)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def output_hw(in_hw, kernel_hw, strides, padding: Padding) -> tuple[int, int]:
  """Spatial output size of ``conv2d`` for an input of size ``in_hw``."""
  strides = _pairs(strides, "strides")
  pads = explicit_padding(padding, in_hw, kernel_hw, strides)
  return tuple((size + lo + hi - k) // s + 1 for size, (lo, hi), k, s in
               zip(in_hw, pads, kernel_hw, strides))


def flops(batch, out_hw, kernel_hw, cin, cout) -> int:
  """Multiply-adds x 2 of one forward conv (for GFLOP/s and SynOp figures)."""
  return 2 * batch * out_hw[0] * out_hw[1] * kernel_hw[0] * kernel_hw[1] * cin * cout
