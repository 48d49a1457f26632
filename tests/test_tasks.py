"""scnn_jax.tasks: what each task computes from its model's outputs
(classification accuracy through the whole loop and back out of the
checkpoint; the generate task's MSE, FAD, IS and FID of its samples)."""

import json

import numpy as np
import pytest
from flax import nnx

from scnn_jax import tasks
from scnn_jax.metrics import frechet, inception
from scnn_jax.models.fad_autoencoder import FadAutoencoder
from scnn_jax.runtime import inference
from scnn_jax.tasks.generate import GenerationAccumulator
from scnn_jax.training import trainer


def test_train_classify_then_load_outside_shard_map(tmp_path, tiny_config):
  config = tiny_config("classify")
  summary = trainer.train_and_evaluate(config, tmp_path)
  assert summary["eval"]["num_examples"] == 24
  # A share of 24 examples: a whole number of them correct.
  correct = summary["eval"]["accuracy"] * 24
  assert correct == pytest.approx(round(correct), abs=1e-6)
  assert summary["devices"] == 8
  assert set(summary["eval"]["spike_rate"]) >= {"static_neuron",
                                                "fc2_neuron"}
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["kind"] == "train"]
  assert [r["step"] for r in train] == [2, 4]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert "| mnistnet |" in (tmp_path / "results.md").read_text()
  # Eval mode outside shard_map, from the checkpoint: same accuracy.
  loaded = inference.load(tmp_path)
  task = tasks.get(loaded.config)
  acc = task.new_accumulator()
  for b in tasks.dataset(loaded.config).eval_batches(16):
    assert "mask" not in b                    # masks are inpainting's only
    task.accumulate(acc, b, task.predict(loaded.model, b))
  assert acc.result()["accuracy"] == pytest.approx(
      summary["eval"]["accuracy"], abs=1e-9)
  bn = loaded.model.static.bn
  assert bn.use_running_average
  assert not np.allclose(np.asarray(bn.mean[...]), 0.0)


def test_generation_accumulator_scores_the_samples(random_inception,
                                                   monkeypatch):
  """The eval path of task="generate": recon MSE, and FAD, IS and FID of the
  SAMPLES against the held-out images, each equal to the score computed
  here from the same networks. Samples, reconstructions and images all
  differ, so scoring the wrong set (or the images against themselves)
  fails."""
  net = random_inception[2]
  fid = inception.fid     # on 64 of the 2048 features, to keep the test fast
  monkeypatch.setattr(inception, "fid", lambda a, b: fid(a[:, :64],
                                                         b[:, :64]))
  model = FadAutoencoder((8, 8, 1), latent_dim=6, hidden=(4, 8),
                         rngs=nnx.Rngs(0))
  model.eval()
  scorer = frechet.FadScorer(model, batch_size=32)
  acc = GenerationAccumulator(scorer, net, splits=2)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(12, 8, 8, 1)).astype(np.float32)
  recon = np.clip(images + 0.1, 0, 1)
  samples = np.clip(images[::-1] * 0.5 + 0.3, 0, 1)
  valid = np.ones(12, np.float32)
  valid[-2:] = 0                               # padding rows are ignored
  for part in (slice(0, 6), slice(6, 12)):
    acc.update(images[part], recon[part], samples[part], valid[part])
  r = acc.result()
  real, fake = images[:10], samples[:10]
  assert r["num_images"] == 10
  assert r["recon_mse"] == pytest.approx(
      np.mean((recon[:10] - real) ** 2), rel=1e-6)
  want_fad = frechet.distance_of_features(scorer.features(fake),
                                          scorer.features(real))
  assert r["fad"] == pytest.approx(want_fad, rel=1e-6) and want_fad > 1e-3
  pool_real = net.features(real)[0]
  pool_fake, logits_fake = net.features(fake)
  want_fid = fid(pool_fake[:, :64], pool_real[:, :64])
  # The random net's pool features are ~1e-5, so FID ~1e-6 here, while a
  # set against itself gives ~1e-15.
  assert r["fid"] == pytest.approx(want_fid, rel=1e-6)
  assert want_fid > 1e6 * abs(fid(pool_real[:, :64], pool_real[:, :64]))
  want_is = inception.inception_score(logits_fake, 2)
  assert (r["inception_score"], r["inception_score_std"]) == pytest.approx(
      want_is, rel=1e-6)
  assert want_is != pytest.approx(
      inception.inception_score(net.features(real)[1], 2), rel=1e-6)
