"""Inpainting metrics, spike statistics, synaptic operations and the Frechet distance.

Conventions: images float32 in [0, 1], NHWC ``[N, H, W, C]``; masks float32
``[N, H, W, 1]`` (or ``[N, H, W, C]``), 1 = hole (missing), 0 = known; an
optional ``valid`` float ``[N]`` weight marks padded rows (0) to ignore
(``None`` = all rows count with weight 1). The data range is 1.

Definitions (quoted by the README):

* **composite** = known pixels from the image, hole pixels from the prediction
  (mask binarised at 0.5). Every image metric below scores the composite, so
  known pixels never count as error.
* **masked MSE** (the training loss) = sum over valid images, hole pixels and
  all channels of ``(pred - target)^2``, divided by the number of such
  (pixel, channel) entries: pooled over the batch, not a mean of per-image
  values. With no hole pixel at all (no hole, or every ``valid`` weight 0) it
  is defined as 0, with zero gradient: never NaN. Its gradient w.r.t. a hole
  entry is ``2 (p - t) / count``, 0 on known pixels.
* **full MSE** (paper A's "validation loss") = MSE of the composite against
  the target over all pixels and channels of the valid images (= hole squared
  error / total entries, so it shrinks with the hole ratio).
* **PSNR** = per image ``10 log10(1 / max(MSE_i, 1e-10))`` of composite vs
  target over the whole image (data range 1; the MSE floor caps a perfect
  image at 100 dB), then the valid-weighted mean over images. Equal to
  ``dm_pix.psnr`` wherever ``MSE_i >= 1e-10``.
* **hole PSNR** = the same formula with ``MSE_i`` taken over image i's hole
  pixels only (all channels); images without a hole are left out of the mean.
  Unlike full-image PSNR it does not grow as holes get smaller.
* **SSIM** = ``dm_pix.ssim`` of composite vs target per image (Gaussian window
  11, sigma 1.5, k1 0.01, k2 0.03, max_val 1; for C > 1 the mean over channels
  of the per-channel SSIM maps; needs H, W >= 11), then the valid-weighted
  mean over images.
* A mean over zero images (every ``valid`` 0, or no image with a hole for the
  hole PSNR) is NaN: the metric is undefined there, not 0.

Over many batches ``InpaintingAccumulator`` gives exactly the values of one
call on the concatenated set: masked/full MSE pooled over all entries, PSNR,
hole PSNR and SSIM as means of per-image values.

Spike statistics: ``spike_rates`` reads ``nnx.capture(model, SpikeRate)``;
``synaptic_ops`` / ``energy_estimate`` count accumulate (AC) and
multiply-accumulate (MAC) operations from a list of layer descriptions (see
``LayerSpec``) and those rates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from scnn_jax.baselines import (BASELINES, baseline_predictions, biharmonic,  # noqa: F401
                                mean_fill)

MSE_FLOOR = 1e-10  # PSNR of a perfect image: 10 log10(1 / 1e-10) = 100 dB
PSNR_CAP_DB = 100.0
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
METRIC_KEYS = ("masked_mse", "full_mse", "psnr", "hole_psnr", "ssim")


# ---------------------------------------------------------------- checks

def _check(pred, target, mask=None, valid=None):
  """Shape checks (static, so they also run under jit)."""
  if pred.ndim != 4 or pred.shape != target.shape:
    raise ValueError(f"images must be [N, H, W, C] of equal shape, got "
                     f"{pred.shape} and {target.shape}")
  if mask is not None:
    n, h, w, c = pred.shape
    if mask.ndim != 4 or mask.shape[:3] != (n, h, w) or mask.shape[3] not in (1, c):
      raise ValueError(f"mask must be [N, H, W, 1] (or [N, H, W, C]) for "
                       f"images {pred.shape}, got {mask.shape}")
  if valid is not None and valid.shape != pred.shape[:1]:
    raise ValueError(f"valid must be [N] = {pred.shape[:1]}, got {valid.shape}")


def _valid(valid, n):
  if valid is None:
    return jnp.ones((n,), jnp.float32)
  return jnp.asarray(valid, jnp.float32)


def _weighted_mean(values, weights):
  """sum(w x) / sum(w); NaN when sum(w) == 0. Rows with w == 0 never leak NaN."""
  weights = jnp.asarray(weights, jnp.float32)
  values = jnp.where(weights > 0, values, 0.0)
  total = jnp.sum(weights)
  safe = jnp.where(total > 0, total, 1.0)
  return jnp.where(total > 0, jnp.sum(weights * values) / safe, jnp.nan)


def _psnr_from_mse(mse):
  return -10.0 * jnp.log10(jnp.maximum(mse, MSE_FLOOR))


# ---------------------------------------------------------------- composite and losses

def composite(pred, image, mask):
  """Known pixels from ``image``, hole pixels (mask > 0.5) from ``pred``.

  Exact on both sides (a ``jnp.where``, not a blend); gradient flows to
  ``pred`` on hole pixels only. Jittable.
  """
  pred, image, mask = jnp.asarray(pred), jnp.asarray(image), jnp.asarray(mask)
  _check(pred, image, mask)
  return jnp.where(mask > 0.5, pred, image)


def masked_se_sums(pred, target, mask, valid=None):
  """``(sum_sq_err, count)`` over hole entries of valid images (float32 scalars).

  ``sum_sq_err = sum_{n,h,w,c} valid_n mask_nhw (pred - target)^2`` and
  ``count = sum_{n,h,w,c} valid_n mask_nhw``: psum both over devices, then
  ``masked_mse_from_sums``. The mask is used as a weight (binary in practice).
  """
  pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
  v = _valid(valid, pred.shape[0])
  _check(pred, target, mask, v)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape) * v[:, None, None, None]
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  # where, not w * err: garbage (NaN) in a padded row must not leak in.
  return jnp.sum(jnp.where(w > 0, w * err, 0.0)), jnp.sum(w)


def masked_mse_from_sums(sum_sq_err, count):
  """``sum_sq_err / count``, 0 (with zero gradient) when ``count == 0``."""
  safe = jnp.where(count > 0, count, 1.0)
  return jnp.where(count > 0, sum_sq_err / safe, 0.0)


def masked_mse(pred, target, mask, valid=None):
  """Mean squared error over hole pixels (all channels) of valid images.

  THE training loss. Pooled: total hole squared error / number of hole
  entries in the batch. 0 (finite, zero gradient) when there is no hole
  entry. ``d loss / d pred = 2 valid mask (pred - target) / count``.
  Jittable, differentiable.
  """
  return masked_mse_from_sums(*masked_se_sums(pred, target, mask, valid))


def masked_mse_per_image(pred, target, mask):
  """``[N]`` hole MSE of each image (0 for an image without a hole)."""
  pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
  _check(pred, target, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  return masked_mse_from_sums(jnp.sum(w * err, axis=(1, 2, 3)),
                              jnp.sum(w, axis=(1, 2, 3)))


def full_se_sums(pred, image, mask, valid=None):
  """``(sum_sq_err, count)`` of the composite over every entry of valid images."""
  pred, image, mask = jnp.asarray(pred), jnp.asarray(image), jnp.asarray(mask)
  comp = composite(pred, image, mask)
  v = _valid(valid, pred.shape[0])
  _check(pred, image, mask, v)
  err = jnp.sum(jnp.square(comp.astype(jnp.float32) - image.astype(jnp.float32)),
                axis=(1, 2, 3))
  entries = math.prod(pred.shape[1:])
  return jnp.sum(jnp.where(v > 0, v * err, 0.0)), jnp.sum(v) * entries


def full_mse(pred, image, mask, valid=None):
  """MSE of the composite against ``image`` over all pixels and channels.

  Paper A's "validation loss" figure. Equals the hole squared error divided
  by ALL entries, so it shrinks with the hole ratio. 0 when every ``valid``
  weight is 0. Jittable.
  """
  return masked_mse_from_sums(*full_se_sums(pred, image, mask, valid))


# ---------------------------------------------------------------- PSNR / SSIM

def psnr_per_image(a, b):
  """``[N]`` PSNR in dB, data range 1, MSE floored at 1e-10 (cap 100 dB)."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check(a, b)
  return _psnr_from_mse(dm_pix.mse(a, b))


def psnr(composite_img, target, valid=None):
  """Mean over valid images of the per-image PSNR (``psnr_per_image``).

  Pass the composite (``composite(pred, image, mask)``). NaN if no image is
  valid. Jittable.
  """
  values = psnr_per_image(composite_img, target)
  return _weighted_mean(values, _valid(valid, values.shape[0]))


def hole_psnr_per_image(pred_or_composite, target, mask):
  """``[N]`` PSNR from each image's hole-pixel MSE; NaN for an image without a hole.

  Identical for the raw prediction and the composite (they agree on holes).
  """
  pred, target, mask = (jnp.asarray(pred_or_composite), jnp.asarray(target),
                        jnp.asarray(mask))
  _check(pred, target, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  sse, count = jnp.sum(w * err, axis=(1, 2, 3)), jnp.sum(w, axis=(1, 2, 3))
  values = _psnr_from_mse(sse / jnp.where(count > 0, count, 1.0))
  return jnp.where(count > 0, values, jnp.nan)


def hole_psnr(pred_or_composite, target, mask, valid=None):
  """Mean over valid images WITH a hole of the hole-only PSNR.

  Per image: ``10 log10(1 / max(MSE_hole_i, 1e-10))`` with ``MSE_hole_i`` the
  mean of ``(pred - target)^2`` over that image's hole pixels and all
  channels. Images without a hole are excluded; NaN if none is left.
  Jittable.
  """
  values = hole_psnr_per_image(pred_or_composite, target, mask)
  has_hole = jnp.sum(jnp.asarray(mask), axis=(1, 2, 3)) > 0
  weights = _valid(valid, values.shape[0]) * has_hole
  return _weighted_mean(values, weights)


def ssim_per_image(a, b):
  """``[N]`` SSIM (``dm_pix.ssim``: window 11, sigma 1.5, max_val 1).

  Color images: mean over channels of the per-channel SSIM maps (dm-pix does
  no color transform). Needs H, W >= 11.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check(a, b)
  if min(a.shape[1:3]) < SSIM_FILTER_SIZE:
    raise ValueError(f"SSIM needs images of at least {SSIM_FILTER_SIZE}x"
                     f"{SSIM_FILTER_SIZE} (its Gaussian window), got "
                     f"{a.shape[1]}x{a.shape[2]}")
  return dm_pix.ssim(a, b, max_val=1.0, filter_size=SSIM_FILTER_SIZE,
                     filter_sigma=SSIM_FILTER_SIGMA)


def ssim(composite_img, target, valid=None):
  """Mean over valid images of the per-image SSIM (``ssim_per_image``). Jittable."""
  values = ssim_per_image(composite_img, target)
  return _weighted_mean(values, _valid(valid, values.shape[0]))


# ---------------------------------------------------------------- evaluation

@jax.jit
def _per_image_stats(pred, image, mask):
  comp = composite(pred, image, mask)
  w = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
  err = jnp.square(comp - image)
  return dict(
      hole_se=jnp.sum(w * err, axis=(1, 2, 3)),
      hole_count=jnp.sum(w, axis=(1, 2, 3)),
      full_se=jnp.sum(err, axis=(1, 2, 3)),
      psnr=psnr_per_image(comp, image),
      hole_psnr=hole_psnr_per_image(comp, image, mask),
      ssim=ssim_per_image(comp, image),
  )


class InpaintingAccumulator:
  """Sums per-image statistics over batches; ``result()`` = metrics of the whole set.

  ``update(pred, image, mask, valid=None)`` takes one batch (numpy or JAX,
  host-addressable); per-image values are computed in float32 by one jitted
  function (compiled once per batch shape) and summed on the host in
  float64. ``result()`` returns ``{masked_mse, full_mse, psnr, hole_psnr,
  ssim}`` as Python floats, equal to ``evaluate_inpainting`` on the
  concatenation of all batches. ``num_images`` / ``num_hole_images`` count
  the (weighted) images seen.
  """

  def __init__(self):
    self.reset()

  def reset(self):
    self._sums = dict(hole_se=0.0, hole_count=0.0, full_se=0.0, full_count=0.0,
                      psnr=0.0, hole_psnr=0.0, ssim=0.0)
    self.num_images = 0.0
    self.num_hole_images = 0.0

  def update(self, pred, image, mask, valid=None):
    pred = jnp.asarray(pred, jnp.float32)
    image = jnp.asarray(image, jnp.float32)
    mask = jnp.asarray(mask, jnp.float32)
    _check(pred, image, mask)
    n = pred.shape[0]
    v = np.ones((n,)) if valid is None else np.asarray(valid, np.float64)
    if v.shape != (n,):
      raise ValueError(f"valid must be [N] = ({n},), got {v.shape}")
    stats = {k: np.asarray(x, np.float64)
             for k, x in _per_image_stats(pred, image, mask).items()}
    has_hole = stats["hole_count"] > 0
    hv = np.where(has_hole, v, 0.0)
    s = self._sums
    def wsum(weights, x):  # padded rows (weight 0) never leak NaN
      return float(np.sum(np.where(weights > 0, weights * x, 0.0)))

    s["hole_se"] += wsum(v, stats["hole_se"])
    s["hole_count"] += wsum(v, stats["hole_count"])
    s["full_se"] += wsum(v, stats["full_se"])
    s["full_count"] += float(np.sum(v)) * math.prod(pred.shape[1:])
    s["psnr"] += wsum(v, stats["psnr"])
    s["ssim"] += wsum(v, stats["ssim"])
    s["hole_psnr"] += wsum(hv, stats["hole_psnr"])
    self.num_images += float(np.sum(v))
    self.num_hole_images += float(np.sum(hv))
    return self

  def result(self) -> dict[str, float]:
    s = self._sums

    def ratio(a, b, empty):
      return a / b if b > 0 else empty

    return dict(
        masked_mse=ratio(s["hole_se"], s["hole_count"], 0.0),
        full_mse=ratio(s["full_se"], s["full_count"], 0.0),
        psnr=ratio(s["psnr"], self.num_images, math.nan),
        hole_psnr=ratio(s["hole_psnr"], self.num_hole_images, math.nan),
        ssim=ratio(s["ssim"], self.num_images, math.nan),
    )


def evaluate_inpainting(pred, image, mask, valid=None) -> dict[str, float]:
  """``{masked_mse, full_mse, psnr, hole_psnr, ssim}`` of one batch (Python floats).

  Scored on ``composite(pred, image, mask)``; definitions in the module
  docstring. For many batches use ``InpaintingAccumulator``.
  """
  return InpaintingAccumulator().update(pred, image, mask, valid).result()


# ---------------------------------------------------------------- spike statistics

def _path_key(path) -> str:
  parts = [str(p) for p in path]
  if len(parts) > 1 and parts[-1] == "rate":
    parts = parts[:-1]  # the sow name; the module path identifies the layer
  return "/".join(parts)


def _as_float(value) -> float:
  if hasattr(value, "get_value"):
    value = value.get_value()
  if isinstance(value, (tuple, list)):
    return float(np.mean([np.mean(np.asarray(v, np.float64)) for v in value]))
  return float(np.mean(np.asarray(value, np.float64)))


def spike_rates(captured) -> dict[str, float]:
  """``{"module/path": mean rate}`` from ``nnx.capture(model, SpikeRate)(x)[1]``.

  The rate is spikes per neuron per time step (in [0, 1]) averaged over the
  batch and T. The key is the module path joined by "/" (the trailing sow
  name "rate" dropped), e.g. ``"encoder/neuron"``, ``"blocks/0/neuron"``. A
  module called several times in one forward (several values in its tuple)
  gets the mean of its calls; a leading vmap axis is averaged too. Also
  accepts a nested dict of values (``State.to_pure_dict()``).
  """
  from flax import nnx  # keep the metrics import light for host-only users
  if isinstance(captured, nnx.State):
    items = list(nnx.to_flat_state(captured))
  else:
    items = []

    def walk(prefix, node):
      if isinstance(node, Mapping):
        for k, v in node.items():
          walk(prefix + (k,), v)
      else:
        items.append((prefix, node))
    walk((), captured)
  return {_path_key(path): _as_float(value) for path, value in items}


# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 32-bit float:
# add 0.9 pJ, multiply 3.7 pJ -> MAC 4.6 pJ.
E_AC = 0.9e-12
E_MAC = 4.6e-12
LAYER_KINDS = ("conv", "conv_transpose", "dense")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer, as a model describes itself to ``synaptic_ops``.

  Attributes:
    name: label for the report.
    kind: "conv" | "conv_transpose" | "dense".
    in_shape: one sample's input, ``(H, W, C_in)`` (conv) or ``(F_in,)`` or
      any shape (dense: flattened).
    out_shape: one sample's output, ``(H_out, W_out, C_out)`` or ``(F_out,)``.
      Stride and padding enter through it.
    kernel: ``(kh, kw)`` (ignored for dense).
    in_is_spikes: the input is a binary spike train: the layer costs one
      accumulate (AC) per (input spike, synapse). Otherwise it costs dense
      MACs.
    rate_key: key of ``spike_rates(...)`` holding the firing rate of the
      input spikes (the neuron module that produced them).
    rate: explicit input rate, used instead of ``rate_key``.
    steps: how many times the layer runs per sample: default T (the
      ``timesteps`` argument) for spiking input, 1 otherwise (e.g. a conv on
      a static image, computed once and repeated over T). Set it to T for a
      layer that really runs every step on real-valued input.
  """
  name: str
  kind: str
  in_shape: tuple
  out_shape: tuple
  kernel: tuple = (1, 1)
  in_is_spikes: bool = False
  rate_key: str | None = None
  rate: float | None = None
  steps: int | None = None

  def __post_init__(self):
    if self.kind not in LAYER_KINDS:
      raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; "
                       f"allowed: {', '.join(LAYER_KINDS)}")
    if self.kind != "dense" and (len(self.in_shape) != 3 or len(self.out_shape) != 3):
      raise ValueError(f"layer {self.name!r}: {self.kind} needs in_shape and "
                       f"out_shape (H, W, C), got {self.in_shape}, {self.out_shape}")

  @property
  def num_inputs(self) -> int:
    return math.prod(self.in_shape)

  @property
  def macs(self) -> int:
    """Dense multiply-accumulates of one evaluation (one sample, one step)."""
    kh, kw = self.kernel
    if self.kind == "conv":  # every output: kh*kw*C_in products
      h, w, c_out = self.out_shape
      return h * w * c_out * kh * kw * self.in_shape[2]
    if self.kind == "conv_transpose":  # every input scatters to kh*kw*C_out
      h, w, c_in = self.in_shape
      return h * w * c_in * kh * kw * self.out_shape[2]
    return self.num_inputs * math.prod(self.out_shape)

  @property
  def fan_out(self) -> float:
    """Mean synapses per input neuron = MACs / inputs.

    Conv with SAME padding: ``kh*kw*C_out / (sh*sw)`` (stride-aware); conv
    transpose: ``kh*kw*C_out``; dense: ``F_out``.
    """
    return self.macs / self.num_inputs


def _spec(layer) -> LayerSpec:
  if isinstance(layer, LayerSpec):
    return layer
  d = dict(layer)
  for key in ("in_shape", "out_shape", "kernel"):
    if key in d:
      d[key] = tuple(int(x) for x in np.atleast_1d(d[key]))
  return LayerSpec(**d)


def synaptic_ops(layers: Iterable[LayerSpec | Mapping[str, Any]],
                 rates: Mapping[str, float] | None = None,
                 timesteps: int = 1) -> dict:
  """Synaptic operations per sample (one input, all T steps) and the ANN MACs.

  For a layer with spiking input: ``SynOps = steps * rate * num_inputs *
  fan_out = steps * rate * MACs`` (input spikes times the synapses each one
  drives; rate = spikes per neuron per step). For a layer with real-valued
  input: ``steps * MACs`` dense MACs. The ANN equivalent runs every layer
  once: ``sum MACs``.

  Args:
    layers: ``LayerSpec``s or dicts with its fields.
    rates: ``spike_rates(captured)`` (needed for layers with ``rate_key``).
    timesteps: T.

  Returns:
    ``{"layers": {name: {kind, macs, fan_out, steps, rate, synops, mac_ops}},
    "synops": total ACs, "snn_macs": total MACs of the spiking network,
    "ann_macs": total MACs of the ANN equivalent}``.
  """
  rates = {} if rates is None else rates
  report, syn_total, mac_total, ann_total = {}, 0.0, 0.0, 0.0
  for layer in map(_spec, layers):
    steps = layer.steps if layer.steps is not None else (
        timesteps if layer.in_is_spikes else 1)
    rate, synops, mac_ops = None, 0.0, 0.0
    if layer.in_is_spikes:
      if layer.rate is not None:
        rate = float(layer.rate)
      elif layer.rate_key is not None:
        if layer.rate_key not in rates:
          raise ValueError(f"layer {layer.name!r}: rate_key {layer.rate_key!r} "
                           f"not among the rates ({', '.join(rates) or 'none'})")
        rate = float(rates[layer.rate_key])
      else:
        raise ValueError(f"layer {layer.name!r} has spiking input but neither "
                         f"rate nor rate_key")
      synops = steps * rate * layer.macs
    else:
      mac_ops = float(steps * layer.macs)
    report[layer.name] = dict(kind=layer.kind, macs=layer.macs,
                              fan_out=layer.fan_out, steps=steps, rate=rate,
                              synops=synops, mac_ops=mac_ops)
    syn_total += synops
    mac_total += mac_ops
    ann_total += layer.macs
  return dict(layers=report, synops=syn_total, snn_macs=mac_total,
              ann_macs=float(ann_total))


def energy_estimate(layers, rates=None, timesteps: int = 1, *,
                    e_ac: float = E_AC, e_mac: float = E_MAC) -> dict:
  """Arithmetic energy per sample, spiking network vs its ANN equivalent.

  ``E_snn = e_ac * SynOps + e_mac * snn_MACs``, ``E_ann = e_mac * ann_MACs``
  with the 45 nm figures of Horowitz (ISSCC 2014): AC 0.9 pJ, MAC 4.6 pJ.
  An ESTIMATE: memory access, neuron state updates and data movement are
  not counted, and it assumes hardware that skips zero spikes.

  Returns ``synaptic_ops(...)`` plus ``snn_energy_j``, ``ann_energy_j`` and
  ``energy_ratio`` (snn / ann).
  """
  ops = synaptic_ops(layers, rates, timesteps)
  snn = e_ac * ops["synops"] + e_mac * ops["snn_macs"]
  ann = e_mac * ops["ann_macs"]
  return dict(ops, snn_energy_j=snn, ann_energy_j=ann,
              energy_ratio=snn / ann if ann > 0 else math.nan)


# ---------------------------------------------------------------- Frechet distance

def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """``(mu [D], sigma [D, D])`` of features ``[N, D]`` (float64, unbiased cov)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"features must be [N, D] with N >= 2, got {f.shape}")
  return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID / FAD).

  ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``, in
  float64 with ``scipy.linalg.sqrtm``. If the square root is not finite or
  inaccurate (near-singular covariances), ``eps * I`` is added to both
  covariances and it is retried (the pytorch-fid recipe). Imaginary parts
  from rounding are dropped; a large one (> 1e-3 on the diagonal) raises.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma "
                     f"{s1.shape} {s2.shape}")
  diff = mu1 - mu2
  product = s1 @ s2
  covmean = scipy.linalg.sqrtm(product)
  err = (np.linalg.norm(covmean @ covmean - product) /
         max(np.linalg.norm(product), 1e-300))
  if not np.all(np.isfinite(covmean)) or err > 1e-3:
    offset = np.eye(s1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm has a large imaginary component "
                       f"{np.max(np.abs(covmean.imag)):.3g}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
