"""Command line: ``fastfd check | sweep | bench | demo``.

Synopsis::

    fastfd check MODULE:LOSS MODULE:GRAD --params FILE.npz [--sample K|auto|all|FRACTION]
                 [--directions M] [--method central|forward|backward|central4] [--step H]
                 [--n-jobs N] [--backend NAME] [--seed S] [--rtol R] [--atol A] [--dict]
                 [--json OUT] [--progress] [--traceback]
    fastfd sweep MODULE:LOSS MODULE:GRAD --params FILE.npz [--sample ...] [--method ...]
                 [--steps START:STOP:NUM] [--seed S] [--n-jobs N] [--backend NAME] [--dict]
                 [--json OUT] [--plot OUT.png] [--traceback]
    fastfd bench [--quick]
    fastfd demo [--baseline-coords K]

``MODULE`` is an importable module name (the current directory is searched first) or a path to
a ``.py`` file; ``LOSS`` and ``GRAD`` are attribute names in it, dotted ones allowed
(``model.loss``). ``GRAD`` may leave out the module (``:grad``) to reuse the loss's. Both must
be callables: ``LOSS(params) -> float`` and ``GRAD(params) -> gradient like params``.

Params file rule: a ``.npz`` holding exactly one array passes that array itself (whatever its
name, ``arr_0`` included); several arrays pass a dict ``{name: array}`` in the file's order;
a ``.npy`` file passes its array. ``--dict`` passes a dict even for a single array (the key is
its name in the ``.npz``, or the file's stem for a ``.npy``). Files are read with
``allow_pickle=False``: object arrays are refused.

Exit codes:

- 0: ``check`` passed; ``sweep``, ``bench`` and ``demo`` ran (``demo``: as expected).
- 1: ``check`` failed: some entry or direction of the gradient is wrong (``demo``: a verdict
  other than the expected one).
- 2: ``check`` is inconclusive: the finite differences cannot decide (kinks, rounding noise).
- 3: usage or input error (one line on stderr, no traceback; ``--traceback`` shows it).
- 4: internal error: an unexpected exception inside fastfd, printed with its traceback (a bug).
- 130: interrupted (Ctrl-C).

What counts as a user error (exit 3):

- bad command-line arguments (argparse would exit 2, which means inconclusive here);
- ``MODULE:NAME`` that cannot be resolved: missing colon, module or file not found, an
  exception while importing it, attribute not found, not callable;
- a params file that is missing, not an ``.npz``/``.npy``, empty, or holds object arrays;
- ``TypeError``, ``ValueError``, ``ImportError`` and ``OSError`` raised by fastfd's validation
  or by the libraries it calls (integer params, a gradient of the wrong shape, a loss that does
  not return a scalar, an unknown backend, a missing optional dependency, an unwritable
  output), and fastfd's own ``RuntimeError`` explanations (the loss modified its input in
  place, no dask client, a worker process died);
- any exception raised inside the user's loss or gradient (recognised by fastfd's note naming
  the failing entry, or by a traceback frame in the user's module): reported with its type,
  message, entry and the line of the user's code that raised it.

Anything else is treated as a bug of fastfd: exit 4 with the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_USAGE = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130

METHODS = ("central", "forward", "backward", "central4")
# fastfd's executors add this note to every exception raised by the loss (with the entry)
_LOSS_NOTE = "fastfd: the caller's parameters are unchanged"


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 3."""


def demo(n_baseline: int = 300, out=None) -> int:
    """Check a correct and a broken gradient of CIFAR-shaped linear classifiers; print timings.

    Returns the exit code (0 when the correct gradients pass and the broken ones fail).
    """
    from . import check_gradient
    from ._baseline import centered_on_coords, cifar_like_problem
    from .kernels import reference
    from .models import LinearSoftmax, LinearSVM

    out = out or sys.stdout
    W, X, y = cifar_like_problem()
    reg = 2.5e4
    n, d = X.shape
    print(f"fastfd demo: CIFAR-10-shaped linear classifiers, N={n} examples, D={d} "
          f"(3072 pixel-like features + bias), C={W.shape[1]} classes: {W.size:,} weights, "
          f"reg={reg:g}\n", file=out)
    ok = True
    for title, Model, loss_and_grad, loss in (
        ("softmax", LinearSoftmax, reference.softmax_loss_and_grad, reference.softmax_loss),
        ("SVM", LinearSVM, reference.svm_loss_and_grad, reference.svm_loss),
    ):
        model = Model(X, y, reg)
        model(W)  # compile (or load cached) kernels outside the timings

        def your_grad(w, loss_and_grad=loss_and_grad):
            return loss_and_grad(w, X, y, reg)[1]

        def broken_grad(w, your_grad=your_grad):
            return your_grad(w) - reg * w  # regularization gradient reg*W instead of 2*reg*W

        began = time.perf_counter()
        good = check_gradient(model, your_grad, W, sample="all")
        fastfd_s = time.perf_counter() - began
        bad = check_gradient(model, broken_grad, W, sample="all")
        print(f"== {title}: your vectorized numpy gradient ==\n{good}\n", file=out)
        print(f"== {title}: the same with a bug (reg*W instead of 2*reg*W) ==\n{bad}\n", file=out)

        coords = np.random.default_rng(0).choice(W.size, n_baseline, replace=False)
        began = time.perf_counter()
        centered_on_coords(functools.partial(loss, X=X, y=y, reg=reg), W.copy(), coords)
        per_coord = (time.perf_counter() - began) / n_baseline
        loop_s = per_coord * W.size
        print(f"   timing: fastfd checked all {W.size:,} entries in {fastfd_s:.3f} s; the textbook "
              f"centered loop takes {per_coord * 1e3:.2f} ms per coordinate (measured on "
              f"{n_baseline}), about {loop_s:.0f} s for all: {loop_s / fastfd_s:,.0f}x faster\n",
              file=out)
        ok &= good.verdict == "pass" and bad.verdict == "fail"
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------
# loading the user's code and params
# --------------------------------------------------------------------------------------------


class UserCode:
    """Imports the user's modules (by name or by path) and remembers their files, so that
    traceback frames of the user's code can be recognised when it raises."""

    def __init__(self):
        self.modules: dict[str, object] = {}
        self.files: set[str] = set()

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
            module = self._load_path(text) if is_path else self._import(text)
            if getattr(module, "__file__", None):
                self.files.add(os.path.realpath(module.__file__))
            self.modules[key] = module
        return self.modules[key]

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
        except Exception as error:
            del sys.modules[name]
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


def _import_failed(text: str, error: BaseException) -> CliError:
    frames = [(f.f_code.co_filename, line) for f, line in traceback.walk_tb(error.__traceback__)
              if not f.f_code.co_filename.startswith("<")]
    where = f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
    return CliError(f"importing {text} raised {type(error).__name__}{where}: {error}")


def load_params(path: str, as_dict: bool = False):
    """The params in ``path`` (``.npz`` or ``.npy``), by the rule in the module docstring."""
    file = Path(path)
    if not file.exists():
        raise CliError(f"params file not found: {path}")
    if file.is_dir():
        raise CliError(f"params file {path} is a directory; give a .npz file")
    with open(file, "rb") as stream:
        magic = stream.read(6)
    if not (magic.startswith(b"PK\x03\x04") or magic == b"\x93NUMPY"):
        raise CliError(f"params file {path} is not an .npz (or .npy) file: save the params "
                       "with np.savez(path, W=W, b=b)")
    try:
        loaded = np.load(file, allow_pickle=False)
    except Exception as error:  # numpy raises ValueError, OSError, EOFError, BadZipFile...
        raise CliError(f"cannot read params file {path}: not an .npz (or .npy) file of arrays "
                       f"({type(error).__name__}: {error})") from None
    if isinstance(loaded, np.ndarray):
        return {file.stem: loaded} if as_dict else loaded
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CliError(f"params file {path} holds no arrays; save them with "
                       "np.savez(path, W=W, b=b)")
    arrays = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except ValueError as error:
                raise CliError(
                    f"params file {path}: array {key!r} cannot be loaded ({error}); fastfd "
                    "reads plain numeric arrays only (allow_pickle=False): save float arrays, "
                    "e.g. np.savez(path, W=W.astype(np.float64))") from None
            except Exception as error:
                raise CliError(f"params file {path}: array {key!r} cannot be read "
                               f"({type(error).__name__}: {error})") from None
    if not arrays:
        raise CliError(f"params file {path} holds no arrays; save them with "
                       "np.savez(path, W=W, b=b)")
    if len(arrays) == 1 and not as_dict:
        return next(iter(arrays.values()))
    return arrays


def _check_output(path: str | None, flag: str) -> None:
    """Fail before the (maybe long) run when ``path`` cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{flag} {path} is a directory; give a file name")
    if not target.parent.is_dir():
        raise CliError(f"{flag} {path}: directory {str(target.parent)!r} does not exist")


def _write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise CliError(f"cannot write JSON to {path}: {error}") from None


def _cli_record(args, argv) -> dict:
    """The command's arguments, JSON-ready, for the "cli" key of the JSON output."""
    from . import __version__

    record = {"argv": list(argv), "fastfd_version": __version__}
    for key, value in vars(args).items():
        if key in ("handler", "traceback"):
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        record[key] = value
    return record


def _load_problem(args, user: UserCode):
    f, module_text = user.resolve(args.loss, "LOSS")
    grad, _ = user.resolve(args.grad, "GRAD", default_module=module_text)
    params = load_params(args.params, args.dict)
    return f, grad, params


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def check(args, user: UserCode, argv=(), out=None) -> int:
    """``fastfd check``: run :func:`fastfd.check_gradient`, print the report, exit by verdict."""
    from . import check_gradient

    out = out or sys.stdout
    _check_output(args.json, "--json")
    f, grad, params = _load_problem(args, user)
    result = check_gradient(
        f, grad, params, sample=args.sample, directions=args.directions, method=args.method,
        step=args.step, rtol=args.rtol, atol=args.atol, seed=args.seed, n_jobs=args.n_jobs,
        backend=args.backend, progress=args.progress,
    )
    print(result, file=out)
    code = EXIT_CODES[result.verdict]
    if args.json:
        _write_json(args.json, {**result.to_dict(), "exit_code": code,
                                "cli": _cli_record(args, argv)})
        print(f"JSON written to {args.json}", file=out)
    return code


def sweep(args, user: UserCode, argv=(), out=None) -> int:
    """``fastfd sweep``: run :func:`fastfd.step_sweep`, print its table, write JSON and plot."""
    from . import step_sweep

    out = out or sys.stdout
    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            raise CliError("plotting needs matplotlib: pip install 'fastfd[plot]'") from None
        matplotlib.use("Agg")  # files only: no display needed
    f, grad, params = _load_problem(args, user)
    result = step_sweep(f, grad, params, steps=args.steps, sample=args.sample,
                        method=args.method, seed=args.seed, n_jobs=args.n_jobs,
                        backend=args.backend)
    print(result, file=out)
    if args.json:
        _write_json(args.json, {**result.to_dict(), "cli": _cli_record(args, argv)})
        print(f"JSON written to {args.json}", file=out)
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.0, 4.5))
        try:
            result.plot(ax=ax)
            fig.tight_layout()
            fig.savefig(args.plot, dpi=120)
        finally:
            plt.close(fig)
        print(f"plot written to {args.plot}", file=out)
    return 0


def _best_of_each(repeats: int, *calls) -> list[float]:
    """Best wall times of several calls, run in turn in every repeat so that a change of the
    machine's load (other processes) hits all of them alike."""
    best = [math.inf] * len(calls)
    for _ in range(max(1, repeats)):
        for k, call in enumerate(calls):
            began = time.perf_counter()
            call()
            best[k] = min(best[k], time.perf_counter() - began)
    return best


def _duration(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _cores() -> str:
    total = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"{total} CPU cores" + (f" ({usable} usable)" if usable != total else "")


def bench(quick: bool = False, out=None, *, size=None, loop_coords=None, engine_coords=None,
          repeats=None) -> int:
    """Time fastfd against the textbook centered loop on this machine; print a ratio table.

    (a) CIFAR-shaped linear softmax and SVM: one numpy analytic gradient, fastfd's full
    numerical gradient via the model, and the textbook loop timed on ``loop_coords``
    coordinates and scaled to all. (b) A generic numpy loss (the softmax loss as a plain
    callable, one BLAS thread): fastfd's serial engine against the loop on the same
    coordinates, as overhead per loss evaluation. Every time is the best of ``repeats``;
    the calls compared take turns within each repeat, so changes of load hit them alike.

    ``size`` is ``(N, D, C)`` with ``D`` counting the bias column; the other arguments
    override the defaults of ``quick``. Returns 0.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    from . import check_gradient, numerical_gradient
    from ._baseline import centered_on_coords, cifar_like_problem
    from ._params import flatten
    from ._sampling import stratified_sample
    from .kernels import reference
    from .models import LinearSoftmax, LinearSVM

    out = out or sys.stdout
    began = time.perf_counter()
    n, d, c = size or (500, 769 if quick else 3073, 10)
    repeats = repeats or (5 if quick else 3)
    reg = 2.5e4
    W, X, y = cifar_like_problem(n=n, d=d - 1, c=c)
    loop_coords = min(W.size, loop_coords or (100 if quick else 200))
    engine_coords = min(W.size, engine_coords or (100 if quick else 200))
    blas = sorted({str(lib.get("num_threads")) for lib in threadpool_info()
                   if lib.get("user_api") == "blas"}) or ["?"]
    print(f"fastfd bench{' --quick' if quick else ''}: {_cores()}, numpy BLAS threads "
          f"{'/'.join(blas)}; every time measured now, in this run, best of {repeats}", file=out)

    kinds = {
        "softmax": (LinearSoftmax, reference.softmax_loss_and_grad, reference.softmax_loss),
        "SVM": (LinearSVM, reference.svm_loss_and_grad, reference.svm_loss),
    }
    warm = time.perf_counter()
    models = {}
    for name, (Model, _, _) in kinds.items():
        models[name] = Model(X, y, reg)
        numerical_gradient(models[name], W)  # compile or load the cached kernels, untimed
    print(f"numba kernels compiled or loaded from cache in {time.perf_counter() - warm:.2f} s "
          "(not in the timings)\n", file=out)

    rows: dict[str, list[str]] = {}
    coords = np.random.default_rng(0).choice(W.size, loop_coords, replace=False)
    for name, (_, loss_and_grad, loss) in kinds.items():
        plain = functools.partial(loss, X=X, y=y, reg=reg)
        analytic_s, model_s, loop_s = _best_of_each(
            repeats,
            functools.partial(loss_and_grad, W, X, y, reg),
            functools.partial(numerical_gradient, models[name], W),
            functools.partial(centered_on_coords, plain, W.copy(), coords))
        numeric, analytic = numerical_gradient(models[name], W), loss_and_grad(W, X, y, reg)[1]
        agreement = np.linalg.norm(numeric - analytic) / (
            np.linalg.norm(numeric) + np.linalg.norm(analytic))
        per_coord = loop_s / loop_coords
        for label, value in (
            ("numpy analytic loss+grad (one call)", _duration(analytic_s)),
            ("fastfd full numerical gradient (model)", _duration(model_s)),
            ("textbook centered loop, per coordinate", _duration(per_coord)),
            (f"textbook centered loop, all {W.size:,} (*)", _duration(per_coord * W.size)),
            ("speedup per coordinate (loop / fastfd)",
             f"{per_coord * W.size / model_s:,.0f}x"),
            ("fastfd full gradient / one analytic grad", f"{model_s / analytic_s:,.1f}x"),
            ("fastfd vs analytic (norm rel error)", f"{agreement:.1e}"),
        ):
            rows.setdefault(label, []).append(value)
    print(f"(a) CIFAR-shaped linear classifiers: N={n}, D={d} (with bias), C={c}: "
          f"{W.size:,} weights, reg={reg:g}", file=out)
    width = max(len(label) for label in rows)
    print(f"  {'':<{width}}  {'softmax':>12}  {'SVM':>12}", file=out)
    for label, values in rows.items():
        print(f"  {label:<{width}}  {values[0]:>12}  {values[1]:>12}", file=out)
    print(f"  (*) the loop timed on {loop_coords:,} random coordinates and scaled to all "
          f"{W.size:,}\n", file=out)

    loss = functools.partial(reference.softmax_loss, X=X, y=y, reg=reg)
    grad = reference.softmax_grad(W, X, y, reg)
    if engine_coords < W.size:
        sample, seed = engine_coords, 0
        # the coordinates check_gradient(sample=k, seed=0) draws: both time the same entries
        same = stratified_sample(flatten(W)[0], engine_coords, np.random.default_rng(seed))
    else:
        sample, seed, same = "all", 0, np.arange(W.size)
    results = []
    with threadpool_limits(1):
        loop_s, engine_s = _best_of_each(
            repeats,
            lambda: centered_on_coords(loss, W.copy(), same),
            lambda: results.append(check_gradient(loss, grad, W, sample=sample, seed=seed)))
    result = results[-1]
    loop_evals = 2 * len(same)
    loop_per, engine_per = loop_s / loop_evals, engine_s / result.n_evals
    print("(b) generic numpy loss (the softmax loss above as a plain callable, 1 BLAS thread):\n"
          f"    fastfd's serial engine, check_gradient(sample={sample!r}) -> {result.verdict}, "
          f"vs the textbook loop\n    on the same {len(same):,} coordinates", file=out)
    print(f"  {'':<16}{'time':>12}{'evals':>8}{'per eval':>12}", file=out)
    print(f"  {'textbook loop':<16}{_duration(loop_s):>12}{loop_evals:>8}"
          f"{_duration(loop_per):>12}", file=out)
    print(f"  {'fastfd engine':<16}{_duration(engine_s):>12}{result.n_evals:>8}"
          f"{_duration(engine_per):>12}", file=out)
    print(f"  overhead per evaluation: {100 * (engine_per / loop_per - 1):+.1f}% "
          "(includes flattening, planning, the comparison and the report)\n", file=out)
    print(f"bench wall time {time.perf_counter() - began:.1f} s", file=out)
    return 0


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit with 3: exit code 2 means "inconclusive" here."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _sample_arg(text: str):
    """``--sample``: ``auto``, ``all``, a count ``K >= 1`` or a fraction in (0, 1]."""
    value = text.strip().lower()
    if value in ("auto", "all"):
        return value
    if re.fullmatch(r"\+?\d+", value):
        if int(value) >= 1:
            return int(value)
    else:
        with contextlib.suppress(ValueError):
            fraction = float(value)
            if 0.0 < fraction <= 1.0:
                return fraction
    raise argparse.ArgumentTypeError(
        f"must be 'auto', 'all', a count K >= 1 or a fraction in (0, 1]; got {text!r}")


def _steps_arg(text: str) -> np.ndarray:
    """``--steps START:STOP:NUM``: ``np.logspace(START, STOP, NUM)``."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be START:STOP:NUM, the log10 exponents of the largest and smallest steps "
            f"and the number of steps, e.g. -1:-12:23; got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(stop)) or max(abs(start), abs(stop)) > 300:
        raise argparse.ArgumentTypeError(f"exponents must lie in [-300, 300]; got {text!r}")
    if num < 1:
        raise argparse.ArgumentTypeError(f"NUM must be at least 1; got {text!r}")
    return np.logspace(start, stop, num)


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer; got {text!r}")
    return value


def _jobs_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"must be a non-zero integer (joblib convention: -1 = all cores); got {text!r}")
    return value


def _positive_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def _tolerance_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number; got {text!r}")
    return value


def _size_arg(text: str) -> tuple[int, int, int]:
    try:
        n, d, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N,D,C; got {text!r}") from None
    if n < 1 or d < 2 or c < 2:
        raise argparse.ArgumentTypeError(f"need N >= 1, D >= 2, C >= 2; got {text!r}")
    return n, d, c


_PROBLEM_EPILOG = """\
MODULE is a module name (the current directory is searched first) or a path to a .py file;
LOSS and GRAD name attributes in it (dotted allowed: model.loss); GRAD may be written :NAME to
reuse LOSS's module. LOSS(params) must return a float, GRAD(params) the gradient shaped like
params. The params file: an .npz with one array passes that array itself (--dict: {name:
array}); several arrays pass a dict {name: array}; a .npy file passes its array.
"""


def _add_problem_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("loss", metavar="MODULE:LOSS", help="the loss, e.g. losses:loss or "
                        "path/to/losses.py:loss")
    parser.add_argument("grad", metavar="MODULE:GRAD", help="the analytic gradient, e.g. "
                        "losses:grad (or :grad for the same module)")
    parser.add_argument("--params", required=True, metavar="FILE.npz",
                        help="the parameters: np.savez(FILE, W=W, b=b) (or a .npy)")
    parser.add_argument("--dict", action="store_true",
                        help="pass a dict {name: array} even when the file holds one array")
    parser.add_argument("--method", choices=METHODS, default="central",
                        help="finite-difference stencil (default: central)")
    parser.add_argument("--seed", type=_count_arg, default=0,
                        help="seed of the sample (and of random directions); default 0")
    parser.add_argument("--n-jobs", type=_jobs_arg, default=1, metavar="N",
                        help="workers for the loss evaluations (-1: all cores; default 1)")
    parser.add_argument("--backend", default=None, metavar="NAME",
                        help="joblib backend: loky (processes, the default when N != 1), "
                             "threading, dask (needs an active distributed.Client)")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, also print the Python traceback (debugging)")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="fastfd", formatter_class=raw,
        description="Fast numerical gradients and honest gradient checks.",
        epilog="exit codes: 0 pass, 1 fail, 2 inconclusive, 3 usage or input error, "
               "4 internal error\nfirst time? run: fastfd demo")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p_check = sub.add_parser(
        "check", formatter_class=raw,
        help="check an analytic gradient against finite differences (exit 0/1/2 = "
             "pass/fail/inconclusive)",
        description="Check the analytic gradient GRAD of the scalar loss LOSS at the params "
                    "in FILE.npz\n(fastfd.check_gradient): print the report and exit with 0 "
                    "(pass), 1 (fail: some entry\nis wrong) or 2 (inconclusive); 3 on a usage "
                    "or input error.",
        epilog=_PROBLEM_EPILOG + """
examples:
  fastfd check losses:loss losses:grad --params params.npz
  fastfd check path/to/net.py:model.loss :model.grad --params w.npz --sample 2000 \\
      --directions 4 --n-jobs -1 --json check.json
""")
    _add_problem_args(p_check)
    p_check.add_argument("--sample", type=_sample_arg, default="auto",
                         metavar="K|auto|all|FRACTION",
                         help="entries to check: auto (all if it fits ~10 s, else a stratified "
                              "sample; default), all, about K entries, or a fraction in (0, 1]")
    p_check.add_argument("--directions", type=_count_arg, default=0, metavar="M",
                         help="also check M random directions g.v (default 0)")
    p_check.add_argument("--step", type=_positive_arg, default=None, metavar="H",
                         help="step for every entry (default: from the dtype, scaled by |x|)")
    p_check.add_argument("--rtol", type=_tolerance_arg, default=None, metavar="R",
                         help="relative tolerance (default 1e-5 for float64, 1e-2 for float32)")
    p_check.add_argument("--atol", type=_tolerance_arg, default=None, metavar="A",
                         help="absolute tolerance on top of the rounding floor (default 0)")
    p_check.add_argument("--json", metavar="OUT", help="write the result (and these "
                         "arguments, under \"cli\") as JSON to OUT")
    p_check.add_argument("--progress", action="store_true",
                         help="show a progress bar on stderr")
    p_check.set_defaults(handler=check)

    p_sweep = sub.add_parser(
        "sweep", formatter_class=raw,
        help="finite-difference error against the step: truncation, plateau, rounding",
        description="Compare GRAD with finite differences of LOSS over a range of steps "
                    "(fastfd.step_sweep):\nprint the error at every step, the regimes "
                    "(truncation: slope ~order, rounding: slope ~-1)\nand the best step. "
                    "Exit 0.",
        epilog=_PROBLEM_EPILOG + """
examples:
  fastfd sweep losses:loss losses:grad --params params.npz --plot sweep.png
  fastfd sweep losses.py:loss :grad --params p.npz --steps=-2:-10:17 --method central4

--steps takes log10 exponents: -2:-10:17 is 17 steps from 1e-2 down to 1e-10 (half decades).
""")
    _add_problem_args(p_sweep)
    p_sweep.add_argument("--sample", type=_sample_arg, default="auto",
                         metavar="K|auto|all|FRACTION",
                         help="entries compared: auto (all up to 2000, else a stratified sample "
                              "of 2000; default), all, about K, or a fraction in (0, 1]")
    p_sweep.add_argument("--steps", type=_steps_arg, default=None, metavar="START:STOP:NUM",
                         help="NUM absolute steps from 10**START to 10**STOP, log-spaced "
                              "(default -1:-12:23)")
    p_sweep.add_argument("--json", metavar="OUT", help="write the sweep (and these "
                         "arguments, under \"cli\") as JSON to OUT")
    p_sweep.add_argument("--plot", metavar="OUT.png",
                         help="write a log-log plot of error against step (needs matplotlib)")
    p_sweep.set_defaults(handler=sweep)

    p_bench = sub.add_parser(
        "bench", formatter_class=raw,
        help="time fastfd against the textbook loop on this machine (ratio table)",
        description="Measure, on this machine and in this run, fastfd against the textbook "
                    "centered loop:\n(a) CIFAR-shaped linear softmax and SVM (N=500, D=3073, "
                    "C=10): one numpy analytic\ngradient, fastfd's full numerical gradient, and "
                    "the loop timed on a subset of coordinates\nand scaled to all; (b) a "
                    "generic numpy loss: fastfd's serial engine against the loop on\nthe same "
                    "coordinates (overhead per evaluation). Best-of-N times. Exit 0.",
        epilog="examples:\n  fastfd bench --quick     # D=769 and fewer coordinates: under a "
               "minute\n  fastfd bench             # full CIFAR shape")
    p_bench.add_argument("--quick", action="store_true",
                         help="smaller problem (D=769) and fewer loop coordinates")
    # hidden: tiny sizes for the tests
    p_bench.add_argument("--size", type=_size_arg, default=None, help=argparse.SUPPRESS)
    p_bench.add_argument("--loop-coords", type=_count_arg, default=None, help=argparse.SUPPRESS)
    p_bench.add_argument("--engine-coords", type=_count_arg, default=None,
                         help=argparse.SUPPRESS)
    p_bench.add_argument("--repeats", type=_count_arg, default=None, help=argparse.SUPPRESS)

    p_demo = sub.add_parser("demo", help="check correct and broken gradients of CIFAR-shaped "
                                         "linear classifiers, with timings",
                            formatter_class=raw,
                            description="Check a correct and a broken gradient of CIFAR-shaped "
                                        "linear softmax and SVM\nclassifiers and compare the "
                                        "time with the textbook loop. The first thing to run.",
                            epilog="example:\n  fastfd demo")
    p_demo.add_argument("--baseline-coords", type=int, default=300,
                        help="coordinates on which to time the textbook loop (default 300)")
    return parser


def _glue_steps(argv: list[str]) -> list[str]:
    """``--steps -1:-12:23`` as ``--steps=-1:-12:23``: argparse takes a value starting with
    '-' for an option."""
    glued, k = [], 0
    while k < len(argv):
        if (argv[k] == "--steps" and k + 1 < len(argv)
                and re.fullmatch(r"-[^:]*:[^:]*:[^:]*", argv[k + 1])):
            glued.append(f"--steps={argv[k + 1]}")
            k += 2
        else:
            glued.append(argv[k])
            k += 1
    return glued


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def _user_frame(error: BaseException, files: set[str]):
    """``(file, line, function)`` of the innermost traceback frame in the user's modules."""
    found = None
    for frame, line in traceback.walk_tb(error.__traceback__):
        if os.path.realpath(frame.f_code.co_filename) in files:
            found = (frame.f_code.co_filename, line, frame.f_code.co_name)
    return found


def _raised_by_fastfd(error: BaseException) -> bool:
    """Whether the innermost traceback frame is fastfd's own code (fastfd or its kernels)."""
    frames = list(traceback.walk_tb(error.__traceback__))
    if not frames:
        return False
    kernels = sys.modules.get("fastfd.kernels")
    roots = [os.path.dirname(os.path.realpath(__file__))]
    if kernels is not None and getattr(kernels, "__file__", None):
        roots.append(os.path.dirname(os.path.realpath(kernels.__file__)))
    innermost = os.path.realpath(frames[-1][0].f_code.co_filename)
    return any(innermost.startswith(root + os.sep) for root in roots)


def user_error_message(error: BaseException, user_files: set[str]) -> str | None:
    """The one-line message for a user error (exit 3), or None for a bug (exit 4)."""
    if isinstance(error, CliError):
        return str(error)
    frame = _user_frame(error, user_files)
    noted = any(str(note).startswith(_LOSS_NOTE) for note in getattr(error, "__notes__", ()))
    if frame is not None or noted:
        where = f" at {Path(frame[0]).name}:{frame[1]} in {frame[2]}()" if frame else ""
        return f"your code raised {type(error).__name__}{where}: {error}"
    if isinstance(error, (TypeError, ValueError, ImportError, OSError)):
        return str(error)
    if (isinstance(error, RuntimeError) and _raised_by_fastfd(error)
            and not str(error).startswith("internal error")):
        return str(error)
    return None


def main(argv=None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_glue_steps(argv))
    if args.command == "demo":
        return demo(args.baseline_coords)
    if args.command == "bench":
        return bench(args.quick, size=args.size, loop_coords=args.loop_coords,
                     engine_coords=args.engine_coords, repeats=args.repeats)
    user = UserCode()
    try:
        return args.handler(args, user, argv)
    except KeyboardInterrupt:
        print(f"fastfd {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        message = user_error_message(error, user.files)
        if message is None:
            traceback.print_exc()
            print(f"fastfd {args.command}: internal error, a bug in fastfd (please report it "
                  f"with the traceback above): {type(error).__name__}: {error}",
                  file=sys.stderr)
            return EXIT_INTERNAL
        if args.traceback:
            traceback.print_exc()
        print(f"fastfd {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
