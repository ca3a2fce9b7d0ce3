"""Every reason printed beside a verdict is a claim; each is checked here in a situation that
produces it, against the judged numbers it summarizes."""

import re

import numpy as np

import fastfd


def reason(result, text):
    found = [r for r in result.reasons if text in r]
    assert found, (text, result.reasons)
    return found[0]


def number_after(text, marker):
    return float(re.search(re.escape(marker) + r"\s*([-+0-9.e]+)", text).group(1))


def test_failing_entries_lie_outside_tolerance_plus_error_bar():
    x = np.linspace(-1, 1, 12)
    result = fastfd.check_gradient(lambda v: float(np.sum(np.exp(v))),
                                   lambda v: np.exp(v) * (1 + 1e-3 * (v > 0)), x)
    text = reason(result, "checked entries differ from the finite differences")
    n_failed = int(text.split(" of ")[0])
    assert n_failed == sum(a.n_failed for a in result.arrays) == 6
    for e in result.worst:
        outside = e.abs_error > result.rtol * max(abs(e.analytic), abs(e.numeric)) + e.error_bar
        assert outside == (e.status == "fail")


def test_weak_by_noise_states_the_error_bars_it_reached_and_a_tolerance_that_accepts_them():
    x = np.linspace(0.5, 1.5, 10)
    f = lambda v: 1e8 + 1e-3 * np.sum(v**2)  # noqa: E731
    result = fastfd.check_gradient(f, lambda v: 2e-3 * v, x)
    text = reason(result, "weak because the loss's noise limits them")
    low, high = (float(s) for s in re.search(r"error bars of ([0-9.e+-]+) to ([0-9.e+-]+)",
                                             text).groups())
    weak = [e for e in result.worst if e.status == "weak"] or []
    bars = [e.error_bar / max(abs(e.analytic), abs(e.numeric)) for e in weak]
    assert all(low / 2 <= b for b in bars)  # rounded to one digit in the text
    assert high >= low and "compute the loss in float64" not in text
    suggested = float(text.split("pass rtol=")[1].split(" ")[0])
    assert suggested >= high and fastfd.check_gradient(f, lambda v: 2e-3 * v, x,
                                                       rtol=suggested).verdict == "pass"
    head = result.reasons[0]
    assert head.startswith(f"only {result.n_confirmed} of {result.n_checked} checked entries")


def test_advice_for_a_float32_loss_behind_float64_params_is_to_compute_in_float64():
    # |g| ~ 1e-4 on a float32 loss of ~1: noise, not the gradient, limits every entry
    c = np.full(8, 1e-4)
    f = lambda v: float(np.float32(1.0) + np.float32(v @ c))  # noqa: E731
    result = fastfd.check_gradient(f, lambda v: c, np.zeros(8), rtol=1e-4)
    text = reason(result, "weak because the loss's noise limits them")
    assert "compute the loss in float64" in text
    assert "float32 precision although params are float64" in result.noise.description


def test_the_optimum_hint_appears_only_when_the_gradient_is_below_its_error_bars():
    x0 = np.linspace(-1, 1, 8)
    at = fastfd.check_gradient(lambda v: 1e3 + float(np.sum((v - x0) ** 2)),
                               lambda v: 2 * (v - x0), x0 + 1e-14)
    text = reason(at, "may sit at an optimum")
    largest = number_after(text, "|g| up to")
    smallest_bar = number_after(text, "error bars at least")
    assert largest <= smallest_bar
    near = fastfd.check_gradient(lambda v: 1e8 + 1e-3 * np.sum(v**2), lambda v: 2e-3 * v,
                                 np.linspace(0.5, 1.5, 10))
    assert not any("optimum" in r for r in near.reasons)  # weak, but |g| is resolved


def test_kink_reasons_match_the_kinks_listed():
    x = np.array([0.0, 1.5, -0.5, 0.0])
    f = lambda v: np.sum(np.maximum(v[:3], 0)) + np.abs(v[3])  # noqa: E731
    g = lambda v: np.append((v[:3] > 0).astype(float), 1.0)  # noqa: E731
    result = fastfd.check_gradient(f, g, x)
    text = reason(result, "entries sit at a kink")
    assert int(text.split(" ")[0]) == len(result.kinks) == 2
    bad = fastfd.check_gradient(f, lambda v: g(v) + np.array([0, 0, 0, 1.0]), x)
    text = reason(bad, "failing entries sit at kinks and your values lie outside")
    assert int(text.split(" ")[0]) == 1 and bad.failed == ("x[3]",)
    entry = next(e for e in bad.worst if e.name == "x[3]")
    low, high = (float(s) for s in re.search(r"\[([^,]+), ([^\]]+)\]", entry.detail).groups())
    assert not low <= entry.analytic <= high


def test_joint_reasons_count_what_was_tested():
    v6 = np.array([1.0, 1.0, 0.5, 2.0, 2.0, 2.0])
    fmax = lambda v: float(np.sum(v.reshape(3, 2).max(axis=1)))  # noqa: E731

    def every_tied(v):
        m = v.reshape(3, 2)
        return (m == m.max(1, keepdims=True)).astype(float).ravel()

    result = fastfd.check_gradient(fmax, every_tied, v6)
    text = reason(result, "joint subgradient test")
    assert f"{len(result.kinks)} kink entries tested" in text
    assert f"{len(result.joint)} interacting" in text
    failed = sum(e.status == "fail" for e in result.joint)
    assert text.endswith(f"{failed} failed") and failed == 2
    reason(result, "jointly not a subgradient")
    for e in result.joint:
        low, high = (float(s) for s in re.search(r"\[([^,]+), ([^\]]+)\]", e.detail).groups())
        assert (e.status == "fail") == (not low - 1e-9 <= e.analytic <= high + 1e-9)


def test_taylor_no_evidence_reason_states_a_resolution_coarser_than_rtol():
    x = np.linspace(0.5, 1.5, 10)
    result = fastfd.check_gradient(lambda v: 1e8 + 1e-3 * np.sum(v**2), lambda v: 2e-3 * v, x)
    text = reason(result, "Taylor test along a random direction")
    if "no evidence" in text:
        relative = float(re.search(r"\(([0-9.e+-]+) relative\)", text).group(1))
        assert relative > result.rtol


def test_confidence_and_sampling_words_only_for_sampled_checks():
    x = np.linspace(-1, 1, 40)
    full = fastfd.check_gradient(lambda v: float(np.sum(np.sin(v))), np.cos, x)
    assert full.confidence is None and not any("sampled" in r for r in full.reasons)
    assert "(all;" in str(full) and "sampled" not in str(full)
    part = fastfd.check_gradient(lambda v: float(np.sum(np.sin(v))), np.cos, x, sample=10)
    text = reason(part, "sampled check")
    assert f"({part.n_confirmed} of 40 checked)" in text


def test_float32_params_reason():
    x = np.linspace(-1, 1, 6).astype(np.float32)
    result = fastfd.check_gradient(lambda v: np.float32(np.sum(v**2)), lambda v: 2 * v, x)
    text = reason(result, "parameters are float32")
    assert f"rtol {result.rtol:.0e}" in text


def test_weak_directions_are_said_to_carry_no_evidence():
    # a direction along which the loss is pure noise: a huge constant dominates, and the
    # gradient is tiny, so g . v cannot be resolved while coordinates can (exact zeros)
    params = {"a": np.zeros(5), "b": np.ones(3)}
    f = lambda p: 1e8 + 1e-7 * float(np.sum(p["b"]))  # noqa: E731
    result = fastfd.check_gradient(f, lambda p: {"a": np.zeros(5), "b": np.full(3, 1e-7)},
                                   params, directions=2)
    n_bad = sum(d.status in ("weak", "kink") for d in result.directions)
    if n_bad:
        text = reason(result, "random directions carry no evidence")
        assert text.startswith(f"{n_bad} of 2")


def test_pass_with_relative_errors_above_rtol_says_why():
    # float32 arithmetic: entries with a hundredth of the array's gradient carry error bars
    # wider than rtol of their own value, but within rtol of the array's scale
    rng = np.random.default_rng(0)
    c = np.r_[np.ones(40), 1e-2 * np.ones(10)]
    w = rng.normal(size=50)
    report = fastfd.check_gradient(lambda v: float(np.sum((0.5 * c * v * v).astype(np.float32))),
                                   lambda v: c * v, w)
    assert report.verdict == "pass" and report.max_rel_error > report.rtol
    (reason,) = [r for r in report.reasons if "differ by more than rtol relative" in r]
    name = reason.split("(e.g. ")[1].split(":")[0]
    k = int(name[2:-1])
    assert k >= 40  # one of the small entries
    diff = float(reason.split("|a - n| = ")[1].split(",")[0])
    bar = float(reason.split("error bar ")[1].split(")")[0])
    assert diff <= bar
