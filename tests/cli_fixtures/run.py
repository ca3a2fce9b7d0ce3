"""Running the command line in the tests: ``python -m fastfd.cli ...`` in a subprocess, as a
user runs it, and the checks every user error must pass."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "cli_fixtures"
LOSSES = FIXTURES / "losses.py"
MODULE = "tests.cli_fixtures.losses"
X = (np.arange(12.0) - 5.5) / 8  # multiples of 1/16: raising_loss relies on it
# the machine is shared: keep the subprocesses on one BLAS thread
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}


def fastfd(*args, cwd=REPO, env=None, timeout=120, **popen):
    """Run ``python -m fastfd.cli *args``; the CompletedProcess (text stdout/stderr)."""
    if "stdout" not in popen:
        popen["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "fastfd.cli", *map(str, args)], text=True,
                          cwd=cwd, env=env or ENV, timeout=timeout, **popen)


def path_spec(name: str) -> str:
    return f"{LOSSES}:{name}"


def assert_user_error(proc, *fragments, one_line=False):
    """Exit 3, a clear message on stderr naming ``fragments``, and no traceback (and with
    ``one_line``, nothing else on stderr)."""
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    if one_line:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
