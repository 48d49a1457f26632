"""scripts/run_summaries.py: one line per finished workdir, clear refusal of
an unfinished one."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.workdirs import REPO


def _workdir(path, *, init_from="", norm=None):
  path.mkdir()
  model = {"name": "relu_resunet", "width": 16, "T": 4}
  if norm:
    model["norm"] = norm
  (path / "config.json").write_text(json.dumps({
      "seed": 2, "model": model,
      "train": {"steps": 50, "batch_size": 8, "learning_rate": 1e-3,
                "init_from": init_from}}))
  (path / "results.json").write_text(json.dumps({
      "steps": 40, "train_time_s": 12.5,
      "eval": {"hole_psnr": 20.12345, "ssim": 0.912345},
      "baselines": {"biharmonic": {"hole_psnr": 19.5}}}))


def _run(*args):
  return subprocess.run([sys.executable, "scripts/run_summaries.py", *args],
                        cwd=REPO, capture_output=True, text=True)


def test_summaries(tmp_path):
  _workdir(tmp_path / "a", norm="batch")
  _workdir(tmp_path / "b", init_from=str(tmp_path / "a"))
  out = tmp_path / "s.json"
  r = _run("--out", str(out), str(tmp_path / "a"), str(tmp_path / "b"))
  assert r.returncode == 0, r.stderr
  a, b = json.loads(out.read_text())
  assert a == {"run": "a", "model": "relu_resunet", "norm": "batch",
               "width": 16, "T": 4, "seed": 2, "steps": 40, "batch": 8,
               "learning_rate": 1e-3, "init_from": None,
               "train_time_s": 12.5, "hole_psnr": 20.123, "ssim": 0.91234,
               "biharmonic_hole_psnr": 19.5}
  # The source run by folder name only (no machine path); an older config
  # without the norm field was layer-normed.
  assert b["init_from"] == "a" and b["norm"] == "layer"


def test_unfinished_workdir_is_refused(tmp_path):
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "config.json").write_text("{}")
  r = _run("--out", str(tmp_path / "s.json"), str(tmp_path / "w"))
  assert r.returncode == 1 and not (tmp_path / "s.json").exists()
  assert r.stderr.strip().endswith(
      "w: no results.json (not a finished training workdir)")
