"""BatchedEvaluator: stacked losses give the serial evaluator's numbers, safely.

Every loss here is written once with a leading stack axis; the serial reference calls the
same function on stacks of one, so any difference comes from the evaluator, not the loss.
"""

import importlib.util
import pathlib
import re

import numpy as np
import pytest

import fastfd
from fastfd._params import flatten
from fastfd.executors import SerialEvaluator
from fastfd.executors._batched import BatchedEvaluator

RNG = np.random.default_rng(0)
A = RNG.standard_normal((4, 3))
M = RNG.standard_normal((5, 4))
C = RNG.standard_normal(3)
EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "logistic_regression_batched.py"


def dict_loss(p):
    """W (K, 4, 3), b (K, 3) -> (K,): a matmul, a log-sum-exp and a quadratic."""
    logits = np.matmul(M, p["W"]) + p["b"][:, None, :]
    lse = np.log(np.exp(logits).sum(axis=-1)).sum(axis=-1)
    return lse + np.sum(np.sin(p["W"]) * A, axis=(1, 2)) + np.sum(C * p["b"] ** 2, axis=1)


def dict_grad(p):
    logits = M @ p["W"] + p["b"]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"W": M.T @ probs + np.cos(p["W"]) * A, "b": probs.sum(axis=0) + 2 * C * p["b"]}


def array_loss(x):
    """x (K, 5, 2) -> (K,)."""
    return np.sum(np.exp(0.3 * x) * M[:, :2], axis=(1, 2)) + x[:, 0, 0] * x[:, 4, 1]


def tuple_loss(p):
    """((K, 3), (K, 2, 2)) -> (K,)."""
    u, V = p
    return np.einsum("ki,ki->k", u, u * C) + np.tanh(V).sum(axis=(1, 2)) * u[:, 1]


def unstacked(batched, kind):
    """The same loss for one parameter set (a stack of one), as the serial evaluator needs."""
    if kind == "dict":
        return lambda p: batched({k: v[None] for k, v in p.items()})[0]
    if kind == "tuple":
        return lambda p: batched(tuple(v[None] for v in p))[0]
    return lambda x: batched(x[None])[0]


def dict_params(dtype=np.float64):
    rng = np.random.default_rng(1)
    return {"W": rng.standard_normal((4, 3)).astype(dtype),
            "b": np.array([0.3, -0.0, 0.7]).astype(dtype)}


CASES = {
    "dict": (dict_loss, dict_params()),
    "array": (array_loss, np.random.default_rng(2).standard_normal((5, 2))),
    "tuple": (tuple_loss, (np.array([0.5, -1.0, 2.0]), np.array([[0.1, -0.4], [1.2, 0.0]]))),
}


def perturbations(size, n=61, seed=4):
    """Repeated coordinates, offsets of both signs and several magnitudes."""
    rng = np.random.default_rng(seed)
    coords = rng.integers(0, size, n)
    offsets = rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-8, -1, n)
    return coords, offsets


def bound(kind, evaluator, batched=True):
    loss, params = CASES[kind]
    layout, x = flatten(params)
    f = loss if batched else unstacked(loss, kind)
    return evaluator.bind(f, layout), x


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8).copy()


@pytest.mark.parametrize("kind", list(CASES))
def test_equals_serial_over_several_batches_and_a_ragged_one(kind):
    batched, x = bound(kind, BatchedEvaluator(max_stack=7))
    serial, _ = bound(kind, SerialEvaluator(), batched=False)
    coords, offsets = perturbations(x.size)
    assert len(coords) % 7  # several full stacks, then a ragged one
    before = bits(x)
    ours = batched.perturbed_values(x, coords, offsets)
    np.testing.assert_allclose(ours, serial.perturbed_values(x, coords, offsets), rtol=1e-12)
    assert np.array_equal(bits(x), before)
    np.testing.assert_allclose(batched.value(x), serial.value(x), rtol=1e-12)
    direction = np.random.default_rng(5).standard_normal(x.size)
    scales = np.array([1e-3, -1e-3, 2.5e-4, -2.5e-4, 0.1])
    np.testing.assert_allclose(batched.direction_values(x, direction, scales),
                               serial.direction_values(x, direction, scales), rtol=1e-12)
    assert np.array_equal(bits(x), before)


def float32_loss(p):
    """Stays in float32: W (K, 4, 3), b (K, 3) -> (K,)."""
    return np.sum(np.sin(p["W"]) * p["W"], axis=(1, 2)) + np.sum(p["b"] ** 3, axis=1)


def test_float32_params_round_like_serial_and_value_keeps_dtype():
    layout, x = flatten(dict_params(np.float32))
    batched = BatchedEvaluator(max_stack=7).bind(float32_loss, layout)
    serial = SerialEvaluator().bind(unstacked(float32_loss, "dict"), layout)
    coords, offsets = perturbations(x.size)
    np.testing.assert_array_equal(batched.perturbed_values(x, coords, offsets),
                                  serial.perturbed_values(x, coords, offsets))
    assert batched.value(x).dtype == np.float32
    direction = np.random.default_rng(5).standard_normal(x.size)
    np.testing.assert_array_equal(batched.direction_values(x, direction, [1e-3, -1e-3]),
                                  serial.direction_values(x, direction, [1e-3, -1e-3]))


def test_buffer_rows_differ_from_x_only_at_their_own_entry_and_are_restored():
    seen = []

    def loss(p):
        stack = np.concatenate([p["W"].reshape(len(p["W"]), -1), p["b"]], axis=1)
        seen.append(stack.copy())
        return dict_loss(p)

    ev, x = bound("dict", BatchedEvaluator(max_stack=7))
    ev = ev.bind(loss, ev.layout)
    coords, offsets = perturbations(x.size)
    first = ev.perturbed_values(x, coords, offsets)
    assert [len(s) for s in seen] == [7] * 8 + [5]
    rows = np.concatenate(seen)
    changed = rows != x  # every row is x with exactly its own entry moved: earlier ones restored
    assert np.array_equal(changed.sum(axis=1), np.ones(len(coords)))
    assert np.array_equal(np.flatnonzero(changed) % x.size, coords)
    stack = ev._stack
    assert np.array_equal(bits(stack.buffer), np.tile(bits(x), (7, 1)).reshape(7, -1))
    for view in stack.views:
        assert view.base is stack.buffer and not view.flags.writeable
    np.testing.assert_array_equal(ev.perturbed_values(x, coords, offsets), first)
    assert ev._stack is stack  # the one buffer is reused


def test_stack_follows_a_new_x_and_progress_counts_batches():
    ev, x = bound("array", BatchedEvaluator(max_stack=7))
    serial, _ = bound("array", SerialEvaluator(), batched=False)
    coords, offsets = perturbations(x.size)
    ev.perturbed_values(x, coords, offsets)
    updates = []
    ev.progress = updates.append
    x2 = x * 1.5
    np.testing.assert_allclose(ev.perturbed_values(x2, coords, offsets),
                               serial.perturbed_values(x2, coords, offsets), rtol=1e-12)
    assert updates == [7] * 8 + [5]


def test_stack_size_rule_and_argument_checks():
    layout, _ = flatten(np.zeros(100))
    size = lambda ev, n: ev.bind(array_loss, layout).stack_size(n)  # noqa: E731
    assert size(BatchedEvaluator(), 5000) == 1024
    assert size(BatchedEvaluator(), 30) == 30
    assert size(BatchedEvaluator(max_stack=7), 30) == 7
    assert size(BatchedEvaluator(max_bytes=800 * 3), 30) == 3
    assert size(BatchedEvaluator(max_stack=50, max_bytes=10), 30) == 1
    layout, _ = flatten(np.zeros(50_000))
    assert size(BatchedEvaluator(), 5000) == 2  # about 1 MiB per stack by default
    assert size(BatchedEvaluator(max_stack=1000), 5000) == 167  # max_bytes: 64 MiB
    for bad, error in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_stack must be None or a positive int; got"):
            BatchedEvaluator(max_stack=bad)
    with pytest.raises(ValueError, match="max_bytes must be a positive int; got 0"):
        BatchedEvaluator(max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes must be a positive int; got None"):
        BatchedEvaluator(max_bytes=None)


@pytest.mark.parametrize("answer, error, message", [
    (lambda p: 1.0, ValueError, r"expected shape \(7,\), got \(\) \(is the loss written"),
    (lambda p: np.ones((len(p), 1)), ValueError, r"expected shape \(7,\), got \(7, 1\)"),
    (lambda p: np.ones(len(p) + 1), ValueError, r"expected shape \(7,\), got \(8,\)"),
    (lambda p: np.ones(len(p), complex), TypeError, "real array of shape"),
    (lambda p: ["a"] * len(p), TypeError, "real array of shape"),
])
def test_wrong_answers_give_clear_errors(answer, error, message):
    ev, x = bound("array", BatchedEvaluator(max_stack=7))
    ev = ev.bind(answer, ev.layout)
    before = bits(x)
    with pytest.raises(error, match="a batched loss must return") as info:
        ev.perturbed_values(x, *perturbations(x.size))
    assert re.search(message, str(info.value))
    assert np.array_equal(bits(x), before)
    assert np.array_equal(ev._stack.buffer, np.tile(x, (7, 1)))


def test_a_raising_loss_keeps_its_type_names_the_entries_and_restores():
    calls = []

    def loss(p):
        calls.append(1)
        if len(calls) == 3:
            raise ZeroDivisionError("boom")
        return dict_loss(p)

    ev, x = bound("dict", BatchedEvaluator(max_stack=7))
    ev = ev.bind(loss, ev.layout)
    coords, offsets = perturbations(x.size)
    before = bits(x)
    with pytest.raises(ZeroDivisionError) as info:
        ev.perturbed_values(x, coords, offsets)
    names = ev.layout.name
    expected = f"entries {names(coords[14])} .. {names(coords[20])} (stack of 7)"
    assert str(info.value).startswith("boom") and expected in str(info.value)
    assert np.array_equal(bits(x), before)
    assert np.array_equal(ev._stack.buffer, np.tile(x, (7, 1)))


def test_a_loss_returning_a_view_of_its_argument_gets_the_perturbed_values():
    layout, x = flatten(np.arange(4.0))
    ev = BatchedEvaluator(max_stack=3).bind(lambda p: p[:, 2], layout)
    out = ev.perturbed_values(x, np.array([2, 2, 0, 2]), np.array([0.5, -0.5, 1.0, 0.25]))
    np.testing.assert_array_equal(out, [2.5, 1.5, 2.0, 2.25])


def test_through_the_engine_params_unchanged_when_the_loss_raises_or_writes():
    params = dict_params()
    copies = {k: v.copy() for k, v in params.items()}
    calls = []

    base = {k: v.copy() for k, v in params.items()}

    def raising(p):  # fails on the first stack of coordinate perturbations
        calls.append(1)
        moved = sum(np.count_nonzero(p[k] != base[k], axis=tuple(range(1, p[k].ndim)))
                    for k in base)
        if len(calls) > 1 and np.all(moved == 1):
            raise KeyError("late")
        return dict_loss(p)

    with pytest.raises(KeyError, match=r"entries W\[.*\] \.\. .* \(stack of 5\)"):
        fastfd.numerical_gradient(raising, params, evaluator=BatchedEvaluator(max_stack=5))

    def writing(p):
        p["W"] *= 2
        return dict_loss(p)

    with pytest.raises(ValueError, match="read-only") as info:
        fastfd.numerical_gradient(writing, params, evaluator=BatchedEvaluator())
    assert "must not modify its argument" in "".join(getattr(info.value, "__notes__", []))
    for key in params:
        assert np.array_equal(bits(params[key]), bits(copies[key]))


@pytest.mark.parametrize("kind", list(CASES))
def test_numerical_gradient_through_the_engine_equals_serial(kind):
    loss, params = CASES[kind]
    ours = fastfd.numerical_gradient(loss, params, evaluator=BatchedEvaluator())
    serial = fastfd.numerical_gradient(unstacked(loss, kind), params)
    ours_small = fastfd.numerical_gradient(loss, params, evaluator=BatchedEvaluator(max_stack=3))
    leaves = list(ours.values()) if kind == "dict" else [ours] if kind == "array" else ours
    references = (list(serial.values()) if kind == "dict" else [serial] if kind == "array"
                  else serial)
    smalls = (list(ours_small.values()) if kind == "dict" else [ours_small] if kind == "array"
              else ours_small)
    assert type(ours) is type(serial)
    for a, b, c in zip(leaves, references, smalls):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
        np.testing.assert_allclose(c, b, rtol=1e-12, atol=0)


def test_check_gradient_through_the_engine_passes_fails_and_equals_serial():
    params = dict_params()
    serial_loss = unstacked(dict_loss, "dict")
    good = fastfd.check_gradient(dict_loss, dict_grad, params,
                                 evaluator=BatchedEvaluator(max_stack=5), directions=2)
    reference = fastfd.check_gradient(serial_loss, dict_grad, params, directions=2)
    assert good.verdict == reference.verdict == "pass"
    assert good.n_evals == reference.n_evals
    # a relative error of ~1e-9 amplifies a 1e-12 change of the numeric value a thousandfold
    np.testing.assert_allclose(good.max_rel_error, reference.max_rel_error, rtol=1e-6)
    for a, b in zip(good.worst + good.directions, reference.worst + reference.directions):
        assert a.name == b.name
        np.testing.assert_allclose(a.numeric, b.numeric, rtol=1e-12)

    def broken(p):
        g = dict_grad(p)
        g["W"][2, 1] += 1e-3
        return g

    bad = fastfd.check_gradient(dict_loss, broken, params, evaluator=BatchedEvaluator(max_stack=5))
    assert bad.verdict == "fail" and bad.failed == ("W[2, 1]",)
    assert fastfd.check_gradient(serial_loss, broken, params).failed == ("W[2, 1]",)


def test_example_runs_quickly():
    spec = importlib.util.spec_from_file_location("logistic_regression_batched", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--quick", "--n", "8", "--d", "6", "--c", "3"])
    assert result["verdict"] == "pass"
    assert result["rel_error"] < 1e-7
