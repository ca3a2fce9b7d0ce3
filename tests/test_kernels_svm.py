"""fastfd.kernels.svm against the plain-numpy reference, with exact ties at the hinge."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfd.kernels import prepare_data, reference, svm

EPS = np.finfo(np.float64).eps
SHAPES = [(1, 1, 2), (1, 4, 2), (6, 1, 2), (5, 3, 4), (9, 2, 7), (16, 5, 3)]
RTOL = {np.float64: 1e-12, np.float32: 1e-4}


def make_problem(n_examples, n_features, n_classes, seed, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_examples, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=n_examples)
    W = (scale * rng.normal(size=(n_features, n_classes))).astype(dtype)
    return W, X, y


def make_tied_problem(n_examples, n_features, n_classes, seed, dtype=np.float64):
    """Small-integer X and W: every score is exact and many margins are exactly 0."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(n_examples, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=n_examples)
    W = rng.integers(-1, 2, size=(n_features, n_classes)).astype(dtype)
    return W, X, y


def count_ties(W, X, y, delta=1.0):
    scores = X.astype(np.float64) @ W.astype(np.float64)
    margins = scores - scores[np.arange(len(y)), y][:, None] + delta
    margins[np.arange(len(y)), y] = 1.0
    return int(np.count_nonzero(margins == 0))


def all_coords(W, steps):
    rows, cols = np.divmod(np.arange(W.size), W.shape[1])
    return np.tile(rows, len(steps)), np.tile(cols, len(steps)), np.repeat(steps, W.size)


def representable(W, rows, cols, offsets):
    start = W[rows, cols].astype(np.float64)
    return (start + offsets) - start


def assert_deltas_close(fast, brute, loss):
    error = np.abs(fast - brute)
    bound = 1e-12 * np.abs(brute) + 8 * EPS * abs(loss)
    worst = int(np.argmax(error - bound))
    assert np.all(error <= bound), f"k={worst}: fast {fast[worst]!r}, brute {brute[worst]!r}"


def assert_matches_reference(W, X, y, reg, delta=1.0):
    rtol = RTOL[W.dtype.type]
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    loss, dW = svm.svm_loss_and_grad(W, X, y, reg, delta=delta)
    expected_loss, expected_dW = reference.svm_loss_and_grad(W64, X64, y, reg, delta)
    assert isinstance(loss, float)
    assert dW.dtype == W.dtype and dW.shape == W.shape
    assert loss == pytest.approx(expected_loss, rel=rtol, abs=rtol * EPS)
    scale = np.abs(X64).max() + 2 * reg * np.abs(W64).max()
    np.testing.assert_allclose(dW, expected_dW, rtol=rtol, atol=rtol * scale)
    assert svm.svm_loss(W, X, y, reg, delta=delta) == loss
    np.testing.assert_array_equal(svm.svm_grad(W, X, y, reg, delta=delta), dW)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("reg", "delta"), [(0.0, 1.0), (0.5, 0.3)])
def test_loss_and_grad_match_reference_on_grid(shape, dtype, reg, delta):
    W, X, y = make_problem(*shape, seed=sum(shape), dtype=dtype)
    assert_matches_reference(W, X, y, reg, delta)


@settings(max_examples=40, deadline=None)
@given(
    n_examples=st.integers(1, 20),
    n_features=st.integers(1, 6),
    n_classes=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    delta=st.sampled_from([0.0, 1.0, 2.5]),
)
def test_loss_and_grad_match_reference_on_random_shapes(
    n_examples, n_features, n_classes, seed, scale, delta
):
    W, X, y = make_problem(n_examples, n_features, n_classes, seed, scale=scale)
    assert_matches_reference(W, X, y, 0.7, delta)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_ties_follow_the_margin_above_zero_convention(seed, dtype):
    W, X, y = make_tied_problem(12, 3, 4, seed, dtype)
    assert count_ties(W, X, y) > 0
    loss, dW = svm.svm_loss_and_grad(W, X, y, 0.0)
    expected_loss, expected_dW = reference.svm_loss_and_grad(W, X, y, 0.0)
    assert loss == pytest.approx(expected_loss, rel=RTOL[dtype])
    # a tie counted the other way would move entries by 1/N: far beyond rounding
    np.testing.assert_allclose(dW, expected_dW, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_tie_gives_zero_gradient_and_exact_one_sided_changes():
    X, y, W = np.array([[1.0]]), np.array([0]), np.array([[1.0, 0.0]])  # margin exactly 0
    loss, dW = svm.svm_loss_and_grad(W, X, y, 0.0)
    assert loss == 0.0
    np.testing.assert_array_equal(dW, [[0.0, 0.0]])
    h = 2.0**-20
    # W[0, 1] raises the margin by t: right derivative 1, left 0; W[0, 0] lowers it: the mirror
    deltas = svm.svm_perturbed_deltas(
        W, prepare_data(X, y), 0.0, [0, 0, 0, 0], [1, 1, 0, 0], [h, -h, h, -h]
    )
    np.testing.assert_array_equal(deltas, [h, 0.0, 0.0, h])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_and_inf_inputs_are_reported_by_name():
    W, X, y = make_problem(4, 3, 3, seed=5)
    X[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"X must be finite; got X\[1, 2\] = nan"):
        svm.svm_loss_and_grad(W, X, y, 0.1)
    X[1, 2] = 0.0
    W[2, 0] = -np.inf
    with pytest.raises(ValueError, match=r"W must be finite; got W\[2, 0\] = -inf"):
        svm.svm_loss(W, X, y, 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("shape", "reg", "delta"),
    [((1, 1, 2), 0.0, 1.0), ((7, 3, 4), 0.3, 1.0), ((12, 4, 5), 2.0, 0.5)],
)
def test_perturbed_deltas_match_brute_force(shape, reg, delta, dtype):
    W, X, y = make_problem(*shape, seed=sum(shape) + 3, dtype=dtype)
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    rows, cols, offsets = all_coords(W, [1e-9, -1e-9, 1e-3, -0.05, 0.5, -0.5, 3.0])
    offsets = representable(W64, rows, cols, offsets)
    fast = svm.svm_perturbed_deltas(W, prepare_data(X, y), reg, rows, cols, offsets, delta=delta)
    brute = reference.svm_perturbed_deltas(W64, X64, y, reg, rows, cols, offsets, delta)
    assert fast.dtype == np.float64
    assert_deltas_close(fast, brute, reference.svm_loss(W64, X64, y, reg, delta))


@pytest.mark.parametrize("seed", range(4))
def test_perturbed_deltas_across_exact_ties(seed):
    W, X, y = make_tied_problem(10, 3, 4, seed)
    assert count_ties(W, X, y) > 0
    data = prepare_data(X, y, n_classes=4)
    rows, cols, offsets = all_coords(W, [2.0**-30, -(2.0**-30), 0.25, -0.5, 1.0, -1.5])
    fast = svm.svm_perturbed_deltas(W, data, 0.2, rows, cols, offsets)
    brute = reference.svm_perturbed_deltas(W, X, y, 0.2, rows, cols, offsets)
    assert_deltas_close(fast, brute, reference.svm_loss(W, X, y, 0.2))


def test_delta_form_is_exact_where_brute_force_cancels():
    W, X, y = make_problem(40, 6, 4, seed=9)
    reg, h = 0.1, 2.0**-30
    data = prepare_data(X, y)
    rows, cols, offsets = all_coords(W, [h, -h])
    offsets = representable(W, rows, cols, offsets)
    assert not svm.svm_kink_flags(W, data, rows, cols, np.abs(offsets)).any()
    analytic = reference.svm_grad(W, X, y, reg)

    def central_error(deltas):
        numerical = ((deltas[: W.size] - deltas[W.size :]) / (2 * h)).reshape(W.shape)
        diff = np.linalg.norm(numerical - analytic)
        return diff / (np.linalg.norm(numerical) + np.linalg.norm(analytic))

    fast_error = central_error(svm.svm_perturbed_deltas(W, data, reg, rows, cols, offsets))
    brute_error = central_error(reference.svm_perturbed_deltas(W, X, y, reg, rows, cols, offsets))
    assert fast_error < 1e-13
    assert brute_error > 1e3 * fast_error


@pytest.mark.parametrize("seed", range(4))
def test_kink_flags_match_reference(seed):
    W, X, y = make_tied_problem(10, 3, 4, seed)
    X[seed, :] = 0.0  # an example that no coordinate moves
    data = prepare_data(X, y, n_classes=4)
    rows, cols, steps = all_coords(W, [0.0, 0.125, 0.25, 0.5, 1.0, 2.0])
    flags = svm.svm_kink_flags(W, data, rows, cols, steps)
    np.testing.assert_array_equal(flags, reference.svm_kink_flags(W, X, y, rows, cols, steps))
    assert flags.any() and not flags.all()


def test_kink_flags_on_random_problems():
    W, X, y = make_problem(30, 5, 4, seed=12)
    rows, cols, steps = all_coords(W, [1e-6, 1e-3, 1e-2, 0.1])
    np.testing.assert_array_equal(
        svm.svm_kink_flags(W, prepare_data(X, y), rows, cols, steps),
        reference.svm_kink_flags(W, X, y, rows, cols, steps),
    )


def test_kink_flags_at_the_boundary():
    X, y, W = np.array([[2.0]]), np.array([0]), np.zeros((1, 2))  # margin 1, moved by 2t
    data = prepare_data(X, y)
    just_inside, just_outside = 0.5, np.nextafter(0.5, 0.0)
    flags = svm.svm_kink_flags(
        W, data, [0, 0, 0, 0], [1, 0, 1, 0], [just_inside, just_inside, just_outside, just_outside]
    )
    np.testing.assert_array_equal(flags, [True, True, False, False])
    tie = np.array([[1.0, 0.0]])  # margin exactly 0 at W: flagged even with step 0
    assert svm.svm_kink_flags(tie, prepare_data(np.array([[1.0]]), y), [0], [1], [0.0])[0]
    # ... unless the coordinate does not move it (X[i, d] == 0)
    assert not svm.svm_kink_flags(tie, prepare_data(np.array([[0.0]]), y), [0], [1], [5.0])[0]


@pytest.mark.parametrize("func", ["svm_loss", "svm_grad", "svm_loss_and_grad"])
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"W": np.ones((2, 3))},
            ValueError,
            r"W must have shape \(D, C\) = \(4, C\) to match X of shape \(5, 4\); got \(2, 3\)",
        ),
        ({"W": np.ones((4, 3), dtype=np.int32)}, TypeError, r"W must be a float32 or float64"),
        ({"y": np.array([0, 1, 2, 3, 0])}, ValueError, r"y must hold labels in \[0, 3\)"),
        ({"y": np.ones(5, dtype=bool)}, TypeError, r"bool is not allowed"),
        ({"reg": -0.5}, ValueError, r"reg must be a finite number >= 0; got -0.5"),
        ({"delta": np.nan}, ValueError, r"delta must be finite"),
        ({"delta": None}, TypeError, r"delta must be a real number"),
    ],
)
def test_wrappers_reject_bad_input(func, change, error, match):
    W, X, y = make_problem(5, 4, 3, seed=10)
    args = {"W": W, "X": X, "y": y, "reg": 0.1, **change}
    with pytest.raises(error, match=match):
        getattr(svm, func)(**args)


@pytest.mark.parametrize(
    ("func", "change", "error", "match"),
    [
        ("svm_perturbed_deltas", {"rows": [4, 0]}, ValueError, r"rows\[0\] = 4"),
        ("svm_perturbed_deltas", {"offsets": [np.nan, 0.0]}, ValueError, r"offsets must be finite"),
        ("svm_perturbed_deltas", {"delta": np.inf}, ValueError, r"delta must be finite"),
        ("svm_perturbed_deltas", {"data": None}, TypeError, r"data must be a LinearData"),
        ("svm_kink_flags", {"steps": [0.1, -0.1]}, ValueError, r"steps must be >= 0; got st"),
        ("svm_kink_flags", {"steps": [0.1]}, ValueError, r"rows, cols and steps must have the"),
        ("svm_kink_flags", {"cols": [0, 3]}, ValueError, r"cols must hold indices in \[0, 3\)"),
    ],
)
def test_perturbed_functions_reject_bad_input(func, change, error, match):
    W, X, y = make_problem(5, 4, 3, seed=10)
    args = {"W": W, "data": prepare_data(X, y), "rows": [0, 1], "cols": [2, 0], **change}
    if func == "svm_perturbed_deltas":
        args = {"reg": 0.1, "offsets": [1e-3, -1e-3], **args}
    else:
        args = {"steps": [1e-3, 1e-3], **args}
    with pytest.raises(error, match=match):
        getattr(svm, func)(**args)
