"""What a run writes for people: metrics.jsonl, TensorBoard events, progress.

Only process 0 writes (``MetricWriter(active=jax.process_index() == 0)``).
``metrics.jsonl`` is kept in memory and rewritten whole at each flush: object
stores such as GCS cannot append. On a filesystem it is written to a temporary
file and renamed, so a run killed mid-write never leaves a torn line; on an
object store one upload replaces the object whole already (and a rename
there is a copy and a delete). On resume, records past
the restored step (written after the last checkpoint) are dropped so the file
tells one consistent history.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time

from absl import logging
from etils import epath

from scnn_jax.runtime import storage_errors


def _jsonable(value):
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  try:
    value = float(value)
  except (TypeError, ValueError):
    return value
  return value if math.isfinite(value) else str(value)


class MetricWriter:
  """metrics.jsonl + TensorBoard scalars in ``workdir``."""

  def __init__(self, workdir, *, active: bool = True, resume_step: int = 0):
    self.active = active
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self.records: list[dict] = []
    self._tb = None
    if not active:
      return
    if self.path.exists():
      for line in self.path.read_text().splitlines():
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue  # a torn line from an older writer: skip it
        if record.get("step", 0) <= resume_step:
          self.records.append(record)
    self._tb = open_tensorboard(workdir)

  def write(self, step: int, kind: str, scalars: dict, flush: bool = True):
    """One record ``{"step", "kind", **scalars}``; nested dicts allowed."""
    if not self.active:
      return
    record = {"step": int(step), "kind": kind, "time": time.time(),
              **_jsonable(scalars)}
    self.records.append(record)
    if self._tb is not None:
      for name, value in _flatten(scalars):
        if isinstance(value, (int, float)) and math.isfinite(value):
          self._tb.add_scalar(_tb_tag(f"{kind}/{name}"), value, step)
    if flush:
      self.flush()

  def flush(self):
    if not self.active:
      return
    text = "".join(json.dumps(r) + "\n" for r in self.records)
    if "://" in str(self.path):
      with storage_errors.writing(self.path):
        self.path.write_text(text)
    else:
      tmp = self.path.with_name(self.path.name + ".tmp")
      with storage_errors.writing(tmp):
        tmp.write_text(text)
      tmp.replace(self.path)  # rename() refuses to overwrite
    if self._tb is not None:
      with storage_errors.writing(epath.Path(self._tb.logdir)):
        self._tb.flush()

  def close(self):
    self.flush()
    if self._tb is not None:
      self._tb.close()

  def abandon(self):
    """Stops writing after a failed write, without flushing again."""
    self.active = False
    tb, self._tb = self._tb, None
    if tb is not None:
      with contextlib.suppress(Exception):
        tb.close()


def open_tensorboard(workdir):
  """A tensorboardX ``SummaryWriter`` on ``<workdir>/tensorboard``, or None.

  The same call for every workdir: tensorboardX writes local paths itself and
  ``gs://`` paths through its GCS writer (``google-cloud-storage``, the
  ``gcs`` extra), which rewrites the whole event file at each flush, so the
  events live beside the checkpoints, not on the VM.
  """
  logdir = str(epath.Path(workdir) / "tensorboard")
  try:
    from tensorboardX import SummaryWriter
    return SummaryWriter(logdir)
  except Exception as e:  # TensorBoard is optional, the run is not
    logging.warning("TensorBoard events disabled (%s): %s", logdir, e)
    return None


def _flatten(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flatten(v, f"{prefix}{k}/")
    else:
      try:
        yield f"{prefix}{k}", float(v)
      except (TypeError, ValueError):
        pass


class Progress:
  """Periodic progress lines: step, loss, steps/s and ETA."""

  def __init__(self, total_steps: int, start_step: int):
    self.total = total_steps
    self.start_step = start_step
    self.t0 = time.time()
    self.last_t, self.last_step = self.t0, start_step

  def line(self, step: int, loss: float, extra: str = "") -> str:
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_t, 1e-9)
    overall = (step - self.start_step) / max(now - self.t0, 1e-9)
    eta = (self.total - step) / overall if overall > 0 else float("inf")
    self.last_t, self.last_step = now, step
    pct = 100.0 * step / max(self.total, 1)
    return (f"step {step:>{len(str(self.total))}}/{self.total} ({pct:5.1f}%) "
            f"loss {loss:.5f}  {rate:6.2f} steps/s  ETA {_fmt(eta)}{extra}")


def _fmt(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _tb_tag(name: str) -> str:
  # TensorBoard tags allow [A-Za-z0-9_./-]; ablation point names such as
  # "tau=40_threshold=1" would be renamed with one warning line per tag.
  return re.sub(r"[^A-Za-z0-9_./-]", "_", name)
