"""The reference network built from scnn_jax's own layers (see common.py).

    python -m benchmarks.refnet.scnn --T 8 [--chunk 4 --remat] [--same-flops]
        [--jit plain] [--dtype bfloat16]

Prints one ``RESULT {json}`` line. Defaults are the library's per-backend
defaults (fold order, "auto" conv formulation and unroll) and the network as
a scnn_jax user writes it (``RefNet``); the flags exist to measure the
alternatives.
"""

from __future__ import annotations

import argparse
import time

# Importing scnn_jax tunes glibc malloc before JAX starts its threads, as it
# does in a user's process (SCNN_JAX_HOST_ALLOCATOR=0 opts out: the
# runner's "default malloc" rows).
from scnn_jax.ops import backend

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.refnet import common, jax_common  # noqa: E402
from scnn_jax import nn  # noqa: E402
from scnn_jax.nn import sequential  # noqa: E402


class RefNet(nnx.Module):
  """The spiking stack (a ``SpikingSequential``) and the readout conv.

  How a scnn_jax user writes the reference network (the default): the
  direct-encoded input goes in once as a static batch (``net(x, T=T)``: the
  first conv runs once per time chunk), nearest upsample + conv is one
  ``SpikingConv2d(upsample=2)``, and the readout conv is applied to the
  mean spikes (a conv is linear, so ``conv(mean_t s) = mean_t conv(s)``).
  Each is the same function as the literal network, with fewer FLOPs;
  ``--same-flops`` turns all three off and executes the peers' FLOPs.
  """

  def __init__(self, body, readout, *, static_input, mean_first):
    self.body = body
    self.readout = readout
    self.static_input = static_input
    self.mean_first = mean_first

  def __call__(self, x, T):
    if self.static_input:
      spikes = self.body(x, T=T)
    else:
      spikes = self.body(jnp.broadcast_to(x, (T,) + x.shape))
    if self.mean_first:
      y = self.readout(jnp.mean(spikes, axis=0))
    else:
      y = jnp.mean(self.readout(spikes), axis=0)
    return jax.nn.sigmoid(y.astype(jnp.float32))


def build(args):
  rngs = nnx.Rngs(0)
  dtype = None if args.dtype == "float32" else jnp.dtype(args.dtype)
  unroll = {"auto": "auto", "full": True}.get(args.unroll, None)
  unroll = int(args.unroll) if unroll is None else unroll
  neuron = dict(beta=common.BETA, threshold=common.THRESHOLD,
                surrogate="fast_sigmoid", surrogate_param=common.SLOPE,
                reset="subtract", unroll=unroll)

  # The two convs with very few channels in the formulation that suits
  # them on CPU (same FLOPs; conv.py's docstring has the per-shape timings):
  # im2col for the 2-channel input conv, "taps" for the 1-channel readout.
  small = args.conv_impl == "auto" and args.small_convs == "per-shape" and (
      jax.default_backend() == "cpu")
  c1_impl = "matmul" if small else args.conv_impl
  readout_impl = "taps" if small else args.conv_impl

  def sc(cin, cout, strides=1, upsample=1):
    return nn.SpikingConv2d(cin, cout, strides=strides, order=args.order,
                            conv_impl=c1_impl if cin == 2 else
                            args.conv_impl, dtype=dtype,
                            upsample=upsample, neuron_kwargs=neuron,
                            rngs=rngs)

  if args.upsample == "fused":  # same function, 2.25x fewer FLOPs in c4
    up_c4 = [sc(64, 32, upsample=2)]
  else:
    up_c4 = [sequential.Upsample2d(2), sc(64, 32)]
  body = sequential.SpikingSequential(
      [sc(2, 32), sc(32, 64, 2), sc(64, 64)] + up_c4,
      chunk=args.chunk, remat=args.remat,
      scan_chunks=args.scan_chunks == "on")
  readout = nn.Conv2d(32, 1, impl=readout_impl, dtype=dtype, rngs=rngs)
  convs = [l.conv for l in body.layers
           if isinstance(l, nn.SpikingConv2d)] + [readout]
  for conv, (k, b) in zip(convs, common.weights().values()):
    conv.kernel[...] = jnp.asarray(k)
    conv.bias[...] = jnp.asarray(b)
  return RefNet(body, readout, static_input=args.input == "static",
                mean_first=args.readout == "mean-first")


def executed_flops(args, T):
  chunk = sequential.resolve_chunk(args.chunk)
  chunks = -(-T // min(chunk or T, T))
  return common.executed_flops(
      T, c1_runs=chunks if args.input == "static" else T,
      c4_fused=args.upsample == "fused",
      readout_runs=1 if args.readout == "mean-first" else T)


def spike_rates(net, x, T):
  h = jnp.broadcast_to(x, (T,) + x.shape)
  rates = []
  for layer in net.body.layers:
    if isinstance(layer, nn.SpikingConv2d):
      h, _ = layer.run(h)
      rates.append(float(jnp.mean(h.astype(jnp.float32))))
    else:
      h = layer(h)
  return rates


def variant_name(args):
  shortcuts = {"input copies": args.input == "copies",
               "separate upsample": args.upsample == "separate",
               "per-step readout": args.readout == "per-step"}
  if all(shortcuts.values()):
    variant = ["same FLOPs"]
  else:
    variant = [name for name, off in shortcuts.items() if off]
  if args.chunk is None:
    variant.append("whole sequence")
  elif args.chunk != "auto":
    variant.append(f"chunk {args.chunk}")
  if args.remat:
    variant.append("remat")
  if args.scan_chunks == "off":
    variant.append("python chunk loop")
  if args.dtype != "float32":
    variant.append(args.dtype)
  if args.order != "fold" or args.conv_impl != "auto":
    variant.append(f"{args.order}/{args.conv_impl}")
  if args.unroll != "auto":
    variant.append(f"unroll {args.unroll}")
  if args.jit == "plain":
    variant.append("plain jax.jit")
  if args.small_convs == "xla":
    variant.append("xla small convs")
  return ", ".join(variant) or "default"


def _chunk_arg(text):
  if text in ("auto", "none"):
    return None if text == "none" else text
  return int(text)


def main():
  ap = common.base_args(argparse.ArgumentParser())
  ap.add_argument("--chunk", type=_chunk_arg, default="auto",
                  help="SpikingSequential(chunk=): auto (4 steps on CPU, "
                  "the whole sequence on GPU/TPU), none (the whole "
                  "sequence) or a number of steps")
  ap.add_argument("--remat", action="store_true")
  ap.add_argument("--scan-chunks", default="on", choices=("on", "off"),
                  help="SpikingSequential(scan_chunks=True/False)")
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--order", default="fold")
  ap.add_argument("--conv-impl", default="auto")
  ap.add_argument("--unroll", default="auto")
  ap.add_argument("--input", default="static", choices=("static", "copies"),
                  help="static: net(x, T=T), the first conv once per chunk; "
                  "copies: T copies of x, the first conv at every step")
  ap.add_argument("--upsample", default="fused",
                  choices=("fused", "separate"),
                  help="fused: SpikingConv2d(upsample=2) (2.25x fewer FLOPs "
                  "in c4); separate: Upsample2d then SpikingConv2d")
  ap.add_argument("--readout", default="mean-first",
                  choices=("mean-first", "per-step"),
                  help="mean-first: readout conv on the mean spikes (once); "
                  "per-step: readout conv at every step, then the mean")
  ap.add_argument("--small-convs", default="per-shape",
                  choices=("per-shape", "xla"),
                  help="on CPU with --conv-impl auto: the 2->32 input conv "
                  "as im2col ('matmul') and the 32->1 readout as 'taps' "
                  "(per-shape), or every conv through lax.conv (xla)")
  ap.add_argument("--jit", default="backend", choices=("backend", "plain"),
                  help="backend: scnn_jax.ops.backend.jit; plain: jax.jit with "
                  "XLA's defaults (what a user's own step gets; importing "
                  "scnn_jax sets the fast-conv flag process-wide)")
  ap.add_argument("--same-flops", action="store_true",
                  help="--input copies --upsample separate --readout "
                  "per-step: exactly the peers' FLOPs")
  args = ap.parse_args()
  if args.same_flops:
    args.input, args.upsample, args.readout = "copies", "separate", "per-step"
  T = args.T
  x, img, mask = (jnp.asarray(a) for a in common.batch())
  net = build(args)
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  # The step donates params; the spike rates are measured at these weights.
  init_params = jax.tree.map(jnp.copy, params)
  tx = optax.adam(common.LR)

  def loss_fn(params):
    pred = nnx.merge(graphdef, params, rest)(x, T)
    return jnp.sum(mask * (pred - img) ** 2) / jnp.sum(mask)

  def train_step(carry):
    params, opt_state, _ = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  jit = backend.jit if args.jit == "backend" else jax.jit
  step = jit(train_step, donate_argnums=0)
  carry = (params, tx.init(params), jnp.zeros(()))
  t0 = time.perf_counter()
  compiled = step.lower(carry).compile()  # compile once, AOT
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  xla_mb = None
  if mem is not None:
    xla_mb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes +
              mem.output_size_in_bytes - mem.alias_size_in_bytes) / 2**20
  carry, rec = common.train_and_time(
      compiled, carry, steps=args.steps, budget_s=args.budget,
      sync=jax.block_until_ready)
  rec["compile_s"] += compile_s
  # Before the eager spike-rate pass (whole sequence, unchunked), which
  # would otherwise set the process's device-memory peak.
  dev_peak_mb = jax_common.device_peak_mb()
  rates = spike_rates(nnx.merge(graphdef, init_params, rest), x, T)
  infer = jit(lambda p: nnx.merge(graphdef, p, rest)(x, T))
  t_inf = common.time_inference(lambda: infer(carry[0]),
                                sync=jax.block_until_ready)
  rec.update(impl="scnn_jax", variant=variant_name(args),
             xla_process_flag=backend.PROCESS_FLAG,
             host_allocator=backend.PROCESS_ALLOCATOR,
             exec_flops=executed_flops(args, T),
             version=f"jax {jax.__version__}", rates=rates,
             infer_img_s=common.B / t_inf, xla_mb=xla_mb,
             dev_peak_mb=dev_peak_mb)
  common.finish(rec, T)


if __name__ == "__main__":
  main()
