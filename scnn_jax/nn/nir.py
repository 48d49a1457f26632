"""NIR export and import: scnn_jax networks in and out of the Neuromorphic
Intermediate Representation (https://neuroir.org; snnTorch, norse, spyx, Lava,
SpiNNaker tools read and write it).

    from scnn_jax.nn import nir as snir
    graph = snir.export(model.spiking, input_shape=(32, 32, 4))   # [H, W, C]
    import nir; nir.write("scnn.nir", graph)
    net = snir.import_(nir.read("scnn.nir"))    # an nnx.Module
    spikes = net(x)                              # x: [T, B, H, W, C] -> [T, B, ...]

Needs the ``nir`` package (``pip install 'scnn_jax[nir]'``).

What NIR can express, and so what ``export`` writes: ``nn.Conv2d``
(-> ``nir.Conv2d``), ``nn.LIF`` with reset to zero (-> ``nir.LIF``, or
``nir.IF`` when beta = 1), paper B's ``nn.ALIF`` without threshold
adaptation (-> ``nir.LIF`` with ``v_leak = v_reset``), ``nn.SpikingConv2d``
(conv + neuron), ``nnx.Linear`` (-> ``nir.Affine`` / ``nir.Linear``),
``Flatten`` and ``AvgPool2d`` (this module's), chained in a
``SpikingSequential``, a list, or a ``NIRNetwork``. Anything else raises
``NIRExportError`` naming the module and why: TAID and the other decoders (a
reduction over time), paper A's ReLU convs (NIR has no ReLU), training noise,
subtract reset, threshold adaptation, max pooling.

Time: NIR neurons are continuous-time ODEs; scnn_jax's are discrete steps.
``dt`` (default 1e-4 s, the step snnTorch assumes when it imports NIR) is the
step length used to convert: our LIF ``v_t = beta v_{t-1} + I_t`` is exactly
the forward-Euler step of NIR's ``tau dv/dt = (v_leak - v) + r I`` with
``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``. Layout: NIR is
channel-first per example (``[C, H, W]``, conv weights ``[O, I, kH, kW]``);
scnn_jax is channel-last (``[H, W, C]``, ``HWIO``): export and import
transpose. ``Flatten`` flattens in NIR's ``[C, H, W]`` order. One detail is
not exact: NIR fires when ``v > v_threshold``, scnn_jax when ``v >=
threshold`` (equal only on exact ties).

Sequences in ``NIRNetwork`` are TIME-MAJOR: ``[T, B, H, W, C]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scnn_jax import __version__
from scnn_jax.nn import decoders, sequential
from scnn_jax.nn.conv import Conv2d, SpikingConv2d
from scnn_jax.nn.neurons import ALIF, LIF

try:
  import nir
except ImportError as e:  # pragma: no cover - the message is the point
  raise ImportError("scnn_jax.nn.nir needs the nir package: "
                    "pip install 'scnn_jax[nir]'") from e

DEFAULT_DT = 1e-4


class NIRExportError(ValueError):
  """A module that NIR cannot express; the message names it and why."""


class NIRImportError(ValueError):
  """A NIR graph that scnn_jax cannot run; the message names the node."""


# -----------------------------------------------------------------------------
# Stateless layers with NIR's semantics (channel-last inside)
# -----------------------------------------------------------------------------


class Flatten(nnx.Module):
  """``[..., H, W, C] -> [..., C*H*W]`` in NIR's channel-first order."""

  def __call__(self, x):
    x = jnp.moveaxis(x, -1, -3)  # [..., C, H, W]
    return x.reshape(x.shape[:-3] + (-1,))


class AvgPool2d(nnx.Module):
  """Average pooling over ``[..., H, W, C]`` (no padding)."""

  def __init__(self, kernel_size=(2, 2), stride=None):
    self.kernel_size = tuple(int(k) for k in kernel_size)
    self.stride = tuple(int(s) for s in (stride or kernel_size))

  def __call__(self, x):
    lead = x.shape[:-3]
    flat = x.reshape((-1,) + x.shape[-3:])
    y = nnx.avg_pool(flat, self.kernel_size, strides=self.stride,
                     padding="VALID")
    return y.reshape(lead + y.shape[1:])


class NIRNetwork(nnx.Module):
  """A chain of scnn_jax layers imported from (or exportable to) NIR.

  ``x [T, B, H, W, C]`` (TIME-MAJOR) -> outputs ``[T, B, ...]``: neurons run
  over the T steps, every other layer over all T*B examples at once (they
  have no state, so this equals stepping them).
  """

  def __init__(self, layer_list):
    self.layers = nnx.List(list(layer_list))

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return x


# -----------------------------------------------------------------------------
# Export
# -----------------------------------------------------------------------------


def _name(path, module):
  return f"{path} ({type(module).__name__})" if path else type(module).__name__


def _flatten_modules(module, path=""):
  """The chain of exportable leaf modules, or NIRExportError."""
  if isinstance(module, (list, tuple)):
    out = []
    for i, m in enumerate(module):
      out += _flatten_modules(m, f"{path}[{i}]" if path else f"[{i}]")
    return out
  if isinstance(module, (NIRNetwork, sequential.SpikingSequential)):
    return _flatten_modules(list(module.layers), f"{path}.layers" if path
                            else "layers")
  if isinstance(module, SpikingConv2d):
    if module.noise_std is not None and not module.deterministic:
      raise NIRExportError(
          f"{_name(path, module)}: training noise (noise_std = "
          f"{float(module.noise_std[...]):g}) has no NIR node; call "
          "model.eval() first to export the noise-free inference network")
    return ([(f"{path}.conv" if path else "conv", module.conv)] +
            _flatten_modules(module.neuron, f"{path}.neuron" if path
                             else "neuron"))
  if isinstance(module, (Conv2d, LIF, ALIF, nnx.Linear,
                         Flatten, AvgPool2d)):
    return [(path or type(module).__name__.lower(), module)]
  raise NIRExportError(f"{_name(path, module)}: {_why_not(module)}")


def _why_not(module) -> str:
  if isinstance(module, decoders.TAID):
    return ("TAID (learned temporal attention over all T steps) has no NIR "
            "node: NIR graphs run step by step")
  if isinstance(module, (decoders.RateDecoder, decoders.FixedDecayDecoder,
                         decoders.MembraneReadout)):
    return ("a decoder reduces the spike train over time, which a NIR graph "
            "(step by step) cannot express")
  if hasattr(module, "spiking") and hasattr(module, "convs"):
    return ("its rate decoder (a mean over the T steps) and its ReLU convs "
            "have no NIR nodes (NIR has no ReLU); export(model.spiking, ...) "
            "writes its spiking layer, which NIR can express")
  if isinstance(module, sequential.Lambda):
    return "an arbitrary function has no NIR node"
  if isinstance(module, sequential.Upsample2d):
    return "NIR has no upsampling node"
  return "no NIR node for this module"


def _pads(padding, kernel, strides, path):
  """scnn_jax padding -> NIR's symmetric (pH, pW), or NIRExportError."""
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return (0, 0)
    if padding.upper() == "SAME" and all(s == 1 for s in strides) and all(
        k % 2 == 1 for k in kernel):
      return tuple((k - 1) // 2 for k in kernel)
    raise NIRExportError(
        f"{path}: padding {padding!r} with kernel {kernel} and strides "
        f"{strides} is not symmetric; NIR's Conv2d pads both sides equally")
  pads = [(p, p) if isinstance(p, int) else tuple(p) for p in (
      (padding, padding) if isinstance(padding, int) else padding)]
  if any(lo != hi for lo, hi in pads):
    raise NIRExportError(f"{path}: asymmetric padding {padding!r}; NIR's "
                         "Conv2d pads both sides equally")
  return tuple(lo for lo, _ in pads)


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def _chw(value, shape_hwc):
  """A neuron parameter (scalar, per channel or per neuron, channel-last)
  broadcast to one example's ``[H, W, C]`` and moved to NIR's ``[C, H, W]``."""
  full = np.broadcast_to(np.asarray(value, np.float64), shape_hwc)
  return np.moveaxis(full, -1, 0) if len(shape_hwc) == 3 else full.copy()


def _neuron_node(neuron, shape, dt, path):
  path = _name(path, neuron)
  if getattr(neuron, "refractory_steps", 0):
    raise NIRExportError(f"{path}: a refractory period has no NIR parameter")
  if isinstance(neuron, LIF):
    if neuron.reset != "zero":
      raise NIRExportError(
          f"{path}: reset={neuron.reset!r}; NIR's LIF resets the membrane to "
          "v_reset, a subtraction cannot be expressed (use reset='zero')")
    beta = _chw(neuron.beta[...], shape)
    thr = _chw(neuron.threshold[...], shape)
    if np.any(beta <= 0) or np.any(beta > 1):
      raise NIRExportError(f"{path}: beta must be in (0, 1] for NIR")
    if np.all(beta == 1.0):
      return nir.IF(r=np.full_like(thr, 1.0 / dt), v_threshold=thr,
                    v_reset=np.zeros_like(thr))
    if np.any(beta == 1.0):
      raise NIRExportError(f"{path}: beta = 1 for some neurons only")
    tau = dt / (1.0 - beta)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros_like(thr),
                   v_threshold=thr, v_reset=np.zeros_like(thr))
  if isinstance(neuron, ALIF):
    if neuron.adaptive:
      raise NIRExportError(f"{path}: the spike-triggered threshold adaptation "
                           "(a second state variable) has no NIR node")
    k = _chw(jax.nn.sigmoid(neuron.w[...]), shape)
    v_reset = _chw(neuron.v_reset[...], shape)
    # H = V + k (X - (V - V_reset)): Euler step of NIR's LIF with
    # dt / tau = k, r = 1, v_leak = v_reset.
    return nir.LIF(tau=dt / k, r=np.ones_like(k), v_leak=v_reset,
                   v_threshold=_chw(neuron.threshold[...], shape),
                   v_reset=v_reset)
  raise NIRExportError(f"{path}: {_why_not(neuron)}")


def export(module, input_shape, *, dt: float = DEFAULT_DT,
           unit_r: bool = False) -> "nir.NIRGraph":
  """A ``nir.NIRGraph`` of ``module`` for one example of ``input_shape``.

  ``input_shape``: one time step of one example, channel-last ``(H, W, C)``
  (or ``(F,)`` before a dense layer). The graph is a chain ``input -> ... ->
  output`` whose node names are the module paths; it passes NIR's own type
  check. ``dt``: the seconds per scnn_jax time step (module docstring).
  ``unit_r``: write every LIF / IF with ``r = 1`` and fold its ``r`` into the
  weights and bias of the Conv2d / Affine / Linear node that feeds it (the
  same network, for readers that ignore ``r``, e.g. norse 1.1.0; after a
  conv, ``r`` must not vary over H and W).
  Raises ``NIRExportError`` naming the first module NIR cannot express.
  """
  chain = _flatten_modules(module)
  shape = tuple(int(d) for d in input_shape)
  in_type = np.array(_to_nir_shape(shape))
  nodes = {"input": nir.Input(input_type={"input": in_type})}
  order = ["input"]
  for path, m in chain:
    node, shape = _node(m, shape, dt, path)
    key = path.replace("[", "").replace("]", "")
    if unit_r and isinstance(node, (nir.LIF, nir.IF)):
      _fold_r(nodes[order[-1]], node, key)
    nodes[key] = node
    order.append(key)
  nodes["output"] = nir.Output(
      output_type={"output": np.array(_to_nir_shape(shape))})
  order.append("output")
  return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])),
                      metadata={"source": f"scnn_jax {__version__}",
                                "dt": float(dt)})


def _fold_r(prev, neuron, key):
  """Moves ``neuron.r`` into the linear node ``prev`` (unit_r export)."""
  r = np.asarray(neuron.r, np.float64)
  if isinstance(prev, nir.Conv2d):
    scale = r.reshape(r.shape[0], -1)
    if not np.all(scale == scale[:, :1]):
      raise NIRExportError(f"{key}: r varies over H, W; unit_r needs one "
                           "value per channel")
    prev.weight = (prev.weight * scale[:, 0, None, None, None]).astype(
        np.float32)
    prev.bias = (prev.bias * scale[:, 0]).astype(np.float32)
  elif isinstance(prev, (nir.Affine, nir.Linear)):
    prev.weight = (prev.weight * r[:, None]).astype(np.float32)
    if isinstance(prev, nir.Affine):
      prev.bias = (prev.bias * r).astype(np.float32)
  else:
    raise NIRExportError(f"{key}: unit_r needs a Conv2d, Affine or Linear "
                         f"node before the neuron, got {type(prev).__name__}")
  neuron.r = np.ones_like(r)


def _to_nir_shape(shape_hwc):
  return (shape_hwc[-1],) + tuple(shape_hwc[:-1]) if len(shape_hwc) == 3 \
      else tuple(shape_hwc)


def _node(m, shape, dt, path):
  """(NIR node, output shape channel-last) of one leaf module."""
  if isinstance(m, Conv2d):
    if len(shape) != 3:
      raise NIRExportError(f"{path}: Conv2d needs an [H, W, C] input, got "
                           f"{shape}")
    if m.upsample != 1:
      raise NIRExportError(f"{path}: upsample={m.upsample} has no NIR node")
    kernel = np.asarray(m.kernel[...], np.float32)       # [kH, kW, I, O]
    strides = _pair(m.strides)
    pads = _pads(m.padding, kernel.shape[:2], strides, path)
    bias = (np.zeros(kernel.shape[-1], np.float32) if m.bias is None
            else np.asarray(m.bias[...], np.float32))
    node = nir.Conv2d(input_shape=shape[:2],
                      weight=kernel.transpose(3, 2, 0, 1), stride=strides,
                      padding=pads, dilation=1, groups=1, bias=bias)
    c, h, w = node.output_type["output"]
    return node, (int(h), int(w), int(c))
  if isinstance(m, (LIF, ALIF)):
    return _neuron_node(m, shape, dt, path), shape
  if isinstance(m, nnx.Linear):
    if shape != (m.in_features,):
      raise NIRExportError(f"{path}: Linear expects ({m.in_features},), got "
                           f"{shape}: put a Flatten before it")
    w = np.asarray(m.kernel[...], np.float32).T           # [out, in]
    node = (nir.Linear(weight=w) if m.bias is None else
            nir.Affine(weight=w, bias=np.asarray(m.bias[...], np.float32)))
    return node, (m.out_features,)
  if isinstance(m, Flatten):
    return (nir.Flatten(input_type={"input": np.array(_to_nir_shape(shape))},
                        start_dim=0, end_dim=-1), (math.prod(shape),))
  if isinstance(m, AvgPool2d):
    (kh, kw), (sh, sw) = m.kernel_size, m.stride
    h, w, c = shape
    return (nir.AvgPool2d(kernel_size=np.array(m.kernel_size),
                          stride=np.array(m.stride), padding=np.array((0, 0))),
            ((h - kh) // sh + 1, (w - kw) // sw + 1, c))
  raise NIRExportError(f"{path}: {_why_not(m)}")  # pragma: no cover


# -----------------------------------------------------------------------------
# Import
# -----------------------------------------------------------------------------


def _chain(graph):
  """Node names from the Input to the Output, or NIRImportError."""
  succ = {}
  for a, b in graph.edges:
    if a in succ:
      raise NIRImportError(f"node {a!r} feeds several nodes: scnn_jax imports "
                           "chains (one input, one output, no branches)")
    succ[a] = b
  inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
  if len(inputs) != 1:
    raise NIRImportError(f"the graph has {len(inputs)} Input nodes; scnn_jax "
                         "imports chains with one")
  order, key = [], inputs[0]
  while key in succ:
    key = succ[key]
    if key in order:
      raise NIRImportError(f"the graph has a cycle through {key!r} "
                           "(recurrent connections are not supported)")
    order.append(key)
  if len(order) + 1 != len(graph.nodes):
    raise NIRImportError("the graph is not one chain from its Input to its "
                         "Output")
  return order


def _hwc(value):
  """NIR ``[C, H, W]`` parameter -> channel-last array (scalar if uniform)."""
  a = np.asarray(value, np.float64)
  if a.size and np.all(a == a.flat[0]):
    return float(a.flat[0])
  return np.moveaxis(a, 0, -1) if a.ndim == 3 else a


def _lif_from(node, key, dt):
  tau = np.asarray(node.tau, np.float64)
  r = np.asarray(node.r, np.float64)
  if not np.allclose(node.v_leak, 0.0) or not np.allclose(node.v_reset, 0.0):
    raise NIRImportError(f"{key} (LIF): v_leak and v_reset must be 0 for "
                         "scnn_jax's LIF (reset to zero)")
  beta = 1.0 - dt / tau
  gain = dt * r / tau
  if np.any(beta <= 0) or np.any(gain <= 0):
    raise NIRImportError(f"{key} (LIF): tau must exceed dt = {dt} and r be "
                         "positive")
  # v' = beta v + gain I, fire at v_thr  ==  u = v / gain: u' = beta u + I,
  # fire at v_thr / gain.
  return _lif(beta, np.asarray(node.v_threshold) / gain)


def _lif(beta, threshold):
  beta, threshold = _hwc(beta), _hwc(threshold)
  shape = np.shape(beta) if np.ndim(beta) else np.shape(threshold)
  lif = LIF(beta=0.5, threshold=1.0, reset="zero", shape=shape)
  lif.beta[...] = jnp.broadcast_to(jnp.asarray(beta, jnp.float32), shape)
  lif.threshold[...] = jnp.broadcast_to(jnp.asarray(threshold, jnp.float32),
                                         shape)
  return lif


def _conv_from(node, key):
  if np.any(np.asarray(node.dilation) != 1) or node.groups != 1:
    raise NIRImportError(f"{key} (Conv2d): dilation and groups must be 1")
  w = np.asarray(node.weight, np.float32)                 # [O, I, kH, kW]
  pad = node.padding
  padding = (pad.upper() if isinstance(pad, str) else
             tuple((int(p), int(p)) for p in _pair(pad)))
  conv = Conv2d(w.shape[1], w.shape[0], w.shape[2:],
                       strides=tuple(int(s) for s in _pair(node.stride)),
                       padding=padding, rngs=nnx.Rngs(0))
  conv.kernel[...] = jnp.asarray(w.transpose(2, 3, 1, 0))
  conv.bias[...] = jnp.asarray(node.bias, jnp.float32)
  return conv


def _dense_from(node, key):
  w = np.asarray(node.weight, np.float32)                 # [out, in]
  if w.ndim != 2:
    raise NIRImportError(f"{key}: only 2-D weights are supported")
  affine = isinstance(node, nir.Affine)
  lin = nnx.Linear(w.shape[1], w.shape[0], use_bias=affine, rngs=nnx.Rngs(0))
  lin.kernel[...] = jnp.asarray(w.T)
  if affine:
    lin.bias[...] = jnp.asarray(node.bias, jnp.float32)
  return lin


def import_(graph, *, dt: float | None = None) -> NIRNetwork:
  """An ``NIRNetwork`` (an ``nnx.Module``) that runs ``graph``.

  ``graph``: a ``nir.NIRGraph`` (``nir.read(path)``) that is one chain.
  ``dt``: seconds per step (default: the graph's ``metadata["dt"]``, else
  1e-4 as snnTorch assumes). Raises ``NIRImportError`` naming the first node
  scnn_jax cannot run (CubaLIF, recurrent graphs, ...).
  """
  if dt is None:
    dt = float(np.asarray((graph.metadata or {}).get("dt", DEFAULT_DT)))
  out = []
  for key in _chain(graph):
    node = graph.nodes[key]
    if isinstance(node, nir.Output):
      continue
    if isinstance(node, nir.Conv2d):
      out.append(_conv_from(node, key))
    elif isinstance(node, nir.LIF):
      out.append(_lif_from(node, key, dt))
    elif isinstance(node, nir.IF):
      if not np.allclose(node.v_reset, 0.0):
        raise NIRImportError(f"{key} (IF): v_reset must be 0")
      gain = dt * np.asarray(node.r, np.float64)
      out.append(_lif(np.ones_like(gain), np.asarray(node.v_threshold) / gain))
    elif isinstance(node, (nir.Affine, nir.Linear)):
      out.append(_dense_from(node, key))
    elif isinstance(node, nir.Flatten):
      if node.start_dim != 0 or node.end_dim != -1:
        raise NIRImportError(f"{key} (Flatten): only start_dim=0, end_dim=-1 "
                             "(the whole example) is supported")
      out.append(Flatten())
    elif isinstance(node, nir.AvgPool2d):
      if np.any(np.asarray(node.padding) != 0):
        raise NIRImportError(f"{key} (AvgPool2d): padding must be 0")
      out.append(AvgPool2d(tuple(node.kernel_size), tuple(node.stride)))
    else:
      what = type(node).__name__
      why = {"CubaLIF": "scnn_jax has no current-based (two-state) LIF",
             "CubaLI": "scnn_jax has no current-based leaky integrator",
             "NIRGraph": "nested / recurrent subgraphs are not supported"}.get(
                 what, "no scnn_jax layer for this node")
      raise NIRImportError(f"{key} ({what}): {why}")
  return NIRNetwork(out)
