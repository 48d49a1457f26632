"""``python -m scnn_jax.fad``: the FAD autoencoder command, kept at its old path.

The command lives in ``scnn_jax/cli/fad.py``; the autoencoder in
``scnn_jax/models/fad_autoencoder.py``; the Frechet distance and the scorer
in ``scnn_jax/metrics/frechet.py``. This module re-exports them for the
command line and for code written against the old layout; it is the top
layer (command-line tools): nothing in scnn_jax imports it.
"""

from scnn_jax.cli.fad import run, write_reference  # noqa: F401
from scnn_jax.config.schema import check_fad_workdir as check_workdir  # noqa: F401
from scnn_jax.metrics.frechet import (REFERENCE_FILE, FadScorer,  # noqa: F401
                                      distance_of_features)
from scnn_jax.models.fad_autoencoder import (FadAutoencoder,  # noqa: F401
                                             default_hidden)
from scnn_jax.tasks.generate import load_fad_scorer as load_scorer  # noqa: F401

if __name__ == "__main__":
  run()
