"""Inception-v3 in Flax NNX, the network of the Inception Score (IS) and FID.

The weights are read from a file the user provides; nothing is downloaded.
The file is an ``.npz`` holding a PyTorch Inception-v3 state dict as arrays
(PyTorch names and layouts: conv ``[O, I, kh, kw]``, linear ``[out, in]``),
made from a public checkpoint by ``scripts/convert_inception_weights.py``
(no PyTorch needed). Two networks are supported, told apart by the
``__variant__`` entry (or the classifier size):

* ``"fid"``: pytorch-fid's ``pt_inception-2015-12-05`` port of the TensorFlow
  Inception graph that FID and IS were defined with (1008 logits; average
  pools that do not count padding; max pool in the last block). The standard
  for FID; IS uses its 1008-way softmax, as the original TensorFlow IS code.
* ``"torchvision"``: torchvision's ``inception_v3`` ImageNet weights (1000
  logits), the network FSVAE's IS code used.

Inputs are images ``[N, H, W, C]`` in [0, 1] (grey is repeated to RGB),
resized bilinearly (half-pixel centres, like PyTorch's ``interpolate(...,
align_corners=False)``) to 299x299 and scaled to [-1, 1], as pytorch-fid
does. Outputs: the 2048-d pool features (FID) and the logits (IS).

    model = inception.load("pt_inception.npz")   # an InceptionV3
    pool, logits = model(images)

The scores (IS, FID) and a jitted, batched wrapper:
``scnn_jax.metrics.inception``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax import lax


VARIANTS = {"fid": 1008, "torchvision": 1000}
BN_EPS = 1e-3
INPUT_SIZE = 299


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def _init(rng: np.random.Generator | None, shape, fan_in):
  """Zeros (weights to be loaded) or, with ``rng``, N(0, 1/fan_in) in numpy:
  building the net issues no JAX operation, so it takes milliseconds."""
  if rng is None:
    return np.zeros(shape, np.float32)
  return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


class BasicConv2d(nnx.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""

  def __init__(self, cin, cout, kernel_size, stride=1, padding=0, *, rngs):
    kh, kw = _pair(kernel_size)
    self.kernel = nnx.Param(_init(rngs, (kh, kw, cin, cout), kh * kw * cin))
    self.scale = nnx.Param(np.ones((cout,), np.float32))
    self.bias = nnx.Param(np.zeros((cout,), np.float32))
    self.mean = nnx.BatchStat(np.zeros((cout,), np.float32))
    self.var = nnx.BatchStat(np.ones((cout,), np.float32))
    self.stride = _pair(stride)
    self.padding = tuple((p, p) for p in _pair(padding))

  def __call__(self, x):
    y = lax.conv_general_dilated(x, self.kernel[...], self.stride, self.padding,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    inv = self.scale[...] * lax.rsqrt(self.var[...] + BN_EPS)
    return jax.nn.relu((y - self.mean[...]) * inv + self.bias[...])


def max_pool(x, k=3, stride=2, padding=0):
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1),
                           (1, stride, stride, 1), pads)


def avg_pool(x, count_include_pad: bool):
  """3x3 stride-1 average pool with padding 1."""
  pads = ((0, 0), (1, 1), (1, 1), (0, 0))
  s = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
  if count_include_pad:
    return s / 9.0
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  n = lax.reduce_window(ones, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
  return s / n


class InceptionA(nnx.Module):
  def __init__(self, cin, pool_features, *, tf_pool, rngs):
    self.branch1x1 = BasicConv2d(cin, 64, 1, rngs=rngs)
    self.branch5x5_1 = BasicConv2d(cin, 48, 1, rngs=rngs)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv2d(cin, pool_features, 1, rngs=rngs)
    self.tf_pool = tf_pool

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(avg_pool(x, not self.tf_pool))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nnx.Module):
  def __init__(self, cin, *, rngs):
    self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([b3, bd, max_pool(x)], -1)


class InceptionC(nnx.Module):
  def __init__(self, cin, c7, *, tf_pool, rngs):
    self.branch1x1 = BasicConv2d(cin, 192, 1, rngs=rngs)
    self.branch7x7_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0),
                                      rngs=rngs)
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3),
                                      rngs=rngs)
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0),
                                      rngs=rngs)
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3),
                                      rngs=rngs)
    self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)
    self.tf_pool = tf_pool

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2,
                  self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      bd = layer(bd)
    bp = self.branch_pool(avg_pool(x, not self.tf_pool))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nnx.Module):
  def __init__(self, cin, *, rngs):
    self.branch3x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3),
                                     rngs=rngs)
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0),
                                     rngs=rngs)
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = x
    for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                  self.branch7x7x3_4):
      b7 = layer(b7)
    return jnp.concatenate([b3, b7, max_pool(x)], -1)


class InceptionE(nnx.Module):
  """``pool``: "avg" (torchvision), "avg_tf" (no padding counted), "max"."""

  def __init__(self, cin, *, pool, rngs):
    self.branch1x1 = BasicConv2d(cin, 320, 1, rngs=rngs)
    self.branch3x3_1 = BasicConv2d(cin, 384, 1, rngs=rngs)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1),
                                    rngs=rngs)
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0),
                                    rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1),
                                       rngs=rngs)
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0),
                                       rngs=rngs)
    self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)
    self.pool = pool

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], -1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)],
                         -1)
    if self.pool == "max":
      pooled = max_pool(x, 3, 1, 1)
    else:
      pooled = avg_pool(x, self.pool == "avg")
    return jnp.concatenate([b1, b3, bd, self.branch_pool(pooled)], -1)


class Linear(nnx.Module):
  def __init__(self, din, dout, *, rngs):
    self.kernel = nnx.Param(_init(rngs, (din, dout), din))
    self.bias = nnx.Param(np.zeros((dout,), np.float32))

  def __call__(self, x):
    return x @ self.kernel[...] + self.bias[...]


class InceptionV3(nnx.Module):
  """Inception-v3 (no auxiliary head); attribute names follow PyTorch's.

  ``variant``: "fid" or "torchvision" (module docstring). ``resize``: the
  input size images are resized to (299; smaller values, >= 75, only to make
  tests fast). ``seed``: None builds zero weights to be loaded (``load``); an
  int draws random ones (tests of the code path).
  """

  def __init__(self, variant: str = "fid", *, resize: int = INPUT_SIZE,
               seed: int | None = None):
    if variant not in VARIANTS:
      raise ValueError(f"unknown Inception variant {variant!r}; allowed: "
                       f"{', '.join(VARIANTS)}")
    if resize < 75:
      raise ValueError(f"Inception-v3 needs inputs of at least 75 px, got "
                       f"{resize}")
    rngs = None if seed is None else np.random.default_rng(seed)
    tf = variant == "fid"
    self.variant = variant
    self.resize = resize
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
    self.Mixed_5b = InceptionA(192, 32, tf_pool=tf, rngs=rngs)
    self.Mixed_5c = InceptionA(256, 64, tf_pool=tf, rngs=rngs)
    self.Mixed_5d = InceptionA(288, 64, tf_pool=tf, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = InceptionC(768, 128, tf_pool=tf, rngs=rngs)
    self.Mixed_6c = InceptionC(768, 160, tf_pool=tf, rngs=rngs)
    self.Mixed_6d = InceptionC(768, 160, tf_pool=tf, rngs=rngs)
    self.Mixed_6e = InceptionC(768, 192, tf_pool=tf, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = InceptionE(1280, pool="avg_tf" if tf else "avg", rngs=rngs)
    self.Mixed_7c = InceptionE(2048, pool="max" if tf else "avg", rngs=rngs)
    self.fc = Linear(2048, VARIANTS[variant], rngs=rngs)

  def __call__(self, images):
    """Images ``[N, H, W, C]`` in [0, 1] -> ``(pool [N, 2048], logits)``."""
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, -1)
    if x.shape[-1] != 3:
      raise ValueError(f"Inception needs 1 or 3 channels, got {x.shape}")
    n = x.shape[0]
    x = jax.image.resize(x, (n, self.resize, self.resize, 3), "bilinear",
                         antialias=False)
    x = 2.0 * x - 1.0
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = max_pool(x)
    x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                 "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c"):
      x = getattr(self, name)(x)
    pool = jnp.mean(x, axis=(1, 2))
    return pool, self.fc(pool)


# -----------------------------------------------------------------------------
# Weights: PyTorch state dict as .npz
# -----------------------------------------------------------------------------

_BN = {"scale": "bn.weight", "bias": "bn.bias", "mean": "bn.running_mean",
       "var": "bn.running_var"}


def _torch_name(path) -> tuple[str, str]:
  """NNX path -> (PyTorch state-dict key, layout kind)."""
  *mods, leaf = [str(p) for p in path]
  prefix = ".".join(mods)
  if mods and mods[-1] == "fc":
    return f"{prefix}.{'weight' if leaf == 'kernel' else 'bias'}", (
        "linear" if leaf == "kernel" else "vector")
  if leaf == "kernel":
    return f"{prefix}.conv.weight", "conv"
  return f"{prefix}.{_BN[leaf]}", "vector"


def _to_torch(value, kind):
  value = np.asarray(value)
  if kind == "conv":      # HWIO -> OIHW
    return value.transpose(3, 2, 0, 1)
  if kind == "linear":    # [in, out] -> [out, in]
    return value.T
  return value


def _from_torch(value, kind):
  value = np.asarray(value, np.float32)
  if kind == "conv":
    return value.transpose(2, 3, 1, 0)
  if kind == "linear":
    return value.T
  return value


def state_dict(model: InceptionV3) -> dict[str, np.ndarray]:
  """The model's weights as a PyTorch-style state dict (numpy)."""
  out = {}
  for path, var in nnx.to_flat_state(nnx.state(model)):
    key, kind = _torch_name(path)
    out[key] = _to_torch(var.get_value(), kind)
  return out


def save_weights(model: InceptionV3, path) -> None:
  """Writes ``model`` in the weights-file format (``load`` reads it)."""
  arrays = dict(state_dict(model), __variant__=np.array(model.variant))
  with epath.Path(path).open("wb") as f:
    np.savez(f, **arrays)


def read_weights(path) -> tuple[dict[str, np.ndarray], str]:
  """``(state dict, variant)`` of a weights file; clear errors if unusable."""
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(
        f"Inception weights file {path} not found. Convert a public "
        f"checkpoint with scripts/convert_inception_weights.py (see "
        f"docs/studies/paper_b_generation.md)")
  with path.open("rb") as f:
    try:
      data = np.load(f, allow_pickle=False)
      arrays = {k: data[k] for k in data.files}
    except Exception as e:
      raise ValueError(f"{path} is not an .npz weights file ({e}); convert "
                       f"the checkpoint with "
                       f"scripts/convert_inception_weights.py") from e
  variant = arrays.pop("__variant__", None)
  if variant is not None:
    variant = str(variant)
  else:
    fc = arrays.get("fc.weight")
    sizes = {v: k for k, v in VARIANTS.items()}
    variant = sizes.get(None if fc is None else fc.shape[0])
    if variant is None:
      raise ValueError(f"{path}: cannot tell the Inception variant (fc.weight "
                       f"{None if fc is None else fc.shape})")
  return arrays, variant


def load(path, *, resize: int = INPUT_SIZE) -> InceptionV3:
  """An ``InceptionV3`` with the weights of the file at ``path``."""
  arrays, variant = read_weights(path)
  model = InceptionV3(variant, resize=resize)
  missing, wrong = [], []
  state = nnx.state(model)
  flat = nnx.to_flat_state(state)
  new = []
  for p, var in flat:
    key, kind = _torch_name(p)
    if key not in arrays:
      missing.append(key)
      continue
    value = _from_torch(arrays[key], kind)
    if value.shape != var.get_value().shape:
      wrong.append(f"{key} {arrays[key].shape}")
      continue
    new.append((p, jnp.asarray(value)))
  if missing or wrong:
    raise ValueError(
        f"{path} does not fit Inception-v3 ({variant}): "
        f"{len(missing)} missing (e.g. {missing[:3]}), {len(wrong)} wrongly "
        f"shaped (e.g. {wrong[:3]})")
  for p, value in new:
    node = model
    for part in p[:-1]:
      node = getattr(node, str(part))
    getattr(node, str(p[-1]))[...] = value
  return model
