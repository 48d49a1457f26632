"""scnn_jax.runtime.inpainter: the Inpainter on images of any size: tile
plans, tiled equal to untiled, one compile per tile shape, padding to the
model's size multiple, models whose output depends on the whole image."""

import numpy as np
import pytest

from scnn_jax.data.images import to_uint8
from scnn_jax.runtime import inference, inpainter
from tests.workdirs import check_composite


@pytest.fixture(scope="module")
def loaded(inpaint_workdir):
  return inference.load(inpaint_workdir)


def test_tile_plans_partition_the_image_with_overlap():
  for h, w, budget, r, m in [(70, 90, 900, 6, 1), (37, 200, 1200, 6, 1),
                             (64, 96, 1024, 3, 8), (500, 17, 2000, 6, 1)]:
    plan = inpainter.plan_tiles(h, w, max_pixels=budget, radius=r, multiple=m)
    assert plan.tiled and plan.tile_h * plan.tile_w * plan.batch <= budget
    assert plan.tile_h % m == 0 and plan.tile_w % m == 0
    count = np.zeros((h, w), int)
    for t in plan.tiles:
      assert 0 <= t.y0 and t.y0 + plan.tile_h <= h
      assert 0 <= t.x0 and t.x0 + plan.tile_w <= w
      count[t.cy0:t.cy1, t.cx0:t.cx1] += 1
      # Every core pixel has r px of real context inside its window, except
      # towards the image border (where the untiled model pads too).
      assert t.cy0 - t.y0 >= r or t.y0 == 0
      assert t.y0 + plan.tile_h - t.cy1 >= r or t.y0 + plan.tile_h == h
      assert t.cx0 - t.x0 >= r or t.x0 == 0
      assert t.x0 + plan.tile_w - t.cx1 >= r or t.x0 + plan.tile_w == w
    assert (count == 1).all()
  whole = inpainter.plan_tiles(30, 40, max_pixels=1200, radius=6)
  assert not whole.tiled
  assert whole.tiles[0] == inpainter.Tile(0, 0, 0, 30, 0, 40)
  with pytest.raises(inpainter.TilingError, match="memory budget too small"):
    inpainter.plan_tiles(300, 300, max_pixels=200, radius=6)


def test_tiled_equals_untiled_and_compiles_once_per_tile_shape(loaded):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (71, 93, 3), dtype=np.uint8)
  holes = np.zeros((71, 93), bool)
  holes[10:30, 20:50] = holes[50:60, 70:90] = True
  whole = inpainter.Inpainter(loaded.model, loaded.config)
  assert not whole.plan(71, 93).tiled and whole.radius == 6
  # Budget for ~1000 px per call: 31x31 tiles, one per call.
  tiny_mb = 1000 * whole.bytes_per_pixel / 2**20
  tiled = inpainter.Inpainter(loaded.model, loaded.config, memory_mb=tiny_mb)
  plan = tiled.plan(71, 93)
  assert plan.tiled and len(plan.tiles) >= 9 and plan.batch == 1

  expected = whole.predict(pixels, holes)
  got = tiled.predict(pixels, holes)
  assert np.isfinite(got).all() and got.shape == (71, 93, 3)
  np.testing.assert_allclose(got, expected, atol=2e-6)
  assert tiled.compiled_shapes == {(1, plan.tile_h, plan.tile_w, 3)}
  assert tiled._forward._cache_size() == 1

  # Batched tiles (several per call, last batch padded) give the same.
  batched = inpainter.Inpainter(loaded.model, loaded.config,
                                memory_mb=tiny_mb * 4, max_batch=4)
  np.testing.assert_allclose(batched.predict(pixels, holes), expected,
                             atol=2e-6)
  assert batched._forward._cache_size() == 1

  # The composite is taken in uint8: model output on holes, input elsewhere.
  out = tiled.inpaint(pixels, holes)
  check_composite(out, pixels, holes)
  np.testing.assert_array_equal(out[holes], to_uint8(expected)[holes])


def test_sizes_are_padded_to_the_model_multiple(loaded):
  rng = np.random.default_rng(2)
  pixels = rng.integers(0, 256, (13, 22, 3), dtype=np.uint8)
  holes = np.zeros((13, 22), bool)
  holes[4:9, 5:15] = True
  inp = inpainter.Inpainter(loaded.model, loaded.config)
  inp.multiple = 8  # as a variant with two stride-2 stages would need
  assert inp.padded_size(13, 22) == (16, 24)
  out = inp.inpaint(pixels, holes)
  check_composite(out, pixels, holes)
  assert inp.compiled_shapes == {(1, 16, 24, 3)}


# ---------------------------------------------------------------------------
# Windows around the holes (models whose output depends on the whole image)
# ---------------------------------------------------------------------------


def test_window_plans_group_near_holes_and_fit_the_budget():
  holes = np.zeros((400, 600), bool)
  holes[50:60, 50:70] = True       # A
  holes[52:58, 95:105] = True      # B: 25 px from A, within reach
  holes[300:340, 400:440] = True   # C: far from both
  plan = inpainter.plan_windows(holes, max_pixels=40_000, reach=30, multiple=8)
  g = plan.groups
  assert g[55, 60] == g[55, 100] != g[310, 410] and (g[~holes] == 0).all()
  # A + B: 55 px wide, margin max(30, 55), clipped at the top and left:
  # 160 + 7 -> 192 px; C: 40 + 80 + 7 -> 128, within a factor 2 of 192, so
  # it takes that size too (one compile).
  assert plan.count == 2 and len(plan.windows) == 1
  (shape, windows), = plan.windows.items()
  assert shape == (192, 192) and plan.batch[shape] == 1 and plan.calls == 2
  for w in windows:
    y0, y1, x0, x1 = w.box
    assert (g[y0:y1, x0:x1][holes[y0:y1, x0:x1]] == w.group).all()
    assert w.y0 % 8 == 0 and w.x0 % 8 == 0       # the net's stride grid
    # At least `reach` px of context on every side (or the image border).
    assert w.y0 <= max(0, y0 - 30) and w.y0 + shape[0] >= min(400, y1 + 30)
    assert w.x0 <= max(0, x0 - 30) and w.x0 + shape[1] >= min(600, x1 + 30)
    assert 0 <= w.y0 <= 400 - shape[0] and 0 <= w.x0 <= 600 - shape[1]
  # Holes closer than the reach are never split: with reach 20, A and B
  # (25 px apart) get their own windows.
  apart = inpainter.plan_windows(holes, max_pixels=40_000, reach=20, multiple=8)
  assert apart.count == 3 and apart.groups[55, 60] != apart.groups[55, 100]
  # A long scratch whose square window does not fit gets a rectangle.
  scratch = np.zeros((400, 600), bool)
  scratch[200:204, 20:560] = True
  (shape, _), = inpainter.plan_windows(scratch, max_pixels=80_000, reach=30,
                                       multiple=8).windows.items()
  assert shape == (96, 600)
  # A hole whose window cannot fit: one line naming it and the budget.
  with pytest.raises(inpainter.TilingError) as e:
    inpainter.plan_windows(holes, max_pixels=8_000, reach=30, multiple=8,
                           memory_mb=2)
  assert str(e.value) == (
      "a hole of 55x10 px at x=50, y=50 (with the holes less than 30 px "
      "from it) needs a window of 128x96 px (30 px of context on each side "
      "for this model), over the --memory-mb 2 budget (~8,000 px per model "
      "call): raise --memory-mb to 4")


def _resunet(monkeypatch, contrast):
  """A tiny relu PriorResUNet with random weights (so the net, not only the
  prior, shapes the fill) and its config; ``contrast`` = (mean, scale)
  replaces the known pixels' statistics, the one input of the net that is
  global by design, or None to keep them."""
  import jax
  from flax import nnx

  from configs import relu_resunet
  from scnn_jax.config import builders, schema
  from scnn_jax.models import resunet
  c = relu_resunet.get_config()
  c.model.width, c.model.depth = 4, 2
  c = schema.validate(c)
  model = builders.model(c)
  graphdef, state = nnx.split(model)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in
            zip(leaves, keys)]
  model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  model.eval()
  if contrast is not None:
    import jax.numpy as jnp
    mu, scale = contrast
    monkeypatch.setattr(resunet, "contrast", lambda image, mask, **kw: (
        jnp.full((image.shape[0], 1, 1, 1), mu, jnp.float32),
        jnp.full((image.shape[0], 1, 1, 1), scale, jnp.float32)))
  return model, c


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / 50.0
  img = np.stack([0.5 + 0.3 * np.sin(3 * x + c) * np.cos(2 * y - c)
                  for c in range(3)], -1)
  img = img + 0.04 * rng.normal(size=img.shape)
  return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def test_windowed_fill_equals_the_whole_image_fill_within_tolerance(
    monkeypatch):
  model, config = _resunet(monkeypatch, contrast=(0.5, 0.2))
  pixels = _photo(200, 300)
  holes = np.zeros((200, 300), bool)
  holes[40:52, 50:66] = holes[120:136, 150:166] = holes[60:74, 236:250] = True
  whole = inpainter.Inpainter(model, config, memory_mb=1e4)
  small_mb = 50_000 * whole.bytes_per_pixel / 2**20   # 60,000 px do not fit
  win = inpainter.Inpainter(model, config, memory_mb=small_mb, max_batch=1)
  assert not whole.plan(200, 300).tiled
  plan = win.plan(200, 300, holes)
  assert isinstance(plan, inpainter.WindowPlan) and plan.count == 3
  # Encoder 23 px (radius 11) + 4 * 2^2 + the 32-px hole-depth map.
  assert win.radius == 11 + 16 + 32 and win.grid == 4

  expected, got = whole.predict(pixels, holes), win.predict(pixels, holes)
  d = np.abs(got - expected)[holes]
  # Three holes: the prior's conjugate-gradient step sizes are sums over
  # all the holes it is given, so window and whole image stop at slightly
  # different approximations of the same biharmonic fill (measured 0.0019
  # at most, 0.0004 on average; 0.014 at most on a photo,
  # docs/how-to/inpaint.md).
  assert d.max() < 0.02 and d.mean() < 0.003
  # One hole: nothing else couples into its solve; what is left is the
  # prior's coarsest levels, cut from another image (measured 5e-5).
  one = np.zeros_like(holes)
  one[120:136, 150:166] = True
  d1 = np.abs(win.predict(pixels, one) - whole.predict(pixels, one))[one]
  assert d1.max() < 5e-4
  # The composite: known pixels byte-identical, every hole pixel from the
  # model (to uint8).
  out = win.inpaint(pixels, holes)
  check_composite(out, pixels, holes)
  np.testing.assert_array_equal(out[holes], to_uint8(got)[holes])
  assert win._forward._cache_size() == 1   # every window the same shape


def test_windows_for_global_models_or_refusal(loaded):
  # Bounded-field models still tile (exactly); global-field ones refuse
  # with windows=False, as before.
  model, config = loaded.model, loaded.config
  inp = inpainter.Inpainter(model, config, memory_mb=1)
  assert inp.plan(300, 300).tiled
  from configs import spiking_unet
  from scnn_jax.config import builders, schema
  c = schema.validate(spiking_unet.get_config())
  c.model.width = 4
  unet = builders.model(c)
  strict = inpainter.Inpainter(unet, c, memory_mb=8, windows=False)
  with pytest.raises(inpainter.TilingError, match="cannot be tiled"):
    strict.plan(2000, 2000)
  holes = np.zeros((2000, 2000), bool)
  holes[100:110, 100:110] = True
  windowed = inpainter.Inpainter(unet, c, memory_mb=8)
  plan = windowed.plan(2000, 2000, holes)
  assert isinstance(plan, inpainter.WindowPlan) and plan.count == 1
  # The spiking U-Net's net: encoder 35 px (radius 17) + 4 * 2^3.
  assert windowed.radius == 17 + 32 and windowed.grid == 8
  with pytest.raises(ValueError, match="pass holes"):
    windowed.plan(2000, 2000)
