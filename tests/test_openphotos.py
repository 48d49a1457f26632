"""The ``openphotos`` embedded dataset (scnn_jax/data/openphotos.py): the
split by photo, no held-out or excluded image anywhere in it, the crops, the
fixed eval set and the config checks."""

import io
import pathlib

import numpy as np
import pytest
import skimage.data
from PIL import Image

from configs import base
from scnn_jax import tasks
from scnn_jax.config import schema
from scnn_jax.data import sources
from scnn_jax.data import openphotos as op
from scnn_jax.ops.checks import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
# Kept for evaluation outside the project: never in any split.
EXCLUDED = ("camera", "coins", "moon", "brick", "grass", "hubble_deep_field")
# Not natural photographs: bundled with scikit-image but not wanted here.
NOT_PHOTOS = ("retina", "immunohistochemistry", "cell", "text", "clock")
SAME = 0.95   # thumbnails of one image correlate > 0.999; distinct photos < 0.8


def _thumb(img: np.ndarray) -> np.ndarray:
  """32 x 32 grey thumbnail (aspect ignored), zero mean and unit norm."""
  grey = sources.to_channels(np.asarray(img), 1)[:, :, 0]
  t = np.asarray(Image.fromarray(grey).resize((32, 32), Image.Resampling.BOX),
                 np.float64)
  t -= t.mean()
  return t / np.linalg.norm(t)


def _same_image(a: np.ndarray, b: np.ndarray) -> bool:
  return float((_thumb(a) * _thumb(b)).sum()) > SAME


def _found_in(patch, img) -> bool:
  """``patch`` is a window of ``img`` (exact pixels): positions whose three
  corners match, then the whole window."""
  k = patch.shape[0]
  h, w = img.shape[0] - k + 1, img.shape[1] - k + 1
  if h <= 0 or w <= 0:
    return False
  ys, xs = np.nonzero((img[:h, :w] == patch[0, 0]).all(-1))
  for dy, dx in ((0, k - 1), (k - 1, 0), (k - 1, k - 1), (k // 2, k // 2)):
    keep = (img[ys + dy, xs + dx] == patch[dy, dx]).all(-1)
    ys, xs = ys[keep], xs[keep]
  return any((img[y:y + k, x:x + k] == patch).all() for y, x in zip(ys, xs))


@pytest.fixture(scope="module")
def photos():
  return op.load_openphotos(3)


def test_split_is_by_whole_photo_and_names_no_excluded_image(photos):
  train, val = set(op.OPENPHOTOS_TRAIN), set(op.OPENPHOTOS_VAL)
  assert len(train) == len(op.OPENPHOTOS_TRAIN) and len(val) == len(op.OPENPHOTOS_VAL)
  assert not train & val
  assert set(photos) == train | val
  assert {"chelsea", "coffee", "gravel"} <= val
  stored = set(sources.load_npz(sources.embedded_path("openphotos.npz")))
  assert len(val & stored) >= 6                   # new held-out photos
  assert set(op.heldout_photos(3)) == val
  assert not set(photos) & set(EXCLUDED + NOT_PHOTOS)
  # Both views of the motorcycle scene are on one side.
  assert {"motorcycle_left", "motorcycle_right"} <= train
  assert 0.75 <= len(train) / len(photos) <= 0.85


def test_no_excluded_or_held_out_image_hides_under_another_name(photos):
  # The check sees a downscaled copy (the control), so it would see one stored.
  camera = skimage.data.camera()
  small = np.asarray(Image.fromarray(camera).resize((384, 384),
                                                    Image.Resampling.LANCZOS))
  assert _same_image(small, camera)
  natural = sources.load_npz(sources.embedded_path("natural.npz"))
  assert _same_image(natural["chelsea"], photos["chelsea"])
  assert not _same_image(photos["astronaut"], photos["rocket"])
  thumbs = {k: _thumb(img) for k, img in photos.items()}
  for name in EXCLUDED + NOT_PHOTOS:
    other = _thumb(getattr(skimage.data, name)())
    hits = [k for k, t in thumbs.items() if (t * other).sum() > SAME]
    assert not hits, (name, hits)
  for held in op.OPENPHOTOS_VAL:
    hits = [k for k in op.OPENPHOTOS_TRAIN
            if (thumbs[k] * thumbs[held]).sum() > SAME]
    assert not hits, (held, hits)


def test_held_out_skimage_photos_are_at_their_original_resolution(photos):
  assert photos["chelsea"].shape == (300, 451, 3)
  assert photos["coffee"].shape == (400, 600, 3)
  assert photos["gravel"].shape == (512, 512, 3)
  np.testing.assert_array_equal(photos["chelsea"], skimage.data.chelsea())
  # Grey photos are replicated to RGB; colour ones reduced to one channel.
  assert (photos["gravel"] == photos["gravel"][:, :, :1]).all()
  grey = op.load_openphotos(1)
  assert grey["chelsea"].shape == (300, 451, 1)
  np.testing.assert_array_equal(grey["gravel"][:, :, 0], skimage.data.gravel())


def test_stored_file_is_512_px_uint8_and_small():
  stored = sources.load_npz(sources.embedded_path("openphotos.npz"))
  assert len(stored) == 36
  for k, img in stored.items():
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (1, 3), k
    assert max(img.shape[:2]) == 512, k
  assert stored["ascent"].shape == (512, 512, 1)
  size = (REPO / "scnn_jax/data/embedded/openphotos.npz").stat().st_size
  assert size < 12.5e6, size


def test_every_stored_photo_has_a_provenance_row():
  readme = (REPO / "scnn_jax/data/embedded/README.md").read_text()
  section = readme.split("## `openphotos.npz`")[1]
  for k in sources.load_npz(sources.embedded_path("openphotos.npz")):
    assert f"| `{k}` |" in section, k


def test_train_crops_follow_the_rng_and_come_from_train_photos(photos,
                                                               monkeypatch):
  src = op.OpenPhotosSource(48, 3, 4, eval_seed=0)
  a = [src.train_example(0, np.random.default_rng(7))[0] for _ in range(2)]
  np.testing.assert_array_equal(a[0], a[1])
  b = src.train_example(0, np.random.default_rng(8))[0]
  assert not np.array_equal(a[0], b)
  assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8
  assert a[0].flags.writeable
  assert op.OpenPhotosSource(48, 1, 4, 0).train_example(
      0, np.random.default_rng(7))[0].shape == (48, 48, 1)
  # At zoom 1 a crop is a window of a train photo (maybe mirrored), never of
  # a held-out one.
  monkeypatch.setattr(op, "SCALE_MIN", 1.0)
  monkeypatch.setattr(op, "SCALE_MAX", 1.0)
  rng = np.random.default_rng(3)
  for _ in range(4):
    patch, label = src.train_example(0, rng)
    assert label == 0
    assert sources.patch_std(patch) > sources.MIN_PATCH_STD
    views = (patch, patch[:, ::-1])
    assert any(_found_in(v, photos[k]) for v in views for k in op.OPENPHOTOS_TRAIN)
    assert not any(_found_in(v, photos[k]) for v in views for k in op.OPENPHOTOS_VAL)


def test_zoom_changes_the_scale_of_a_crop(monkeypatch):
  # Zoom 0.5 shows a region twice the crop's side: its pixels vary more
  # from one to the next than at zoom 1.5 (a region 2/3 the side, enlarged).
  def roughness(scale):
    monkeypatch.setattr(op, "SCALE_MIN", scale)
    monkeypatch.setattr(op, "SCALE_MAX", scale)
    src = op.OpenPhotosSource(64, 1, 4, eval_seed=0)
    rng = np.random.default_rng(0)
    crops = [src.train_example(0, rng)[0].astype(float) for _ in range(40)]
    return np.mean([np.abs(np.diff(c, axis=1)).mean() for c in crops])
  assert roughness(0.5) > 1.5 * roughness(1.5)


def test_eval_set_is_fixed_and_held_out(photos):
  a, labels = op.OpenPhotosSource(32, 3, 12, eval_seed=5).eval_set()
  b, _ = op.OpenPhotosSource(32, 3, 12, eval_seed=5).eval_set()
  np.testing.assert_array_equal(a, b)
  assert a.shape == (12, 32, 32, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.zeros(12, np.int32))
  c, _ = op.OpenPhotosSource(32, 3, 12, eval_seed=6).eval_set()
  assert not np.array_equal(a, c)
  n = len(op.OPENPHOTOS_VAL)
  for k, crop in enumerate(a):
    assert _found_in(crop, photos[op.OPENPHOTOS_VAL[k % n]]), k
    assert sources.patch_std(crop) > sources.MIN_PATCH_STD
  # 256-px crops, the evaluation size, fit every held-out photo.
  assert op.OpenPhotosSource(256, 3, n, eval_seed=0).eval_set()[0].shape == (
      n, 256, 256, 3)


def test_bad_image_size_names_the_field():
  assert schema.OPENPHOTOS_MAX_SIZE == op.min_side() == 256
  with pytest.raises(ConfigError, match=r"data\.image_size.*must be <= 256"):
    op.OpenPhotosSource(257, 3, 4, eval_seed=0)
  config = base.get_config()
  config.data.name = "openphotos"
  config.data.image_size = 300
  with pytest.raises(ConfigError) as e:
    schema.validate(config, devices=1)
  assert str(e.value) == ("config.data.image_size = 300: must be <= 256 for "
                          "the openphotos photos")


def test_config_validates_and_builds():
  config = base.get_config()
  config.data.name = "openphotos"
  config.data.image_size = 32
  config.data.num_eval = 4
  ds = tasks.dataset(schema.validate(config, devices=1))
  assert ds.image_shape == (32, 32, 3)
  evals = ds.eval_set()
  assert evals["image"].shape == (4, 32, 32, 3)
  expected, _ = op.OpenPhotosSource(32, 3, 4, int(config.masks.eval_seed)).eval_set()
  np.testing.assert_array_equal(evals["image"], expected)
  batch = next(ds.train_iterator(0, 2))
  assert batch["image"].shape == (2, 32, 32, 3) and "mask" in batch


def test_npz_round_trips_one_key_per_photo():
  raw = (REPO / "scnn_jax/data/embedded/openphotos.npz").read_bytes()
  with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
    assert sorted(npz.files) == sorted(
        set(op.OPENPHOTOS_TRAIN + op.OPENPHOTOS_VAL)
        - set(op.SKIMAGE_TRAIN) - set(op.SKIMAGE_VAL))
