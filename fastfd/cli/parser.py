"""The command line's grammar: argparse, the types of the option values, their help texts.

A usage error exits with 3 (argparse's own 2 would read as "inconclusive" here). Checks that
involve several options at once are in :func:`check_combinations`, run right after parsing.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re

import numpy as np

from .errors import EXIT_USAGE

METHODS = ("central", "forward", "backward", "central4", "complex")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exits with 3: exit code 2
    means "inconclusive" here."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------------------------
# option values
# --------------------------------------------------------------------------------------------


def sample_arg(text: str):
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


def steps_arg(text: str) -> np.ndarray:
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


def _int_arg(text: str, ok, what: str) -> int:
    """``text`` as an integer satisfying ``ok``, else argparse's error saying ``what``."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
    return value


def count_arg(text: str) -> int:
    """A non-negative integer."""
    return _int_arg(text, lambda v: v >= 0, "a non-negative integer")


def positive_int_arg(text: str) -> int:
    """An integer >= 1."""
    return _int_arg(text, lambda v: v >= 1, "a positive integer")


def jobs_arg(text: str) -> int:
    """``--n-jobs``: a non-zero integer (joblib convention, -1 = all cores)."""
    return _int_arg(text, lambda v: v != 0,
                    "a non-zero integer (joblib convention: -1 = all cores)")


def positive_arg(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def tolerance_arg(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number; got {text!r}")
    return value


def size_arg(text: str) -> tuple[int, int, int]:
    """``N,D,C`` of the bench's problem (hidden option of the tests)."""
    try:
        n, d, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N,D,C; got {text!r}") from None
    if n < 1 or d < 2 or c < 2:
        raise argparse.ArgumentTypeError(f"need N >= 1, D >= 2, C >= 2; got {text!r}")
    return n, d, c


def glue_steps(argv: list[str]) -> list[str]:
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
# the commands
# --------------------------------------------------------------------------------------------


_PROBLEM_EPILOG = """\
MODULE is a module name (the current directory is searched first) or a path to a .py file;
LOSS and GRAD name attributes in it (dotted allowed: model.loss); GRAD may be written :NAME to
reuse LOSS's module. LOSS(params) must return a float, GRAD(params) the gradient shaped like
params; with --with-grad, LOSS returns (loss, grad) and GRAD is left out. The params file: an
.npz with one array passes that array itself (--dict: {name: array}); several arrays pass a
dict {name: array}; a .npy file passes its array. --data FILE.npz passes more arrays to LOSS
and GRAD: by keyword (LOSS(params, X=X, y=y, reg=reg)), or with --args in the file's order
(LOSS(params, X, y, reg)); 0-d arrays arrive as Python scalars.
"""


def _add_problem_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("loss", metavar="MODULE:LOSS", help="the loss, e.g. losses:loss or "
                        "path/to/losses.py:loss")
    parser.add_argument("grad", metavar="MODULE:GRAD", nargs="?", default=None,
                        help="the analytic gradient, e.g. losses:grad (or :grad for the same "
                             "module); left out with --with-grad")
    parser.add_argument("--with-grad", action="store_true",
                        help="LOSS returns (loss, grad), like scipy's jac=True or cs231n's "
                             "svm_loss_vectorized; give no GRAD")
    parser.add_argument("--params", required=True, metavar="FILE.npz",
                        help="the parameters: np.savez(FILE, W=W, b=b) (or a .npy)")
    parser.add_argument("--dict", action="store_true",
                        help="pass a dict {name: array} even when the file holds one array")
    parser.add_argument("--data", metavar="FILE.npz", default=None,
                        help="extra arrays for LOSS and GRAD, by keyword: LOSS(params, X=X, "
                             "y=y) for np.savez(FILE, X=X, y=y)")
    parser.add_argument("--args", action="store_true",
                        help="pass the --data arrays by position, in the file's order: "
                             "LOSS(params, X, y, reg)")
    parser.add_argument("--method", choices=METHODS, default="central",
                        help="finite-difference stencil (default: central)")
    parser.add_argument("--seed", type=count_arg, default=0,
                        help="seed of the sample (and of random directions); default 0")
    parser.add_argument("--n-jobs", type=jobs_arg, default=1, metavar="N",
                        help="workers for the loss evaluations (-1: all cores; default 1)")
    parser.add_argument("--backend", default=None, metavar="NAME",
                        help="joblib backend: loky (processes, the default when N != 1), "
                             "threading, dask (on the cluster of --scheduler)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="dask scheduler to run on (e.g. tcp://10.0.0.5:8786; default: "
                             "$DASK_SCHEDULER_ADDRESS); implies --backend dask. The workers "
                             "must be able to import a MODULE given by name (a .py path is "
                             "sent by value)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the verdict line (batch jobs); exit codes unchanged")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, also print the Python traceback (debugging)")


def build_parser(handlers: dict | None = None) -> Parser:
    """The parser of ``fastfd``; ``handlers`` maps command names to the functions run."""
    handlers = handlers or {}
    raw = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="fastfd", formatter_class=raw,
        description="Fast numerical gradients and honest gradient checks.",
        epilog="exit codes: 0 pass, 1 fail, 2 inconclusive, 3 usage or input error, "
               "4 internal error\nfirst time? run: fastfd demo")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

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
  fastfd check cs231n/classifiers/linear_svm.py:svm_loss_vectorized --with-grad \\
      --params W.npz --data data.npz --args          # np.savez("data.npz", X, y, reg)
  fastfd check losses:loss :grad --params p.npz --scheduler tcp://10.0.0.5:8786 --quiet

exit codes: 0 pass, 1 fail, 2 inconclusive, 3 usage or input error (one line on stderr),
4 internal error (a bug in fastfd, with its traceback). --json is written before anything is
printed; a closed stdout (| head -1) changes neither the JSON nor the exit code.
""")
    _add_problem_args(p_check)
    p_check.add_argument("--sample", type=sample_arg, default="auto",
                         metavar="K|auto|all|FRACTION",
                         help="entries to check: auto (all if it fits ~10 s, else a stratified "
                              "sample; default), all, about K entries, or a fraction in (0, 1]")
    p_check.add_argument("--directions", type=count_arg, default=0, metavar="M",
                         help="also check M random directions g.v (default 0)")
    p_check.add_argument("--step", type=positive_arg, default=None, metavar="H",
                         help="step for every entry (default: from the dtype, scaled by |x|)")
    p_check.add_argument("--rtol", type=tolerance_arg, default=None, metavar="R",
                         help="relative tolerance (default 1e-5 for float64, 1e-2 for float32)")
    p_check.add_argument("--atol", type=tolerance_arg, default=None, metavar="A",
                         help="absolute tolerance on top of the rounding floor (default 0)")
    p_check.add_argument("--json", metavar="OUT", help="write the result (and these "
                         "arguments, under \"cli\") as JSON to OUT, before printing; an "
                         "unwritable OUT fails before the check runs")
    p_check.add_argument("--progress", action="store_true",
                         help="show a progress bar on stderr")
    p_check.set_defaults(handler=handlers.get("check"))

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
--quiet prints only the best step.
""")
    _add_problem_args(p_sweep)
    p_sweep.add_argument("--sample", type=sample_arg, default="auto",
                         metavar="K|auto|all|FRACTION",
                         help="entries compared: auto (all up to 2000, else a stratified sample "
                              "of 2000; default), all, about K, or a fraction in (0, 1]")
    p_sweep.add_argument("--steps", type=steps_arg, default=None, metavar="START:STOP:NUM",
                         help="NUM absolute steps from 10**START to 10**STOP, log-spaced "
                              "(default -1:-12:23)")
    p_sweep.add_argument("--json", metavar="OUT", help="write the sweep (and these "
                         "arguments, under \"cli\") as JSON to OUT")
    p_sweep.add_argument("--plot", metavar="OUT.png",
                         help="write a log-log plot of error against step (needs matplotlib)")
    p_sweep.set_defaults(handler=handlers.get("sweep"))

    p_bench = sub.add_parser(
        "bench", formatter_class=raw,
        help="time fastfd against the textbook loop on this machine (ratio table)",
        description="Measure, on this machine and in this run, fastfd against the textbook "
                    "centered loop:\n(a) CIFAR-shaped linear softmax and SVM (N=500, D=3073, "
                    "C=10): one numpy analytic\ngradient, fastfd's full numerical gradient, and "
                    "the loop timed on a subset of coordinates\nand scaled to all; (b) a "
                    "generic numpy loss: fastfd's serial engine against the loop on\nas many "
                    "coordinates (overhead per evaluation). Best-of-N times. Exit 0.",
        epilog="examples:\n  fastfd bench --quick     # D=769 and fewer coordinates: under a "
               "minute\n  fastfd bench             # full CIFAR shape")
    p_bench.add_argument("--quick", action="store_true",
                         help="smaller problem (D=769) and fewer loop coordinates")
    p_bench.add_argument("--traceback", action="store_true",
                         help="on an error, also print the Python traceback (debugging)")
    # hidden: tiny sizes for the tests
    p_bench.add_argument("--size", type=size_arg, default=None, help=argparse.SUPPRESS)
    p_bench.add_argument("--loop-coords", type=positive_int_arg, default=None,
                         help=argparse.SUPPRESS)
    p_bench.add_argument("--engine-coords", type=positive_int_arg, default=None,
                         help=argparse.SUPPRESS)
    p_bench.add_argument("--repeats", type=positive_int_arg, default=None,
                         help=argparse.SUPPRESS)
    p_bench.set_defaults(handler=handlers.get("bench"))

    p_demo = sub.add_parser("demo", help="check correct and broken gradients of CIFAR-shaped "
                                         "linear classifiers, with timings",
                            formatter_class=raw,
                            description="Check a correct and a broken gradient of CIFAR-shaped "
                                        "linear softmax and SVM\nclassifiers and compare the "
                                        "time with the textbook loop. The first thing to run.\n"
                                        "The first run after an install includes the Numba "
                                        "compilation of fastfd's kernels\n(seconds; the demo "
                                        "says so): they are cached for later runs.",
                            epilog="example:\n  fastfd demo")
    p_demo.add_argument("--baseline-coords", type=positive_int_arg, default=300, metavar="K",
                        help="coordinates on which to time the textbook loop, 1 to 30730 "
                             "(default 300)")
    p_demo.add_argument("--traceback", action="store_true",
                        help="on an error, also print the Python traceback (debugging)")
    p_demo.set_defaults(handler=handlers.get("demo"))
    parser.commands = {"check": p_check, "sweep": p_sweep, "bench": p_bench, "demo": p_demo}
    return parser


def parse(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed, with the checks of :func:`check_combinations`.

    GRAD is an optional positional (``--with-grad`` leaves it out), which argparse fills (with
    nothing) as soon as it meets LOSS: a GRAD written after the options
    (``check m:loss --params p.npz m:grad``) comes back unrecognized and is put in its place.
    """
    args, extra = parser.parse_known_args(glue_steps(argv))
    if (extra and args.command in ("check", "sweep") and args.grad is None
            and not extra[0].startswith("-")):
        args.grad, extra = extra[0], extra[1:]
    if extra:
        command = getattr(parser, "commands", {}).get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    check_combinations(parser, args)
    return args


def check_combinations(parser: Parser, args: argparse.Namespace) -> None:
    """Usage errors of options that depend on each other (exit 3, as argparse's)."""
    if args.command not in ("check", "sweep"):
        return
    command = parser.commands[args.command]
    if args.grad is None and not args.with_grad:
        command.error("the following arguments are required: MODULE:GRAD (or --with-grad when "
                      "LOSS returns (loss, grad))")
    if args.grad is not None and args.with_grad:
        command.error(f"--with-grad means LOSS returns (loss, grad): give no GRAD (got "
                      f"{args.grad!r})")
    if args.args and args.data is None:
        command.error("--args passes the arrays of --data FILE.npz by position: give --data")
    if args.scheduler is not None:
        if args.backend not in (None, "dask"):
            command.error(f"--scheduler runs on a dask cluster: drop --backend {args.backend} "
                          "(or give --backend dask)")
        args.backend = "dask"
