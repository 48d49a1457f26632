"""Reliability: preemption, corrupt checkpoints, NaN, extreme inputs, bad configs."""

import glob
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scnn_jax import metrics, tasks
from scnn_jax.config import schema
from scnn_jax.models import baselines
from scnn_jax.ops.checks import ConfigError
from scnn_jax.runtime import inference
from scnn_jax.runtime.checkpoint import CheckpointError
from scnn_jax.training import trainer, watchdog
from tests.workdirs import REPO, tiny_config


def _params(workdir):
  return jax.device_get(inference.load(workdir).state["params"])


def _assert_same_params(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


# -----------------------------------------------------------------------------
# Preemption
# -----------------------------------------------------------------------------

CLI = ["--config", "configs/base.py", "--cpu_devices=2",
       "--config.model.width=4", "--config.model.T=2",
       "--config.data.image_size=16", "--config.data.num_eval=8",
       "--config.train.batch_size=4", "--config.train.eval_batch_size=8",
       "--config.train.log_every=1", "--config.train.eval_every=1000",
       "--config.train.checkpoint_every=1000"]


def _train_cmd(workdir, steps):
  return [sys.executable, "train.py", *CLI, f"--workdir={workdir}",
          f"--config.train.steps={steps}"]


def test_sigterm_saves_exits_and_resumes_bitwise(tmp_path):
  steps = 400
  full = subprocess.run(_train_cmd(tmp_path / "full", steps), cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert full.returncode == 0, full.stderr[-2000:]

  proc = subprocess.Popen(_train_cmd(tmp_path / "cut", steps), cwd=REPO,
                          stderr=subprocess.PIPE, text=True)
  for line in proc.stderr:  # wait until training is under way
    if line.startswith("step ") and "/400" in line and "step   1/" not in line:
      break
  proc.send_signal(signal.SIGTERM)
  t0 = time.time()
  _, err = proc.communicate(timeout=120)
  assert time.time() - t0 < 60
  assert proc.returncode == 143, err[-2000:]
  assert "preempted: checkpoint saved at step" in err
  saved = [int(p.name) for p in (tmp_path / "cut" / "checkpoints").iterdir()
           if p.name.isdigit()]
  assert len(saved) == 1 and 0 < saved[0] < steps

  again = subprocess.run(_train_cmd(tmp_path / "cut", steps), cwd=REPO,
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f"resuming from step {saved[0]}" in again.stderr
  _assert_same_params(_params(tmp_path / "cut"), _params(tmp_path / "full"))


# -----------------------------------------------------------------------------
# Hung steps: the watchdog, SIGTERM while a step hangs
# -----------------------------------------------------------------------------

def _fault_drill():
  """``scripts/fault_drill.py`` as a module: its hung-step runner."""
  spec = importlib.util.spec_from_file_location(
      "fault_drill", REPO / "scripts" / "fault_drill.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_watchdog_ends_a_hung_step_with_stacks_and_keeps_the_checkpoint(
    tmp_path):
  # train.py whose 6th step runs a host callback that sleeps for an hour.
  code, _, err = _fault_drill().run_hanging(
      tmp_path, steps=8, every=2, hang_at=5,
      flags=["--config.train.watchdog_s=2"])
  assert code == watchdog.HUNG_EXIT_CODE, err[-3000:]
  assert re.search(r"watchdog: train step 6 of 8( \(inside its call\))? "
                   r"hung: nothing finished for 2 s \(limit 2 s, "
                   r"train.watchdog_s\)", err)
  assert "the last checkpoint is step 4. Exiting with status 124" in err
  # faulthandler's dump: every thread, one of them inside the callback.
  assert "Current thread" in err and re.search(r"line \d+ in host", err)
  assert err.count("(most recent call first)") >= 3
  # Orbax wrote the checkpoints atomically: the newest one restores.
  restored = inference.load(tmp_path).state
  assert int(jax.device_get(restored["step"])) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(
      jax.device_get(restored["params"])))


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def _exit_codes(dog, codes, timeout=5.0):
  """Waits until ``dog``'s thread has called its exit function."""
  t0 = time.time()
  while not codes and time.time() - t0 < timeout:
    time.sleep(0.02)
  dog.close()
  return codes


def test_watchdog_limits_follow_the_median_step(capfd):
  clock, codes = _Clock(), []
  dog = watchdog.Watchdog(0.0, total_steps=100, exit_fn=codes.append,
                          backstop=False, clock=clock)
  assert dog.limit() == watchdog.STARTUP_S  # compilation
  clock.now += 40.0
  dog.dispatched(1, jax.numpy.zeros(()))
  dog.wait(1)
  for n in range(2, 6):  # 50 s steps (the first one, compiling, is not timed)
    clock.now += 50.0
    dog.dispatched(n, jax.numpy.zeros(()))
    dog.wait(n)
  assert dog.limit() == 10 * 50.0
  with dog.phase("evaluation at step 5"):
    assert dog.limit() == watchdog.STARTUP_S
  clock.now += 3.0
  dog.wait(6)  # after a phase: not timed
  assert dog.limit() == 500.0
  never = types.SimpleNamespace(is_ready=lambda: False)
  dog.dispatched(7, never)
  clock.now += 499.0
  time.sleep(3 * watchdog.POLL_S)
  assert not codes
  clock.now += 2.0
  assert _exit_codes(dog, codes) == [watchdog.HUNG_EXIT_CODE]
  err = capfd.readouterr().err
  assert ("watchdog: train step 7 of 100 hung: nothing finished for 501 s "
          "(limit 500 s, auto: 10x the median step time, at least 300 s") in err
  assert "no checkpoint was saved by this session" in err
  assert "Current thread" in err
  fast = watchdog.Watchdog(0.0, exit_fn=codes.append, backstop=False,
                           clock=clock)
  for n in range(1, 6):  # 0.1 s steps: never less than 300 s
    clock.now += 0.1
    fast.wait(n)
  assert fast.limit() == watchdog.AUTO_MIN_S
  fast.close()


def test_sigterm_grace_and_second_sigterm_in_process(capfd):
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers need the main thread")
  before = signal.getsignal(signal.SIGTERM)
  clock, codes = _Clock(), []
  dog = watchdog.Watchdog(-1, grace_s=30.0, exit_fn=codes.append,
                          backstop=False, clock=clock)
  assert signal.getsignal(signal.SIGTERM) is not before  # or it kills pytest
  dog.dispatched(3, types.SimpleNamespace(is_ready=lambda: False))
  os.kill(os.getpid(), signal.SIGTERM)
  t0 = time.time()
  while not dog.stop_requested(3) and time.time() - t0 < 5:
    time.sleep(0.02)
  assert dog.stop_requested(3) and not codes
  clock.now += 31.0  # the step has not returned within the grace period
  assert _exit_codes(dog, codes) == [143]
  assert signal.getsignal(signal.SIGTERM) is before
  assert ("SIGTERM: train step 3 did not return within "
          "train.sigterm_grace_s = 30 s; exiting at once") in capfd.readouterr().err

  codes = []
  dog = watchdog.Watchdog(-1, grace_s=30.0, exit_fn=codes.append,
                          backstop=False, clock=clock)
  dog.dispatched(3, types.SimpleNamespace(is_ready=lambda: False))
  dog.saved(2)
  os.kill(os.getpid(), signal.SIGTERM)
  os.kill(os.getpid(), signal.SIGTERM)
  assert _exit_codes(dog, codes) == [143]
  assert ("second SIGTERM: exiting at once without saving a checkpoint; the "
          "last checkpoint is step 2") in capfd.readouterr().err

  # An event loop owns the wakeup fd: it is left alone, the handler acts.
  r, w = os.pipe()
  os.set_blocking(w, False)
  signal.set_wakeup_fd(w)
  try:
    codes = []
    dog = watchdog.Watchdog(-1, exit_fn=codes.append, backstop=False)
    os.kill(os.getpid(), signal.SIGTERM)
    assert dog.stop_requested(1) and not codes
    os.kill(os.getpid(), signal.SIGTERM)
    assert _exit_codes(dog, codes) == [143]
    assert signal.set_wakeup_fd(-1) == w
  finally:
    signal.set_wakeup_fd(-1)
    os.close(r)
    os.close(w)
  assert signal.getsignal(signal.SIGTERM) is before


# -----------------------------------------------------------------------------
# Unreadable files in a folder dataset
# -----------------------------------------------------------------------------


def test_folder_with_corrupt_and_truncated_files_trains_and_resumes(tmp_path):
  from PIL import Image
  from tests.workdirs import write_bad_files
  folder = tmp_path / "images"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(6):
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
        folder / f"img{i}.png")
  write_bad_files(folder, rng)  # corrupt, truncated, empty, cut-short JPEG
  config = tiny_config()
  config.data.update(source="folder", folder=str(folder), num_eval=4)
  config.train.update(eval_every=100, log_every=3)
  full = trainer.train_and_evaluate(config, tmp_path / "full")
  assert full["steps"] == 6 and np.isfinite(full["eval"]["masked_mse"])
  config.train.steps = 3
  trainer.train_and_evaluate(config, tmp_path / "cut")
  config.train.steps = 6
  trainer.train_and_evaluate(config, tmp_path / "cut")
  _assert_same_params(_params(tmp_path / "cut"), _params(tmp_path / "full"))
  # No readable image at all: a one-line error before the workdir exists.
  only_bad = tmp_path / "only_bad"
  only_bad.mkdir()
  write_bad_files(only_bad, rng)
  config.data.folder = str(only_bad)
  with pytest.raises(ConfigError, match=r"^config\.data\.folder = .*: holds "
                     r"no readable image: [^\n]*$"):
    trainer.train_and_evaluate(config, tmp_path / "never")
  assert not (tmp_path / "never").exists()


# -----------------------------------------------------------------------------
# Corrupt checkpoints
# -----------------------------------------------------------------------------


def _short_run(workdir, steps, **train):
  config = tiny_config()
  config.train.update(steps=steps, checkpoint_every=2, eval_every=100,
                      log_every=2, **train)
  return config, trainer.train_and_evaluate(config, workdir)


def _truncate(step_dir):
  for f in glob.glob(str(step_dir / "state" / "**" / "*"), recursive=True):
    if os.path.isfile(f) and os.path.getsize(f) > 0:
      with open(f, "r+b") as fh:
        fh.truncate(3)


@pytest.mark.parametrize("damage", ["truncated", "missing_metadata"])
def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, damage,
                                                             caplog):
  config, _ = _short_run(tmp_path, 4)
  latest = tmp_path / "checkpoints" / "4"
  if damage == "truncated":
    _truncate(latest)
  else:
    for name in ("_METADATA", "manifest.ocdbt"):
      (latest / "state" / name).unlink()
  config.train.steps = 6
  with caplog.at_level("WARNING"):
    summary = trainer.train_and_evaluate(config, tmp_path)
  assert summary["steps"] == 6
  text = caplog.text
  assert "checkpoint step 4" in text and "is unreadable" in text
  assert "restored checkpoint step 2 instead of 4" in text
  kept = [p.name for p in (tmp_path / "checkpoints").iterdir()]
  assert any(n.startswith("4.corrupt-") for n in kept)  # kept for inspection
  assert "4" in kept and "6" in kept  # step 4 was trained and saved again


def test_no_readable_checkpoint_is_a_clear_error_and_moves_nothing(tmp_path):
  config, _ = _short_run(tmp_path, 4)
  for step in ("2", "4"):
    _truncate(tmp_path / "checkpoints" / step)
  before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  with pytest.raises(CheckpointError, match=r"could be restored: step 4: .*"
                     r"step 2: .*nothing was moved or deleted"):
    trainer.train_and_evaluate(config, tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


# -----------------------------------------------------------------------------
# Non-finite losses
# -----------------------------------------------------------------------------


def _poison_step(monkeypatch, bad_step):
  real_build = tasks.dataset

  def build(config):
    ds = real_build(config)
    real_iter = ds.train_iterator

    def train_iterator(start, *a, **k):
      for i, batch in enumerate(real_iter(start, *a, **k), start):
        if i == bad_step:
          batch = dict(batch, image=batch["image"].copy())
          batch["image"][0] = np.nan
        yield batch

    ds.train_iterator = train_iterator
    return ds

  monkeypatch.setattr(tasks, "dataset", build)


def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch):
  _poison_step(monkeypatch, bad_step=4)  # the 5th step
  with pytest.raises(trainer.NonFiniteLossError,
                     match=r"at step 4: training stopped.*checkpoint is step 4"):
    _short_run(tmp_path, 8)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
  assert steps == [2, 4]  # nothing saved after the bad step
  assert np.all([np.isfinite(x).all()
                 for x in jax.tree.leaves(_params(tmp_path))])


def test_nan_skip_policy_carries_on(tmp_path, monkeypatch, caplog):
  _poison_step(monkeypatch, bad_step=1)
  with caplog.at_level("WARNING"):
    _, summary = _short_run(tmp_path, 6, nan_policy="skip")
  assert summary["steps"] == 6 and np.isfinite(summary["eval"]["masked_mse"])
  assert "skipping non-finite step: model (step 1)" in caplog.text


# -----------------------------------------------------------------------------
# Extreme inputs
# -----------------------------------------------------------------------------


def test_extreme_masks_and_constant_images_give_finite_numbers():
  spec = types.SimpleNamespace(image_shape=(16, 16, 3), num_classes=None)
  run = trainer.setup(schema.validate(tiny_config()), spec)
  rng = np.random.default_rng(0)
  masks = np.zeros((8, 16, 16, 1), np.float32)
  masks[1] = 1.0                      # whole image is a hole
  masks[2, 7, 7] = 1.0                # one pixel
  masks[3:, 4:9, 4:9] = 1.0
  images = rng.uniform(size=(8, 16, 16, 3)).astype(np.float32)
  images[3] = 0.5                     # constant image
  images[4] = 0.0
  images[5] = 1.0
  for m in (masks, np.zeros_like(masks), np.ones_like(masks)):
    batch = {"image": images, "mask": m, "valid": np.ones(8, np.float32)}
    out = run.train_step(batch)
    assert bool(out["finite"]) and np.isfinite(float(out["loss"]))
    pred, _ = run.eval_step(batch)
    result = metrics.evaluate_inpainting(np.asarray(pred["pred"]), images, m)
    for name in ("masked_mse", "full_mse", "psnr", "ssim"):
      assert np.isfinite(result[name]), (name, result)
    for name in ("mean_fill", "biharmonic"):
      filled = baselines.baseline_predictions(name, images, m)
      assert np.isfinite(filled).all()
  assert int(run.state["nonfinite"]) == 0


# -----------------------------------------------------------------------------
# Config fuzzing
# -----------------------------------------------------------------------------

_words = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
INVALID = {
    "model.T": st.integers(max_value=0),
    "model.width": st.integers(max_value=0),
    "model.num_layers": st.integers(max_value=1),
    "model.threshold": st.floats(max_value=0.0, allow_nan=False),
    "model.tau": st.floats(max_value=0.0, allow_nan=False),
    "model.beta": st.one_of(st.floats(max_value=0.0, allow_nan=False),
                            st.floats(min_value=1.0001, allow_nan=False,
                                      allow_infinity=False)),
    "model.surrogate_param": st.floats(max_value=0.0, allow_nan=False),
    "model.noise_std": st.floats(max_value=-1e-6, allow_nan=False),
    "model.alif_tau": st.floats(max_value=1.0, allow_nan=False),
    "model.neuron": _words.filter(lambda w: w not in ("lif", "alif")),
    "model.surrogate": _words.filter(lambda w: w not in (
        "fast_sigmoid", "atan", "sigmoid", "triangle", "rectangular")),
    "model.reset": _words.filter(lambda w: w not in ("subtract", "zero")),
    "model.decoder": _words.filter(lambda w: w not in (
        "rate", "fixed_decay", "taid", "membrane")),
    "model.name": _words.filter(lambda w: w not in ("scnn", "cnn")),
    "masks.kind": _words.filter(lambda w: w not in (
        "box", "center", "stroke", "pixels")),
    "masks.ratio_max": st.one_of(st.floats(min_value=1.0, allow_nan=False,
                                           allow_infinity=False),
                                 st.floats(max_value=0.0, allow_nan=False)),
    "data.source": _words.filter(lambda w: w not in (
        "embedded", "tfds", "folder")),
    "data.image_size": st.integers(max_value=0),
    "train.batch_size": st.one_of(st.integers(max_value=0),
                                  st.integers(1, 1000).filter(lambda b: b % 8)),
    "train.learning_rate": st.floats(max_value=0.0, allow_nan=False),
    "train.steps": st.integers(max_value=0),
    "train.nan_policy": _words.filter(lambda w: w not in ("stop", "skip")),
    "train.watchdog_s": st.one_of(
        st.floats(max_value=-1.001, allow_nan=False, allow_infinity=False),
        st.floats(min_value=-0.999, max_value=-1e-6),
        st.sampled_from([float("nan"), float("inf")])),
    "train.sigterm_grace_s": st.floats(max_value=0.0, allow_nan=False),
    "data.bad_images": _words.filter(lambda w: w not in ("skip", "error")),
    "seed": st.integers(max_value=-1),
}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_invalid_values_are_named_before_anything_runs(draw):
  field = draw.draw(st.sampled_from(sorted(INVALID)))
  value = draw.draw(INVALID[field])
  config = tiny_config()
  if field == "model.alif_tau":
    config.model.neuron = "alif"  # only read (and checked) for ALIF
  section, name = field.rsplit(".", 1) if "." in field else ("", field)
  node = config
  for part in filter(None, section.split(".")):
    node = node[part]
  with node.ignore_type():
    node[name] = value
  with pytest.raises(ConfigError) as err:
    schema.validate(config)
  assert err.value.field == field, (field, value, str(err.value))
  assert str(err.value).startswith(f"config.{field} = ")


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(neuron=st.sampled_from(["lif", "alif"]),
       surrogate=st.sampled_from(["fast_sigmoid", "atan", "sigmoid",
                                  "triangle", "rectangular"]),
       decoder=st.sampled_from(["rate", "fixed_decay", "taid", "membrane"]),
       reset=st.sampled_from(["subtract", "zero"]),
       T=st.integers(1, 3), width=st.integers(1, 4),
       threshold=st.floats(0.05, 3.0), resample=st.sampled_from(
           ["step", "sequence"]), mask_kind=st.sampled_from(
               ["box", "center", "stroke", "pixels"]))
def test_valid_random_tiny_configs_train_a_step(neuron, surrogate, decoder,
                                                reset, T, width, threshold,
                                                resample, mask_kind):
  config = tiny_config()
  config.model.update(neuron=neuron, surrogate=surrogate, decoder=decoder,
                      reset=reset, T=T, width=width, threshold=threshold,
                      noise_resample=resample)
  config.masks.kind = mask_kind
  config = schema.validate(config)
  ds = tasks.dataset(config)
  run = trainer.setup(config, ds)
  out = run.train_step(next(ds.train_iterator(0, config.train.batch_size)))
  assert bool(out["finite"]) and np.isfinite(float(out["loss"]))
