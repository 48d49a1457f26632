"""The training loop (``trainer.train_and_evaluate``) and what a run writes
and watches besides the steps: ``reports`` (config.json, results, the
ablation table), ``writers`` (metrics.jsonl, TensorBoard, progress lines),
``stopping`` (why a run ends early), ``watchdog`` (a hung step; SIGTERM)
and ``profiling`` (a trace of a range of steps)."""
