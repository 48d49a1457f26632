"""python train.py --config configs/mnist5k_alif.py   (2 CPU cores: 2.5 min quiet, up to ~15 min shared)

Paper B's MNISTNet (``configs/mnist_alif.py``) scaled to the embedded
5,000-image MNIST subset shipped with the repo (4,000 train / 1,000 held-out
validation images, stratified; no download), so it trains on a laptop CPU.
Everything as paper B except the size:

* width 32 instead of 128 conv channels, and the hidden FC layer 512 instead
  of 2048 neurons (paper B's rule: channels * 4 * 4);
* 4,000 training images instead of 60,000; batch 32, STEPS steps
  (EPOCHS epochs) with cosine decay;
* held-out accuracy on all 1,000 validation images of the subset (paper B
  reports the 10,000-image MNIST test set: not comparable).

The neuron-kind table (docs/studies/paper_b.md, scripts/paper_b_tables.py)
runs this config three times: ``--config.model.neuron=lif --config.model.threshold=1.0``
(fixed LIF), the default (paper B's ALIF), and
``--config.model.adaptation_increment=0.2`` (ALIF plus spike-triggered
threshold adaptation, tau 4 steps).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
mnist_alif = sibling(__file__, "mnist_alif")
classify_fields = mnist_alif.classify_fields

STEPS = 1200


def get_config():
  c = classify_fields(base.get_config())
  m = c.model
  m.width = 32
  m.fc_width = 512
  d = c.data
  d.source = "embedded"
  d.name = "mnist5k"
  d.image_size = 28
  d.channels = 1
  d.num_eval = 1000
  d.train_crop = "center"
  t = c.train
  t.batch_size = 32
  t.steps = STEPS
  t.eval_batch_size = 200
  t.log_every = 100
  t.eval_every = 400
  t.checkpoint_every = 400
  return c
