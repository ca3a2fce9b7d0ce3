"""The command line's error handling: ``SystemExit`` in the user's code, bad option values of
``demo`` and ``bench``, errors raised in worker processes, and the package's shape (typed
exceptions between the layers, public API only).
"""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from fastfd import cli, errors
from fastfd.cli import timing
from fastfd.cli.errors import exit_code_and_message, user_frame
from tests.cli_fixtures.run import LOSSES, REPO, X, assert_user_error, fastfd, path_spec


@pytest.fixture(scope="module")
def x_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_errors") / "x.npz"
    np.savez(path, x=X)
    return path


# ------------------------------------------------------------------------------------------
# SystemExit raised by the user's code: exit 3, one line naming the module
# ------------------------------------------------------------------------------------------


ARGPARSE_AT_IMPORT = """\
\"\"\"A training script that parses its command line when imported (no __main__ guard).\"\"\"
import argparse

import numpy as np

parser = argparse.ArgumentParser(description="train a model")
parser.add_argument("--epochs", type=int, default=10)
options = parser.parse_args()


def loss(x):
    return float(np.sum(x**2))


def grad(x):
    return 2 * x
"""


def test_module_running_argparse_at_import(x_file, tmp_path):
    # written here: a file in tests/ would exit when pytest collects its doctests
    script = tmp_path / "argparse_at_import.py"
    script.write_text(ARGPARSE_AT_IMPORT)
    proc = fastfd("check", f"{script}:loss", ":grad", "--params", x_file)
    assert_user_error(proc, "argparse_at_import.py", "SystemExit(2)",
                      "argparse_at_import.py:8", "__name__", one_line=True)
    assert "unrecognized arguments" in proc.stderr  # what the script itself said
    assert proc.stdout == ""


def test_sys_exit_inside_the_loss_is_not_a_silent_success(x_file):
    proc = fastfd("check", path_spec("exiting_loss"), ":quad_grad", "--params", x_file)
    assert_user_error(proc, "sys.exit(0)", "losses.py:", "exiting_loss()", one_line=True)


def test_sys_exit_at_import_by_module_name(tmp_path, x_file, capsys, monkeypatch):
    (tmp_path / "exits_at_import.py").write_text("import sys\nprint('bye')\nsys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["check", "exits_at_import:loss", ":grad", "--params", str(x_file)]) == 3
    captured = capsys.readouterr()
    assert "exits_at_import" in captured.err and "SystemExit(0)" in captured.err
    assert "bye" in captured.err and captured.out == ""  # what it printed is in the message
    assert "exits_at_import" not in sys.modules


# ------------------------------------------------------------------------------------------
# demo and bench: bad values are usage errors, exit 3, one line
# ------------------------------------------------------------------------------------------


def test_demo_with_a_huge_baseline_is_refused_before_it_runs():
    proc = fastfd("demo", "--baseline-coords", 10**12)
    assert_user_error(proc, "--baseline-coords", "30730", one_line=True)
    assert "fastfd demo:" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("argv", [
    ["demo", "--baseline-coords", "0"],
    ["demo", "--baseline-coords", "-5"],
    ["demo", "--baseline-coords", "many"],
    ["bench", "--repeats", "0"],
    ["bench", "--loop-coords", "-1"],
    ["bench", "--size", "1,1,1"],
])
def test_demo_and_bench_option_values(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_demo_errors_go_through_the_same_handling(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise errors.InternalError("an invariant failed")

    monkeypatch.setattr("fastfd._baseline.cifar_like_problem", broken)
    assert cli.main(["demo"]) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error, a bug in fastfd" in err
    assert cli.main(["demo", "--baseline-coords", str(10**12)]) == 4  # same path, same bug
    capsys.readouterr()

    def refused(*args, **kwargs):
        raise ValueError("N must be positive")

    monkeypatch.setattr("fastfd._baseline.cifar_like_problem", refused)
    assert cli.main(["bench", "--quick"]) == 3
    err = capsys.readouterr().err
    assert err == "fastfd bench: error: N must be positive\n"


# ------------------------------------------------------------------------------------------
# the demo says when its first timings include Numba compilation
# ------------------------------------------------------------------------------------------


def test_compile_clock_sees_compilations_not_cache_hits():
    numba = pytest.importorskip("numba")

    @numba.njit
    def add_one(v):
        return v + 1.0

    with timing.numba_compilation() as first:
        add_one(1.0)
    with timing.numba_compilation() as again:
        add_one(2.0)
    assert first.seconds > 0 and again.seconds == 0


def test_demo_says_when_timings_include_compilation(monkeypatch, capsys):
    from fastfd import _baseline

    tiny = _baseline.cifar_like_problem(n=20, d=8, c=3)
    monkeypatch.setattr(_baseline, "cifar_like_problem", lambda: tuple(a.copy() for a in tiny))

    class Compiled:
        def __init__(self, seconds):
            self.seconds = seconds

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    clocks = iter([0.0, 1.25, 0.0, 0.0])  # warm-up, timed check: softmax, then SVM
    monkeypatch.setattr(timing, "numba_compilation", lambda: Compiled(next(clocks)))
    assert cli.main(["demo", "--baseline-coords", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("first run includes Numba compilation (1.2 s") == 1
    assert "cached on later runs" in out
    assert out.count("timing: fastfd checked all 27 entries") == 2


# ------------------------------------------------------------------------------------------
# errors from worker processes, and the typed contract
# ------------------------------------------------------------------------------------------


def test_loss_raising_in_a_loky_worker_is_the_users(x_file, capsys):
    assert cli.main(["check", path_spec("raising_loss"), ":quad_grad", "--params", str(x_file),
                     "--n-jobs", "2"]) == 3
    err = capsys.readouterr().err
    assert "your code raised ZeroDivisionError at losses.py:" in err
    assert "in raising_loss()" in err and "Traceback" not in err


def test_traceback_text_sent_back_by_a_pool():
    class _RemoteTraceback(Exception):  # as joblib/loky attach it: never raised
        pass

    text = (f'\n"""\nTraceback (most recent call last):\n  File "/site/joblib/parallel.py", '
            f'line 607, in __call__\n  File "{LOSSES}", line 77, in raising_loss\n'
            f'ZeroDivisionError: boom\n"""')
    error = ZeroDivisionError("boom")
    error.__cause__ = _RemoteTraceback(text)
    assert user_frame(error, {str(LOSSES.resolve())}) == (str(LOSSES), 77, "raising_loss")
    code, message = exit_code_and_message(error, {str(LOSSES.resolve())})
    assert code == 3 and "at losses.py:77 in raising_loss()" in message


def test_typed_contract():
    cases = [
        (errors.NonDeterministicLossError("differs"), 3),
        (errors.ThreadUnsafeLossError("threads"), 3),
        (errors.LossNotFiniteError("nan"), 3),
        (errors.InternalError("bug"), 4),
        (cli.UserCodeExit("exited"), 3),
        (SystemExit(0), 3),
        (ImportError("the workers cannot import 'm'"), 3),
        (ZeroDivisionError("in fastfd"), 4),
    ]
    for error, expected in cases:
        code, message = exit_code_and_message(error, set())
        assert code == expected, (error, message)
    code, message = exit_code_and_message(ValueError("first\nsecond\nthird"), set())
    assert message == "first [2 more lines: --traceback shows them]"


def test_the_cli_uses_the_public_api_and_no_message_text():
    """No private numerics (only the textbook loops and the table formatter), and no
    matching of fastfd's notes or messages."""
    allowed = {"fastfd._baseline", "fastfd._table"}
    for source in sorted((REPO / "fastfd" / "cli").glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [("fastfd." if node.level == 2 else "fastfd.cli." if node.level == 1
                          else "") + node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                private = [part for part in name.split(".")[1:] if part.startswith("_")]
                if name.startswith("fastfd"):
                    assert not private or name in allowed, f"{source.name} imports {name}"
        text = source.read_text()
        assert "parameters are unchanged" not in text and '"internal error' not in text
    assert not (REPO / "fastfd" / "cli.py").exists()
    assert Path(cli.__file__).name == "__init__.py" and callable(cli.main)
