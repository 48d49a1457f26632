"""Every test process sees 8 CPU devices, so the sharded (pmap-style) path is
exercised everywhere and tests can compare meshes of 1 and 8 devices."""

import jax

jax.config.update("jax_num_cpu_devices", 8)
