"""scripts/window_fill_check.py: its exact biharmonic solve, the child-process
timer of --timing and the table's number format (the model runs are the
script's own, docs/results/window_fill.json)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from tests.workdirs import REPO


def _script():
  spec = importlib.util.spec_from_file_location(
      "window_fill_check", REPO / "scripts" / "window_fill_check.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_exact_biharmonic_solves_the_discrete_system():
  w = _script()
  # x^2 + 3y has a constant 5-point Laplacian (2) away from the border, so
  # L L u = 0 there: the exact fill of holes >= 2 px from the border is the
  # polynomial itself, whatever the hole pixels held before.
  y, x = np.mgrid[0:20, 0:24].astype(np.float64)
  u = np.stack([x ** 2 / 500 + 3 * y / 60, 1 - x / 24], -1)
  holes = w.hole_mask((20, 24), [(3, 4, 8, 6), (14, 11, 7, 6)])
  assert holes.sum() == 48 + 42
  garbage = np.where(holes[..., None], 0.5, u)
  got = w.exact_biharmonic(garbage, holes)
  np.testing.assert_allclose(got, u, atol=1e-10)
  # Known pixels are returned as given.
  assert (got[~holes] == garbage[~holes]).all()
  # A hole at the border: zero flux, not the polynomial (the operator is
  # the one smooth_fill uses, not a free boundary).
  edge = w.hole_mask((20, 24), [(0, 0, 3, 3)])
  assert np.abs(w.exact_biharmonic(u, edge) - u)[edge].max() > 1e-3


def test_timed_reports_status_memory_stderr_and_load(tmp_path):
  w = _script()
  code = ("import sys, numpy as np; a = np.ones(40 * 2**20 // 8); "
          "print('note: hello', file=sys.stderr); sys.exit(3)")
  # The parent holds 400 MB, as a test runner that has compiled models does;
  # none of it may be charged to the child.
  parent = np.ones(400 * 2**20 // 8)
  r = w.timed([sys.executable, "-c", code], tmp_path / "log")
  del parent
  assert r["rc"] == 3 and r["stderr"] == ["note: hello"]
  assert 40 < r["peak_rss_mb"] < 150 and r["wall_s"] > 0
  assert len(r["load_before"]) == len(r["load_after"]) == 3


def test_table_number_format():
  w = _script()
  assert [w.fmt(v) for v in (0.01361, 0.003004, 0.0051, 5.8e-6, 4e-7)] == [
      "0.014", "0.0030", "0.0051", "6e-6", "< 1e-6"]
  row = {"model": "m", "holes": 1, "diff_max": 0.01361, "levels_max": 4,
         "diff_mean": 0.002258, "exact_err_whole": 0.006142,
         "exact_err_windows": 0.005923}
  assert w.table({"rows": [row]}).splitlines()[-1] == (
      "| m | 1 | 0.014 (4 of 255) | 0.0023 | 0.0061 / 0.0059 |")
