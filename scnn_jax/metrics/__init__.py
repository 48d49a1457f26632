"""Metrics, one module per job (all layer 3: they import no run machinery).

* ``losses``: in-jit losses (composite, hole / full squared-error sums and
  MSEs, the per-image and log-MSE hole losses, the classifiers') and their
  conventions;
* ``image``: host-side PSNR, hole PSNR, SSIM and ``InpaintingAccumulator``;
* ``spikes``: spike rates from ``nnx.capture``, synaptic operations;
* ``energy``: the one arithmetic energy estimate, of any network described
  by layer specs (``scnn_jax.models.specs``) and of a model by its config
  (imported by name: it reads the model registry);
* ``frechet``: the Frechet distance (FID, FAD) and the FAD scorer;
* ``inception``: the Inception Score and FID (imported by name).

The public names of the first four are also available here
(``metrics.masked_mse``...).
"""

from scnn_jax.metrics.frechet import (REFERENCE_FILE, FadScorer,  # noqa: F401
                                      distance_of_features, frechet_distance,
                                      gaussian_stats)
from scnn_jax.metrics.image import (METRIC_KEYS, MSE_FLOOR,  # noqa: F401
                                    PSNR_CAP_DB, SSIM_FILTER_SIGMA,
                                    SSIM_FILTER_SIZE, InpaintingAccumulator,
                                    evaluate_inpainting, hole_psnr,
                                    hole_psnr_per_image, psnr, psnr_per_image,
                                    ssim, ssim_per_image)
from scnn_jax.metrics.losses import (composite, full_mse,  # noqa: F401
                                     full_se_sums, masked_mse,
                                     masked_mse_from_sums, masked_mse_per_image,
                                     masked_se_sums)
from scnn_jax.metrics.spikes import spike_rates, synaptic_ops  # noqa: F401
