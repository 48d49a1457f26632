"""Every test process sees 8 CPU devices, so the sharded (pmap-style) path is
exercised everywhere and tests can compare meshes of 1 and 8 devices.

Fixtures shared by the test files (their helpers: tests/workdirs.py):
``tiny_config`` (the tiny configs of every task), ``inpaint_workdir`` (a
tiny inpainting workdir, made without training) and ``random_inception``
(Inception-v3 weights in a file)."""

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture
def tiny_config():
  """``tiny_config(kind="inpaint", **model)``: tests/workdirs.py's ``TINY``
  configs (inpaint, spiking_decoder, classify, generate)."""
  from tests import workdirs
  return workdirs.tiny_config


@pytest.fixture(scope="module")
def inpaint_workdir(tmp_path_factory):
  """A tiny inpainting workdir (config.json and a checkpoint)."""
  from tests import workdirs
  return workdirs.make_workdir(tmp_path_factory.mktemp("inpaint") / "run",
                               workdirs.tiny_config())[0]


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
  """Random Inception-v3 weights in a file, and the net loaded from it (at a
  75 px input, to keep the test fast)."""
  from scnn_jax.metrics.inception import InceptionMetrics
  from scnn_jax.models import inception
  model = inception.InceptionV3("fid", resize=75, seed=1)
  path = tmp_path_factory.mktemp("inception") / "random.npz"
  inception.save_weights(model, path)
  return model, path, InceptionMetrics.load(path, batch_size=4, resize=75)
