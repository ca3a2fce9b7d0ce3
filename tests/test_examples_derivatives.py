"""The derivative examples run (``main(["--quick"])``) and show what they claim to show:
verdicts, the entries a planted bug is named by, evaluation counts."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_quick(name: str, capsys, argv=("--quick",)):
    """Import ``examples/<name>.py`` by path and run its ``main``."""
    spec = importlib.util.spec_from_file_location(f"fastfd_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(list(argv))
    return result, capsys.readouterr().out


def index_name(symbol, index) -> str:
    return f"{symbol}[{', '.join(str(int(i)) for i in index)}]"


def names(symbol, mask) -> set[str]:
    return {index_name(symbol, ix) for ix in zip(*np.nonzero(mask))}


def test_layers_backward(capsys):
    result, out = run_quick("layers_backward", capsys)
    given = result.pop("inputs")
    for layer, reports in result.items():
        for key, report in reports.items():
            if key in ("right", "alt", "first"):
                assert report.verdict == "pass" and not report.failed, (layer, key)
                # two evaluations per entry, the noise line (and the kinks' pairwise probes)
                assert report.n_evals <= 2 * report.n_checked + 400, (layer, key)
            elif key in ("bug", "every"):
                assert report.verdict == "fail", (layer, key)
    assert result["conv"]["right"].n_checked == 2 * 3 * 8 * 8 + 3 * 3 * 3 * 3 + 3
    assert result["conv"]["right"].n_evals <= 2 * 468 + 40
    assert result["lstm"]["right"].n_checked == 3 * 4 + 2 * 3 * 5 + (4 + 5 + 1) * 20

    # each planted bug is named by exactly the entries it touches
    assert set(result["affine"]["bug"].failed) == {f"db[{j}]" for j in range(5)}
    assert set(result["relu"]["bug"].failed) == names("dx", given["relu"]["x"] < 0)
    assert set(result["batchnorm"]["bug"].failed) == {f"dgamma[{j}]" for j in range(4)}
    assert set(result["dropout"]["bug"].failed) == names("dx", given["dropout"]["mask"])
    conv = result["conv"]["bug"]
    assert len(conv.failed) == 384 and all(n.startswith("dx[") for n in conv.failed)
    assert [(a.name, a.verdict) for a in conv.arrays] == [("dx", "fail"), ("dw", "pass"),
                                                        ("db", "pass")]
    x = given["maxpool"]["x"]
    swapped = set()
    for n, c, i, j in itertools.product(range(2), range(2), range(2), range(2)):
        a, b = np.unravel_index(np.argmax(x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]), (2, 2))
        if a != b:  # the swap moves the gradient off the maximum, onto the other diagonal
            swapped |= {index_name("dx", (n, c, 2 * i + a, 2 * j + b)),
                        index_name("dx", (n, c, 2 * i + b, 2 * j + a))}
    assert swapped and set(result["maxpool"]["bug"].failed) == swapped
    assert set(result["rnn"]["bug"].failed) == {f"dWh[{i}, {j}]" for i in range(5)
                                                for j in range(5)}
    assert set(result["lstm"]["bug"].failed) == {f"dprev_c[{i}, {j}]" for i in range(3)
                                                 for j in range(5)}

    # max pooling with ties: the first maximum is a subgradient, every tied maximum is not
    ties = result["maxpool_ties"]
    windows = ties["tied_windows"]
    assert sorted(map(len, windows)) == [2, 2, 2, 2, 2, 3]
    tied = {index_name("dx", ix) for window in windows for ix in window}
    first, every = ties["first"], ties["every"]
    assert set(first.kinks) == tied and first.joint
    assert all(entry.status == "kink" for entry in first.joint)
    assert set(every.kinks) == tied  # each entry alone lies between its one-sided slopes
    pairs = {" + ".join(index_name("dx", ix) for ix in pair)
             for window in windows for pair in itertools.combinations(window, 2)}
    triple = next(w for w in windows if len(w) == 3)
    assert set(every.failed) == pairs | {f"{index_name('dx', triple[0])} + ... "
                                         "(3 tied entries)"}
    assert "caught by name" in out and "dx[0, 0, 0, 0]" in out


def test_least_squares_jacobian(capsys):
    result, out = run_quick("least_squares_jacobian", capsys)
    n = result["n"]
    assert n == 2000
    numerical = result["numerical"]
    assert numerical["sparse"] and numerical["rel_gap"] < 1e-9
    assert numerical["evals"] < 100  # noise lines + 2 per column group, not 2 n = 4,000
    right = result["right"]
    assert right.verdict == "pass" and right.n_groups == 3
    assert right.n_checked == 3 * n - 2 and right.shape == (n, n)
    assert right.n_evals == result["right_calls"] < 100
    bug = result["bug"]
    assert bug.verdict == "fail" and bug.failed == (result["bug_entry"],)
    assert result["bug_entry"] == "J[1199, x[1200]]"
    holes = result["holes"]
    assert holes.verdict == "fail"
    assert [e.name for e in holes.localized] == ["J[7, x[6]] (outside pattern)"]
    assert len(holes.pattern_errors) == 1 and "at J[7, x[6]]" in holes.pattern_errors[0]
    newton = result["newton"]
    assert newton["residual_norms"][-1] < 1e-5 * newton["residual_norms"][0]
    assert newton["error"] < 1e-6  # the O(h**2) discretization error
    assert result["final"].verdict == "pass"
    assert "FAILED (1): J[1199, x[1200]]" in out


def test_least_squares_jacobian_cost_does_not_grow_with_n(capsys):
    small, _ = run_quick("least_squares_jacobian", capsys, ["--n", "300"])
    assert small["right"].verdict == "pass" and small["bug"].failed == ("J[179, x[180]]",)
    # 3 groups at any n: 2 evaluations each, plus the noise lines (more outputs may need a
    # few more lines to resolve each output's noise, never O(n))
    for key in ("numerical", "right"):
        evals = small[key]["evals"] if key == "numerical" else small[key].n_evals
        assert 2 * 3 < evals < 100


def test_newton_hessian(capsys):
    result, out = run_quick("newton_hessian", capsys)
    hessian, hvp = result["hessian"], result["hvp"]
    d = 6
    assert hessian["right"].verdict == "pass" and hessian["right"].n_checked == d * d
    no_reg = hessian["no regularization"]
    assert no_reg.verdict == "fail"
    assert set(no_reg.failed) == {f"H[x[{i}], x[{i}]]" for i in range(d)}
    weight = hessian["weight p instead of p(1-p)"]
    assert weight.verdict == "fail" and len(weight.failed) == d * d
    right = hvp["right"]
    assert right.verdict == "pass" and right.taylor.verdict == "pass"
    assert right.taylor.fitted_slope == pytest.approx(3.0, abs=0.3)
    for label in ("no regularization", "weight p instead of p(1-p)"):
        wrong = hvp[label]
        assert wrong.verdict == "fail" and wrong.taylor.verdict == "fail"
        assert wrong.taylor.fitted_slope == pytest.approx(2.0, abs=0.3)
        assert wrong.failed and all(n.startswith("(H v") for n in wrong.failed)
    assert result["numerical_gap"] < 1e-9 and result["fd_gap"] < 1e-5
    losses = [loss for loss, _ in result["newton"]]
    grads = [g for _, g in result["newton"]]
    assert grads[-1] < 1e-12 and len(grads) <= 7
    assert all(a >= b for a, b in zip(losses, losses[1:]))
    assert grads[3] < grads[2] ** 1.5  # quadratic convergence
    assert result["at_optimum"].verdict == "pass"
    assert "slope" in out


def test_complex_step(capsys):
    result, out = run_quick("complex_step", capsys)
    for name in ("martins", "rosenbrock", "softmax"):
        row = result[name]
        n = row["n"]
        assert row["complex"]["error"] < 1e-14 < 1e-12 < row["central"]["error"]
        assert row["textbook"]["error"] > 1e-12
        assert row["complex"]["evals"] == n + 7  # f(x), the 6-point safety check, one per entry
        assert row["central"]["evals"] > 2 * n == row["textbook"]["evals"]
        central, imaginary = row["central"]["check"], row["complex"]["check"]
        assert central.verdict == imaginary.verdict == "pass"
        assert imaginary.n_evals == n + 7 < central.n_evals
    tiny = result["tiny_bug"]
    assert tiny["central"].verdict == "pass"  # 1e-7 relative is below central's rtol
    assert tiny["complex"].verdict == "fail"
    assert len(tiny["complex"].failed) == tiny["complex"].n_checked == 30
    assert result["refused"] and "not complex-safe" in result["refused"]
    assert "complex step" in out
