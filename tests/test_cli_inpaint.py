"""scnn_jax.cli.inpaint (python -m scnn_jax.inpaint): user images of any size
and mode, folders, drawn masks, ablation points, the shipped model, models
that cannot be tiled, user mistakes as one line (before any model is built),
the compilation cache and --version."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from scnn_jax.cli import inpaint as cli
from tests.workdirs import (REPO, check_composite, make_workdir, rand_image,
                             tiny_config)


@pytest.fixture(scope="module")
def workdir(inpaint_workdir):
  return inpaint_workdir


def box_mask(h, w, y0, y1, x0, x1, mode="L"):
  m = np.zeros((h, w), np.uint8)
  m[y0:y1, x0:x1] = 255
  if mode == "RGB":
    return Image.fromarray(np.repeat(m[..., None], 3, -1))
  return Image.fromarray(m)


def read(path):
  return np.asarray(Image.open(path))


def run_cli(capsys, *args):
  # In-process: leave this test process's JAX cache settings alone.
  rc = cli.main([str(a) for a in args] + ["--compilation-cache", "off"])
  return rc, capsys.readouterr().err


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def test_point_picks_model_k_of_an_ablation_workdir(tmp_path):
  config = tiny_config()
  config.ablation.grid = {"model": {"threshold": [1.0, 0.5]}}
  path, _ = make_workdir(tmp_path / "abl", config)
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
  assert error("--image", tmp_path / "broken.png", "--mask",
               tmp_path / "mask.png") == (
      f"error: cannot read image {tmp_path / 'broken.png'}: not an image "
      "Pillow can decode (unknown file format)")
  # Not Pillow's name for the stream it read (an in-memory copy).
  line = error("--image", tmp_path / "img.png", "--mask",
               tmp_path / "broken.png")
  assert f"cannot read mask {tmp_path / 'broken.png'}" in line
  assert "BytesIO" not in line and "0x" not in line
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
  # A config.json missing a field with no default, and one with a field
  # this version does not know (fields it lacks get their defaults).
  import json
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(
      (workdir / "config.json").read_text())
  old = json.loads((workdir / "config.json").read_text())
  del old["model"]["T"]
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "config.json").write_text(json.dumps(old))
  new = json.loads((workdir / "config.json").read_text())
  new["model"]["warp"] = 2
  (tmp_path / "new").mkdir()
  (tmp_path / "new" / "config.json").write_text(json.dumps(new))
  for wd, msg in [(tmp_path / "nowhere", "workdir"),
                  (tmp_path, "config.json not found"),
                  (tmp_path / "empty", "no checkpoint in"),
                  (tmp_path / "old", "config.json: config.model.T = None: "
                   "is missing (must be set)"),
                  (tmp_path / "new", "config.json: config.model.warp = 2: "
                   "no such field")]:
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
  # The default is the spiking net; its non-spiking twin ships beside it.
  assert loaded.config.model.name == pretrained.DEFAULT == "spiking_resunet"
  assert loaded.model.activation == "spiking" and loaded.model.T > 1
  assert pretrained.load("relu_resunet").model.activation == "relu"
  with pytest.raises(ValueError, match="no shipped model 'spiking_unet'"):
    pretrained.path("spiking_unet")
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
  assert "pretrained model shipped in" in err and "spiking_resunet" in err
  out = read(tmp_path / "out.png")
  holes = np.zeros((48, 56), bool)
  holes[14:30, 18:38] = True
  check_composite(out, pixels, holes)
  err_hole = np.abs(out[holes].astype(int) - pixels[holes].astype(int))
  assert err_hole.mean() < 6          # mean fill is off by ~60 here
  # --pretrained picks the twin: another fill of the same hole.
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "twin.png",
                    "--pretrained", "relu_resunet")
  assert rc == 0 and "(relu_resunet;" in err, err
  twin = read(tmp_path / "twin.png")
  check_composite(twin, pixels, holes)
  assert np.abs(twin[holes].astype(int) - pixels[holes].astype(int)).mean() < 6
  assert not np.array_equal(twin, out)
  # --point belongs to workdirs only.
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "o2.png",
                    "--point", "1")
  assert rc == 2 and "give --workdir too" in err


def test_global_receptive_field_models_run_whole_or_are_refused(
    tmp_path, capsys):
  from configs import base, spiking_unet, taid_inpaint
  from scnn_jax.config import builders, schema
  from scnn_jax.runtime import inpainter

  def why(module):
    model = builders.model(schema.validate(module.get_config(), devices=1))
    return inpainter.global_receptive_field(model)
  assert why(base) is None
  assert "TAID" in why(taid_inpaint)
  assert "prior" in why(spiking_unet)
  rng = np.random.default_rng(7)
  rand_image(rng, 64, 64, "RGB").save(tmp_path / "in.png")
  box_mask(64, 64, 10, 20, 10, 20).save(tmp_path / "m.png")
  # Over the budget, the image runs on windows around its holes; a hole
  # whose window would not fit either: one clear line, nothing written,
  # nothing tiled.
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "out.png",
                    "--memory-mb", "0.5")
  assert rc == 2
  assert err.strip().splitlines()[-1] == (
      f"error: {tmp_path / 'in.png'}: a hole of 10x10 px at x=10, y=10 (with "
      "the holes less than 143 px from it) needs a window of 64x64 px (143 "
      "px of context on each side for this model), over the --memory-mb 0.5 "
      "budget (~240 px per model call): raise --memory-mb to 9")
  assert not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------------------
# Start-up: files checked first, the compilation cache, --version
# ---------------------------------------------------------------------------


def test_version(capsys):
  import scnn_jax
  with pytest.raises(SystemExit) as e:
    cli.main(["--version"])
  assert e.value.code == 0
  assert capsys.readouterr().out.strip() == f"scnn_jax {scnn_jax.__version__}"


def test_file_mistakes_are_refused_before_any_model_is_built(
    tmp_path, capsys, monkeypatch):
  from scnn_jax.cli import inpaint as command

  def no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before the files were checked")
  monkeypatch.setattr(command, "_load", no_model)
  rng = np.random.default_rng(3)
  (tmp_path / "imgs").mkdir()
  (tmp_path / "masks").mkdir()
  for name, h in (("a", 12), ("b", 14)):
    rand_image(rng, h, 10, "RGB").save(tmp_path / "imgs" / f"{name}.png")
    box_mask(12, 10, 2, 5, 2, 5).save(tmp_path / "masks" / f"{name}.png")
  # The second pair of a folder is checked before the first is inpainted.
  rc, err = run_cli(capsys, "--image", tmp_path / "imgs", "--mask",
                    tmp_path / "masks", "--out", tmp_path / "out")
  assert rc == 2
  assert err.strip() == (
      f"error: mask {tmp_path / 'masks' / 'b.png'} is 10x12 px but image "
      f"{tmp_path / 'imgs' / 'b.png'} is 10x14 px: they must be the same size")
  (tmp_path / "masks" / "b.png").write_bytes(b"GIF89a but not really")
  rc, err = run_cli(capsys, "--image", tmp_path / "imgs", "--mask",
                    tmp_path / "masks", "--out", tmp_path / "out")
  assert rc == 2 and err.startswith(
      f"error: cannot read mask {tmp_path / 'masks' / 'b.png'}: ")
  assert not (tmp_path / "out").exists()


def test_a_wrong_size_mask_is_refused_without_the_model_machinery(tmp_path):
  """In a fresh process: the error comes before inference (the schema, the
  data pipeline, Orbax) is even imported, so it costs the start-up of the
  package alone."""
  rand_image(np.random.default_rng(0), 20, 24, "RGB").save(tmp_path / "i.png")
  box_mask(21, 24, 2, 5, 2, 5).save(tmp_path / "m.png")
  code = ("import sys\n"
          "from scnn_jax.cli import inpaint\n"
          "rc = inpaint.main(sys.argv[1:])\n"
          "heavy = ('scnn_jax.runtime.inference', 'scnn_jax.config.schema', "
          "'orbax.checkpoint', 'grain')\n"
          "print(rc, sorted(m for m in heavy if m in sys.modules))\n")
  r = subprocess.run(
      [sys.executable, "-c", code, "--image", str(tmp_path / "i.png"),
       "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o.png")],
      cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert r.stdout.strip() == "2 []", r.stderr[-2000:]
  assert r.stderr.strip() == (
      f"error: mask {tmp_path / 'm.png'} is 24x21 px but image "
      f"{tmp_path / 'i.png'} is 24x20 px: they must be the same size")


def test_a_second_call_loads_the_compiled_model_from_the_cache(workdir,
                                                               tmp_path):
  rng = np.random.default_rng(11)
  rand_image(rng, 18, 22, "RGB").save(tmp_path / "in.png")
  box_mask(18, 22, 4, 12, 5, 15).save(tmp_path / "m.png")
  cache = tmp_path / "cache"
  env = {**os.environ, "JAX_DEBUG_LOG_MODULES": "jax._src.compilation_cache"}

  def call(out):
    r = subprocess.run(
        [sys.executable, "-m", "scnn_jax.inpaint", "--workdir", str(workdir),
         "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png"),
         "--out", str(tmp_path / out), "--compilation-cache", str(cache)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stderr
  first = call("a.png")
  assert "Writing jit_forward to persistent compilation cache" in first
  entries = sorted(p.name for p in cache.iterdir())
  second = call("b.png")
  assert "Writing" not in second
  assert sorted(p.name for p in cache.iterdir()) == entries
  np.testing.assert_array_equal(read(tmp_path / "a.png"),
                                read(tmp_path / "b.png"))


# ---------------------------------------------------------------------------
# Large photos: windows around the holes, progress, bounded memory
# ---------------------------------------------------------------------------


def test_a_12_megapixel_photo_with_small_holes_runs_on_windows(tmp_path,
                                                                capsys):
  import time
  import tracemalloc
  h, w = 3000, 4000
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  pixels = np.stack([(x / 16) % 256, (y / 12) % 256, (x + y) / 28 % 256],
                    -1).astype(np.uint8)           # smooth: a fast PNG
  Image.fromarray(pixels).save(tmp_path / "big.png", compress_level=1)
  holes = np.zeros((h, w), bool)
  holes[500:530, 700:740] = holes[1500:1560, 2000:2060] = True
  holes[2400:2480, 3500:3520] = True
  Image.fromarray(holes.astype(np.uint8) * 255).save(tmp_path / "m.png")
  del x, y
  tracemalloc.start()
  t = time.monotonic()
  # The shipped model (a spiking residual U-Net on a biharmonic prior),
  # defaults.
  rc, err = run_cli(capsys, "--image", tmp_path / "big.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "out.png")
  seconds = time.monotonic() - t
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert rc == 0, err
  # Three windows of one size, so one compile and one model call; the
  # 12-megapixel image itself never goes through the model.
  assert ("4000x3000 px is over the --memory-mb 1024 budget for one call of "
          "this model, which reads the whole image: filling the holes in 3 "
          "windows around them (3 of 384x384 px; 1 model calls)") in err
  out = read(tmp_path / "out.png")
  check_composite(out, pixels, holes)
  assert (out[holes] != pixels[holes]).any()
  # Memory: the arrays of the image (uint8 pixels and output, the hole
  # mask and its int32 group labels: ~150 MB); a float32 copy of the image
  # alone would be 144 MB more.
  print(f"peak numpy memory {peak / 2**20:.0f} MB, {seconds:.1f} s")
  assert peak < 250 * 2**20, peak
  assert seconds < 300, seconds   # ~20 s on 2 idle cores


def test_a_hole_too_large_for_the_budget_is_refused_in_one_line(tmp_path,
                                                                capsys):
  rng = np.random.default_rng(3)
  rand_image(rng, 300, 400, "RGB").save(tmp_path / "in.png")
  box_mask(300, 400, 50, 200, 100, 300).save(tmp_path / "m.png")
  rc, err = run_cli(capsys, "--image", tmp_path / "in.png", "--mask",
                    tmp_path / "m.png", "--out", tmp_path / "out.png",
                    "--memory-mb", "5")
  assert rc == 2
  assert err.strip().splitlines()[-1] == (
      f"error: {tmp_path / 'in.png'}: a hole of 200x150 px at x=100, y=50 "
      "(with the holes less than 143 px from it) needs a window of 400x300 "
      "px (143 px of context on each side for this model), over the "
      "--memory-mb 5 budget (~2,409 px per model call): raise --memory-mb "
      "to 250")
  assert not (tmp_path / "out.png").exists()


def test_progress_lines_start_after_a_few_seconds(capsys):
  from scnn_jax.cli import inpaint as cmd
  now = [100.0]
  progress = cmd.Progress("big.png", "windows", clock=lambda: now[0])
  for done, t in [(1, 101), (2, 103.5), (3, 105), (4, 109), (5, 110)]:
    now[0] = t
    progress(done, 5)
  # Nothing in the first 3 s, then at most one line every 5 s, and the end.
  assert capsys.readouterr().err.splitlines() == [
      "note: big.png: 2/5 windows done (4 s)",
      "note: big.png: 4/5 windows done (9 s)",
      "note: big.png: 5/5 windows done (10 s)"]
