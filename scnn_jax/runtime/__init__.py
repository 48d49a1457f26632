"""Run machinery, below any task and the training loop: sharding
(``parallel``, ``distributed``), Orbax checkpoints and the workdir lock,
the train state and the jitted per-device steps, vmap ablations
(``ablation``), loading a trained model (``inference``) and the
``Inpainter`` for images of any size (``inpainter``)."""
