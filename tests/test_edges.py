"""Verdicts at the edges: the cases where an assumed noise level gave false passes and false
alarms (issue 9), each with its counterpart. Wrong gradients fail, or are inconclusive with a
true reason where nothing can decide; correct ones pass."""

import numpy as np
import pytest

import fastfd
from fastfd.errors import LossModifiedInputError, NonDeterministicLossError


def entries_failed(result):
    return [name for name in result.failed if not name.startswith("direction")]


# 1. a large loss value and an O(1) gradient: the noise of 3e7 is far above EPS * |g|


def test_large_constant_part_every_entry_one_percent_off_fails():
    w = np.random.default_rng(0).standard_normal(50)
    f = lambda w: 3e7 + 0.5 * float(w @ w)  # noqa: E731
    wrong = fastfd.check_gradient(f, lambda w: 1.01 * w, w)
    assert wrong.verdict == "fail" and len(entries_failed(wrong)) == 50, wrong
    right = fastfd.check_gradient(f, lambda w: w, w)
    assert right.verdict == "pass" and right.n_confirmed == 50, right
    assert right.confidence is None  # a full check states no sampling confidence


# 2. near an optimum: |g| ~ 4e-10 on an O(1) loss


def optimum_problem():
    r7 = np.random.default_rng(7)
    A = r7.standard_normal((20, 20))
    H = A @ A.T / 20 + np.eye(20)
    ws = r7.standard_normal(20)
    w0 = ws + 1e-10 * r7.standard_normal(20)
    return (lambda w: 1.0 + 0.5 * float((w - ws) @ H @ (w - ws))), (lambda w: H @ (w - ws)), w0


def test_near_an_optimum_a_flipped_or_zero_gradient_fails():
    f, g, w0 = optimum_problem()
    for wrong in (lambda w: -g(w), lambda w: 0 * w):
        result = fastfd.check_gradient(f, wrong, w0)
        assert result.verdict == "fail" and len(entries_failed(result)) == 20, result


def test_near_an_optimum_the_correct_gradient_is_resolved_as_far_as_steps_allow():
    # the steps climb up to max(1, |x|) where the loss's noise allows: about 1e-5 relative,
    # right at rtol; whatever is not confirmed is weak, with the tolerance that would accept it
    f, g, w0 = optimum_problem()
    result = fastfd.check_gradient(f, g, w0)
    assert result.verdict in ("pass", "inconclusive") and not result.failed, result
    if result.verdict == "inconclusive":
        advice = next(r for r in result.reasons if "noise limits them" in r)
        suggested = float(advice.split("pass rtol=")[1].split(" ")[0])
        assert suggested <= 1e-4
        assert fastfd.check_gradient(f, g, w0, rtol=suggested).verdict == "pass"


def test_at_an_exact_optimum_every_gradient_is_inconclusive_with_the_reason():
    # |g| ~ 1e-14 on |f| ~ 1e3: below anything a step can resolve
    x0 = np.linspace(-1, 1, 8)
    x = x0 + 1e-14
    f = lambda v: 1e3 + float(np.sum((v - x0) ** 2))  # noqa: E731
    for grad in (lambda v: 2 * (v - x0), lambda v: -2 * (v - x0), lambda v: 0 * v):
        result = fastfd.check_gradient(f, grad, x)
        assert result.verdict == "inconclusive", result
        assert any("may sit at an optimum; check at a point away from it" in r
                   for r in result.reasons), result.reasons


# 3. float64 params, the loss computed in float32


def float32_problem():
    r3 = np.random.default_rng(1)
    B, t, v = r3.normal(size=(50, 20)), r3.normal(size=50), r3.normal(size=20)
    B32, t32 = B.astype(np.float32), t.astype(np.float32)

    def f32(w):
        return np.float32(0.5) * np.sum((B32 @ w.astype(np.float32) - t32) ** 2)

    return f32, (lambda w: B.T @ (B @ w - t)), v


def test_float32_arithmetic_behind_float64_params_is_measured():
    f32, g, v = float32_problem()
    for wrong in (lambda w: 1.05 * g(w), lambda w: g(w) * np.r_[-1, np.ones(19)]):
        assert fastfd.check_gradient(f32, wrong, v).verdict == "fail"
    right = fastfd.check_gradient(f32, g, v)
    assert right.verdict == "pass", right
    assert "about float32 precision although params are float64" in right.noise.description
    assert right.rtol > 1e-4  # the tolerance follows the measured precision


def test_float32_loss_returned_as_a_python_float_passes_without_fake_kinks():
    x = np.random.default_rng(0).standard_normal(10)
    f = lambda x: float(np.sum(np.sin(x.astype(np.float32))))  # noqa: E731
    right = fastfd.check_gradient(f, np.cos, x)
    assert right.verdict == "pass" and not right.kinks, right
    assert fastfd.check_gradient(f, lambda x: 1.05 * np.cos(x), x).verdict == "fail"


# 4. high curvature: truncation, not rounding, limits the first step


def curvature_problem():
    k = 3e4
    r4 = np.random.default_rng(4)
    r4.standard_normal(12)
    x4 = r4.uniform(-1, 1, 8)
    return k, (lambda x: float(np.sum(np.sin(k * x)))), x4


def test_high_curvature_one_percent_off_fails_and_the_right_gradient_passes():
    k, f, x4 = curvature_problem()
    wrong = fastfd.check_gradient(f, lambda x: 1.01 * k * np.cos(k * x), x4)
    assert wrong.verdict == "fail" and len(entries_failed(wrong)) == 8, wrong
    right = fastfd.check_gradient(f, lambda x: k * np.cos(k * x), x4)
    assert right.verdict == "pass", right


def test_truncation_limited_entries_are_blamed_on_truncation_not_rounding():
    # sin(3e4 x) with a step far too large and a ladder too short to fix it: the reason
    # names truncation and suggests a smaller step
    k, f, x4 = curvature_problem()
    result = fastfd.check_gradient(f, lambda x: k * np.cos(k * x), x4, step=0.1)
    assert result.verdict != "fail"
    weak = [r for r in result.reasons if "weak because" in r]
    assert weak and all("truncation limits them" in r for r in weak), result.reasons
    assert not any("noise limits them" in r for r in result.reasons)


# 5. cancellation in the loss


def test_cancellation_is_measured_noise_not_fake_kinks():
    x5 = 0.1 * np.random.default_rng(0).standard_normal(20)
    f = lambda x: float((1e6 + np.sum(x**2)) - 1e6)  # noqa: E731
    right = fastfd.check_gradient(f, lambda x: 2 * x, x5)
    assert right.verdict == "pass" and not right.kinks, right
    assert "cancellation" in right.noise.description
    wrong = fastfd.check_gradient(f, lambda x: 2.1 * x, x5)
    assert wrong.verdict == "fail" and not wrong.kinks


# 6. max-pool ties: each entry inside its one-sided range, jointly not a subgradient


def maxpool_problem():
    v6 = np.array([1.0, 1.0, 0.5, 2.0, 2.0, 2.0])

    def fmax(v):
        return float(np.sum(v.reshape(3, 2).max(axis=1)))

    def every_tied_max(v):
        m = v.reshape(3, 2)
        return (m == m.max(1, keepdims=True)).astype(float).ravel()

    def first_max(v):
        m = v.reshape(3, 2)
        out = np.zeros_like(m)
        out[np.arange(3), m.argmax(1)] = 1.0
        return out.ravel()

    return v6, fmax, every_tied_max, first_max


@pytest.mark.parametrize("directions", [0, 4])
def test_gradient_routed_to_every_tied_maximum_fails_jointly(directions):
    v6, fmax, every_tied_max, first_max = maxpool_problem()
    bug = fastfd.check_gradient(fmax, every_tied_max, v6, directions=directions)
    assert bug.verdict == "fail", bug
    assert sorted(e.name for e in bug.joint if e.status == "fail") == [
        "x[0] + x[1]", "x[4] + x[5]"]
    right = fastfd.check_gradient(fmax, first_max, v6, directions=directions)
    assert right.verdict == "pass" and set(right.kinks) == {"x[0]", "x[1]", "x[4]", "x[5]"}


def test_valid_max_pool_subgradients_under_mixed_signs_pass_with_directions():
    # upstream gradient of mixed signs: convex and concave windows; a random direction mixing
    # independent kinks proves nothing and must not fail a valid subgradient
    v = np.array([1.0, 1.0, 3.0, 3.0, -2.0, -2.0, 0.5, 0.5])
    up = np.array([1.0, -1.0, 2.0, -0.5])

    def f(v):
        return float(up @ v.reshape(4, 2).max(axis=1))

    def g(v):
        m = v.reshape(4, 2)
        out = np.zeros_like(m)
        out[np.arange(4), m.argmax(1)] = up
        return out.ravel()

    for seed in range(3):
        result = fastfd.check_gradient(f, g, v, directions=3, seed=seed)
        assert result.verdict == "pass", result
        assert len(result.kinks) == 8


# 7. random directions on a ReLU network too big to check fully


def relu_net(d=200, h=60, c=5, n=30, seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((n, d)), rng.integers(0, c, n)
    params = {"W1": rng.standard_normal((d, h)) / np.sqrt(d), "b1": 0.1 * rng.standard_normal(h),
              "W2": rng.standard_normal((h, c)) / np.sqrt(h), "b2": np.zeros(c)}

    def loss_and_grad(p):
        z = X @ p["W1"] + p["b1"]
        a = np.maximum(z, 0)
        s = a @ p["W2"] + p["b2"]
        s = s - s.max(axis=1, keepdims=True)
        prob = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(prob[np.arange(n), y]))
        ds = prob.copy()
        ds[np.arange(n), y] -= 1
        ds /= n
        da = ds @ p["W2"].T
        dz = da * (z > 0)
        return loss, {"W1": X.T @ dz, "b1": dz.sum(0), "W2": a.T @ ds, "b2": ds.sum(0)}

    return params, loss_and_grad


def test_directions_catch_and_name_a_wrong_entry_outside_the_sample():
    params, loss_and_grad = relu_net()

    def wrong_grad(p):
        g = loss_and_grad(p)[1]
        g["W1"][17, 3] += 1e-3
        return g

    f = lambda p: loss_and_grad(p)[0]  # noqa: E731
    result = fastfd.check_gradient(f, wrong_grad, params, sample=100, seed=1)
    assert len(result.directions) == 3  # a sampled check checks directions by default
    assert "W1[17, 3]" in [e.name for e in result.localized], result
    assert result.verdict == "fail"
    assert not any(d.status == "weak" for d in result.directions if d.status != "pass")
    right = fastfd.check_gradient(f, lambda p: loss_and_grad(p)[1], params, sample=100, seed=1)
    assert right.verdict == "pass" and all(d.status == "pass" for d in right.directions), right


def test_directions_can_be_switched_off():
    params, loss_and_grad = relu_net(d=20, h=8)
    result = fastfd.check_gradient(lambda p: loss_and_grad(p)[0], lambda p: loss_and_grad(p)[1],
                                   params, sample=30, directions=0)
    assert result.directions == ()


# 8. a loss that modifies its argument, on every evaluator


def mutating(p):
    value = float(np.sum(p**2))
    p[0] += 1.0
    return value


@pytest.mark.parametrize("backend", [None, "threading", "loky"])
def test_a_loss_modifying_its_input_is_caught_on_every_backend(backend):
    x = np.linspace(-1, 1, 16)
    before = x.copy()
    kwargs = {} if backend is None else {"backend": backend, "n_jobs": 2}
    with pytest.raises(LossModifiedInputError, match="modified its input in place"):
        fastfd.check_gradient(mutating, lambda v: 2 * v, x, **kwargs)
    np.testing.assert_array_equal(x, before)


# (a loss writing only in workers: tests/test_executors.py, every backend, dask included)


# 9. only float32 and float64 params


@pytest.mark.parametrize("dtype, why", [(np.float16, "3 significant digits"),
                                        (np.longdouble, "platform-dependent")])
def test_other_float_dtypes_are_refused_with_the_reason(dtype, why):
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    x = np.linspace(-1, 1, 5).astype(dtype)
    with pytest.raises(TypeError, match=f"supports float32 and float64 only: .*{why}"):
        fastfd.check_gradient(lambda v: float(np.sum(v**2)), lambda v: 2 * v, x)


# 10. entries at exact kinks whose analytic values are valid subgradients


def test_svm_at_exact_margin_ties_passes_and_lists_the_kinks():
    from fastfd.models import LinearSVM

    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    svm = LinearSVM(X, y, reg=0.0, delta=0.0)
    W0 = np.zeros((4, 3))  # every margin exactly 0
    result = fastfd.check_gradient(svm, svm.grad, W0)
    assert result.verdict == "pass", result
    assert len(result.kinks) == W0.size and result.n_confirmed == W0.size
    assert result.joint and not result.failed
    flipped = fastfd.check_gradient(svm, lambda w: -svm.grad(w) + 0.5, W0)
    assert flipped.verdict == "fail"


def test_a_generic_svm_loss_at_exact_ties_passes_too():
    from tests import naive

    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0, 1, 0])
    W = np.array([[1.0, 0.0], [0.25, 0.5]])  # example 0, class 1 sits at the margin
    result = fastfd.check_gradient(lambda w: naive.svm_loss(w, X, y, 0.1),
                                   lambda w: naive.svm_grad(w, X, y, 0.1), W)
    assert result.verdict == "pass" and result.kinks, result


# and: a non-deterministic loss is an error, not a kink


def test_a_non_deterministic_loss_is_an_error():
    rng = np.random.default_rng(0)

    def dropout_on(p):
        mask = rng.random(p.shape) > 0.5
        return float(np.sum((p * mask) ** 2))

    with pytest.raises(NonDeterministicLossError, match="not deterministic"):
        fastfd.check_gradient(dropout_on, lambda p: p, np.ones(6))
