"""Trains a scnn_jax model: ``python train.py --config configs/base.py``.

The same command as the installed ``scnn-train`` (``scnn_jax/cli/train.py``
holds it; this file lets a clone run without installing).
"""

from scnn_jax.cli import train

if __name__ == "__main__":
  train.run()
