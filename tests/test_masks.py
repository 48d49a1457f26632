import numpy as np
import pytest
from scipy import ndimage

from scnn_jax.data import masks

# How far a mask's hole ratio may land from its drawn target (module docstring
# of scnn_jax.data.masks), at the sizes tested here.
TOLERANCE = {"box": 0.03, "center": 0.035, "stroke": 0.002, "pixels": 0.002,
             "mixed": 0.03}


def _target(seed, lo, hi):
  # make_mask's first draw from the generator is the target ratio.
  return np.random.default_rng(seed).uniform(lo, hi)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
@pytest.mark.parametrize("hw", [(32, 32), (28, 28), (20, 36)])
@pytest.mark.parametrize("lo,hi", [(0.1, 0.4), (0.5, 0.8)])
def test_ratio_lands_in_range_and_mask_is_binary(kind, hw, lo, hi):
  h, w = hw
  ratios, targets = [], []
  for s in range(60):
    m = masks.make_mask(kind, [s, 7], h, w, lo, hi, **(
        {"max_boxes": 3} if kind == "box" else {}))
    assert m.shape == (h, w, 1) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    ratios.append(m.mean())
    targets.append(_target([s, 7], lo, hi))
  ratios, targets = np.array(ratios), np.array(targets)
  tol = TOLERANCE[kind]
  assert np.all(np.abs(ratios - targets) <= tol), np.abs(ratios - targets).max()
  assert np.all((ratios >= lo - tol) & (ratios <= hi + tol))
  # The targets spread over the range, so do the ratios.
  assert abs(ratios.mean() - (lo + hi) / 2) < 0.05
  assert ratios.std() > 0.05


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_deterministic_from_seed_and_generator_forms(kind):
  a = masks.make_mask(kind, 5, 32, 32, 0.1, 0.5)
  np.testing.assert_array_equal(a, masks.make_mask(kind, 5, 32, 32, 0.1, 0.5))
  np.testing.assert_array_equal(
      a, masks.make_mask(kind, np.random.default_rng(5), 32, 32, 0.1, 0.5))
  b = masks.make_mask(kind, 6, 32, 32, 0.1, 0.5)
  assert not np.array_equal(a, b)


def test_box_count_and_shape():
  for s in range(40):
    m = masks.make_mask("box", s, 32, 32, 0.05, 0.3, max_boxes=1)[..., 0]
    _, n = ndimage.label(m)
    assert n == 1
    ys, xs = np.nonzero(m)
    assert m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()  # a rectangle
    m = masks.make_mask("box", s, 32, 32, 0.05, 0.3, max_boxes=3)[..., 0]
    assert 1 <= ndimage.label(m)[1] <= 3


def test_center_is_centred_rectangle():
  for s in range(20):
    m = masks.make_mask("center", s, 32, 32, 0.1, 0.6)[..., 0]
    ys, xs = np.nonzero(m)
    assert m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    assert abs((ys.min() + ys.max()) / 2 - 15.5) <= 0.5
    assert abs((xs.min() + xs.max()) / 2 - 15.5) <= 0.5
    assert ys.max() - ys.min() == xs.max() - xs.min()  # square


def test_pixels_exact_count_and_stroke_is_connected_curves():
  m = masks.make_mask("pixels", 3, 32, 32, 0.25, 0.25)
  assert m.sum() == round(0.25 * 1024)
  # A stroke mask is made of a few thick curves, not scattered pixels.
  m = masks.make_mask("stroke", 3, 64, 64, 0.2, 0.2)[..., 0]
  assert ndimage.label(m)[1] <= 10


def test_bad_arguments():
  with pytest.raises(ValueError, match="unknown mask kind"):
    masks.make_mask("circle", 0, 8, 8, 0.1, 0.2)
  with pytest.raises(ValueError, match="ratio_min"):
    masks.make_mask("box", 0, 8, 8, 0.3, 0.2)
  with pytest.raises(ValueError, match="ratio_min"):
    masks.make_mask("box", 0, 8, 8, 0.0, 0.2)
  with pytest.raises(TypeError, match="max_boxes"):
    masks.make_mask("pixels", 0, 8, 8, 0.1, 0.2, max_boxes=2)
  with pytest.raises(ValueError, match="max_boxes"):
    masks.make_mask("box", 0, 8, 8, 0.1, 0.2, max_boxes=0)
  with pytest.raises(TypeError):
    masks.make_mask("box", "seed", 8, 8, 0.1, 0.2)


def test_generator_train_fresh_and_eval_fixed():
  gen = masks.MaskGenerator("stroke", 32, 32, 0.1, 0.3, eval_seed=9)
  np.testing.assert_array_equal(gen.train(0, 5), gen.train(0, 5))
  assert not np.array_equal(gen.train(0, 5), gen.train(0, 6))
  assert not np.array_equal(gen.train(0, 5), gen.train(1, 5))
  np.testing.assert_array_equal(gen.eval(3), gen.eval(3))
  assert not np.array_equal(gen.eval(3), gen.train(9, 3))
  other = masks.MaskGenerator("stroke", 32, 32, 0.1, 0.3, eval_seed=10)
  assert not np.array_equal(gen.eval(3), other.eval(3))


def test_hole_masks_transform_from_config():
  """masks.HoleMasks: what the inpainting task's data get per example."""
  from configs import base
  c = base.get_config()
  c.data.image_size = 20
  t = masks.HoleMasks.from_config(c)
  gen = masks.MaskGenerator("box", 20, 20, 0.05, 0.2, eval_seed=1234,
                            max_boxes=2)
  np.testing.assert_array_equal(t.train(0, 7)["mask"], gen.train(0, 7))
  ev = t.eval(3)["mask"]
  assert ev.dtype == np.uint8 and ev.shape == (20, 20, 1)
  np.testing.assert_array_equal(ev, gen.eval(3))


def _is_one_rectangle(m):
  ys, xs = np.nonzero(m)
  return bool(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all())


def test_mixed_draws_strokes_with_stroke_fraction():
  """Each mixed mask is one kind: its second draw (after the target ratio)
  picks strokes with probability stroke_fraction. With one box allowed, a
  box mask is one filled rectangle, which a stroke mask is not."""
  n, strokes = 300, 0
  for s in range(n):
    m = masks.make_mask("mixed", [s, 3], 32, 32, 0.1, 0.3, max_boxes=1,
                        stroke_fraction=0.3)[..., 0]
    r = np.random.default_rng([s, 3])
    target = r.uniform(0.1, 0.3)
    stroke = r.random() < 0.3
    strokes += stroke
    assert _is_one_rectangle(m) != stroke, s
    assert abs(m.mean() - target) <= (0.002 if stroke else 0.03)
  # Binomial(300, 0.3): 90 +- 7.9; the bound is 4 sigma.
  assert abs(strokes - 90) <= 32, strokes
  for fraction, rectangles in ((0.0, True), (1.0, False)):
    assert all(_is_one_rectangle(masks.make_mask(
        "mixed", s, 32, 32, 0.1, 0.3, max_boxes=1,
        stroke_fraction=fraction)[..., 0]) == rectangles for s in range(20))
  with pytest.raises(ValueError, match="stroke_fraction"):
    masks.make_mask("mixed", 0, 8, 8, 0.1, 0.2, stroke_fraction=1.5)
  with pytest.raises(TypeError, match="mixed"):
    masks.make_mask("mixed", 0, 8, 8, 0.1, 0.2, brush=3)


def test_mixed_from_config_and_one_box_of_a_third_of_the_side():
  from configs import base
  c = base.get_config()
  c.data.image_size = 24
  c.masks.kind, c.masks.stroke_fraction, c.masks.max_boxes = "mixed", 0.25, 2
  gen = masks.HoleMasks.from_config(c).generator
  assert gen.kind_options == {"max_boxes": 2, "stroke_fraction": 0.25}
  np.testing.assert_array_equal(gen.train(0, 4), masks.make_mask(
      "mixed", [0, 4, masks.TRAIN_MASK_STREAM], 24, 24, 0.05, 0.2,
      max_boxes=2, stroke_fraction=0.25))
  np.testing.assert_array_equal(gen.eval(1), gen.eval(1))
  # One box at ratio 0.11 is a hole about 1/3 of the crop side (masks.py).
  for s in range(20):
    m = masks.make_mask("box", s, 96, 96, 0.11, 0.11, max_boxes=1)[..., 0]
    ys, xs = np.nonzero(m)
    side = np.sqrt((np.ptp(ys) + 1) * (np.ptp(xs) + 1)) / 96
    assert 0.32 <= side <= 0.345, side
