"""The semantics of check_gradient: right gradients pass, wrong ones fail, kinks are kinks."""

import json

import numpy as np
import pytest

import fastfd
from fastfd.testing import assert_gradient_close
from tests import naive

REG = 0.05


def linear(kind, dtype=np.float64, square=False):
    W, X, y = naive.linear_problem(n=24, d=4 if square else 6, c=4, dtype=dtype)
    loss = {"softmax": naive.softmax_loss, "svm": naive.svm_loss}[kind]
    grad = {"softmax": naive.softmax_grad, "svm": naive.svm_grad}[kind]
    return W, (lambda w: loss(w, X, y, REG)), (lambda w: grad(w, X, y, REG)), X.shape[0]


BUGS = {
    "missing 1/N": lambda g, w, n: g * n,
    "sign flip": lambda g, w, n: -g,
    "reg factor": lambda g, w, n: g - REG * w,
    "transposed": lambda g, w, n: g.T,
}


@pytest.mark.parametrize("kind", ["softmax", "svm"])
def test_correct_linear_gradients_pass(kind):
    W, f, grad, _ = linear(kind)
    result = fastfd.check_gradient(f, grad, W)
    assert result.verdict == "pass", result
    assert result.n_checked == W.size and not result.sampled
    assert result.max_rel_error < 1e-5 and result.norm_rel_error < 1e-7
    assert result.sign_agreement == 1.0


@pytest.mark.parametrize("kind", ["softmax", "svm"])
@pytest.mark.parametrize("bug", list(BUGS))
def test_broken_linear_gradients_fail(kind, bug):
    W, f, grad, n = linear(kind, square=True)
    broken = lambda w: BUGS[bug](grad(w), w, n)  # noqa: E731
    result = fastfd.check_gradient(f, broken, W)
    assert result.verdict == "fail", result
    assert result.failed and result.worst[0].status == "fail"
    assert result.worst[0].name.startswith("x[")


def test_relu_net_dict_params_pass_and_bugs_are_named():
    params = naive.relu_net_params()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    f = lambda p: naive.relu_net_loss_and_grad(p, X, y)[0]  # noqa: E731
    ok = fastfd.check_gradient(f, lambda p: naive.relu_net_loss_and_grad(p, X, y)[1], params)
    assert ok.verdict == "pass", ok
    assert {s.name for s in ok.arrays} == {"W1", "b1", "W2", "b2"}
    for bug, culprit in [("sign_flip", "b1"), ("reg_factor", "W1"), ("relu_mask", "W1"),
                         ("missing_1_over_n", "W2")]:
        result = fastfd.check_gradient(
            f, lambda p, bug=bug: naive.relu_net_loss_and_grad(p, X, y, bug=bug)[1], params)
        assert result.verdict == "fail", (bug, result)
        summary = {s.name: s for s in result.arrays}
        assert summary[culprit].verdict == "fail"
        assert any(name.startswith(culprit + "[") for name in result.failed)
        if bug == "sign_flip":
            assert summary["W1"].verdict == "pass" and summary["W2"].verdict == "pass"


def test_sigmoid_231_net():
    p = naive.sigmoid_net_params()
    X, y = naive.sleep_study_data()
    f = lambda q: naive.sigmoid_net_cost(q, X, y)  # noqa: E731
    ok = fastfd.check_gradient(f, lambda q: naive.sigmoid_net_grad(q, X, y), p)
    assert ok.verdict == "pass" and ok.norm_rel_error < 1e-9, ok
    bad = fastfd.check_gradient(
        f, lambda q: naive.sigmoid_net_grad(q, X, y, bug="missing_derivative"), p)
    assert bad.verdict == "fail"
    assert all(name.startswith("[0][") for name in bad.failed)  # W1 wrong, W2 right


def test_hinge_at_the_margin_is_a_kink_not_a_failure():
    # scores tie exactly: margin s_j - s_y + 1 == 0 for example 0, class 1
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0, 1, 0])
    W = np.array([[1.0, 0.0], [0.25, 0.5]])
    f = lambda w: naive.svm_loss(w, X, y, 0.1)  # noqa: E731
    margins = X @ W - (X @ W)[np.arange(3), y][:, None] + 1
    assert margins[0, 1] == 0.0
    result = fastfd.check_gradient(f, lambda w: naive.svm_grad(w, X, y, 0.1), W)
    assert result.verdict == "pass", result
    assert set(result.kinks) == {"x[0, 0]", "x[0, 1]"}
    # a sign error at the hinge is still caught: the analytic value leaves the subdifferential
    flipped = lambda w: -naive.svm_grad(w, X, y, 0.1)  # noqa: E731
    assert fastfd.check_gradient(f, flipped, W).verdict == "fail"


def test_relu_at_zero_and_abs_are_kinks():
    x = np.array([0.0, 1.5, -0.5, 0.0])
    f = lambda v: np.sum(np.maximum(v[:3], 0)) + np.abs(v[3])  # noqa: E731
    g = lambda v: np.append((v[:3] > 0).astype(float), 1.0)  # right derivative of |x| at 0  # noqa: E731
    result = fastfd.check_gradient(f, g, x)
    assert result.verdict == "pass" and set(result.kinks) == {"x[0]", "x[3]"}, result
    # at x[3] the subdifferential of |x| is [-1, 1]: 2.0 is outside it
    bad = fastfd.check_gradient(f, lambda v: g(v) + np.array([0, 0, 0, 1.0]), x)
    assert bad.verdict == "fail" and bad.failed == ("x[3]",)


def test_kink_crossed_only_at_the_first_step_disappears():
    x = np.array([3e-6])  # the kink of |x| is inside [x - h, x + h] for h = 6e-6 only
    result = fastfd.check_gradient(lambda v: abs(v[0]), lambda v: np.sign(v), x)
    assert result.verdict == "pass" and not result.kinks, result


def test_tiny_correct_gradient_passes_and_tiny_wrong_one_fails():
    rng = np.random.default_rng(0)
    x = 0.3 + 1e-8 * rng.standard_normal(20)  # near the optimum of an O(1) loss
    f = lambda v: 1.0 + np.sum((v - 0.3) ** 2)  # noqa: E731
    right = fastfd.check_gradient(f, lambda v: 2 * (v - 0.3), x)
    assert right.verdict == "pass", right
    wrong = fastfd.check_gradient(f, lambda v: 3 * (v - 0.3), x)
    assert wrong.verdict == "fail", wrong


def test_truncation_error_is_refined_not_failed():
    x = np.linspace(0, 0.1, 5)
    f = lambda v: np.sum(np.exp(30 * v))  # noqa: E731
    result = fastfd.check_gradient(f, lambda v: 30 * np.exp(30 * v), x, step=1e-3)
    assert result.verdict == "pass", result
    wrong = fastfd.check_gradient(f, lambda v: 30.3 * np.exp(30 * v), x, step=1e-3)
    assert wrong.verdict == "fail"


@pytest.mark.parametrize("seed", range(3))
def test_float32_softmax_passes_or_is_inconclusive_never_fails(seed):
    W, X, y = naive.linear_problem(n=30, d=8, c=5, seed=seed, dtype=np.float32)
    f = lambda w: naive.softmax_loss(w, X, y, np.float32(REG))  # noqa: E731
    result = fastfd.check_gradient(f, lambda w: naive.softmax_grad(w, X, y, np.float32(REG)), W)
    assert result.verdict in ("pass", "inconclusive"), result
    assert any("float32" in r and "float64" in r for r in result.reasons)
    assert result.rtol == pytest.approx(1.2e-2, rel=0.1)
    broken = fastfd.check_gradient(f, lambda w: 2 * naive.softmax_grad(w, X, y, REG), W)
    assert broken.verdict == "fail"


def test_pure_noise_is_inconclusive():
    # a loss whose dependence on x is far below the float64 rounding of its value
    f = lambda v: 1e8 + 1e-6 * np.sum(v)  # noqa: E731
    result = fastfd.check_gradient(f, lambda v: 1e-6 * np.ones_like(v), np.ones(10))
    assert result.verdict == "inconclusive", result
    assert "are weak" in result.reasons[0]
    assert any("weak because the loss's noise limits them" in r for r in result.reasons)


def test_a_loss_that_ignores_its_argument_is_an_error():
    # the loss changes by less than its rounding even when every entry moves by 10%
    f = lambda v: 1e8 + 1e-12 * np.sum(v)  # noqa: E731
    with pytest.raises(ValueError, match="does not depend on the argument it is given"):
        fastfd.check_gradient(f, lambda v: 1e-12 * np.ones_like(v), np.ones(10))


def test_sampled_check_states_confidence_and_is_reproducible():
    W, f, grad, _ = linear("softmax")
    a = fastfd.check_gradient(f, grad, W, sample=10, seed=5)
    b = fastfd.check_gradient(f, grad, W, sample=10, seed=5)
    assert a.sampled and a.n_checked == 10 and a.verdict == "pass"
    assert a.confidence.startswith("with 95% confidence fewer than 30% of entries are wrong")
    assert [e.name for e in a.worst] == [e.name for e in b.worst]
    assert a.max_rel_error == b.max_rel_error


def test_sampled_check_finds_a_bug_in_the_last_class_column():
    W, f, grad, _ = linear("softmax")

    def off_by_one(w):
        g = grad(w)
        g[:, -1] = 0.0  # forgot the last class
        return g

    for seed in range(5):
        assert fastfd.check_gradient(f, off_by_one, W, sample=8, seed=seed).verdict == "fail"


def test_auto_sample_checks_everything_when_cheap():
    W, f, grad, _ = linear("softmax")
    result = fastfd.check_gradient(f, grad, W)
    assert not result.sampled and result.n_checked == W.size


def test_auto_sample_samples_when_expensive(monkeypatch):
    from fastfd import engine

    monkeypatch.setattr(engine, "AUTO_BUDGET_S", 1e-3)
    W = np.linspace(-1, 1, 3000).reshape(100, 30)
    f, grad = (lambda w: np.sum(np.sin(w))), np.cos  # noqa: E731
    with pytest.warns(fastfd.errors.LongRunWarning, match="over the 0.001 s budget"):
        result = fastfd.check_gradient(f, grad, W)
    assert result.sampled and result.n_checked < W.size
    assert any("sample='auto'" in r for r in result.reasons)


@pytest.mark.parametrize("seconds, expected", [(1e-3, 2000), (1e-2, 200), (3e-2, 50)])
def test_auto_sample_picks_fixed_sizes_from_the_estimate(monkeypatch, seconds, expected):
    from fastfd._session import Session

    # the decision rests on the measured cost per evaluation: fix it to test the rule
    monkeypatch.setattr(Session, "seconds_per_eval", lambda self: seconds)
    x = np.linspace(-1, 1, 2000)
    runs = [fastfd.check_gradient(lambda w: float(w @ w), lambda w: 2 * w, x, seed=4)
            for _ in range(2)]
    assert runs[0].n_checked == expected
    assert [e.name for e in runs[0].worst] == [e.name for e in runs[1].worst]
    assert runs[0].n_evals == runs[1].n_evals  # same sample, same work
    if expected < 2000:
        assert any(f"stratified sample of {expected} entries" in r for r in runs[0].reasons)


def test_auto_sample_warns_before_starting_when_even_the_minimum_is_over_budget(monkeypatch):
    from fastfd._session import Session
    from fastfd.errors import LongRunWarning

    monkeypatch.setattr(Session, "seconds_per_eval", lambda self: 1.0)
    calls = []

    def loss(w):
        calls.append(1)
        return float(w @ w)

    with pytest.warns(LongRunWarning, match=r"even the smallest stratified sample \(5 entries"):
        report = fastfd.check_gradient(loss, lambda w: 2 * w, np.linspace(-1, 1, 2000))
    assert report.n_checked == 5 and report.passed
    assert report.n_evals < 60  # the noise line, 5 entries and 3 directions


def test_auto_sample_reuses_the_timing_pass_of_fast_evaluators(monkeypatch):
    from fastfd import engine
    from fastfd._session import Session

    monkeypatch.setattr(engine, "AUTO_BUDGET_S", 1e-9)  # sample, whatever the machine
    stages = []
    original = Session.coord_deltas

    def spy(self, coords, offsets, stage, **kw):
        stages.append((stage, len(coords)))
        return original(self, coords, offsets, stage, **kw)

    monkeypatch.setattr(Session, "coord_deltas", spy)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 8)), rng.integers(0, 3, 30)
    model = fastfd.models.LinearSoftmax(X, y, reg=0.1)
    W = 0.1 * rng.standard_normal((8, 3))
    with pytest.warns(fastfd.errors.LongRunWarning):
        report = fastfd.check_gradient(model, model.grad, W, directions=0)
    assert stages[:2] == [("timing", 32), ("timing", 32)]  # 16 entries, warm-up then timed
    first = [n for stage, n in stages[2:] if stage == "differences"]
    # the check covers the timed entries and evaluates only the others again
    assert report.sampled and report.n_checked >= 16
    assert sum(first) == 2 * (report.n_checked - 16)


def test_random_directions():
    W, f, grad, _ = linear("softmax")
    ok = fastfd.check_gradient(f, grad, W, sample=5, directions=3)
    assert ok.verdict == "pass" and len(ok.directions) == 3
    assert all(d.status == "pass" for d in ok.directions)
    bad = fastfd.check_gradient(f, lambda w: grad(w) * 1.01, W, sample=5, directions=3, seed=1)
    assert all(d.status == "fail" for d in bad.directions)


def test_directions_catch_a_bug_the_sample_missed():
    W, f, grad, _ = linear("softmax")

    def one_wrong(w):
        g = grad(w)
        g[2, 1] += 0.5
        return g

    result = fastfd.check_gradient(f, one_wrong, W, sample=0.01, directions=4, seed=0)
    assert sum(a.n_failed for a in result.arrays) == 0  # the sample missed it
    assert result.verdict == "fail" and any(n.startswith("direction") for n in result.failed)
    assert [e.name for e in result.localized] == ["x[2, 1]"]
    assert result.worst[0].name == "x[2, 1]"  # localized entries are ranked with the rest


def test_methods_all_judge_alike():
    W, f, grad, _ = linear("softmax")
    for method in ("forward", "backward", "central", "central4"):
        assert fastfd.check_gradient(f, grad, W, method=method).verdict == "pass", method
        assert fastfd.check_gradient(f, lambda w: 1.1 * grad(w), W,
                                     method=method).verdict == "fail"


def test_report_text_and_json():
    params = naive.relu_net_params()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    f = lambda p: naive.relu_net_loss_and_grad(p, X, y)[0]  # noqa: E731
    result = fastfd.check_gradient(
        f, lambda p: naive.relu_net_loss_and_grad(p, X, y, bug="sign_flip")[1], params)
    text = str(result)
    assert "FAIL" in text and "b1[" in text and "per array" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "fail" and data["passed"] is False
    assert data["worst"][0]["name"].startswith("b1[")
    with pytest.raises(AttributeError):
        result.verdict = "pass"  # immutable


def test_assert_gradient_close():
    W, f, grad, _ = linear("softmax")
    assert assert_gradient_close(f, grad, W).passed
    with pytest.raises(AssertionError, match="FAIL"):
        assert_gradient_close(f, lambda w: -grad(w), W)


def test_failing_direction_is_localized_to_the_wrong_entry():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((300, 333)), "b": rng.standard_normal(50)}
    loss = lambda p: 0.5 * sum(float(v.reshape(-1) @ v.reshape(-1)) for v in p.values())  # noqa: E731

    def grad(p):
        g = {k: v.copy() for k, v in p.items()}
        g["W"][123, 45] += 0.5
        return g

    result = fastfd.check_gradient(loss, grad, params, sample=20, directions=1, seed=2)
    assert sum(a.n_failed for a in result.arrays) == 0  # the sample missed it
    assert result.verdict == "fail"
    assert [e.name for e in result.localized] == ["W[123, 45]"]
    assert result.localized[0].status == "fail"
    assert result.localized[0].abs_error == pytest.approx(0.5, rel=1e-3)
    assert "W[123, 45]" in result.failed and "W[123, 45]" in str(result)
    # O(k log P) directional checks: about 2 halves x 2 evaluations per level
    assert result.n_evals < 1 + 2 * result.n_checked + 8 * 4 * 18


def test_two_wrong_entries_are_both_localized():
    x = np.linspace(-1, 1, 4096)
    grad = 2 * x
    grad[[17, 3000]] += [0.3, -0.2]
    result = fastfd.check_gradient(lambda v: float(v @ v), grad, x, sample=10, directions=1)
    assert [e.name for e in result.localized] == ["x[17]", "x[3000]"]


def test_noise_limited_check_says_what_it_resolved_and_how_to_accept_it():
    # |g| ~ 2e-3 next to a loss of 1e8: even at the largest steps the noise of 1e8 leaves
    # error bars of ~1e-4 relative, wider than rtol=1e-5; the Taylor test resolves less
    x = np.linspace(0.5, 1.5, 10)
    f = lambda v: 1e8 + 1e-3 * np.sum(v**2)  # noqa: E731
    right = fastfd.check_gradient(f, lambda v: 2e-3 * v, x)
    assert right.verdict == "inconclusive", right
    advice = next(r for r in right.reasons if "noise limits them" in r)
    suggested = float(advice.split("pass rtol=")[1].split(" ")[0])
    assert 1e-5 < suggested < 1e-2
    assert any("Taylor test" in r and "no evidence" in r for r in right.reasons)
    assert fastfd.check_gradient(f, lambda v: 2e-3 * v, x, rtol=suggested).verdict == "pass"
    for wrong in (lambda v: 4e-3 * v, lambda v: -2e-3 * v):
        assert fastfd.check_gradient(f, wrong, x).verdict == "fail"


def test_taylor_result_certifies_only_what_it_resolves():
    x = np.linspace(0.5, 1.5, 10)
    f = lambda v: float(np.sum(np.exp(v)))  # noqa: E731
    eps = 0.1 * 0.5 ** np.arange(24)  # small e: the resolution is C * e_min
    right = fastfd.taylor_test(f, np.exp, x, eps=eps)
    assert right.decides(1e-5) == "pass"
    assert right.decides(0.1 * right.resolution / abs(right.directional_derivative)) is None
    wrong = fastfd.taylor_test(f, lambda v: 1.01 * np.exp(v), x, eps=eps)
    assert wrong.decides(1e-5) == "fail" and wrong.decides(0.5) is None


def test_grad_writing_into_its_argument_is_harmless():
    x = np.linspace(-1, 1, 9)

    def grad_in_place(p):
        p *= 2.0  # writes into the views it was given, and returns them
        return p

    result = fastfd.check_gradient(lambda v: float(v @ v), grad_in_place, x)
    assert result.verdict == "pass", result
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 9))


def test_confidence_counts_only_entries_with_evidence():
    x = np.concatenate([np.zeros(50), np.linspace(1, 2, 50)])
    f = lambda v: float(np.sum(v[50:] ** 2))  # noqa: E731  the first 50 entries do nothing
    result = fastfd.check_gradient(f, lambda v: np.where(np.arange(100) < 50, 0, 2 * v), x,
                                   sample=40, seed=0)
    assert result.passed
    # exact zeros the finite differences confirm are evidence (judged against the array's
    # gradient scale), so every entry counts here
    assert "(40 of 100 checked)" in result.confidence
    # an array whose gradient the steps cannot resolve is weak, and weak entries do not count
    params = {"a": np.linspace(1, 2, 60), "b": np.ones(40)}
    g = lambda p: 1e-13 * np.sum(p["b"]) + float(np.sum(p["a"] ** 2))  # noqa: E731
    check = fastfd.check_gradient(g, lambda p: {"a": 2 * p["a"], "b": np.full(40, 1e-13)},
                                  params, sample=50, seed=0)
    assert check.passed and check.arrays[1].n_weak > 0
    counted = int(check.confidence.split("(")[1].split(" of")[0])
    assert counted == check.n_confirmed < check.n_checked
