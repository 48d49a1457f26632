"""Trains a scnn_jax model (installed, the same command is ``scnn-train``).

    python train.py --config configs/base.py [--workdir runs/base] \
        [--config.train.steps=500 ...]

The workdir defaults to runs/<config file stem>; running the same command
again resumes from its latest checkpoint. The code is scnn_jax/cli/train.py.
"""

from scnn_jax.cli import train

if __name__ == "__main__":
  train.run()
