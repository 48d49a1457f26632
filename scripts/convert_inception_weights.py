"""Converts a public Inception-v3 PyTorch checkpoint into scnn_jax's weights file.

    python scripts/convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth \\
        weights/pt_inception.npz

Accepted inputs (no network access, no PyTorch needed: the .pth is read with
a small reader for PyTorch's two file formats, the zip one of torch >= 1.6 and
the older "legacy" one):

* pytorch-fid's FID Inception weights, ``pt_inception-2015-12-05-6726825d.pth``
  (https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights): the
  TensorFlow 2015 Inception graph of the original FID / IS code ("fid"
  variant, 1008 classes). Use this one to report FID.
* torchvision's ``inception_v3_google-0cc3c7bd.pth``
  (https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth,
  the ``inception_v3(weights="DEFAULT")`` weights; "torchvision" variant, 1000
  classes), the network FSVAE's IS code used.
* an ``.npz`` of such a state dict (e.g. saved with
  ``np.savez(out, **{k: v.numpy() for k, v in sd.items()})``).

The output is an ``.npz`` of the state dict (PyTorch names and layouts; the
auxiliary classifier and ``num_batches_tracked`` dropped) plus a
``__variant__`` entry. ``scnn_jax.models.inception.load`` reads it; pass it to a
generation run with ``--config.metrics.inception_weights=PATH``. The
conversion is checked by loading the result into
``scnn_jax.models.inception`` (every weight present with the right shape).
"""

from __future__ import annotations

import argparse
import io
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

# PyTorch storage class name -> numpy dtype.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "HalfStorage": np.float16, "BFloat16Storage": None,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _Storage:
  def __init__(self, key, dtype_name):
    if dtype_name not in STORAGE_DTYPES or STORAGE_DTYPES[dtype_name] is None:
      raise ValueError(f"unsupported tensor storage {dtype_name}")
    self.key = str(key)
    self.dtype = np.dtype(STORAGE_DTYPES[dtype_name]).newbyteorder("<")
    self.data: np.ndarray | None = None


class _Tensor:
  """A tensor to build once its storage's bytes are known."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(size), tuple(stride)

  def build(self) -> np.ndarray:
    flat = self.storage.data
    if flat is None:
      raise ValueError(f"storage {self.storage.key} has no data")
    if not self.size:
      return np.array(flat[self.offset])
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size,
        strides=tuple(s * item for s in self.stride))
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


class _StorageType:
  def __init__(self, name):
    self.name = name


class _Unpickler(pickle.Unpickler):
  """Unpickles a PyTorch state dict with stand-ins for torch's classes."""

  def __init__(self, f, storages: dict):
    super().__init__(f)
    self.storages = storages

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2",
                                             "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name.endswith("Storage"):
      return _StorageType(name)
    raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the "
                                 "checkpoint (only tensors are read)")

  def persistent_load(self, pid):
    # zip format: ('storage', type, key, location, numel)
    # legacy:     ('storage', type, key, location, size, view_metadata)
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    stype, key = pid[1], str(pid[2])
    if key not in self.storages:
      self.storages[key] = _Storage(key, stype.name)
    if len(pid) > 5 and pid[5] is not None:
      raise pickle.UnpicklingError("storage views are not supported")
    return self.storages[key]


def _finish(obj):
  if isinstance(obj, _Tensor):
    return obj.build()
  if isinstance(obj, dict):
    return OrderedDict((k, _finish(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_finish(v) for v in obj)
  return obj


def _load_zip(path) -> dict:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("data.pkl")]
    if not pkl:
      raise ValueError(f"{path}: a zip file without data.pkl is not a PyTorch "
                       "checkpoint")
    root = pkl[0][:-len("data.pkl")]
    if f"{root}byteorder" in names and z.read(f"{root}byteorder") != b"little":
      raise ValueError(f"{path}: big-endian checkpoints are not supported")
    storages: dict = {}
    obj = _Unpickler(io.BytesIO(z.read(pkl[0])), storages).load()
    for key, storage in storages.items():
      raw = z.read(f"{root}data/{key}")
      storage.data = np.frombuffer(raw, storage.dtype)
  return _finish(obj)


def _load_legacy(path) -> dict:
  with open(path, "rb") as f:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
      raise ValueError(f"{path} is not a PyTorch checkpoint (bad magic)")
    pickle.load(f)            # protocol version
    pickle.load(f)            # sys info
    storages: dict = {}
    obj = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
      storage = storages[str(key)]
      (n,) = struct.unpack("<q", f.read(8))
      raw = f.read(n * storage.dtype.itemsize)
      storage.data = np.frombuffer(raw, storage.dtype)
  return _finish(obj)


def read_state_dict(path) -> dict[str, np.ndarray]:
  """A PyTorch checkpoint (.pth zip or legacy) or .npz -> numpy state dict."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(path)
  if path.suffix == ".npz":
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(
      obj["state_dict"], dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict):
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
  return {str(k).removeprefix("module."): np.asarray(v)
          for k, v in obj.items()}


def convert(src, dst, variant: str | None = None) -> str:
  """Writes the weights file; returns the variant."""
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  from scnn_jax.models import inception
  sd = read_state_dict(src)
  sd = {k: v for k, v in sd.items()
        if not k.startswith("AuxLogits.") and
        not k.endswith("num_batches_tracked")}
  if variant is None:
    fc = sd.get("fc.weight")
    sizes = {v: k for k, v in inception.VARIANTS.items()}
    variant = sizes.get(None if fc is None else fc.shape[0])
    if variant is None:
      raise ValueError(f"cannot tell the variant from fc.weight "
                       f"{None if fc is None else fc.shape}; pass --variant")
  sd = {k: np.asarray(v, np.float32) for k, v in sd.items()}
  Path(dst).parent.mkdir(parents=True, exist_ok=True)
  np.savez(dst, __variant__=np.array(variant), **sd)
  inception.load(dst)   # every weight present, right shapes
  return variant


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("src", help="pytorch-fid or torchvision .pth (or .npz)")
  p.add_argument("dst", help="output .npz")
  p.add_argument("--variant", choices=("fid", "torchvision"), default=None,
                 help="default: from the classifier size (1008 -> fid)")
  args = p.parse_args(argv)
  variant = convert(args.src, args.dst, args.variant)
  print(f"wrote {args.dst} ({variant} variant)")


if __name__ == "__main__":
  main()
