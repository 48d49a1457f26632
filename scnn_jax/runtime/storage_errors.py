"""Which exceptions mean "the workdir's storage refused a write".

A full disk, an exceeded quota, a permission error or a read-only filesystem
reach the training loop in many shapes: an ``OSError`` from a Python write, or
a ``ValueError`` from TensorStore (Orbax's array writer) whose status text
carries the OS error code, raised in Orbax's background threads and re-raised
when the loop next waits for a save. ``write_failure`` recognises all of them,
so that the loop can stop with one line instead of a traceback
(``scnn_jax.training.stopping.WriteFailed``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re

# errno -> what it means for the run's storage.
_STORAGE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "a file size limit was reached",
}
# How the errors read inside other messages ("No space left on device").
MESSAGES = tuple(sorted({os.strerror(c) for c in _STORAGE_ERRORS}))
# TensorStore (Orbax's array writer) reports OS errors in its status text.
_TS_ERRNO = re.compile(r"os_error_code='(\d+)'")
_TS_PATH = re.compile(r'(?:Failed writing|Failed to create directory|'
                      r'Error writing local file|local file): "([^"]+)"')
_TS_STATUS = {"PERMISSION_DENIED": "permission denied"}


def write_failure(error: BaseException) -> tuple[str, str] | None:
  """``(path, what)`` when ``error`` (or one it was raised from) is a write
  that failed for lack of room or rights; None for anything else."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRORS:
      what = f"{_STORAGE_ERRORS[error.errno]} ({os.strerror(error.errno)})"
      return str(error.filename or "?"), what
    text = str(error)
    if isinstance(error, OSError) and text.startswith("Forbidden: "):
      # gcsfs: an HTTP 403 from the object store
      return text.split("\n", 1)[0][len("Forbidden: "):], (
          "permission denied (HTTP 403 Forbidden)")
    code = _TS_ERRNO.search(text)
    status = next((s for s in _TS_STATUS if text.startswith(s)), None)
    if (code and int(code.group(1)) in _STORAGE_ERRORS) or status:
      path = _TS_PATH.search(text)
      what = (f"{_STORAGE_ERRORS[int(code.group(1))]} "
              f"({os.strerror(int(code.group(1)))})" if code
              else _TS_STATUS[status])
      return (path.group(1) if path else "?"), what
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def writing(path):
  """Names ``path`` in a storage error raised inside (a failed ``write()``
  or ``close()`` says which error, not which file)."""
  try:
    yield
  except OSError as e:
    if e.filename is None and e.errno in _STORAGE_ERRORS:
      raise OSError(e.errno, e.strerror, str(path)) from e
    raise
