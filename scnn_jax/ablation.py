"""``python -m scnn_jax.ablation export``, kept at its old path.

vmap ablations live in ``scnn_jax/runtime/ablation.py`` (points, stacking; the
fields that may be swept: ``scnn_jax.config.schema.SWEEPABLE``), their table and
plot in ``scnn_jax/reports.py`` and the export command in
``scnn_jax/cli/ablation.py``. This module re-exports them for the command line
and for code written against the old layout; it is the top layer (command-line
tools): nothing in scnn_jax imports it.
"""

import sys

from scnn_jax.cli.ablation import build_parser, export_point, main  # noqa: F401
from scnn_jax.config.schema import SWEEPABLE  # noqa: F401
from scnn_jax.config.schema import ABLATION_MODES as MODES  # noqa: F401
from scnn_jax.reports import write_ablation as write_outputs  # noqa: F401
from scnn_jax.runtime.ablation import (Point, enabled, points,  # noqa: F401
                                       stack, unstack)

if __name__ == "__main__":
  sys.exit(main())
