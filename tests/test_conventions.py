"""fastfd works the way its users already work: (loss, grad) functions, extra arguments,
array-likes and nested structures, models that read their own parameters, pytest."""

from typing import NamedTuple

import numpy as np
import pytest

import fastfd
from fastfd.kernels import reference
from tests import naive


def svm_loss_vectorized(W, X, y, reg):
    """cs231n's convention: (loss, dW)."""
    return reference.svm_loss_and_grad(W, X, y, reg)


def svm_problem():
    W, X, y = naive.linear_problem(n=20, d=5, c=3)
    return W, X, y, 0.1


def test_loss_and_grad_function_with_args_in_one_line():
    W, X, y, reg = svm_problem()
    result = fastfd.check_gradient(svm_loss_vectorized, True, W, args=(X, y, reg))
    assert result.verdict == "pass", result

    def broken(W, X, y, reg):
        loss, dW = svm_loss_vectorized(W, X, y, reg)
        return loss, dW - reg * W  # the reg gradient counted once
    assert fastfd.check_gradient(broken, True, W, args=(X, y, reg)).verdict == "fail"


def test_scipy_style_fun_with_jac_true_and_kwargs():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])

    def fun(x, A, shift=0.0):
        r = x - shift
        return 0.5 * r @ A @ r, A @ r

    result = fastfd.check_gradient(fun, True, np.array([1.0, -2.0]), args=(A,),
                                   kwargs={"shift": 0.5})
    assert result.verdict == "pass"
    assert fastfd.testing.assert_gradient_close(fun, True, [1.0, -2.0], args=(A,)).passed
    sweep = fastfd.step_sweep(fun, True, np.array([1.0, -2.0]), args=(A,))
    assert sweep.best_error < 1e-8
    taylor = fastfd.taylor_test(fun, True, np.array([1.0, -2.0]), args=(A,))
    assert taylor.verdict == "pass"


def test_grad_callable_receives_the_same_args():
    c = np.array([1.0, 2.0, 3.0])
    result = fastfd.check_gradient(lambda x, c: float(c @ np.sin(x)), lambda x, c: c * np.cos(x),
                                   np.zeros(3), args=(c,))
    assert result.verdict == "pass"
    g = fastfd.numerical_gradient(lambda x, c: float(c @ np.sin(x)), np.zeros(3), args=(c,))
    np.testing.assert_allclose(g, c, rtol=1e-8)
    d = fastfd.directional_derivative(lambda x, c: float(c @ x), np.zeros(3), np.ones(3),
                                      args=(c,))
    assert d == pytest.approx(6.0)


def test_conventions_errors_are_clear():
    A = np.eye(2)
    with pytest.raises(TypeError, match=r"grad=True means the function returns \(loss, grad\)"):
        fastfd.check_gradient(lambda x: float(x @ x), True, np.ones(2))
    with pytest.raises(TypeError, match=r"got a tuple of 2: .*pass grad=True"):
        fastfd.check_gradient(lambda x: (float(x @ x), 2 * x), lambda x: 2 * x, np.ones(2))
    with pytest.raises(TypeError, match=r"args must be a tuple .*args=\(value,\)"):
        fastfd.check_gradient(lambda x, A: float(x @ A @ x), lambda x, A: 2 * A @ x,
                              np.ones(2), args=A)
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        fastfd.numerical_gradient(lambda x: float(x @ x), np.ones(2), kwargs=[1])
    with pytest.raises(TypeError, match="grad must be a callable"):
        fastfd.check_gradient(lambda x: float(x @ x), False, np.ones(2))


def test_args_travel_to_worker_processes():
    X = np.random.default_rng(0).standard_normal((30, 4))
    f = lambda w, X: float(np.sum((X @ w) ** 2))  # noqa: E731
    serial = fastfd.numerical_gradient(f, np.ones(4), args=(X,))
    loky = fastfd.numerical_gradient(f, np.ones(4), args=(X,), n_jobs=2)
    np.testing.assert_array_equal(serial, loky)


# ---------------------------------------------------------------- array-likes and structures


class ArrayLike:
    """Stands for a JAX array, a CPU torch tensor or an xarray: only ``__array__``."""

    def __init__(self, data):
        self.data = np.asarray(data, dtype=np.float64)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)


def test_python_floats_lists_and_array_likes_are_converted_once():
    seen = []

    def loss(p):
        seen.append(type(p))
        return float(np.sum(np.asarray(p) ** 2))

    for params in (1.5, [1.0, -2.0], [[1.0, 2.0], [3.0, 4.0]], ArrayLike([1.0, 2.0])):
        expected = 2 * np.asarray(params, dtype=float)
        g = fastfd.numerical_gradient(loss, params)
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, expected, rtol=1e-7)
        assert fastfd.check_gradient(loss, lambda p: 2 * np.asarray(p), params).passed
    assert set(seen) == {np.ndarray}  # the loss receives numpy arrays


def test_nested_structures_keep_their_types_and_name_entries_by_path():
    class Cell(NamedTuple):
        W: np.ndarray
        b: np.ndarray

    params = {"layers": [{"W": np.ones((2, 3)), "b": np.zeros(3)}, Cell(np.ones(2), np.ones(1))],
              "scale": 2.0}
    kinds = []

    def loss(p):
        kinds.append((type(p["layers"]), type(p["layers"][1]), type(p["scale"])))
        first, cell = p["layers"]
        return float(np.sum(first["W"] ** 2) + np.sum(first["b"]) + cell.W @ cell.W
                     + p["scale"] * cell.b[0])

    def grad(p):
        first, cell = p["layers"]
        cell_grad = Cell(2 * cell.W, np.atleast_1d(p["scale"]))
        return {"layers": [{"W": 2 * first["W"], "b": np.ones(3)}, cell_grad],
                "scale": cell.b[0]}

    ok = fastfd.check_gradient(loss, grad, params)
    assert ok.passed, ok
    assert set(kinds) == {(list, Cell, np.ndarray)}
    assert {s.name for s in ok.arrays} == {'layers[0]["W"]', 'layers[0]["b"]', "layers[1].W",
                                           "layers[1].b", "scale"}

    def wrong(p):
        g = grad(p)
        g["layers"][0]["W"] = g["layers"][0]["W"].copy()
        g["layers"][0]["W"][1, 2] += 1.0
        return g

    bad = fastfd.check_gradient(loss, wrong, params)
    assert bad.failed == ('layers[0]["W"][1, 2]',)
    g = fastfd.numerical_gradient(loss, params)
    assert isinstance(g["layers"][1], Cell) and isinstance(g["layers"], list)


def test_gradient_structure_must_match_and_may_be_array_likes():
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    loss = lambda p: float(np.sum(p["W"] ** 2) + np.sum(p["b"]))  # noqa: E731
    as_lists = {"W": [[2.0, 2.0], [2.0, 2.0]], "b": ArrayLike([1.0, 1.0])}
    assert fastfd.check_gradient(loss, as_lists, params).passed
    with pytest.raises(ValueError, match=r"gradient keys differ from params: missing \['b'\]"):
        fastfd.check_gradient(loss, {"W": 2 * params["W"]}, params)


# ---------------------------------------------------------------- models holding their params


class TwoLayerNet:
    """The cs231n model idiom: ``self.params`` read by ``loss``, ``(loss, grads)`` returned."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"W1": 0.5 * rng.standard_normal((4, 5)), "b1": 0.1 * np.ones(5),
                       "W2": 0.5 * rng.standard_normal((5, 3)), "b2": np.zeros(3)}

    def loss(self, X, y):
        p = self.params
        h = np.maximum(0, X @ p["W1"] + p["b1"])
        s = h @ p["W2"] + p["b2"]
        s = s - s.max(axis=1, keepdims=True)
        prob = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
        n = len(y)
        loss = -np.mean(np.log(prob[np.arange(n), y]))
        ds = prob.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        dh = ds @ p["W2"].T * (h > 0)
        return loss, {"W1": X.T @ dh, "b1": dh.sum(0), "W2": h.T @ ds, "b2": ds.sum(0)}


def test_a_model_reading_its_own_params_is_a_clear_error_and_bind_checks_it():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    model = TwoLayerNet()
    own = dict(model.params)
    loss = lambda _: model.loss(X, y)[0]  # noqa: E731
    grads = model.loss(X, y)[1]
    with pytest.raises(ValueError, match="does not depend on the argument.*bind=True"):
        fastfd.check_gradient(loss, grads, model.params)
    result = fastfd.check_gradient(loss, lambda _: model.loss(X, y)[1], model.params, bind=True)
    assert result.verdict == "pass", result
    assert all(model.params[k] is own[k] for k in own)  # the model's own arrays are back
    bad = fastfd.check_gradient(loss, {**grads, "b1": -grads["b1"]}, model.params, bind=True)
    assert bad.verdict == "fail" and all(n.startswith("b1[") for n in bad.failed)
    assert all(model.params[k] is own[k] for k in own)


def test_bind_restores_the_container_when_the_loss_raises():
    params = {"W": np.ones(3)}
    original = params["W"]
    calls = []

    def loss(_):
        calls.append(1)
        if len(calls) > 3:
            raise KeyError("late")
        return float(np.sum(params["W"] ** 2))

    with pytest.raises(KeyError):
        fastfd.check_gradient(loss, lambda _: {"W": 2 * params["W"]}, params, bind=True)
    assert params["W"] is original and np.array_equal(original, np.ones(3))


def test_bind_needs_a_mutable_container_and_serial_evaluation():
    with pytest.raises(TypeError, match="params must be a dict or a list"):
        fastfd.check_gradient(lambda p: 1.0, np.zeros(2), (np.ones(2),), bind=True)
    with pytest.raises(ValueError, match="evaluates the loss in this process"):
        fastfd.check_gradient(lambda p: float(np.sum(p["W"])), {"W": np.ones(2)},
                              {"W": np.ones(2)}, bind=True, n_jobs=2)


# ---------------------------------------------------------------- pytest


def test_assert_gradient_close_hides_its_own_frame():
    with pytest.raises(AssertionError) as info:
        fastfd.testing.assert_gradient_close(lambda x: float(x @ x), lambda x: x, np.ones(3))
    hidden = [entry for entry in info.traceback
              if entry.frame.code.name == "assert_gradient_close"]
    assert hidden and all(entry.ishidden(info) for entry in hidden)
    assert "FAIL" in str(info.value)
