"""The tutorials in docs/tutorials/ run as notebooks, at their tiny settings.

Each ``docs/tutorials/*.py`` (jupytext percent format) is converted to a
notebook and executed by a Jupyter kernel (nbclient, the ``python3`` kernel
of ipykernel) with ``SCNN_TUTORIAL_TINY=1``, as CI and the docs build see
it; the test checks that figures were drawn and that the printed results
are there and make sense.
"""

import pathlib
import re
import time

import jupytext
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def _check_fill_a_hole(text):
  psnr = {name: float(v) for name, v in re.findall(
      rf"hole PSNR +([\w .-]+?): +{NUMBER} dB", text)}
  assert set(psnr) == {"spiking net", "biharmonic", "OpenCV Telea"}, text
  # Fills of a photo's hole, not noise: well above a mid-grey fill (~10 dB).
  assert all(15 < v < 60 for v in psnr.values()), psnr
  # Whatever model is shipped, a net trained to fill holes is not far
  # behind the classical smooth fill on a thin hole in fur.
  assert psnr["spiking net"] > psnr["biharmonic"] - 3, psnr
  T = int(re.search(r"T = (\d+) time steps", text)[1])
  layers = re.findall(rf"spikes \((\d+), 1, \d+, \d+, \d+\) \[T, B, h, w, c\], "
                      rf"rate {NUMBER} spikes", text)
  # Time on axis 0 of every recorded train; a layer that never or always
  # fires would carry nothing.
  assert layers and all(int(t) == T for t, _ in layers), text
  assert all(0 < float(r) < 1 for _, r in layers), text
  counts = [int(c) for c in re.search(
      r"spike counts of the neurons drawn: \[([\d, ]+)\]", text)[1].split(",")]
  assert counts == sorted(set(counts), reverse=True), counts
  assert 0 < counts[0] <= T, counts


def _lif_counts(currents, steps=100, onset=10, tau=10.0, threshold=1.0):
  """Spike counts of a LIF (subtract reset) under step currents, in numpy."""
  beta, counts = np.exp(-1.0 / tau), []
  for current in currents:
    v, n = 0.0, 0
    for t in range(steps):
      v = beta * v + (current if t >= onset else 0.0)
      if v >= threshold:
        v, n = v - threshold, n + 1
    counts.append(n)
  return counts


def _check_first_spiking_layer(text):
  counts = [int(c) for c in re.search(
      r"spikes per neuron: \[([\d ]+)\]", text)[1].split()]
  # The tutorial's three step currents; the weakest never reaches threshold.
  assert counts == _lif_counts([0.08, 0.12, 0.25]), counts
  assert counts[0] == 0 < counts[1] < counts[2]
  intervals = [int(i) for i in re.search(r"intervals grow: \[([\d, ]+)\]",
                                         text)[1].split(",")]
  assert len(intervals) >= 3 and intervals[-1] > intervals[0]   # adaptation
  gradient = re.findall(rf"I = {NUMBER}: (\d+) spikes, d count / dI = "
                        rf"{NUMBER}", text)
  assert [float(i) for i, _, _ in gradient] == [0.05, 0.12, 0.3], text
  assert [int(n) for _, n, _ in gradient] == sorted(
      int(n) for _, n, _ in gradient)
  # The step function's true derivative is 0: the surrogate's is not.
  assert all(float(g) > 0 for _, _, g in gradient), gradient
  first, last = map(float, re.search(rf"loss {NUMBER} -> {NUMBER}", text)
                    .groups())
  assert last < 0.7 * first, (first, last)
  accuracy = float(re.search(rf"validation accuracy {NUMBER}%", text)[1])
  assert accuracy > 50, text                # chance is 10 %
  firing, total = map(int, re.search(r"(\d+) of (\d+) neurons fire", text)
                      .groups())
  assert total == 14 * 14 * 8 and 40 <= firing < total, (firing, total)
  sweep = re.findall(rf"tau +{NUMBER}: accuracy {NUMBER}%, spike rate "
                     rf"{NUMBER}", text)
  assert len(sweep) >= 3, text
  assert all(float(a) > 50 and 0 < float(r) < 1 for _, a, r in sweep), sweep
  assert "'layers0.neuron': 'LIF'" in text
  diff = float(re.search(rf"after the round trip: {NUMBER}", text)[1])
  assert diff < 1e-5


CHECKS = {"fill_a_hole": _check_fill_a_hole,
          "first_spiking_layer": _check_first_spiking_layer}


def test_every_tutorial_is_checked():
  assert sorted(p.stem for p in TUTORIALS.glob("*.py")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_tutorial_is_percent_format_with_a_title_first(name):
  # The docs site renders these files: a title to list them by, and the
  # time-axis convention stated before any code.
  source = (TUTORIALS / f"{name}.py").read_text()
  assert "format_name: percent" in source
  nb = jupytext.read(TUTORIALS / f"{name}.py")
  first = nb.cells[0]
  assert first.cell_type == "markdown" and first.source.startswith("# ")
  assert re.search(r"\*\*Time (in `scnn_jax` )?is axis 0\*\*", first.source)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_tutorial_has_a_parameters_cell_with_the_tiny_switch(name):
  # papermill-style: the cell tagged "parameters" sets TINY, which CI turns
  # on with SCNN_TUTORIAL_TINY=1; the default (what a user runs) is off.
  nb = jupytext.read(TUTORIALS / f"{name}.py")
  (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert 'TINY = os.environ.get("SCNN_TUTORIAL_TINY", "0") == "1"' in (
      cell.source)
  assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_tutorial_runs_as_a_notebook(name, tmp_path, monkeypatch):
  monkeypatch.setenv("SCNN_TUTORIAL_TINY", "1")
  # The kernel's own matplotlib backend (inline): figures become PNG outputs.
  monkeypatch.delenv("MPLBACKEND", raising=False)
  nb = jupytext.read(TUTORIALS / f"{name}.py")
  client = NotebookClient(nb, kernel_name="python3", timeout=600,
                          resources={"metadata": {"path": str(tmp_path)}})
  start = time.perf_counter()
  client.execute()              # raises CellExecutionError on any error
  print(f"{name}: {time.perf_counter() - start:.1f} s")
  nbformat.validate(nb)
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  plots = sum("plt.show()" in c.source for c in nb.cells)
  assert len(figures) == plots >= 4, (len(figures), plots)
  text = "".join(o.get("text", "") for o in outputs
                 if o.output_type == "stream" and o.get("name") == "stdout")
  CHECKS[name](text)
