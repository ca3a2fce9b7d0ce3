"""fastfd.kernels.softmax against the plain-numpy reference (small shapes, both dtypes)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfd.kernels import prepare_data, reference, softmax

EPS = np.finfo(np.float64).eps
SHAPES = [(1, 1, 2), (1, 4, 2), (6, 1, 2), (5, 3, 4), (9, 2, 7), (16, 5, 3)]
RTOL = {np.float64: 1e-12, np.float32: 1e-4}


def make_problem(n_examples, n_features, n_classes, seed, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_examples, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=n_examples)
    W = (scale * rng.normal(size=(n_features, n_classes))).astype(dtype)
    return W, X, y


def all_coords(W, steps):
    """Every coordinate of W once per step in ``steps``."""
    rows, cols = np.divmod(np.arange(W.size), W.shape[1])
    n_steps = len(steps)
    return np.tile(rows, n_steps), np.tile(cols, n_steps), np.repeat(steps, W.size)


def representable(W, rows, cols, offsets):
    """Offsets the brute force applies exactly: W + h rounds, (W + h) - W is what it adds."""
    start = W[rows, cols].astype(np.float64)
    return (start + offsets) - start


def assert_deltas_close(fast, brute, loss):
    """Within 1e-12 relative, or a few ulps of the loss (the brute force's own cancellation)."""
    error = np.abs(fast - brute)
    bound = 1e-12 * np.abs(brute) + 8 * EPS * abs(loss)
    worst = int(np.argmax(error - bound))
    assert np.all(error <= bound), f"k={worst}: fast {fast[worst]!r}, brute {brute[worst]!r}"


def assert_matches_reference(W, X, y, reg):
    rtol = RTOL[W.dtype.type]
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    loss, dW = softmax.softmax_loss_and_grad(W, X, y, reg)
    expected_loss, expected_dW = reference.softmax_loss_and_grad(W64, X64, y, reg)
    assert isinstance(loss, float)
    assert dW.dtype == W.dtype and dW.shape == W.shape
    assert loss == pytest.approx(expected_loss, rel=rtol)
    # entries of dW are sums that can cancel: compare against the scale of their terms
    scale = np.abs(X64).max() + 2 * reg * np.abs(W64).max()
    np.testing.assert_allclose(dW, expected_dW, rtol=rtol, atol=rtol * scale)
    assert softmax.softmax_loss(W, X, y, reg) == loss
    np.testing.assert_array_equal(softmax.softmax_grad(W, X, y, reg), dW)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_loss_and_grad_match_reference_on_grid(shape, dtype, reg):
    assert_matches_reference(*make_problem(*shape, seed=sum(shape), dtype=dtype), reg)


@settings(max_examples=40, deadline=None)
@given(
    n_examples=st.integers(1, 20),
    n_features=st.integers(1, 6),
    n_classes=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    reg=st.sampled_from([0.0, 1e-3, 2.5]),
)
def test_loss_and_grad_match_reference_on_random_shapes(
    n_examples, n_features, n_classes, seed, scale, reg
):
    W, X, y = make_problem(n_examples, n_features, n_classes, seed, scale=scale)
    assert_matches_reference(W, X, y, reg)


def test_accepts_any_layout_and_integer_type():
    W, X, y = make_problem(7, 4, 3, seed=2)
    expected = reference.softmax_loss_and_grad(W, X, y, 0.1)
    strided = np.zeros((4, 6))
    strided[:, ::2] = W
    loss, dW = softmax.softmax_loss_and_grad(
        strided[:, ::2], np.asfortranarray(X), y.astype(np.int16), 0.1
    )
    assert loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(dW, expected[1], rtol=1e-12, atol=1e-14)
    assert dW.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huge_scores_are_stable(dtype):
    W, X, y = make_problem(8, 3, 4, seed=4)
    top = 1e3 if dtype == np.float64 else 2e2  # exp overflows past ~709 (float64), ~88 (float32)
    W *= top / np.abs(X @ W).max()
    W, X = W.astype(dtype), X.astype(dtype)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(X @ W)).all()  # a naive softmax would overflow here
    loss, dW = softmax.softmax_loss_and_grad(W, X, y, 0.0)
    assert np.isfinite(loss) and np.isfinite(dW).all()
    assert_matches_reference(W, X, y, 0.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_in_inputs_is_reported_by_name():
    W, X, y = make_problem(4, 3, 3, seed=5)
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X must be finite; got X\[2, 1\] = nan"):
        softmax.softmax_loss_and_grad(W, X, y, 0.1)
    X[2, 1] = 0.0
    W[0, 2] = np.inf
    with pytest.raises(ValueError, match=r"W must be finite; got W\[0, 2\] = inf"):
        softmax.softmax_loss(W, X, y, 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("shape", "reg"), [((1, 1, 2), 0.0), ((7, 3, 4), 0.3), ((12, 4, 5), 2.0)])
def test_perturbed_deltas_match_brute_force(shape, reg, dtype):
    W, X, y = make_problem(*shape, seed=sum(shape) + 7, dtype=dtype)
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    data = prepare_data(X, y)
    # tiny and big steps of both signs, and the largest step the series branch takes
    rows, cols, offsets = all_coords(W, [1e-9, -1e-9, 1e-5, -3e-4, 0.5, -0.5])
    series_edge = -0.999e-3 / data.col_absmax[rows]
    rows, cols = np.tile(rows, 2), np.tile(cols, 2)
    offsets = representable(W64, rows, cols, np.concatenate([offsets, series_edge]))
    fast = softmax.softmax_perturbed_deltas(W, data, reg, rows, cols, offsets)
    brute = reference.softmax_perturbed_deltas(W64, X64, y, reg, rows, cols, offsets)
    assert fast.dtype == np.float64
    assert_deltas_close(fast, brute, reference.softmax_loss(W64, X64, y, reg))


def test_perturbed_deltas_with_huge_scores_and_extra_classes():
    W, X, y = make_problem(6, 3, 5, seed=8)
    y = y % 3  # classes 3 and 4 have no examples
    W *= 1e3 / np.abs(X @ W).max()
    data = prepare_data(X, y)  # n_classes = 3; W fixes C = 5
    rows, cols, offsets = all_coords(W, [1e-8, -0.5, 2.0])
    offsets = representable(W, rows, cols, offsets)
    fast = softmax.softmax_perturbed_deltas(W, data, 0.1, rows, cols, offsets)
    brute = reference.softmax_perturbed_deltas(W, X, y, 0.1, rows, cols, offsets)
    assert np.isfinite(fast).all()
    assert_deltas_close(fast, brute, reference.softmax_loss(W, X, y, 0.1))


def test_delta_form_beats_brute_force_cancellation():
    W, X, y = make_problem(40, 6, 4, seed=9)
    reg, h = 0.1, 2.0**-30  # h ~ 1e-9: loss(W + h) - loss(W) loses ~9 of 16 digits
    data = prepare_data(X, y)
    rows, cols, offsets = all_coords(W, [h, -h])
    offsets = representable(W, rows, cols, offsets)
    analytic = reference.softmax_grad(W, X, y, reg)

    def central_error(deltas):
        numerical = ((deltas[: W.size] - deltas[W.size :]) / (2 * h)).reshape(W.shape)
        diff = np.linalg.norm(numerical - analytic)
        return diff / (np.linalg.norm(numerical) + np.linalg.norm(analytic))

    fast_error = central_error(softmax.softmax_perturbed_deltas(W, data, reg, rows, cols, offsets))
    brute_error = central_error(
        reference.softmax_perturbed_deltas(W, X, y, reg, rows, cols, offsets)
    )
    assert fast_error < 1e-12
    assert brute_error > 1e3 * fast_error


@pytest.mark.parametrize("func", ["softmax_loss", "softmax_grad", "softmax_loss_and_grad"])
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"W": np.ones((2, 3))},
            ValueError,
            r"W must have shape \(D, C\) = \(4, C\) to match X of shape \(5, 4\); got \(2, 3\)",
        ),
        ({"W": np.ones((4, 3), dtype=int)}, TypeError, r"W must be a float32 or float64 array"),
        ({"W": np.ones(4)}, ValueError, r"W must be 2-D"),
        ({"W": np.ones((4, 1))}, ValueError, r"W must have at least 2 columns"),
        (
            {"W": np.ones((4, 3), dtype=np.float32)},
            TypeError,
            r"X and W must have the same dtype; got X float64 and W float32",
        ),
        ({"X": np.ones((5, 4), dtype=np.float16)}, TypeError, r"X must be a float32 or float64"),
        (
            {"y": np.array([0, 1, 2, 3, 0])},
            ValueError,
            r"y must hold labels in \[0, 3\) for W with C = 3 columns; got y\[3\] = 3",
        ),
        ({"y": np.array([0, 1, -2, 1, 0])}, ValueError, r"got y\[2\] = -2"),
        (
            {"y": np.array([True, False, True, True, False])},
            TypeError,
            r"y must be an array of integer class labels; got dtype bool",
        ),
        ({"y": np.zeros(4, dtype=int)}, ValueError, r"y must have shape \(N,\) = \(5,\)"),
        ({"reg": -1.0}, ValueError, r"reg must be a finite number >= 0; got -1.0"),
        ({"reg": np.nan}, ValueError, r"reg must be a finite number >= 0; got nan"),
        ({"reg": "0.1"}, TypeError, r"reg must be a real number"),
    ],
)
def test_wrappers_reject_bad_input(func, change, error, match):
    W, X, y = make_problem(5, 4, 3, seed=10)
    args = {"W": W, "X": X, "y": y, "reg": 0.1, **change}
    with pytest.raises(error, match=match):
        getattr(softmax, func)(**args)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"data": (np.ones((5, 4)), np.zeros(5, int))}, TypeError, r"data must be a LinearData"),
        ({"rows": [0, 4]}, ValueError, r"rows must hold indices in \[0, 4\).*rows\[1\] = 4"),
        ({"cols": [-1, 0]}, ValueError, r"cols must hold indices in \[0, 3\).*cols\[0\] = -1"),
        ({"rows": [0.0, 1.0]}, TypeError, r"rows must be an integer array"),
        ({"offsets": [1e-3]}, ValueError, r"rows, cols and offsets must have the same length"),
        ({"offsets": [1e-3, np.inf]}, ValueError, r"offsets must be finite; got offsets\[1\]"),
        ({"W": np.full((4, 3), np.nan)}, ValueError, r"W must be finite; got W\[0, 0\] = nan"),
        ({"W": np.ones((3, 3))}, ValueError, r"W must have shape \(D, C\) = \(4, C\)"),
        ({"reg": -2}, ValueError, r"reg must be a finite number >= 0"),
    ],
)
def test_perturbed_deltas_reject_bad_input(change, error, match):
    W, X, y = make_problem(5, 4, 3, seed=10)
    args = {
        "W": W,
        "data": prepare_data(X, y),
        "reg": 0.1,
        "rows": [0, 1],
        "cols": [2, 0],
        "offsets": [1e-3, -1e-3],
        **change,
    }
    with pytest.raises(error, match=match):
        softmax.softmax_perturbed_deltas(**args)


def test_perturbed_deltas_of_no_coordinates():
    W, X, y = make_problem(3, 2, 2, seed=1)
    empty = np.zeros(0, dtype=int)
    out = softmax.softmax_perturbed_deltas(W, prepare_data(X, y), 0.1, empty, empty, [])
    assert out.shape == (0,) and out.dtype == np.float64
