"""What the training commands (``scnn-train``, ``scnn-fad``) say about
themselves, before anything is built: ``--help`` (the command's own flags,
one line each; ``--helpfull`` stays absl's list of every library's flags),
``--list_configs`` (the configs of the repository with their purpose),
``--show_config`` (the config a run would use, every field with what the
schema allows and its default), and the one ``error:`` line for a
``--config`` file that is missing or does not load.

The hyphenated spellings ``--list-configs`` and ``--show-config`` are
accepted too (``normalise``). Used by ``scnn_jax.cli.common``.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import shutil
import sys
import textwrap

from absl import flags

FLAGS = flags.FLAGS

HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-?")
_SPELLINGS = {"--list-configs": "--list_configs",
              "--show-config": "--show_config"}
_METAVARS = {"config": "FILE", "workdir": "DIR",
             "compilation_cache": "auto|off|DIR",
             "coordinator_address": "HOST:PORT"}


def normalise(argv: list[str]) -> list[str]:
  """``argv`` with the hyphenated spellings of our flags as absl names them."""
  return [argv[0]] + [_SPELLINGS.get(a, a) for a in argv[1:]]


def _width() -> int:
  return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def _one_line(text: str, width: int) -> str:
  text = " ".join((text or "").split())
  return textwrap.shorten(text, width=max(20, width), placeholder=" ...")


def _first_sentence(text: str) -> str:
  text = " ".join((text or "").split())
  m = re.match(r"(.+?[.!?])(?=\s+[A-Z(`]|$)", text)
  return m.group(1) if m else text


def _gist(text: str) -> str:
  """The first sentence of ``text`` without its asides: parenthetical
  phrases (a group with a space in it; "(conv256-BN-ALIF)" is kept) and
  reST literals' backticks."""
  text = " ".join((text or "").replace("``", "").split())

  def drop(m):
    space, inner = m.groups()
    return "" if re.search(r"\s", inner) else f"{space}\x02{inner}\x03"
  while True:   # innermost groups first
    shorter = re.sub(r"(\s?)\(([^()]*)\)", drop, text)
    if shorter == text:
      break
    text = shorter
  text = text.replace("\x02", "(").replace("\x03", ")")
  return _first_sentence(text)


def _flag_usage(f) -> str:
  if f.flag_type() == "bool":
    return f"--{f.name}"
  meta = _METAVARS.get(f.name) or ("N" if f.flag_type() in ("int", "integer")
                                   else "VALUE")
  return f"--{f.name}={meta}"


def _table(rows: list[tuple[str, str]], width: int) -> list[str]:
  name_w = min(36, max(len(n) for n, _ in rows) + 2)
  out = []
  for name, text in rows:
    if len(name) >= name_w:
      name = name + " "
    out.append("  " + name.ljust(name_w) +
               _one_line(text, width - 2 - max(name_w, len(name))))
  return out


def short_help(doc: str | None) -> str:
  """The command's docstring and its own flags (those scnn_jax defines),
  one line each."""
  width = _width()
  rows = [("--config=FILE", FLAGS["config"].help),
          ("--config.FIELD=VALUE", "Override a field, e.g. "
           "--config.train.steps=500 (--show_config lists them).")]
  for module, defined in FLAGS.flags_by_module_dict().items():
    if module.split(".")[0] != "scnn_jax":
      continue
    rows += [(_flag_usage(f), _first_sentence(f.help)) for f in defined
             if f.name != "config"]
  rows.append(("--helpfull", "Every flag, also those of the libraries "
               "scnn_jax uses (absl, JAX, grain, Orbax)."))
  head = textwrap.dedent(doc or "").strip()
  return "\n".join(([head, ""] if head else []) + ["flags:"] +
                   _table(rows, width))


# --------------------------------------------------------------------------
# --list_configs
# --------------------------------------------------------------------------


def configs_folder() -> pathlib.Path | None:
  """The repository's ``configs/`` beside the package (a clone or an
  editable install), else ``./configs``."""
  here = pathlib.Path(__file__).resolve().parents[2] / "configs"
  for folder in (here, pathlib.Path.cwd() / "configs"):
    if folder.is_dir() and any(folder.glob("*.py")):
      return folder
  return None


def config_purpose(path: pathlib.Path) -> tuple[str, str]:
  """``(command, purpose)`` from a config file's docstring, read without
  running the file: its first line is the command that runs it, the first
  sentence after it says what the config is for."""
  try:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  except (OSError, SyntaxError, ValueError) as e:
    return "", f"(unreadable: {type(e).__name__})"
  lines = doc.strip().splitlines()
  if not lines:
    return "", "(no docstring)"
  command = lines[0].strip()
  if not re.match(r"(python|scnn-)", command):
    return "", _gist(" ".join(lines))
  rest = "\n".join(lines[1:]).strip()
  return command, _gist(rest.split("\n\n")[0]) or "(no purpose line)"


def list_configs() -> str:
  """One line per ``configs/*.py``: its name and purpose (configs run by
  another command than ``scnn-train`` name it)."""
  folder = configs_folder()
  if folder is None:
    raise FileNotFoundError(
        "no configs/ folder beside the package or in the current directory: "
        "the configs ship with the repository (README, Quick start)")
  rows = []
  for path in sorted(folder.glob("*.py")):
    if path.name.startswith("_"):
      continue
    command, purpose = config_purpose(path)
    if "scnn_jax.fad" in command or command.startswith("scnn-fad"):
      purpose = f"[scnn-fad] {purpose}"
    rows.append((path.name, purpose))
  head = (f"configs in {folder} (run one: scnn-train --config "
          f"{folder / 'NAME.py'}; --show_config prints its fields):")
  return "\n".join([head] + _table(rows, _width()))


# --------------------------------------------------------------------------
# --show_config
# --------------------------------------------------------------------------


def _allowed(field) -> str:
  k, lo, hi = field.kind, field.low, field.high
  if k in ("int", "number", "ints", "numbers"):
    name = {"int": "int", "number": "number", "ints": "tuple of ints",
            "numbers": "tuple of numbers"}[k]
    if lo is not None and hi is not None:
      text = (f"{name} in {'(' if field.low_open else '['}{lo:g}, {hi:g}"
              f"{')' if field.high_open else ']'}")
    elif lo is not None:
      text = f"{name} {'>' if field.low_open else '>='} {lo:g}"
    elif hi is not None:
      text = f"{name} {'<' if field.high_open else '<='} {hi:g}"
    else:
      text = name
  elif k == "choice":
    text = "one of " + ", ".join(str(a) for a in field.allowed)
  else:
    text = {"bool": "True or False", "str": "a string",
            "steps": "() or (start, stop)",
            "grid": "dict of value lists"}.get(k, k)
  return text + (", or None" if field.none_ok else "")


def _value(v) -> str:
  if hasattr(v, "to_dict"):
    v = v.to_dict()
  return repr(v)


def show_config(config) -> str:
  """``config`` completed and checked as a run would (``schema.validate``),
  one line per field: ``model.T = 8  # int >= 1; default 8``. Raises
  ``ConfigError`` for a value the run would refuse."""
  from scnn_jax.config import schema  # the config machinery: only for this flag
  c = schema.validate(config, devices=1, check_files=False)
  rows = []
  for section, fields in schema.FIELDS.items():
    node = c if not section else c.get(section)
    if node is None:
      continue
    for name, field in fields.items():
      if name not in node:
        continue
      default = ("required" if field.default is schema.REQUIRED
                 else f"default {field.default!r}")
      rows.append((f"{section + '.' if section else ''}{name} = "
                   f"{_value(node[name])}", f"# {_allowed(field)}; {default}"))
  w = min(48, max(len(a) for a, _ in rows) + 2)
  head = ("# the config as a run completes it (overrides applied, defaults "
          "filled: scnn_jax/config/schema.py)\n# field = value" +
          " " * max(2, w - 15) + "# allowed values; schema default")
  return "\n".join([head] + [f"{a.ljust(w)}{b}" if len(a) < w else
                             f"{a}  {b}" for a, b in rows])


# --------------------------------------------------------------------------
# A --config file that is missing or does not load
# --------------------------------------------------------------------------


def config_arg(argv: list[str]) -> str | None:
  """The value of ``--config`` in ``argv`` (``--config=F`` or ``--config F``;
  ``F:ARGS`` passes ARGS to get_config), None if absent."""
  args = argv[1:]
  for i, a in enumerate(args):
    for prefix in ("--config", "-config"):
      if a.startswith(prefix + "="):
        return a[len(prefix) + 1:]
      if a == prefix and i + 1 < len(args):
        return args[i + 1]
  return None


def _file_of(value: str) -> pathlib.Path:
  return pathlib.Path(value.split(":", 1)[0])


def missing_config_error(argv: list[str], command: str) -> str | None:
  """The error for an absent ``--config`` or a path that is not a file."""
  value = config_arg(argv)
  hint = f"{command} --list_configs lists the shipped configs"
  if value is None:
    return f"--config FILE is required ({hint}; --help lists the flags)"
  path = _file_of(value)
  if not path.exists():
    return f"--config {value}: no such file ({hint})"
  if not path.is_file():
    return f"--config {value}: not a file ({hint})"
  return None


def _config_frame(tb, path: pathlib.Path):
  """The innermost traceback entry in a config file: ``path`` itself or a
  ``.py`` beside it (a config loads its siblings)."""
  found = None
  folder = path.resolve().parent
  while tb is not None:
    f = pathlib.Path(tb.tb_frame.f_code.co_filename)
    try:
      if f.suffix == ".py" and f.resolve().parent == folder:
        found = (f, tb.tb_lineno)
    except OSError:
      pass
    tb = tb.tb_next
  return found


def load_error(e: BaseException, argv: list[str]) -> str | None:
  """The one-line error when parsing the flags failed while loading the
  ``--config`` file (a syntax error, no get_config, get_config raising);
  None when ``e`` came from elsewhere (an override, another flag)."""
  value = config_arg(argv)
  if value is None:
    return None
  path = _file_of(value)
  if isinstance(e, SyntaxError) and e.filename and \
      pathlib.Path(e.filename).resolve().parent == path.resolve().parent:
    return (f"--config {value}: {type(e).__name__} in "
            f"{pathlib.Path(e.filename).name} line {e.lineno}: {e.msg}")
  text = str(e)
  if isinstance(e, AttributeError) and "has no attribute 'get_config'" in text:
    return f"--config {value}: the file defines no get_config()"
  if isinstance(e, flags.Error) and "Error whilst parsing config file" in text:
    # config_flags reraises get_config's TypeError / ValueError with the
    # traceback as text: its last line is the error.
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return f"--config {value}: get_config() failed: {last.strip()}"
  frame = _config_frame(e.__traceback__, path)
  if frame is not None and not isinstance(e, flags.Error):
    what = type(e).__name__
    if text.strip():
      what += ": " + text.strip().splitlines()[0]
    return (f"--config {value}: get_config() failed in {frame[0].name} line "
            f"{frame[1]}: {what}")
  return None


def unloaded_config_error(argv: list[str]) -> str | None:
  """After parsing: config_flags defers an unreadable file's error to the
  first use of the config; make it the one-line error now."""
  try:
    config = FLAGS["config"].value
    if config is None:
      return f"--config {config_arg(argv)}: get_config() returned None"
    config.get("task")
  except OSError as e:
    reason = " ".join(str(e).split())
    reason = reason.split("earlier failure to load: ", 1)[-1]
    return f"--config {config_arg(argv)}: cannot load it ({reason})"
  return None


def command_name(argv0: str) -> str:
  """How the user ran the command: ``scnn-train``, ``python train.py``,
  ``python -m scnn_jax.fad``."""
  path = pathlib.Path(argv0)
  if path.suffix != ".py":
    return path.name
  if path.parent.name == "scnn_jax":
    return f"python -m scnn_jax.{path.stem}"
  return f"python {path.name}"


def emit(text: str) -> None:
  """Prints ``text`` to stdout; a reader that stopped early (``| head``)
  is no error of the command."""
  try:
    print(text)
    sys.stdout.flush()
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def exit_with(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)
