"""Config -> the objects a run is made of: data spec, model, optimizer, dataset.

Every function takes a validated config (``scnn_jax.schema.validate``) and
reads its fields directly. Models come from ``scnn_jax.models.registry`` by
name, so building one needs no trainer, task or dataset:

    spec = builders.data_spec(config)          # image shape, classes: no I/O
    model = builders.model(config, spec)       # train mode
    tx = builders.optimizer(config)
    ds = builders.dataset(config)              # opens the data
"""

from __future__ import annotations

import dataclasses

import optax
from flax import nnx

from scnn_jax import data, optim
from scnn_jax.models import registry


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What building a model needs to know about the data."""
  image_shape: tuple[int, int, int]
  num_classes: int | None = None


def data_spec(config) -> DataSpec:
  """The data's shape from the config alone (no dataset is opened)."""
  d = config.data
  return DataSpec((d.image_size, d.image_size, d.channels),
                  config.model.get("num_classes"))


def init_seed(config) -> int:
  """The parameter-init seed: ``init_seed`` if set, else ``seed``."""
  return config.seed if config.init_seed is None else config.init_seed


def model(config, spec=None, *, seed: int | None = None) -> nnx.Module:
  """The model of ``config`` (train mode), initialised from ``seed``
  (default ``init_seed(config)``). ``spec``: a ``DataSpec`` or a dataset
  (``image_shape``, ``num_classes``); default ``data_spec(config)``."""
  spec = data_spec(config) if spec is None else spec
  seed = init_seed(config) if seed is None else seed
  return registry.build(config, spec.image_shape, spec.num_classes,
                        rngs=nnx.Rngs(params=seed))


def optimizer(config) -> optax.GradientTransformation:
  """``config.train``'s optax optimizer (``scnn_jax.optim``)."""
  return optim.build(config.train)


def dataset(config) -> data.Dataset:
  """``config``'s dataset with its task's transform (inpainting: masks)."""
  return data.build(config)
