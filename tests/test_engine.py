import numpy as np
import pytest

import fastfd
from tests import naive


def test_numerical_gradient_matches_naive_loop_on_softmax():
    W, X, y = naive.linear_problem()
    f = lambda w: naive.softmax_loss(w, X, y, 0.1)  # noqa: E731
    ours = fastfd.numerical_gradient(f, W, step=1e-5)
    np.testing.assert_allclose(ours, naive.naive_gradient(f, W, 1e-5), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours, naive.softmax_grad(W, X, y, 0.1), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_one_sided_matches_naive_loop(method):
    W, X, y = naive.linear_problem(n=5, d=3, c=3)
    f = lambda w: naive.svm_loss(w, X, y, 0.0) + np.sum(w**3)  # noqa: E731
    ours = fastfd.numerical_gradient(f, W, step=1e-6, method=method)
    np.testing.assert_allclose(ours, naive.naive_gradient(f, W, 1e-6, method), rtol=1e-6,
                               atol=1e-9)


def test_structures_come_back_in_kind_and_dtype():
    params = naive.relu_net_params()
    X = np.random.default_rng(1).standard_normal((7, 5))
    y = np.arange(7) % 3
    g = fastfd.numerical_gradient(lambda p: naive.relu_net_loss_and_grad(p, X, y)[0], params)
    _, analytic = naive.relu_net_loss_and_grad(params, X, y)
    assert list(g) == list(params)
    for key in params:
        assert g[key].shape == params[key].shape and g[key].dtype == np.float64
        np.testing.assert_allclose(g[key], analytic[key], rtol=1e-5, atol=1e-8)
    p = naive.sigmoid_net_params()
    Xs, ys = naive.sleep_study_data()
    g = fastfd.numerical_gradient(lambda q: naive.sigmoid_net_cost(q, Xs, ys), p)
    assert isinstance(g, list) and len(g) == 2
    for a, b in zip(g, naive.sigmoid_net_grad(p, Xs, ys)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    g = fastfd.numerical_gradient(lambda q: float(q[0] @ q[1]), (np.ones(2), np.arange(2.0)))
    assert isinstance(g, tuple)


def test_float32_params_give_float32_gradient_of_float32_accuracy():
    x = np.linspace(-1, 1, 7).astype(np.float32)
    g = fastfd.numerical_gradient(lambda v: np.sum(np.sin(v)), x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, np.cos(x), rtol=2e-3, atol=2e-3)


def test_central4_more_accurate_than_central_at_same_step():
    x = np.array([0.3, 1.1])
    f = lambda v: np.sum(np.exp(2 * v))  # noqa: E731
    exact = 2 * np.exp(2 * x)
    err2 = np.abs(fastfd.numerical_gradient(f, x, step=1e-2) - exact).max()
    err4 = np.abs(fastfd.numerical_gradient(f, x, step=1e-2, method="central4") - exact).max()
    assert err4 < err2 / 100


def test_per_entry_steps_as_structure():
    params = {"a": np.array([1.0, 2.0]), "b": np.array([3.0])}
    steps = {"a": np.array([1e-3, 1e-4]), "b": np.array([1e-2])}
    f = lambda p: np.sum(p["a"] ** 3) + p["b"][0] ** 3  # noqa: E731
    g = fastfd.numerical_gradient(f, params, step=steps)
    # central error is h**2 * f''' / 6 = h**2 exactly for a cube: the steps really were used
    np.testing.assert_allclose(g["a"], 3 * params["a"] ** 2 + np.array([1e-6, 1e-8]), rtol=1e-9)
    np.testing.assert_allclose(g["b"], 27 + 1e-4, rtol=1e-9)


def test_directional_derivative():
    params = {"w": np.array([1.0, -2.0, 0.5])}
    f = lambda p: np.sum(p["w"] ** 2) + np.prod(p["w"])  # noqa: E731
    v = {"w": np.array([0.3, 0.1, -1.0])}
    grad = 2 * params["w"] + np.array([-1.0, 0.5, -2.0])
    d = fastfd.directional_derivative(f, params, v)
    assert d == pytest.approx(grad @ v["w"], rel=1e-8)
    d4 = fastfd.directional_derivative(f, params, v, method="central4")
    assert d4 == pytest.approx(grad @ v["w"], rel=1e-10)
