"""python train.py --config configs/ablation.py    (8 min 46 s on 2 quiet CPU cores, peak 1.0 GB)

A vmap ablation of paper A's SC-NN on the embedded natural patches of
configs/base.py: LIF membrane time constant tau (4 values) x firing threshold
(3 values) = 12 models trained at once in one compiled program, on the same
batches, masks and noise, each from its own init (seed + k). Smaller than the
base run (width 16, 600 steps) so that 12 models fit the CPU budget; the
workdir gets ablation.csv / ablation.md / ablation.png, per-point sample grids
under samples/<point>/, and one checkpoint holding all 12 states (export one
with ``python -m scnn_jax.ablation export --workdir runs/ablation --point k
--out DIR``).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def get_config():
  c = base.get_config()
  c.model.width = 16
  c.train.steps = 600
  c.train.log_every = 50
  c.train.eval_every = 300
  c.train.checkpoint_every = 200
  c.train.num_sample_images = 6
  c.data.num_eval = 128
  c.ablation.grid = {"model": {"tau": [2.0, 5.0, 10.0, 40.0],
                               "threshold": [0.5, 1.0, 2.0]}}
  return c
