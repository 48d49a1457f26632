"""On-device training augmentation of image batches (``model.augment``).

Runs inside the jitted step, on this device's rows; drawn per example from
``fold_in(key, example_id)`` so it does not depend on the device split.
``"none"``, ``"crop"`` (pad the [0, 1] image by ``pad`` pixels of 0, then
crop a random window of the original size: torchvision's
``RandomCrop(size, padding)`` before ``Normalize``, as in paper B's code), or
``"crop_flip"`` (plus a random horizontal flip; paper B's CIFAR-10 recipe).
Paper B's MNIST recipe is a random affine (rotation 30 deg, translation
15 %, scale 0.85-1.11); ``"crop"`` with pad 4 covers only its translation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTS = ("none", "crop", "crop_flip")


def augment(images, key, example_ids, kind: str, pad: int):
  """Random crop (zero padding) and optional flip of ``images [B, H, W, C]``.

  Example i's randomness comes from ``fold_in(key, example_ids[i])``.
  """
  if kind == "none":
    return images

  def one(img, i):
    k_crop, k_flip = jax.random.split(jax.random.fold_in(key, i))
    if pad:
      padded = jnp.pad(img, ((pad, pad), (pad, pad), (0, 0)))
      dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
      img = jax.lax.dynamic_slice(padded, (dy, dx, 0), img.shape)
    if kind == "crop_flip":
      img = jnp.where(jax.random.bernoulli(k_flip), img[:, ::-1], img)
    return img

  return jax.vmap(one)(images, jnp.asarray(example_ids))
