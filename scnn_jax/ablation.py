"""``python -m scnn_jax.ablation export``: the ablation command
(``scnn-ablation``, ``scnn_jax/cli/ablation.py``); vmap ablations themselves
are ``scnn_jax.runtime.ablation``."""

import sys

from scnn_jax.cli.ablation import main

if __name__ == "__main__":
  sys.exit(main())
