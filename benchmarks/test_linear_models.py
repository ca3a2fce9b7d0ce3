"""CIFAR-shaped linear classifiers: Numba kernels and exact incremental numerical gradients.

N=500, D=3073 (3072 pixel-like values, mean subtracted, plus a bias column), C=10,
W = 1e-4 * randn, reg = 2.5e4, fixed seeds. The textbook central loop is timed on 1,000
coordinates and scaled to all 30,730 (stated in the ratio table's labels).
"""

import numpy as np
import pytest

import fastfd
from fastfd.kernels import reference, softmax, svm
from fastfd.models import LinearSoftmax, LinearSVM

from .baseline import centered_on_coords
from .conftest import record

KINDS = {
    "softmax": (LinearSoftmax, reference.softmax_loss_and_grad, softmax.softmax_loss_and_grad,
                reference.softmax_loss),
    "svm": (LinearSVM, reference.svm_loss_and_grad, svm.svm_loss_and_grad, reference.svm_loss),
}
LOOP_COORDS = 1000


@pytest.mark.parametrize("kind", list(KINDS))
def test_numpy_loss_and_grad(benchmark, cifar, kind):
    W, X, y, reg = cifar
    benchmark(KINDS[kind][1], W, X, y, reg)
    record(f"numpy_{kind}_lg", benchmark)


@pytest.mark.parametrize("kind", list(KINDS))
def test_numba_loss_and_grad(benchmark, cifar, kind):
    W, X, y, reg = cifar
    KINDS[kind][2](W, X, y, reg)  # compile / load the cache outside the timing
    benchmark(KINDS[kind][2], W, X, y, reg)
    record(f"numba_{kind}_lg", benchmark)


@pytest.mark.parametrize("kind", list(KINDS))
def test_full_numerical_gradient_via_model(benchmark, cifar, kind):
    W, X, y, reg = cifar
    model = KINDS[kind][0](X, y, reg)
    fastfd.numerical_gradient(model, W)  # warm-up: kernels compiled or loaded
    g = benchmark(fastfd.numerical_gradient, model, W)
    a = model.grad(W)
    assert np.linalg.norm(g - a) / (np.linalg.norm(g) + np.linalg.norm(a)) <= 1e-9
    record(f"model_{kind}_full", benchmark)


@pytest.mark.parametrize("directions", [None, 0])
@pytest.mark.parametrize("kind", list(KINDS))
def test_sampled_check_via_model(benchmark, cifar, kind, directions):
    W, X, y, reg = cifar
    model = KINDS[kind][0](X, y, reg)
    grad = model.grad(W)
    fastfd.check_gradient(model, grad, W, sample=1000, directions=directions)
    result = benchmark(fastfd.check_gradient, model, grad, W, sample=1000,
                       directions=directions)
    assert result.verdict == "pass"
    # the default (3 random directions) costs full loss evaluations; directions=0 does not
    record(f"model_{kind}_k1000" + ("" if directions is None else "_nodir"), benchmark)


@pytest.mark.parametrize("kind", list(KINDS))
def test_textbook_loop_1000_coords(benchmark, cifar, kind):
    W, X, y, reg = cifar
    loss = KINDS[kind][3]
    coords = np.random.default_rng(0).choice(W.size, LOOP_COORDS, replace=False)
    benchmark.pedantic(centered_on_coords, args=(lambda w: loss(w, X, y, reg), W.copy(), coords),
                       rounds=1)
    record(f"loop_{kind}_full", benchmark, W.size / LOOP_COORDS)
