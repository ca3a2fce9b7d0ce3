"""The examples run (``main(["--quick"])``) and show what they claim to show."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` by path (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"fastfd_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, capsys):
    result = load_example(name).main(["--quick"])
    return result, capsys.readouterr().out


def test_cs231n_linear_classifiers(capsys):
    result, out = run_quick("cs231n_linear_classifiers", capsys)
    for part in ("(a)", "(b)", "(c)", "(d)"):
        assert part in out
    for name in ("SVM", "softmax"):
        speed = result["speed"][name]
        assert speed["fastfd_err"] < 1e-10 < speed["loop_err"]  # forward h=1e-5 vs exact

    table = result["step_table"]
    assert [h for h, *_ in table] == [10.0**e for e in range(-10, 0)]
    softmax_errors = [row[1] for row in table]
    best = int(np.argmin(softmax_errors))
    assert 0 < best < len(table) - 1  # truncation on the right, rounding on the left
    assert softmax_errors[0] > 2 * softmax_errors[best]
    assert softmax_errors[-1] > 0.1
    exact_errors = [row[3] for row in table]  # no cancellation: the error only shrinks with h
    assert exact_errors[0] < 1e-7

    checks = result["checks"]
    assert checks["correct SVM gradient"].verdict == "pass"
    forgot = next(v for k, v in checks.items() if "forgets" in k)
    assert forgot.verdict == "fail" and forgot.failed
    assert checks["softmax"].verdict == "pass" and checks["softmax"].confidence

    training = result["training"]
    assert training["gradient descent"][0] < training["random search"][0]
    assert training["trajectory_gap"] < 1e-12


def test_neural_networks_demystified(capsys):
    result, out = run_quick("neural_networks_demystified", capsys)
    assert 1e-12 < result["ratio_textbook"] < 1e-7
    assert abs(result["ratio_fastfd"] - result["ratio_textbook"]) < 1e-9
    assert result["check"].verdict == "pass"
    delta2 = result["broken"]["delta2"]
    assert delta2.verdict == "fail"
    assert set(delta2.failed) == {f"[0][{i}, {j}]" for i in range(2) for j in range(3)}
    assert result["broken"]["entry"].failed == ("[0][1, 2]",)
    assert "failing entries: [0][1, 2]" in out
    assert result["init_verdicts"] == {"pass": 200}
    # correct gradients above the 1e-8 rule of thumb exist, and a smaller e shrinks the worst
    assert result["init_above"] >= 1 and "above the 1e-8 rule of thumb" in out
    at_1e4, at_1e6 = result["worst_ratios"]
    assert at_1e6 < at_1e4 / 3
    assert result["worst"].verdict == "pass"


def test_real_data_digits(capsys):
    result, out = run_quick("real_data_digits", capsys)
    softmax = result["softmax"]
    assert softmax.verdict == "pass" and softmax.n_checked == softmax.n_params == 650
    full = result["net_full"]
    assert full.verdict == "pass" and not full.sampled
    sampled = result["net_sampled"]
    assert sampled.verdict == "pass" and sampled.sampled
    assert "95% confidence" in sampled.confidence
    assert all(s.n_checked >= min(5, s.n_params) for s in sampled.arrays)
    buggy = result["net_buggy"]
    assert buggy.verdict == "fail"
    entries = [n for n in buggy.failed if not n.startswith("direction")]
    assert entries and all(name.startswith("b1[") for name in entries)
    # the random directions of a sampled check fail too, and localize every wrong b1 entry
    assert [e.name for e in buggy.localized] == [f"b1[{i}]" for i in range(8)]
    assert "Textbook centered loop" in out


def test_kinks_and_float32(capsys):
    result, out = run_quick("kinks_and_float32", capsys)
    assert result["ties"] == [(1, 2)]
    tied = result["tied"]
    assert tied.verdict == "pass" and tied.kinks and not tied.failed
    assert result["sign_error"].verdict == "fail"
    assert result["sign_error"].failed == (result["flipped"],)

    relu = result["relu"]
    for convention in ("z > 0", "z >= 0"):
        assert relu[convention].verdict == "pass" and relu[convention].kinks
    assert relu["no mask"].verdict == "fail"

    floats = result["float"]
    assert floats[("float64", "correct")].verdict == "pass"
    assert floats[("float64", "0.1% too large")].verdict == "fail"
    f32 = floats[("float32", "correct")]
    assert f32.verdict == "pass" and f32.rtol > floats[("float64", "correct")].rtol
    assert any("float32" in reason for reason in f32.reasons)
    assert floats["optimum"].verdict != "fail"  # a correct zero gradient is never failed
    assert floats["optimum_wrong"].verdict == "fail"
    all_kinks = floats["all_kinks"]  # every entry at a kink, every value a subgradient's
    assert all_kinks.verdict == "pass" and len(all_kinks.kinks) == all_kinks.n_checked
    assert all_kinks.joint and not all_kinks.failed


def test_large_model_sampling(capsys):
    result, out = run_quick("large_model_sampling", capsys)
    assert result["n_params"] == 100_000
    sampled = result["sampled"]
    assert sampled.verdict == "pass" and sampled.n_checked == 1000
    assert "fewer than 0.3%" in sampled.confidence
    directed = result["directions"]
    assert directed.verdict == "pass" and len(directed.directions) == 3
    caught = result["caught"]
    assert caught.verdict == "fail"
    assert any(name.startswith("direction") for name in caught.failed)
    localized = getattr(caught, "localized", None)
    if localized is not None:
        assert [entry.name for entry in localized] == [result["bad_entry"]]
    assert result["extra_mb"] >= 0
    assert "Peak RSS" in out


def test_dask_cluster(capsys):
    pytest.importorskip("distributed")
    result, out = run_quick("dask_cluster", capsys)
    assert result["same"] and result["dask"].passed and result["serial"].passed
    assert "identical numbers to the serial run: True" in out
    # the ratio comes with its explanation: the overhead measured next to the loss's cost
    assert result["overhead_s"] >= 0 and "per evaluation against" in out
    assert ("slower than serial" in out) or ("faster than serial" in out)


def test_my_model_suite_passes():
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLES / "test_my_model.py"), "-q",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=120, cwd=EXAMPLES.parent,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "6 passed" in completed.stdout
