"""python train.py --config configs/mnist_alif.py    (GPU/TPU; TFDS mnist)

Paper B's MNIST classifier (Qiu et al., ICLR 2023 Tiny Papers; code
bollossom/ICLR_TINY_SNN, which reuses the PLIF code of Fang et al. 2021):
MNISTNet = conv128-BN-ALIF-maxpool-conv128-BN-ALIF-maxpool-FC2048-ALIF-
FC100-ALIF-vote (10 groups of 10), the image fed at each of T = 8 steps,
output = spike count / T, loss MSE(count/T, one_hot), Adam 1e-3 with cosine
decay, ALIF with tau = 1/sigmoid(w) learnable from 2 and threshold learnable
from 0.5, hard reset to 0 detached, ATan surrogate alpha 2, dropout 0.5
(mask fixed over time) before both FC layers, no bias in conv / FC, BatchNorm
(momentum 0.1 in PyTorch terms) over T x batch. Paper B reports 99.78 %.

Needs the TFDS mnist dataset prepared (``tfds build mnist`` once, or
``--config.data.tfds_download=True``). Choices where paper B's code differs
or is silent:

* batch 16 (its default) and 64 epochs of cosine (its ``T_max`` 64); the
  number of epochs it trained for is not stated: 64 x 60000 / 16 = 240k steps.
* augmentation: its RandomAffine (rotation 30, translate 0.15, scale
  0.85-1.11) is not implemented; ``augment="crop"`` (pad 4, random crop) gives
  the translation part only.
* BatchNorm statistics over T folded into the batch (SpikingJelly multi-step)
  instead of per step.
* held-out set: the first ``num_eval`` (10000: all) test images.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")


def classify_fields(c):
  """Fields shared by the classification configs (task + neuron of paper B)."""
  c.task = "classify"
  m = c.model
  m.name = "mnistnet"             # mnistnet | cifar10net
  m.width = 128                   # conv channels
  m.fc_width = 2048               # hidden FC neurons (128 * 4 * 4 in paper B)
  m.num_classes = 10
  m.vote_group = 10               # output neurons per class (voting layer)
  m.pool = "max"                  # max | avg
  m.dropout = 0.5
  m.loss = "mse_count"            # mse_count (paper B) | cross_entropy
  m.augment = "crop"              # none | crop | crop_flip
  m.augment_pad = 4
  m.input_mean = (0.1307,)        # per channel, applied inside the model
  m.input_std = (0.3081,)
  m.T = 8
  # Paper B's ALIF. neuron="lif" gives a LIF with the same dynamics frozen at
  # ALIF's initial values: v = beta v + I with beta = 1 - 1/tau = 0.5 and
  # threshold 1.0 is ALIF's h = v + (x - v)/tau with tau 2, threshold 0.5
  # (the 1/tau input scale absorbed), hard reset to 0.
  m.neuron = "alif"               # lif | alif
  m.alif_tau = 2.0
  m.threshold = 0.5               # ALIF init; the LIF row sets 1.0
  m.alif_learn_tau = True
  m.alif_learn_threshold = True
  m.adaptation_increment = 0.0    # > 0: spike-triggered threshold adaptation
  m.adaptation_tau = 4.0
  m.beta = 0.5                    # LIF only (neuron="lif")
  m.reset = "zero"                # LIF only
  m.detach_reset = True           # LIF only (ALIF always detaches)
  m.surrogate = "atan"
  m.surrogate_param = 2.0
  m.noise_std = 0.0
  m.mask_channel = False          # unused (inpainting only)
  c.masks.ratio_min, c.masks.ratio_max = 0.05, 0.2   # unused by classify
  t = c.train
  t.optimizer = "adam"
  t.learning_rate = 1e-3
  t.schedule = "cosine"
  t.num_sample_images = 0
  return c


def get_config():
  c = classify_fields(base.get_config())
  d = c.data
  d.source = "tfds"
  d.name = "mnist"
  d.image_size = 28
  d.channels = 1
  d.train_split = "train"
  d.eval_split = "test"
  d.num_eval = 10000
  d.train_crop = "center"
  t = c.train
  t.batch_size = 16
  t.steps = 240_000               # 64 epochs of 60000 at batch 16
  t.eval_batch_size = 256
  t.log_every = 500
  t.eval_every = 15_000           # 4 epochs
  t.checkpoint_every = 5_000
  return c


