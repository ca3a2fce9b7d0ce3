"""NumbaEvaluator: bit-identical to SerialEvaluator on @njit losses, x untouched, clear errors."""

import numba
import numpy as np
import pytest
from numba import njit

import fastfd
from fastfd._params import flatten
from fastfd.executors import SerialEvaluator
from fastfd.executors._numba import NumbaEvaluator, accepts, chunk_bounds, resolve_n_threads

# Under NUMBA_DISABLE_JIT=1 the driver runs as Python (coverage); only the tests about telling
# compiled losses from others need numba's compiler.
jit_only = pytest.mark.skipif(numba.config.DISABLE_JIT,
                              reason="needs compiled @njit losses (NUMBA_DISABLE_JIT is set)")


@njit
def rosenbrock(x):
    total = 0.0
    for i in range(len(x) - 1):
        total += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return total


def rosenbrock_grad(x):
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    grad[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return grad


def make_logistic_loss(X, y, reg):
    """An @njit loss closing over its data (frozen into the compiled code)."""

    @njit
    def logistic_loss(w):
        total = 0.0
        for n in range(X.shape[0]):
            z = 0.0
            for d in range(X.shape[1]):
                z += X[n, d] * w[d]
            total += np.log1p(np.exp(-y[n] * z))
        return total / X.shape[0] + reg * np.sum(w * w)

    return logistic_loss


RNG = np.random.default_rng(0)
X_DATA = RNG.standard_normal((20, 12))
Y_DATA = np.where(RNG.standard_normal(20) > 0, 1.0, -1.0)
logistic_loss = make_logistic_loss(X_DATA, Y_DATA, 0.1)


@njit
def loss_raising_above_ten(x):
    if x[3] > 10.0:
        raise ValueError("boom")
    return np.sum(x * x)


@njit
def loss_raising_when_x3_alone_moves_up(x):
    if x[3] > 10.0 and np.count_nonzero(x) == 1:  # coordinate steps only, not the noise line
        raise ValueError("boom")
    return np.sum(x * x)


@njit
def loss_writing_its_input(x):
    x[5] = 0.0
    return np.sum(x)


@njit(parallel=True)
def parallel_loss(x):
    return np.sum(x * x)


@njit
def float32_loss(x):
    return np.float32(np.sum(x * x))


@njit
def int_loss(x):
    return int(np.sum(x * x) * 1e6)


@njit
def array_loss(x):
    return x * 2.0


@pytest.fixture
def driver_only(monkeypatch):
    """Fail the test if any evaluation leaves the compiled driver for the serial path."""

    def fail(*args):
        pytest.fail("the driver did not finish: chunks were re-run serially")

    monkeypatch.setattr(NumbaEvaluator, "_rerun_serially", fail)


def problem(size, n_perturbations, seed=1):
    rng = np.random.default_rng(seed)
    layout, x = flatten(rng.standard_normal(size))
    coords = rng.integers(0, size, n_perturbations)
    offsets = rng.choice([-1.0, 1.0], n_perturbations) * 10.0 ** rng.uniform(-8, -2,
                                                                          n_perturbations)
    return layout, x, coords, offsets


@pytest.mark.parametrize("loss,size", [(rosenbrock, 50), (logistic_loss, 12)])
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("progress", [False, True])
def test_equals_serial_bit_for_bit(loss, size, n_jobs, progress, driver_only):
    layout, x, coords, offsets = problem(size, 1500)  # several chunks and progress batches
    evaluator = NumbaEvaluator(n_jobs=n_jobs).bind(loss, layout)
    reported = []
    if progress:
        evaluator.progress = reported.append
    original = x.copy()
    ours = evaluator.perturbed_values(x, coords, offsets)
    expected = SerialEvaluator().bind(loss, layout).perturbed_values(x.copy(), coords, offsets)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(x, original)
    if progress:
        assert sum(reported) == len(coords) and len(reported) > 1


@pytest.mark.parametrize("loss", [float32_loss, int_loss])
def test_other_real_results_are_converted_like_float(loss, driver_only):
    layout, x, coords, offsets = problem(10, 600)
    ours = NumbaEvaluator(n_jobs=2).bind(loss, layout).perturbed_values(x, coords, offsets)
    expected = SerialEvaluator().bind(loss, layout).perturbed_values(x.copy(), coords, offsets)
    np.testing.assert_array_equal(ours, expected)


def test_non_scalar_result_gets_the_serial_error():
    layout, x, coords, offsets = problem(10, 20)
    with pytest.raises(TypeError, match="the loss must return a scalar"):
        NumbaEvaluator().bind(array_loss, layout).perturbed_values(x, coords, offsets)


def test_bad_coords_and_offsets():
    layout, x, _, _ = problem(10, 0)
    evaluator = NumbaEvaluator().bind(rosenbrock, layout)
    with pytest.raises(IndexError, match=r"coords must lie in \[0, 10\)"):
        evaluator.perturbed_values(x, np.array([0, 10]), np.array([1e-3, 1e-3]))
    with pytest.raises(ValueError, match="one value per coordinate"):
        evaluator.perturbed_values(x, np.array([0, 1]), np.array([1e-3]))


def test_value_and_directions_work_with_a_dispatcher():
    layout, x, _, _ = problem(50, 0)
    evaluator = NumbaEvaluator().bind(rosenbrock, layout)
    assert evaluator.value(x) == rosenbrock(x)
    direction = np.linspace(-1.0, 1.0, 50)
    values = evaluator.direction_values(x, direction, np.array([1e-3, -1e-3]))
    np.testing.assert_array_equal(
        values, [rosenbrock(x + 1e-3 * direction), rosenbrock(x - 1e-3 * direction)])


def test_empty_and_single_perturbation():
    layout, x, _, _ = problem(5, 0)
    evaluator = NumbaEvaluator(n_jobs=2).bind(rosenbrock, layout)
    assert evaluator.perturbed_values(x, np.array([], dtype=int), np.array([])).shape == (0,)
    one = evaluator.perturbed_values(x, np.array([4]), np.array([0.5]))
    np.testing.assert_array_equal(one, [rosenbrock(x + 0.5 * (np.arange(5) == 4))])


@jit_only
def test_accepts_only_an_njit_loss_of_one_flat_float64_vector():
    vector_layout, _ = flatten(np.zeros(4))
    assert accepts(rosenbrock, vector_layout)
    assert not accepts(lambda x: float(np.sum(x)), vector_layout)
    assert not accepts(rosenbrock.py_func, vector_layout)
    assert not accepts(parallel_loss, vector_layout)
    for params in (np.zeros(4, dtype=np.float32), np.zeros((2, 2)), {"w": np.zeros(4)},
                   [np.zeros(4)], np.array(1.0)):
        assert not accepts(rosenbrock, flatten(params)[0])


@jit_only
@pytest.mark.parametrize("loss,params,error,match", [
    (lambda x: float(np.sum(x)), np.zeros(3), TypeError, "got a loss of type function"),
    (rosenbrock, {"w": np.zeros(3)}, TypeError, "got params of kind dict"),
    (rosenbrock, np.zeros(3, dtype=np.float32), TypeError, "got params of dtype float32"),
    (rosenbrock, np.zeros((2, 3)), ValueError, r"got params of shape \(2, 3\)"),
    (parallel_loss, np.zeros(3), TypeError, "parallel"),
])
def test_bind_says_what_is_required(loss, params, error, match):
    with pytest.raises(error, match="needs an @njit loss of one flat float64 vector") as info:
        NumbaEvaluator().bind(loss, flatten(params)[0])
    info.match(match)


@jit_only
def test_explicit_signature_without_contiguous_vector_is_refused():
    @njit("float64(float64[:])")
    def loss_any_layout(x):
        return np.sum(x)

    @njit("float64(float64[::1])")
    def loss_contiguous(x):
        return np.sum(x)

    layout, x, coords, offsets = problem(6, 20)
    assert not accepts(loss_any_layout, layout)
    assert accepts(loss_contiguous, layout)
    np.testing.assert_array_equal(
        NumbaEvaluator(n_jobs=2).bind(loss_contiguous, layout).perturbed_values(x, coords,
                                                                                offsets),
        SerialEvaluator().bind(loss_contiguous, layout).perturbed_values(x, coords, offsets))


@pytest.mark.parametrize("n_jobs,error", [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_n_jobs(n_jobs, error):
    with pytest.raises(error, match="n_jobs must be a non-zero int"):
        NumbaEvaluator(n_jobs=n_jobs)


def test_n_jobs_follows_joblib_within_numba_threads():
    available = numba.config.NUMBA_NUM_THREADS
    assert resolve_n_threads(1) == 1
    assert resolve_n_threads(-1) == available
    assert resolve_n_threads(-2) == max(1, available - 1)
    assert resolve_n_threads(10 * available) == available
    assert resolve_n_threads(-10 * available) == 1


@pytest.mark.parametrize("start,stop,n_threads", [(0, 1, 2), (0, 7, 2), (3, 1000, 2),
                                                  (0, 100_000, 3), (10, 11, 1)])
def test_chunks_cover_the_range_in_multiples_of_the_threads(start, stop, n_threads):
    bounds = chunk_bounds(start, stop, n_threads)
    assert bounds[0] == start and bounds[-1] == stop and np.all(np.diff(bounds) > 0)
    n_chunks = len(bounds) - 1
    assert n_chunks == stop - start or n_chunks % n_threads == 0
    assert n_chunks <= 4 * n_threads


@pytest.mark.parametrize("offset_at", [3, 1000, 2999])
def test_loss_raising_names_the_entry_and_leaves_x_and_threads(offset_at):
    layout, x, _, _ = problem(20, 0)
    coords = np.arange(3000) % 20
    offsets = np.full(3000, 1e-6)
    offsets[offset_at - offset_at % 20 + 3] = 20.0  # x[3] > 10 there
    original, threads = x.copy(), numba.get_num_threads()
    evaluator = NumbaEvaluator(n_jobs=2).bind(loss_raising_above_ten, layout)
    with pytest.raises(ValueError, match=r"boom \(raised while evaluating the loss at x\[3\] "):
        evaluator.perturbed_values(x, coords, offsets)
    np.testing.assert_array_equal(x, original)
    assert numba.get_num_threads() == threads


def test_loss_writing_its_input_is_reported():
    layout, x, coords, offsets = problem(20, 500)
    evaluator = NumbaEvaluator(n_jobs=2).bind(loss_writing_its_input, layout)
    with pytest.raises(RuntimeError, match=r"modified its input in place \(first at x\[5\]\)"):
        evaluator.perturbed_values(x.copy(), coords, offsets)


# --- through the engine -----------------------------------------------------------------


@pytest.mark.parametrize("loss,size", [(rosenbrock, 40), (logistic_loss, 12)])
def test_numerical_gradient_equals_serial(loss, size):
    x = np.random.default_rng(2).uniform(-1.5, 1.5, size)
    ours = fastfd.numerical_gradient(loss, x, evaluator=NumbaEvaluator())
    np.testing.assert_array_equal(ours, fastfd.numerical_gradient(loss, x, evaluator="serial"))
    ours4 = fastfd.numerical_gradient(loss, x, method="central4",
                                      evaluator=NumbaEvaluator(n_jobs=2))
    np.testing.assert_array_equal(
        ours4, fastfd.numerical_gradient(loss, x, method="central4", evaluator="serial"))


def test_check_gradient_equals_serial():
    x = np.random.default_rng(3).uniform(-1.5, 1.5, 40)
    ours = fastfd.check_gradient(rosenbrock, rosenbrock_grad, x, directions=2,
                                 evaluator=NumbaEvaluator(n_jobs=2))
    serial = fastfd.check_gradient(rosenbrock, rosenbrock_grad, x, directions=2,
                                   evaluator="serial")
    assert ours.verdict == serial.verdict == "pass"
    assert ours.max_rel_error == serial.max_rel_error
    assert ours.n_evals == serial.n_evals
    wrong = fastfd.check_gradient(rosenbrock, lambda w: rosenbrock_grad(w) * 1.01, x,
                                  evaluator=NumbaEvaluator(n_jobs=2))
    assert wrong.verdict == "fail"


def test_engine_error_names_the_entry_and_leaves_params():
    x = np.zeros(8)
    x[3] = 10.0  # fine at x, raises once x[3] is perturbed upwards
    original = x.copy()
    with pytest.raises(ValueError, match=r"boom .*x\[3\] \+"):
        fastfd.numerical_gradient(loss_raising_when_x3_alone_moves_up, x,
                                  evaluator=NumbaEvaluator(n_jobs=2))
    np.testing.assert_array_equal(x, original)
