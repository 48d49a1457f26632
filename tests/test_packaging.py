"""Packaging: pyproject.toml is the source of truth; requirements files,
constraints.txt and the console commands agree with it; configs load from any
directory (the installed scnn-train runs outside the clone)."""

import importlib
import os
import pathlib
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

import scnn_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _lines(name):
  """Requirement lines of a requirements file (no comments, no -r)."""
  out = []
  for line in (REPO / name).read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
      out.append(line)
  return out


def _norm(reqs):
  return sorted(str(Requirement(r)) for r in reqs)


def test_requirements_files_repeat_pyproject():
  extras = PROJECT["optional-dependencies"]
  assert _norm(_lines("requirements.txt")) == _norm(
      PROJECT["dependencies"] + extras["tfds"])
  dev = [r for r in extras["dev"] if not r.startswith("scnn_jax[")]
  # dev's own extras but tfds (already in requirements.txt)
  (own,) = [r for r in extras["dev"] if r.startswith("scnn_jax[")]
  named = sorted(Requirement(own).extras - {"tfds"})
  assert named == ["eval", "gcs", "nir", "serve"]
  assert _norm(_lines("requirements-dev.txt")) == _norm(
      dev + sum((extras[e] for e in named), []))
  assert (REPO / "requirements-dev.txt").read_text().count(
      "-r requirements.txt") == 1
  # torch is never a dependency of the package (benchmarks use their own venv)
  every = PROJECT["dependencies"] + sum(extras.values(), [])
  assert not [r for r in every if Requirement(r).name in ("torch", "snntorch",
                                                          "norse")]


def test_requirements_docs_repeats_the_docs_extra():
  # The docs site's tools: pip install -r requirements-docs.txt (.ci/run)
  # or .[docs], the same lines.
  assert _norm(_lines("requirements-docs.txt")) == _norm(
      PROJECT["optional-dependencies"]["docs"])


def test_constraints_pin_every_requirement_within_its_range():
  pins = {}
  for line in _lines("constraints.txt"):
    req = Requirement(line)
    (spec,) = req.specifier
    assert spec.operator == "==", line
    pins[req.name.lower().replace("_", "-")] = Version(spec.version)
  for line in _lines("requirements.txt") + _lines("requirements-dev.txt"):
    req = Requirement(line)
    version = pins[req.name.lower().replace("_", "-")]
    assert req.specifier.contains(version), (line, version)


def test_one_version_string_and_python_floor():
  assert PROJECT["dynamic"] == ["version"] and "version" not in PROJECT
  assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
      "attr": "scnn_jax.__version__"}
  assert str(Version(scnn_jax.__version__)) == scnn_jax.__version__
  assert PROJECT["requires-python"] == ">=3.11"


def test_console_commands_point_to_callables():
  scripts = PROJECT["scripts"]
  assert set(scripts) == {"scnn-train", "scnn-inpaint", "scnn-fad",
                          "scnn-ablation"}
  for target in scripts.values():
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), target


def test_every_config_loads_outside_the_clone(tmp_path):
  # Only the package on sys.path, run from elsewhere: `from configs import`
  # would fail here, as it does for an installed scnn-train.
  site = tmp_path / "site"
  site.mkdir()
  (site / "scnn_jax").symlink_to(REPO / "scnn_jax")
  configs = sorted(str(p) for p in (REPO / "configs").glob("*.py"))
  # One config flag per file, parsed together (as scnn-train parses one).
  code = (
      "import sys\n"
      "from absl import flags\n"
      "from ml_collections import config_flags\n"
      "argv = ['scnn-train']\n"
      "for i, path in enumerate(sys.argv[1:]):\n"
      "  argv += [f'--config{i}={path}', f'--config{i}.train.steps=20']\n"
      "for i in range(len(sys.argv) - 1):\n"
      "  config_flags.DEFINE_config_file(f'config{i}', lock_config=True,\n"
      "                                  sys_argv=argv)\n"
      "flags.FLAGS(argv)\n"
      "for i in range(len(sys.argv) - 1):\n"
      "  assert flags.FLAGS[f'config{i}'].value.train.steps == 20\n"
      "print('loaded', len(sys.argv) - 1)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)
  out = subprocess.run([sys.executable, "-c", code, *configs], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == f"loaded {len(configs)}"
  assert len(configs) >= 17


def test_no_config_imports_the_configs_package():
  # The pattern for new configs: sibling(__file__, "base"), see
  # scnn_jax/config/files.py.
  for path in (REPO / "configs").glob("*.py"):
    assert not re.search(r"^\s*(from|import) configs\b", path.read_text(),
                         re.M), path.name
