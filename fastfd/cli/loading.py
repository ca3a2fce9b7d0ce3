"""Loading what the user names on the command line: modules (``MODULE:NAME``), the params file
(``--params``) and the extra arguments of the loss (``--data``).

Everything wrong with these inputs is a :class:`~fastfd.cli.errors.CliError` (exit 3) with a
sentence saying what to do. :class:`UserCode` also remembers which files are the user's, so
that an exception raised later inside the loss is recognised as the user's by its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import io
import os
import re
import site
import sys
import sysconfig
import traceback
from pathlib import Path

import numpy as np

from .errors import CliError, UserCodeExit


def _installed_roots() -> tuple[str, ...]:
    """Folders of the standard library and installed packages: code there is not the user's."""
    roots = {sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib",
                                                         "platlib")}
    with contextlib.suppress(Exception):
        roots.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        roots.add(site.getusersitepackages())
    return tuple(os.path.realpath(root) + os.sep for root in roots if root)


class UserCode:
    """Imports the user's modules (by name or by path) and remembers their files, so that
    traceback frames of the user's code can be recognised when it raises.

    The user's files are the modules named on the command line and the modules their import
    brought in from outside the installed packages and fastfd (a ``net.py`` importing its
    sibling ``layers.py``).
    """

    def __init__(self):
        self.modules: dict[str, object] = {}
        self.files: set[str] = set()
        self.by_name: list[str] = []  # modules given by name: workers must import them too

    def resolve(self, spec: str, role: str, default_module: str | None = None):
        """The callable named by ``spec`` (``MODULE:NAME``) and the module text it came from.

        ``role`` ("LOSS" or "GRAD") names the argument in errors; an empty ``MODULE`` takes
        ``default_module``.
        """
        module_text, colon, name = spec.rpartition(":")
        if not colon:
            raise CliError(f"{role} must be MODULE:NAME (e.g. losses:loss or "
                           f"path/to/losses.py:loss); got {spec!r} (no ':')")
        if not name:
            raise CliError(f"{role} {spec!r} names no attribute after ':'")
        if not module_text:
            if default_module is None:
                raise CliError(f"{role} {spec!r} names no module before ':'")
            module_text = default_module
        obj = self.load(module_text)
        parts = name.split(".")
        for depth, part in enumerate(parts):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                owner = (f"module {module_text!r}" if depth == 0 else
                         f"{module_text}:{'.'.join(parts[:depth])}")
                close = difflib.get_close_matches(
                    part, [n for n in dir(obj) if not n.startswith("__")], n=3)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise CliError(f"{role}: {owner} has no attribute {part!r}{hint}") from None
        if not callable(obj):
            raise CliError(f"{role} {module_text}:{name} is not callable (it is of type "
                           f"{type(obj).__name__}); name a function: {name}(params)")
        return obj, module_text

    def load(self, text: str):
        """The module ``text``: a path to a ``.py`` file or an importable module name."""
        is_path = text.endswith(".py") or "/" in text or os.sep in text
        key = os.path.realpath(text) if is_path else text
        if key not in self.modules:
            before = set(sys.modules)
            with _replayed_output() as captured:
                try:
                    module = self._load_path(text) if is_path else self._import(text)
                except SystemExit as error:
                    captured.discard()
                    raise _exited(text, error, captured.last_line()) from None
            if getattr(module, "__file__", None):
                self.files.add(os.path.realpath(module.__file__))
            self._add_imported(set(sys.modules) - before)
            self.modules[key] = module
            if not is_path:
                self.by_name.append(text)
        return self.modules[key]

    def locate(self, function: str, line: int) -> str | None:
        """The file of the user's function ``function`` whose code spans ``line`` (for code
        that ran on workers by value, which loses its file name there), or None."""
        best = None
        for module in self.modules.values():
            for code in _codes(module):
                if (code.co_name == function and code.co_firstlineno <= line
                        and (best is None or code.co_firstlineno > best.co_firstlineno)):
                    last = max((n for *_, n in code.co_lines() if n is not None), default=line)
                    if line <= last:
                        best = code
        return best.co_filename if best is not None else None

    def _add_imported(self, names: set[str]) -> None:
        roots = _installed_roots()
        for name in names:
            if name == "fastfd" or name.startswith("fastfd."):
                continue
            file = getattr(sys.modules.get(name), "__file__", None)
            if file and file.endswith(".py"):
                real = os.path.realpath(file)
                if not real.startswith(roots):
                    self.files.add(real)

    @staticmethod
    def _load_path(text: str):
        path = Path(text)
        if not path.exists():
            raise CliError(f"no such file: {text} (MODULE is a module name or a path to a .py "
                           "file)")
        if path.is_dir():
            raise CliError(f"{text} is a directory; give a .py file or a module name")
        real = path.resolve()
        name = real.stem
        if not name.isidentifier() or name in sys.modules:
            name = "_fastfd_user_" + re.sub(r"\W", "_", real.stem)
            while name in sys.modules:
                name += "_"
        spec = importlib.util.spec_from_file_location(name, real)
        if spec is None or spec.loader is None:
            raise CliError(f"cannot import {text}: not a Python source file (.py)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses, pickling and relative lookups need it
        folder = str(real.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)  # sibling imports work as they do for `python file.py`
        try:
            spec.loader.exec_module(module)
        except BaseException as error:
            del sys.modules[name]
            if isinstance(error, (SystemExit, KeyboardInterrupt)):
                raise
            raise _import_failed(text, error) from None
        with contextlib.suppress(Exception):
            import cloudpickle

            # the module may not be importable by this name in worker processes: send its
            # functions by value
            cloudpickle.register_pickle_by_value(module)
        return module

    @staticmethod
    def _import(text: str):
        # a console script does not put the current directory on sys.path; `python -m` does
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            return importlib.import_module(text)
        except ModuleNotFoundError as error:
            if error.name and (text == error.name or text.startswith(error.name + ".")):
                raise CliError(
                    f"cannot import module {text!r}: no module named {error.name!r} in the "
                    "current directory or on sys.path (for a file, give its path: "
                    f"path/to/{text.replace('.', '/')}.py:NAME)") from None
            raise _import_failed(text, error) from None
        except Exception as error:
            raise _import_failed(text, error) from None


def _codes(module):
    """Code objects of a module's functions and of its classes' methods (one level)."""
    name = getattr(module, "__name__", None)
    for value in list(vars(module).values()):
        members = [value]
        if isinstance(value, type) and value.__module__ == name:
            members += list(vars(value).values())
        for member in members:
            member = getattr(member, "__func__", member)  # classmethod, staticmethod
            code = getattr(member, "__code__", None)
            if code is not None and getattr(member, "__module__", None) == name:
                yield code


def _where(error: BaseException) -> str:
    """`` at FILE:LINE`` of the innermost traceback frame in the user's code (outside the
    standard library and installed packages; else the innermost with a real file), or ''."""
    frames = [(f.f_code.co_filename, line) for f, line in traceback.walk_tb(error.__traceback__)
              if not f.f_code.co_filename.startswith("<")]
    roots = _installed_roots()
    own = [frame for frame in frames if not os.path.realpath(frame[0]).startswith(roots)]
    frames = own or frames
    return f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""


def _import_failed(text: str, error: BaseException) -> CliError:
    return CliError(f"importing {text} raised {type(error).__name__}{_where(error)}: {error}")


def _exited(text: str, error: SystemExit, printed: str) -> UserCodeExit:
    said = f"; it printed: {printed}" if printed else ""
    return UserCodeExit(
        f"importing {text} raised SystemExit({error.code!r}){_where(error)}: the module exits "
        "(or parses the command line, e.g. with argparse) when imported; move that code under "
        f"`if __name__ == \"__main__\":`{said}")


class _Captured:
    """What the user's module printed while it was imported."""

    def __init__(self):
        self.out, self.err = io.StringIO(), io.StringIO()
        self.keep = True

    def discard(self) -> None:
        self.keep = False

    def last_line(self) -> str:
        for stream in (self.err, self.out):
            lines = [line.strip() for line in stream.getvalue().splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return ""


@contextlib.contextmanager
def _replayed_output():
    """Hold what an import prints, and print it after unless :meth:`_Captured.discard`: a
    module that exits at import time (argparse) must not fill the error output with its own
    usage text."""
    captured = _Captured()
    try:
        with contextlib.redirect_stdout(captured.out), contextlib.redirect_stderr(captured.err):
            yield captured
    finally:
        if captured.keep:
            sys.stdout.write(captured.out.getvalue())
            sys.stderr.write(captured.err.getvalue())


# --------------------------------------------------------------------------------------------
# array files: --params and --data
# --------------------------------------------------------------------------------------------


def read_arrays(path: str, what: str):
    """The arrays of the ``.npz`` (a dict in the file's order) or ``.npy`` (the array) file
    ``path``; ``what`` ("params file", "data file") names it in errors."""
    file = Path(path)
    if not file.exists():
        raise CliError(f"{what} not found: {path}")
    if file.is_dir():
        raise CliError(f"{what} {path} is a directory; give a .npz file")
    with open(file, "rb") as stream:
        magic = stream.read(6)
    if not (magic.startswith(b"PK\x03\x04") or magic == b"\x93NUMPY"):
        raise CliError(f"{what} {path} is not an .npz (or .npy) file: save the arrays "
                       "with np.savez(path, W=W, b=b)")
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, OSError, EOFError, BadZipFile...
        raise CliError(f"cannot read {what} {path}: not an .npz (or .npy) file of arrays "
                       f"({type(error).__name__}: {error})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CliError(f"{what} {path} holds no arrays; save them with "
                       "np.savez(path, W=W, b=b)")
    arrays = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except ValueError as error:
                raise CliError(
                    f"{what} {path}: array {key!r} cannot be loaded ({error}); fastfd "
                    "reads plain numeric arrays only (allow_pickle=False): save numeric arrays, "
                    "e.g. np.savez(path, W=W.astype(np.float64))") from None
            except Exception as error:
                raise CliError(f"{what} {path}: array {key!r} cannot be read "
                               f"({type(error).__name__}: {error})") from None
    if not arrays:
        raise CliError(f"{what} {path} holds no arrays; save them with "
                       "np.savez(path, W=W, b=b)")
    return arrays


def load_params(path: str, as_dict: bool = False):
    """The params in ``path``: one array passes that array itself (``as_dict``: ``{name:
    array}``, a ``.npy`` named by the file's stem); several pass a dict in the file's order."""
    arrays = read_arrays(path, "params file")
    if isinstance(arrays, np.ndarray):
        return {Path(path).stem: arrays} if as_dict else arrays
    if len(arrays) == 1 and not as_dict:
        return next(iter(arrays.values()))
    return arrays


def _value(array: np.ndarray):
    """A 0-d array (``reg`` saved with np.savez) as a Python scalar; other arrays unchanged."""
    return array.item() if array.ndim == 0 else array


def load_data(path: str | None, positional: bool = False) -> tuple[tuple, dict]:
    """``(args, kwargs)`` for the loss from the ``--data`` file ``path``.

    By keyword (``kwargs``: ``loss(params, X=X, y=y, reg=reg)``) by default; with
    ``positional`` (``--args``), in the file's order (``loss(params, X, y, reg)``). 0-d arrays
    arrive as Python scalars.
    """
    if path is None:
        return (), {}
    arrays = read_arrays(path, "data file")
    if isinstance(arrays, np.ndarray):
        arrays = {Path(path).stem: arrays}
    values = {key: _value(array) for key, array in arrays.items()}
    if positional:
        return tuple(values.values()), {}
    unnamed = [key for key in values if re.fullmatch(r"arr_\d+", key)]
    if unnamed:
        raise CliError(f"data file {path} holds unnamed arrays ({', '.join(unnamed)}: saved "
                       "with np.savez(path, X, y)); pass them in the file's order with --args, "
                       "or save them by name: np.savez(path, X=X, y=y)")
    bad = [key for key in values if not key.isidentifier()]
    if bad:
        raise CliError(f"data file {path}: array names {bad} are not Python identifiers and "
                       "cannot be keyword arguments; rename them, or pass the arrays in the "
                       "file's order with --args")
    return (), values
