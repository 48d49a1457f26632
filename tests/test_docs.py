"""The README and the docs name only things that exist.

Every relative link and image of a page resolves to a file, and its
``#anchor`` to a heading of the target page (the same slug on GitHub and in
the MkDocs site); every repository path a page names (``configs/base.py``,
``python scripts/x.py``) exists; every ``scnn_jax`` module, function or
class it names in code (``scnn_jax.runtime.inference.load``,
``neurons.lif_scan``, ``python -m scnn_jax.inpaint``) imports; every page of the MkDocs nav
exists. The generated reference pages match the code
(``scripts/docs_reference.py --check``), the README's library example runs,
and no page or source file carries a tracker number (the word "issue" and
a number) or one machine's absolute paths. ``mkdocs build --strict``
(.ci/run) checks the site itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys
import unicodedata

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md",
                REPO / "BENCHMARKS.md", REPO / "BENCHMARKS_GPU.md"] +
               list((REPO / "docs").rglob("*.md")))
# The tutorials are jupytext notebooks: their Markdown cells are docs too.
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("*.py"))

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?"
                  r"(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
# A path from the repository root: a top-level folder, then a path.
ROOTS = ("scnn_jax", "configs", "tests", "scripts", "benchmarks", "docs",
         "examples", ".ci")
PATH = re.compile(r"(?<![\w./$~-])((?:%s)/[\w./-]*[\w/])" %
                  "|".join(re.escape(r) for r in ROOTS))
TOP_FILES = re.compile(
    r"(?<![\w./-])((?:README|BENCHMARKS|BENCHMARKS_GPU|CHANGELOG|NOTICE)\.md"
    r"|CITATION\.cff|LICENSE|NOTICE|mkdocs\.yml|pyproject\.toml"
    r"|constraints\.txt|requirements(?:-[a-z]+)?\.txt|train\.py)(?![\w.-])")
# Short module names a page may use for scnn_jax's modules
# (``neurons.lif_scan``); left out: names that are also config sections or
# other packages or the config itself (``data.source``, ``masks.kind``,
# ``metrics.jsonl``, ``nir.write``, ``config.model.T``), checked only with
# the ``scnn_jax.`` prefix.
AMBIGUOUS = {"data", "masks", "metrics", "nir", "models", "tasks", "cli",
             "inpaint", "fad", "ablation", "state", "images", "config"}


def _markdown(path: pathlib.Path) -> str:
  text = path.read_text()
  if path.suffix == ".py":   # the comment lines of the markdown cells
    cells = re.findall(r"^# %% \[markdown\][^\n]*\n((?:#[^\n]*\n?)*)", text,
                       re.M)
    text = "\n".join(re.sub(r"^# ?", "", c, flags=re.M) for c in cells)
  return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _prose(text: str) -> str:
  """The text outside fenced code blocks and code spans."""
  return CODE_SPAN.sub(" ", FENCE.sub(" ", text))


def _code(text: str) -> list[str]:
  """Fenced code blocks and code spans."""
  blocks = [m.group(0) for m in FENCE.finditer(text)]
  return blocks + [m.group(2) for m in CODE_SPAN.finditer(FENCE.sub(" ",
                                                                    text))]


def _slugs(text: str) -> set[str]:
  """Anchors of the headings that GitHub and Python-Markdown's toc
  (MkDocs) both give: a link must work in both."""
  out = set()
  for _, title in HEADING.findall(FENCE.sub("", text)):
    title = re.sub(r"`([^`]*)`", r"\1", title)
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    github = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    ascii_ = unicodedata.normalize("NFKD", title).encode(
        "ascii", "ignore").decode()
    toc = re.sub(r"[-\s]+", "-",
                 re.sub(r"[^\w\s-]", "", ascii_).strip().lower())
    if github == toc:
      out.add(toc)
  return out


def _pages_and_tutorials():
  return PAGES + TUTORIALS


def _rel(path: pathlib.Path) -> str:
  return str(path.relative_to(REPO))


@pytest.mark.parametrize("page", _pages_and_tutorials(), ids=_rel)
def test_links_and_anchors_resolve(page):
  text = _markdown(page)
  bad = []
  for target in LINK.findall(_prose_links(text)):
    if re.match(r"[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto:
      continue
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
      bad.append(f"{target}: no such file")
      continue
    if anchor and dest.suffix == ".md" and anchor not in _slugs(
        dest.read_text()):
      bad.append(f"{target}: no heading with anchor #{anchor}")
  assert not bad, f"{_rel(page)}: " + "; ".join(bad)


def _prose_links(text: str) -> str:
  # Links live in the prose; code blocks may show Markdown as text.
  return FENCE.sub(" ", CODE_SPAN.sub(" ", text))


@pytest.mark.parametrize("page", _pages_and_tutorials(), ids=_rel)
def test_named_repository_paths_exist(page):
  text = _markdown(page)
  missing = set()
  for chunk in [_prose(text)] + _code(text):
    for pattern in (PATH, TOP_FILES):
      for m in pattern.finditer(chunk):
        name, after = m.group(1), chunk[m.end():m.end() + 1]
        # a pattern, not a path: docs/results/<table>/, configs/vae_*.py
        if re.search(r"\.\.\.|XXX", name) or after in "*{<[":
          continue
        name = name.rstrip(".")
        if not (REPO / name).exists():
          missing.add(name)
  assert not missing, f"{_rel(page)} names missing paths: {sorted(missing)}"


def _scnn_modules() -> set[str]:
  pkg = REPO / "scnn_jax"
  return {p.stem if p.suffix == ".py" else p.name
          for p in pkg.iterdir()
          if (p.suffix == ".py" and p.stem != "__init__") or
          (p.is_dir() and (p / "__init__.py").exists())}


def _resolve(dotted: str) -> bool:
  """``scnn_jax.a.b.C.d`` names a module or an attribute of one."""
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    name = ".".join(parts[:i])
    try:
      if importlib.util.find_spec(name) is None:
        continue
    except ModuleNotFoundError:
      continue
    obj = importlib.import_module(name)
    for attr in parts[i:]:
      if not hasattr(obj, attr):
        return False
      obj = getattr(obj, attr)
    return True
  return False


@pytest.mark.parametrize("page", _pages_and_tutorials(), ids=_rel)
def test_named_modules_and_functions_exist(page):
  short = _scnn_modules() - AMBIGUOUS
  names = set()
  for chunk in _code(_markdown(page)):
    names.update(re.findall(r"(?<![\w.])(scnn_jax(?:\.\w+)+)", chunk))
    names.update("scnn_jax." + m for m in re.findall(
        r"python -m (scnn_jax(?:\.\w+)*)", chunk))
    for module, imported in re.findall(
        r"^\s*from (scnn_jax(?:\.\w+)*) import ([\w, ]+)", chunk, re.M):
      names.update(f"{module}.{n.split(' as ')[0].strip()}"
                   for n in imported.split(",") if n.strip())
    # a whole code span that is `module.name` or `module.name(...)`
    m = re.fullmatch(r"\s*(\w+)((?:\.\w+)+)(?:\(.*\))?\s*", chunk, re.S)
    if m and m.group(1) in short:
      names.add("scnn_jax." + m.group(1) + m.group(2))
  names = {n.replace("scnn_jax.scnn_jax", "scnn_jax") for n in names}
  missing = sorted(n for n in names if not _resolve(n))
  assert not missing, f"{_rel(page)} names what does not exist: {missing}"


def test_mkdocs_nav_pages_exist():
  text = (REPO / "mkdocs.yml").read_text()
  nav = text[text.index("\nnav:"):]
  pages = re.findall(r":\s*([\w./-]+\.(?:md|py))\s*$", nav, re.M)
  assert len(pages) > 20
  missing = [p for p in pages if not (REPO / "docs" / p).exists()]
  assert not missing, missing
  # every page is in the nav: a page outside it is found by no reader
  on_disk = {_rel(p)[len("docs/"):] for p in
             list((REPO / "docs").rglob("*.md")) + TUTORIALS}
  assert on_disk - set(pages) == set()


def test_generated_reference_pages_are_up_to_date():
  out = subprocess.run([sys.executable, "scripts/docs_reference.py",
                        "--check"], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]


def test_readme_library_example_runs():
  text = (REPO / "README.md").read_text()
  section = text[text.index("## The library in 20 lines"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  assert len(code.strip().splitlines()) <= 20
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["train"].shape == (8, 2, 32, 32, 16)
  assert namespace["features"].shape == (2, 32, 32, 16)


def test_readme_is_a_front_door():
  assert len((REPO / "README.md").read_text().splitlines()) <= 250


TRACKER = re.compile(r"\b[Ii]ssues? #?\d+\b|\(#\d+\)|\bruns/i\d\d_")
MACHINE = re.compile(r"(?<![\w.$~-])/(?:work|root|home/\w+)/")


def _sources():
  for folder in ("scnn_jax", "configs", "tests", "scripts", "benchmarks",
                 "examples", ".ci"):
    for path in (REPO / folder).rglob("*"):
      if path.is_file() and path.suffix in (".py", ".sh", ".md", ".txt",
                                            ".toml", ".cfg", "") and \
          "results" not in path.relative_to(REPO).parts and \
          "__pycache__" not in path.parts:
        yield path
  for name in ("pyproject.toml", "mkdocs.yml", "requirements.txt",
               "requirements-dev.txt", "requirements-docs.txt",
               "requirements-bench.txt", "train.py", "CITATION.cff"):
    if (REPO / name).exists():
      yield REPO / name


def test_no_tracker_numbers():
  # A reader cannot look a tracker number up: name the thing instead.
  found = []
  for path in list(_sources()) + _pages_and_tutorials():
    if path == pathlib.Path(__file__):
      continue
    for n, line in enumerate(path.read_text(errors="replace").splitlines()):
      if TRACKER.search(line):
        found.append(f"{_rel(path)}:{n + 1}: {line.strip()[:80]}")
  assert not found, "\n".join(found)


def test_no_machine_paths_in_docs_and_benchmark_defaults():
  found = []
  paths = _pages_and_tutorials() + [
      p for p in _sources()
      if _rel(p).startswith(("benchmarks/", "scripts/"))]
  for path in paths:
    if path == pathlib.Path(__file__):
      continue
    for n, line in enumerate(path.read_text(errors="replace").splitlines()):
      if MACHINE.search(line):
        found.append(f"{_rel(path)}:{n + 1}: {line.strip()[:80]}")
  assert not found, "\n".join(found)
