"""Command line: ``fastfd check | sweep | bench | demo``.

Synopsis::

    fastfd check MODULE:LOSS [MODULE:GRAD | --with-grad] --params FILE.npz
                 [--data FILE.npz [--args]] [--sample K|auto|all|FRACTION] [--directions M]
                 [--method central|forward|backward|central4] [--step H] [--n-jobs N]
                 [--backend NAME] [--scheduler ADDRESS] [--seed S] [--rtol R] [--atol A]
                 [--dict] [--json OUT] [--quiet] [--progress] [--traceback]
    fastfd sweep MODULE:LOSS [MODULE:GRAD | --with-grad] --params FILE.npz
                 [--data FILE.npz [--args]] [--sample ...] [--method ...]
                 [--steps START:STOP:NUM] [--seed S] [--n-jobs N] [--backend NAME]
                 [--scheduler ADDRESS] [--dict] [--json OUT] [--plot OUT.png] [--quiet]
                 [--traceback]
    fastfd bench [--quick] [--traceback]
    fastfd demo [--baseline-coords K] [--traceback]

``MODULE`` is an importable module name (the current directory is searched first) or a path to
a ``.py`` file; ``LOSS`` and ``GRAD`` are attribute names in it, dotted ones allowed
(``model.loss``). ``GRAD`` may leave out the module (``:grad``) to reuse the loss's. Both must
be callables: ``LOSS(params) -> float`` and ``GRAD(params) -> gradient like params``; with
``--with-grad``, ``LOSS(params) -> (loss, grad)`` and no ``GRAD`` is given (scipy's
``jac=True``, ``grad=True`` of :func:`fastfd.check_gradient`).

Params file rule: a ``.npz`` holding exactly one array passes that array itself (whatever its
name, ``arr_0`` included); several arrays pass a dict ``{name: array}`` in the file's order;
a ``.npy`` file passes its array. ``--dict`` passes a dict even for a single array (the key is
its name in the ``.npz``, or the file's stem for a ``.npy``). Files are read with
``allow_pickle=False``: object arrays are refused.

``--data FILE.npz`` passes the file's arrays to ``LOSS`` and ``GRAD`` as keyword arguments
(``LOSS(params, X=X, y=y, reg=reg)``: ``kwargs=``), or with ``--args`` as positional ones in
the file's order (``LOSS(params, X, y, reg)``: ``args=``); 0-d arrays arrive as Python
scalars. So ``fastfd check linear_svm.py:svm_loss_vectorized --with-grad --params W.npz
--data data.npz --args`` checks cs231n's ``svm_loss_vectorized(W, X, y, reg) -> (loss, dW)``
after ``np.savez("data.npz", X, y, reg)``, with no wrapper module.

``--backend dask`` runs the loss evaluations on the dask cluster whose scheduler is
``--scheduler ADDRESS`` (or ``$DASK_SCHEDULER_ADDRESS``), connected for the duration of the
check; ``--scheduler`` alone implies ``--backend dask``. A ``MODULE`` given as a path is sent
to the workers by value; one given by name must be importable on the workers.

``--json OUT`` is written before anything is printed, and an unwritable ``OUT`` (a missing
directory, a directory) fails before the check runs. A closed stdout (``| head -1``) ends the
output without changing the exit code. ``--quiet`` prints only the verdict line.

Exit codes:

- 0: ``check`` passed; ``sweep``, ``bench`` and ``demo`` ran (``demo``: as expected).
- 1: ``check`` failed: some entry or direction of the gradient is wrong (``demo``: a verdict
  other than the expected one).
- 2: ``check`` is inconclusive: the finite differences cannot decide (kinks, rounding noise).
- 3: usage or input error (one line on stderr, no traceback; ``--traceback`` shows it).
- 4: internal error: an unexpected exception inside fastfd, printed with its traceback (a bug).
- 130: interrupted (Ctrl-C).

What counts as a user error (exit 3), by type (see :mod:`fastfd.cli.errors`):

- bad command-line arguments, for every command (argparse would exit 2, which means
  inconclusive here);
- ``MODULE:NAME`` that cannot be resolved: missing colon, module or file not found, an
  exception while importing it, ``SystemExit`` at import time (a script that runs argparse
  when imported), attribute not found, not callable;
- a params or data file that is missing, not an ``.npz``/``.npy``, empty, or holds object
  arrays; an output path that cannot be written; no dask scheduler for ``--backend dask``;
- fastfd's errors about the loss (:mod:`fastfd.errors`: it modified its input in place, is
  not finite, not deterministic, not thread-safe, a worker process died), except
  :class:`~fastfd.errors.InternalError`;
- ``TypeError``, ``ValueError``, ``ImportError`` and ``OSError`` raised by fastfd's validation
  or by the libraries it calls (integer params, a gradient of the wrong shape, a loss that does
  not return a scalar, an unknown backend, a missing optional dependency, dask workers that
  cannot import the loss's module);
- any exception raised inside the user's loss or gradient (recognised by a traceback frame in
  the user's files, also in the traceback a worker process sends back), ``sys.exit()`` there
  included: reported with its type, message, entry and the line of the user's code that
  raised it.

Anything else is treated as a bug of fastfd: exit 4 with the traceback.

The package's modules follow the jobs: :mod:`~fastfd.cli.parser` (the grammar),
:mod:`~fastfd.cli.loading` (the user's modules and files), :mod:`~fastfd.cli.commands`
(check, sweep), :mod:`~fastfd.cli.timing` (demo, bench), :mod:`~fastfd.cli.errors` (exit
codes).
"""

from __future__ import annotations

import contextlib
import sys
import traceback

from . import commands, timing
from .errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    UserCodeExit,
    exit_code_and_message,
    user_error_message,
)
from .loading import UserCode, load_data, load_params
from .parser import build_parser, parse

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliError",
    "UserCode",
    "UserCodeExit",
    "build_parser",
    "load_data",
    "load_params",
    "main",
    "parse",
    "user_error_message",
]


def _demo(args, user, argv) -> int:
    return timing.demo(args.baseline_coords, out=commands.PipeSafe())


def _bench(args, user, argv) -> int:
    return timing.bench(args.quick, out=commands.PipeSafe(), size=args.size,
                        loop_coords=args.loop_coords, engine_coords=args.engine_coords,
                        repeats=args.repeats)


HANDLERS = {"check": commands.check, "sweep": commands.sweep, "demo": _demo, "bench": _bench}


def _flush_stdout() -> None:
    """Flush stdout; a reader that closed the pipe ends the output, it is not an error."""
    with contextlib.suppress(OSError, ValueError):
        commands.PipeSafe(sys.stdout).flush()


def main(argv=None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(HANDLERS)
    args = parse(parser, argv)
    user = UserCode()
    try:
        code = args.handler(args, user, argv)
    except KeyboardInterrupt:
        _flush_stdout()
        print(f"fastfd {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (Exception, SystemExit) as error:  # SystemExit: only the user's code raises it here
        code, message = exit_code_and_message(error, user.files, user.locate)
        _flush_stdout()
        if code == EXIT_INTERNAL:
            traceback.print_exc()
            print(f"fastfd {args.command}: internal error, a bug in fastfd (please report it "
                  f"with the traceback above): {message}", file=sys.stderr)
            return EXIT_INTERNAL
        if getattr(args, "traceback", False):
            traceback.print_exc()
        print(f"fastfd {args.command}: error: {message}", file=sys.stderr)
        return code
    _flush_stdout()
    return code
