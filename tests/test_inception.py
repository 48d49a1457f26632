"""The Inception score's limits (scnn_jax.metrics.inception), the
Inception-v3 weights file (scnn_jax.models.inception), and the torch-free
checkpoint converter (scripts/convert_inception_weights.py), with randomly
initialised weights."""

import importlib.util
import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from scnn_jax.metrics.inception import (InceptionMetrics, fid,
                                       inception_score)
from scnn_jax.models import inception

REPO = Path(__file__).resolve().parents[1]


def test_inception_score_limits():
  k = 7
  confident = np.full((70, k), -30.0)
  confident[np.arange(70), np.arange(70) % k] = 30.0   # one-hot, all classes
  mean, std = inception_score(confident, splits=10)
  assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6
  assert inception_score(np.zeros((20, k)), splits=2)[0] == \
      pytest.approx(1.0)
  # Two classes, p(y|x) = (0.9, 0.1) for half the images and (0.1, 0.9) for
  # the rest: p(y) = (0.5, 0.5), KL = 0.9 ln 1.8 + 0.1 ln 0.2 for every image.
  half = np.log(np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 5))
  want = np.exp(0.9 * np.log(1.8) + 0.1 * np.log(0.2))
  assert inception_score(half, splits=1) == pytest.approx(
      (want, 0.0), rel=1e-9)


def test_inception_weights_file_layout_and_roundtrip(random_inception):
  model, path, net = random_inception
  sd, variant = inception.read_weights(path)
  assert variant == "fid" and len(sd) == 94 * 5 + 2   # 94 conv+BN, fc
  assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)      # OIHW
  assert sd["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
  assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
  assert sd["Mixed_5b.branch1x1.bn.running_var"].shape == (64,)
  assert sd["fc.weight"].shape == (1008, 2048)
  loaded = inception.state_dict(net.model)
  for key, value in inception.state_dict(model).items():
    np.testing.assert_array_equal(loaded[key], value, err_msg=key)
  images = np.random.default_rng(0).uniform(size=(6, 8, 8, 1))
  pool, logits = net.features(images)      # grey -> RGB, 2 batches
  assert pool.shape == (6, 2048) and logits.shape == (6, 1008)
  assert np.all(np.isfinite(pool)) and pool.std() > 0
  np.testing.assert_allclose(net.features(images[4:])[0], pool[4:],
                             rtol=1e-4, atol=1e-5)
  # FID is the Frechet distance of the pool features (on 64 of the 2048:
  # two 2048-d eigh take ~5 s); of a set against itself 0.
  from scnn_jax.metrics import frechet
  assert abs(fid(pool[:, :64], pool[:, :64])) < 1e-6
  other = net.features(images[::-1] * 0.5)[0]
  assert fid(pool[:, :64], other[:, :64]) == pytest.approx(
      frechet.distance_of_features(pool[:, :64], other[:, :64]), rel=1e-12)
  with pytest.raises(FileNotFoundError, match="convert_inception_weights"):
    inception.read_weights(path.parent / "missing.npz")


# -- the converter, on files in PyTorch's two formats ------------------------


def _converter():
  spec = importlib.util.spec_from_file_location(
      "convert_inception_weights", REPO / "scripts" /
      "convert_inception_weights.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


class _FakeStorage:
  def __init__(self, key, array):
    self.key, self.array = key, array


def _fake_torch(monkeypatch):
  """A stand-in ``torch`` module with the names PyTorch's pickles refer to."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")
  for name in ("FloatStorage", "LongStorage"):
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled, never called")
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch, utils


def _pickled_state_dict(sd, legacy, torch, utils):
  """Pickle bytes + storages of a state dict, as ``torch.save`` writes them."""
  storages = {}

  class Tensor:
    def __init__(self, storage, offset, size, stride):
      self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
      return utils._rebuild_tensor_v2, self.args

  obj = OrderedDict()
  for name, value in sd.items():
    key = str(len(storages))
    if value.ndim == 2:                  # a non-contiguous (transposed) view
      data = np.ascontiguousarray(value.T).ravel()
      stride = (1, value.shape[0])
    else:
      data = np.ascontiguousarray(value).ravel()
      stride = tuple(int(s) // value.itemsize for s in
                     np.ascontiguousarray(value).strides)
    storages[key] = _FakeStorage(key, data)
    obj[name] = Tensor(storages[key], 0, value.shape, stride)

  def persistent_id(o):
    if isinstance(o, _FakeStorage):
      kind = torch.LongStorage if o.array.dtype == np.int64 else \
          torch.FloatStorage
      if legacy:
        return ("storage", kind, o.key, "cpu", o.array.size, None)
      return ("storage", kind, o.key, "cpu", o.array.size)
    return None

  buf = io.BytesIO()
  pickler = pickle.Pickler(buf, protocol=2)
  pickler.persistent_id = persistent_id
  pickler.dump(obj)
  return buf.getvalue(), storages


@pytest.mark.parametrize("legacy", [False, True])
def test_converter_reads_pytorch_checkpoints_without_torch(
    random_inception, tmp_path, monkeypatch, legacy):
  model = random_inception[0]
  sd = inception.state_dict(model)
  sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(5, np.int64)
  sd["AuxLogits.fc.weight"] = np.ones((3, 2), np.float32)      # dropped
  torch, utils = _fake_torch(monkeypatch)
  data, storages = _pickled_state_dict(sd, legacy, torch, utils)
  src = tmp_path / "weights.pth"
  if legacy:
    with open(src, "wb") as f:
      for header in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
        pickle.dump(header, f, protocol=2)
      f.write(data)
      pickle.dump(list(storages), f, protocol=2)
      for s in storages.values():
        f.write(struct.pack("<q", s.array.size))
        f.write(s.array.tobytes())
  else:
    with zipfile.ZipFile(src, "w") as z:
      z.writestr("archive/data.pkl", data)
      z.writestr("archive/byteorder", "little")
      for key, s in storages.items():
        z.writestr(f"archive/data/{key}", s.array.tobytes())
      z.writestr("archive/version", "3\n")
  monkeypatch.delitem(sys.modules, "torch")
  monkeypatch.delitem(sys.modules, "torch._utils")
  conv = _converter()
  read = conv.read_state_dict(src)
  np.testing.assert_array_equal(read["fc.weight"], sd["fc.weight"])
  assert read["Conv2d_1a_3x3.bn.num_batches_tracked"] == 5
  dst = tmp_path / "out.npz"
  assert conv.convert(src, dst) == "fid"
  out, variant = inception.read_weights(dst)
  assert variant == "fid" and "AuxLogits.fc.weight" not in out
  assert not any(k.endswith("num_batches_tracked") for k in out)
  for key, value in inception.state_dict(model).items():
    np.testing.assert_array_equal(out[key], value, err_msg=key)


