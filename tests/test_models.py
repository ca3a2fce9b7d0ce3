import numpy as np
import pytest

import fastfd
from fastfd.executors import SerialEvaluator
from fastfd.kernels import reference
from fastfd.models import LinearSoftmax, LinearSVM
from tests import naive

MODELS = {
    "softmax": (LinearSoftmax, reference.softmax_loss, reference.softmax_grad),
    "svm": (LinearSVM, reference.svm_loss, reference.svm_grad),
}


def problem(n=30, d=7, c=4, seed=0, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    X = (scale * rng.standard_normal((n, d))).astype(dtype)
    X[:, -1] = 1.0  # bias column
    y = rng.integers(0, c, size=n)
    W = (0.05 * rng.standard_normal((d, c))).astype(dtype)
    return W, X, y


@pytest.mark.parametrize("kind", list(MODELS))
def test_model_loss_and_grad_match_reference(kind):
    Model, loss, grad = MODELS[kind]
    W, X, y = problem()
    m = Model(X, y, 0.3)
    assert m(W) == pytest.approx(loss(W, X, y, 0.3), rel=1e-12)
    np.testing.assert_allclose(m.grad(W), grad(W, X, y, 0.3), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", list(MODELS))
def test_numerical_gradient_via_model_is_exact_to_rounding(kind):
    Model, loss, grad = MODELS[kind]
    W, X, y = problem(scale=50.0)  # pixel-like magnitudes make truncation error visible
    m = Model(X, y, 0.3)
    g = fastfd.numerical_gradient(m, W)
    a = m.grad(W)
    rel = np.linalg.norm(g - a) / (np.linalg.norm(g) + np.linalg.norm(a))
    assert rel < 1e-9
    # the generic engine on the same loss agrees to its own (worse) accuracy
    generic = fastfd.numerical_gradient(lambda w: loss(w, X, y, 0.3), W)
    np.testing.assert_allclose(g, generic, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", list(MODELS))
def test_model_evaluator_equals_serial_evaluation(kind):
    Model, loss, _ = MODELS[kind]
    W, X, y = problem()
    m = Model(X, y, 0.3)
    from fastfd._params import flatten

    layout, x = flatten(W)
    coords = np.arange(W.size)
    offsets = np.linspace(-0.3, 0.3, W.size)
    fast = m.fastfd_evaluator().bind(m, layout).perturbed_values(x, coords, offsets)
    slow = SerialEvaluator().bind(lambda w: loss(w, X, y, 0.3), layout).perturbed_values(
        x, coords, offsets)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    np.testing.assert_array_equal(x, W.reshape(-1))


@pytest.mark.parametrize("kind", list(MODELS))
def test_check_users_own_gradient(kind):
    Model, _, grad = MODELS[kind]
    W, X, y = problem()
    m = Model(X, y, 0.3)
    ok = fastfd.check_gradient(m, lambda w: grad(w, X, y, 0.3), W)
    assert ok.verdict == "pass" and ok.n_checked == W.size, ok

    def forgot_bias(w):
        g = grad(w, X, y, 0.3)
        g[-1] = 0.0
        return g

    bad = fastfd.check_gradient(m, forgot_bias, W)
    assert bad.verdict == "fail"
    assert {name.split("[")[1].split(",")[0] for name in bad.failed} == {str(W.shape[0] - 1)}
    assert bad.worst[0].name.startswith("W[6, ")
    sampled = fastfd.check_gradient(m, forgot_bias, W, sample=6, seed=3)
    assert sampled.verdict == "fail"  # the bias row is a boundary slice: always visited


def test_svm_kinks_are_flagged_exactly():
    # example 0 has margin exactly 0 for class 1: W[:, 1] enters a kink
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0, 1, 0])
    W = np.array([[1.0, 0.0], [0.25, 0.5]])
    m = LinearSVM(X, y, reg=0.1)
    result = fastfd.check_gradient(m, naive.svm_grad(W, X, y, 0.1), W)
    assert result.verdict == "pass", result
    assert set(result.kinks) == {"W[0, 0]", "W[0, 1]"}
    wrong_side = naive.svm_grad(W, X, y, 0.1)
    wrong_side[0, 1] -= 3.0
    assert fastfd.check_gradient(m, wrong_side, W).verdict == "fail"


def test_float32_model():
    W, X, y = problem(dtype=np.float32)
    m = LinearSoftmax(X, y, 0.3)
    result = fastfd.check_gradient(m, m.grad, W)
    assert result.verdict in ("pass", "inconclusive")
    assert fastfd.check_gradient(m, lambda w: 1.5 * m.grad(w), W).verdict == "fail"


def test_model_rejects_other_params():
    W, X, y = problem()
    m = LinearSoftmax(X, y, 0.3)
    with pytest.raises(ValueError, match=r"shape \(D, C\) = \(7, C\)"):
        fastfd.numerical_gradient(m, W[:-1])
    with pytest.raises(ValueError, match="LinearSoftmax"):
        fastfd.numerical_gradient(m, {"W": W})
    with pytest.raises(ValueError, match="reg"):
        LinearSoftmax(X, y, -1.0)


def test_model_keeps_its_own_copy_of_the_data():
    W, X, y = problem()
    m = LinearSoftmax(X, y, 0.3)
    before = m(W)
    X *= 2.0  # the caller reuses its buffer
    y[:] = 0
    assert m(W) == before
    assert fastfd.check_gradient(m, m.grad, W).verdict == "pass"
