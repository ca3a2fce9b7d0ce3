"""The command line's outputs and inputs: a closed stdout, ``--json`` paths, ``--quiet``, and
``--data``/``--args``/``--with-grad`` for losses with extra arguments (cs231n's signature).

Subprocesses where the behaviour lives in the process (pipes, exit codes, one line on
stderr); in-process ``main([...])`` for the rest, which is cheaper.
"""

import json
import os
import subprocess

import numpy as np
import pytest

from fastfd import cli
from tests.cli_fixtures.run import MODULE, X, assert_user_error, fastfd, path_spec


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_output")
    rng = np.random.default_rng(0)
    paths = {"folder": folder, "x": folder / "x.npz", "W": folder / "W.npz",
             "svm_data": folder / "svm_data.npz", "named_svm_data": folder / "named.npz",
             "shift": folder / "shift.npz", "quad_x": folder / "quad_x.npz"}
    np.savez(paths["x"], x=X)
    W = 0.1 * rng.standard_normal((5, 3))
    X_data, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    np.savez(paths["W"], W=W)
    np.savez(paths["svm_data"], X_data, y, 0.1)  # positional: arr_0, arr_1, arr_2 (0-d)
    np.savez(paths["named_svm_data"], X=X_data, y=y, reg=0.1)
    np.savez(paths["shift"], A=rng.standard_normal((4, 4)), shift=np.float64(0.5))
    np.savez(paths["quad_x"], x=rng.standard_normal(4))
    return paths


# ------------------------------------------------------------------------------------------
# a closed stdout: the JSON is written first, the exit code is the verdict's
# ------------------------------------------------------------------------------------------


def test_closed_stdout_keeps_exit_code_and_json(files):
    """``fastfd check ... --json out.json | head -0``: the reader is gone before the report is
    printed. The verdict's exit code (1: fail) and the JSON survive; stderr stays clean."""
    out = files["folder"] / "piped.json"
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: every write to stdout fails with EPIPE
    try:
        proc = fastfd("check", path_spec("quad_loss"), ":wrong_grad", "--params", files["x"],
                      "--json", out, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "", proc.stderr  # no BrokenPipeError, no "Exception ignored"
    data = json.loads(out.read_text())
    assert data["verdict"] == "fail" and data["exit_code"] == 1


def test_unwritable_json_fails_before_the_check_in_one_line(files):
    # a module that does not exist: the error about --json comes first, so nothing was
    # imported or run
    missing = files["folder"] / "no_such_dir" / "out.json"
    proc = fastfd("check", "no_such_module:loss", ":grad", "--params", files["x"],
                  "--json", missing)
    assert_user_error(proc, "--json", "does not exist", one_line=True)
    assert proc.stdout == ""


def test_json_to_a_directory_is_refused_before_the_check(files, capsys):
    assert cli.main(["check", "no_such_module:loss", ":grad", "--params", str(files["x"]),
                     "--json", str(files["folder"])]) == 3
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# --quiet: the verdict line only
# ------------------------------------------------------------------------------------------


def test_quiet_prints_only_the_verdict_line(files):
    out = files["folder"] / "quiet.json"
    proc = fastfd("check", path_spec("quad_loss"), ":wrong_grad", "--params", files["x"],
                  "--quiet", "--json", out)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == ["fastfd gradient check: FAIL"]
    assert json.loads(out.read_text())["cli"]["quiet"] is True


def test_quiet_in_process_for_pass_and_sweep(files, capsys):
    assert cli.main(["check", path_spec("quad_loss"), ":quad_grad", "--params",
                     str(files["x"]), "-q"]) == 0
    assert capsys.readouterr().out.splitlines() == ["fastfd gradient check: PASS"]
    assert cli.main(["sweep", path_spec("quad_loss"), ":quad_grad", "--params",
                     str(files["x"]), "--steps=-1:-8:8", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastfd step sweep: best step")


# ------------------------------------------------------------------------------------------
# --data, --args, --with-grad
# ------------------------------------------------------------------------------------------


def test_cs231n_signature_needs_no_wrapper(files):
    """``svm_loss_vectorized(W, X, y, reg) -> (loss, dW)`` with ``np.savez(data, X, y, reg)``."""
    out = files["folder"] / "svm.json"
    proc = fastfd("check", f"{MODULE}:svm_loss_vectorized", "--with-grad", "--params",
                  files["W"], "--data", files["svm_data"], "--args", "--json", out)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "PASS" in proc.stdout and "15 of 15 entries checked" in proc.stdout
    record = json.loads(out.read_text())["cli"]
    assert record["with_grad"] is True and record["args"] is True
    assert record["grad"] is None


def test_data_by_keyword_and_scalars(files, capsys):
    assert cli.main(["check", path_spec("shifted_loss"), ":shifted_grad", "--params",
                     str(files["quad_x"]), "--data", str(files["shift"])]) == 0
    assert "PASS" in capsys.readouterr().out
    # the same with --with-grad and a file of named arrays, by keyword
    assert cli.main(["check", f"{MODULE}:svm_loss_vectorized", "--with-grad", "--params",
                     str(files["W"]), "--data", str(files["named_svm_data"])]) == 0
    assert "PASS" in capsys.readouterr().out
    # 0-d arrays arrive as Python scalars, in the file's order
    args, kwargs = cli.load_data(str(files["svm_data"]), positional=True)
    assert kwargs == {} and len(args) == 3 and isinstance(args[2], float) and args[2] == 0.1
    args, kwargs = cli.load_data(str(files["named_svm_data"]))
    assert args == () and list(kwargs) == ["X", "y", "reg"] and kwargs["reg"] == 0.1


def test_data_mistakes_are_user_errors(files, capsys):
    common = ["--params", str(files["W"])]
    # unnamed arrays cannot be keywords
    assert cli.main(["check", f"{MODULE}:svm_loss_vectorized", "--with-grad", *common,
                     "--data", str(files["svm_data"])]) == 3
    assert "--args" in capsys.readouterr().err
    # a loss returning (loss, grad) without --with-grad: the engine's TypeError, exit 3
    assert cli.main(["check", f"{MODULE}:svm_loss_vectorized", ":quad_grad", *common,
                     "--data", str(files["svm_data"]), "--args"]) == 3
    assert "(loss, grad)" in capsys.readouterr().err
    for argv, fragment in (
        (["check", path_spec("quad_loss"), *common], "--with-grad"),
        (["check", path_spec("quad_loss"), ":quad_grad", "--with-grad", *common], "give no GRAD"),
        (["check", path_spec("quad_loss"), ":quad_grad", "--args", *common], "--data"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 3
        assert fragment in capsys.readouterr().err
    assert cli.main(["check", path_spec("quad_loss"), ":quad_grad", *common, "--data",
                     str(files["folder"] / "missing.npz")]) == 3
    assert "data file not found" in capsys.readouterr().err


def test_grad_after_the_options_and_unknown_arguments(files, capsys):
    assert cli.main(["check", path_spec("quad_loss"), "--params", str(files["x"]), ":quad_grad",
                     "-q"]) == 0
    assert capsys.readouterr().out.splitlines() == ["fastfd gradient check: PASS"]
    for argv in (["check", path_spec("quad_loss"), ":quad_grad", "extra", "--params", "p.npz"],
                 ["check", path_spec("quad_loss"), "--params", "p.npz", "--frobnicate"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 3
        assert "unrecognized arguments" in capsys.readouterr().err


def test_help_documents_the_new_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    text = capsys.readouterr().out
    for option in ("--with-grad", "--data", "--args", "--scheduler", "DASK_SCHEDULER_ADDRESS",
                   "--quiet", "--json"):
        assert option in text, option
