"""``python -m scnn_jax.inpaint``: the inpainting command (``scnn-inpaint``,
``scnn_jax/cli/inpaint.py``); the ``Inpainter`` API is
``scnn_jax.runtime.inpainter``."""

import sys

from scnn_jax.cli.inpaint import main

if __name__ == "__main__":
  sys.exit(main())
