"""scnn_jax.tiling: the Inpainter on images of any size: tile plans, tiled
equal to untiled, one compile per tile shape, padding to the model's size
multiple, models whose output depends on the whole image."""

import numpy as np
import pytest

from scnn_jax import inference, tiling
from scnn_jax.images import to_uint8
from tests.test_cli_inpaint import check_composite, workdir  # noqa: F401


@pytest.fixture(scope="module")
def loaded(workdir):  # noqa: F811
  return inference.load(workdir)


def test_tile_plans_partition_the_image_with_overlap():
  for h, w, budget, r, m in [(70, 90, 900, 6, 1), (37, 200, 1200, 6, 1),
                             (64, 96, 1024, 3, 8), (500, 17, 2000, 6, 1)]:
    plan = tiling.plan_tiles(h, w, max_pixels=budget, radius=r, multiple=m)
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
  whole = tiling.plan_tiles(30, 40, max_pixels=1200, radius=6)
  assert not whole.tiled and whole.tiles[0] == tiling.Tile(0, 0, 0, 30, 0, 40)
  with pytest.raises(tiling.TilingError, match="memory budget too small"):
    tiling.plan_tiles(300, 300, max_pixels=200, radius=6)


def test_tiled_equals_untiled_and_compiles_once_per_tile_shape(loaded):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (71, 93, 3), dtype=np.uint8)
  holes = np.zeros((71, 93), bool)
  holes[10:30, 20:50] = holes[50:60, 70:90] = True
  whole = tiling.Inpainter(loaded.model, loaded.config)
  assert not whole.plan(71, 93).tiled and whole.radius == 6
  # Budget for ~1000 px per call: 31x31 tiles, one per call.
  tiny_mb = 1000 * whole.bytes_per_pixel / 2**20
  tiled = tiling.Inpainter(loaded.model, loaded.config, memory_mb=tiny_mb)
  plan = tiled.plan(71, 93)
  assert plan.tiled and len(plan.tiles) >= 9 and plan.batch == 1

  expected = whole.predict(pixels, holes)
  got = tiled.predict(pixels, holes)
  assert np.isfinite(got).all() and got.shape == (71, 93, 3)
  np.testing.assert_allclose(got, expected, atol=2e-6)
  assert tiled.compiled_shapes == {(1, plan.tile_h, plan.tile_w, 3)}
  assert tiled._forward._cache_size() == 1

  # Batched tiles (several per call, last batch padded) give the same.
  batched = tiling.Inpainter(loaded.model, loaded.config,
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
  inp = tiling.Inpainter(loaded.model, loaded.config)
  inp.multiple = 8  # as a variant with two stride-2 stages would need
  assert inp.padded_size(13, 22) == (16, 24)
  out = inp.inpaint(pixels, holes)
  check_composite(out, pixels, holes)
  assert inp.compiled_shapes == {(1, 16, 24, 3)}
