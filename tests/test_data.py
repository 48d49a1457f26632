"""scnn_jax.data: sources, the grain pipeline (determinism, resume, hosts,
workers), the inpainting task's masks as a data transform, folders."""

import sys

import numpy as np
import pytest
from PIL import Image

from configs import base
from scnn_jax import data, tasks
from scnn_jax.config import schema
from scnn_jax.data import masks, sources
from scnn_jax.ops.checks import ConfigError
from tests.workdirs import write_bad_files


def make_config(**overrides):
  """configs/base.py (inpainting) with 40 eval images and holes of 10-30 %,
  completed by the schema; ``data__x=1`` overrides ``data.x``."""
  fields = base.get_config().to_dict()
  fields["data"].update(num_eval=40, prefetch=2)
  fields["masks"].update(ratio_min=0.1, ratio_max=0.3)
  for key, value in overrides.items():
    if "__" in key:
      section, field = key.split("__")
      fields[section][field] = value
    else:
      fields[key] = value
  return schema.complete(fields)


def check_batch(batch, b, shape):
  h, w, c = shape
  assert set(batch) == {"image", "mask", "label", "valid", "example_id"}
  assert batch["image"].shape == (b, h, w, c)
  assert batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert batch["mask"].shape == (b, h, w, 1)
  assert batch["mask"].dtype == np.float32
  assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
  assert batch["label"].shape == (b,) and batch["label"].dtype == np.int32
  assert batch["valid"].shape == (b,) and batch["valid"].dtype == np.float32
  assert batch["example_id"].shape == (b,)


def assert_batches_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def take(it, n):
  return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def natural():
  return tasks.dataset(make_config())


@pytest.fixture(scope="module")
def mnist():
  return tasks.dataset(make_config(data__name="mnist5k", data__image_size=28,
                                data__channels=1, masks__kind="stroke"))


# -- embedded ------------------------------------------------------------------


def test_natural_batches(natural):
  assert natural.image_shape == (32, 32, 3) and natural.num_classes is None
  batch = next(natural.train_iterator(0, 8))
  check_batch(batch, 8, (32, 32, 3))
  assert (batch["valid"] == 1).all() and (batch["label"] == 0).all()
  np.testing.assert_array_equal(batch["example_id"], np.arange(8))


def test_mnist5k_counts_split_and_batches(mnist):
  raw = sources.load_npz(sources.embedded_path("mnist5k.npz"))
  assert raw["images"].shape == (5000, 28, 28) and raw["images"].dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(raw["labels"]), [500] * 10)
  train, val = sources.mnist5k_split(raw["labels"])
  assert len(train) == 4000 and len(val) == 1000
  assert not set(train) & set(val)
  np.testing.assert_array_equal(np.bincount(raw["labels"][val]), [100] * 10)
  assert mnist.num_classes == 10 and mnist.image_shape == (28, 28, 1)
  assert mnist.source.num_train == 4000
  batch = next(mnist.train_iterator(0, 16))
  check_batch(batch, 16, (28, 28, 1))
  assert batch["label"].min() >= 0 and batch["label"].max() <= 9
  # The image really is the digit of its label: training example = train item.
  ex = mnist.train_example(3)
  idx = mnist.source.train_idx[mnist._order[3]]
  np.testing.assert_array_equal((ex["image"][..., 0] * 255).round(), raw["images"][idx])
  assert ex["label"] == raw["labels"][idx]


def test_channel_conversion_and_resize():
  ds = tasks.dataset(make_config(data__name="mnist5k", data__image_size=32,
                              data__channels=3))
  b = next(ds.train_iterator(0, 4))
  check_batch(b, 4, (32, 32, 3))
  np.testing.assert_array_equal(b["image"][..., 0], b["image"][..., 2])
  ds = tasks.dataset(make_config(data__channels=1, data__image_size=16))
  check_batch(ds.eval_batches(8)[0], 8, (16, 16, 1))


def test_natural_split_by_photo_is_disjoint(natural):
  photos = sources.load_npz(sources.embedded_path("natural.npz"))
  assert set(data.NATURAL_TRAIN_PHOTOS) | set(data.NATURAL_VAL_PHOTOS) == set(photos)
  assert not set(data.NATURAL_TRAIN_PHOTOS) & set(data.NATURAL_VAL_PHOTOS)
  assert schema.NATURAL_MAX_SIZE == min(min(p.shape[:2]) for p in photos.values())

  def found_in(patch, names):
    # Exact search: windows whose first row matches, then the whole patch.
    for name in names:
      img = photos[name]
      rows = np.lib.stride_tricks.sliding_window_view(img, (1, 32, 3))[..., 0, 0, :, :]
      for y, x in zip(*np.nonzero((rows == patch[0]).all(axis=(-1, -2)))):
        if (img[y:y + 32, x:x + 32] == patch).all():
          return True
    return False

  train = (next(natural.train_iterator(0, 6))["image"] * 255).round().astype(np.uint8)
  for patch in train:
    assert found_in(patch, data.NATURAL_TRAIN_PHOTOS)
    assert not found_in(patch, data.NATURAL_VAL_PHOTOS)
  evals = (natural.eval_batches(6)[0]["image"] * 255).round().astype(np.uint8)
  for patch in evals:
    assert found_in(patch, data.NATURAL_VAL_PHOTOS)
    assert not found_in(patch, data.NATURAL_TRAIN_PHOTOS)


def test_no_near_constant_patch_in_pools(natural):
  src = natural.source
  rng = np.random.default_rng(0)
  for pool in (src.train_pool, src.val_pool):
    for i in rng.choice(len(pool), 300, replace=False):
      assert sources.patch_std(pool.patch(int(i))) > sources.MIN_PATCH_STD
  for patch in natural.eval_set()["image"]:
    assert sources.patch_std(patch) > sources.MIN_PATCH_STD
  # The integral-image window std equals the direct computation, and the
  # retina's black border is excluded from the pool.
  img = src.train_pool.photos[3]
  std = sources.window_std(img, 32)
  for y, x in [(0, 0), (100, 57), (352, 352)]:
    assert std[y, x] == pytest.approx(sources.patch_std(img[y:y + 32, x:x + 32]))
  assert std[0, 0] <= sources.MIN_PATCH_STD
  assert len(src.train_pool) < sum(
      (p.shape[0] - 31) * (p.shape[1] - 31) for p in src.train_pool.photos)


# -- determinism, resume, multi-host ---------------------------------------------


def test_same_seed_same_batches_and_fresh_masks(natural):
  again = tasks.dataset(make_config())
  a, b = take(natural.train_iterator(0, 8), 2), take(again.train_iterator(0, 8), 2)
  for x, y in zip(a, b):
    assert_batches_equal(x, y)
  assert not np.array_equal(a[0]["mask"], a[1]["mask"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])
  other = next(tasks.dataset(make_config(seed=1)).train_iterator(0, 8))
  assert not np.array_equal(other["mask"], a[0]["mask"])
  assert not np.array_equal(other["image"], a[0]["image"])


@pytest.mark.parametrize("threads,prefetch", [(2, 2), (0, 2), (0, 0)])
def test_resume_equals_uninterrupted(natural, threads, prefetch):
  natural.num_threads, natural.prefetch = threads, prefetch
  try:
    full = take(natural.train_iterator(0, 8), 6)
    resumed = take(natural.train_iterator(4, 8), 2)
  finally:
    natural.num_threads, natural.prefetch = 2, 2
  assert_batches_equal(full[4], resumed[0])
  assert_batches_equal(full[5], resumed[1])
  assert_batches_equal(full[5], natural.train_batch(5, 8))


def test_worker_processes_yield_the_same_stream(natural):
  # Batches built in 2 grain worker processes, from a resume point: the same
  # batches in the same order as direct reads, and close() ends the workers.
  natural.num_workers = 2
  try:
    it = natural.train_iterator(3, 8)
    got = take(it, 5)
    it.close()
  finally:
    natural.num_workers = 0
  for k, b in enumerate(got):
    assert_batches_equal(b, natural.train_batch(3 + k, 8))


def test_epochs_reshuffle_and_cover_the_source(mnist):
  order = [mnist._order[i] for i in range(8000)]
  assert sorted(order[:4000]) == list(range(4000))
  assert sorted(order[4000:]) == list(range(4000))
  assert order[:4000] != order[4000:]


@pytest.mark.parametrize("count", [2, 4])
def test_host_slices_concatenate_to_the_global_batch(natural, count):
  full = take(natural.train_iterator(3, 8), 2)
  parts = [take(natural.train_iterator(3, 8, p, count), 2) for p in range(count)]
  for step in range(2):
    joined = {k: np.concatenate([parts[p][step][k] for p in range(count)])
              for k in full[step]}
    assert_batches_equal(joined, full[step])
  ev = natural.eval_batches(16)
  ev_parts = [natural.eval_batches(16, p, count) for p in range(count)]
  for i, batch in enumerate(ev):
    joined = {k: np.concatenate([ev_parts[p][i][k] for p in range(count)])
              for k in batch}
    assert_batches_equal(joined, batch)


def test_batch_not_divisible_by_processes(natural):
  with pytest.raises(ConfigError, match=r"config\.train\.batch_size = 9: "
                     r"must be divisible by the process count \(2\)"):
    natural.train_iterator(0, 9, 0, 2)
  with pytest.raises(ConfigError, match=r"config\.train\.eval_batch_size = 9"):
    natural.eval_batches(9, 1, 2)


def test_eval_set_is_fixed_and_padded(natural):
  a, b = natural.eval_batches(16), natural.eval_batches(16)
  assert len(a) == 3  # 40 examples
  for x, y in zip(a, b):
    assert_batches_equal(x, y)
  check_batch(a[-1], 16, (32, 32, 3))
  np.testing.assert_array_equal(a[-1]["valid"], [1] * 8 + [0] * 8)
  assert sum(x["valid"].sum() for x in a) == 40
  assert all(np.isfinite(x["image"]).all() for x in a)
  # Independent of config.seed (training) and of the batch size.
  other = tasks.dataset(make_config(seed=7)).eval_batches(40)[0]
  assert_batches_equal(other, {k: np.concatenate([x[k] for x in a])[:40]
                               for k in other})
  # Eval masks are not training masks, and differ with masks.eval_seed.
  moved = tasks.dataset(make_config(masks__eval_seed=1)).eval_batches(40)[0]
  assert not np.array_equal(moved["mask"], other["mask"])


# -- tfds --------------------------------------------------------------------------


def test_tfds_through_mock_data_without_tensorflow():
  # A hard requirement (requirements.txt): a missing install must fail here.
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    ds = tasks.dataset(make_config(data__source="tfds", data__name="mnist",
                                data__image_size=32, data__channels=3,
                                data__num_eval=5))
    assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
    batches = take(ds.train_iterator(0, 4), 4)
    for b in batches:
      check_batch(b, 4, (32, 32, 3))
      assert b["label"].min() >= 0 and b["label"].max() <= 9
    assert_batches_equal(batches[3], next(ds.train_iterator(3, 4)))
    ev = ds.eval_batches(4)
    assert len(ev) == 2 and ev[1]["valid"].sum() == 1

    celeb = tasks.dataset(make_config(data__source="tfds", data__name="celeb_a",
                                   data__image_size=16, data__channels=1,
                                   data__num_eval=3))  # 218x178: resize + crop
    assert celeb.num_classes is None
    b = next(celeb.train_iterator(0, 2))
    check_batch(b, 2, (16, 16, 1))
    assert (b["label"] == 0).all()

    with pytest.raises(ConfigError, match=r"config\.data\.num_eval = 50: must be <= 12"):
      tasks.dataset(make_config(data__source="tfds", data__name="cifar10",
                             data__num_eval=50))
  assert "tensorflow" not in sys.modules


def test_tfds_missing_dataset_is_a_config_error(tmp_path):
  # Never downloads by default: a clear error naming the field instead.
  with pytest.raises(ConfigError, match=r"(?s)^config\.data\.name = 'mnist': "
                     r"cannot open TFDS split 'train'.*tfds build mnist"):
    tasks.dataset(make_config(data__source="tfds", data__name="mnist",
                           data__data_dir=str(tmp_path)))
  with pytest.raises(ConfigError, match=r"(?s)config\.data\.name = 'no_such_ds_x'"
                     r".*DatasetNotFoundError"):
    tasks.dataset(make_config(data__source="tfds", data__name="no_such_ds_x",
                           data__data_dir=str(tmp_path)))


# -- folder ------------------------------------------------------------------------


def _write_images(folder, rng):
  (folder / "sub" / "deeper").mkdir(parents=True)
  def noise(h, w, c):
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  Image.fromarray(noise(60, 80, 3)).save(folder / "a.png")
  Image.fromarray(noise(50, 45, 3)).save(folder / "sub" / "b.JPG", quality=90)
  Image.fromarray(noise(20, 30, 1)[..., 0]).save(folder / "sub" / "small_grey.png")
  Image.fromarray(noise(40, 40, 4), "RGBA").save(folder / "sub" / "deeper" / "c.png")
  Image.fromarray(noise(70, 33, 3)).save(folder / "d.jpeg")
  (folder / "notes.txt").write_text("not an image")


def test_folder_source(tmp_path):
  _write_images(tmp_path, np.random.default_rng(0))
  cfg = make_config(data__source="folder", data__folder=str(tmp_path),
                    data__num_eval=6, masks__kind="pixels")
  ds = tasks.dataset(cfg)
  assert ds.image_shape == (32, 32, 3) and ds.num_classes is None
  src = ds.source
  assert len(src.train_files) + len(src.eval_files) == 5  # txt ignored
  assert len(src.eval_files) == 1  # round(10 %) held out, at least one
  assert not set(map(str, src.train_files)) & set(map(str, src.eval_files))
  batches = take(ds.train_iterator(0, 4), 3)
  for b in batches:
    check_batch(b, 4, (32, 32, 3))
  assert_batches_equal(batches[2], next(tasks.dataset(cfg).train_iterator(2, 4)))
  ev = ds.eval_batches(4)
  assert len(ev) == 2 and sum(b["valid"].sum() for b in ev) == 6
  for x, y in zip(ev, tasks.dataset(cfg).eval_batches(4)):
    assert_batches_equal(x, y)
  # Grey output; the 20x30 image is resized up to fit a 24x24 crop.
  grey = tasks.dataset(make_config(data__source="folder", data__folder=str(tmp_path),
                                data__eval_folder=str(tmp_path / "sub"),
                                data__channels=1, data__image_size=24,
                                data__num_eval=3))
  check_batch(next(grey.train_iterator(0, 5)), 5, (24, 24, 1))
  check_batch(grey.eval_batches(3)[0], 3, (24, 24, 1))


def test_folder_bad_files_are_left_out_and_reported_once(tmp_path, caplog):
  _write_images(tmp_path, np.random.default_rng(0))
  write_bad_files(tmp_path, np.random.default_rng(1))
  cfg = make_config(data__source="folder", data__folder=str(tmp_path),
                    data__num_eval=3)
  with caplog.at_level("WARNING"):
    ds = tasks.dataset(cfg)
  reports = [r.getMessage() for r in caplog.records
             if "unreadable and left out" in r.getMessage()]
  assert len(reports) == 1
  assert reports[0].startswith("data.folder: 3 of 9 image files are unreadable")
  for name, why in (("broken.png", "not an image file PIL can identify"),
                    ("empty.jpg", "empty file"),
                    ("truncated.png", "truncated PNG")):
    assert f"{name}: {why}" in reports[0]
  names = sorted(p.name for p in ds.source.train_files + ds.source.eval_files)
  assert names == ["a.png", "b.JPG", "c.png", "cut.jpg", "d.jpeg",
                   "small_grey.png"]
  # cut.jpg fails only when decoded: the next file in list order stands in,
  # every time and in every build, so batches stay a function of the step.
  files = ds.source.train_files
  cut = [p.name for p in files].index("cut.jpg")
  rng = np.random.default_rng(0)
  with caplog.at_level("WARNING"):
    got, _ = ds.source.train_example(cut, rng)
  stand_in = ds.source.load(files[(cut + 1) % len(files)])
  np.testing.assert_array_equal(got, ds.source._crop(stand_in, np.random.default_rng(0)))
  assert "cannot read image file" in caplog.text and "cut.jpg" in caplog.text
  again = tasks.dataset(cfg)
  for step in range(4):
    assert_batches_equal(ds.train_batch(step, 4), again.train_batch(step, 4))


def test_folder_bad_files_fatal_on_request_and_no_readable_image(tmp_path):
  _write_images(tmp_path, np.random.default_rng(0))
  write_bad_files(tmp_path, np.random.default_rng(1))
  with pytest.raises(data.DataError) as e:
    tasks.dataset(make_config(data__source="folder", data__folder=str(tmp_path),
                           data__bad_images="error"))
  assert "\n" not in str(e.value)
  assert str(e.value).startswith(f"cannot read image file {tmp_path}/broken.png:"
                                 " not an image file PIL can identify")
  for name in ("broken.png", "empty.jpg", "truncated.png"):
    (tmp_path / name).unlink()
  with pytest.raises(data.DataError, match=r"cannot read image file .*cut\.jpg: OSError"):
    ds = tasks.dataset(make_config(data__source="folder", data__folder=str(tmp_path),
                                data__bad_images="error", data__num_eval=2))
    for i in range(ds.source.num_train):  # if the build did not decode it
      ds.source.train_example(i, np.random.default_rng(0))
  # Nothing usable: a one-line ConfigError naming the folder, whether the
  # files fail the cheap check or only decoding.
  only_bad = tmp_path / "only_bad"
  only_bad.mkdir()
  write_bad_files(only_bad, np.random.default_rng(2))
  with pytest.raises(ConfigError, match=r"^config\.data\.folder = .*only_bad.*: "
                     r"holds no readable image: .*cut\.jpg") as e:
    tasks.dataset(make_config(data__source="folder", data__folder=str(only_bad),
                           data__eval_folder=str(tmp_path)))
  assert "\n" not in str(e.value)
  (only_bad / "cut.jpg").unlink()
  with pytest.raises(ConfigError, match=r"holds no readable image: all 3 image "
                     r"files failed a check \(broken\.png: "):
    tasks.dataset(make_config(data__source="folder", data__folder=str(only_bad),
                           data__eval_folder=str(tmp_path)))


def test_folder_without_images_or_eval_set_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match=r"^config\.data\.folder = .*no \.png/\.jpg/\.jpeg"):
    tasks.dataset(make_config(data__source="folder", data__folder=str(tmp_path)))
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "only.png")
  with pytest.raises(ConfigError, match=r"^config\.data\.eval_folder = None: is needed"):
    tasks.dataset(make_config(data__source="folder", data__folder=str(tmp_path)))


def test_wrongly_shaped_array_is_a_clear_error():
  with pytest.raises(data.DataError, match=r"x\.png: expected an image"):
    sources.to_channels(np.zeros((4, 4, 5), np.uint8), 3, "x.png")
  with pytest.raises(data.DataError, match="expected uint8"):
    sources.to_channels(np.zeros((4, 4), np.float32), 3, "x.png")


def test_masks_are_the_inpainting_tasks_transform():
  """Only task="inpaint" adds masks; other tasks, and the data without a
  task, get images and labels."""
  config = make_config(task="classify", data__name="mnist5k",
                       data__image_size=28, data__channels=1)
  ds = tasks.dataset(config)
  assert ds.transform is None
  assert data.build(make_config(data__name="mnist5k", data__image_size=28,
                                data__channels=1)).transform is None
  batch = ds.train_batch(0, 4)
  assert set(batch) == {"image", "label", "valid", "example_id"}
  assert set(ds.eval_batches(8)[0]) == {"image", "label", "valid",
                                        "example_id"}
  assert set(ds.eval_set()) == {"image", "label"}
  inpaint = tasks.dataset(make_config(data__name="mnist5k", data__image_size=28,
                                   data__channels=1))
  assert isinstance(inpaint.transform, masks.HoleMasks)
  with_mask = inpaint.train_batch(0, 4)
  assert set(with_mask) == set(batch) | {"mask"}
  # The transform adds a field; it changes nothing else in the example.
  for key in batch:
    np.testing.assert_array_equal(with_mask[key], batch[key], err_msg=key)
