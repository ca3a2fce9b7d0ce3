"""Stacked evaluation of a small loss against the textbook loop, one call per perturbation.

Multinomial logistic regression, N=20 examples, D=64 features, C=10 classes (650 parameters,
a few tens of microseconds per unstacked call, mostly call overhead). Both compute the full
central numerical gradient (1,300 evaluations): fastfd with ``BatchedEvaluator`` on the loss
written with a leading stack axis, the textbook loop (``centered_on_coords`` over all 650
coordinates of one flat array) on the same function called with stacks of one. BLAS is held
to one thread in both.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastfd
from fastfd.executors._batched import BatchedEvaluator

from .baseline import centered_on_coords
from .conftest import record

N, D, C, REG = 20, 64, 10, 1e-3


def stacked_loss(X, y):
    """Mean cross-entropy + REG |W|^2 of stacks W (K, D, C), b (K, C): shape (K,)."""
    rows = np.arange(len(y))

    def loss(params):
        W, b = params["W"], params["b"]
        logits = np.matmul(X, W) + b[:, None, :]
        logits = logits - logits.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=-1))
        return (log_norm - logits[:, rows, y]).mean(axis=-1) + REG * np.sum(W * W, axis=(1, 2))

    return loss


@pytest.fixture(scope="module")
def logreg():
    rng = np.random.default_rng(0)
    y = rng.integers(0, C, size=N)
    X = rng.standard_normal((N, D)) + 0.5 * rng.standard_normal((C, D))[y]
    params = {"W": 0.1 * rng.standard_normal((D, C)), "b": 0.1 * rng.standard_normal(C)}
    return X, y, params


def test_textbook_loop_logreg(benchmark, logreg):
    X, y, params = logreg
    batched = stacked_loss(X, y)

    def flat_loss(theta):  # the same loss on one flat array, a stack of one
        return batched({"W": theta[None, :D * C].reshape(1, D, C), "b": theta[None, D * C:]})[0]

    theta = np.concatenate([params["W"].ravel(), params["b"]])
    coords = np.arange(theta.size)
    with threadpool_limits(1):
        loop = benchmark.pedantic(centered_on_coords, args=(flat_loss, theta, coords), rounds=10,
                                  warmup_rounds=1)
    with threadpool_limits(1):
        ours = fastfd.numerical_gradient(batched, params, evaluator=BatchedEvaluator())
    np.testing.assert_allclose(loop[:D * C].reshape(D, C), ours["W"], rtol=1e-5, atol=1e-9)
    record("loop_logreg_full", benchmark)


def test_batched_logreg(benchmark, logreg):
    X, y, params = logreg
    batched = stacked_loss(X, y)
    with threadpool_limits(1):
        numeric = benchmark.pedantic(fastfd.numerical_gradient, args=(batched, params),
                                     kwargs={"evaluator": BatchedEvaluator()},
                                     rounds=20, warmup_rounds=2)
    assert numeric["W"].shape == (D, C) and np.all(np.isfinite(numeric["W"]))
    record("batched_logreg_full", benchmark)
