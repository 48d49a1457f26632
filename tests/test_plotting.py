"""scnn_jax.plotting: spike rasters and membrane traces (time on axis 0)."""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from scnn_jax import plotting
from scnn_jax.ops import neurons

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture
def ax():
  fig, ax = plt.subplots()
  yield ax
  plt.close(fig)


def _ticks(ax):
  """The raster's ticks as sorted (x, row) pairs, each checked one row high."""
  (ticks,) = ax.collections
  segments = np.array(ticks.get_segments())          # [n, 2 ends, (x, y)]
  np.testing.assert_array_equal(segments[:, 0, 0], segments[:, 1, 0])
  np.testing.assert_allclose(segments[:, 1, 1] - segments[:, 0, 1], 0.8)
  centre = (segments[:, 0, 1] + segments[:, 1, 1]) / 2
  return sorted(zip(segments[:, 0, 0].tolist(), centre.tolist()))


def test_raster_puts_a_tick_at_each_spike_time_and_neuron(ax):
  spikes = np.zeros((5, 2, 2))            # [T, B, C]: 4 neurons after flatten
  spikes[0, 0, 1] = 1                     # neuron 1 at t = 0
  spikes[3, 1, 0] = 1                     # neuron 2 at t = 3
  spikes[4, 1, 1] = 1                     # neuron 3 at t = 4
  out = plotting.spike_raster(spikes, ax)
  assert out is ax
  np.testing.assert_allclose(_ticks(ax), [(0, 1), (3, 2), (4, 3)])
  assert ax.get_xlabel() == "time step" and ax.get_ylabel() == "neuron"
  assert ax.get_xlim() == (-0.5, 4.5) and ax.get_ylim() == (-0.5, 3.5)
  # Whole steps only on the time axis.
  ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 4.5]
  assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_raster_of_a_long_run_of_many_neurons_keeps_rows_apart(ax):
  # Every neuron fires at every step: 200 x 100 ticks, each one row high,
  # none overlapping the next row's.
  plotting.spike_raster(np.ones((200, 100)), ax)
  (ticks,) = ax.collections
  segments = np.array(ticks.get_segments())
  assert len(segments) == 200 * 100
  assert segments[:, :, 1].min() == -0.4 and segments[:, :, 1].max() == 99.4


def test_a_new_raster_figure_grows_with_the_neuron_count():
  few = plotting.spike_raster(np.ones((4, 3)))
  many = plotting.spike_raster(np.ones((4, 64)))
  try:
    assert few.figure.get_figheight() == 2.5
    assert 4 < many.figure.get_figheight() <= 8
  finally:
    plt.close("all")


def test_raster_picks_neurons_in_order_and_scales_time(ax):
  spikes = np.zeros((4, 3))
  spikes[1, 2] = spikes[2, 0] = 1
  plotting.spike_raster(spikes, ax, neurons=[2, 0], dt=1e-3)
  # Neuron 2 is row 0, neuron 0 row 1; x in seconds.
  np.testing.assert_allclose(_ticks(ax), [(1e-3, 0), (2e-3, 1)])
  assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "0"]
  assert ax.get_xlabel() == "time (s)"


def test_membrane_trace_draws_the_lif_trace_threshold_and_spikes(ax):
  # Constant input 0.4, beta 0.5, threshold 0.7, reset to zero:
  # u = 0.4, 0.6, 0.7 (spike, v = 0), 0.4, 0.6.
  spikes, v = neurons.lif_scan(np.full((5, 1), 0.4, np.float32), beta=0.5,
                               threshold=0.7, reset="zero")
  np.testing.assert_allclose(np.asarray(v)[:, 0], [0.4, 0.6, 0.0, 0.4, 0.6],
                             atol=1e-6)
  plotting.membrane_trace(v, ax, threshold=0.7, spikes=spikes)
  trace, marks, threshold = ax.lines
  np.testing.assert_array_equal(trace.get_xdata(), np.arange(5))
  np.testing.assert_allclose(trace.get_ydata(), [0.4, 0.6, 0.0, 0.4, 0.6],
                             atol=1e-6)
  np.testing.assert_array_equal(marks.get_xdata(), [2])
  assert marks.get_ydata()[0] > 0.7          # above the trace and threshold
  # ...and inside the axes, whole: not cut by its upper edge.
  assert marks.get_ydata()[0] < ax.get_ylim()[1] - 0.05
  assert list(threshold.get_ydata()) == [0.7, 0.7]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      "neuron 0", "threshold"]


def test_membrane_trace_selects_neurons_and_labels_them(ax):
  v = np.arange(12.0).reshape(3, 2, 2)      # [T, 2, 2] -> 4 neurons
  plotting.membrane_trace(v, ax, neurons=[3, 1], labels=["a", "b"], dt=0.5)
  a, b = ax.lines
  np.testing.assert_array_equal(a.get_xdata(), [0.0, 0.5, 1.0])
  np.testing.assert_array_equal(a.get_ydata(), [3, 7, 11])
  np.testing.assert_array_equal(b.get_ydata(), [1, 5, 9])
  assert a.get_label() == "a" and b.get_label() == "b"


@pytest.mark.parametrize("call, message", [
    (lambda: plotting.spike_raster(np.float32(1.0)), "leading time axis"),
    (lambda: plotting.spike_raster(np.zeros((0, 3))), "leading time axis"),
    (lambda: plotting.spike_raster(np.zeros((4, 3)), neurons=[3]),
     r"neuron indices must be in \[0, 3\)"),
    (lambda: plotting.spike_raster(np.zeros((4, 3)), neurons=[]),
     "no neuron to show"),
    (lambda: plotting.membrane_trace(np.zeros((4, 3)),
                                     spikes=np.zeros((4, 2))),
     r"spikes \(4, 2\) must have the shape of membrane \(4, 3\)"),
    (lambda: plotting.membrane_trace(np.zeros((4, 3)), labels=["a"]),
     "labels: 1 given for 3 neurons"),
])
def test_bad_input_is_one_clear_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()
  plt.close("all")


def test_importing_it_does_not_import_matplotlib():
  # A notebook picks its own backend: the module imports matplotlib only
  # when it draws, and never sets the backend.
  code = ("import sys, scnn_jax.plotting; "
          "print('matplotlib' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "False"
