"""Model definitions (Flax NNX). Spiking sequences inside are time-major.

One module per model family: ``scnn`` (paper A's SC-NN and its CNN),
``spiking_decoder`` (paper B's decoders on a spiking output),
``spiking_unet`` and ``resunet`` (nets that correct a biharmonic prior),
``classifier`` (paper B's MNISTNet / Cifar10Net), ``vae`` (paper B's
spiking VAE), ``fad_autoencoder`` (FAD's feature net); ``blocks`` (what
the paper-B models share), ``baselines`` (classical inpainting) and
``inception`` (the network of IS and FID). ``registry`` builds one from a
config by name, without the trainer.

What an inpainting model declares about itself, so that no other part of
the package asks for its name (``docs/guides/extending.md``):

* on the built model, read by the ``Inpainter`` (``runtime.inpainter``):
  ``receptive_radius`` (px of context on each side that one output pixel
  depends on; for a global model, the least context of a window),
  ``global_receptive_field`` (why an output pixel depends on the whole
  image, or None), ``bytes_per_pixel`` (estimated peak activation memory of
  the forward pass) and, if its sides must be a multiple of something,
  ``size_multiple``;
* from ``config.model`` alone, registered in ``registry.LAYER_SPECS``: its
  layer specs (``specs.LayerSpec`` / ``specs.OpCount``), which
  ``metrics.energy`` prices and the inpaint task counts SynOps with;
* for the schema, registered in ``registry.READS`` and ``registry.CHECKS``:
  the ``config.model`` fields it reads that only some models read, and its
  own rules between fields.
"""

from scnn_jax.models.scnn import CNN, SCNN  # noqa: F401
from scnn_jax.models.classifier import SpikingClassifier  # noqa: F401
from scnn_jax.models.spiking_decoder import SpikingDecoderSCNN  # noqa: F401
