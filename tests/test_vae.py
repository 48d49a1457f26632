"""scnn_jax.models.vae: the spiking VAE (shapes, sampling determinism), its
loss on 1 and 8 devices, and task="generate" through the whole loop."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax import tasks
from scnn_jax.config import builders, schema
from scnn_jax.models import vae
from scnn_jax.runtime import inference, parallel
from scnn_jax.training import trainer
from tests.workdirs import VAE_TINY, eval_loaded

# XLA CPU compiles these small graphs ~3x faster without backend
# optimisations; they run fast enough either way.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jitted(fn):
  """``fn(model, *args)`` compiled (fast-compile options); updates ``model``."""
  cache = {}

  def call(model, *args):
    graph, state = nnx.split(model)
    if graph not in cache:
      cache[graph] = jax.jit(
          lambda state, *args: (lambda m: (fn(m, *args), nnx.state(m)))(
              nnx.merge(graph, state)), compiler_options=FAST_COMPILE)
    out, new_state = cache[graph](state, *args)
    nnx.update(model, new_state)
    return out
  return call


def tiny_model(latent="fsvae", decoder="taid", seed=0):
  return vae.SpikingVAE((8, 8, 1), latent=latent, image_decoder=decoder,
                        total_steps=10, rngs=nnx.Rngs(seed), **VAE_TINY)


def _images(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(n, 8, 8, 1)).astype(np.float32))


def _spread_prior(model):
  """Random biases in the prior, so that its k neurons per channel fire
  differently even untrained (zero biases + init running statistics keep
  every neuron silent, which makes all draws equal)."""
  if model.latent != "fsvae":
    return
  rng = np.random.default_rng(0)
  for block in model.prior.blocks:
    for var in (block.op.bias, block.bn.bias):
      var[...] = jnp.asarray(rng.normal(0.2, 0.3, var.shape), jnp.float32)


def test_shapes_and_sampling_determinism():
  model = tiny_model()
  forward = jitted(lambda m, x, key: m.forward(x, key=key))
  out = forward(model, _images(), jax.random.key(0))
  assert out.recon.shape == (8, 8, 8, 1) and out.z.shape == (4, 8, 8)
  assert set(np.unique(np.asarray(out.z))) <= {0.0, 1.0}
  assert out.distance.shape == (8,)
  assert int(model.progress[...]) == 1          # training mode counts steps
  model.eval()
  _spread_prior(model)
  sample = jitted(lambda m, key, ids: m.sample(5, key, ids,
                                              return_latent=True))
  key, ids = jax.random.key(3), jnp.arange(5)
  images, z = sample(model, key, ids)
  images, z = np.asarray(images), np.asarray(z)
  assert images.shape == (5, 8, 8, 1) and z.shape == (4, 5, 8)
  assert images.min() >= 0.0 and images.max() <= 1.0
  assert 0.0 < z.mean() < 1.0
  again = sample(model, key, ids)
  np.testing.assert_array_equal(images, np.asarray(again[0]))
  np.testing.assert_array_equal(z, np.asarray(again[1]))
  # Another key, other draws; row i depends only on (key, example id i), not
  # on its position in the batch.
  assert not np.array_equal(z, np.asarray(sample(model, jax.random.key(4),
                                                 ids)[1]))
  rev_images, rev_z = sample(model, key, ids[::-1])
  np.testing.assert_array_equal(np.asarray(rev_z), z[:, ::-1])
  np.testing.assert_allclose(np.asarray(rev_images), images[::-1], atol=1e-6)
  assert int(model.progress[...]) == 1          # eval mode does not count


@pytest.mark.parametrize("latent, decoder", [("fsvae", "taid"),
                                             ("esvae", "fixed_decay")])
def test_loss_is_the_same_on_1_and_8_devices(latent, decoder, tiny_config):
  """Global tdBN statistics, per-example latent draws, batch-wide
  scheduled-sampling draws (fsvae) and the all-gathered batch MMD (esvae):
  the loss of a global batch does not depend on its split over devices."""
  assert jax.device_count() == 8
  from jax.sharding import PartitionSpec as P
  config = schema.validate(tiny_config("generate", latent=latent))
  config.model.image_decoder = decoder
  task = tasks.get(config)
  model = builders.model(config, seed=0)
  model.train()
  graph, state = nnx.split(model)
  batch = {"image": np.asarray(_images(16)), "valid": np.ones((16,), np.float32)}

  def per_device(state, batch, key):
    m = nnx.merge(graph, state)
    ids = parallel.example_ids(batch["image"].shape[0])
    num, den, aux = task.loss(m, batch, rngs=nnx.Rngs(default=key),
                              example_ids=ids)
    total = lambda v: jax.lax.psum(v, parallel.AXIS)
    return total(num) / total(den), total(aux["distance"][0]) / total(den)

  out = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = parallel.make_mesh(devices)
    fn = jax.jit(parallel.per_device(per_device, mesh,
                                     (P(), P(parallel.AXIS), P()), (P(), P())),
                 compiler_options=FAST_COMPILE)
    out.append([float(v) for v in fn(
        parallel.replicate(mesh, state), parallel.global_batch(mesh, batch),
        parallel.replicate(mesh, jax.random.key(5)))])
  np.testing.assert_allclose(out[0], out[1], rtol=1e-5)
  assert out[0][1] > 0                         # the distance term is live


def test_train_generate_then_load_and_sample(tmp_path, tiny_config):
  config = schema.validate(tiny_config("generate"))   # fsvae, TAID
  config.train.update(steps=30, log_every=10, eval_every=30,
                      checkpoint_every=30, learning_rate=3e-3)
  summary = trainer.train_and_evaluate(config, tmp_path)
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["kind"] == "train"]
  assert [r["step"] for r in train] == [10, 20, 30]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert train[-1]["loss"] < 0.8 * train[0]["loss"], train   # it learns
  ev = summary["eval"]
  assert ev["num_images"] == 24
  # The sharded evaluation is the loaded model's, outside any mesh.
  assert ev["recon_mse"] == pytest.approx(
      eval_loaded(tmp_path)["recon_mse"], rel=1e-5)
  assert ev["recon_mse_pm1"] == pytest.approx(4 * ev["recon_mse"])
  # No FAD autoencoder or Inception weights configured: said, not failed.
  assert "fad" not in ev and "scnn_jax.fad" in ev["fad_status"]
  assert "inception_weights" in ev["inception_status"]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["eval"]["fad_status"] == ev["fad_status"]
  assert (tmp_path / "samples" / "step_000030.png").stat().st_size > 0
  assert "| svae |" in (tmp_path / "results.md").read_text()
  # The checkpoint carries the step counter and the BN statistics.
  loaded = inference.load(tmp_path)
  assert int(loaded.model.progress[...]) == 30
  assert not np.allclose(np.asarray(loaded.model.encoder[0].bn.mean[...]), 0)
  images = np.asarray(jitted(lambda m, k: m.sample(3, k))(
      loaded.model, jax.random.key(0)))
  assert images.shape == (3, 8, 8, 1) and np.all(np.isfinite(images))
