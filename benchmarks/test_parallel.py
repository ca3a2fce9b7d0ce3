"""Parallel evaluation of generic numpy losses: joblib processes against the serial engine and
the textbook loop, measured in the same run.

* the CIFAR-shaped softmax loss of ``kernels/reference.py`` (about 1 ms per call), 2,000
  sampled coordinates: ``n_jobs=2`` (loky) vs the serial engine with BLAS limited to one thread
  (target >= 1.8x), and vs the textbook loop as users run it (default BLAS threads);
* a two-layer ReLU net (D=3072, H=50, C=10, N=64: 154,160 parameters): the full central
  gradient with ``n_jobs=2`` vs the textbook loop timed on 2,000 coordinates and scaled, the
  loop with BLAS limited to one thread (target >= 1.8x: what two processes buy) and with
  the default BLAS threads (which already spread each matmul over the cores).
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastfd
from fastfd.kernels import reference

from .baseline import centered_on_coords
from .conftest import record

K = 2000


@pytest.fixture(scope="module")
def softmax_problem(cifar):
    W, X, y, reg = cifar
    grad = reference.softmax_grad(W, X, y, reg)
    return W, (lambda w: reference.softmax_loss(w, X, y, reg)), grad


def test_softmax_serial_one_blas_thread(benchmark, softmax_problem):
    W, loss, grad = softmax_problem
    with threadpool_limits(1):
        result = benchmark.pedantic(fastfd.check_gradient, args=(loss, grad, W),
                                    kwargs={"sample": K}, rounds=1)
    assert result.verdict == "pass"
    record("softmax_k2000_serial", benchmark)


@pytest.mark.parametrize("n_jobs", [2])
def test_softmax_loky(benchmark, softmax_problem, n_jobs):
    W, loss, grad = softmax_problem
    fastfd.check_gradient(loss, grad, W, sample=10, n_jobs=n_jobs)  # start the workers
    result = benchmark.pedantic(fastfd.check_gradient, args=(loss, grad, W),
                                kwargs={"sample": K, "n_jobs": n_jobs}, rounds=1)
    assert result.verdict == "pass"
    record(f"softmax_k2000_loky{n_jobs}", benchmark)


def test_softmax_textbook_loop_default_blas(benchmark, softmax_problem):
    W, loss, _ = softmax_problem
    coords = np.random.default_rng(0).choice(W.size, K, replace=False)
    benchmark.pedantic(centered_on_coords, args=(loss, W.copy(), coords), rounds=1)
    record("softmax_k2000_loop", benchmark)


def relu_net(seed=0, n=64, d=3072, h=50, c=10):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, n)
    params = {"W1": 1e-2 * rng.standard_normal((d, h)), "b1": np.zeros(h),
              "W2": 1e-1 * rng.standard_normal((h, c)), "b2": np.zeros(c)}

    def loss(p):
        hidden = np.maximum(0, X @ p["W1"] + p["b1"])
        scores = hidden @ p["W2"] + p["b2"]
        scores = scores - scores.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(scores).sum(axis=1)) - scores[np.arange(n), y])
                     + 1e-3 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)))

    return params, loss


@pytest.fixture(scope="module")
def net():
    return relu_net()


def test_relu_net_full_gradient_loky(benchmark, net):
    params, loss = net
    n_params = sum(v.size for v in params.values())
    assert n_params == 154_160
    benchmark.pedantic(fastfd.numerical_gradient, args=(loss, params), kwargs={"n_jobs": 2},
                       rounds=1)
    record("relu_full_loky2", benchmark)


@pytest.mark.parametrize("blas", ["1thread", "default"])
def test_relu_net_textbook_loop(benchmark, net, blas):
    params, loss = net
    flat = np.concatenate([v.reshape(-1) for v in params.values()])
    shapes = [(k, v.shape, v.size) for k, v in params.items()]

    def flat_loss(x):
        out, start = {}, 0
        for key, shape, size in shapes:
            out[key] = x[start:start + size].reshape(shape)
            start += size
        return loss(out)

    coords = np.random.default_rng(0).choice(flat.size, K, replace=False)
    with threadpool_limits(1 if blas == "1thread" else None):
        benchmark.pedantic(centered_on_coords, args=(flat_loss, flat, coords), rounds=1)
    record(f"relu_full_loop_{blas}", benchmark, flat.size / K)

