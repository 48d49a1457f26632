"""Paper B's generator: a fully spiking VAE (FSVAE) with TAID or fixed-decay decoding.

Sequences are TIME-MAJOR everywhere: ``[T, B, ...]``. Images enter and leave
the public methods in [0, 1] ``[B, H, W, C]``; inside, the network works on
[-1, 1] images as FSVAE does (``tanh`` output).

Architecture (FSVAE, Kamata et al. AAAI 2022, and its public code; paper B
keeps it and swaps the image decoder), for ``hidden = (32, 64, 128, 256)`` and
32x32 images:

* encoder: the image at every step (direct encoding), then per hidden width a
  3x3 stride-2 conv (padding 1) -> tdBN -> LIF, down to 2x2; flatten; a
  linear layer -> tdBN -> LIF gives the latent-input spikes ``x [T, B, C]``
  (``C = latent_dim``).
* latent (``latent="fsvae"``, the faithful one): Bernoulli spikes with an
  autoregressive learned prior. The posterior q(z_t | x_<=t, z_<t) and the
  prior p(z_t | z_<t) are spiking MLPs (linear -> tdBN(alpha=2) -> LIF, widths
  2C, 4C, C*k) whose last layer has k spiking neurons per latent channel: the
  probability of z_t = 1 is their mean, and a sample is one of the k spikes
  picked at random (FSVAE's sampling, so the gradient flows through the
  picked spike's surrogate). The prior is trained on the posterior's samples
  (teacher forcing, with FSVAE's scheduled sampling); the distribution term is
  FSVAE's "MMD": the mean squared difference of the PSP-filtered (tau_s = 2)
  posterior and prior firing probabilities.
* latent (``latent="esvae"``, ESVAE, Zhan et al. 2023): the posterior is the
  firing rate ``r_q`` of ``x`` over T; z is Bernoulli(``r_q``) at each step
  (``H(r_q - u)``, rectangular surrogate); the prior rate is
  ``r_p = sigmoid(Linear(eps))`` with ``eps ~ N(0, I)``; the distance term is
  an RBF-kernel MMD between the batches of ``r_q`` and ``r_p`` (weight
  ``esvae_lambda``, ESVAE: 1e-3).
* decoder: linear -> tdBN -> LIF to ``hidden[-1] x 2 x 2``, then per hidden
  width a 3x3 stride-2 transposed conv (padding 1, output padding 1) -> tdBN
  -> LIF up to the image size, and a 3x3 stride-1 transposed conv to the image
  channels (no BN, no spike): a real-valued sequence ``X [T, B, H, W, C]``.
* image decoder: ``"fixed_decay"`` (FSVAE: ``tanh(sum_t 0.8^(T-1-t) X_t)``) or
  ``"taid"`` (paper B: ``tanh(sum_t a_t X_t)`` with learned temporal
  attention, ``nn.TAID``).

Neurons default to FSVAE's LIF (``u_t = 0.25 u_{t-1} (1 - o_{t-1}) + I_t``,
``o_t = [u_t > 0.2]``, rectangular surrogate of width 1); any ``nn.LIF``
/ ``nn.ALIF`` keyword arguments can be passed instead.

tdBN (``nn.BatchNorm``) normalises each channel over time, batch and space
and scales by ``alpha * V_th``. Inside ``jax.shard_map`` over the ``"data"``
axis its statistics are those of the global batch (``psum``), so training
does not depend on how the batch is split over devices.

Randomness is per example: every draw of example i comes from
``fold_in(key, example_ids[i])``, so results do not depend on the device split
either, and ``sample(n, key)`` returns the same images for the same key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from scnn_jax import nn
from scnn_jax.models.blocks import SpikingBlock, SpikingMLP, check_image_size
from scnn_jax.nn.conv import ConvTranspose2d
from scnn_jax.nn.init import dense, lecun_normal_np
from scnn_jax.nn.variables import assign
from scnn_jax.ops import surrogate as surrogate_lib
from scnn_jax.ops.collectives import all_gather_if_bound

LATENTS = ("fsvae", "esvae")
IMAGE_DECODERS = ("fixed_decay", "taid")
# FSVAE's LIF (snn_layers.py of its code: tau = 0.25 is the decay per step,
# Vth = 0.2, rectangular surrogate |u| < 0.5 -> 1).
FSVAE_NEURON = dict(beta=0.25, threshold=0.2, reset="zero",
                    surrogate="rectangular", surrogate_param=1.0)


class TrainingSteps(nnx.Variable):
  """Training steps taken (drives FSVAE's scheduled-sampling probability)."""


def psp(x, tau_s=2.0):
  """FSVAE's PSP filter over time (axis 0): ``y_t = y_{t-1} + (x_t - y_{t-1}) / tau_s``."""
  def body(y, x_t):
    y = y + (x_t - y) / tau_s
    return y, y
  _, ys = lax.scan(body, jnp.zeros_like(x[0]), x)
  return ys


def rbf_mmd(a, b, kernel_mul=2.0, kernel_num=5):
  """ESVAE's multi-bandwidth RBF MMD between samples ``a [N, D]``, ``b [M, D]``.

  Bandwidths ``bw * kernel_mul^(i - kernel_num // 2)``, ``bw`` the mean
  pairwise squared distance of the pooled samples (no gradient through it).
  """
  total = jnp.concatenate([a, b], 0)
  d2 = jnp.sum(jnp.square(total[:, None] - total[None]), -1)
  n = total.shape[0]
  bw = lax.stop_gradient(jnp.sum(d2) / (n * n - n))
  bw = jnp.maximum(bw, 1e-12) / kernel_mul ** (kernel_num // 2)
  k = sum(jnp.exp(-d2 / (bw * kernel_mul ** i)) for i in range(kernel_num))
  na = a.shape[0]
  return (jnp.mean(k[:na, :na]) + jnp.mean(k[na:, na:])
          - jnp.mean(k[:na, na:]) - jnp.mean(k[na:, :na]))


def per_example_keys(key, example_ids, n: int | None = None):
  """``[B]`` keys ``fold_in(key, example_ids[i])`` (``arange(n)`` if ids None)."""
  ids = jnp.arange(n) if example_ids is None else jnp.asarray(example_ids)
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)


class VaeOutput(NamedTuple):
  recon: jax.Array      # [B, H, W, C] in [-1, 1]
  z: jax.Array          # [T, B, C] latent spikes fed to the decoder
  distance: jax.Array   # fsvae: per-example term [B]; esvae: scalar (batch MMD)


# -----------------------------------------------------------------------------
# The model
# -----------------------------------------------------------------------------


class SpikingVAE(nnx.Module):
  """FSVAE / ESVAE-style fully spiking VAE; see the module docstring.

  Args:
    image_shape: ``(H, W, C)``; H = W = ``2 * 2**len(hidden)``.
    T: time steps (paper B: 16).
    latent_dim: latent channels C (FSVAE: 128).
    hidden: conv widths of the encoder (reversed in the decoder).
    latent: ``"fsvae"`` or ``"esvae"``.
    k: spiking neurons per latent channel in the FSVAE prior / posterior.
    image_decoder: ``"taid"`` or ``"fixed_decay"``; ``decay`` for the latter.
    neuron, neuron_kwargs: ``nn.make_neuron`` arguments (FSVAE's LIF by
      default).
    scheduled_sampling: FSVAE's scheduled sampling of the prior's inputs, with
      probability rising from 0.1 to 0.3 over ``total_steps`` training steps.
    esvae_lambda: weight of ESVAE's MMD (inside ``distance``).
  """

  def __init__(self, image_shape, *, T=16, latent_dim=128,
               hidden=(32, 64, 128, 256), latent="fsvae", k=20,
               image_decoder="taid", decay=0.8, neuron="lif",
               neuron_kwargs=None, scheduled_sampling=True, total_steps=1,
               esvae_lambda=1e-3, conv_impl="auto", rngs: nnx.Rngs):
    h, w, c = image_shape
    hidden = tuple(hidden)
    check_image_size(h, w, hidden)
    if latent not in LATENTS:
      raise ValueError(f"unknown latent {latent!r}; allowed: "
                       f"{', '.join(LATENTS)}")
    if image_decoder not in IMAGE_DECODERS:
      raise ValueError(f"unknown image_decoder {image_decoder!r}; allowed: "
                       f"{', '.join(IMAGE_DECODERS)}")
    if neuron_kwargs is None:
      neuron, neuron_kwargs = "lif", dict(FSVAE_NEURON)
    nk = dict(neuron=neuron, neuron_kwargs=neuron_kwargs)
    self.T, self.latent_dim, self.k = T, latent_dim, k
    self.image_shape = (h, w, c)
    self.hidden = hidden
    self.latent = latent
    self.scheduled_sampling = scheduled_sampling
    self.total_steps = max(int(total_steps), 1)
    self.esvae_lambda = float(esvae_lambda)
    self.progress = TrainingSteps(jnp.zeros((), jnp.int32))

    enc, cin = [], c
    for width in hidden:
      conv = nn.Conv2d(cin, width, 3, strides=2, padding=((1, 1), (1, 1)),
                       impl=conv_impl, kernel_init=lecun_normal_np,
                       rngs=rngs)
      enc.append(SpikingBlock(conv, width, **nk))
      cin = width
    self.encoder = nnx.List(enc)
    flat = hidden[-1] * 4
    self.before_latent = SpikingBlock(dense(flat, latent_dim, rngs),
                                      latent_dim, **nk)
    C = latent_dim
    if latent == "fsvae":
      self.posterior = SpikingMLP((2 * C, 2 * C, 4 * C, C * k), rngs=rngs, **nk)
      self.prior = SpikingMLP((C, 2 * C, 4 * C, C * k), rngs=rngs, **nk)
    else:
      self.prior_layer = dense(C, C, rngs)
    self.decoder_input = SpikingBlock(dense(C, flat, rngs), flat,
                                      **nk)
    dec = []
    rev = hidden[::-1]
    for din, dout in zip(rev[:-1], rev[1:]):
      dec.append(SpikingBlock(
          ConvTranspose2d(din, dout, strides=2, padding=1, output_padding=1,
                          rngs=rngs), dout, **nk))
    dec.append(SpikingBlock(
        ConvTranspose2d(rev[-1], rev[-1], strides=2, padding=1,
                        output_padding=1, rngs=rngs), rev[-1], **nk))
    self.decoder = nnx.List(dec)
    self.final = ConvTranspose2d(rev[-1], c, strides=1, padding=1, rngs=rngs)
    if image_decoder == "taid":
      self.image_decoder = nn.TAID(T, activation="tanh", rngs=rngs)
    else:
      self.image_decoder = nn.FixedDecayDecoder(decay, activation="tanh")
    self.use_running_average = False

  # -- encoder / decoder ---------------------------------------------------
  def encode(self, images_pm1):
    """``[B, H, W, C]`` in [-1, 1] -> latent-input spikes ``[T, B, latent]``."""
    T = self.T
    first = self.encoder[0]
    # Direct encoding feeds the same image at every step: convolve it once.
    cur = first.op(images_pm1)
    cur = first.bn(jnp.broadcast_to(cur[None], (T,) + cur.shape))
    x = first.neuron(cur)
    for block in self.encoder[1:]:
      x = block(x)
    x = x.reshape(x.shape[:2] + (-1,))
    return self.before_latent(x)

  def decode(self, z):
    """Latent spikes ``[T, B, latent]`` -> images ``[B, H, W, C]`` in [-1, 1]."""
    x = self.decoder_input(z)
    x = x.reshape(x.shape[:2] + (2, 2, self.hidden[-1]))
    for block in self.decoder:
      x = block(x)
    return self.image_decoder(self.final(x))

  # -- FSVAE latent ----------------------------------------------------------
  def _picks(self, keys, n):
    """Which of the k neurons each example samples: int ``[T, B, C]``."""
    idx = jax.vmap(lambda k: jax.random.randint(
        k, (self.T, self.latent_dim), 0, self.k))(keys)
    return jnp.swapaxes(idx, 0, 1)

  @staticmethod
  def _pick(spikes_k, idx):
    """``spikes [..., C*k]`` and ``idx [..., C]`` -> the picked spikes ``[..., C]``."""
    s = spikes_k.reshape(idx.shape + (-1,))
    return jnp.take_along_axis(s, idx[..., None], -1)[..., 0]

  def _mode(self):
    return "running" if self.use_running_average else "causal"

  def fsvae_posterior(self, x, keys):
    """``x [T, B, C]`` -> ``(z [T, B, C], q [T, B, C, k])``.

    As FSVAE: a first pass without gradient samples z step by step (q_t
    depends on z_<t); a second, whole-sequence pass with the sampled z_<t as
    inputs gives q with gradients and the same picks give z.
    """
    idx = self._picks(keys, x.shape[1])
    mode = self._mode()
    xs = lax.stop_gradient(x)

    def body(carry, inputs):
      mlp_carry, z_prev = carry
      x_t, idx_t = inputs
      mlp_carry, q_t = self.posterior.step(
          mlp_carry, jnp.concatenate([x_t, z_prev], -1), mode)
      z_t = self._pick(q_t, idx_t)
      return (mlp_carry, z_t), z_prev

    z0 = jnp.zeros_like(xs[0])
    init = (self.posterior.init_carry(jnp.concatenate([z0, z0], -1)), z0)
    _, z_in = lax.scan(body, init, (xs, idx))
    z_in = lax.stop_gradient(z_in)                        # [0, z_0..z_{T-2}]
    q = self.posterior(jnp.concatenate([x, z_in], -1))    # [T, B, C*k]
    z = self._pick(q, idx)
    return z, q.reshape(q.shape[:2] + (self.latent_dim, self.k))

  def _scheduled_prob(self):
    frac = jnp.minimum(self.progress[...].astype(jnp.float32) /
                       self.total_steps, 1.0)
    return 0.1 + 0.2 * frac

  def fsvae_prior(self, z, keys, key):
    """Prior firing ``p [T, B, C, k]`` given the posterior's samples ``z``.

    Teacher forcing (inputs ``[0, z_0, ..., z_{T-2}]``, no gradient into z).
    With scheduled sampling (training only), from step 5 on each step's input
    is replaced, with probability p (the same for the whole batch, as in
    FSVAE), by the prior's own thresholded prediction.
    """
    z = lax.stop_gradient(z)
    z0 = jnp.zeros_like(z[:1])
    inputs = jnp.concatenate([z0, z[:-1]], 0)
    if self.scheduled_sampling and not self.use_running_average:
      T = self.T
      use_own = ((jnp.arange(T) >= 5) &
                 (jax.random.uniform(key, (T,)) < self._scheduled_prob()))
      noise = jnp.swapaxes(jax.vmap(lambda k: jax.random.normal(
          jax.random.fold_in(k, 7), (T, self.latent_dim)))(keys), 0, 1)

      def body(carry, inputs_t):
        mlp_carry, z_in = carry
        z_t, own_t, noise_t = inputs_t
        mlp_carry, p_t = self.prior.step(mlp_carry, z_in, "causal")
        prob = jnp.mean(p_t.reshape(p_t.shape[:-1] + (self.latent_dim, self.k)),
                        -1)
        own = (prob + 1e-3 * noise_t > 0.5).astype(z_t.dtype)
        nxt = jnp.where(own_t, own, z_t)
        return (mlp_carry, nxt), z_in

      init = (self.prior.init_carry(z[0]), z0[0])
      _, inputs = lax.scan(body, init, (z, use_own, noise))
      inputs = lax.stop_gradient(inputs)
    p = self.prior(inputs)
    return p.reshape(p.shape[:2] + (self.latent_dim, self.k))

  def fsvae_prior_sample(self, keys):
    """Latent spikes ``[T, n, C]`` drawn step by step from the prior."""
    n = keys.shape[0]
    idx = self._picks(keys, n)

    def body(carry, idx_t):
      mlp_carry, z_prev = carry
      mlp_carry, p_t = self.prior.step(mlp_carry, z_prev, "running")
      z_t = self._pick(p_t, idx_t)
      return (mlp_carry, z_t), z_t

    z0 = jnp.zeros_like(idx[0], jnp.float32)   # varies like the keys
    _, z = lax.scan(body, (self.prior.init_carry(z0), z0), idx)
    return z

  # -- ESVAE latent ----------------------------------------------------------
  def _esvae_spikes(self, rate, keys):
    """Bernoulli(rate) spikes ``[T, B, C]`` with a rectangular surrogate."""
    u = jnp.swapaxes(jax.vmap(lambda k: jax.random.uniform(
        jax.random.fold_in(k, 1), (self.T, self.latent_dim)))(keys), 0, 1)
    return surrogate_lib.spike(rate[None] - u, "rectangular", 1.0)

  def _esvae_prior_rate(self, keys):
    eps = jax.vmap(lambda k: jax.random.normal(
        jax.random.fold_in(k, 2), (self.latent_dim,)))(keys)
    return jax.nn.sigmoid(self.prior_layer(eps))

  # -- whole model -----------------------------------------------------------
  def forward(self, images, *, key, example_ids=None) -> VaeOutput:
    """Reconstruction pass of ``images [B, H, W, C]`` in [0, 1].

    ``key`` drives the latent sampling; example i uses
    ``fold_in(key, example_ids[i])``. In training mode it also advances the
    scheduled-sampling counter.
    """
    x = self.encode(images * 2.0 - 1.0)
    example_key, batch_key = jax.random.split(key)
    keys = per_example_keys(example_key, example_ids, images.shape[0])
    if self.latent == "fsvae":
      z, q = self.fsvae_posterior(x, keys)
      p = self.fsvae_prior(z, keys, batch_key)
      d = jnp.square(psp(jnp.mean(q, -1)) - psp(jnp.mean(p, -1)))
      distance = jnp.mean(d, axis=(0, 2))              # [B]
    else:
      r_q = jnp.mean(x, 0)                              # [B, C]
      z = self._esvae_spikes(r_q, keys)
      r_p = self._esvae_prior_rate(keys)
      distance = self.esvae_lambda * rbf_mmd(all_gather_if_bound(r_q),
                                             all_gather_if_bound(r_p))
    if not self.use_running_average:
      assign(self, "progress", self.progress[...] + 1)
    return VaeOutput(self.decode(z), z, distance)

  def reconstruct(self, images, *, key, example_ids=None):
    """Reconstructions ``[B, H, W, C]`` in [0, 1] of images in [0, 1]."""
    return (self.forward(images, key=key, example_ids=example_ids).recon
            + 1.0) / 2.0

  def sample_latent(self, keys):
    if self.latent == "fsvae":
      return self.fsvae_prior_sample(keys)
    return self._esvae_spikes(self._esvae_prior_rate(keys), keys)

  def sample(self, n: int, key, example_ids=None, return_latent=False):
    """``n`` images ``[n, H, W, C]`` in [0, 1] drawn from the prior.

    Row i comes from ``fold_in(key, i)`` (or ``example_ids[i]``): the same key
    gives the same images, whatever ``n`` or batch split. Call in eval mode
    (``model.eval()``): the decoder's tdBN then uses its running statistics.
    ``return_latent`` also returns the latent spikes ``[T, n, latent_dim]``.
    """
    keys = per_example_keys(key, example_ids, n)
    z = self.sample_latent(keys)
    images = (self.decode(z) + 1.0) / 2.0
    return (images, z) if return_latent else images

  def __call__(self, images, *, key, example_ids=None):
    """``reconstruct``: images in [0, 1] -> reconstructions in [0, 1]."""
    return self.reconstruct(images, key=key, example_ids=example_ids)
