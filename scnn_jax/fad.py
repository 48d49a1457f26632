"""``python -m scnn_jax.fad``: the FAD autoencoder command (``scnn-fad``,
``scnn_jax/cli/fad.py``)."""

from scnn_jax.cli.fad import run

if __name__ == "__main__":
  run()
