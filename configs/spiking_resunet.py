"""python train.py --config configs/spiking_resunet.py

A spiking residual U-Net that corrects a biharmonic fill
(``model.name = "spiking_resunet"``, ``scnn_jax/models/resunet.py``): every
encoder conv after the stem is driven by the spike trains of ALIF neurons
(paper B's adaptive LIF: a learnable time constant and threshold per
channel) over T = 4 steps, with a real-valued residual stream between the
spiking blocks and a conv decoder that reads each scale's stream. Its
non-spiking twin (``configs/relu_resunet.py``) has the same architecture,
data and budget with ReLU in place of the neurons: the control row.
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
twin = sibling(__file__, "relu_resunet")


def get_config():
  c = base.get_config()
  m = c.model
  m.name = "spiking_resunet"
  twin.resunet_model(c)
  m.T = 4
  m.neuron = "alif"               # learnable tau and threshold per channel
  m.alif_tau = 2.0                # initial tau (paper B)
  m.threshold = 0.5               # initial threshold; currents are layer-normed
  m.surrogate = "atan"
  m.surrogate_param = 2.0         # paper B's ATan alpha
  twin.resunet_training(c)
  return c
