"""Spike rasters and membrane traces with matplotlib.

TIME IS AXIS 0: every array here is ``[T, ...]`` (``[T, N]``, ``[T, B, H, W,
C]``), as ``neurons.lif_scan``, ``LIF.scan`` and the spiking layers return
it. Never pass ``[B, T, ...]``: it would be drawn as B time steps.

    from scnn_jax import plotting
    spikes, membrane = layers.LIF(tau=10.0).scan(currents)   # [T, N] each
    plotting.spike_raster(spikes)
    plotting.membrane_trace(membrane, threshold=1.0, spikes=spikes)

The trailing axes are flattened into one neuron axis (``[T, B, H, W, C]`` ->
``[T, B*H*W*C]`` in C order); ``neurons=`` picks by that flat index. Time
runs along the x axis, in steps (or seconds with ``dt``). Each function
draws on ``ax`` (a new figure when None) and returns the Axes. matplotlib is
imported when a function runs, and the backend is left as it is (inline in
a notebook, a window in a script).
"""

from __future__ import annotations

import numpy as np


def _time_major(a, name: str) -> np.ndarray:
  """``a [T, ...]`` as float64 ``[T, N]``."""
  a = np.asarray(a, dtype=np.float64)
  if a.ndim < 1 or a.shape[0] < 1:
    raise ValueError(f"{name} must have a leading time axis [T, ...] with "
                     f"T >= 1, got shape {a.shape}")
  return a.reshape(a.shape[0], -1)


def _pick(a: np.ndarray, neurons, name: str) -> tuple[np.ndarray, np.ndarray]:
  """The columns ``neurons`` of ``a [T, N]`` and their indices."""
  n = a.shape[1]
  index = np.arange(n) if neurons is None else np.asarray(neurons, int).ravel()
  if index.size == 0:
    raise ValueError(f"{name}: no neuron to show (shape {a.shape}, neurons "
                     f"{neurons!r})")
  if index.min() < -n or index.max() >= n:
    raise ValueError(f"{name}: neuron indices must be in [0, {n}), got "
                     f"{index.tolist()}")
  return a[:, index], index % max(n, 1)


def _axes(ax, rows=1):
  if ax is None:
    import matplotlib.pyplot as plt
    # A raster of many neurons gets the height to keep its rows visible.
    _, ax = plt.subplots(figsize=(6, min(8.0, max(2.5, 1.5 + 0.06 * rows))))
  return ax


def _time_axis(ax, dt) -> None:
  if dt is None:
    from matplotlib.ticker import MaxNLocator
    # Steps are whole numbers: no tick at 0.5 for a short run.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step")
  else:
    ax.set_xlabel("time (s)")


def spike_raster(spikes, ax=None, *, neurons=None, dt=None, color="k",
                 linewidth=1.5, title=None):
  """One tick per spike at (time, neuron) for ``spikes [T, ...]``.

  Args:
    spikes: 0/1 spike train ``[T, ...]``, TIME ON AXIS 0 (``> 0`` counts
      as a spike); the trailing axes are flattened into neurons.
    ax: matplotlib Axes to draw on (a new figure when None).
    neurons: indices (after flattening) of the neurons to show, in the
      order given, one row each from the bottom; all when None.
    dt: seconds per step for the x axis; None: x in steps.
    color, linewidth, title: how it looks.

  Returns the Axes; its one collection holds the ticks, each a vertical
  segment at x = t (or ``t * dt``) from ``row - 0.4`` to ``row + 0.4``.
  """
  s, index = _pick(_time_major(spikes, "spikes"), neurons, "spikes")
  ax = _axes(ax, rows=s.shape[1])
  t, row = np.nonzero(s > 0)
  scale = 1.0 if dt is None else float(dt)
  # Segments in data units: one row high whatever T and the neuron count,
  # so neighbouring rows never merge into bars.
  ax.vlines(t * scale, row - 0.4, row + 0.4, colors=color,
            linewidths=linewidth)
  ax.set_xlim(-0.5 * scale, (s.shape[0] - 0.5) * scale)
  ax.set_ylim(-0.5, s.shape[1] - 0.5)
  if s.shape[1] <= 16:
    ax.set_yticks(range(s.shape[1]), [str(i) for i in index])
  _time_axis(ax, dt)
  # Past 16 rows the ticks are row numbers: of the neurons only when all
  # are shown in order.
  ax.set_ylabel("neuron" if neurons is None or s.shape[1] <= 16
                else "picked neuron")
  if title:
    ax.set_title(title)
  return ax


def membrane_trace(membrane, ax=None, *, threshold=None, spikes=None,
                   neurons=None, dt=None, labels=None, title=None):
  """The membrane potential of each neuron against time, ``membrane [T, ...]``.

  Args:
    membrane: membrane potential ``[T, ...]``, TIME ON AXIS 0. ``lif_scan``
      returns the value after each step's reset, so a spike shows as a
      drop, not as a crossing of the threshold line.
    ax: matplotlib Axes (a new figure when None).
    threshold: a scalar drawn as a dashed line (none when None).
    spikes: the spike train of the same neurons (``[T, ...]``, the shape of
      ``membrane``): each spike is marked with a triangle above the plot,
      one row of triangles per neuron, in its trace's colour.
    neurons: indices (after flattening) of the neurons to draw; all when
      None.
    dt: seconds per step for the x axis; None: x in steps.
    labels: one legend label per drawn neuron (default "neuron i").

  Returns the Axes; its first lines are the traces, in the order drawn.
  """
  full = _time_major(membrane, "membrane")
  v, index = _pick(full, neurons, "membrane")
  s = None
  if spikes is not None:
    s = _time_major(spikes, "spikes")
    if s.shape != full.shape:
      raise ValueError(f"spikes {np.shape(spikes)} must have the shape of "
                       f"membrane {np.shape(membrane)}")
    s = s[:, index]
  if labels is not None and len(labels) != v.shape[1]:
    raise ValueError(f"labels: {len(labels)} given for {v.shape[1]} neurons")
  ax = _axes(ax)
  scale = 1.0 if dt is None else float(dt)
  t = np.arange(v.shape[0]) * scale
  top = float(np.max(v)) if threshold is None else max(float(np.max(v)),
                                                       float(threshold))
  lines = []
  for j in range(v.shape[1]):
    label = labels[j] if labels is not None else f"neuron {index[j]}"
    (line,) = ax.plot(t, v[:, j], marker=".", label=label)
    lines.append(line)
  if s is not None:
    span = top - min(float(np.min(v)), 0.0) or 1.0
    for j, line in enumerate(lines):
      fired = s[:, j] > 0
      ax.plot(t[fired], np.full(fired.sum(), top + 0.08 * span * (1 + j)),
              "v", color=line.get_color(), markersize=5, linestyle="none")
    # Room above the top row of triangles, which autoscaling would cut in
    # half; later plots on ax still rescale it.
    ax.update_datalim([(t[0], top + 0.08 * span * (len(lines) + 1))])
    ax.autoscale_view()
  if threshold is not None:
    ax.axhline(float(threshold), color="0.4", linestyle="--", linewidth=1,
               label="threshold")
  _time_axis(ax, dt)
  ax.set_ylabel("membrane")
  if v.shape[1] <= 8:
    ax.legend(fontsize="small", loc="best")
  if title:
    ax.set_title(title)
  return ax

