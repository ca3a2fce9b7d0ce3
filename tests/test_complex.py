"""The complex step: exact to rounding on analytic losses, refused on the others."""

import numpy as np
import pytest

import fastfd
from fastfd.errors import NotComplexSafeError

X = np.linspace(-1, 1, 10)


def smooth(w):
    return np.sum(np.sin(w) ** 3) + np.exp(w[0] * w[1])


def smooth_grad(w):
    g = 3 * np.sin(w) ** 2 * np.cos(w)
    g[0] += w[1] * np.exp(w[0] * w[1])
    g[1] += w[0] * np.exp(w[0] * w[1])
    return g


def test_complex_step_is_exact_to_rounding_where_central_is_not():
    exact = smooth_grad(X)
    complex_error = np.max(np.abs(fastfd.numerical_gradient(smooth, X, method="complex")
                                  - exact))
    central_error = np.max(np.abs(fastfd.numerical_gradient(smooth, X) - exact))
    assert complex_error < 1e-15 < 1e-12 < central_error


def test_complex_check_resolves_what_central_cannot():
    # a 1e-7 relative error: far below what central differences resolve in float64
    off = lambda w: smooth_grad(w) * (1 + 1e-7)  # noqa: E731
    complex_check = fastfd.check_gradient(smooth, off, X, method="complex", rtol=1e-10)
    assert complex_check.verdict == "fail"
    right = fastfd.check_gradient(smooth, smooth_grad, X, method="complex", rtol=1e-12)
    assert right.verdict == "pass" and right.n_confirmed == X.size
    assert right.n_evals == 1 + 6 + X.size  # f(x), the safety check, one per entry
    assert "complex step takes no difference" in str(right)


def test_complex_step_immune_to_cancellation():
    x5 = 0.1 * np.random.default_rng(0).standard_normal(20)
    loss = lambda x: (1e6 + np.sum(x**2)) - 1e6  # noqa: E731
    g = fastfd.numerical_gradient(loss, x5, method="complex")
    np.testing.assert_allclose(g, 2 * x5, rtol=1e-14)


@pytest.mark.parametrize("loss, words", [
    (lambda w: float(np.sum(w**2)), "discards the imaginary part of its complex input"),
    (lambda w: np.sum(np.abs(w) ** 3), "drops the imaginary part of its result"),
    (lambda w: np.sum(w.astype(np.float64) ** 2), "discards the imaginary part"),
    (lambda w: np.real(np.sum(w**3)), "drops the imaginary part of its result"),
    (lambda w: np.sum(np.conj(w) * w * w), "not complex-safe"),
    (lambda w: np.sum(np.floor(w) + w**2), "raised TypeError on complex params"),
])
def test_loss_that_is_not_complex_safe_is_refused(loss, words):
    before = X.copy()
    with pytest.raises(NotComplexSafeError, match=words):
        fastfd.check_gradient(loss, lambda w: 2 * w, X, method="complex")
    np.testing.assert_array_equal(X, before)


def test_complex_step_on_every_backend_gives_the_serial_numbers():
    serial = fastfd.numerical_gradient(smooth, X, method="complex")
    for backend in ("threading", "loky"):
        parallel = fastfd.numerical_gradient(smooth, X, method="complex", n_jobs=2,
                                             backend=backend)
        np.testing.assert_array_equal(parallel, serial)


def test_complex_step_float32_and_structures():
    params = {"W": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
              "b": np.ones(2, dtype=np.float32)}
    loss = lambda p: np.sum(p["W"] ** 3) + np.sum(p["b"] ** 2)  # noqa: E731
    g = fastfd.numerical_gradient(loss, params, method="complex")
    assert g["W"].dtype == np.float32
    np.testing.assert_allclose(g["W"], 3 * params["W"] ** 2, rtol=1e-6)
    report = fastfd.check_gradient(loss, {"W": 3 * params["W"] ** 2, "b": 2 * params["b"]},
                                   params, method="complex")
    assert report.passed


def test_complex_step_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="applies to coordinates"):
        fastfd.directional_derivative(smooth, X, np.ones_like(X), method="complex")
    with pytest.raises(ValueError, match="has none"):
        fastfd.step_sweep(smooth, smooth_grad, X, method="complex")
    rng = np.random.default_rng(0)
    model = fastfd.models.LinearSoftmax(rng.standard_normal((8, 3)), rng.integers(0, 2, 8))
    with pytest.raises(ValueError, match="own perturbation path"):
        fastfd.numerical_gradient(model, np.zeros((3, 2)), method="complex")
