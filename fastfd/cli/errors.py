"""Exit codes, and which exceptions are the user's (exit 3) and which are fastfd's bugs (exit 4).

The contract between the layers is typed, never the wording of a message:

- :class:`CliError`: the command line's own verdict on its input (paths, names, options);
- :class:`UserCodeExit`: ``SystemExit`` raised by the user's code (a module that parses its
  own command line at import time, ``sys.exit()`` inside the loss);
- :class:`fastfd.errors.InternalError`: a fastfd invariant failed, always a bug;
- the other :class:`fastfd.errors.FastFDError` (the loss modified its input, is not finite,
  not deterministic, not thread-safe, its worker died): the user's to fix;
- an exception raised *inside* the user's code: recognised by the engine's marker
  (``fastfd_entry``, set on every exception the loss raises, also across processes), or by
  a traceback frame in the user's files (the modules named on the command line and what
  they imported from outside the installed packages), including the traceback text that
  process pools send back, or by a numba error (the user's ``@njit`` loss does not
  compile: fastfd's own kernels are tested);
- ``TypeError``, ``ValueError``, ``ImportError`` and ``OSError`` from fastfd's validation or
  the libraries it calls (integer params, a gradient of the wrong shape, an unknown backend,
  a missing optional dependency, workers that cannot import the loss's module).

Anything else is a bug of fastfd: exit 4 with the traceback.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import FastFDError, InternalError

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_USAGE = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user error found by the command line: printed as one line on stderr, exit code 3."""


class UserCodeExit(CliError):
    """The user's code raised ``SystemExit`` (``sys.exit()``, argparse at import time)."""


# `File "/path/x.py", line 12, in loss` in the traceback text loky sends back from a worker
_TRACEBACK_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)',
                             re.MULTILINE)
# cloudpickle's file name for code sent by value: the CLI sends the user's .py files so
BY_VALUE = "<dynamic-code>"


def user_frame(error: BaseException, files: set[str],
               locate: Callable[[str, int], str | None] | None = None
               ) -> tuple[str, int, str] | None:
    """``(file, line, function)`` of the innermost traceback frame in the user's ``files``.

    The error's own frames come first (the serial evaluator; dask rebuilds a worker's
    traceback); then the traceback text a process pool attaches as the cause of the error it
    re-raises (joblib/loky's ``_RemoteTraceback``). Code that reached the workers by value
    (a ``.py`` path on the command line) has no file there; ``locate(function, line)`` finds
    it among the user's modules (else the file is shown as ``<dynamic-code>``).
    """
    found = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        found = _users(frame.f_code.co_filename, line, frame.f_code.co_name, files,
                       locate) or found
    cause, seen = error.__cause__, {id(error)}
    while found is None and cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if cause.__traceback__ is None:  # never raised: a traceback sent back as text
            for match in _TRACEBACK_LINE.finditer(str(cause)):
                found = _users(match["file"], int(match["line"]), match["func"], files,
                               locate) or found
        cause = cause.__cause__
    return found


def _users(file: str, line: int, function: str, files: set[str], locate):
    """The frame if it is the user's code, else None."""
    if file == BY_VALUE:
        return ((locate(function, line) if locate else None) or file, line, function)
    if files and os.path.realpath(file) in files:
        return file, line, function
    return None


def one_line(text: str) -> str:
    """``text`` on one line: its first non-empty line, saying how many more there were."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} [{len(lines) - 1} more lines: --traceback shows them]"


def _from_numba(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] == "numba"


def exit_code_and_message(error: BaseException, user_files: set[str],
                          locate: Callable[[str, int], str | None] | None = None
                          ) -> tuple[int, str]:
    """The exit code for ``error`` and what to print: a one-line message for a user error
    (exit 3), the exception itself for a bug (exit 4). See the module docstring;
    ``user_files`` and ``locate`` as for :func:`user_frame`."""
    if isinstance(error, CliError):
        return EXIT_USAGE, one_line(str(error))
    if isinstance(error, InternalError):
        return EXIT_INTERNAL, f"{type(error).__name__}: {error}"
    frame = user_frame(error, user_files, locate)
    if isinstance(error, SystemExit):
        where = f" at {Path(frame[0]).name}:{frame[1]} in {frame[2]}()" if frame else ""
        return EXIT_USAGE, (f"your code called sys.exit({error.code!r}){where}: fastfd calls "
                            "your loss and gradient as functions, they must return, not exit")
    if isinstance(error, FastFDError):
        return EXIT_USAGE, one_line(str(error))
    entry = getattr(error, "fastfd_entry", None)  # set by the engine: raised by the loss
    if frame is not None or entry is not None or _from_numba(error):
        if frame:
            where = f" at {Path(frame[0]).name}:{frame[1]} in {frame[2]}()"
        else:
            where = f" (evaluating the loss at {entry})" if entry else ""
        return EXIT_USAGE, one_line(f"your code raised {type(error).__name__}{where}: {error}")
    if isinstance(error, (TypeError, ValueError, ImportError, OSError)):
        return EXIT_USAGE, one_line(str(error))
    return EXIT_INTERNAL, f"{type(error).__name__}: {error}"


def user_error_message(error: BaseException, user_files: set[str]) -> str | None:
    """The one-line message for a user error (exit 3), or None for a bug (exit 4)."""
    code, message = exit_code_and_message(error, user_files)
    return message if code == EXIT_USAGE else None
