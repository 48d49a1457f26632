"""The inpainting model shipped inside the package (params only).

    from scnn_jax import pretrained
    loaded = pretrained.load()          # inference.Loaded, eval mode
    # or: python -m scnn_jax.inpaint --image in.png --mask m.png --out out.png

``spiking_unet/`` holds ``config.json`` and ``params.safetensors`` of one
seed of ``configs/spiking_unet.py`` (written by
``scripts/export_pretrained.py``); ``spiking_unet/MODEL_CARD.md`` gives its
data, budget, metrics and licence. Loading builds the model from
``config.json`` through ``models.registry`` and fills it with the file's
arrays (``inference.load_params``): no weight is initialised first.
"""

from __future__ import annotations

from etils import epath

DEFAULT = "spiking_unet"


def path(name: str = DEFAULT) -> epath.Path:
  """Folder of a shipped model inside the installed package."""
  return epath.resource_path("scnn_jax") / "pretrained" / name


def load(name: str = DEFAULT):
  """The shipped model ``name`` as an ``inference.Loaded`` (eval mode)."""
  from scnn_jax.runtime import inference  # run machinery: imported when used
  return inference.load_params(path(name))
