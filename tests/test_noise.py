"""The noise stage: Moré-Wild difference tables recover known noise levels, in words that hold."""

import hashlib

import numpy as np
import pytest

import fastfd
from fastfd import _noise
from fastfd._session import Session
from fastfd.errors import NonDeterministicLossError

C = np.random.default_rng(0).standard_normal(30) * 0.1
X = np.random.default_rng(1).standard_normal(30)


def _noise_of(loss, params):
    with Session(loss, params) as session:
        return session.noise


def seeded_noise(v, rel):
    """``1 + v . c`` with Gaussian noise of ``rel`` relative, the same at the same point."""
    base = 1.0 + float(v @ C)
    seed = int.from_bytes(hashlib.sha256(v.tobytes()).digest()[:8], "little")
    return base * (1.0 + rel * np.random.default_rng(seed).standard_normal())


def float64_loss(v):
    return 1.0 + float(v @ C)


def float32_loss(v):  # float64 params, the last operations in float32
    return float(np.float32(1.0) + np.float32(v @ C))


@pytest.mark.parametrize("name, loss, sigma", [
    ("float64", float64_loss, np.spacing(1.0) / np.sqrt(12)),  # rounding of the last sum
    ("float32", float32_loss, float(np.spacing(np.float32(1.0))) / np.sqrt(12)),
    ("gaussian 1e-6", lambda v: seeded_noise(v, 1e-6), None),
    ("gaussian 1e-9", lambda v: seeded_noise(v, 1e-9), None),
])
def test_known_noise_is_recovered_within_a_factor_of_3(name, loss, sigma):
    with Session(loss, X) as session:
        noise = session.noise
    if sigma is None:
        sigma = float(name.split()[-1]) * abs(session.f0)
    assert noise.source == _noise.MEASURED
    assert sigma / 3 <= noise.sigma <= 3 * sigma, (noise, sigma)
    assert noise.n_evals <= 40  # a few dozen evaluations, whatever the size


def test_the_cost_does_not_grow_with_the_number_of_parameters():
    for n in (10, 10_000, 200_000):
        c = np.linspace(-1, 1, n)
        assert _noise_of(lambda v, c=c, n=n: 1.0 + float(v @ c) / n, np.ones(n)).n_evals <= 40


@pytest.mark.parametrize("loss, words", [
    (float64_loss, "computed in about float64 precision"),
    (float32_loss, "about float32 precision although params are float64"),
    (lambda v: float((1e6 + v @ v) - 1e6), "loses digits to cancellation"),
    (lambda v: seeded_noise(v, 1e-5), "the loss is noisy"),
])
def test_the_description_says_what_was_measured(loss, words):
    assert words in _noise_of(loss, X).describe()


def test_float32_params_are_described_as_float32():
    x32 = X.astype(np.float32)
    noise = _noise_of(lambda v: np.float32(1.0) + np.float32(v @ C.astype(np.float32)), x32)
    assert "computed in about float32 precision" in noise.describe()
    assert "although" not in noise.describe()


def test_models_with_exact_deltas_say_their_noise_is_not_measured():
    from fastfd.models import LinearSoftmax

    rng = np.random.default_rng(0)
    model = LinearSoftmax(rng.standard_normal((20, 4)), rng.integers(0, 3, 20), reg=0.1)
    result = fastfd.check_gradient(model, model.grad, 0.01 * rng.standard_normal((4, 3)))
    assert result.noise.source == _noise.EXACT and "not measured" in result.noise.description


def test_the_report_states_the_noise():
    result = fastfd.check_gradient(float32_loss, lambda v: C, X)
    assert "float32 precision although params are float64" in str(result)
    assert result.noise.relative == pytest.approx(result.noise.sigma / abs(float32_loss(X)))


def test_noise_not_detected_falls_back_on_rounding_and_says_so():
    # 1e8 + 1e-6 sum(v): the line never sees f change at its spacings (<= 1e-2), a move of
    # 10% does change it, so f depends on v only far below its rounding
    noise = _noise_of(lambda v: 1e8 + 1e-6 * float(np.sum(v)), np.ones(10))
    assert noise.source == _noise.NOT_DETECTED
    assert "not detected" in noise.describe()


def test_difference_table_statuses():
    t = np.arange(-4, 5)
    assert _noise.difference_table(np.ones(9))[1] == _noise.TOO_SMALL
    assert _noise.difference_table(np.exp(t))[1] == _noise.TOO_LARGE  # a smooth trend only
    noise = 1e-8 * np.random.default_rng(3).standard_normal(9)
    sigma, status = _noise.difference_table(2.0 + 0.01 * t + noise)
    assert status == _noise.OK and 1e-8 / 3 < sigma < 3e-8


def test_last_bit_jitter_is_noise_not_an_error():
    calls = {"n": 0}

    def jittery(v):  # alternates by one ulp, as a multi-threaded reduction can
        calls["n"] += 1
        base = 1.0 + float(v @ C)
        return base + (np.spacing(base) if calls["n"] % 2 else 0.0)

    assert _noise_of(jittery, X).sigma > 0


def test_a_loss_with_fresh_randomness_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(NonDeterministicLossError, match="dropout left on"):
        _ = _noise_of(lambda v: float(v @ C) + rng.standard_normal(), X)
