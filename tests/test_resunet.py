"""The residual U-Net on a biharmonic prior (models/resunet.py): spiking and twin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scnn_jax.models import resunet
from scnn_jax.ops import smooth_fill

ALIF = dict(tau=2.0, threshold=0.5, surrogate="atan", surrogate_param=2.0)


def _net(activation="spiking", **kw):
  kw = dict(dict(width=4, depth=2, blocks=1, T=3, neuron="alif",
                 neuron_kwargs=ALIF, prior_iters=8), **kw)
  return resunet.PriorResUNet(4, 3, activation=activation,
                              rngs=nnx.Rngs(0), **kw)


def _batch(h, w, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  img = np.stack([0.5 + 0.3 * np.sin(4 * x + c) * np.cos(3 * y)
                  for c in range(3)], -1)[None].repeat(2, 0)
  img = (img + 0.05 * rng.normal(size=img.shape)).clip(0, 1)
  hole = np.zeros((2, h, w, 1), np.float32)
  hole[:, h // 4:h // 2, w // 3:2 * w // 3] = 1
  x = np.concatenate([img * (1 - hole), hole], -1).astype(np.float32)
  return jnp.asarray(x), img.astype(np.float32), hole


def test_hole_depth_is_the_capped_chessboard_distance():
  mask = np.zeros((1, 9, 9, 1), np.float32)
  mask[0, 1:8, 1:8] = 1                    # a 7x7 hole: rims at depth 1..4
  got = np.asarray(resunet.hole_depth(jnp.asarray(mask), cap=3))
  d = np.zeros((9, 9))
  for i in range(9):
    for j in range(9):
      if mask[0, i, j, 0]:
        d[i, j] = min(i, j, 8 - i, 8 - j)  # distance to the known frame
  want = np.log1p(np.minimum(d, 3)) / np.log1p(3)
  np.testing.assert_allclose(got[0, ..., 0], want, atol=1e-6)
  assert got[0, 0, 0, 0] == 0 and got[0, 4, 4, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("activation", resunet.ACTIVATIONS)
def test_untrained_net_is_the_prior_at_any_size(activation):
  x, _, _ = _batch(19, 26)
  net = _net(activation)
  out, prior = jax.jit(lambda x: (net(x), net.prior(x)))(x)
  assert out.shape == (2, 19, 26, 3)
  np.testing.assert_array_equal(np.asarray(out),
                                np.clip(np.asarray(prior), 0, 1))


def test_spikes_drive_every_encoder_conv_and_the_twin_has_no_time_axis():
  x, _, _ = _batch(16, 16)
  spiking, twin = _net("spiking"), _net("relu")
  # The twin shares every parameter shape with the spiking net but the
  # neurons' own (tau and threshold per channel).
  shapes = lambda n: {k: v.shape for k, v in  # noqa: E731
                      nnx.to_flat_state(nnx.state(n, nnx.Param))}
  extra = set(shapes(spiking)) - set(shapes(twin))
  assert extra and all("neuron" in "/".join(map(str, k)) for k in extra)
  assert set(shapes(twin)) <= set(shapes(spiking))
  inputs = []
  for conv in list(spiking.block_convs[1]) + list(spiking.down_convs):
    orig = conv.__call__
    conv.__class__ = type("Spy", (type(conv),), {
        "__call__": lambda self, z, orig=orig: (inputs.append(z), orig(z))[1]})
  h = spiking.stem(jnp.concatenate(
      [spiking.prior(x), spiking.prior(x), x[..., 3:],
       resunet.hole_depth(x[..., 3:])], -1))
  streams = spiking.encode(h)
  assert [s.shape for s in streams] == [(3, 2, 16, 16, 4), (3, 2, 8, 8, 8),
                                        (3, 2, 4, 4, 16)]
  assert len(inputs) == 3
  for z in inputs:
    z = np.asarray(z)
    assert z.shape[0] == 3 and set(np.unique(z)) <= {0.0, 1.0}
    assert 0.01 < z.mean() < 0.9                     # neither silent nor saturated
  t = twin.encode(h)
  assert [s.shape for s in t] == [(1, 2, 16, 16, 4), (1, 2, 8, 8, 8),
                                  (1, 2, 4, 4, 16)]


def test_surrogate_gradient_reaches_the_first_spiking_layer():
  x, img, hole = _batch(16, 16)
  net = _net()
  net.last.kernel[...] = 0.01 * jnp.ones_like(net.last.kernel[...])
  graphdef, state = nnx.split(net)

  def loss(state):
    out = nnx.merge(graphdef, state)(x)
    return jnp.sum(((out - img) * hole) ** 2)

  grads = nnx.to_flat_state(jax.jit(jax.grad(loss))(state))
  g = dict(grads)
  stem = np.asarray(g[("stem", "kernel")][...])
  thresh = np.asarray(g[("block_acts", 0, 0, "neuron", "threshold")][...])
  assert np.abs(stem).max() > 0 and np.abs(thresh).max() > 0


def test_receptive_field_matches_the_layers():
  net = _net(depth=2, blocks=1)
  # stem 3; scale 0: block +2, down +2; scale 1 (jump 2): +4, +4;
  # scale 2 (jump 4): block +8.
  assert net.receptive_field == 3 + 2 + 2 + 4 + 4 + 8
  assert net.pad_multiple == 4


def test_contrast_is_the_std_of_the_known_pixels_with_a_floor():
  img = np.zeros((2, 4, 4, 3), np.float32)
  img[0, :2] = 1.0                       # half the known pixels 1, half 0
  mask = np.zeros((2, 4, 4, 1), np.float32)
  mask[:, 3] = 1                         # the last row is the hole...
  img[0, 3] = 7.0                        # ...and its pixels are not read
  mu, scale = resunet.contrast(jnp.asarray(img), jnp.asarray(mask))
  # image 0: known rows 0-1 are 1, row 2 is 0 -> mean 2/3, var 2/9
  np.testing.assert_allclose(np.asarray(mu).ravel(), [2 / 3, 0.0], atol=1e-6)
  np.testing.assert_allclose(
      np.asarray(scale).ravel(),
      [np.sqrt(2 / 9 + resunet.CONTRAST_FLOOR ** 2), resunet.CONTRAST_FLOOR],
      rtol=1e-5)


def test_the_head_moves_the_output_between_the_two_fills():
  x, _, hole = _batch(16, 16)
  net = _net("relu")
  bias = np.zeros(4, np.float32)
  bias[3] = 30.0                         # harmonic share -> 1 - sigmoid(-2)
  net.last.bias[...] = jnp.asarray(bias)
  out, prior = jax.jit(lambda x: (net(x), net.prior(x)))(x)
  harmonic = smooth_fill.smooth_fill(x[..., :3], x[..., 3:], order=1,
                                     iters=8)
  share = 1.0 - 1.0 / (1.0 + np.exp(2.0))
  want = np.clip(np.asarray(prior) + share * (np.asarray(harmonic)
                                              - np.asarray(prior)), 0, 1)
  np.testing.assert_allclose(np.asarray(out), want, atol=1e-5)
  # A correction channel moves its channel by 0.05 x contrast per unit.
  bias = np.zeros(4, np.float32)
  bias[0] = 1.0
  net.last.bias[...] = jnp.asarray(bias)
  out = np.asarray(jax.jit(lambda x: net(x))(x))
  _, scale = resunet.contrast(x[..., :3], x[..., 3:])
  step = resunet.CORRECTION_GAIN * np.asarray(scale)[:, 0, 0, 0]
  inside = (np.asarray(prior)[..., 0] + step[:, None, None]) < 1
  np.testing.assert_allclose(
      (out[..., 0] - np.asarray(prior)[..., 0])[inside],
      np.broadcast_to(step[:, None, None], inside.shape)[inside], atol=1e-5)
  np.testing.assert_array_equal(out[..., 1:], np.asarray(prior)[..., 1:])


def _tiny_resunet_config(name):
  from tests import workdirs
  c = workdirs.tiny_config()
  c.model.name = name
  c.model.width, c.model.depth, c.model.T = 4, 2, 2
  c.model.neuron, c.model.threshold, c.model.alif_tau = "alif", 0.5, 2.0
  c.model.noise_std = 0.0
  c.model.prior_iters = 4
  return c


def test_a_spiking_run_starts_from_its_twins_weights(tmp_path):
  from scnn_jax.training import trainer
  from scnn_jax.config import builders, schema
  from scnn_jax.ops.checks import ConfigError
  from tests import workdirs
  twin_dir, twin_state = workdirs.make_workdir(
      tmp_path / "twin", _tiny_resunet_config("relu_resunet"))
  c = _tiny_resunet_config("spiking_resunet")
  c.train.init_from = str(twin_dir)
  c.train.ema_decay = 0.9
  c = schema.validate(c)
  run = trainer.setup(c, builders.data_spec(c))
  state = trainer.init_from(run.state, str(twin_dir))
  theirs = dict(nnx.to_flat_state(twin_state["params"]))
  before = dict(nnx.to_flat_state(run.state["params"]))
  for key in ("params", "ema"):
    flat = dict(nnx.to_flat_state(state[key]))
    for path, value in flat.items():
      if "neuron" in path:     # the twin has no neurons: their init stays
        np.testing.assert_array_equal(value[...], before[path][...])
      else:
        np.testing.assert_array_equal(value[...], theirs[path][...])
  # The whole loop from it: params and moving average are separate buffers
  # (the step donates both), and the run trains.
  c.train.update(steps=2, eval_every=2, checkpoint_every=2, log_every=1)
  results = trainer.train_and_evaluate(c, tmp_path / "spiking")
  assert results["steps"] == 2 and np.isfinite(results["eval"]["hole_psnr"])
  # Not a workdir, or another task's: one line naming the field.
  c.train.init_from = str(tmp_path / "nowhere")
  with pytest.raises(ConfigError, match="train.init_from"):
    schema.validate(c)


def test_batch_norm_keeps_what_layer_norm_drops_and_is_fixed_at_eval():
  # Two pixels whose stream differs by a scale: the layer norm maps both to
  # the same currents, the batch norm (per channel) keeps them apart.
  z = jnp.stack([jnp.array([0.2, 1.0, -0.4, 0.6]),
                 3.0 * jnp.array([0.2, 1.0, -0.4, 0.6])])[None, :, None, None]
  layer = resunet._Act(4, "relu", "lif", None, norm="layer",
                       rngs=nnx.Rngs(0))
  batch = resunet._Act(4, "relu", "lif", None, norm="batch",
                       rngs=nnx.Rngs(0))
  a = layer(z, 1)
  np.testing.assert_allclose(a[0, 0], a[0, 1], atol=1e-4)
  b = batch(z, 1)                    # train mode: the batch's statistics
  assert float(jnp.abs(b[0, 0] - b[0, 1]).max()) > 0.5
  # Train mode moved the running statistics (momentum 0.1 from 0 / 1) ...
  mean = np.mean(np.asarray(z).reshape(-1, 4), 0)
  np.testing.assert_allclose(batch.norm.mean[...], 0.1 * mean, rtol=1e-5)
  # ... and eval mode applies them, the same map for any batch.
  batch.eval()
  one = batch(z[:, :1], 1)
  np.testing.assert_allclose(one[0, 0], batch(z, 1)[0, 0], rtol=1e-6)
  with pytest.raises(ValueError, match="unknown norm 'group'"):
    resunet.PriorResUNet(4, 3, norm="group", rngs=nnx.Rngs(0))


def test_a_batch_norm_spiking_run_starts_from_its_twins_statistics(tmp_path):
  from scnn_jax.training import trainer
  from scnn_jax.config import builders, schema
  from tests import workdirs
  twin = _tiny_resunet_config("relu_resunet")
  twin.model.norm = "batch"
  twin_dir, twin_state = workdirs.make_workdir(tmp_path / "twin", twin,
                                               nudge_rest=True)
  c = _tiny_resunet_config("spiking_resunet")
  c.model.norm = "batch"
  c.train.init_from = str(twin_dir)
  c = schema.validate(c)
  run = trainer.setup(c, builders.data_spec(c))
  state = trainer.init_from(run.state, str(twin_dir))
  theirs = dict(nnx.to_flat_state(twin_state["rest"]))
  stats = {p: v for p, v in nnx.to_flat_state(state["rest"])
           if isinstance(v, nnx.BatchStat)}
  assert stats and set(stats) <= set(theirs)
  for path, value in stats.items():
    np.testing.assert_array_equal(value[...], theirs[path][...])
    assert float(np.abs(value[...] - (path[-1] == "var")).min()) == 0.25


def test_an_export_carries_the_batch_statistics(tmp_path):
  from scnn_jax.runtime import inference
  from tests import workdirs
  c = _tiny_resunet_config("spiking_resunet")
  c.model.norm = "batch"
  path, state = workdirs.make_workdir(tmp_path / "run", c, nudge_rest=True)
  loaded = inference.load(path)
  shapes = inference.export_params(loaded, tmp_path / "export")
  assert shapes["block_acts/0/0/norm/mean"] == (4,)
  again = inference.load_params(tmp_path / "export")
  stats = dict(nnx.to_flat_state(nnx.state(again.model, nnx.BatchStat)))
  want = dict(nnx.to_flat_state(state["rest"]))
  assert stats
  for p, v in stats.items():       # the trained statistics, not the init
    np.testing.assert_array_equal(v[...], want[p][...])
  x, _, _ = _batch(24, 20)
  np.testing.assert_array_equal(np.asarray(loaded.model(x)),
                                np.asarray(again.model(x)))
