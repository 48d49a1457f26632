"""Config files that build on each other, loaded by path.

A config file is run by ``ml_collections`` from its path, so ``from configs
import base`` works only when the repository root happens to be on
``sys.path`` (``python train.py`` from the root) and fails for the installed
``scnn-train`` command run from any other directory. A config that extends
another loads it from its own folder instead:

    from scnn_jax.config.files import sibling

    base = sibling(__file__, "base")          # configs/base.py beside this file

    def get_config():
      c = base.get_config()
      ...

Each file is executed once per process (cached by its resolved path), like an
import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import sys
import types


def load(path) -> types.ModuleType:
  """The config module at ``path`` (a ``.py`` file), executed once."""
  path = pathlib.Path(path).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} does not exist")
  digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
  name = f"_scnn_jax_config_{path.stem}_{digest}"
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # before exec: configs may load each other
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


def sibling(file, name: str) -> types.ModuleType:
  """Config ``name`` (``"base"``, ``"mnist_alif"``...) from ``file``'s
  folder."""
  return load(pathlib.Path(file).resolve().parent / f"{name}.py")
