"""``--backend dask`` from the command line, on a loopback cluster started by the test: the
CLI connects a ``distributed.Client`` to ``--scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``) for
the duration of the check, and a loss module the workers cannot import is a user error that
says so.
"""

import numpy as np
import pytest

from fastfd import cli
from tests.cli_fixtures.run import ENV, X, assert_user_error, fastfd, path_spec

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def x_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_dask") / "x.npz"
    np.savez(path, x=X)
    return path


def test_check_on_the_cluster_of_the_environment_variable(scheduler, x_file):
    # a .py path is sent to the workers by value
    proc = fastfd("check", path_spec("quad_loss"), ":quad_grad", "--params", x_file,
                  "--backend", "dask", env={**ENV, "DASK_SCHEDULER_ADDRESS": scheduler})
    assert proc.returncode == 0, proc.stderr
    assert "fastfd gradient check: PASS" in proc.stdout


def test_module_the_workers_cannot_import(scheduler, tmp_path, x_file):
    # importable here (the current directory), not on the workers
    (tmp_path / "only_here_losses.py").write_text(
        "import numpy as np\n\ndef loss(x):\n    return float(np.sum(x**2))\n\n"
        "def grad(x):\n    return 2 * x\n")
    proc = fastfd("check", "only_here_losses:loss", ":grad", "--params", x_file,
                  "--scheduler", scheduler, cwd=tmp_path)
    assert_user_error(proc, "the workers cannot import 'only_here_losses'",
                      "path/to/only_here_losses.py:NAME", one_line=True)


def test_dask_without_a_scheduler_is_a_usage_error(x_file, capsys, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert cli.main(["check", path_spec("quad_loss"), ":quad_grad", "--params", str(x_file),
                     "--backend", "dask"]) == 3
    assert "--scheduler ADDRESS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", path_spec("quad_loss"), ":quad_grad", "--params", str(x_file),
                  "--scheduler", "tcp://127.0.0.1:1", "--backend", "threading"])
    assert exit_info.value.code == 3
    assert "--scheduler runs on a dask cluster" in capsys.readouterr().err
