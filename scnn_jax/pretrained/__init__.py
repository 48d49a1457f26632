"""The inpainting models shipped inside the package (weights only).

    from scnn_jax import pretrained
    loaded = pretrained.load()          # inference.Loaded, eval mode
    # or: python -m scnn_jax.inpaint --image in.png --mask m.png --out out.png

Each folder holds ``config.json`` and ``params.safetensors`` (the weights and
the batch norms' running statistics, written by
``scripts/export_pretrained.py``) and a ``MODEL_CARD.md`` with its data,
budget, metrics and licence:

* ``spiking_resunet/`` (the default): the spiking residual U-Net of
  ``configs/spiking_resunet.py``, which corrects a biharmonic fill;
* ``relu_resunet/``: its non-spiking twin (``configs/relu_resunet.py``),
  the same net with ReLU in place of the neurons, shipped as the control.

Loading builds the model from ``config.json`` through ``models.registry``
and fills it with the file's arrays (``inference.load_params``): no weight is
initialised first.
"""

from __future__ import annotations

from etils import epath

DEFAULT = "spiking_resunet"
SHIPPED = ("spiking_resunet", "relu_resunet")


def path(name: str = DEFAULT) -> epath.Path:
  """Folder of a shipped model inside the installed package."""
  if name not in SHIPPED:
    raise ValueError(f"no shipped model {name!r}; shipped: "
                     f"{', '.join(SHIPPED)}")
  return epath.resource_path("scnn_jax") / "pretrained" / name


def load(name: str = DEFAULT):
  """The shipped model ``name`` as an ``inference.Loaded`` (eval mode)."""
  from scnn_jax.runtime import inference  # run machinery: imported when used
  return inference.load_params(path(name))
