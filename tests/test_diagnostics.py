"""Step sweeps (error vs step, regimes, slopes) and the Taylor test (remainder slopes, kinks)."""

import json
import re
import sys

import numpy as np
import pytest

import fastfd
from fastfd._sampling import random_directions
from fastfd._session import Session
from fastfd._taylor import TAYLOR_POINTS, run_taylor, taylor_eps
from fastfd.diagnostics import (
    LOST,
    PLATEAU,
    ROUNDING,
    SATURATED,
    TRUNCATION,
    StepSweep,
    TaylorTest,
    detect_regimes,
    step_sweep,
    taylor_test,
)
from tests import naive

EPS64 = float(np.finfo(np.float64).eps)


def sin_problem(dtype=np.float64):
    x = np.linspace(-1.0, 1.0, 9).astype(dtype)
    return (lambda v: np.sum(np.sin(v))), np.cos, x


def dict_problem():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}

    def f(p):
        return np.sum(np.tanh(p["W"] @ p["b"])) + np.sum(p["b"] ** 3)

    def grad(p):
        s = 1.0 - np.tanh(p["W"] @ p["b"]) ** 2
        return {"W": np.outer(s, p["b"]), "b": p["W"].T @ s + 3.0 * p["b"] ** 2}

    return f, grad, params


# --------------------------------------------------------------------------------------------
# step_sweep
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def central_sweep():
    f, g, x = sin_problem()
    return step_sweep(f, g, x)


def test_central_sweep_shows_both_regimes(central_sweep):
    sweep = central_sweep
    assert sweep.method == "central" and sweep.order == 2
    assert len(sweep.steps) == 23 and sweep.steps[0] == 0.1
    assert sweep.steps[-1] == pytest.approx(1e-12)
    assert sweep.truncation.slope == pytest.approx(2.0, abs=0.3)
    assert sweep.rounding.slope == pytest.approx(-1.0, abs=0.3)
    assert sweep.truncation.step_max == 0.1 and sweep.rounding.step_min == pytest.approx(1e-12)
    # the bottom of the curve is where EPS**(1/3) puts the default step
    assert EPS64 ** (1 / 3) / 10 < sweep.best_step < EPS64 ** (1 / 3) * 10
    assert sweep.best_error == min(sweep.norm_rel_error) < 1e-9
    assert sweep.labels[0] == TRUNCATION and sweep.labels[-1] == ROUNDING
    assert sweep.labels[sweep.steps.index(sweep.best_step)] == PLATEAU
    assert sweep.plateau.step_max >= sweep.best_step >= sweep.plateau.step_min
    assert all(m >= n for m, n in zip(sweep.max_rel_error, sweep.norm_rel_error))
    assert not sweep.sampled and sweep.n_checked == sweep.n_params == 9


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_one_sided_sweep_is_first_order_with_best_step_near_sqrt_eps(method):
    f, g, x = sin_problem()
    sweep = step_sweep(f, g, x, method=method)
    assert sweep.order == 1
    assert sweep.truncation.slope == pytest.approx(1.0, abs=0.3)
    assert sweep.rounding.slope == pytest.approx(-1.0, abs=0.3)
    assert EPS64 ** 0.5 / 10 < sweep.best_step < EPS64 ** 0.5 * 10


def test_central4_sweep_is_fourth_order():
    f, g, x = sin_problem()
    sweep = step_sweep(f, g, x, method="central4")
    assert sweep.truncation.slope == pytest.approx(4.0, abs=0.3)
    assert sweep.rounding.slope == pytest.approx(-1.0, abs=0.3)
    assert EPS64 ** 0.2 / 10 < sweep.best_step < EPS64 ** 0.2 * 10


def test_float32_best_step_is_larger_and_tiny_steps_are_lost(central_sweep):
    f, g, x = sin_problem(np.float32)
    sweep = step_sweep(f, g, x)
    assert sweep.dtype == "float32"
    assert sweep.best_step >= 10 * central_sweep.best_step
    eps32 = float(np.finfo(np.float32).eps)
    assert eps32 ** (1 / 3) / 10 < sweep.best_step < eps32 ** (1 / 3) * 10
    # below ulp(1) / 2 the step vanishes for x = 1: reported, not evaluated
    assert sweep.labels[-1] == LOST and np.isnan(sweep.norm_rel_error[-1])
    assert all(lab == LOST for h, lab in zip(sweep.steps, sweep.labels) if h < 5e-8)
    assert sweep.rounding is not None and sweep.rounding.slope == pytest.approx(-1.0, abs=0.3)
    assert sweep.to_dict()["norm_rel_error"][-1] is None


def test_str_is_a_table(central_sweep):
    text = str(central_sweep)
    assert "step" in text and "norm rel err" in text and "max rel err" in text
    assert "1.00e-01" in text and "1.00e-12" in text and "<- best" in text
    assert "truncation: steps 1.0e-01" in text and "expected ~2" in text
    assert "rounding:" in text and "expected ~-1" in text
    assert len(text.splitlines()) >= 23 + 2


def test_to_dict_is_json(central_sweep):
    data = json.loads(json.dumps(central_sweep.to_dict()))
    assert data["method"] == "central" and len(data["steps"]) == 23
    assert data["best_step"] == central_sweep.best_step
    assert {r["name"] for r in data["regimes"]} == {TRUNCATION, PLATEAU, ROUNDING}


def test_plot_is_log_log_and_needs_matplotlib(central_sweep, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = central_sweep.plot()
    try:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        texts = " ".join(t.get_text() for t in ax.texts)
        slopes = dict(re.findall(r"(truncation|rounding): slope ([-+0-9.]+)", texts))
        assert abs(float(slopes["truncation"]) - 2) < 0.2
        assert abs(float(slopes["rounding"]) + 1) < 0.2
        assert "best step" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
        fig, given = plt.subplots()
        assert central_sweep.plot(ax=given) is given
        plt.close(fig)
    finally:
        plt.close(ax.figure)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'fastfd\[plot\]'"):
        central_sweep.plot()


def test_dict_params_and_sampling():
    f, g, params = dict_problem()
    sweep = step_sweep(f, g, params)
    assert sweep.n_params == 15 and sweep.n_checked == 15
    assert sweep.truncation.slope == pytest.approx(2.0, abs=0.3)
    assert sweep.rounding.slope == pytest.approx(-1.0, abs=0.3)
    sampled = step_sweep(f, g, params, sample=5, seed=3)
    assert sampled.sampled and sampled.n_checked < 15  # every array visited: 5 of W, 3 of b
    again = step_sweep(f, g, params, sample=5, seed=3)
    assert sampled.norm_rel_error == again.norm_rel_error


def test_auto_sample_caps_at_2000_entries():
    x = np.linspace(-1, 1, 2500)
    sweep = step_sweep(lambda v: np.sum(v**3), lambda v: 3 * v**2, x, steps=[1e-3, 1e-5],
                       evaluator="serial")
    assert sweep.sampled and sweep.n_checked == 2000 and sweep.n_params == 2500


def test_exact_model_evaluator_has_no_rounding_regime():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    model = fastfd.models.LinearSoftmax(X, y, reg=0.1)
    W = 0.5 * rng.standard_normal((6, 3))
    exact = step_sweep(model, model.grad, W)
    assert exact.truncation.slope == pytest.approx(2.0, abs=0.3)
    # the model's delta form has no cancellation: tiny steps stay at full precision
    assert exact.rounding is None
    assert max(e for h, e in zip(exact.steps, exact.norm_rel_error) if h <= 1e-8) < 1e-13
    assert exact.best_step <= 1e-7
    # the same loss through the generic evaluator shows the EPS / h rise
    generic = step_sweep(lambda w: naive.softmax_loss(w, X, y, 0.1), model.grad, W)
    assert generic.rounding.slope == pytest.approx(-1.0, abs=0.3)
    assert generic.best_step > 100 * exact.best_step


def test_user_steps_are_sorted_and_validated():
    f, g, x = sin_problem()
    sweep = step_sweep(f, g, x, steps=[1e-4, 1e-2, 1e-3])
    assert sweep.steps == (1e-2, 1e-3, 1e-4)
    assert sweep.truncation.slope == pytest.approx(2.0, abs=0.1)
    for bad, error in [([1e-3, -1e-4], ValueError), ([], ValueError), ([np.nan], ValueError),
                       ("1e-3", TypeError), ([[1e-3]], ValueError)]:
        with pytest.raises(error, match="steps must"):
            step_sweep(f, g, x, steps=bad)
    with pytest.raises(ValueError, match="method must be one of"):
        step_sweep(f, g, x, method="centre")


def test_params_are_untouched():
    f, g, params = dict_problem()
    before = {k: v.copy() for k, v in params.items()}
    step_sweep(f, g, params, steps=[1e-2, 1e-4])
    taylor_test(f, g, params)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_detect_regimes_on_synthetic_curves():
    h = np.logspace(-1, -12, 23)
    labels, regimes = detect_regimes(h, 3 * h**4 + 1e-16 / h)
    assert [r.name for r in regimes] == [TRUNCATION, PLATEAU, ROUNDING]
    assert regimes[0].slope == pytest.approx(4.0, abs=0.05)
    assert regimes[2].slope == pytest.approx(-1.0, abs=0.05)
    # rounding only (a quadratic has no central truncation error): no truncation regime
    labels, regimes = detect_regimes(h, 1e-16 / h)
    assert [r.name for r in regimes] == [PLATEAU, ROUNDING] and labels[0] == PLATEAU
    # saturated and lost points are labelled and end the runs
    errors = h**2 + 1e-16 / h
    errors[:2] = [0.9, 0.5]
    errors[-3:] = np.nan
    labels, regimes = detect_regimes(h, errors)
    assert labels[:2] == (SATURATED, SATURATED) and labels[-3:] == (LOST,) * 3
    assert regimes[0].name == TRUNCATION and regimes[0].step_max == h[2]
    # nothing usable
    labels, regimes = detect_regimes(h[:2], [np.nan, 1.0])
    assert labels == (LOST, SATURATED) and regimes == ()


# --------------------------------------------------------------------------------------------
# taylor_test
# --------------------------------------------------------------------------------------------

SMOOTH = {
    "sin": (lambda v: np.sum(np.sin(v)), np.cos),
    "exp + quadratic": (lambda v: np.sum(np.exp(v)) + v @ v, lambda v: np.exp(v) + 2 * v),
    "product": (lambda v: np.sum(np.exp(v)) * np.sum(np.cos(v)),
                lambda v: np.exp(v) * np.sum(np.cos(v)) - np.sum(np.exp(v)) * np.sin(v)),
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_correct_gradient_has_slope_two(name):
    f, g = SMOOTH[name]
    x = np.random.default_rng(1).standard_normal(10)
    result = taylor_test(f, g, x)
    assert isinstance(result, TaylorTest)
    assert result.verdict == "pass" and result.passed, result
    assert result.fitted_slope == pytest.approx(2.0, abs=0.2)
    assert not result.kink and len(result.fit_eps) >= 3
    assert len(result.eps) == TAYLOR_POINTS and len(result.slopes) == TAYLOR_POINTS - 1


def test_default_eps_scale():
    x = np.array([3.0, -40.0, 1.0])
    v = np.array([0.0, 0.5, -0.25])
    result = taylor_test(lambda p: np.sum(p**2), lambda p: 2 * p, x, direction=v)
    assert result.eps[0] * 0.5 == pytest.approx(0.1 * 40.0)
    assert result.eps[1] == result.eps[0] / 2
    assert result.direction == "given direction"


def test_dict_params_pass_and_wrong_arrays_fail():
    f, g, params = dict_problem()
    ok = taylor_test(f, g, params)
    assert ok.verdict == "pass" and ok.fitted_slope == pytest.approx(2.0, abs=0.2), ok

    def sign_flip(p):
        grads = g(p)
        grads["b"] = -grads["b"]
        return grads

    def missing_factor(p):
        grads = g(p)
        grads["W"] = 0.5 * grads["W"]
        return grads

    for wrong in (sign_flip, missing_factor):
        bad = taylor_test(f, wrong, params)
        assert bad.verdict == "fail", bad
        assert bad.fitted_slope == pytest.approx(1.0, abs=0.2)
        assert "first-order part" in bad.reason and not bad.kink


def test_fail_reports_the_size_of_the_error():
    x = np.random.default_rng(1).standard_normal(10)
    v = np.ones(10) / np.sqrt(10)
    result = taylor_test(lambda p: np.sum(np.sin(p)), lambda p: 1.01 * np.cos(p), x, direction=v)
    expected = 0.01 * np.cos(x) @ v
    assert result.verdict == "fail"
    assert f"{expected:.3g}" in result.reason


def test_relu_net_bugs_fail():
    params = naive.relu_net_params()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    f = lambda p: naive.relu_net_loss_and_grad(p, X, y)[0]  # noqa: E731
    ok = taylor_test(f, lambda p: naive.relu_net_loss_and_grad(p, X, y)[1], params)
    assert ok.verdict == "pass", ok
    for bug in ("sign_flip", "reg_factor", "missing_1_over_n"):
        wrong = taylor_test(f, lambda p, b=bug: naive.relu_net_loss_and_grad(p, X, y, bug=b)[1],
                            params)
        assert wrong.verdict == "fail", (bug, wrong)


def test_pure_noise_is_inconclusive_not_fail():
    f = lambda v: 1e8 + 1e-6 * np.sum(v)  # noqa: E731
    for grad in (lambda v: 1e-6 * np.ones_like(v), lambda v: -1e-6 * np.ones_like(v)):
        result = taylor_test(f, grad, np.ones(10))
        assert result.verdict == "inconclusive", result
        assert result.fitted_slope is None and "noise" in result.reason


def test_linear_loss_is_inconclusive_with_the_reason():
    result = taylor_test(lambda v: np.sum(3 * v), lambda v: 3 * np.ones_like(v), np.ones(5))
    assert result.verdict == "inconclusive"
    assert "linear along v" in result.reason


def test_kink_along_the_direction_is_inconclusive_not_fail():
    x = np.random.default_rng(1).standard_normal(10)
    x[3] = 0.0  # |x| has a kink there; sign(0) = 0 is a valid subgradient
    result = taylor_test(lambda v: np.sum(np.abs(v)), np.sign, x)
    assert result.verdict == "inconclusive" and result.kink, result
    assert "kink" in result.reason
    assert result.fitted_slope == pytest.approx(1.0, abs=0.2)
    # a value outside the subdifferential [-1, 1] is wrong even at a kink
    outside = taylor_test(lambda v: np.sum(np.abs(v)), lambda v: np.sign(v) + 3.0 * (v == 0), x,
                          direction=np.eye(10)[3] + 0.1)
    assert outside.verdict == "fail" and outside.kink and "subgradient" in outside.reason


def test_relu_at_zero_with_one_sided_derivative_is_a_kink():
    x = np.array([0.0, 1.5, -0.5])
    result = taylor_test(lambda v: np.sum(np.maximum(v, 0)), lambda v: (v > 0).astype(float), x,
                         direction=np.array([1.0, 0.3, -0.2]))
    assert result.verdict == "inconclusive" and result.kink, result


@pytest.mark.parametrize("seed", range(3))
def test_float32_correct_gradient_never_fails(seed):
    W, X, y = naive.linear_problem(n=30, d=8, c=5, seed=seed, dtype=np.float32)
    reg = np.float32(0.05)
    f = lambda w: naive.softmax_loss(w, X, y, reg)  # noqa: E731
    result = taylor_test(f, lambda w: naive.softmax_grad(w, X, y, reg), W, seed=seed)
    assert result.verdict in ("pass", "inconclusive"), result
    # the floor is set by float32 rounding of f: ~100 * 1.2e-7 * |f|
    assert min(result.noise_floor) > 1e-6 * abs(result.f0)
    svm = taylor_test(lambda w: naive.svm_loss(w, X, y, reg),
                      lambda w: naive.svm_grad(w, X, y, reg), W, seed=seed)
    assert svm.verdict in ("pass", "inconclusive"), svm
    wrong = taylor_test(f, lambda w: 2 * naive.softmax_grad(w, X, y, reg), W, seed=seed)
    assert wrong.verdict == "fail", wrong


def test_models_work():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    model = fastfd.models.LinearSoftmax(X, y, reg=0.1)
    W = 0.1 * rng.standard_normal((6, 3))
    assert taylor_test(model, model.grad, W).verdict == "pass"
    assert taylor_test(model, lambda w: model.grad(w).T.reshape(6, 3), W).verdict == "fail"


def test_points_outside_the_domain_are_dropped():
    x = np.linspace(0.05, 1.0, 6)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = taylor_test(lambda v: np.sum(np.log(v)), lambda v: 1 / v, x, eps=1.0)
    assert result.verdict == "pass", result
    assert np.isnan(result.remainders[0]) and "dropped" in result.reason
    assert result.to_dict()["remainders"][0] is None


def test_user_eps():
    f, g = SMOOTH["sin"]
    x = np.linspace(-1, 1, 5)
    result = taylor_test(f, g, x, eps=[1e-3, 1e-2, 1e-4, 3e-3])
    assert result.eps == (1e-2, 3e-3, 1e-3, 1e-4) and result.verdict == "pass"
    scalar = taylor_test(f, g, x, eps=0.5)
    assert scalar.eps[0] == 0.5 and len(scalar.eps) == TAYLOR_POINTS


def test_str_and_to_dict():
    f, g = SMOOTH["sin"]
    result = taylor_test(f, g, np.linspace(-1, 1, 5), seed=4)
    text = str(result)
    assert text.startswith("fastfd Taylor test: PASS")
    assert "r(-e)" in text and "floor" in text and "fit" in text and "seed 4" in text
    assert len(text.splitlines()) == 4 + TAYLOR_POINTS + 1
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "pass" and data["passed"] is True
    assert len(data["remainders"]) == TAYLOR_POINTS


def test_bad_inputs_raise_clear_errors():
    f, g = SMOOTH["sin"]
    x = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match="direction has shape"):
        taylor_test(f, g, x, direction=np.ones(4))
    with pytest.raises(ValueError, match="direction is zero"):
        taylor_test(f, g, x, direction=np.zeros(5))
    with pytest.raises(ValueError, match="direction is not finite"):
        taylor_test(f, g, x, direction=np.array([1.0, np.nan, 0, 0, 0]))
    with pytest.raises(TypeError, match="direction must have the structure"):
        taylor_test(f, g, x, direction={"x": np.ones(5)})
    for bad in (-1.0, 0.0, np.inf, [1e-2, -1e-3, 1e-4], [1e-2, 1e-3], [1e-2, 1e-2, 1e-3],
                [[1e-2, 1e-3, 1e-4]]):
        with pytest.raises(ValueError, match="eps must"):
            taylor_test(f, g, x, eps=bad)
    for bad in ("small", True, {"e": 1.0}):
        with pytest.raises(TypeError, match="eps must"):
            taylor_test(f, g, x, eps=bad)
    with pytest.raises(ValueError, match="lost to rounding"):
        taylor_test(f, g, x + 5.0, eps=[1e-10, 1e-20, 1e-30])
    with pytest.raises(ValueError, match="seed must be"):
        taylor_test(f, g, x, seed=-1)
    with pytest.raises(ValueError, match="gradient has shape"):
        taylor_test(f, lambda v: np.ones(3), x)


def test_taylor_on_a_prepared_session():
    f, g, params = dict_problem()
    with Session(f, params) as session:
        v = next(random_directions(session.layout, 1, np.random.default_rng(0)))

        def taylor(grad):
            return run_taylor(session, session.analytic(grad), v, taylor_eps(None, session, v),
                              "v")

        ok = taylor(g)
        before = session.n_evals
        again = taylor(g)
        assert ok.verdict == "pass" and again.remainders == ok.remainders
        assert session.n_evals - before == 2 * TAYLOR_POINTS  # the noise was measured once
        wrong = taylor(lambda p: {k: 2 * v for k, v in g(p).items()})
        assert wrong.verdict == "fail"
        session.ensure_unmodified()


def test_results_are_immutable(central_sweep):
    with pytest.raises(AttributeError):
        central_sweep.best_step = 1.0  # type: ignore[misc]
    assert isinstance(central_sweep, StepSweep)


def test_sweep_says_the_gradient_is_wrong_not_the_step_in_text_and_plot():
    x = np.linspace(-1, 1, 20)
    f = lambda w: float(np.sum(np.sin(w)))  # noqa: E731
    wrong = step_sweep(f, lambda w: 1.01 * np.cos(w), x)
    assert wrong.diagnosis.startswith("the gradient is wrong, not the step")
    assert wrong.diagnosis in str(wrong)
    right = step_sweep(f, np.cos, x)
    assert right.diagnosis is None and "wrong, not the step" not in str(right)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    texts = [t.get_text() for t in wrong.plot().texts]
    assert "the gradient is wrong, not the step" in texts
    assert "the gradient is wrong, not the step" not in [t.get_text()
                                                         for t in right.plot().texts]


def test_full_check_never_speaks_of_sampling():
    x = np.linspace(-1, 1, 30)
    for grad in (lambda w: 2 * w, lambda w: 2.1 * w):
        report = fastfd.check_gradient(lambda w: float(w @ w), grad, x, sample="all")
        text = str(report).lower() + " ".join(report.reasons).lower()
        assert not report.sampled and report.confidence is None
        assert "sampled" not in text and "confidence" not in text
