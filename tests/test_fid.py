"""FAD / IS / FID: the Frechet distance in closed form, FAD of a set against
itself, the Inception score's limits, the Inception-v3 weights file and the
torch-free checkpoint converter (tested with randomly initialised weights)."""

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
import scipy.linalg
from flax import nnx

from scnn_jax import fad, inception, metrics

REPO = Path(__file__).resolve().parents[1]


def _rotation(d, seed):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return q


def test_frechet_distance_closed_form():
  # Commuting covariances R diag(a) R^T and R diag(b) R^T:
  # d = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  d = 6
  rng = np.random.default_rng(0)
  r = _rotation(d, 1)
  a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.5, 3.0, d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = r @ np.diag(a) @ r.T, r @ np.diag(b) @ r.T
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
      want, rel=1e-9)
  # Non-commuting, rank-deficient covariances (fewer samples than dimensions,
  # as Inception features): the textbook formula with scipy's sqrtm.
  c1 = np.cov(rng.normal(size=(5, d)), rowvar=False)
  c2 = np.cov(rng.normal(size=(40, d)) * np.arange(1, d + 1), rowvar=False)
  textbook = (np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2)
              - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real))
  assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(
      textbook, rel=1e-6)
  # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
  assert metrics.frechet_distance([1.0], [[4.0]], [-2.0], [[1.0]]) == \
      pytest.approx(9.0 + 1.0)
  # From samples: the Gaussian fits converge to the closed form.
  n = 200_000
  xa = rng.normal(size=(n, d)) * np.sqrt(a) @ r.T + mu1
  xb = rng.normal(size=(n, d)) * np.sqrt(b) @ r.T + mu2
  assert metrics.distance_of_features(xa, xb) == pytest.approx(want, rel=0.02)


def _tiny_scorer():
  model = fad.FadAutoencoder((8, 8, 1), latent_dim=6, hidden=(4, 8),
                             rngs=nnx.Rngs(0))
  model.eval()
  return fad.FadScorer(model, batch_size=32)


def test_fad_of_a_set_against_itself_is_zero():
  scorer = _tiny_scorer()
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(50, 8, 8, 1)).astype(np.float32)
  feats = scorer.features(images)          # 2 batches, the last one padded
  assert feats.shape == (50, 6)
  # Eval-mode codes are per image: padding and batch position do not matter.
  np.testing.assert_allclose(scorer.features(images[40:]), feats[40:],
                             rtol=1e-5, atol=1e-6)
  assert abs(scorer.distance(images, images)) < 1e-6
  other = np.clip(images * 0.5 + 0.4, 0, 1)
  assert scorer.distance(images, other) > 1e-3


def test_inception_score_limits():
  k = 7
  confident = np.full((70, k), -30.0)
  confident[np.arange(70), np.arange(70) % k] = 30.0   # one-hot, all classes
  mean, std = inception.inception_score(confident, splits=10)
  assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6
  assert inception.inception_score(np.zeros((20, k)), splits=2)[0] == \
      pytest.approx(1.0)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
  """Random Inception-v3 weights in a file, and the net loaded from it (at a
  75 px input, to keep the test fast)."""
  model = inception.InceptionV3("fid", resize=75, seed=1)
  path = tmp_path_factory.mktemp("inception") / "random.npz"
  inception.save_weights(model, path)
  return model, path, inception.InceptionMetrics.load(path, batch_size=4,
                                                      resize=75)


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
  # (FID on 64 of the 2048 features: two 2048-d eigh take ~5 s.)
  assert abs(inception.fid(pool[:, :64], pool[:, :64])) < 1e-6
  with pytest.raises(FileNotFoundError, match="convert_inception_weights"):
    inception.read_weights(path.parent / "missing.npz")


def test_generation_accumulator_scores_with_random_networks(random_inception,
                                                           monkeypatch):
  """The eval path of task="generate": recon MSE, FAD, IS and FID."""
  from scnn_jax.tasks.generate import GenerationAccumulator
  net = random_inception[2]
  fid = inception.fid     # on 64 of the 2048 features, to keep the test fast
  monkeypatch.setattr(inception, "fid", lambda a, b: fid(a[:, :64],
                                                         b[:, :64]))
  acc = GenerationAccumulator(_tiny_scorer(), net, splits=2)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(12, 8, 8, 1)).astype(np.float32)
  valid = np.ones(12, np.float32)
  valid[-2:] = 0                               # padding rows are ignored
  acc.update(images[:6], images[:6] + 0.1, images[:6], valid[:6])
  acc.update(images[6:], images[6:] + 0.1, images[6:], valid[6:])
  r = acc.result()
  assert r["num_images"] == 10
  assert r["recon_mse"] == pytest.approx(0.01, rel=1e-5)
  assert abs(r["fad"]) < 1e-6 and abs(r["fid"]) < 1e-3   # samples == data
  assert r["inception_score"] >= 1.0


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


def test_fad_autoencoder_trains_and_its_workdir_is_reused(tmp_path):
  """task="fad_autoencoder" through the trainer, the held-out reference
  statistics, and the workdir check a generation run does."""
  from configs import fad_mnist5k
  from scnn_jax import data, trainer
  from scnn_jax.config_lib import ConfigError
  config = fad_mnist5k.get_config()
  config.model.update(latent_dim=4, hidden=(4, 8))
  config.data.update(image_size=8, num_eval=24)
  config.train.update(steps=4, batch_size=8, eval_batch_size=8, log_every=2,
                      eval_every=4, checkpoint_every=4, num_sample_images=2)
  summary = trainer.train_and_evaluate(config, tmp_path)
  assert 0 < summary["eval"]["recon_mse"] < 1
  assert summary["eval"]["num_images"] == 24
  ref = fad.write_reference(tmp_path, config)
  assert ref["n"] == 24
  fad.check_workdir(tmp_path, image_size=8, channels=1)
  with pytest.raises(ConfigError, match="data.image_size = 8"):
    fad.check_workdir(tmp_path, image_size=32, channels=1)
  scorer = fad.load_scorer(tmp_path)
  held_out = data.build(config).eval_set()["image"] / np.float32(255.0)
  # The held-out set against its own stored statistics: ~0.
  assert abs(scorer.distance_to_reference(held_out)) < 1e-6
