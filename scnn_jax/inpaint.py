"""``python -m scnn_jax.inpaint``: the inpainting command, kept at its old path.

The command lives in ``scnn_jax/cli/inpaint.py``; the ``Inpainter`` API in
``scnn_jax/runtime/inpainter.py``; reading image and mask files in
``scnn_jax/data/images.py``. This module only re-exports them for the command
line and for code written against the old layout (``from scnn_jax.inpaint import
Inpainter``). It is the top layer (command-line tools): nothing in scnn_jax
imports it.
"""

import sys

from scnn_jax.cli.inpaint import (Job, UserError, build_parser,  # noqa: F401
                                  holes_beyond_reach, main, make_jobs, run,
                                  side_by_side)
from scnn_jax.data.images import (IMAGE_EXTENSIONS, ImageError,  # noqa: F401
                                  mask_to_holes, read_image_file,
                                  to_model_pixels)
from scnn_jax.runtime.inpainter import (DEFAULT_MEMORY_MB,  # noqa: F401
                                        Inpainter, Tile, TilePlan, TilingError,
                                        bytes_per_pixel, global_receptive_field,
                                        plan_tiles, receptive_radius,
                                        size_multiple)

if __name__ == "__main__":
  sys.exit(main())
