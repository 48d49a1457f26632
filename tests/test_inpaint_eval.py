"""scripts/inpaint_eval.py end to end on a tiny eval set (16 and 32 px, one
crop per photo, size and hole kind): tiny SC-NN and CNN workdirs (two seeds
each, the CNN named as the SC-NN's twin) and a stand-in for the
prior-based models (a ``prior`` method with its own settings: the real
spiking U-Net costs a minute of compiles on a loaded CPU)."""

import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import spiking_unet as unet_config
from scnn_jax.config import schema
from scnn_jax.metrics import energy
from scnn_jax.models import baselines
from scnn_jax.ops import smooth_fill
from scnn_jax.runtime import inference
from tests.workdirs import REPO, make_workdir, tiny_config


def _script():
  spec = importlib.util.spec_from_file_location(
      "inpaint_eval", REPO / "scripts" / "inpaint_eval.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _tiny(name, seed):
  c = tiny_config()
  c.model.name, c.model.width, c.model.num_layers, c.model.T = name, 4, 2, 2
  c.seed = seed
  return c


class _PriorNet(nnx.Module):
  """Like the spiking_unet family: ``prior(x)`` with the model's own order
  and CG steps; its output (a shifted copy of the input) is not the prior."""

  def __init__(self, order, iters):
    self.prior_order, self.prior_iters = order, iters
    self.shift = nnx.Param(jnp.full((3,), 0.05))

  def prior(self, x):
    return smooth_fill.smooth_fill(x[..., :3], x[..., 3:],
                                   order=self.prior_order,
                                   iters=self.prior_iters)

  def __call__(self, x, *, rngs=None):
    return jnp.clip(x[..., :3] + self.shift, 0.0, 1.0)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  ie = _script()
  root = tmp_path_factory.mktemp("inpaint_eval")
  scnns = [str(make_workdir(root / f"scnn{s}", _tiny("scnn", s))[0])
           for s in (0, 1)]
  cnns = [str(make_workdir(root / f"cnn{s}", _tiny("cnn", s))[0])
          for s in (0, 1)]
  (root / "cnn0" / "results.json").write_text(json.dumps(
      {"steps": 4, "train_time_s": 120.0, "devices": 1, "platform": "cpu"}))
  c = unet_config.get_config()
  c.model.prior_order, c.model.prior_iters = 1, 4
  c.train.batch_size = 8
  c = schema.validate(c, devices=1, check_files=False)
  (root / "priornet").mkdir()
  (root / "priornet" / "config.json").write_text(c.to_json_best_effort())
  real_load = inference.load

  def load(workdir, *a, **k):
    if str(workdir).endswith("priornet"):
      return inference.Loaded(model=_PriorNet(1, 4), config=c, step=0,
                              state={})
    return real_load(workdir, *a, **k)

  out = root / "eval.json"
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(ie, "SIZES", (16, 32))
    mp.setattr(ie, "HEADLINE_SIZES", (32,))
    mp.setattr(ie, "TARGET_PER_CELL", {16: 3, 32: 3})
    mp.setattr(ie, "EXTRA_PHOTOS", False)
    mp.setattr(inference, "load", load)
    ie.main(["run", "--out", str(out), "--model", "scnn=" + ",".join(scnns),
             "--model", "cnn=" + ",".join(cnns),
             "--model", f"priornet={root / 'priornet'}",
             "--twin", "scnn=cnn"])
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
  prior = res["methods"]["prior_o1_i4"]
  assert (prior["kind"], prior["order"], prior["iters"]) == ("prior", 1, 4)
  assert res["methods"]["priornet"]["runs"][0]["prior"] == "prior_o1_i4"
  assert res["methods"]["scnn"]["runs"][0]["prior"] is None
  assert [m for m in res["methods"] if m.startswith("prior_")] == \
      ["prior_o1_i4"]
  fill_fn = jax.jit(functools.partial(smooth_fill.smooth_fill, order=1,
                                      iters=4))
  for kind in ie.KINDS:   # 16 px: one more compile of the fill, not two
    cell = data[(16, kind)]
    im, m = cell["image"], cell["mask"]
    fill = np.clip(np.asarray(fill_fn(jnp.asarray(im * (1 - m)),
                                      jnp.asarray(m))), 0, 1)
    want = ie.score(fill, cell)
    got = prior["runs"][0]["cells"][f"16/{kind}"]
    np.testing.assert_allclose(got["hole_psnr"], want["hole_psnr"],
                               atol=2e-4)
    np.testing.assert_allclose(got["ssim"], want["ssim"], atol=2e-6)
    assert got["hole_psnr"] != \
        res["methods"]["priornet"]["runs"][0]["cells"][f"16/{kind}"][
            "hole_psnr"]


def test_paired_differences_are_per_seed_means_of_stored_scores(evaluated):
  ie, res, _ = evaluated
  m, cells = res["methods"], ["32/box", "32/stroke"]
  assert ie.headline_cells(res) == cells

  def vals(name, i, metric):
    run = m[name]["runs"][i]["cells"]
    return np.array(run["32/box"][metric] + run["32/stroke"][metric])

  for metric in ("hole_psnr", "ssim"):
    got = ie.paired_diffs(res, "scnn", "biharmonic", metric, cells)
    want = [np.mean(vals("scnn", i, metric) - vals("biharmonic", 0, metric))
            for i in (0, 1)]
    np.testing.assert_allclose([d for _, d in got], want)
    got = ie.paired_diffs(res, "scnn", "cnn", metric, cells)   # by position
    want = [np.mean(vals("scnn", i, metric) - vals("cnn", i, metric))
            for i in (0, 1)]
    np.testing.assert_allclose([d for _, d in got], want)
    got = ie.paired_diffs(res, "priornet", "prior_o1_i4", metric, cells)
    want = np.mean(vals("priornet", 0, metric) - vals("prior_o1_i4", 0,
                                                      metric))
    np.testing.assert_allclose(got[0][1], want)
  assert got[0][1] != 0
  assert [w for w, _ in ie.refs(res, "scnn")] == ["biharmonic", "twin"]
  assert [w for w, _ in ie.refs(res, "priornet")] == ["biharmonic",
                                                      "own prior"]
  assert res["twins"] == {"scnn": "cnn"}


def test_distance_bins_partition_the_hole_pixels(evaluated):
  ie, res, data = evaluated
  ev = res["eval"]
  for (size, kind), cell in data.items():
    key = f"{size}/{kind}"
    assert sum(ev["dist_pixels"][key]) == sum(ev["hole_pixels"][key])
    b = cell["dist_bin"]
    assert np.array_equal(b >= 0, cell["mask"][..., 0] > 0.5)
    assert ev["dist_pixels"][key] == np.bincount(
        b[b >= 0], minlength=len(ie.DIST_LABELS)).tolist()
    # The bins' squared errors add up to the holes' total.
    run = res["methods"]["mean_fill"]["runs"][0]["cells"][key]
    pred = baselines.mean_fill(cell["image"], cell["mask"])
    se = np.square(pred - cell["image"].astype(np.float64)).sum(-1)
    np.testing.assert_allclose(sum(run["dist_sse"]), se.sum(), rtol=1e-5)
    np.testing.assert_allclose(run["dist_sse"][0], se[b == 0].sum(),
                               rtol=1e-5)
  # Euclidean distance to the nearest known pixel: 1 on the rim, 2 one step
  # in (bin 1-2 both), 3 at the centre of a 5 x 5 hole (bin 2-4).
  mask = np.zeros((1, 9, 9, 1))
  mask[0, 2:7, 2:7] = 1
  b = ie.distance_bins(mask)[0]
  assert b[2, 2] == 0 and b[3, 3] == 0 and b[4, 4] == 1 and b[0, 0] == -1
  assert (b == 1).sum() == 1 and (b == 0).sum() == 24


def test_spike_rates_energy_time_and_budget(evaluated):
  _, res, _ = evaluated
  m = res["methods"]
  scnn, cnn = m["scnn"]["runs"], m["cnn"]["runs"]
  rates = scnn[0]["spike_rate"]
  assert list(rates) == ["spiking/neuron"] and 0.0 < rates["spiking/neuron"] < 1
  by_size = scnn[0]["spike_rate_by_size"]
  # Pooled over the set: the pixel-weighted mean of the sizes' rates
  # (16 px: 6 images x 256 px, 32 px: 6 x 1024).
  np.testing.assert_allclose(
      rates["spiking/neuron"], (by_size["16"]["spiking/neuron"] * 256
                                + by_size["32"]["spiking/neuron"] * 1024)
      / 1280, rtol=1e-6)
  # energy.py with the measured rate: it prices the spikes into conv1.
  config = inference.read_config(scnn[0]["workdir"])
  want = energy.inpainting_energy(config.model, (16, 16, 3), by_size["16"])
  e = scnn[0]["energy"]
  assert e["supported"]
  np.testing.assert_allclose(e["by_size"]["16"]["energy_uj"],
                             want["energy_j"] * 1e6)
  assert e["by_size"]["16"]["synops"] > 0
  assert cnn[0]["spike_rate"] == {} and cnn[0]["energy"]["supported"]
  # The CNN: dense MACs of its two 3x3 convs (4 + mask -> 4 -> 3) at 16 px.
  assert cnn[0]["energy"]["by_size"]["16"]["macs"] == \
      16 * 16 * 9 * (4 * 4 + 4 * 3)
  prior_net = m["priornet"]["runs"][0]["energy"]   # a spiking_unet config
  assert prior_net["supported"] == ("spiking_unet" in energy.MODELS)
  if not prior_net["supported"]:
    assert "not supported by energy.py" in prior_net["note"]
  assert cnn[0]["budget"]["train_time_s"] == 120.0
  assert cnn[0]["budget"]["steps"] == 4
  assert cnn[1]["budget"]["train_time_s"] is None
  assert (cnn[1]["budget"]["steps"], cnn[1]["budget"]["batch_size"]) == (6, 8)
  for run in scnn + cnn + m["biharmonic"]["runs"] + m["prior_o1_i4"]["runs"]:
    assert set(run["time_s_per_image"]) == {"16", "32"}
    assert all(t > 0 for t in run["time_s_per_image"].values())


def test_tables_render(evaluated):
  ie, res, _ = evaluated
  text = ie.tables(res)
  for want in ("### Headline: 32 px crops (6 images)", "| `scnn` (paper A",
               "own prior (`prior_o1_i4`)", "twin (`cnn`)", "| 1-2 |",
               "`spiking/neuron` 0.", " µJ",
               "4 × 8, 6 × 8", "2 min", "smooth_fill` order 1, 4 CG"):
    assert want in text, want
  # The twin follows its spiking model.
  rows = [line.split(" | ")[0] for line in text.splitlines()
          if line.startswith("| `")]
  assert rows[:2] == ["| `scnn` (paper A's SC-NN)",
                      "| `cnn` (SC-NN without spikes)"]


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
