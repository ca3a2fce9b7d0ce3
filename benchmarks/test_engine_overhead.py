"""Engine overhead per evaluation against the textbook loop, on the ~1 ms numpy softmax loss.

Both evaluate the same loss at the same k coordinates (central differences, 2 evaluations
each); the engine's extra work (flatten, plan, combine, compare) must stay under 5% per
evaluation.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastfd
from fastfd.kernels import reference

from .baseline import centered_on_coords
from .conftest import record

K = 200


@pytest.fixture(scope="module")
def problem(cifar):
    W, X, y, reg = cifar
    loss = lambda w: reference.softmax_loss(w, X, y, reg)  # noqa: E731
    grad = reference.softmax_grad(W, X, y, reg)
    return W, loss, grad


def test_textbook_loop(benchmark, problem):
    W, loss, _ = problem
    coords = np.random.default_rng(0).choice(W.size, K, replace=False)
    with threadpool_limits(1):
        benchmark.pedantic(centered_on_coords, args=(loss, W.copy(), coords), rounds=3)
    record("loop_per_eval", benchmark, 1 / (2 * K))


def test_engine(benchmark, problem):
    W, loss, grad = problem
    with threadpool_limits(1):
        result = benchmark.pedantic(
            fastfd.check_gradient, args=(loss, grad, W), kwargs={"sample": K}, rounds=3)
    assert result.verdict == "pass"
    record("engine_per_eval", benchmark, 1 / result.n_evals)
