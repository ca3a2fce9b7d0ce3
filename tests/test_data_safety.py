"""The caller's arrays are never touched, whatever the loss or the gradient does.

Every public call is checked against bit-for-bit copies made before the call (``-0.0`` and
read-only flags included): normal runs, losses that raise (early, late, at one entry, with
KeyboardInterrupt), losses and gradients that mutate their argument, and a reader thread that
watches the caller's array while a check runs.
"""

import re
import threading
import time

import numpy as np
import pytest

import fastfd
from fastfd.testing import assert_gradient_close

COEF = {"W": np.arange(1.0, 21.0).reshape(4, 5) / 10, "b": np.array([0.5, -1.0, 2.0, 1.5, 3.0])}


def make_params(read_only=False):
    """25 entries (a 4x5 matrix and a bias), a -0.0 among them to catch sign flips."""
    params = {"W": np.linspace(-1.0, 1.0, 20).reshape(4, 5), "b": np.array([0.3, -0.0, 0.7, -0.2,
                                                                           1.1])}
    if read_only:
        params["b"].setflags(write=False)
    return params


def loss(p):
    return float(sum(np.sum(COEF[k] * p[k] ** 2) for k in ("W", "b")))


def grad(p):
    return {k: 2 * COEF[k] * p[k] for k in ("W", "b")}


class Snapshot:
    """Bit-for-bit copies of a params structure and of its arrays' identity and flags."""

    def __init__(self, params):
        self.params = params
        self.container = type(params)
        self.keys = list(params)
        self.objects = {k: params[k] for k in self.keys}
        self.bytes = {k: params[k].tobytes() for k in self.keys}
        self.copies = {k: params[k].copy() for k in self.keys}
        self.flags = {k: (params[k].flags.writeable, params[k].dtype, params[k].shape,
                          params[k].strides) for k in self.keys}

    def assert_unchanged(self):
        params = self.params
        assert type(params) is self.container
        assert list(params) == self.keys
        for k in self.keys:
            arr = params[k]
            assert arr is self.objects[k]
            assert np.array_equal(arr, self.copies[k])
            assert arr.tobytes() == self.bytes[k]  # bit-for-bit: -0.0 stays -0.0
            assert (arr.flags.writeable, arr.dtype, arr.shape, arr.strides) == self.flags[k]


def run_numerical_gradient(f, params, **kwargs):
    return fastfd.numerical_gradient(f, params, **kwargs)


def run_directional_derivative(f, params, **kwargs):
    direction = {k: np.ones_like(v) for k, v in params.items()}
    return fastfd.directional_derivative(f, params, direction, **kwargs)


def run_check_gradient(f, params, **kwargs):
    return fastfd.check_gradient(f, grad, params, directions=2, **kwargs)


def run_check_gradient_sampled(f, params, **kwargs):
    return fastfd.check_gradient(f, grad(make_params()), params, sample=8, **kwargs)


def run_assert_gradient_close(f, params, **kwargs):
    return assert_gradient_close(f, grad, params, **kwargs)


RUNS = [
    run_numerical_gradient,
    run_directional_derivative,
    run_check_gradient,
    run_check_gradient_sampled,
    run_assert_gradient_close,
]
all_runs = pytest.mark.parametrize("run", RUNS, ids=lambda r: r.__name__.removeprefix("run_"))
# runs that perturb one coordinate at a time (so failures name an entry)
coordinate_runs = pytest.mark.parametrize(
    "run", [run_numerical_gradient, run_check_gradient, run_assert_gradient_close],
    ids=["numerical_gradient", "check_gradient", "assert_gradient_close"],
)


def perturbed_name(p, original):
    """Name ``W[1, 2]`` of the single entry where ``p`` differs from ``original``, None when
    none differs, ``"line"`` when several do (the noise estimate's line, a direction)."""
    found = []
    for key in original:
        for index in np.argwhere(p[key] != original[key]):
            found.append(f"{key}[{', '.join(str(int(i)) for i in index)}]")
    if len(found) > 1:
        return "line"
    return found[0] if found else None


def only_perturbed(p, original, key, index):
    """Whether ``p[key][index]`` is the one entry that differs from ``original``."""
    name = f"{key}[{', '.join(str(i) for i in np.atleast_1d(index))}]"
    return perturbed_name(p, original) == name


def split_noise_line(calls, original):
    """The calls of the noise estimate (the first calls moving several entries, all along one
    line through the params) and the rest; asserts that the line calls are collinear."""
    flat = [np.concatenate([c[k].ravel() - original[k].ravel() for k in original]) for c in calls]
    n_line = 0
    for k, d in enumerate(flat[1:], start=1):
        if np.count_nonzero(d) > 1:
            n_line = k
        elif np.count_nonzero(d) == 1:
            break
    line = [d for d in flat[1:n_line + 1] if np.any(d)]
    for d in line:
        ratio = d / line[0]
        assert np.allclose(ratio, ratio[np.isfinite(ratio)][0], rtol=1e-6)
    return calls[1:n_line + 1], calls[n_line + 1:]


# ---------------------------------------------------------------- normal runs


@all_runs
@pytest.mark.parametrize("read_only", [False, True], ids=["writeable", "read-only"])
def test_normal_run_leaves_params_unchanged(run, read_only):
    params = make_params(read_only)
    snap = Snapshot(params)
    run(loss, params)
    snap.assert_unchanged()


@pytest.mark.parametrize("method", ["forward", "backward", "central", "central4"])
def test_every_method_leaves_params_unchanged(method):
    params = make_params()
    snap = Snapshot(params)
    fastfd.numerical_gradient(loss, params, method=method)
    fastfd.check_gradient(loss, grad, params, method=method, directions=1)
    snap.assert_unchanged()


def test_failing_check_with_ladder_leaves_params_unchanged():
    params = make_params()
    snap = Snapshot(params)
    wrong = grad(params)
    wrong["W"][1, 2] += 0.1
    assert fastfd.check_gradient(loss, wrong, params, directions=2).verdict == "fail"
    snap.assert_unchanged()


@pytest.mark.parametrize("container", [list, tuple])
def test_sequences_and_non_contiguous_arrays_are_unchanged(container):
    strided = np.asfortranarray(np.linspace(-2.0, 2.0, 24).reshape(4, 6))[:, ::2]
    frozen = np.array([-0.0, 1.0, 2.0])
    frozen.setflags(write=False)
    params = container([strided, frozen])
    copies = [a.copy() for a in params]
    strides = [a.strides for a in params]
    fastfd.numerical_gradient(lambda p: float(np.sum(p[0] ** 3) + np.sum(p[1] ** 2)), params)
    fastfd.check_gradient(lambda p: float(np.sum(p[0] ** 3) + np.sum(p[1] ** 2)),
                          lambda p: [3 * p[0] ** 2, 2 * p[1]], params, directions=1)
    for a, c, s in zip(params, copies, strides, strict=True):
        assert a.tobytes() == c.tobytes() and a.strides == s
    assert not params[1].flags.writeable and params[0].flags.writeable


def test_other_inputs_are_unchanged():
    params = make_params()
    analytic = grad(params)
    step = {k: np.full_like(v, 1e-4) for k, v in params.items()}
    direction = {k: np.full_like(v, -0.5) for k, v in params.items()}
    snaps = [Snapshot(s) for s in (params, analytic, step, direction)]
    fastfd.numerical_gradient(loss, params, step=step)
    fastfd.check_gradient(loss, analytic, params, step=step)
    fastfd.check_gradient(loss, analytic, params, step=1e-4, directions=2)
    fastfd.directional_derivative(loss, params, direction)
    for snap in snaps:
        snap.assert_unchanged()


def test_returned_gradient_owns_its_memory():
    params = make_params()
    snap = Snapshot(params)
    result = fastfd.numerical_gradient(loss, params)
    for key in params:
        assert not np.shares_memory(result[key], params[key])
        result[key][...] = 99.0  # writing into the result must not reach the caller
    snap.assert_unchanged()


# ---------------------------------------------------------------- a loss that raises


class LossError(Exception):
    """A user's own exception type: it must come back as itself."""


def loss_raising_on_call(n_raise, error=LossError):
    original = make_params()
    calls = {"n": 0, "entry": None}

    def raising_loss(p):
        calls["n"] += 1
        if calls["n"] == n_raise:
            calls["entry"] = perturbed_name(p, original)
            raise error("bad batch")
        return loss(p)

    return raising_loss, calls


@coordinate_runs
@pytest.mark.parametrize("n_raise", [3, 50])
def test_loss_raising_on_nth_call_keeps_type_names_entry_and_params(run, n_raise):
    params = make_params(read_only=True)
    snap = Snapshot(params)
    raising_loss, calls = loss_raising_on_call(n_raise)
    with pytest.raises(LossError, match="bad batch") as info:
        run(raising_loss, params)
    assert calls["entry"] is not None  # the call raised at a perturbed point
    if calls["entry"] == "line":  # early calls: the noise estimate's line
        assert "direction" in str(info.value)
        assert any("stage 'noise'" in note for note in info.value.__notes__)
    else:
        assert calls["entry"] in str(info.value)
    snap.assert_unchanged()


@all_runs
def test_loss_raising_on_first_call_names_params(run):
    params = make_params()
    snap = Snapshot(params)
    raising_loss, _ = loss_raising_on_call(1, error=ZeroDivisionError)
    with pytest.raises(ZeroDivisionError, match=r"bad batch.*params"):
        run(raising_loss, params)
    snap.assert_unchanged()


def test_loss_raising_during_directional_derivative_keeps_type_and_params():
    params = make_params()
    snap = Snapshot(params)
    raising_loss, _ = loss_raising_on_call(3)
    with pytest.raises(LossError, match=r"bad batch.*direction"):
        run_directional_derivative(raising_loss, params)
    snap.assert_unchanged()


@coordinate_runs
@pytest.mark.parametrize(
    "make_error",
    [lambda: ValueError("outside the domain"), lambda: ValueError(), lambda: ValueError(42),
     lambda: KeyError("W")],
    ids=["message", "no-args", "int-arg", "KeyError"],
)
def test_loss_raising_at_one_entry_names_that_entry(run, make_error):
    params = make_params()
    snap = Snapshot(params)
    original = {k: v.copy() for k, v in params.items()}
    expected_type = type(make_error())

    def picky_loss(p):
        if only_perturbed(p, original, "W", (1, 2)):
            raise make_error()
        return loss(p)

    with pytest.raises(expected_type, match=re.escape("W[1, 2]")):
        run(picky_loss, params)
    snap.assert_unchanged()


def test_loss_raising_in_the_step_ladder_names_the_entry():
    params = make_params()
    snap = Snapshot(params)
    wrong = grad(params)
    wrong["b"][3] += 1.0  # a suspect: the ladder re-evaluates b[3] with larger steps
    h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, abs(params["b"][3]))  # default step
    original = {k: v.copy() for k, v in params.items()}

    def ladder_shy_loss(p):
        if only_perturbed(p, original, "b", 3) and abs(p["b"][3] - original["b"][3]) > 2 * h:
            raise LossError("large step")
        return loss(p)

    with pytest.raises(LossError, match=re.escape("b[3]")):
        fastfd.check_gradient(ladder_shy_loss, wrong, params)
    snap.assert_unchanged()


def test_grad_raising_keeps_type_and_params():
    params = make_params()
    snap = Snapshot(params)

    def bad_grad(p):
        raise LossError("grad exploded")

    with pytest.raises(LossError, match=r"grad exploded.*in grad"):
        fastfd.check_gradient(loss, bad_grad, params)
    snap.assert_unchanged()


@all_runs
@pytest.mark.parametrize("n_raise", [1, 3])
def test_keyboard_interrupt_propagates_and_params_unchanged(run, n_raise):
    params = make_params()
    snap = Snapshot(params)
    interrupted_loss, _ = loss_raising_on_call(n_raise, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        run(interrupted_loss, params)
    snap.assert_unchanged()
    # nothing was left half-perturbed: the next call gives the right answer
    np.testing.assert_allclose(fastfd.numerical_gradient(loss, params)["W"],
                               grad(params)["W"], rtol=1e-8)


def test_keyboard_interrupt_in_grad_propagates():
    params = make_params()
    snap = Snapshot(params)

    def interrupted_grad(p):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastfd.check_gradient(loss, interrupted_grad, params)
    snap.assert_unchanged()


# ---------------------------------------------------------------- mutation


def test_grad_mutating_its_argument_does_not_leak():
    params = make_params()
    snap = Snapshot(params)

    def mutating_grad(p):
        g = grad(p)
        p["W"][...] = 1e6
        p["b"] *= -3.0
        p["extra"] = np.zeros(1)
        return g

    check = fastfd.check_gradient(loss, mutating_grad, params, directions=2)
    assert check.verdict == "pass", str(check)  # the loss still saw the original point
    snap.assert_unchanged()


def mutate_every_call(p):
    value = loss(p)
    p["W"][0, 0] += 1.0
    return value


def mutate_second_call():
    calls = {"n": 0}

    def mutating_loss(p):
        calls["n"] += 1
        value = loss(p)
        if calls["n"] == 2:
            p["b"][4] = 0.0  # an entry other than the one being perturbed
        return value

    return mutating_loss


@all_runs
def test_loss_mutating_its_input_raises_runtime_error(run):
    params = make_params()
    snap = Snapshot(params)
    with pytest.raises(RuntimeError, match=r"loss modified its input in place \(first at W\[0, 0"):
        run(mutate_every_call, params)
    snap.assert_unchanged()


@coordinate_runs
def test_loss_mutating_its_input_once_raises_runtime_error(run):
    params = make_params()
    snap = Snapshot(params)
    with pytest.raises(RuntimeError, match=r"loss modified its input in place \(first at b\[4\]"):
        run(mutate_second_call(), params)
    snap.assert_unchanged()


def test_plain_array_loss_mutating_its_input_raises_runtime_error():
    params = np.array([1.0, -2.0, 3.0])
    copy = params.copy()

    def mutating_loss(p):
        value = float(p @ p)
        p *= 1.5
        return value

    for run in (lambda: fastfd.numerical_gradient(mutating_loss, params),
                lambda: fastfd.check_gradient(mutating_loss, lambda p: 2 * p, params),
                lambda: fastfd.directional_derivative(mutating_loss, params, np.ones(3))):
        with pytest.raises(RuntimeError, match=r"loss modified its input in place \(first at x\[0"):
            run()
        assert params.tobytes() == copy.tobytes()


def test_loss_replacing_dict_entries_does_not_affect_later_calls():
    params = make_params()
    snap = Snapshot(params)

    def rebinding_loss(p):
        value = loss(p)
        p["W"] = np.zeros((4, 5))  # rebinding the key, not writing into the array
        del p["b"]
        return value

    result = fastfd.numerical_gradient(rebinding_loss, params)
    np.testing.assert_allclose(result["W"], grad(params)["W"], rtol=1e-8)
    snap.assert_unchanged()


# ---------------------------------------------------------------- what the loss receives


@all_runs
def test_loss_never_receives_the_callers_arrays(run):
    params = make_params()
    seen = []

    def recording_loss(p):
        seen.append(p)
        assert p is not params
        for key in params:
            assert p[key] is not params[key]
            assert not np.shares_memory(p[key], params[key])
        return loss(p)

    run(recording_loss, params)
    assert len(seen) > 2


def test_grad_never_receives_the_callers_arrays():
    params = make_params()

    def recording_grad(p):
        assert p is not params
        for key in params:
            assert p[key] is not params[key]
            assert not np.shares_memory(p[key], params[key])
        return grad(p)

    assert fastfd.check_gradient(loss, recording_grad, params).verdict == "pass"


def test_plain_array_loss_never_receives_the_callers_array():
    params = np.linspace(-1.0, 1.0, 6).reshape(2, 3)

    def recording_loss(p):
        assert p is not params and not np.shares_memory(p, params)
        assert p.shape == params.shape
        return float(np.sum(p**2))

    fastfd.numerical_gradient(recording_loss, params)
    fastfd.check_gradient(recording_loss, lambda p: 2 * p, params, directions=1)
    fastfd.directional_derivative(recording_loss, params, np.ones((2, 3)))


@pytest.mark.parametrize(
    "run, n_perturbed",
    [
        (lambda f, p, method: fastfd.numerical_gradient(f, p, method=method), 25),
        (lambda f, p, method: fastfd.check_gradient(f, grad, p, method=method), 25),
        (lambda f, p, method: assert_gradient_close(f, grad, p, method=method, sample=10,
                                                   directions=0), 10),
    ],
    ids=["numerical_gradient", "check_gradient", "assert_gradient_close-sampled"],
)
@pytest.mark.parametrize("method", ["central", "forward", "central4"])
def test_loss_sees_at_most_one_perturbed_entry(run, n_perturbed, method):
    params = make_params()
    original = {k: v.copy() for k, v in params.items()}
    seen = []

    def recording_loss(p):
        seen.append({k: np.array(v, copy=True) for k, v in p.items()})
        return loss(p)

    run(recording_loss, params, method)
    assert len(seen) > n_perturbed
    assert all(np.array_equal(s[k], original[k]) for s in seen[:1] for k in original)
    line, rest = split_noise_line(seen, original)
    assert 8 <= len(line) <= 40  # the noise estimate: a few dozen evaluations on one line
    perturbed = set()
    for values in rest:
        n_diff = sum(int(np.count_nonzero(values[k] != original[k])) for k in original)
        assert n_diff <= 1  # exact restore: no drift left behind on other entries
        if n_diff:
            perturbed.add(perturbed_name(values, original))
    assert len(perturbed) >= n_perturbed  # every checked entry was perturbed at some point


def test_directional_derivative_along_an_axis_touches_only_that_entry():
    params = make_params()
    original = {k: v.copy() for k, v in params.items()}
    direction = {k: np.zeros_like(v) for k, v in params.items()}
    direction["W"][2, 3] = 1.0
    names = []

    def recording_loss(p):
        names.append(perturbed_name(p, original))
        return loss(p)

    value = fastfd.directional_derivative(recording_loss, params, direction)
    assert value == pytest.approx(grad(params)["W"][2, 3], rel=1e-8)
    # f(x), the noise estimate's line, then the two points along the axis
    assert names[0] is None and set(names[-2:]) == {"W[2, 3]"}
    assert set(names[1:-2]) <= {"line", None}


# ---------------------------------------------------------------- threads


def test_reader_thread_never_sees_a_changed_value():
    params = make_params()
    snap = Snapshot(params)
    w_copy, b_copy = params["W"].copy(), params["b"].copy()
    done = threading.Event()
    report = {"reads": 0, "changed": 0, "error": None}

    def slow_loss(p):
        time.sleep(0.0005)
        return loss(p)

    def checker():
        try:
            report["result"] = fastfd.check_gradient(slow_loss, grad, params, directions=2)
        except BaseException as error:  # surfaced in the main thread below
            report["error"] = error
        finally:
            done.set()

    worker = threading.Thread(target=checker)
    worker.start()
    while not done.is_set():
        report["reads"] += 1
        if not (np.array_equal(params["W"], w_copy) and np.array_equal(params["b"], b_copy)):
            report["changed"] += 1
    worker.join()
    if report["error"] is not None:
        raise report["error"]
    assert report["result"].verdict == "pass"
    assert report["reads"] > 10
    assert report["changed"] == 0
    snap.assert_unchanged()
