"""The plain-numpy oracle (fastfd.kernels.reference), the shared input checks and the JIT config.

The reference is itself checked against loops over examples that follow the textbook formulas
one scalar at a time, so every fast kernel is ultimately compared to something anyone can read.
"""

import doctest
import importlib
import math

import numpy as np
import pytest

from fastfd.kernels import LinearData, prepare_data, reference
from fastfd.kernels import _config as config

SHAPES = [(1, 1, 2), (1, 3, 2), (5, 1, 3), (7, 4, 3), (12, 5, 6)]


def make_problem(n_examples, n_features, n_classes, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_examples, n_features))
    y = rng.integers(0, n_classes, size=n_examples)
    W = scale * rng.normal(size=(n_features, n_classes))
    return W, X, y


def naive_softmax_loss(W, X, y, reg):
    """One example at a time, max-shifted log-sum-exp, math.fsum for the sums."""
    losses = []
    for i in range(X.shape[0]):
        scores = [math.fsum(X[i] * W[:, j]) for j in range(W.shape[1])]
        top = max(scores)
        log_sum_exp = top + math.log(math.fsum(math.exp(s - top) for s in scores))
        losses.append(log_sum_exp - scores[y[i]])
    return math.fsum(losses) / X.shape[0] + reg * math.fsum((W * W).ravel())


def naive_svm_loss(W, X, y, reg, delta=1.0):
    losses = []
    for i in range(X.shape[0]):
        scores = [math.fsum(X[i] * W[:, j]) for j in range(W.shape[1])]
        for j in range(W.shape[1]):
            if j != y[i]:
                losses.append(max(0.0, scores[j] - scores[y[i]] + delta))
    return math.fsum(losses) / X.shape[0] + reg * math.fsum((W * W).ravel())


def naive_svm_grad(W, X, y, reg, delta=1.0):
    """Loop form of the subgradient with the documented convention: a margin counts if > 0."""
    dW = 2 * reg * W.copy()
    for i in range(X.shape[0]):
        scores = X[i] @ W
        for j in range(W.shape[1]):
            if j != y[i] and scores[j] - scores[y[i]] + delta > 0:
                dW[:, j] += X[i] / X.shape[0]
                dW[:, y[i]] -= X[i] / X.shape[0]
    return dW


def central_differences(loss, W, h=1e-5):
    grad = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        plus, minus = W.copy(), W.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_softmax_reference_matches_naive_loop_and_finite_differences(shape, reg):
    W, X, y = make_problem(*shape, seed=sum(shape))
    loss, dW = reference.softmax_loss_and_grad(W, X, y, reg)
    assert loss == pytest.approx(naive_softmax_loss(W, X, y, reg), rel=1e-13)
    assert reference.softmax_loss(W, X, y, reg) == loss
    np.testing.assert_array_equal(reference.softmax_grad(W, X, y, reg), dW)
    numerical = central_differences(lambda V: naive_softmax_loss(V, X, y, reg), W)
    np.testing.assert_allclose(dW, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("delta", [1.0, 0.25])
def test_svm_reference_matches_naive_loops(shape, delta):
    W, X, y = make_problem(*shape, seed=sum(shape) + 1)
    loss, dW = reference.svm_loss_and_grad(W, X, y, 0.3, delta)
    assert loss == pytest.approx(naive_svm_loss(W, X, y, 0.3, delta), rel=1e-13)
    assert reference.svm_loss(W, X, y, 0.3, delta) == loss
    np.testing.assert_allclose(dW, naive_svm_grad(W, X, y, 0.3, delta), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(reference.svm_grad(W, X, y, 0.3, delta), dW)


def test_softmax_reference_is_stable_for_huge_scores():
    W, X, y = make_problem(6, 3, 4, seed=3)
    W *= 1e3 / np.abs(X @ W).max()  # scores up to 1e3: a naive exp(1e3) overflows
    loss, dW = reference.softmax_loss_and_grad(W, X, y, 0.0)
    assert np.isfinite(loss) and np.isfinite(dW).all()
    assert loss == pytest.approx(naive_softmax_loss(W, X, y, 0.0), rel=1e-12)


def test_svm_reference_tie_convention():
    # one example, score of the wrong class exactly delta below the right one: margin == 0
    X, y = np.array([[1.0]]), np.array([0])
    loss, dW = reference.svm_loss_and_grad(np.array([[1.0, 0.0]]), X, y, 0.0)
    assert loss == 0.0
    np.testing.assert_array_equal(dW, [[0.0, 0.0]])  # margin == 0 does not count
    loss, dW = reference.svm_loss_and_grad(np.array([[1.0, 0.5]]), X, y, 0.0)
    assert loss == 0.5
    np.testing.assert_array_equal(dW, [[-1.0, 1.0]])


@pytest.mark.parametrize("loss_name", ["softmax", "svm"])
def test_reference_perturbed_deltas_are_loss_differences(loss_name):
    W, X, y = make_problem(5, 3, 3, seed=11)
    loss = getattr(reference, f"{loss_name}_loss")
    deltas = getattr(reference, f"{loss_name}_perturbed_deltas")
    rows, cols, offsets = np.array([0, 2, 1]), np.array([1, 0, 2]), np.array([0.5, -0.25, 1e-3])
    expected = []
    for d, c, h in zip(rows, cols, offsets, strict=True):
        perturbed = W.copy()
        perturbed[d, c] += h
        expected.append(loss(perturbed, X, y, 0.2) - loss(W, X, y, 0.2))
    np.testing.assert_array_equal(deltas(W, X, y, 0.2, rows, cols, offsets), expected)
    assert W.dtype == np.float64  # untouched input


def naive_kink_flag(W, X, y, d, c, step, delta=1.0):
    """Does a margin moved by W[d, c] change sign (or sit at 0) somewhere in [-step, step]?"""
    for i in range(X.shape[0]):
        if X[i, d] == 0:
            continue
        scores = X[i] @ W
        for j in range(W.shape[1]):
            if j == y[i] or (y[i] != c and j != c):
                continue  # not a hinge, or a hinge W[d, c] does not move
            margin = scores[j] - scores[y[i]] + delta
            slope = X[i, d] if j == c else -X[i, d]
            ends = (margin - step * slope, margin + step * slope)
            if margin == 0 or min(ends) <= 0 <= max(ends):
                return True
    return False


def test_svm_kink_flags_reference_matches_naive_scan():
    rng = np.random.default_rng(5)
    X = rng.integers(-2, 3, size=(8, 3)).astype(float)  # small integers: exact ties happen
    y = rng.integers(0, 3, size=8)
    W = rng.integers(-1, 2, size=(3, 3)).astype(float)
    rows, cols = np.divmod(np.arange(9), 3)
    for step in (0.0, 0.25, 0.5, 1.0, 3.0):
        flags = reference.svm_kink_flags(W, X, y, rows, cols, np.full(9, step))
        expected = [naive_kink_flag(W, X, y, d, c, step) for d, c in zip(rows, cols, strict=True)]
        np.testing.assert_array_equal(flags, expected)


def test_svm_kink_flags_reference_boundaries():
    X, y, W = np.array([[2.0]]), np.array([0]), np.zeros((1, 2))  # the one margin is 1, speed 2
    rows, cols = np.array([0, 0]), np.array([1, 0])  # wrong class moves +2t, own class moves -2t
    for step, flagged in ((0.5, True), (np.nextafter(0.5, 0), False)):
        np.testing.assert_array_equal(
            reference.svm_kink_flags(W, X, y, rows, cols, np.full(2, step)), [flagged] * 2
        )
    tie = np.array([[1.0, 0.0]])  # margin exactly 0 at W
    assert reference.svm_kink_flags(tie, np.array([[1.0]]), y, [0], [1], [0.0])[0]
    assert not reference.svm_kink_flags(tie, np.array([[0.0]]), y, [0], [1], [1.0])[0]


def test_prepare_data_fields():
    X = np.array([[1.0, -2.0], [3.0, 4.0], [-5.0, 0.5]], dtype=np.float32)
    y = np.array([2, 0, 2], dtype=np.int8)
    data = prepare_data(X, y)
    assert isinstance(data, LinearData)
    assert data.n_classes == 3
    assert data.X.dtype == np.float32 and data.X.flags.c_contiguous
    assert data.y.dtype == np.int64
    np.testing.assert_array_equal(data.XT, X.T)
    assert data.XT.flags.c_contiguous
    np.testing.assert_array_equal(data.class_sums, [[3.0, 0.0, -4.0], [4.0, 0.0, -1.5]])
    assert data.class_sums.dtype == np.float64
    np.testing.assert_array_equal(data.col_absmax, [5.0, 4.0])
    assert prepare_data(X, np.zeros(3, dtype=int)).n_classes == 2  # at least 2 classes
    assert prepare_data(X, y, n_classes=5).class_sums.shape == (2, 5)
    with pytest.raises(AttributeError):
        data.n_classes = 4  # frozen


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "error", "match"),
    [
        (np.ones((2, 2), dtype=int), [0, 1], {}, TypeError, r"X must be a float32 or float64"),
        (np.ones(3), [0, 1, 1], {}, ValueError, r"X must be 2-D"),
        (np.ones((0, 2)), np.zeros(0, int), {}, ValueError, r"X must have at least one row"),
        ([[1.0, np.nan]], [0], {}, ValueError, r"X must be finite; got X\[0, 1\] = nan"),
        ([[1.0, np.inf]], [0], {}, ValueError, r"X must be finite"),
        (np.ones((2, 2)), [True, False], {}, TypeError, r"y must be an array of integer"),
        (np.ones((2, 2)), [0.0, 1.0], {}, TypeError, r"y must be an array of integer"),
        (np.ones((2, 2)), [0, 1, 1], {}, ValueError, r"y must have shape \(N,\) = \(2,\)"),
        (np.ones((2, 2)), [0, -1], {}, ValueError, r"y must hold labels in \[0, 2\).*y\[1\] = -1"),
        (np.ones((2, 2)), [0, 3], {"n_classes": 3}, ValueError, r"y\[1\] = 3"),
        (np.ones((2, 2)), [0, 0], {"n_classes": 1}, ValueError, r"n_classes must be >= 2"),
        (np.ones((2, 2)), [0, 0], {"n_classes": 2.0}, TypeError, r"n_classes must be an integer"),
    ],
)
def test_prepare_data_rejects_bad_input(X, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        prepare_data(np.asarray(X), np.asarray(y), **kwargs)


def test_jit_config_keeps_nan_inf_semantics():
    for options in (config.JIT_OPTIONS, config.PARALLEL_OPTIONS):
        flags = options["fastmath"]
        assert flags is False or not ({"nnan", "ninf", "fast"} & set(flags))
    assert config.PARALLEL_OPTIONS.keys() == config.JIT_OPTIONS.keys() | {"parallel"}


@pytest.mark.parametrize(
    ("value", "expected"), [("0", False), ("off", False), ("1", True), ("Yes", True), ("", True)]
)
def test_env_flag_parsing(monkeypatch, value, expected):
    monkeypatch.setenv("FASTFD_NUMBA_TEST_FLAG", value)
    assert config._env_flag("FASTFD_NUMBA_TEST_FLAG", True) is expected


def test_env_flag_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv("FASTFD_NUMBA_TEST_FLAG", "maybe")
    with pytest.raises(ValueError, match=r"FASTFD_NUMBA_TEST_FLAG must be one of 0, false"):
        config._env_flag("FASTFD_NUMBA_TEST_FLAG", True)


@pytest.mark.parametrize("module_name", ["reference", "softmax", "svm", "_data"])
def test_docstring_examples_run(module_name):
    module = importlib.import_module(f"fastfd.kernels.{module_name}")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failures, attempted = doctest.testmod(module, optionflags=flags)
    assert attempted > 0 and failures == 0
