"""``fastfd check`` and ``fastfd sweep``: load the problem, run the public API, write the
outputs, print, and return the exit code.

Order of work, so that a long run is never wasted: the output paths are checked first, then
the user's modules, params and data are loaded, the check runs (on the dask cluster of
``--scheduler`` for the duration of the check, when one is given), the files (``--json``,
``--plot``) are written, and only then is anything printed: a closed stdout
(``fastfd check ... | head -1``) loses nothing and changes no exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from .errors import EXIT_CODES, CliError
from .loading import UserCode, load_data, load_params


class PipeSafe:
    """A text stream (stdout) whose reader may go away: a closed pipe (``| head -1``) ends
    the output instead of raising.

    On the first ``BrokenPipeError`` the stream's file descriptor is pointed at
    ``os.devnull`` (Python's documented recipe), so later writes and the interpreter's final
    flush are dropped silently and the command carries on to return the exit code its
    verdict gives.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            stdout_to_devnull(self.stream)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            stdout_to_devnull(self.stream)


class Output:
    """What a command prints: the verdict line always, the rest unless ``--quiet``."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = PipeSafe(stream)
        self.quiet = quiet

    def report(self, text: str) -> None:
        """Text shown unless ``--quiet``."""
        if not self.quiet:
            print(text, file=self.stream)

    def verdict(self, text: str) -> None:
        """The line shown even with ``--quiet``."""
        print(text, file=self.stream)


def stdout_to_devnull(stream=None) -> None:
    """Point ``stream`` (stdout) at ``os.devnull`` after its reader closed the pipe."""
    stream = stream or sys.stdout
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return  # not a file (tests capture stdout in memory)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def check_output_path(path: str | None, flag: str) -> None:
    """Fail before the (maybe long) run when ``path`` cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{flag} {path} is a directory; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"{flag} {path}: directory {str(folder)!r} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise CliError(f"{flag} {path}: the file is not writable")
    if not target.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: directory {str(folder)!r} is not writable")


def write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise CliError(f"cannot write JSON to {path}: {error}") from None


def cli_record(args, argv) -> dict:
    """The command's arguments, JSON-ready, for the "cli" key of the JSON output."""
    from .. import __version__

    record = {"argv": list(argv), "fastfd_version": __version__}
    for key, value in vars(args).items():
        if key in ("handler", "traceback"):
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        record[key] = value
    return record


def load_problem(args, user: UserCode):
    """``(f, grad, params, call)``: the loss, the gradient (a callable or True for
    ``--with-grad``), the params, and the ``args=``/``kwargs=`` of ``--data``."""
    f, module_text = user.resolve(args.loss, "LOSS")
    if args.with_grad:
        grad = True
    else:
        grad, _ = user.resolve(args.grad, "GRAD", default_module=module_text)
    params = load_params(args.params, args.dict)
    extra, keywords = load_data(args.data, positional=args.args)
    return f, grad, params, {"args": extra, "kwargs": keywords}


@contextlib.contextmanager
def cluster(args, user: UserCode):
    """A ``distributed.Client`` connected to ``--scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``)
    for the duration of the block when ``--backend dask``; nothing otherwise. An ImportError
    on the cluster where the user named a module says how to send it by value instead."""
    if args.backend != "dask":
        yield None
        return
    address = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address is None:
        raise CliError("--backend dask runs on a dask cluster: give its scheduler with "
                       "--scheduler ADDRESS (e.g. tcp://10.0.0.5:8786) or set "
                       "DASK_SCHEDULER_ADDRESS")
    try:
        import distributed
    except ImportError:
        raise CliError("--backend dask needs dask.distributed: pip install 'fastfd[dask]'"
                       ) from None
    try:
        client = distributed.Client(address, set_as_default=True)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise CliError(f"cannot connect to the dask scheduler at {address}: "
                       f"{type(error).__name__}: {error}") from None
    with client:
        try:
            yield client
        except ImportError as error:
            if not user.by_name:
                raise
            # the workers import modules given by name; a path is sent to them by value
            raise CliError(f"{error} (if that is your module: give it as a path, e.g. "
                           f"path/to/{user.by_name[0].replace('.', '/')}.py:NAME, and fastfd "
                           "sends it to the workers by value)") from error


def check(args, user: UserCode, argv=(), out=None) -> int:
    """``fastfd check``: run :func:`fastfd.check_gradient`, print the report, exit by verdict."""
    from .. import check_gradient

    output = Output(out, quiet=args.quiet)
    check_output_path(args.json, "--json")
    f, grad, params, call = load_problem(args, user)
    with cluster(args, user):
        result = check_gradient(
            f, grad, params, **call, sample=args.sample, directions=args.directions,
            method=args.method, step=args.step, rtol=args.rtol, atol=args.atol, seed=args.seed,
            n_jobs=args.n_jobs, backend=args.backend, progress=args.progress,
        )
    code = EXIT_CODES[result.verdict]
    if args.json:
        write_json(args.json, {**result.to_dict(), "exit_code": code,
                               "cli": cli_record(args, argv)})
    report = str(result)
    verdict_line, _, rest = report.partition("\n")
    output.verdict(verdict_line)
    if rest:
        output.report(rest)
    if args.json:
        output.report(f"JSON written to {args.json}")
    return code


def sweep(args, user: UserCode, argv=(), out=None) -> int:
    """``fastfd sweep``: run :func:`fastfd.step_sweep`, write JSON and plot, print its table."""
    from .. import step_sweep

    output = Output(out, quiet=args.quiet)
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            raise CliError("plotting needs matplotlib: pip install 'fastfd[plot]'") from None
        matplotlib.use("Agg")  # files only: no display needed
    f, grad, params, call = load_problem(args, user)
    with cluster(args, user):
        result = step_sweep(f, grad, params, **call, steps=args.steps, sample=args.sample,
                            method=args.method, seed=args.seed, n_jobs=args.n_jobs,
                            backend=args.backend)
    if args.json:
        write_json(args.json, {**result.to_dict(), "cli": cli_record(args, argv)})
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.0, 4.5))
        try:
            result.plot(ax=ax)
            fig.tight_layout()
            fig.savefig(args.plot, dpi=120)
        finally:
            plt.close(fig)
    if output.quiet:
        output.verdict("fastfd step sweep: " + (
            "no step could be evaluated" if result.best_step is None else
            f"best step {result.best_step:.2e} (norm rel error {result.best_error:.2e})"))
    output.report(str(result))
    if args.json:
        output.report(f"JSON written to {args.json}")
    if args.plot:
        output.report(f"plot written to {args.plot}")
    return 0
