"""examples/walkthrough.py runs end to end (CI executes it here)."""

import json
import pathlib
import runpy

import numpy as np
import pytest

import scnn_jax
from scnn_jax.runtime import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_walkthrough_runs_and_learns(tmp_path):
  walkthrough = runpy.run_path(str(REPO / "examples" / "walkthrough.py"))
  out = walkthrough["main"](["--workdir", str(tmp_path)])
  assert 0.0 < out["rate"] < 1.0
  # 300 steps lower the training loss; the inpainted image keeps its known
  # pixels (checked in the script) and fills the hole better than its mean.
  assert out["losses"][-1] < 0.6 * out["losses"][0]
  model_mse, mean_fill_mse = out["hole_mse"]
  assert model_mse < mean_fill_mse
  assert (tmp_path / "train" / "inpainted.png").exists()
  # The sweep: three tau values trained in one program, one row each.
  points = out["sweep"]["points"]
  assert [p["values"] for p in points] == [{"model.tau": 2.0},
                                           {"model.tau": 10.0},
                                           {"model.tau": 40.0}]
  csv = (tmp_path / "sweep" / "ablation.csv").read_text().splitlines()
  assert len(csv) == 4
  # train.profile_steps left a trace; the checkpoint carries the stamp.
  train = tmp_path / "train"
  assert list((train / "tensorboard" / "plugins" / "profile").glob(
      "*/*.xplane.pb"))
  meta = json.loads(next((train / "checkpoints").glob("*/meta/metadata"))
                    .read_text())
  config = json.loads((train / "config.json").read_text())
  assert meta["scnn_jax_version"] == scnn_jax.__version__
  assert meta["config_sha256"] == checkpoint.config_hash(config)
  assert np.isfinite(out["summary"]["eval"]["hole_psnr"])
