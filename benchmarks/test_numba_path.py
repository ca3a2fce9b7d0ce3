"""The numba path: a ~10 us ``@njit`` loss of a flat float64 vector, K perturbations.

Compares, in the same run, per evaluation:

- ``numba_direct_per_eval``: the loss called from a plain compiled loop (perturb, call,
  restore): the pure cost of one evaluation;
- ``numba_1thread_per_eval`` / ``numba_2thread_per_eval``: :class:`NumbaEvaluator` with
  ``n_jobs=1`` / ``2``;
- ``serial_numba_loss_per_eval``: the generic :class:`SerialEvaluator` (a Python loop) on the
  same compiled loss.

``numba_overhead_per_eval`` is ``numba_1thread_per_eval - numba_direct_per_eval``: what the
evaluator adds to each evaluation (target <= 1 us).
"""

import numpy as np
import pytest
from numba import njit

from fastfd._params import flatten
from fastfd.executors import SerialEvaluator
from fastfd.executors._numba import NumbaEvaluator

from .conftest import TIMES, record

N = 3500  # entries: about 10 us per loss call
K = 4000  # perturbations per timed call
ROUNDS = 15


@njit
def smooth_loss(x):
    """A smooth sum; serial float64 accumulation (not vectorized), about 3 ns per entry."""
    total = 0.0
    for i in range(len(x)):
        total += np.sqrt(1.0 + x[i] * x[i])
    return total


@njit
def perturbed_loop(f, x, coords, offsets, out):
    """The textbook compiled loop: perturb one entry, call the loss, restore the entry."""
    for k in range(len(coords)):
        i = coords[k]
        xi = x[i]
        x[i] = xi + offsets[k]
        out[k] = f(x)
        x[i] = xi


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    layout, x = flatten(rng.standard_normal(N))
    coords = rng.integers(0, N, K)
    offsets = rng.choice([-1.0, 1.0], K) * 1e-5
    return layout, x, coords, offsets


def test_direct_loop(benchmark, problem):
    _, x, coords, offsets = problem
    x, out = x.copy(), np.empty(K)
    perturbed_loop(smooth_loss, x, coords, offsets, out)  # compile outside the timing
    benchmark.pedantic(perturbed_loop, args=(smooth_loss, x, coords, offsets, out),
                       rounds=ROUNDS)
    record("numba_direct_per_eval", benchmark, 1 / K)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_numba_evaluator(benchmark, problem, n_jobs):
    layout, x, coords, offsets = problem
    evaluator = NumbaEvaluator(n_jobs=n_jobs).bind(smooth_loss, layout)
    expected = SerialEvaluator().bind(smooth_loss, layout).perturbed_values(
        x.copy(), coords, offsets)
    np.testing.assert_array_equal(evaluator.perturbed_values(x, coords, offsets), expected)
    benchmark.pedantic(evaluator.perturbed_values, args=(x, coords, offsets), rounds=ROUNDS)
    record(f"numba_{n_jobs}thread_per_eval", benchmark, 1 / K)
    if n_jobs == 1 and "numba_direct_per_eval" in TIMES:
        TIMES["numba_overhead_per_eval"] = (
            TIMES["numba_1thread_per_eval"] - TIMES["numba_direct_per_eval"])


def test_serial_evaluator(benchmark, problem):
    layout, x, coords, offsets = problem
    evaluator = SerialEvaluator().bind(smooth_loss, layout)
    benchmark.pedantic(evaluator.perturbed_values, args=(x.copy(), coords, offsets),
                       rounds=5)
    record("serial_numba_loss_per_eval", benchmark, 1 / K)
