"""The command line: ``fastfd check | sweep | bench``, exit codes, JSON, clear input errors.

Commands run as ``python -m fastfd.cli ...`` in a subprocess (as a user runs them); argument
parsing and help texts are also tested in-process, which is cheaper. The losses live in
``tests/cli_fixtures/losses.py``. ``fastfd demo`` and a full ``bench`` are too slow for the
suite; ``bench`` runs with tiny hidden sizes.
"""

import json
import os

import numpy as np
import pytest

from fastfd import cli
from fastfd._params import flatten
from fastfd._sampling import stratified_sample
from fastfd.cli import parser
from tests.cli_fixtures.run import (
    ENV,
    LOSSES,
    MODULE,
    X,
    assert_user_error,
    fastfd,
    path_spec,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Params files: a vector, dict params, and broken ones."""
    folder = tmp_path_factory.mktemp("cli")
    paths = {name: folder / f"{name}.npz" for name in
             ("x", "dict", "ints", "objects", "arr0")}
    np.savez(paths["x"], x=X)
    rng = np.random.default_rng(0)
    np.savez(paths["dict"], W=rng.standard_normal((2, 3)), b=rng.standard_normal(3))
    np.savez(paths["ints"], x=np.arange(4))
    np.savez(paths["objects"], x=np.array([1.0, "a"], dtype=object))
    np.savez(paths["arr0"], X)  # stored as arr_0
    paths["text"] = folder / "text.npz"
    paths["text"].write_text("not an archive")
    paths["folder"] = folder
    return paths


# ------------------------------------------------------------------------------------------
# check: verdicts and exit codes
# ------------------------------------------------------------------------------------------


def test_check_pass_module_name_prints_report_and_writes_json(files):
    out = files["folder"] / "pass.json"
    proc = fastfd("check", f"{MODULE}:quad_loss", f"{MODULE}:quad_grad",
                  "--params", files["x"], "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "fastfd gradient check: PASS" in proc.stdout
    assert "12 of 12 entries checked" in proc.stdout
    data = json.loads(out.read_text())
    assert data["verdict"] == "pass" and data["passed"] is True and data["exit_code"] == 0
    assert data["n_checked"] == 12
    assert data["cli"]["command"] == "check"
    assert data["cli"]["loss"] == f"{MODULE}:quad_loss"
    assert data["cli"]["sample"] == "auto"


def test_check_fail_names_the_wrong_entry(files):
    # the .py path form; GRAD ":name" reuses LOSS's module
    proc = fastfd("check", path_spec("quad_loss"), ":wrong_grad", "--params", files["x"])
    assert proc.returncode == 1, proc.stderr
    assert "fastfd gradient check: FAIL" in proc.stdout
    assert "FAILED (1): x[11]" in proc.stdout


def test_check_inconclusive_when_the_loss_is_rounding_noise(files):
    # 1e8 + 1e-6 * sum(x): the change is near the rounding of 1e8, for the finite
    # differences and for the Taylor test alike
    proc = fastfd("check", path_spec("noise_loss"), path_spec("noise_grad"),
                  "--params", files["x"])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "INCONCLUSIVE" in proc.stdout
    assert "noise limits them" in proc.stdout


def test_check_of_a_loss_that_ignores_its_params_is_a_user_error(files):
    proc = fastfd("check", path_spec("constant_loss"), ":quad_grad", "--params", files["x"])
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "does not depend on the argument" in proc.stderr and "Traceback" not in proc.stderr


def test_check_dict_params_with_several_arrays(files):
    proc = fastfd("check", path_spec("dict_loss"), ":dict_grad", "--params", files["dict"])
    assert proc.returncode == 0, proc.stderr
    assert "9 of 9 entries checked" in proc.stdout
    assert "per array:" in proc.stdout
    assert "W " in proc.stdout and "b " in proc.stdout


def test_check_one_array_is_passed_bare_unless_dict(files):
    bare = fastfd("check", path_spec("named_loss"), ":named_grad", "--params", files["x"])
    assert_user_error(bare, "named_loss", "IndexError")
    as_dict = fastfd("check", path_spec("named_loss"), ":named_grad", "--params", files["x"],
                     "--dict")
    assert as_dict.returncode == 0, as_dict.stderr
    assert "PASS" in as_dict.stdout


def test_check_arr_0_file_and_dotted_names(files):
    proc = fastfd("check", path_spec("model.loss"), ":model.grad", "--params", files["arr0"])
    assert proc.returncode == 0, proc.stderr
    assert "PASS" in proc.stdout


def test_check_sample_and_seed_pick_the_stratified_entries(files):
    out = files["folder"] / "sample.json"
    proc = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                  "--sample", "5", "--seed", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "5 of 12 entries checked (sampled" in proc.stdout
    data = json.loads(out.read_text())
    layout = flatten(X)[0]
    expected = layout.names(stratified_sample(layout, 5, np.random.default_rng(1)))
    assert sorted(e["name"] for e in data["worst"]) == sorted(expected)
    assert data["sampled"] is True and data["cli"]["seed"] == 1 and data["cli"]["sample"] == 5


def test_check_random_directions(files):
    out = files["folder"] / "directions.json"
    proc = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                  "--directions", "2", "--method", "central4", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "random directions (2):" in proc.stdout
    data = json.loads(out.read_text())
    assert [d["status"] for d in data["directions"]] == ["pass", "pass"]
    assert data["method"] == "central4"


def test_check_threads_give_the_serial_result(files):
    serial_json, threads_json = files["folder"] / "serial.json", files["folder"] / "threads.json"
    serial = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                    "--json", serial_json)
    threads = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                     "--n-jobs", "2", "--backend", "threading", "--json", threads_json)
    assert serial.returncode == threads.returncode == 0, threads.stderr
    serial_data, thread_data = json.loads(serial_json.read_text()), json.loads(
        threads_json.read_text())
    assert thread_data["cli"]["n_jobs"] == 2 and thread_data["cli"]["backend"] == "threading"
    assert thread_data["worst"] == serial_data["worst"]


# ------------------------------------------------------------------------------------------
# check: user errors give exit 3 and one clear line, never a traceback
# ------------------------------------------------------------------------------------------


def test_module_not_found(files):
    assert_user_error(fastfd("check", "no_such_module:loss", ":grad", "--params", files["x"]),
                      "no_such_module")
    assert_user_error(fastfd("check", "missing/losses.py:loss", ":grad", "--params", files["x"]),
                      "no such file", "missing/losses.py")


def test_module_that_fails_to_import(files, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy\n\nraise RuntimeError('cannot be imported')\n")
    assert_user_error(fastfd("check", f"{broken}:loss", ":grad", "--params", files["x"]),
                      "RuntimeError", "broken.py:3", "cannot be imported")


def test_missing_attribute_suggests_a_name(files):
    assert_user_error(fastfd("check", path_spec("quad_los"), ":quad_grad", "--params",
                             files["x"]), "no attribute 'quad_los'", "did you mean 'quad_loss'")


def test_not_callable(files):
    assert_user_error(fastfd("check", path_spec("NOT_CALLABLE"), ":quad_grad", "--params",
                             files["x"]), "NOT_CALLABLE", "not callable")


@pytest.mark.parametrize("params, fragments", [
    ("missing", ("params file not found",)),
    ("ints", ("dtype int64", "float")),
    ("objects", ("'x'", "allow_pickle=False")),
    ("text", ("not an .npz",)),
])
def test_bad_params_files(files, params, fragments):
    path = files[params] if params in files else files["folder"] / "missing.npz"
    proc = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", path)
    assert_user_error(proc, *fragments)


def test_gradient_of_the_wrong_shape(files):
    assert_user_error(fastfd("check", path_spec("quad_loss"), ":short_grad", "--params",
                             files["x"]), "shape (11,)", "(12,)")


def test_loss_returning_a_vector(files):
    assert_user_error(fastfd("check", path_spec("vector_loss"), ":quad_grad", "--params",
                             files["x"]), "scalar", "(12,)")


def test_exception_inside_the_loss_names_type_line_and_entry(files):
    proc = fastfd("check", path_spec("raising_loss"), ":quad_grad", "--params", files["x"])
    assert_user_error(proc, "ZeroDivisionError", "losses.py:", "raising_loss", "x[0]")
    shown = fastfd("check", path_spec("raising_loss"), ":quad_grad", "--params", files["x"],
                   "--traceback")
    assert shown.returncode == 3 and "Traceback" in shown.stderr


# ------------------------------------------------------------------------------------------
# sweep
# ------------------------------------------------------------------------------------------


def test_sweep_prints_table_writes_json_and_png(files):
    out_json, out_png = files["folder"] / "sweep.json", files["folder"] / "sweep.png"
    proc = fastfd("sweep", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                  "--steps", "-1:-10:10", "--json", out_json, "--plot", out_png)
    assert proc.returncode == 0, proc.stderr
    assert "fastfd step sweep" in proc.stdout and "best step" in proc.stdout
    assert "truncation" in proc.stdout
    data = json.loads(out_json.read_text())
    assert len(data["steps"]) == 10 and data["steps"][0] == pytest.approx(0.1)
    assert data["cli"]["command"] == "sweep"
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plot_without_matplotlib(files, tmp_path):
    fake = tmp_path / "matplotlib"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                                ENV.get("PYTHONPATH")]))}
    proc = fastfd("sweep", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                  "--plot", tmp_path / "sweep.png", env=env)
    assert_user_error(proc, "plotting needs matplotlib: pip install 'fastfd[plot]'")
    assert not (tmp_path / "sweep.png").exists()


# ------------------------------------------------------------------------------------------
# bench (tiny hidden sizes: the real one takes too long for the suite)
# ------------------------------------------------------------------------------------------


def test_bench_prints_the_ratio_table():
    proc = fastfd("bench", "--size", "40,9,3", "--loop-coords", "6", "--engine-coords", "6",
                  "--repeats", "1")
    assert proc.returncode == 0, proc.stderr
    for fragment in ("CPU cores", "numpy analytic loss+grad", "speedup per coordinate",
                     "scaled to all 27", "overhead per evaluation", "bench wall time"):
        assert fragment in proc.stdout, proc.stdout


# ------------------------------------------------------------------------------------------
# usage errors and help (argparse would exit 2, which means inconclusive here)
# ------------------------------------------------------------------------------------------


def test_usage_errors_exit_3_in_a_subprocess(files):
    unknown = fastfd("frobnicate")
    assert unknown.returncode == 3 and "invalid choice" in unknown.stderr
    bad_sample = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", files["x"],
                        "--sample", "1.5")
    assert bad_sample.returncode == 3 and "--sample" in bad_sample.stderr


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["check", "m:f"],  # no GRAD, no --params
    ["check", "m:f", "m:g", "--params", "p.npz", "--sample", "zero"],
    ["check", "m:f", "m:g", "--params", "p.npz", "--sample", "0"],
    ["check", "m:f", "m:g", "--params", "p.npz", "--method", "centre"],
    ["check", "m:f", "m:g", "--params", "p.npz", "--n-jobs", "0"],
    ["check", "m:f", "m:g", "--params", "p.npz", "--rtol", "-1"],
    ["sweep", "m:f", "m:g", "--params", "p.npz", "--steps", "-1:-12"],
    ["sweep", "m:f", "m:g", "--params", "p.npz", "--steps=a:b:c"],
])
def test_usage_errors_exit_3(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 3
    assert "error:" in capsys.readouterr().err


def test_missing_colon_is_a_clear_error(capsys, files):
    assert cli.main(["check", str(LOSSES), ":quad_grad", "--params", str(files["x"])]) == 3
    assert "MODULE:NAME" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("auto", "auto"), ("all", "all"), ("ALL", "all"), ("5", 5), ("0.25", 0.25), ("1.0", 1.0),
])
def test_sample_values(text, expected):
    assert parser.sample_arg(text) == expected


def test_steps_are_log10_exponents():
    np.testing.assert_allclose(parser.steps_arg("-1:-12:23"), np.logspace(-1, -12, 23))
    assert parser.glue_steps(["--steps", "-1:-12:23"]) == ["--steps=-1:-12:23"]


@pytest.mark.parametrize("command", ["check", "sweep", "bench", "demo"])
def test_help_says_what_and_gives_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and f"fastfd {command}" in text


def test_which_exceptions_are_user_errors():
    """By type and traceback, never by the wording of a message."""
    from fastfd import errors
    from tests.cli_fixtures import losses

    assert cli.user_error_message(cli.CliError("bad input"), set()) == "bad input"
    assert cli.user_error_message(ValueError("rtol must be ..."), set()) == "rtol must be ..."
    assert cli.user_error_message(errors.LossModifiedInputError("modified"), set()) == "modified"
    assert cli.user_error_message(errors.WorkerDiedError("died"), set()) == "died"
    try:
        losses.raising_loss(X + 1 / 32 * (np.arange(12) == 3))
    except ZeroDivisionError as raised:
        error = raised
    # a traceback frame in the user's files makes any exception the user's
    message = cli.user_error_message(error, {str(LOSSES.resolve())})
    assert message.startswith("your code raised ZeroDivisionError at losses.py:")
    assert "in raising_loss()" in message
    assert cli.user_error_message(error, set()) is None  # not a file of the user's: a bug
    # anything else from fastfd itself is a bug: exit 4 with the traceback, also an
    # InternalError, which is a RuntimeError and a FastFDError
    assert cli.user_error_message(KeyError("x"), set()) is None
    assert cli.user_error_message(errors.InternalError("copy"), set()) is None
    assert cli.user_error_message(RuntimeError("no dask client"), set()) is None
