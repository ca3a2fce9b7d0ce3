"""Clear errors from the public API: every bad input names the argument (and entry) at fault.

Each case asserts the exception type and, with ``match``, that the message names the offending
argument or entry. Wrong types raise TypeError and wrong values ValueError, the convention the
library follows for ``rtol``, ``atol``, ``step`` and ``sample``.
"""

import re
import warnings

import numpy as np
import pytest

import fastfd
from fastfd.testing import assert_gradient_close

COEF_W = np.arange(1.0, 7.0).reshape(2, 3)
COEF_B = np.array([0.5, -1.0, 2.0])


def dict_params():
    return {"W": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": np.array([0.3, -0.2, 0.1])}


def dict_loss(p):
    return float(np.sum(COEF_W * p["W"] ** 2) + np.sum(COEF_B * p["b"] ** 2))


def dict_grad(p):
    return {"W": 2 * COEF_W * p["W"], "b": 2 * COEF_B * p["b"]}


def sum_squares(p):
    """Sum of squares of any params structure (array, dict, list, tuple)."""
    leaves = p.values() if isinstance(p, dict) else p if isinstance(p, (list, tuple)) else [p]
    return float(sum(np.sum(np.asarray(v, dtype=np.float64) ** 2) for v in leaves))


def call_numerical_gradient(f, params, **kwargs):
    return fastfd.numerical_gradient(f, params, **kwargs)


def call_directional_derivative(f, params, **kwargs):
    return fastfd.directional_derivative(f, params, params, **kwargs)


def call_check_gradient(f, params, **kwargs):
    return fastfd.check_gradient(f, lambda p: p, params, **kwargs)


def call_assert_gradient_close(f, params, **kwargs):
    return assert_gradient_close(f, lambda p: p, params, **kwargs)


ENTRY_POINTS = [
    call_numerical_gradient,
    call_directional_derivative,
    call_check_gradient,
    call_assert_gradient_close,
]
with warnings.catch_warnings():  # numpy discourages np.matrix: that is the point here
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    MATRIX = np.matrix([[1.0, 2.0]])

entry_points = pytest.mark.parametrize(
    "call", ENTRY_POINTS, ids=lambda c: c.__name__.removeprefix("call_")
)
# the functions that take method/step/n_jobs/evaluator with a per-entry step
gradient_calls = pytest.mark.parametrize(
    "call", [call_numerical_gradient, call_check_gradient],
    ids=["numerical_gradient", "check_gradient"],
)


# ---------------------------------------------------------------- params


@entry_points
@pytest.mark.parametrize(
    "params, message",
    [
        ({"W": np.ones((2, 3), dtype=np.int64), "b": np.zeros(3)}, r"params\['W'\] has dtype int"),
        ({"W": np.zeros(2), "mask": np.array([True, False])}, r"params\['mask'\] has dtype bool"),
        ({"W": np.ones(2, dtype=np.complex128)}, r"params\['W'\] has dtype complex"),
        ({"W": np.array([1.0, 2.0], dtype=object)}, r"params\['W'\] has dtype object"),
        (np.arange(3), r"params has dtype int"),
        ([np.zeros(2), np.ones(2, dtype=np.int32)], r"params\[1\] has dtype int32"),
        ((np.ones(2, dtype=np.complex64),), r"params\[0\] has dtype complex64"),
        ({"W": [1, 2]}, r"params\['W'\] has dtype int"),
        ({"layer": {"W": np.zeros(2, dtype=np.int8)}}, r"params\['layer'\]\['W'\] has dtype int8"),
        (3, r"params has dtype int"),
        ({"W": "abc"}, r"params\['W'\] must be a float array .*got str"),
        (MATRIX, r"params is a matrix, which fastfd does not convert"),
        ({"W": np.ma.masked_array([1.0, 2.0], mask=[0, 1])},
         r"params\['W'\] is a MaskedArray, .*np.ma.getdata"),
    ],
    ids=["int", "bool", "complex", "object", "int-array", "int-in-list", "complex-in-tuple",
         "int-list", "nested-int", "python-int", "string", "matrix", "masked"],
)
def test_non_float_params_raise_type_error(call, params, message):
    with pytest.raises(TypeError, match=message):
        call(sum_squares, params)


@entry_points
@pytest.mark.parametrize(
    "params, message",
    [
        ({}, r"params is an empty dict"),
        ([], r"params is an empty list"),
        ((), r"params is an empty tuple"),
        (np.zeros(0), r"params hold no entries"),
        ({"W": np.zeros((0, 3)), "b": np.zeros(0)}, r"params hold no entries"),
    ],
    ids=["dict", "list", "tuple", "array", "arrays-of-size-0"],
)
def test_empty_params_raise_value_error(call, params, message):
    with pytest.raises(ValueError, match=message):
        call(sum_squares, params)


@entry_points
def test_mixed_float_dtypes_raise_type_error(call):
    params = {"W": np.zeros((2, 2), dtype=np.float32), "b": np.zeros(2)}
    with pytest.raises(TypeError, match=r"params\['W'\]: float32, params\['b'\]: float64"):
        call(sum_squares, params)


@entry_points
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_params_name_the_entry(call, bad):
    params = dict_params()
    params["W"][1, 2] = bad
    with pytest.raises(ValueError, match=r"params are not finite at W\[1, 2\]"):
        call(sum_squares, params)


@pytest.mark.parametrize(
    "params, name",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), r"x\[1, 0\]"),
        ([np.zeros(2), np.array([1.0, 2.0, np.inf])], r"\[1\]\[2\]"),
    ],
    ids=["array", "list"],
)
def test_non_finite_params_name_the_entry_of_arrays_and_lists(params, name):
    with pytest.raises(ValueError, match=rf"params are not finite at {name}"):
        fastfd.numerical_gradient(sum_squares, params)


@entry_points
@pytest.mark.parametrize("f", [3, "loss", None, np.zeros(2)], ids=["int", "str", "None", "array"])
def test_non_callable_loss_raises_type_error(call, f):
    with pytest.raises(TypeError, match=r"f must be a callable"):
        call(f, np.array([1.0, 2.0]))


# ---------------------------------------------------------------- gradient


def check_calls():
    return pytest.mark.parametrize(
        "check", [fastfd.check_gradient, assert_gradient_close],
        ids=["check_gradient", "assert_gradient_close"],
    )


@check_calls()
@pytest.mark.parametrize("as_callable", [False, True], ids=["structure", "callable"])
@pytest.mark.parametrize(
    "keys, message",
    [
        (("W",), r"gradient keys differ from params: missing \['b'\], unexpected \[\]"),
        (("W", "b", "c"), r"gradient keys differ from params: missing \[\], unexpected \['c'\]"),
        (("W", "bias"), r"missing \['b'\], unexpected \['bias'\]"),
    ],
    ids=["missing", "extra", "both"],
)
def test_gradient_key_mismatch_names_the_keys(check, as_callable, keys, message):
    params = dict_params()
    full = dict_grad(params)
    grad = {k: full.get(k, np.zeros(3)) for k in keys}
    with pytest.raises(ValueError, match=message):
        check(dict_loss, (lambda p: grad) if as_callable else grad, params)


@check_calls()
def test_gradient_shape_mismatch_names_the_array(check):
    params = dict_params()
    grad = dict_grad(params)
    grad["W"] = grad["W"].T
    with pytest.raises(ValueError, match=r"gradient\['W'\] has shape \(3, 2\).*\(2, 3\)"):
        check(dict_loss, grad, params)


def test_gradient_shape_mismatch_of_plain_array():
    with pytest.raises(ValueError, match=r"gradient has shape \(2, 1\).*\(2,\)"):
        fastfd.check_gradient(sum_squares, np.zeros((2, 1)), np.array([1.0, 2.0]))


@check_calls()
@pytest.mark.parametrize("n_grads", [1, 3])
def test_list_gradient_of_wrong_length(check, n_grads):
    params = [np.array([1.0, 2.0]), np.array([3.0])]
    grad = [2 * params[0], 2 * params[1], np.zeros(1)][:n_grads]
    with pytest.raises(ValueError, match=rf"gradient has {n_grads} arrays but params have 2"):
        check(sum_squares, grad, params)


@check_calls()
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_names_the_entry(check, bad):
    params = dict_params()
    grad = dict_grad(params)
    grad["W"][1, 2] = bad
    with pytest.raises(ValueError, match=r"gradient is not finite at W\[1, 2\]"):
        check(dict_loss, lambda p: grad, params)


@check_calls()
def test_complex_gradient_raises_type_error(check):
    params = dict_params()
    grad = dict_grad(params)
    grad["W"] = grad["W"].astype(np.complex128)
    with pytest.raises(TypeError, match=r"gradient\['W'\] must hold real numbers.*complex"):
        check(dict_loss, grad, params)


@pytest.mark.parametrize(
    "grad, message",
    [
        (None, r"gradient must have the structure of params \(dict\); got NoneType"),
        ([np.zeros((2, 3)), np.zeros(3)], r"gradient must have the structure of params \(dict\)"),
    ],
    ids=["None", "list-for-dict"],
)
def test_gradient_of_wrong_kind_raises_type_error(grad, message):
    with pytest.raises(TypeError, match=message):
        fastfd.check_gradient(dict_loss, lambda p: grad, dict_params())


# ---------------------------------------------------------------- what the loss returns

x12 = np.array([1.0, 2.0])


@entry_points
@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([1.0, 2.0]), r"the loss must return a scalar; got ndarray of shape \(2,\)"),
        (np.array([1.0]), r"the loss must return a scalar; got ndarray of shape \(1,\)"),
        ([1.0], r"the loss must return a scalar; got list of shape \(1,\)"),
        (1.0 + 2.0j, r"the loss must return a real scalar"),
        (np.complex128(1.0), r"the loss must return a real scalar"),
        ("abc", r"the loss must return a real scalar; got str"),
        ("1.5", r"the loss must return a real scalar; got str"),
        (b"1.5", r"the loss must return a real scalar; got bytes"),
        (None, r"the loss must return a real scalar; got NoneType"),
    ],
    ids=["shape-2", "shape-1", "list", "complex", "np-complex", "str", "numeric-str", "bytes",
         "None"],
)
def test_loss_must_return_a_real_scalar(call, value, message):
    with pytest.raises(TypeError, match=message):
        call(lambda p: value, x12.copy())


def test_non_scalar_loss_at_a_perturbed_point_names_the_entry():
    def loss(p):  # a vector as soon as one entry of W alone moves
        one_moved = np.count_nonzero(p["W"] != dict_params()["W"]) == 1
        return np.ones(2) if one_moved else sum_squares(p)

    with pytest.raises(TypeError, match=r"must return a scalar.*W\[0, 0\]"):
        fastfd.numerical_gradient(loss, dict_params())


@entry_points
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_loss_not_finite_at_params(call, value):
    with pytest.raises(ValueError, match=r"the loss is not finite at params"):
        call(lambda p: value, x12.copy())


def log_loss(p):
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(np.log(p["a"])) + np.sum(np.log(p["w"])))


@pytest.mark.parametrize("method", ["central", "backward", "central4"])
@gradient_calls
def test_loss_not_finite_at_a_perturbed_point_names_entry_and_suggests_smaller_step(call, method):
    params = {"a": np.array([1.0, 2.0]), "w": np.array([[0.5, 1e-7]])}
    with pytest.raises(ValueError, match=r"not finite at w\[0, 1\] perturbed by .*smaller step"):
        call(log_loss, params, step=1e-3, method=method)


def test_loss_not_finite_along_a_direction_suggests_smaller_step():
    params = {"a": np.array([1.0, 2.0]), "w": np.array([[0.5, 1e-7]])}
    direction = {"a": np.zeros(2), "w": np.array([[0.0, 1.0]])}
    with pytest.raises(ValueError, match=r"not finite at params \+ .* direction.*smaller step"):
        fastfd.directional_derivative(log_loss, params, direction, step=1e-3)


def test_loss_not_finite_along_a_random_direction_of_check_gradient():
    def loss(p):  # finite on every coordinate axis, not off them
        return float(np.sum(p**2)) if np.count_nonzero(p != x12) <= 1 else np.nan

    with pytest.raises(ValueError, match=r"not finite at params \+ t \* direction .* every "
                                         "direction, not only along the coordinate axes"):
        fastfd.check_gradient(loss, lambda p: 2 * p, x12.copy(), directions=1)


# ---------------------------------------------------------------- method, sample, seed


@entry_points
@pytest.mark.parametrize("method", ["centre", "Central", None, ""])
def test_unknown_method_lists_the_valid_ones(call, method):
    valid = "method must be one of 'forward', 'backward', 'central', 'central4', 'complex'"
    with pytest.raises(ValueError, match=re.escape(f"{valid}; got {method!r}")):
        call(sum_squares, x12.copy(), method=method)


@pytest.mark.parametrize(
    "sample, error",
    [
        ("some", ValueError),
        (0, ValueError),
        (-3, ValueError),
        (1.5, ValueError),
        (0.0, ValueError),
        (-0.5, ValueError),
        (np.nan, ValueError),
        (True, TypeError),
        ([1, 2], TypeError),
        ({"W": 3}, TypeError),
    ],
)
def test_bad_sample(sample, error):
    with pytest.raises(error, match=r"sample"):
        fastfd.check_gradient(dict_loss, dict_grad, dict_params(), sample=sample)


@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (1.5, TypeError), ("a", TypeError), (None, TypeError)],
)
def test_bad_seed(seed, error):
    with pytest.raises(error, match=r"seed must be a non-negative int"):
        fastfd.check_gradient(dict_loss, dict_grad, dict_params(), seed=seed)


# ---------------------------------------------------------------- step


@gradient_calls
@pytest.mark.parametrize("step", [0, 0.0, -1e-3, np.nan, np.inf, -np.inf])
def test_bad_scalar_step(call, step):
    with pytest.raises(ValueError, match=r"step must be positive and finite"):
        call(dict_loss, dict_params(), step=step)


@gradient_calls
def test_step_array_with_a_bad_entry(call):
    step = np.full(4, 1e-3)
    step[2] = -1e-3
    with pytest.raises(ValueError,
                       match=r"step must be positive and finite; got -0\.001 for x\[2\]"):
        call(sum_squares, np.ones(4), step=step)


@gradient_calls
@pytest.mark.parametrize("size", [3, 5])
def test_step_array_of_wrong_length(call, size):
    with pytest.raises(ValueError, match=rf"step has shape \({size},\) but the parameter x has "
                                         r"shape \(4,\)"):
        call(sum_squares, np.ones(4), step=np.full(size, 1e-3))


@gradient_calls
def test_step_dict_of_wrong_structure(call):
    step = {"W": np.full((2, 3), 1e-3), "c": np.full(3, 1e-3)}
    with pytest.raises(ValueError, match=r"step keys differ from params: missing \['b'\], "
                                         r"unexpected \['c'\]"):
        call(dict_loss, dict_params(), step=step)


@gradient_calls
def test_step_dict_with_wrong_shape(call):
    step = {"W": np.full((3, 2), 1e-3), "b": np.full(3, 1e-3)}
    with pytest.raises(ValueError, match=r"step\['W'\] has shape \(3, 2\)"):
        call(dict_loss, dict_params(), step=step)


@gradient_calls
def test_step_list_for_dict_params(call):
    with pytest.raises(TypeError, match=r"step must have the structure of params \(dict\)"):
        call(dict_loss, dict_params(), step=[np.full((2, 3), 1e-3), np.full(3, 1e-3)])


@gradient_calls
@pytest.mark.parametrize("step", ["small", True, object()], ids=["str", "bool", "object"])
def test_step_of_wrong_type(call, step):
    with pytest.raises(TypeError, match=r"step must be None, a positive float"):
        call(dict_loss, dict_params(), step=step)


@gradient_calls
def test_step_lost_to_rounding_names_the_entry(call):
    params = {"W": np.array([[1.0, 2.0]]), "b": np.array([0.5])}
    with pytest.raises(ValueError, match=r"step 1e-30 for W\[0, 0\] is lost to rounding"):
        call(sum_squares, params, step=1e-30)


def test_step_lost_to_rounding_in_float32():
    params = np.array([1.0, 3.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"step 1e-08 for x\[0\] is lost to rounding: float32"):
        fastfd.numerical_gradient(sum_squares, params, step=1e-8)


@pytest.mark.parametrize("step", [0.0, -1e-3, np.nan, np.inf])
def test_bad_step_of_directional_derivative(step):
    with pytest.raises(ValueError, match=r"step must be positive and finite"):
        fastfd.directional_derivative(sum_squares, x12.copy(), np.ones(2), step=step)


def test_step_lost_to_rounding_in_directional_derivative():
    # x + 1e-30 * direction == x: every perturbed loss equals f(x) and the derivative would
    # silently come out as 0.0 instead of 6.0
    with pytest.raises(ValueError, match=r"step.*lost to rounding"):
        fastfd.directional_derivative(sum_squares, x12.copy(), np.ones(2), step=1e-30)


# ---------------------------------------------------------------- tolerances, directions


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize(
    "value, error",
    [(-1e-3, ValueError), (np.nan, ValueError), (np.inf, ValueError), ("1e-3", TypeError),
     (True, TypeError), ([1e-3], TypeError)],
)
def test_bad_tolerance(name, value, error):
    with pytest.raises(error, match=rf"{name} must be a non-negative"):
        fastfd.check_gradient(dict_loss, dict_grad, dict_params(), **{name: value})


@pytest.mark.parametrize(
    "directions, error", [(-1, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_bad_directions(directions, error):
    with pytest.raises(error, match=r"directions must be a non-negative int"):
        fastfd.check_gradient(dict_loss, dict_grad, dict_params(), directions=directions)


# ---------------------------------------------------------------- n_jobs, backend, evaluator


@gradient_calls
@pytest.mark.parametrize(
    "n_jobs, error", [(0, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_bad_n_jobs(call, n_jobs, error):
    with pytest.raises(error, match=r"n_jobs must be a non-zero int"):
        call(dict_loss, dict_params(), n_jobs=n_jobs)


@pytest.mark.parametrize("n_jobs", [-1, 2, np.int64(2)], ids=["-1", "2", "np.int64"])
def test_valid_n_jobs_are_accepted(n_jobs):
    params = dict_params()
    grad = fastfd.numerical_gradient(dict_loss, params, n_jobs=n_jobs)
    np.testing.assert_allclose(grad["W"], dict_grad(params)["W"], rtol=1e-8)


@gradient_calls
def test_bad_backend(call):
    with pytest.raises(TypeError, match=r"backend must be None or a joblib backend name"):
        call(dict_loss, dict_params(), backend=3)


@gradient_calls
@pytest.mark.parametrize(
    "evaluator, error, message",
    [
        ("nope", ValueError, r"evaluator must be an Evaluator or one of 'serial', .*; got 'nope'"),
        (3, TypeError, r"evaluator must be an Evaluator instance or a name; got 3"),
        (fastfd.executors.SerialEvaluator, TypeError, r"evaluator must be an Evaluator"),
    ],
    ids=["unknown-name", "int", "class-not-instance"],
)
def test_bad_evaluator(call, evaluator, error, message):
    with pytest.raises(error, match=message):
        call(dict_loss, dict_params(), evaluator=evaluator)


# ---------------------------------------------------------------- direction


@pytest.mark.parametrize(
    "direction, error, message",
    [
        (np.ones(3), ValueError, r"direction has shape \(3,\) but the parameter x has shape \(2"),
        (np.ones((2, 1)), ValueError, r"direction has shape \(2, 1\)"),
        (np.array([1.0, np.nan]), ValueError, r"direction is not finite at x\[1\]"),
        (np.array([1.0, 1.0j]), TypeError, r"direction must hold real numbers"),
        ([np.ones(2)], TypeError, r"direction must have the structure of params \(array\)"),
        (None, TypeError, r"direction must be a float array .*got NoneType"),
    ],
    ids=["length", "shape", "nan", "complex", "list", "None"],
)
def test_bad_direction(direction, error, message):
    with pytest.raises(error, match=message):
        fastfd.directional_derivative(sum_squares, x12.copy(), direction)


def test_direction_with_wrong_keys():
    direction = {"W": np.ones((2, 3))}
    with pytest.raises(ValueError, match=r"direction keys differ from params: missing \['b'\]"):
        fastfd.directional_derivative(dict_loss, dict_params(), direction)


@pytest.mark.parametrize("params", [x12, dict_params()], ids=["array", "dict"])
def test_zero_direction(params):
    direction = (
        {k: np.zeros_like(v) for k, v in params.items()} if isinstance(params, dict)
        else np.zeros_like(params)
    )
    with pytest.raises(ValueError, match=r"direction is zero"):
        fastfd.directional_derivative(sum_squares, params, direction)


# ---------------------------------------------------------------- inputs that must work


@pytest.mark.parametrize(
    "params, step",
    [
        (np.array([1.0, -2.0, 3.0]), np.full(3, 1e-4)),
        ({"W": np.ones((2, 3)), "b": np.zeros(3)},
         {"W": np.full((2, 3), 1e-4), "b": np.full(3, 1e-4)}),
    ],
    ids=["array", "dict"],
)
def test_per_entry_step_works_with_random_directions(params, step):
    # the same step is accepted without directions; directions must not reject it
    assert fastfd.check_gradient(sum_squares, _double, params, step=step).verdict == "pass"
    check = fastfd.check_gradient(sum_squares, _double, params, step=step, directions=2)
    assert check.verdict == "pass", str(check)


def _double(p):
    return {k: 2 * v for k, v in p.items()} if isinstance(p, dict) else 2 * p


def weighted_loss(coef):
    return lambda p: float(np.sum(coef * p**3))


@pytest.mark.parametrize("layout", ["read-only", "strided", "fortran", "strided-read-only"])
def test_unusual_array_layouts_give_the_right_gradient(layout):
    base = np.linspace(-1.5, 2.0, 24).reshape(4, 6)
    params = {
        "read-only": base.copy(),
        "strided": base.copy()[:, ::2],
        "fortran": np.asfortranarray(base),
        "strided-read-only": np.asfortranarray(base)[::2, 1::2],
    }[layout]
    if "read-only" in layout:
        params.setflags(write=False)
    coef = np.arange(1.0, params.size + 1).reshape(params.shape)
    expected = 3 * coef * params**2
    loss = weighted_loss(coef)

    grad = fastfd.numerical_gradient(loss, params)
    assert grad.shape == params.shape
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-8)
    check = fastfd.check_gradient(loss, lambda p: 3 * coef * p**2, params, directions=2)
    assert check.verdict == "pass", str(check)
    wrong = expected.copy()
    wrong[-1, 0] *= 1.01
    assert fastfd.check_gradient(loss, wrong, params).failed == (f"x[{params.shape[0] - 1}, 0]",)
    v = np.ones(params.shape)
    derivative = fastfd.directional_derivative(loss, params, v)
    np.testing.assert_allclose(derivative, expected.sum(), rtol=1e-7)
    assert params.flags.writeable == ("read-only" not in layout)


def test_unusual_layouts_inside_a_dict():
    frozen = np.array([0.5, -1.0, 2.0])
    frozen.setflags(write=False)
    params = {"W": np.asfortranarray(np.linspace(-1, 1, 12).reshape(3, 4))[:, ::2], "b": frozen}
    grad = fastfd.numerical_gradient(sum_squares, params)
    for key in params:
        np.testing.assert_allclose(grad[key], 2 * params[key], rtol=1e-8, atol=1e-12)
    assert_gradient_close(sum_squares, lambda p: {k: 2 * v for k, v in p.items()}, params)


@pytest.mark.parametrize(
    "wrap",
    [lambda v: np.array(v), lambda v: np.array(v, dtype=np.float32), np.float32,
     lambda v: np.array([[v]])[0, 0], np.float64],
    ids=["0-d-array", "0-d-float32-array", "np.float32", "numpy-scalar", "np.float64"],
)
def test_loss_returning_numpy_scalars_works(wrap):
    params = np.array([1.0, -2.0, 0.5])
    grad = fastfd.numerical_gradient(lambda p: wrap(np.sum(p**2)), params, step=1e-2)
    np.testing.assert_allclose(grad, 2 * params, rtol=1e-3)
    assert fastfd.directional_derivative(
        lambda p: wrap(np.sum(p**2)), params, np.ones(3), step=1e-2
    ) == pytest.approx(-1.0, rel=1e-3)


def test_float32_loss_on_float32_params_passes_the_check():
    params = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    check = fastfd.check_gradient(lambda p: np.float32(np.sum(p**2)), lambda p: 2 * p, params)
    assert check.verdict == "pass", str(check)


@pytest.mark.parametrize("value", [3, np.int64(3)], ids=["int", "np.int64"])
def test_loss_returning_an_int_works(value):
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    kind = type(value)

    def loss(p):  # an int of the params' size: constant at small steps, not at large ones
        return kind(round(10 * float(np.sum(p["W"] ** 2) + np.sum(p["b"]))))

    grad = fastfd.numerical_gradient(loss, params)
    assert grad["W"].shape == (2, 2) and grad["W"].dtype == np.float64
    assert np.isfinite(fastfd.directional_derivative(loss, params, params))


def test_a_constant_loss_is_an_error():
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    for call in (lambda: fastfd.numerical_gradient(lambda p: 3, params),
                 lambda: fastfd.check_gradient(lambda p: 3.0, lambda p: p, params),
                 lambda: fastfd.directional_derivative(lambda p: 3, params, params)):
        with pytest.raises(ValueError, match="does not depend on the argument it is given"):
            call()
