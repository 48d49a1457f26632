"""python train.py --config configs/cifar10_alif.py    (GPU/TPU; TFDS cifar10)

Paper B's CIFAR-10 classifier: Cifar10Net = conv256-BN-ALIF,
2 x (conv256-BN-ALIF), maxpool, 3 x (conv256-BN-ALIF), maxpool,
FC2048-ALIF-FC100-ALIF-vote, T = 8, loss MSE(count/T, one_hot), Adam 1e-3
cosine; neuron and the other details as in ``configs/mnist_alif.py``. Paper B
reports 93.89 %. Augmentation as its code: random crop (pad 4) and
horizontal flip; normalisation with the CIFAR-10 channel statistics it uses.

Needs the TFDS cifar10 dataset prepared (``tfds build cifar10`` once, or
``--config.data.tfds_download=True``). Not stated by paper B: the number of
epochs (here 64 cosine epochs at batch 16, its ``T_max``: 200k steps).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
mnist_alif = sibling(__file__, "mnist_alif")
classify_fields = mnist_alif.classify_fields


def get_config():
  c = classify_fields(base.get_config())
  m = c.model
  m.name = "cifar10net"
  m.width = 256
  m.fc_width = 2048               # 128 * 4 * 4 in paper B's code
  m.augment = "crop_flip"
  m.input_mean = (0.4914, 0.4822, 0.4465)
  m.input_std = (0.2023, 0.1994, 0.2010)
  d = c.data
  d.source = "tfds"
  d.name = "cifar10"
  d.image_size = 32
  d.channels = 3
  d.train_split = "train"
  d.eval_split = "test"
  d.num_eval = 10000
  d.train_crop = "center"
  t = c.train
  t.batch_size = 16
  t.steps = 200_000               # 64 epochs of 50000 at batch 16
  t.eval_batch_size = 256
  t.log_every = 500
  t.eval_every = 12_500           # 4 epochs
  t.checkpoint_every = 5_000
  return c
