"""python -m scnn_jax.inpaint: user images of any size / mode, tiling, errors."""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from scnn_jax import inference, optim, tasks, trainer
from scnn_jax import inpaint as cli
from scnn_jax.checkpoint import Checkpointer
from scnn_jax.images import to_uint8
from tests.test_train_integration import tiny_config

REPO = Path(__file__).resolve().parents[1]


def make_workdir(path, config, step=5):
  """A workdir as train.py leaves it (config.json + an Orbax checkpoint of
  the train state), without the cost of training: the weights are the
  initial ones, with biases nudged so every layer matters."""
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(config.to_json_best_effort(indent=2))
  task = tasks.get(config)
  state, _ = trainer.create_state(config, task, inference.data_spec(config),
                                  optim.build(config.train))
  state["params"] = jax.tree.map(lambda x: x + 0.05, state["params"])
  state["step"] = state["step"] + step
  ckpt = Checkpointer(path / "checkpoints")
  ckpt.save(step, state, force=True)
  ckpt.wait()
  ckpt.close()
  return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return make_workdir(tmp_path_factory.mktemp("inpaint") / "run",
                      tiny_config())


@pytest.fixture(scope="module")
def loaded(workdir):
  return inference.load(workdir)


def rand_image(rng, h, w, mode):
  c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
  a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  return Image.fromarray(a[..., 0] if c == 1 else a)


def box_mask(h, w, y0, y1, x0, x1, mode="L"):
  m = np.zeros((h, w), np.uint8)
  m[y0:y1, x0:x1] = 255
  if mode == "RGB":
    return Image.fromarray(np.repeat(m[..., None], 3, -1))
  return Image.fromarray(m)


def read(path):
  return np.asarray(Image.open(path))


def run_cli(capsys, *args):
  rc = cli.main([str(a) for a in args])
  return rc, capsys.readouterr().err


def check_composite(out, expected_known, holes):
  """Known pixels byte-identical; same size; every hole pixel written."""
  assert out.shape == expected_known.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[~holes], expected_known[~holes])


# ---------------------------------------------------------------------------
# Conversions (no model)
# ---------------------------------------------------------------------------


def test_image_modes_are_converted_to_the_checkpoint_channels():
  rng = np.random.default_rng(0)
  rgb = rand_image(rng, 5, 7, "RGB")
  gray = rand_image(rng, 5, 7, "L")
  rgba = rand_image(rng, 5, 7, "RGBA")

  a, notes = cli.to_model_pixels(rgb, 3)
  np.testing.assert_array_equal(a, np.asarray(rgb))
  assert notes == []
  a, notes = cli.to_model_pixels(gray, 3)
  np.testing.assert_array_equal(a, np.repeat(np.asarray(gray)[..., None], 3, -1))
  assert "replicated to RGB" in notes[0]
  a, notes = cli.to_model_pixels(rgba, 3)
  np.testing.assert_array_equal(a, np.asarray(rgba)[..., :3])
  assert "alpha channel dropped" in notes[0]
  a, notes = cli.to_model_pixels(rgb, 1)
  np.testing.assert_array_equal(a[..., 0], np.asarray(rgb.convert("L")))
  assert "converted to grayscale" in notes[0]
  a, _ = cli.to_model_pixels(gray.convert("LA"), 1)
  np.testing.assert_array_equal(a[..., 0], np.asarray(gray))
  a, notes = cli.to_model_pixels(rgb.convert("P"), 3)
  np.testing.assert_array_equal(a, np.asarray(rgb.convert("P").convert("RGB")))
  wide = Image.fromarray(np.array([[0, 257 * 7, 65535]], np.uint16))
  a, notes = cli.to_model_pixels(wide, 1)
  np.testing.assert_array_equal(a[..., 0], [[0, 7, 255]])
  assert "16-bit" in notes[0]
  assert a.dtype == np.uint8 and a.flags.c_contiguous


def test_mask_threshold_is_50_percent_and_transparent_is_known():
  levels = np.array([[0, 127, 128, 255]], np.uint8)
  np.testing.assert_array_equal(cli.mask_to_holes(Image.fromarray(levels)),
                                [[False, False, True, True]])
  rgb = np.zeros((1, 3, 3), np.uint8)
  rgb[0, 0] = 255                  # white: hole
  rgb[0, 1] = (255, 0, 0)          # red: luma 76 -> known
  rgb[0, 2] = (128, 128, 128)      # mid grey: hole
  np.testing.assert_array_equal(cli.mask_to_holes(Image.fromarray(rgb)),
                                [[True, False, True]])
  rgba = np.full((1, 3, 4), 255, np.uint8)
  rgba[0, 1, 3] = 0                # white but transparent: known
  rgba[0, 2, 3] = 100              # white at 39 % alpha: known
  np.testing.assert_array_equal(cli.mask_to_holes(Image.fromarray(rgba)),
                                [[True, False, False]])
  bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
  np.testing.assert_array_equal(cli.mask_to_holes(bits), [[False, True]])
  wide = Image.fromarray(np.array([[32767, 32768]], np.uint16))
  np.testing.assert_array_equal(cli.mask_to_holes(wide), [[False, True]])


def test_tile_plans_partition_the_image_with_overlap():
  for h, w, budget, r, m in [(70, 90, 900, 6, 1), (37, 200, 1200, 6, 1),
                             (64, 96, 1024, 3, 8), (500, 17, 2000, 6, 1)]:
    plan = cli.plan_tiles(h, w, max_pixels=budget, radius=r, multiple=m)
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
  whole = cli.plan_tiles(30, 40, max_pixels=1200, radius=6)
  assert not whole.tiled and whole.tiles[0] == cli.Tile(0, 0, 0, 30, 0, 40)
  with pytest.raises(cli.UserError, match="memory budget too small"):
    cli.plan_tiles(300, 300, max_pixels=200, radius=6)


# ---------------------------------------------------------------------------
# The model on images (function level)
# ---------------------------------------------------------------------------


def test_tiled_equals_untiled_and_compiles_once_per_tile_shape(loaded):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (71, 93, 3), dtype=np.uint8)
  holes = np.zeros((71, 93), bool)
  holes[10:30, 20:50] = holes[50:60, 70:90] = True
  whole = cli.Inpainter(loaded.model, loaded.config, loaded.task)
  assert not whole.plan(71, 93).tiled and whole.radius == 6
  # Budget for ~1000 px per call: 31x31 tiles, one per call.
  tiny_mb = 1000 * whole.bytes_per_pixel / 2**20
  tiled = cli.Inpainter(loaded.model, loaded.config, loaded.task,
                        memory_mb=tiny_mb)
  plan = tiled.plan(71, 93)
  assert plan.tiled and len(plan.tiles) >= 9 and plan.batch == 1

  expected = whole.predict(pixels, holes)
  got = tiled.predict(pixels, holes)
  assert np.isfinite(got).all() and got.shape == (71, 93, 3)
  np.testing.assert_allclose(got, expected, atol=2e-6)
  assert tiled.compiled_shapes == {(1, plan.tile_h, plan.tile_w, 3)}
  assert tiled._forward._cache_size() == 1

  # Batched tiles (several per call, last batch padded) give the same.
  batched = cli.Inpainter(loaded.model, loaded.config, loaded.task,
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
  inp = cli.Inpainter(loaded.model, loaded.config, loaded.task)
  inp.multiple = 8  # as a variant with two stride-2 stages would need
  assert inp.padded_size(13, 22) == (16, 24)
  out = inp.inpaint(pixels, holes)
  check_composite(out, pixels, holes)
  assert inp.compiled_shapes == {(1, 16, 24, 3)}


def test_point_picks_model_k_of_an_ablation_checkpoint(tmp_path):
  from flax import nnx
  from scnn_jax import ablation
  config = tiny_config()
  config.ablation.grid = {"model": {"threshold": [1.0, 0.5]}}
  path = tmp_path / "abl"
  path.mkdir()
  (path / "config.json").write_text(config.to_json_best_effort(indent=2))
  tx = optim.build(config.train)
  _, state, _ = ablation.create_stacked_state(
      config, tasks.get(config), inference.data_spec(config), tx,
      trainer.create_state)
  ckpt = Checkpointer(path / "checkpoints")
  ckpt.save(5, state, force=True)
  ckpt.wait()
  ckpt.close()
  for k in (0, 1):
    loaded = inference.load(path, point=k)
    assert loaded.point_name == f"threshold={[1, 0.5][k]:g}"
    assert loaded.config.model.threshold == [1.0, 0.5][k]
    got = jax.tree.leaves(nnx.state(loaded.model, nnx.Param))
    want = jax.tree.leaves(ablation.unstack(state["params"], k))
    for a, b in zip(got, want, strict=True):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.model.spiking.neuron.threshold[...],
                               [1.0, 0.5][k])
  with pytest.raises(inference.PointError, match=r"ablation of 2 models: "
                     r"pick one with point k \(0..1\)"):
    inference.load(path)
  with pytest.raises(inference.PointError, match="point 2: this ablation has 2"):
    inference.load(path, point=2)

  rng = np.random.default_rng(0)
  rand_image(rng, 20, 24, "RGB").save(tmp_path / "img.png")
  box_mask(20, 24, 5, 12, 6, 15).save(tmp_path / "mask.png")
  out = tmp_path / "out.png"
  run = subprocess.run(
      [sys.executable, "-m", "scnn_jax.inpaint", "--workdir", str(path),
       "--image", str(tmp_path / "img.png"), "--mask",
       str(tmp_path / "mask.png"), "--out", str(out), "--point", "1"],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "ablation point 1: threshold=0.5" in run.stderr
  assert Image.open(out).size == (24, 20)
  no_point = subprocess.run(
      [sys.executable, "-m", "scnn_jax.inpaint", "--workdir", str(path),
       "--image", str(tmp_path / "img.png"), "--mask",
       str(tmp_path / "mask.png"), "--out", str(out)],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert no_point.returncode == 2
  assert "pick one with --point k (0..1)" in no_point.stderr


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def test_rgb_odd_size_with_mask_and_side_by_side(workdir, tmp_path, capsys):
  rng = np.random.default_rng(4)
  rand_image(rng, 23, 37, "RGB").save(tmp_path / "photo.png")
  mask = box_mask(23, 37, 5, 15, 9, 30, mode="RGB")
  mask.save(tmp_path / "mask.png")
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "photo.png", "--mask", tmp_path / "mask.png",
                    "--out", tmp_path / "out" / "restored.png",
                    "--side-by-side")
  assert rc == 0, err
  out = read(tmp_path / "out" / "restored.png")
  holes = np.asarray(mask)[..., 0] > 127
  check_composite(out, read(tmp_path / "photo.png"), holes)
  assert (out[holes] != read(tmp_path / "photo.png")[holes]).any()
  side = read(tmp_path / "out" / "restored_side_by_side.png")
  assert side.shape == (23, 3 * 37 + 8, 3)
  np.testing.assert_array_equal(side[:, -37:], out)
  assert "wrote" in err and "error" not in err


@pytest.mark.parametrize("mode,size", [("L", (19, 30)), ("RGBA", (40, 17))])
def test_grayscale_and_rgba_inputs(workdir, tmp_path, capsys, mode, size):
  h, w = size
  img = rand_image(np.random.default_rng(5), h, w, mode)
  img.save(tmp_path / "in.png")
  box_mask(h, w, 3, h - 4, 4, w - 5).save(tmp_path / "m.png")
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "in.png", "--mask", tmp_path / "m.png",
                    "--out", tmp_path / "out.png")
  assert rc == 0, err
  out = read(tmp_path / "out.png")
  expected = np.asarray(img.convert("RGB"))
  holes = np.zeros((h, w), bool)
  holes[3:h - 4, 4:w - 5] = True
  check_composite(out, expected, holes)
  note = ("grayscale image replicated to RGB" if mode == "L"
          else "alpha channel dropped")
  assert f"note: {tmp_path / 'in.png'}: {note}" in err


def test_large_image_is_tiled_with_a_drawn_mask(workdir, tmp_path, capsys):
  h, w = 181, 263
  img = rand_image(np.random.default_rng(6), h, w, "RGB")
  img.save(tmp_path / "big.png")
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "big.png", "--mask-kind", "stroke",
                    "--mask-ratio", "0.1,0.2", "--out", tmp_path / "big_out.png",
                    "--memory-mb", "1")
  assert rc == 0, err
  assert "over the --memory-mb budget" in err and "tiles of" in err
  holes = read(tmp_path / "big_out_mask.png") > 127
  assert 0.09 < holes.mean() < 0.21
  check_composite(read(tmp_path / "big_out.png"), np.asarray(img), holes)


def test_folder_of_images_with_matching_masks(workdir, tmp_path, capsys):
  rng = np.random.default_rng(7)
  (tmp_path / "imgs").mkdir()
  (tmp_path / "masks").mkdir()
  sizes = {"a": (16, 16), "b": (21, 12)}
  for name, (h, w) in sizes.items():
    rand_image(rng, h, w, "RGB").save(tmp_path / "imgs" / f"{name}.png")
    box_mask(h, w, 2, 8, 3, 9).save(tmp_path / "masks" / f"{name}.png")
  (tmp_path / "imgs" / "notes.txt").write_text("not an image")
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "imgs", "--mask", tmp_path / "masks",
                    "--out", tmp_path / "out")
  assert rc == 0, err
  for name, (h, w) in sizes.items():
    holes = np.zeros((h, w), bool)
    holes[2:8, 3:9] = True
    check_composite(read(tmp_path / "out" / f"{name}.png"),
                    read(tmp_path / "imgs" / f"{name}.png"), holes)
  # A mask missing for one image: error before anything runs.
  (tmp_path / "masks" / "b.png").unlink()
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "imgs", "--mask", tmp_path / "masks",
                    "--out", tmp_path / "out2")
  assert rc == 2 and f"no mask in {tmp_path / 'masks'} for b.png" in err


def test_user_errors_are_one_line_naming_the_file(workdir, tmp_path, capsys):
  rng = np.random.default_rng(8)
  rand_image(rng, 10, 12, "RGB").save(tmp_path / "img.png")
  box_mask(10, 12, 2, 5, 2, 5).save(tmp_path / "mask.png")
  box_mask(11, 12, 2, 5, 2, 5).save(tmp_path / "tall.png")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n not really")
  base = ["--workdir", workdir, "--out", tmp_path / "o.png"]

  def error(*args):
    rc, err = run_cli(capsys, *base, *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]

  assert str(tmp_path / "nope.png") in error(
      "--image", tmp_path / "nope.png", "--mask", tmp_path / "mask.png")
  assert f"cannot read image {tmp_path / 'broken.png'}" in error(
      "--image", tmp_path / "broken.png", "--mask", tmp_path / "mask.png")
  assert f"cannot read mask {tmp_path / 'broken.png'}" in error(
      "--image", tmp_path / "img.png", "--mask", tmp_path / "broken.png")
  line = error("--image", tmp_path / "img.png", "--mask", tmp_path / "tall.png")
  assert f"mask {tmp_path / 'tall.png'} is 12x11 px but image " \
         f"{tmp_path / 'img.png'} is 12x10 px" in line
  assert "--mask FILE/FOLDER" in error("--image", tmp_path / "img.png")
  assert "must end in .png" in error(
      "--image", tmp_path / "img.png", "--mask", tmp_path / "mask.png",
      "--out", tmp_path / "o.jpg")
  assert "single model" in error("--image", tmp_path / "img.png", "--mask",
                                 tmp_path / "mask.png", "--point", "1")

  # Workdirs: missing, no config.json, config but no checkpoint.
  args = ["--image", tmp_path / "img.png", "--mask", tmp_path / "mask.png",
          "--out", tmp_path / "o.png"]
  # And a config.json missing a field this version needs.
  import json
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(
      (workdir / "config.json").read_text())
  old = json.loads((workdir / "config.json").read_text())
  del old["model"]["mask_channel"]
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "config.json").write_text(json.dumps(old))
  for wd, msg in [(tmp_path / "nowhere", "workdir"),
                  (tmp_path, "config.json not found"),
                  (tmp_path / "empty", "no checkpoint in"),
                  (tmp_path / "old", "another version of scnn_jax")]:
    rc, err = run_cli(capsys, "--workdir", wd, *args)
    assert rc == 2 and err.startswith("error: ") and msg in err, err
    assert str(wd) in err and len(err.strip().splitlines()) == 1


def test_mask_without_hole_warns_and_copies(workdir, tmp_path, capsys):
  img = rand_image(np.random.default_rng(9), 9, 14, "L")
  img.save(tmp_path / "g.png")
  Image.fromarray(np.full((9, 14), 127, np.uint8)).save(tmp_path / "m.png")
  rc, err = run_cli(capsys, "--workdir", workdir, "--image",
                    tmp_path / "g.png", "--mask", tmp_path / "m.png",
                    "--out", tmp_path / "o.png")
  assert rc == 0
  assert f"warning: mask {tmp_path / 'm.png'} has no hole" in err
  np.testing.assert_array_equal(read(tmp_path / "o.png"),
                                np.asarray(img.convert("RGB")))


def test_subprocess_error_has_no_traceback(tmp_path):
  r = subprocess.run(
      [sys.executable, "-m", "scnn_jax.inpaint", "--workdir", str(tmp_path),
       "--image", str(tmp_path / "missing.png"), "--mask-kind", "box",
       "--out", str(tmp_path / "o.png")],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2
  assert r.stderr.strip() == f"error: image {tmp_path / 'missing.png'} not found"


# ---------------------------------------------------------------------------
# The shipped model (scnn_jax/pretrained) and global receptive fields
# ---------------------------------------------------------------------------


def test_shipped_model_inpaints_without_a_workdir(tmp_path, capsys):
  from scnn_jax import pretrained
  loaded = pretrained.load()
  assert loaded.config.model.name == "spiking_unet"
  # A smooth generated photo-like image: the shipped model must fill its
  # hole close to the truth (not just "something"), known pixels exact.
  y, x = np.mgrid[0:48, 0:56] / 48.0
  truth = np.stack([0.5 + 0.3 * np.sin(3 * x + c) * np.cos(2 * y + c)
                    for c in range(3)], -1)
  pixels = np.round(truth * 255).astype(np.uint8)
  Image.fromarray(pixels).save(tmp_path / "in.png")
  box_mask(48, 56, 14, 30, 18, 38).save(tmp_path / "m.png")
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "out.png")
  assert rc == 0, err
  assert "pretrained model shipped in" in err
  out = read(tmp_path / "out.png")
  holes = np.zeros((48, 56), bool)
  holes[14:30, 18:38] = True
  check_composite(out, pixels, holes)
  err_hole = np.abs(out[holes].astype(int) - pixels[holes].astype(int))
  assert err_hole.mean() < 6          # mean fill is off by ~60 here
  # --point belongs to workdirs only.
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "o2.png",
                    "--point", "1")
  assert rc == 2 and "give --workdir too" in err


def test_global_receptive_field_models_run_whole_or_are_refused(
    tmp_path, capsys):
  from configs import base, spiking_unet, taid_inpaint
  assert cli.global_receptive_field(base.get_config()) is None
  assert "TAID" in cli.global_receptive_field(taid_inpaint.get_config())
  assert "prior" in cli.global_receptive_field(spiking_unet.get_config())
  rng = np.random.default_rng(7)
  rand_image(rng, 64, 64, "RGB").save(tmp_path / "in.png")
  box_mask(64, 64, 10, 20, 10, 20).save(tmp_path / "m.png")
  # Over the budget: one clear line, nothing written, nothing tiled.
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "out.png",
                    "--memory-mb", "0.5")
  assert rc == 2
  assert err.strip().splitlines()[-1] == (
      "error: 64x64 px is over the --memory-mb 0.5 budget (~512 px for this "
      "model) and this model cannot be tiled (its biharmonic prior is solved "
      "over the whole image, so tiles would change the result): raise "
      "--memory-mb or crop the image")
  assert not (tmp_path / "out.png").exists()
