"""Functional checks of the performance switches: chunked / rematerialised
execution, mixed precision, the fast bias gradient, host allocator tuning.
Equality of outputs and gradients only; speed and memory live in
benchmarks/ (BENCHMARKS.md)."""

import functools
import os
import re
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax import nn
from scnn_jax.nn import sequential
from scnn_jax.ops import backend, conv


def _net(neuron="lif", noise_std=None, chunk=None, remat=False, order="fold",
         dtype=None, deep=None, scan_chunks=True):
  """deep: two spiking layers (stride 2, upsample); default: deep without
  noise, one spiking layer with noise (keeps compile times short)."""
  deep = noise_std is None if deep is None else deep
  rngs = nnx.Rngs(0)
  kw = dict(neuron=neuron, noise_std=noise_std, order=order, dtype=dtype,
            neuron_kwargs=dict(threshold=0.3) if neuron == "lif" else None)
  stack = [nn.SpikingConv2d(2, 4, rngs=rngs, **kw)]
  if deep:
    stack += [nn.SpikingConv2d(4, 4, strides=2, rngs=rngs, **kw),
              sequential.Upsample2d(2)]
  stack.append(nn.Conv2d(4, 1, rngs=rngs, dtype=dtype))
  return sequential.SpikingSequential(stack, chunk=chunk, remat=remat,
                                      scan_chunks=scan_chunks)


def _x(T=4):
  return jax.random.uniform(jax.random.PRNGKey(0), (T, 2, 8, 8, 2)) * 2


def _loss_and_grads(model, x, noise=False):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit  # one compilation instead of op-by-op dispatch of the scans
  def f(params, x):
    def loss(params):
      m = nnx.merge(graphdef, params, rest)
      r = nnx.Rngs(noise=7) if noise else None
      y = m(x, rngs=r)
      return jnp.mean(jax.nn.sigmoid(jnp.mean(y, 0)) ** 2)
    return jax.value_and_grad(loss)(params)
  return f(params, x)


@functools.lru_cache(maxsize=None)
def _reference(neuron, noise):
  std = 0.2 if noise else None
  return _loss_and_grads(_net(neuron, std), _x(), noise)


@pytest.mark.parametrize("neuron,noise,chunk,remat,scan", [
    ("lif", True, 2, True, True), ("lif", True, 2, True, False),
    ("alif", False, 3, False, True)])
def test_chunked_remat_matches_layer_by_layer(neuron, noise, chunk, remat,
                                              scan):
  # scan=True: the checkpointed chunk scan (the default); False: a Python
  # loop of checkpointed chunks.
  x = _x()
  std = 0.2 if noise else None
  l0, g0 = _reference(neuron, noise)
  l1, g1 = _loss_and_grads(
      _net(neuron, std, chunk, remat, scan_chunks=scan), x, noise)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  flat0, flat1 = jax.tree.leaves(g0), jax.tree.leaves(g1)
  assert len(flat0) == len(flat1)
  assert sum(float(jnp.abs(a).sum()) for a in flat0) > 0
  for a, b in zip(flat0, flat1):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_spikes_of_chunks_equal_the_whole_sequence():
  x = _x(5)
  run = lambda m: jax.jit(lambda x: m(x))(x)
  whole = run(_net())
  np.testing.assert_array_equal(run(_net(chunk=2)), whole)  # 2 + 2 + 1


def test_fold_and_step_orders_draw_the_same_noise():
  x = _x(5)[:, :, :, :, :2]
  a = nn.SpikingConv2d(2, 3, noise_std=0.3, rngs=nnx.Rngs(0),
                       neuron_kwargs=dict(threshold=0.2))
  b = nn.SpikingConv2d(2, 3, noise_std=0.3, rngs=nnx.Rngs(0),
                       neuron_kwargs=dict(threshold=0.2), order="step",
                       conv_impl="xla")
  call = lambda m: jax.jit(lambda x: m(x, rngs=nnx.Rngs(noise=3)))(x)
  ya, yb = call(a), call(b)
  assert 0 < float(ya.mean()) < 1
  np.testing.assert_array_equal(ya, yb)


def test_layer_remat_and_neuron_remat_keep_gradients():
  x = _x()
  _, g0 = _reference("alif", False)
  # whole stack checkpointed, and each layer and neuron scan inside it
  m = _net("alif", remat=True)
  for l in m.layers:
    if isinstance(l, nn.SpikingConv2d):
      l.remat = True
      l.neuron.remat = True
  _, g1 = _loss_and_grads(m, x)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_mixed_precision_bf16_convs_fp32_state():
  x = _x()
  m = _net(dtype=jnp.bfloat16, deep=False)
  lyr = m.layers[0]
  state = lyr.init_state(x.shape[1:], jnp.bfloat16)
  assert state.dtype == jnp.float32  # membrane stays fp32
  spikes, final = jax.jit(lambda x: lyr.run(x))(x.astype(jnp.bfloat16))
  assert spikes.dtype == jnp.bfloat16 and final.dtype == jnp.float32
  y = jax.jit(lambda x: m(x))(x)
  assert y.dtype == jnp.bfloat16
  _, g = _loss_and_grads(m, x)
  k = g["layers"][0]["conv"]["kernel"][...]
  assert k.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(k)))
  # close to the fp32 network's output (bf16 conv rounding only)
  y32 = jax.jit(lambda x: _net(deep=False)(x))(x)
  assert float(jnp.mean(jnp.abs(y.astype(jnp.float32) - y32))) < 0.1


def test_add_bias_gradient_matches_autodiff():
  y = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5, 6))
  b = jax.random.normal(jax.random.PRNGKey(1), (6,))
  f = lambda y, b: jnp.sum(jnp.sin(conv.add_bias(y, b)))
  g = lambda y, b: jnp.sum(jnp.sin(y + b))
  gf = jax.jit(jax.grad(f, (0, 1)))(y, b)
  for a, c in zip(gf, jax.jit(jax.grad(g, (0, 1)))(y, b)):
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
  fb = jax.jit(jax.grad(lambda b: jnp.sum(conv.add_bias(
      y.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))))(b)
  assert fb.dtype == jnp.float32
  # under vmap (ablations stack models)
  vb = jax.jit(jax.vmap(jax.grad(f, 1), in_axes=(None, 0)))(
      y, jnp.stack([b, b]))
  np.testing.assert_allclose(vb[0], gf[1], rtol=1e-6)


@pytest.mark.parametrize("batched", ["both", "input", "kernel"])
def test_vmapped_conv_equals_separate_convs_and_never_groups(batched):
  # "both": the models of a vmapped ablation, each with its own kernel and
  # activations; JAX's own rule would make one grouped conv, conv2d runs K
  # ordinary ones. The other cases keep JAX's rule.
  k = 3
  xs = jax.random.normal(jax.random.PRNGKey(0), (k, 2, 7, 7, 4))
  ws = jax.random.normal(jax.random.PRNGKey(1), (k, 3, 3, 4, 5))
  x_ax, w_ax = {"both": (0, 0), "input": (0, None), "kernel": (None, 0)}[batched]
  xs = xs if x_ax == 0 else xs[0]
  ws = ws if w_ax == 0 else ws[0]
  f = lambda w, x: jnp.sum(jnp.sin(conv.conv2d(x, w, strides=2, padding=1)))
  vg = jax.vmap(jax.value_and_grad(f, (0, 1)), in_axes=(w_ax, x_ax))
  (v, (gw, gx)) = jax.jit(vg)(ws, xs)
  for i in range(k):
    wi = ws[i] if w_ax == 0 else ws
    xi = xs[i] if x_ax == 0 else xs
    ref = jax.lax.conv_general_dilated(
        xi, wi, (2, 2), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    vi, (gwi, gxi) = jax.value_and_grad(
        lambda w, x: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(
            x, w, (2, 2), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC")))), (0, 1))(wi, xi)
    np.testing.assert_allclose(v[i], vi, rtol=1e-5)
    np.testing.assert_allclose(gw[i], gwi, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx[i], gxi, rtol=1e-4, atol=1e-5)
    assert ref.shape == (2, 4, 4, 5)
  if batched == "both":
    # The lowered module, not the jaxpr: newer JAX prints a repeated
    # sub-jaxpr once, which would hide the K separate convs.
    text = jax.jit(vg).lower(ws, xs).as_text()
    assert text.count("stablehlo.convolution") >= 3 * k
    groups = re.findall(r"(?:feature|batch)_group_count = (\d+)", text)
    assert groups and set(groups) == {"1"}


@pytest.mark.parametrize("hw,kernel,strides,padding", [
    ((9, 8), (3, 3), 2, "SAME"),
    ((9, 7), (3, 3), 2, "VALID"), ((10, 11), (5, 3), (3, 2), "SAME"),
    ((8, 8), (3, 3), (1, 2), ((2, 0), (1, 3))), ((7, 7), (2, 2), 2, 3),
    ((6, 6), (1, 1), 2, "VALID")])
def test_conv_gradients_match_jax_transpose_rules(hw, kernel, strides,
                                                  padding):
  # input_grad / kernel_grad (conv2d's CPU gradients) against JAX's own
  # transpose rules, including strides that leave input rows unread and
  # padding wider than the kernel.
  x = jax.random.normal(jax.random.PRNGKey(0), (3,) + hw + (4,))
  k = jax.random.normal(jax.random.PRNGKey(1), kernel + (4, 5))
  s2 = (strides,) * 2 if isinstance(strides, int) else strides
  pads = conv.explicit_padding(padding, hw, kernel, s2)
  ref_conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, s2, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g = jax.random.normal(jax.random.PRNGKey(2),
                        jax.eval_shape(ref_conv, x, k).shape)

  @jax.jit  # one compilation per case instead of op-by-op dispatch
  def all_grads(x, k, g):
    gx, gk = jax.vjp(ref_conv, x, k)[1](g)
    cx, ck = jax.vjp(lambda x, k: conv.conv2d(x, k, strides=strides,
                                              padding=padding), x, k)[1](g)
    return (gx, gk, conv.input_grad(g, k, hw, s2, pads),
            conv.kernel_grad(x, g, kernel, s2, pads), cx, ck)

  gx, gk, ix, ik, cx, ck = all_grads(x, k, g)
  np.testing.assert_allclose(ix, gx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ik, gk, rtol=1e-5, atol=1e-5)
  # and through conv2d's custom VJP
  np.testing.assert_allclose(cx, gx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ck, gk, rtol=1e-5, atol=1e-5)


def test_conv_gradients_inside_a_scan_are_plain_convs():
  # The CPU trap: JAX's transpose rules express the gradient convs through
  # swapped dimension numbers, which inside a rolled loop XLA CPU ran ~30x
  # slower. conv2d's gradients are plain NHWC x HWIO convs like the forward.
  x = jnp.ones((3, 2, 9, 9, 4))
  k = jnp.full((3, 3, 4, 5), 0.1)

  def f(k, x):
    def body(c, xt):
      return c + jnp.sum(jnp.sin(conv.conv2d(xt, k, strides=2))), None
    return jax.lax.scan(body, 0.0, x)[0]

  text = jax.jit(jax.grad(f, (0, 1))).lower(k, x).as_text()
  dims = re.findall(r"dim_numbers = (\[[^\]]*\]x\[[^\]]*\]->\[[^\]]*\])",
                    text)
  assert len(dims) == 3  # forward, input gradient, kernel gradient
  assert set(dims) == {"[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"}


def _step_temp_bytes(T, chunk, remat, scan_chunks=True):
  rngs = nnx.Rngs(0)
  kw = dict(neuron_kwargs=dict(threshold=0.3))
  net = sequential.SpikingSequential(
      [nn.SpikingConv2d(2, 8, rngs=rngs, **kw),
       nn.SpikingConv2d(8, 8, strides=2, rngs=rngs, **kw),
       sequential.Upsample2d(2), nn.Conv2d(8, 1, rngs=rngs)],
      chunk=chunk, remat=remat, scan_chunks=scan_chunks)
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  x = jnp.ones((T, 4, 16, 16, 2))
  loss = lambda p: jnp.mean(nnx.merge(graphdef, p, rest)(x) ** 2)
  compiled = backend.jit(jax.grad(loss)).lower(params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_chunked_remat_keeps_step_memory_flat_in_T():
  # XLA's own buffer assignment of the compiled gradient (exact, no timing):
  # chunks of 2 with remat need about the same temporaries at T = 16 as at
  # T = 4; layer by layer they grow with T, and so they do when the chunks
  # are a Python loop (XLA hoists the recomputations).
  flat = _step_temp_bytes(16, 2, True) / _step_temp_bytes(4, 2, True)
  grows = _step_temp_bytes(16, None, False) / _step_temp_bytes(4, None, False)
  assert flat <= 1.5, flat
  assert grows >= 3.0, grows
  assert (_step_temp_bytes(16, 2, True, scan_chunks=False)
          >= 2 * _step_temp_bytes(16, 2, True))


def test_final_state_continues_the_sequence():
  x = _x(4)[..., :2]
  lyr = nn.SpikingConv2d(2, 3, neuron="alif", rngs=nnx.Rngs(0))
  run = jax.jit(lambda x, st: lyr.run(x, st))
  whole, _ = run(x, None)
  a, st = run(x[:3], None)
  b, _ = run(x[3:], st)
  np.testing.assert_array_equal(jnp.concatenate([a, b]), whole)


def test_tune_host_allocator_sets_glibc_malloc_on_linux(monkeypatch):
  """On glibc it calls mallopt(M_MMAP_MAX=0), (M_TRIM_THRESHOLD=t),
  (M_ARENA_MAX=1) and reports success; elsewhere it does nothing."""
  import ctypes
  import sys
  calls = []

  class FakeLibc:
    def mallopt(self, param, value):
      calls.append((param, value))
      return 1

  monkeypatch.setattr(sys, "platform", "linux")
  monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
  assert backend.tune_host_allocator(trim_threshold=1234) is True
  assert calls == [(-4, 0), (-1, 1234), (-8, 1)]

  calls.clear()

  class RefusingLibc(FakeLibc):
    def mallopt(self, param, value):
      calls.append((param, value))
      return 0

  monkeypatch.setattr(ctypes, "CDLL", lambda name: RefusingLibc())
  assert backend.tune_host_allocator() is False
  monkeypatch.setattr(sys, "platform", "darwin")
  calls.clear()
  assert backend.tune_host_allocator() is False and calls == []


def test_tune_host_allocator_leaves_computation_correct():
  assert float(jnp.sum(jnp.ones((1000, 1000)))) == 1e6
  backend.tune_host_allocator()
  assert float(jnp.sum(jnp.ones((1000, 1000)))) == 1e6


@pytest.mark.parametrize("chunk,remat,scan", [
    (3, False, True), (2, True, True)])
def test_sequential_static_input_equals_copies_over_time(chunk, remat, scan):
  # net(x, T=T) with x [B, H, W, C] == net(T copies of x), outputs and
  # gradients, in uneven chunks (3 + 1 of T = 4) and in a checkpointed chunk
  # scan; noise on, so the step keys line up too.
  # A leading Upsample2d stays static; the Lambda after the first spiking
  # layer gets an ordinary sequence.
  def net():
    rngs = nnx.Rngs(0)
    return sequential.SpikingSequential(
        [sequential.Upsample2d(2),
         nn.SpikingConv2d(2, 4, noise_std=0.2, rngs=rngs,
                          neuron_kwargs=dict(threshold=0.3)),
         lambda h: h * 2.0,
         nn.SpikingConv2d(4, 4, strides=2, rngs=rngs,
                          neuron_kwargs=dict(threshold=0.3)),
         nn.Conv2d(4, 1, rngs=rngs)],
        chunk=chunk, remat=remat, scan_chunks=scan)

  x = _x(1)[0]
  T = 4
  graphdef, params, rest = nnx.split(net(), nnx.Param, ...)

  def run(params, static):
    m = nnx.merge(graphdef, params, rest)
    r = nnx.Rngs(noise=7)
    if static:
      return m(x, T=T, rngs=r)
    return m(jnp.broadcast_to(x, (T,) + x.shape), rngs=r)

  def loss(params, static):
    return jnp.mean(jax.nn.sigmoid(jnp.mean(run(params, static), 0)) ** 2)

  f = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  (l0, g0), (l1, g1) = f(params, False), f(params, True)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  assert sum(float(jnp.abs(a).sum()) for a in jax.tree.leaves(g0)) > 0
  # The first conv runs on the B = 2 images of a chunk, not on C*B copies.
  jaxpr = str(jax.make_jaxpr(lambda p: run(p, True))(params))
  first = re.search(r"conv_general_dilated\[[^\]]*\] (\w+) ", jaxpr)
  assert first is not None
  shape = re.search(rf"\b{first.group(1)}:f32\[(\d+),", jaxpr)
  assert shape is not None and shape.group(1) == "2", shape


def test_sequential_static_input_errors():
  net = sequential.SpikingSequential(
      [nn.SpikingConv2d(2, 4, rngs=nnx.Rngs(0))])
  with pytest.raises(ValueError, match="T must be an int >= 1"):
    net(_x(1)[0], T=0)
  with pytest.raises(ValueError, match=r"static image batch \[B, H, W, C\]"):
    net(_x(2), T=2)


def test_sequential_errors():
  for bad in (0, "4", 2.0, True):
    with pytest.raises(ValueError, match="chunk must be 'auto', None or an "
                       "int >= 1"):
      sequential.SpikingSequential([], chunk=bad)
  assert sequential.resolve_chunk("auto", "cpu") == sequential.AUTO_CHUNK_CPU
  assert sequential.resolve_chunk("auto", "gpu") is None
  assert sequential.resolve_chunk(3, "gpu") == 3


@pytest.mark.parametrize("chunk", [None, 2, 4])
def test_sequential_records_whole_sequence_spike_rates(chunk):
  # T = 6 whole, in chunks of 2 or of 4 + 2: each layer records the mean over all steps,
  # the same value a lone layer's own call records.
  from scnn_jax import metrics
  from scnn_jax.nn.variables import SpikeRate
  x = jax.random.uniform(jax.random.PRNGKey(0), (6, 2, 8, 8, 2)) * 3
  make = lambda: [nn.SpikingConv2d(2, 4, rngs=nnx.Rngs(0)),
                  nn.SpikingConv2d(4, 4, rngs=nnx.Rngs(1))]
  a, b = make()
  _, cap_a = nnx.capture(a, SpikeRate)(x)
  _, cap_b = nnx.capture(b, SpikeRate)(a(x))
  want = [metrics.spike_rates(cap_a)["neuron"],
          metrics.spike_rates(cap_b)["neuron"]]
  assert 0.0 < want[1] < want[0] < 1.0  # non-trivial and distinct
  net = sequential.SpikingSequential(make(), chunk=chunk)
  _, cap = nnx.capture(net, SpikeRate)(x)
  got = metrics.spike_rates(cap)
  assert sorted(got) == ["layers/0/neuron", "layers/1/neuron"]
  np.testing.assert_allclose(
      [got["layers/0/neuron"], got["layers/1/neuron"]], want, rtol=1e-6)
  # Rematerialised (checkpointed chunks; chunk 2 = first chunk + a chunk
  # scan): the same rates; there, the trainer's pattern (capture inside the
  # loss, module merged inside jit, gradient) gives the same gradients.
  remat = sequential.SpikingSequential(make(), chunk=chunk, remat=True)
  _, cap_r = nnx.capture(remat, SpikeRate)(x)
  np.testing.assert_allclose(
      list(metrics.spike_rates(cap_r).values()), want, rtol=1e-6)
  if chunk != 2:
    return

  @jax.jit
  def grads(graphdef, params):
    def loss(params):
      m = nnx.merge(graphdef, params)
      y, cap = nnx.capture(m, SpikeRate)(x)
      # + the captured rates: their gradient flows through the capture too
      return jnp.mean(y * jnp.arange(y.shape[-1])) + sum(
          jnp.sum(r) for r in jax.tree.leaves(cap))
    return jax.grad(loss)(params)

  g_plain = grads(*nnx.split(net))
  g_remat = grads(*nnx.split(remat))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               g_plain, g_remat)
  assert float(jnp.abs(g_plain["layers"][0]["conv"]["kernel"]).max()) > 0


@pytest.mark.parametrize("impl,hw", [("xla", (5, 4)), ("matmul", (6, 6))])
def test_upsample_conv_equals_upsample_then_conv(impl, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + hw + (3,))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
  ref = lambda x, k: conv.conv2d(conv.upsample_nearest(x), k, impl=impl)
  new = lambda x, k: conv.upsample_conv2d(x, k, impl=impl)
  np.testing.assert_allclose(new(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  for a, b in zip(jax.jit(jax.grad(loss(new), (0, 1)))(x, k),
                  jax.jit(jax.grad(loss(ref), (0, 1)))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # other kernel sizes / paddings take the explicit path
  k5 = jax.random.normal(jax.random.PRNGKey(2), (5, 5, 3, 2))
  np.testing.assert_allclose(
      conv.upsample_conv2d(x, k5, padding="VALID"),
      conv.conv2d(conv.upsample_nearest(x), k5, padding="VALID"), rtol=1e-5,
      atol=1e-5)


def test_spiking_conv_with_upsample():
  x = _x()[..., :2]
  a = nn.SpikingConv2d(2, 3, upsample=2, rngs=nnx.Rngs(0),
                       neuron_kwargs=dict(threshold=0.3))
  b = sequential.SpikingSequential([
      sequential.Upsample2d(2),
      nn.SpikingConv2d(2, 3, rngs=nnx.Rngs(0),
                       neuron_kwargs=dict(threshold=0.3))])
  ya, yb = jax.jit(lambda x: a(x))(x), jax.jit(lambda x: b(x))(x)
  assert ya.shape == (4, 2, 16, 16, 3) and 0 < float(ya.mean()) < 1
  np.testing.assert_array_equal(ya, yb)
  assert a.init_state(x.shape[1:]).shape == (2, 16, 16, 3)
  with pytest.raises(ValueError, match="upsample needs strides=1"):
    nn.Conv2d(2, 3, strides=2, upsample=2, rngs=nnx.Rngs(0))


def test_process_flag_decisions(monkeypatch):
  # Once JAX's backends run it is too late to set XLA_FLAGS.
  jnp.zeros(1).block_until_ready()
  monkeypatch.delenv("SCNN_JAX_XLA_FLAGS", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  assert backend.configure_process() == "late"
  assert backend.os.environ["XLA_FLAGS"] == (
      "--xla_force_host_platform_device_count=2")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type="
                     "LIBRARY_FUSION_TYPE_REDUCE")
  assert backend.configure_process() == "user"
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setenv("SCNN_JAX_XLA_FLAGS", "0")
  assert backend.configure_process() == "off"
  monkeypatch.delenv("SCNN_JAX_XLA_FLAGS")
  monkeypatch.setattr(backend, "_jaxlib_version", lambda: (0, 99))
  assert backend.configure_process() == "untested"
  assert backend.os.environ["XLA_FLAGS"] == ""


def test_plain_jit_warns_once_where_the_flag_is_missing(monkeypatch):
  monkeypatch.setattr(backend, "PROCESS_FLAG", "late")
  monkeypatch.setattr(backend, "_warned", False)
  x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 3))
  with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    backend.jit(lambda x: conv.conv2d(x, k))(x)  # the fix: silent
    assert not seen
    jax.jit(lambda x: conv.conv2d(x, k) + 1)(x)
    jax.jit(lambda x: conv.conv2d(x, k) + 2)(x)
  assert len(seen) == 1
  assert str(seen[0].message).startswith(
      "scnn_jax: this conv is compiled without the XLA CPU option "
      "xla_cpu_experimental_ynn_fusion_type (JAX's backends started before "
      "scnn_jax was imported)")
  assert "scnn_jax.ops.backend.jit(fn)" in str(seen[0].message)


def test_import_sets_the_flag_so_plain_jit_compiles_like_backend_jit():
  # A fresh process: importing scnn_jax before any JAX computation sets the
  # option process-wide, so a plain jax.jit compiles the conv exactly as
  # backend.jit does (same optimised HLO), and nothing warns.
  code = textwrap.dedent("""
      import os, re, warnings
      warnings.simplefilter("error")
      import jax, jax.numpy as jnp
      from scnn_jax import backend, conv
      assert backend.PROCESS_FLAG == "set", backend.PROCESS_FLAG
      assert "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT" \\
          in os.environ["XLA_FLAGS"]
      x, k = jnp.ones((2, 9, 9, 8)), jnp.ones((3, 3, 8, 4))
      def f(x, k):
        return conv.conv2d(x, k)
      def hlo(jit):  # optimised instructions, without source metadata
        text = jit(f).lower(x, k).compile().as_text()
        return [re.sub(r", metadata=[{][^}]*[}]", "", l)
                for l in text.splitlines() if l.lstrip().startswith(
                    ("%", "ROOT"))]
      assert hlo(jax.jit) == hlo(backend.jit)
      assert any("convolution(" in l for l in hlo(jax.jit))
      print("ok")
      """)
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "SCNN_JAX_XLA_FLAGS")}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (root, env.get("PYTHONPATH")) if p)
  out = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "ok"


_MMAPPED_BLOCKS = r"""
import ctypes, sys
import numpy as np
import scnn_jax.ops.backend as b

class MallInfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in (
      "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
      "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
a = np.ones(64 << 20, np.uint8)          # 64 MiB: above glibc's mmap threshold
print(b.PROCESS_ALLOCATOR, libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="glibc's malloc only")
@pytest.mark.parametrize("env,state,mmapped", [
    ({}, "set", 0), ({"SCNN_JAX_HOST_ALLOCATOR": "0"}, "off", 1)])
def test_import_keeps_large_buffers_off_mmap_unless_opted_out(env, state,
                                                              mmapped):
  """A plain import tunes malloc: a 64 MiB array comes from the heap, not a
  fresh mmap (glibc's ``hblks`` counts mmapped blocks); opted out, it is
  mmapped as glibc's default does."""
  out = subprocess.run(
      [sys.executable, "-c", _MMAPPED_BLOCKS], capture_output=True, text=True,
      env={**os.environ, **env}, check=True).stdout.split()
  assert out[0] == state
  assert int(out[1]) == mmapped
