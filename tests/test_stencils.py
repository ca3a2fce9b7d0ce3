import numpy as np
import pytest

import fastfd
from fastfd._stencils import STENCILS, get_stencil
from fastfd._steps import actual_steps, default_steps


@pytest.mark.parametrize("method, order", [("forward", 1), ("backward", 1), ("central", 2),
                                           ("central4", 4)])
def test_convergence_order_by_fitted_slope(method, order):
    x = np.array([0.7])
    steps = np.logspace(-1.0, -2.5 if order < 4 else -1.6, 6)
    errors = [
        abs(fastfd.numerical_gradient(lambda v: np.sin(3 * v[0]), x, method=method, step=h)[0]
            - 3 * np.cos(2.1))
        for h in steps
    ]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, slope


def test_stencil_weights_sum_to_zero_and_are_exact_on_polynomials():
    for stencil in STENCILS.values():
        assert abs(sum(stencil.weights)) < 1e-15
        # a stencil of order p differentiates polynomials of degree p exactly
        for degree in range(stencil.order + 1):
            deriv = sum(w * o**degree for o, w in zip(stencil.offsets, stencil.weights))
            assert deriv == pytest.approx(1.0 if degree == 1 else 0.0, abs=1e-14)


def test_unknown_method_lists_valid_names():
    valid = "'forward', 'backward', 'central', 'central4', 'complex'; got 'centre'"
    with pytest.raises(ValueError, match=valid):
        get_stencil("centre")


def test_default_steps_follow_dtype_and_magnitude():
    central, forward = STENCILS["central"], STENCILS["forward"]
    x = np.array([0.0, 0.5, 100.0])
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(default_steps(x, central), eps ** (1 / 3) * np.array([1, 1, 100]))
    np.testing.assert_allclose(default_steps(x, forward), eps ** 0.5 * np.array([1, 1, 100]))
    x32 = x.astype(np.float32)
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(default_steps(x32, central),
                               eps32 ** (1 / 3) * np.array([1, 1, 100]))


def test_actual_step_is_what_rounding_leaves():
    x = np.array([1.0, 3.0], dtype=np.float32)
    h = np.array([1e-4, 1e-4])
    taken = actual_steps(x, h)
    assert np.all((x.astype(np.float64) + taken).astype(np.float32).astype(np.float64)
                  - x.astype(np.float64) == taken)
    assert taken[1] != 1e-4  # 3 + 1e-4 is not representable in float32
    np.testing.assert_allclose(taken, 1e-4, rtol=1e-2)
