"""Shared by the tests: tiny configs of every task, workdirs made without
training (config.json + a checkpoint, as train.py leaves them), the
per-device step on small batches, image and file helpers. Test files import
from here, never from one another (conftest.py offers the same as
fixtures)."""

import types
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from PIL import Image

from configs import base, mnist5k_alif, taid_inpaint, vae_mnist5k
from scnn_jax.config import builders, schema
from scnn_jax.runtime import ablation, state
from scnn_jax.runtime.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]


VAE_TINY = dict(T=4, latent_dim=8, hidden=(4, 8), k=4)
# Each kind: a config file, and the fields that shrink it to seconds of CPU.
TINY = {
    # base.py at 16x16 px, width 8, T = 4, 6 steps of batch 8
    "inpaint": (base, dict(
        model=dict(width=8, T=4), data=dict(image_size=16, num_eval=24),
        train=dict(steps=6, batch_size=8, eval_batch_size=16, log_every=2,
                   eval_every=3, checkpoint_every=3, num_sample_images=4))),
    "spiking_decoder": (taid_inpaint, dict(
        model=dict(width=4, T=2, num_layers=3, spiking_layers=2),
        data=dict(image_size=16, num_eval=16),
        train=dict(steps=3, batch_size=8, eval_batch_size=16, log_every=3,
                   eval_every=3, checkpoint_every=3, num_sample_images=0))),
    "classify": (mnist5k_alif, dict(
        model=dict(width=4, fc_width=16, T=2),
        data=dict(image_size=12, num_eval=24),
        train=dict(steps=4, batch_size=16, eval_batch_size=16, log_every=2,
                   eval_every=4, checkpoint_every=4))),
    "generate": (vae_mnist5k, dict(
        model=VAE_TINY, data=dict(image_size=8, num_eval=24),
        train=dict(steps=4, batch_size=8, eval_batch_size=16, log_every=2,
                   eval_every=4, checkpoint_every=4, num_sample_images=4))),
}


def tiny_config(kind: str = "inpaint", **model):
  """The ``TINY`` config of ``kind``, with more ``config.model`` fields
  from ``model``. Not validated: a test may change it first."""
  module, fields = TINY[kind]
  c = module.get_config()
  for section, values in fields.items():
    c[section].update(values)
  c.model.update(model)
  return c


# The per-device step on 12x12 batches of 16, without data or a workdir
# (tests/test_parallel.py, tests/test_steps.py).
SPEC = types.SimpleNamespace(image_shape=(12, 12, 3), num_classes=None)


def step_config(**model):
  """configs/base.py at width 8, T = 4, batch 16, validated."""
  c = base.get_config()
  c.model.width, c.model.T, c.train.batch_size = 8, 4, 16
  c.model.update(model)
  return schema.validate(c)


def step_batches(n, b=16, hw=12, seed=0):
  return hole_batches(n, b, hw, (slice(3, 8), slice(2, 9)), seed)


def run_steps(config, devices, steps=3):
  """Losses and final params of ``steps`` train steps on ``devices``
  devices (``trainer.setup`` on ``SPEC``)."""
  from scnn_jax.training import trainer
  run = trainer.setup(config, SPEC, jax.devices()[:devices])
  losses = [float(run.train_step(batch)["loss"])
            for batch in step_batches(steps)]
  return losses, jax.device_get(run.state["params"])


def eval_loaded(workdir) -> dict:
  """A workdir's model scored outside the trainer: loaded with
  ``inference.load`` (eval mode, no mesh) and run over the eval set in the
  run's eval batches, with the spike rates each batch records averaged as
  the trainer averages them. What the run's own last evaluation must have
  given."""
  from scnn_jax import metrics, tasks
  from scnn_jax.nn.variables import SpikeRate
  from scnn_jax.runtime import inference
  loaded = inference.load(workdir)
  task = tasks.get(loaded.config)
  acc, rates = task.new_accumulator(), []
  size = int(loaded.config.train.eval_batch_size)
  for b in tasks.dataset(loaded.config).eval_batches(size):
    out, captured = nnx.capture(lambda m, b=b: task.predict(m, b),
                                SpikeRate)(loaded.model)
    task.accumulate(acc, b, jax.device_get(out))
    rates.append({k: float(v) for k, v in
                  metrics.spike_rates(captured).items()})
  result = acc.result()
  if rates and rates[0]:
    result["spike_rate"] = {k: float(np.mean([r[k] for r in rates]))
                            for k in rates[0]}
  return result


def rand_image(rng, h, w, mode):
  """A uniform-noise PIL image of mode L, RGB or RGBA."""
  c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
  a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  return Image.fromarray(a[..., 0] if c == 1 else a)


def check_composite(out, expected_known, holes):
  """Known pixels byte-identical; same size."""
  assert out.shape == expected_known.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[~holes], expected_known[~holes])


def write_bad_files(folder, rng):
  """broken.png (garbage), truncated.png (cut in half), empty.jpg: they fail
  the cheap check; cut.jpg (a JPEG cut short) passes it but does not decode."""
  img = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
  (folder / "broken.png").write_bytes(b"\x89PNG definitely not an image")
  img.save(folder / "truncated.png")
  png = (folder / "truncated.png").read_bytes()
  (folder / "truncated.png").write_bytes(png[:len(png) // 2])
  (folder / "empty.jpg").write_bytes(b"")
  img.save(folder / "cut.jpg", quality=90)
  jpg = (folder / "cut.jpg").read_bytes()
  (folder / "cut.jpg").write_bytes(jpg[:len(jpg) // 2])


def hole_batches(n, b, hw, hole, seed=0):
  """``n`` inpainting batches of ``b`` uniform-noise ``hw`` x ``hw`` images,
  every image with the same hole ``hole = (rows, cols)`` (two slices)."""
  rng = np.random.default_rng(seed)
  for _ in range(n):
    mask = np.zeros((b, hw, hw, 1), np.float32)
    mask[(slice(None),) + hole] = 1.0
    yield {"image": rng.uniform(size=(b, hw, hw, 3)).astype(np.float32),
           "mask": mask, "valid": np.ones((b,), np.float32)}


def make_workdir(path, config, step=5, nudge_rest=False):
  """A workdir as train.py leaves it (config.json + an Orbax checkpoint of
  the train state), without the cost of training: the weights are the
  initial ones, with biases nudged so every layer matters (an ``ema``, with
  ``train.ema_decay``, stays at the init; ``nudge_rest``: the batch
  statistics too). An ablation config gets its
  stacked state. Returns ``(path, state)``."""
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  config = schema.validate(config)
  (path / "config.json").write_text(config.to_json_best_effort(indent=2))
  tx = builders.optimizer(config)
  if ablation.enabled(config):
    s, _ = ablation.create_stacked_state(ablation.points(config),
                                         builders.data_spec(config), tx)
  else:
    s, _ = state.create_state(builders.model(config), tx,
                              state.uses_ema(config))
  s["params"] = jax.tree.map(lambda x: x + 0.05, s["params"])
  if nudge_rest:      # batch statistics that differ from their init
    s["rest"] = nnx.from_flat_state([
        (p, v.replace(v[...] + 0.25) if isinstance(v, nnx.BatchStat) else v)
        for p, v in nnx.to_flat_state(s["rest"])])
  s["step"] = s["step"] + step
  ckpt = Checkpointer(path / "checkpoints")
  ckpt.save(step, s, force=True)
  ckpt.wait()
  ckpt.close()
  return path, s
