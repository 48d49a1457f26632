"""Two processes on localhost (jax.distributed, gloo) behave like one host."""

import json
import socket
import subprocess
import sys

import numpy as np

from scnn_jax.training import trainer
from tests.workdirs import REPO, tiny_config

CHILD = r"""
import json, sys
import jax
pid, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"localhost:{{port}}", num_processes=2, process_id=pid)
from absl import logging
logging.set_verbosity(logging.INFO)
sys.path.insert(0, {repo!r})
from scnn_jax.data import images
from scnn_jax.training import trainer, writers
from tests.workdirs import tiny_config

writes = {{"metrics": 0, "images": 0, "results": 0}}
real_write, real_png = writers.MetricWriter.write, images.save_png
def write(self, *a, **k):
  writes["metrics"] += bool(self.active)
  return real_write(self, *a, **k)
def save_png(*a, **k):
  writes["images"] += 1
  return real_png(*a, **k)
writers.MetricWriter.write, images.save_png = write, save_png

config = tiny_config()
config.train.update(steps=4, eval_every=2, checkpoint_every=2, log_every=1)
first = trainer.train_and_evaluate(config, workdir)
config.train.steps = 6
second = trainer.train_and_evaluate(config, workdir)
print("RESULT " + json.dumps({{"pid": pid, "writes": writes,
                              "processes": second["processes"],
                              "devices": second["devices"]}}), flush=True)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _losses(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return {r["step"]: r["loss"] for r in map(json.loads, lines)
          if r["kind"] == "train"}


def test_two_processes_match_one_process_with_eight_devices(tmp_path):
  code = CHILD.format(repo=str(REPO))
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, "-c", code, str(pid), str(port),
                             str(tmp_path / "multi")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for pid in (0, 1)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  results = [json.loads(next(l for l in out.splitlines()
                             if l.startswith("RESULT "))[7:])
             for out, _ in outs]
  assert all(r["processes"] == 2 and r["devices"] == 8 for r in results)
  # Only process 0 writes logs, images and results.
  assert results[0]["writes"]["metrics"] > 0 and results[0]["writes"]["images"] > 0
  assert results[1]["writes"] == {"metrics": 0, "images": 0, "results": 0}
  # Both processes resumed the second run from the same checkpoint.
  for _, err in outs:
    assert "resuming from step 4" in err

  config = tiny_config()
  config.train.update(steps=4, eval_every=2, checkpoint_every=2, log_every=1)
  trainer.train_and_evaluate(config, tmp_path / "single")
  config.train.steps = 6
  trainer.train_and_evaluate(config, tmp_path / "single")
  multi, single = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
  assert sorted(multi) == sorted(single) == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([multi[s] for s in sorted(multi)],
                             [single[s] for s in sorted(single)], rtol=1e-5)
