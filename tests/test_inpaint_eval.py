"""scripts/inpaint_eval.py end to end on a tiny eval set (16 and 32 px, one
crop per photo, size and hole kind) with tiny workdirs: a spiking U-Net
(two seeds) and a CNN named as its twin (two seeds)."""

import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import spiking_unet as unet_config
from scnn_jax import baselines, metrics, smooth_fill
from tests.workdirs import REPO, make_workdir, tiny_config


def _script():
  spec = importlib.util.spec_from_file_location(
      "inpaint_eval", REPO / "scripts" / "inpaint_eval.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _unet(seed):
  c = unet_config.get_config()
  # width 4 = the stem's input channels: the fewest distinct kernel shapes
  c.model.update(width=4, depth=1, bottleneck_layers=0, T=2, prior_iters=6)
  c.data.image_size, c.data.num_eval = 16, 8
  c.train.update(steps=4, batch_size=8, eval_batch_size=8)
  c.seed = seed
  return c


def _cnn(seed):
  c = tiny_config()
  c.model.name, c.model.width, c.model.num_layers = "cnn", 4, 2
  c.seed = seed
  return c


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  ie = _script()
  root = tmp_path_factory.mktemp("inpaint_eval")
  unets = [str(make_workdir(root / f"unet{s}", _unet(s))[0]) for s in (0, 1)]
  cnns = [str(make_workdir(root / f"cnn{s}", _cnn(s))[0]) for s in (0, 1)]
  (root / "cnn0" / "results.json").write_text(json.dumps(
      {"steps": 4, "train_time_s": 120.0, "devices": 1, "platform": "cpu"}))
  out = root / "eval.json"
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(ie, "SIZES", (16, 32))
    mp.setattr(ie, "HEADLINE_SIZES", (32,))
    mp.setattr(ie, "TARGET_PER_CELL", {16: 3, 32: 3})
    mp.setattr(ie, "EXTRA_PHOTOS", False)
    ie.main(["run", "--out", str(out), "--model", "unet=" + ",".join(unets),
             "--model", "cnn=" + ",".join(cnns), "--twin", "unet=cnn"])
    data, _ = ie.eval_set()
  return ie, json.loads(out.read_text()), data


def test_eval_set_is_recorded_and_fixed(evaluated):
  ie, res, data = evaluated
  ev = res["eval"]
  assert ev["photos"] == ["chelsea", "coffee", "gravel"]
  assert ev["photo_shapes"]["chelsea"] == [300, 451, 3]   # not the 384 px copy
  assert ev["images_per_cell"] == {"16/box": 3, "16/stroke": 3,
                                   "32/box": 3, "32/stroke": 3}
  assert ev["num_images"] == 12
  # The same seed draws the same crops and holes again.
  for (size, kind), cell in data.items():
    assert cell["image"].shape == (3, size, size, 3)
    assert ev["hole_pixels"][f"{size}/{kind}"] == \
        cell["mask"].sum(axis=(1, 2, 3)).astype(int).tolist()


def test_baseline_rows_and_opencv_differs_from_biharmonic(evaluated):
  _, res, _ = evaluated
  m = res["methods"]
  for name in ("biharmonic", "opencv_telea", "opencv_ns", "mean_fill"):
    assert m[name]["kind"] == "baseline" and len(m[name]["runs"]) == 1
  for name in ("opencv_telea", "opencv_ns"):
    assert m[name]["runs"][0]["cells"]["32/box"]["hole_psnr"] != \
        m["biharmonic"]["runs"][0]["cells"]["32/box"]["hole_psnr"]
  assert m["opencv_telea"]["runs"][0]["cells"] != \
      m["opencv_ns"]["runs"][0]["cells"]


def test_prior_row_is_smooth_fill_with_the_models_settings(evaluated):
  ie, res, data = evaluated
  prior = res["methods"]["prior_o2_i6"]
  assert (prior["order"], prior["iters"]) == (2, 6)
  assert [r["prior"] for r in res["methods"]["unet"]["runs"]] == \
      ["prior_o2_i6"] * 2
  assert res["methods"]["cnn"]["runs"][0]["prior"] is None
  fill_fn = jax.jit(functools.partial(smooth_fill.smooth_fill, order=2,
                                      iters=6))
  for kind in ie.KINDS:   # 16 px: one more compile of the fill, not two
    size, cell = 16, data[(16, kind)]
    im, m = cell["image"], cell["mask"]
    fill = np.clip(np.asarray(fill_fn(jnp.asarray(im * (1 - m)),
                                      jnp.asarray(m))), 0, 1)
    want = ie.score(fill, cell)
    got = prior["runs"][0]["cells"][f"{size}/{kind}"]
    np.testing.assert_allclose(got["hole_psnr"], want["hole_psnr"],
                               atol=2e-4)
    np.testing.assert_allclose(got["ssim"], want["ssim"], atol=2e-6)
    # ... and differs from the trained net (its biases are nudged).
    assert got["hole_psnr"] != \
        res["methods"]["unet"]["runs"][0]["cells"][f"{size}/{kind}"][
            "hole_psnr"]


def test_paired_differences_are_per_seed_means_of_stored_scores(evaluated):
  ie, res, _ = evaluated
  m, cells = res["methods"], ["32/box", "32/stroke"]
  assert ie.headline_cells(res) == cells

  def vals(name, i, metric):
    run = m[name]["runs"][i]["cells"]
    return np.array(run["32/box"][metric] + run["32/stroke"][metric])

  for metric in ("hole_psnr", "ssim"):
    got = ie.paired_diffs(res, "unet", "biharmonic", metric, cells)
    want = [(i, np.mean(vals("unet", i, metric) - vals("biharmonic", 0,
                                                          metric)))
            for i in (0, 1)]
    np.testing.assert_allclose([d for _, d in got], [d for _, d in want])
    got = ie.paired_diffs(res, "unet", "cnn", metric, cells)   # by position
    want = [np.mean(vals("unet", i, metric) - vals("cnn", i, metric))
            for i in (0, 1)]
    np.testing.assert_allclose([d for _, d in got], want)
  assert [w for w, _ in ie.refs(res, "unet")] == ["biharmonic", "own prior",
                                                  "twin"]
  assert res["twins"] == {"unet": "cnn"}


def test_distance_bins_partition_the_hole_pixels(evaluated):
  ie, res, data = evaluated
  ev = res["eval"]
  for (size, kind), cell in data.items():
    key = f"{size}/{kind}"
    assert sum(ev["dist_pixels"][key]) == sum(ev["hole_pixels"][key])
    b = cell["dist_bin"]
    assert np.array_equal(b >= 0, cell["mask"][..., 0] > 0.5)
    # Every distance bin's sse adds up to the hole's total squared error.
    run = res["methods"]["mean_fill"]["runs"][0]["cells"][key]
    pred = baselines.mean_fill(cell["image"], cell["mask"])
    total = np.square(pred - cell["image"]).sum()
    np.testing.assert_allclose(sum(run["dist_sse"]), total, rtol=1e-5)
    hole_mse = total / (sum(ev["hole_pixels"][key]) * 3)
    per_image = np.asarray(metrics.hole_psnr_per_image(pred, cell["image"],
                                                       cell["mask"]))
    assert per_image.min() <= -10 * np.log10(hole_mse) <= per_image.max()
  # The rim is 1 px from known pixels; a pixel two steps in is in bin 2-4.
  mask = np.zeros((1, 9, 9, 1))
  mask[0, 2:7, 2:7] = 1
  b = ie.distance_bins(mask)[0]
  assert b[2, 2] == 0 and b[3, 3] == 0 and b[4, 4] == 1 and b[0, 0] == -1


def test_spike_rates_energy_time_and_budget(evaluated):
  _, res, _ = evaluated
  unet, cnn = res["methods"]["unet"]["runs"], res["methods"]["cnn"]["runs"]
  rates = unet[0]["spike_rate"]
  assert set(rates) == {"down/0/neuron"}
  assert all(0.0 <= v <= 1.0 for v in rates.values())
  assert "not supported by energy.py" in unet[0]["energy"]["note"]
  assert cnn[0]["spike_rate"] == {} and cnn[0]["energy"]["supported"]
  # The CNN: dense MACs of its two 3x3 convs at 16 and 32 px.
  macs16 = 16 * 16 * 9 * (4 * 4 + 4 * 3)
  assert cnn[0]["energy"]["by_size"]["16"]["macs"] == macs16
  assert cnn[0]["budget"]["train_time_s"] == 120.0
  assert cnn[1]["budget"]["train_time_s"] is None
  assert cnn[1]["budget"]["batch_size"] == 8
  for run in unet + cnn + res["methods"]["biharmonic"]["runs"]:
    assert set(run["time_s_per_image"]) == {"16", "32"}
    assert all(t > 0 for t in run["time_s_per_image"].values())


def test_tables_render(evaluated):
  ie, res, _ = evaluated
  text = ie.tables(res)
  for want in ("### Headline: 32 px crops (6 images)", "| `unet` | 2 |",
               "own prior (`prior_o2_i6`)", "twin (`cnn`)",
               "| 1-2 |", "not supported by energy.py", "4 × 8", "6 × 8", "2 min"):
    assert want in text, want
  # The twin follows its spiking model in every table.
  rows = [line.split(" | ")[0] for line in text.splitlines()
          if line.startswith("| `")]
  assert rows[:2] == ["| `unet`", "| `cnn` (SC-NN without spikes)"]


def test_bad_arguments_fail_before_anything_runs(evaluated, tmp_path, capsys):
  ie = evaluated[0]
  for argv, msg in (
      (["--model", f"x={tmp_path}"], "has no config.json"),
      (["--model", "biharmonic=a"], "the name is taken"),
      (["--twin", "a=b"], "'a' is not a --model row")):
    with pytest.raises(SystemExit):
      ie.main(["run", "--out", str(tmp_path / "o.json"), *argv])
    assert msg in capsys.readouterr().err
  assert not (tmp_path / "o.json").exists()


def test_opencv_baselines_keep_known_pixels_exactly():
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(2, 20, 20, 3)).astype(np.float32)
  mask = np.zeros((2, 20, 20, 1), np.float32)
  mask[:, 5:12, 6:10] = 1
  for fn in (baselines.opencv_telea, baselines.opencv_ns):
    out = fn(image, mask)
    known = mask[..., 0] == 0
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.array_equal(out[known], image[known])
    assert np.all(out[~known] * 255 == np.round(out[~known] * 255))  # uint8
  assert not np.array_equal(baselines.opencv_telea(image, mask),
                            baselines.opencv_ns(image, mask))
