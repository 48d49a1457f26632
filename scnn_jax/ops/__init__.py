"""Pure functions, no NNX state: the bottom layer of scnn_jax.

``surrogate`` (the spike function and its surrogate derivatives),
``neurons`` (LIF / ALIF dynamics as scans over time), ``conv`` (one 2-D
convolution in three formulations), ``smooth_fill`` (the biharmonic hole
fill), ``backend`` (per-backend compiler settings), ``collectives`` (the
mesh axis and collectives that also work outside it) and ``checks``
(``ConfigError`` and the value checks every layer above raises it with).
"""
