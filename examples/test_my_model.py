"""How to put gradient checks in your own pytest suite with ``fastfd.testing``.

``assert_gradient_close(f, grad, params, **kwargs)`` runs ``fastfd.check_gradient`` and raises
``AssertionError`` carrying the full report unless the verdict is "pass" (an inconclusive check
raises too: it proves nothing). It returns the passing check for further assertions. Any keyword
of ``check_gradient`` works: ``sample=`` for big models, ``directions=`` for random-direction
checks that see every entry at once, ``seed=``, ``rtol=``.

The model here stands for yours: a small two-layer tanh network for regression with hand-written
backprop. Run::

    python -m pytest examples/test_my_model.py -v
    python examples/test_my_model.py            # the same, through pytest.main
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest

from fastfd.testing import assert_gradient_close

# --- the code under test (in your project, imported from your package) ------------------------


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in),
        "b1": 0.1 * rng.standard_normal(n_hidden),
        "W2": rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden),
        "b2": 0.1 * rng.standard_normal(n_out),
    }


def loss(params, X, Y, reg=1e-2):
    """Mean squared error of a tanh network plus L2 on the weights."""
    hidden = np.tanh(X @ params["W1"] + params["b1"])
    residual = hidden @ params["W2"] + params["b2"] - Y
    weights = np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2)
    return 0.5 * np.mean(np.sum(residual**2, axis=1)) + reg * weights


def backprop(params, X, Y, reg=1e-2, *, transpose_bug=False):
    """Gradient of :func:`loss`; ``transpose_bug`` uses W2 instead of W2.T (square layers only)."""
    hidden = np.tanh(X @ params["W1"] + params["b1"])
    residual = (hidden @ params["W2"] + params["b2"] - Y) / len(X)
    W2_back = params["W2"] if transpose_bug else params["W2"].T
    dpre = (residual @ W2_back) * (1.0 - hidden**2)
    return {
        "W1": X.T @ dpre + 2 * reg * params["W1"],
        "b1": dpre.sum(axis=0),
        "W2": hidden.T @ residual + 2 * reg * params["W2"],
        "b2": residual.sum(axis=0),
    }


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture
def problem():
    rng = np.random.default_rng(42)
    X = rng.standard_normal((32, 5))
    Y = rng.standard_normal((32, 3))
    return X, Y, init_params(5, 8, 3)


def test_full_gradient(problem):
    """Every entry (163 of them) against central differences."""
    X, Y, params = problem
    result = assert_gradient_close(lambda p: loss(p, X, Y), lambda p: backprop(p, X, Y), params)
    assert result.n_checked == result.n_params
    assert not result.failed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_at_several_random_points(seed):
    """A gradient can be right at one point and wrong at another: check a few."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
    params = init_params(4, 6, 2, seed=seed)
    assert_gradient_close(lambda p: loss(p, X, Y), lambda p: backprop(p, X, Y), params)


def test_sampled_check_with_directions():
    """A bigger model: a stratified sample of entries plus random directions.

    The sample visits every array (at least 5 entries each, boundary slices first); each
    direction compares ``g . v`` with a directional difference, so it sees every entry.
    """
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((64, 40)), rng.standard_normal((64, 10))
    params = init_params(40, 100, 10)  # 5,110 parameters
    result = assert_gradient_close(lambda p: loss(p, X, Y), lambda p: backprop(p, X, Y),
                                   params, sample=200, directions=3, seed=0)
    assert result.sampled and result.confidence is not None  # what the sample proves
    assert len(result.directions) == 3
    assert {summary.name for summary in result.arrays if summary.n_checked} == set(params)


def test_a_bug_fails_with_the_report():
    """The assertion message carries the report: verdict and the failing entries by name."""
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((16, 4)), rng.standard_normal((16, 4))
    params = init_params(4, 4, 4)  # square layers: the transposed W2 still has the right shape
    with pytest.raises(AssertionError, match="FAIL") as error:
        assert_gradient_close(lambda p: loss(p, X, Y),
                              lambda p: backprop(p, X, Y, transpose_bug=True), params)
    failed_line = next(line for line in str(error.value).splitlines() if "FAILED" in line)
    assert "W1[" in failed_line or "b1[" in failed_line  # the wrong layer is named ...
    assert "W2[" not in failed_line  # ... and the output layer, which is right, is not


def main(argv=None) -> int:
    """``python examples/test_my_model.py [--quick]``: run this file's tests with pytest."""
    parser = argparse.ArgumentParser(description="Run the example test suite.")
    parser.add_argument("--quick", action="store_true", help="accepted; the tests are quick")
    parser.parse_args(argv)
    return pytest.main([__file__, "-q", "-p", "no:cacheprovider"])


if __name__ == "__main__":
    sys.exit(main())
