"""scnn_jax.data.dead_leaves: the procedural source, its statistics, the mix
with another source, and its config fields."""

import numpy as np
import pytest
from scipy import ndimage

from configs import base, mnist5k_alif
from scnn_jax import data, tasks
from scnn_jax.config import schema
from scnn_jax.data import pipeline, sources
from scnn_jax.data import dead_leaves as dl
from scnn_jax.ops.checks import ConfigError


def rng(*seed):
  return np.random.default_rng(list(seed))


def config(seed=0, eval_seed=1234, **data_fields):
  """configs/base.py (inpainting) on 16 x 16 crops with a small eval set."""
  fields = base.get_config().to_dict()
  fields["seed"] = seed
  fields["masks"]["eval_seed"] = eval_seed
  fields["data"].update(image_size=16, num_eval=6, prefetch=0, num_threads=0)
  fields["data"].update(data_fields)
  return schema.complete(fields)


# -- the generator -------------------------------------------------------------


def test_render_is_deterministic_from_the_generator():
  a = dl.render(rng(3), 32)
  assert a.shape == (32, 32, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, dl.render(rng(3), 32))
  assert not np.array_equal(a, dl.render(rng(4), 32))
  # Grey: the BT.601 luma of the colour image of the same draw.
  grey = dl.render(rng(3), 32, channels=1)
  assert grey.shape == (32, 32, 1)
  np.testing.assert_array_equal(grey, sources.to_channels(a, 1))


def test_flat_shapes_make_a_piecewise_constant_image():
  """Without texture, blur and antialiasing every pixel shows one shape's
  colour: few colours and large flat regions."""
  size = 64
  largest = []
  for s in range(4):
    img = dl.render(rng(s), size, texture=False, blur=False, supersample=1)
    colours, label = np.unique(img.reshape(-1, 3), axis=0, return_inverse=True)
    label = label.reshape(size, size)
    assert len(colours) < 0.15 * size * size, len(colours)
    regions = (np.bincount(ndimage.label(label == k)[0].ravel())[1:].max()
               for k in range(len(colours)))
    largest.append(max(regions) / size ** 2)
    # Textured shapes vary inside: many more colours from the same shapes,
    # and the flat third of them (plus the gradients' and sinusoids'
    # zero-weight pixels) keep their colour exactly.
    textured = dl.render(rng(s), size, texture=True, blur=False, supersample=1)
    assert len(np.unique(textured.reshape(-1, 3), axis=0)) > 3 * len(colours)
    assert 0.25 < (textured == img).all(-1).mean() < 0.75
    # Antialiasing (2x supersampling) mixes colours along the edges.
    smooth = dl.render(rng(s), size, texture=False, blur=False)
    assert len(np.unique(smooth.reshape(-1, 3), axis=0)) > 2 * len(colours)
  # Power-law sizes: some shape usually covers a good part of the image.
  assert max(largest) > 0.1 and np.mean(largest) > 0.04, largest


def test_blur_defocuses_about_half_the_images():
  # The blur decision is the generator's last draw: images it spares are
  # identical to blur=False ones; the others are smoother.
  blurred, sharp_energy, blur_energy = 0, [], []
  for s in range(40):
    sharp = dl.render(rng(s, 1), 16, blur=False).astype(float)
    maybe = dl.render(rng(s, 1), 16, blur=True).astype(float)
    if not np.array_equal(sharp, maybe):
      blurred += 1
      sharp_energy.append(np.abs(ndimage.laplace(sharp)).mean())
      blur_energy.append(np.abs(ndimage.laplace(maybe)).mean())
  # Binomial(40, 0.5): 20 +- 3.2; the bound is 3.75 sigma.
  assert 8 <= blurred <= 32, blurred
  assert all(b < s for b, s in zip(blur_energy, sharp_energy))


def test_radii_follow_the_power_law():
  r = dl.sample_radii(rng(0), 200_000, 1.0, 1000.0, alpha=3.0)
  assert r.min() >= 1.0 and r.max() <= 1000.0
  # Maximum-likelihood exponent of a Pareto law (truncation at 1000 r_min
  # removes 1e-6 of the mass); standard error (alpha - 1) / sqrt(n) = 0.0045.
  alpha = 1.0 + len(r) / np.log(r).sum()
  assert abs(alpha - 3.0) < 0.03, alpha
  r = dl.sample_radii(rng(1), 200_000, 2.0, 2000.0, alpha=2.0)
  assert abs(1.0 + len(r) / np.log(r / 2.0).sum() - 2.0) < 0.03
  # Every octave of radii holds 3/4 of the shapes of the one below (r^-2
  # survival), which for alpha = 3 is equal area per octave.
  r = dl.sample_radii(rng(2), 200_000, 1.0, 1024.0)
  counts = np.histogram(r, bins=2.0 ** np.arange(0, 6))[0]
  np.testing.assert_allclose(counts[1:] / counts[:-1], 0.25, atol=0.02)
  # mean_area's closed form: E[pi r^2] for alpha = 3 on [1, 8] is
  # pi * ln(8) / ((1 - 1/64) / 2) = 4.2235 pi.
  assert dl.mean_area(1.0, 8.0) == pytest.approx(np.pi * np.log(8) * 128 / 63)
  r = dl.sample_radii(rng(3), 400_000, 1.0, 8.0)
  assert np.mean(np.pi * r * r) == pytest.approx(dl.mean_area(1.0, 8.0),
                                                 rel=0.01)


def test_colours_are_the_training_photos_histogram():
  corners, cdf = dl.colour_table()
  raw = sources.load_npz(sources.embedded_path("natural.npz"))
  raw.update(sources.load_npz(sources.embedded_path("photos_extra.npz")))
  assert set(dl.COLOUR_PHOTOS["natural.npz"] + dl.COLOUR_PHOTOS[
      "photos_extra.npz"]).isdisjoint(("chelsea", "coffee", "gravel"))
  pixels = np.concatenate([raw[k].reshape(-1, 3) for k in (
      "astronaut", "rocket", "motorcycle_left", "motorcycle_right")])
  q = pixels.astype(np.int64) // 16
  codes, counts = np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2],
                            return_counts=True)
  np.testing.assert_array_equal(
      corners, np.stack([codes // 256, codes // 16 % 16, codes % 16], 1) * 16)
  np.testing.assert_allclose(np.diff(cdf, prepend=0.0), counts / counts.sum())
  # Sampled colours have the photos' mean colour (bin centre offset 7.5).
  c = dl.sample_colours(rng(0), 100_000)
  assert c.shape == (3, 100_000) and c.min() >= 0 and c.max() < 256
  np.testing.assert_allclose(c.mean(1), (q * 16 + 7.5).mean(0), atol=1.0)


# -- the sources ---------------------------------------------------------------


class _Noise:
  """A stand-in source: uint8 noise from the example's rng (``value`` None),
  or a constant image."""
  image_shape, num_classes, num_train = (8, 8, 3), 10, 100

  def __init__(self, value=None):
    self.value = value

  def train_example(self, index, rng):
    if self.value is not None:
      return np.full((8, 8, 3), self.value, np.uint8), 0
    return rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), index % 10

  def eval_set(self):
    return np.full((2, 8, 8, 3), 7, np.uint8), np.array([3, 4], np.int32)


def test_mix_replaces_the_fraction_and_keeps_the_rest():
  base_src = _Noise()
  mixed = dl.MixedSource(base_src, _Noise(255), 0.3)
  assert (mixed.image_shape, mixed.num_classes, mixed.num_train) == (
      (8, 8, 3), 10, 100)
  n, from_leaves = 2000, 0
  for i in range(n):
    image, label = mixed.train_example(i, rng(0, i, 7))
    if (image == 255).all():
      from_leaves += 1
      assert label == 0
    else:    # the unmixed example at this position, untouched
      ref, ref_label = base_src.train_example(i, rng(0, i, 7))
      np.testing.assert_array_equal(image, ref)
      assert label == ref_label
  # Binomial(2000, 0.3): 600 +- 20.5; the bound is 4 sigma.
  assert abs(from_leaves - 600) <= 82, from_leaves
  np.testing.assert_array_equal(mixed.eval_set()[0], base_src.eval_set()[0])
  # With the real generator: a dead-leaves image drawn from the example.
  real = dl.MixedSource(base_src, dl.DeadLeavesSource(8, 3, 2, 0), 1.0)
  a = real.train_example(5, rng(0, 5, 7))[0]
  np.testing.assert_array_equal(a, real.train_example(5, rng(0, 5, 7))[0])
  assert not np.array_equal(a, real.train_example(6, rng(0, 6, 7))[0])
  with pytest.raises(ValueError, match="image shapes differ"):
    dl.MixedSource(base_src, dl.DeadLeavesSource(16, 3, 2, 0), 0.5)


def test_dead_leaves_dataset_is_a_function_of_seed_and_step():
  c = config(source="dead_leaves", name="dead_leaves")
  ds = tasks.dataset(c)
  assert ds.image_shape == (16, 16, 3) and ds.num_classes is None
  b0 = ds.train_batch(0, 4)
  assert b0["image"].shape == (4, 16, 16, 3)
  assert b0["mask"].shape == (4, 16, 16, 1)
  again = tasks.dataset(c).train_batch(0, 4)
  for k in b0:
    np.testing.assert_array_equal(b0[k], again[k])
  assert not np.array_equal(b0["image"], ds.train_batch(1, 4)["image"])
  assert not np.array_equal(b0["image"][0], b0["image"][1])
  other_seed = tasks.dataset(config(seed=1, source="dead_leaves", name="x"))
  assert not np.array_equal(b0["image"], other_seed.train_batch(0, 4)["image"])
  # The eval set: num_eval fixed images, whatever config.seed, from eval_seed.
  ev = ds.eval_set()["image"]
  assert ev.shape == (6, 16, 16, 3)
  np.testing.assert_array_equal(ev, other_seed.eval_set()["image"])
  assert len({im.tobytes() for im in ev}) == 6
  moved = tasks.dataset(config(eval_seed=99, source="dead_leaves", name="x"))
  assert not np.array_equal(ev, moved.eval_set()["image"])
  grey = tasks.dataset(config(source="dead_leaves", name="x", channels=1))
  np.testing.assert_array_equal(
      grey.eval_set()["image"],
      np.stack([sources.to_channels(im, 1) for im in ev]))


def test_mix_through_build_replaces_the_predicted_rows():
  plain = tasks.dataset(config())
  mixed = tasks.dataset(config(dead_leaves_mix=0.5))
  np.testing.assert_array_equal(plain.eval_set()["image"],
                                mixed.eval_set()["image"])
  a, b = plain.train_batch(0, 16), mixed.train_batch(0, 16)
  np.testing.assert_array_equal(a["mask"], b["mask"])   # masks do not move
  for i in range(16):
    crop_rng = np.random.default_rng([0, i, pipeline.TRAIN_CROP_STREAM])
    leaves = crop_rng.spawn(1)[0].random() < 0.5
    assert np.array_equal(a["image"][i], b["image"][i]) != leaves, i


# -- config --------------------------------------------------------------------


@pytest.mark.parametrize("fields,field,message", [
    (dict(source="dead_leaves", dead_leaves_mix=0.3), "data.dead_leaves_mix",
     "must be 0 for data.source='dead_leaves'"),
    (dict(dead_leaves_mix=1.5), "data.dead_leaves_mix", "must be in [0, 1]"),
    (dict(dead_leaves_mix=-0.1), "data.dead_leaves_mix", "must be in [0, 1]"),
    (dict(dead_leaves_texture="yes"), "data.dead_leaves_texture",
     "must be True or False"),
    (dict(dead_leaves_blur=1), "data.dead_leaves_blur",
     "must be True or False"),
    (dict(source="leaves"), "data.source", "dead_leaves"),
])
def test_config_errors_name_the_field(fields, field, message):
  with pytest.raises(ConfigError) as e:
    schema.validate(config(**fields), devices=1, check_files=False)
  text = str(e.value)
  assert "\n" not in text and text.startswith(f"config.{field} = ")
  assert message in text, text


def test_config_defaults_and_a_valid_dead_leaves_config():
  c = schema.validate(config(source="dead_leaves", name="dead_leaves"),
                      devices=1, check_files=False)
  assert (c.data.dead_leaves_mix, c.data.dead_leaves_texture,
          c.data.dead_leaves_blur) == (0.0, True, True)
  schema.validate(config(dead_leaves_mix=1.0), devices=1, check_files=False)
  # A classifier's labels would be wrong on the mixed-in images.
  classify = mnist5k_alif.get_config()
  classify.data.dead_leaves_mix = 0.2
  with pytest.raises(ConfigError, match=r"^config.data.dead_leaves_mix = 0.2: "
                     "must be 0 for task=classify"):
    schema.validate(classify, devices=1, check_files=False)
