"""python train.py --config configs/paper_a.py --config.data.folder=/data/LSDIR/train --workdir gs://BUCKET/runs/paper_a

Paper A's setting at full scale, for GPU/TPU (hours; on a 2-core CPU one step
takes seconds): 3x128x128 RGB crops, masked MSE, Adam at 1e-3, the SC-NN of
configs/base.py at width 64. Data: an image folder (paper A trained on LSDIR;
point data.folder at its training images, data.eval_folder at its validation
images) or any TFDS image dataset, e.g.
``--config.data.source=tfds --config.data.name=places365_small``
(prepare it once with ``tfds build places365_small --file_format=array_record``
and pass ``--config.data.data_dir``). Masks: free-form strokes over 10-40 %.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def get_config():
  c = base.get_config()
  c.model.width = 64
  c.data.source = "folder"
  c.data.image_size = 128
  c.data.num_eval = 1024
  c.data.prefetch = 8
  c.data.num_threads = 8
  c.masks.kind = "stroke"
  c.masks.ratio_min = 0.1
  c.masks.ratio_max = 0.4
  c.train.steps = 200_000
  c.train.batch_size = 64
  c.train.eval_batch_size = 64
  c.train.log_every = 200
  c.train.eval_every = 5000
  c.train.checkpoint_every = 2000
  return c
