"""Config validation helpers shared by every part of scnn_jax.

Every invalid config value fails before anything is compiled, with a message
that names the field (dotted path from the config root) and what is allowed:

    ConfigError: config.model.T = 0: must be an integer >= 1
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class ConfigError(ValueError):
  """An invalid config value; the message names the field and what is allowed."""

  def __init__(self, field: str, value: Any, allowed: str):
    self.field = field
    self.value = value
    super().__init__(f"config.{field} = {value!r}: {allowed}")


def check_choice(field: str, value, choices: Iterable[str]):
  choices = tuple(choices)
  if value not in choices:
    raise ConfigError(field, value, f"must be one of {', '.join(map(str, choices))}")
  return value


def check_int(field: str, value, minimum: int | None = None,
              maximum: int | None = None):
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(field, value, "must be an integer")
  if minimum is not None and value < minimum:
    raise ConfigError(field, value, f"must be an integer >= {minimum}")
  if maximum is not None and value > maximum:
    raise ConfigError(field, value, f"must be an integer <= {maximum}")
  return value


def check_number(field: str, value, *, low=None, high=None,
                 low_open=False, high_open=False, finite=True):
  """A real number in [low, high] (or open at either end); finite unless
  ``finite=False`` (inf and nan are not a tau, threshold or std)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(field, value, "must be a number")
  if finite and not math.isfinite(value):
    raise ConfigError(field, value, "must be a finite number")
  lo_ok = low is None or (value > low if low_open else value >= low)
  hi_ok = high is None or (value < high if high_open else value <= high)
  if not (lo_ok and hi_ok):
    lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
    hi = "" if high is None else f"{high}" + (")" if high_open else "]")
    if low is None:
      rng = f"{'<' if high_open else '<='} {high}"
    elif high is None:
      rng = f"{'>' if low_open else '>='} {low}"
    else:
      rng = f"in {lo}{hi}"
    raise ConfigError(field, value, f"must be {rng}")
  return value
