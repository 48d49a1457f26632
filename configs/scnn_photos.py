"""python train.py --config configs/scnn_photos.py [--config.model.name=cnn]

Paper A's SC-NN (``configs/base.py``'s model, unchanged: one SpikingConv2d +
five 3x3 convs, T = 8, tau 40) and, with ``--config.model.name=cnn``, the
same net without spikes, trained on the data of ``configs/spiking_unet.py``
(the embedded ``photos`` set, augmented crops, box holes of 3-15 %, batch 8,
Adam 1e-3 cosine) so that the held-out table of the inpainting study
(docs/studies/inpainting.md, ``scripts/inpaint_eval.py``) compares the
models on equal data. Both are fully convolutional, so they are scored at
64 and 128 px alike.

Budget, sized for a 2-core CPU shared by five engineers (load average ~30
while the table was made): 32 x 32 crops (a quarter of the spiking U-Net's
pixels per step; a 13 px receptive field gains nothing from larger crops)
and 300 steps (on configs/base.py the SC-NN's first evaluation, step 500,
was already within 1 dB of its last, step 1,500).
"""

from scnn_jax.config.files import sibling

base = sibling(__file__, "base")
photos_data = sibling(__file__, "spiking_unet").photos_data


def get_config():
  c = base.get_config()
  photos_data(c)
  c.data.image_size = 32
  c.train.steps = 300
  return c
