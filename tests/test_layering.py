"""Imports point one way: every module of scnn_jax imports only its own layer
or lower ones, and no group of modules imports itself round in a cycle.

Walks every ``import`` statement of every module with ``ast``, including the
ones inside functions (a lazy import is still a dependency). The layers
(docs/explanation/layers.md):

  1 ops/ pure functions            8 cli/ command-line tools
  2 nn/ NNX modules                7 training/ the loop and its reports
  3 models/ metrics/ data/         6 tasks/
  4 config/ schema and builders    5 runtime/ run machinery

One entry per folder of the package (and per module at its top): a new
folder or top-level module must be placed in ``LAYERS`` (the test says so).
"""

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scnn_jax"

LAYERS = {
    # 1: pure functions (scnn_jax.ops: surrogate, neuron dynamics, convs, the
    # biharmonic fill, compiler options, collectives, ConfigError).
    "ops": 1,
    # plotting imports no scnn_jax module (numpy, matplotlib): any layer may
    # draw spike rasters and membrane traces with it.
    "plotting": 1,
    # 2: NNX modules; the package itself re-exports the layer API.
    "": 2, "nn": 2,
    # 3: models, metrics, data.
    "models": 3, "metrics": 3, "data": 3,
    # 4: the config schema, the builders (config -> model, optimizer) and
    # config files.
    "config": 4,
    # 5: run machinery; the shipped model is loaded by inference.
    "runtime": 5, "pretrained": 5,
    # 6: tasks.
    "tasks": 6,
    # 7: the training loop and its reports.
    "training": 7,
    # 8: command-line tools; inpaint, fad and ablation only keep the
    # ``python -m scnn_jax.<name>`` paths of scnn_jax.cli's commands.
    "cli": 8, "inpaint": 8, "fad": 8, "ablation": 8,
}


def _modules() -> dict[str, Path]:
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
  """The scnn_jax modules ``name`` imports (anywhere in the file)."""
  package = name.split(".") if path.name == "__init__.py" else \
      name.split(".")[:-1]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = (package[:len(package) - node.level + 1] if node.level
              else []) + ([node.module] if node.module else [])
      module = ".".join(base)
      # ``from pkg import mod`` imports the module pkg.mod.
      targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES
                 else module for a in node.names]
    else:
      continue
    found.update(t for t in targets if t.split(".")[0] == "scnn_jax")
  found.discard(name)
  return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(module: str) -> int:
  """The layer of ``scnn_jax.<top>[...]``: the entry of its top-level name."""
  parts = module.split(".")
  top = parts[1] if len(parts) > 1 else ""
  if top not in LAYERS:
    raise KeyError(f"{module} is not placed in a layer: add "
                   f"{top!r} to LAYERS in tests/test_layering.py")
  return LAYERS[top]


def test_every_module_has_a_layer():
  missing = sorted({m for m in MODULES if m.split(".")[1:2] and
                    m.split(".")[1] not in LAYERS})
  assert not missing, f"place these in LAYERS: {missing}"
  assert set(LAYERS) - {""} <= {m.split(".")[1] for m in MODULES
                                if len(m.split(".")) > 1}, "stale entries"


def test_no_module_imports_a_higher_layer():
  upward = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
            for m, targets in GRAPH.items() for t in sorted(targets)
            if layer(t) > layer(m)]
  assert not upward, "\n".join(upward)


def _cycles(graph) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        out.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_no_import_cycle():
  assert _cycles(GRAPH) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
  """The walker sees imports inside functions and relative ones; an upward
  import and a cycle are reported."""
  lazy = tmp_path / "x.py"
  lazy.write_text("import os\n\ndef f():\n  from scnn_jax import training\n"
                  "  from . import tasks\n  import scnn_jax.metrics.image\n")
  assert _imports("scnn_jax.x", lazy) == {
      "scnn_jax.training", "scnn_jax.tasks", "scnn_jax.metrics.image"}
  fake = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _cycles(fake) == [["a", "b", "c"]]
  assert layer("scnn_jax.training.trainer") > layer("scnn_jax.tasks.inpaint")
  with pytest.raises(KeyError, match="not placed in a layer"):
    layer("scnn_jax.newthing")


def test_the_old_cycles_are_gone():
  """The import cycles of the package before it was split into layers, each
  now broken at the named import."""
  reach = collections.defaultdict(set)

  def reachable(m):
    if m not in reach:
      reach[m] = set()
      for t in GRAPH.get(m, ()):
        reach[m] |= {t} | reachable(t)
    return reach[m]

  trainer = "scnn_jax.training.trainer"
  for low, high in [("scnn_jax.runtime.ablation", trainer),
                    ("scnn_jax.runtime.inference", trainer),
                    ("scnn_jax.runtime.inference", "scnn_jax.tasks"),
                    ("scnn_jax.tasks.generate", trainer),
                    ("scnn_jax.tasks", "scnn_jax.cli.fad"),
                    ("scnn_jax.metrics.frechet", "scnn_jax.runtime.inference")]:
    assert high not in reachable(low), (low, high)
