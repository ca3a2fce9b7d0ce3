"""Every evaluator gives the serial numbers; errors, dead workers and progress behave."""

import os
import re
import time

import numpy as np
import pytest

import fastfd
from fastfd.executors import JoblibEvaluator, SerialEvaluator
from tests import naive


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


BACKENDS = ["serial", "threading", "loky", "dask"]


def evaluator_for(name):
    if name == "serial":
        return SerialEvaluator()
    return JoblibEvaluator(n_jobs=2, backend=name)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "dask":
        request.getfixturevalue("dask_client")
    return request.param


def problem():
    params = naive.relu_net_params(d=6, h=5, c=3)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((12, 6)), rng.integers(0, 3, 12)
    return params, X, y


def relu_loss(p, X, y):
    return naive.relu_net_loss_and_grad(p, X, y)[0]


def test_numerical_gradient_identical_on_every_backend(backend):
    params, X, y = problem()
    serial = fastfd.numerical_gradient(lambda p: relu_loss(p, X, y), params)
    other = fastfd.numerical_gradient(lambda p: relu_loss(p, X, y), params,
                                      evaluator=evaluator_for(backend))
    for key in params:
        np.testing.assert_array_equal(serial[key], other[key])


def test_check_identical_on_every_backend(backend):
    params, X, y = problem()
    grad = lambda p: naive.relu_net_loss_and_grad(p, X, y, bug="reg_factor")[1]  # noqa: E731
    kwargs = dict(sample=40, seed=7, directions=2)
    serial = fastfd.check_gradient(lambda p: relu_loss(p, X, y), grad, params, **kwargs)
    other = fastfd.check_gradient(lambda p: relu_loss(p, X, y), grad, params,
                                  evaluator=evaluator_for(backend), **kwargs)
    a, b = serial.to_dict(), other.to_dict()
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b and serial.verdict == "fail"


def test_n_jobs_and_backend_pick_joblib():
    params, X, y = problem()
    g1 = fastfd.numerical_gradient(lambda p: relu_loss(p, X, y), params)
    g2 = fastfd.numerical_gradient(lambda p: relu_loss(p, X, y), params, n_jobs=2)
    g3 = fastfd.numerical_gradient(lambda p: relu_loss(p, X, y), params, backend="threading")
    for key in params:
        np.testing.assert_array_equal(g1[key], g2[key])
        np.testing.assert_array_equal(g1[key], g3[key])


def _raise_at_w1_1_2(p, original):
    moved = sum(int(np.count_nonzero(p[k] != original[k])) for k in original)
    if moved == 1 and p["W1"][1, 2] != original["W1"][1, 2]:
        raise ZeroDivisionError("planted failure")
    return float(np.sum(p["W1"] ** 2))


def test_loss_raising_in_a_worker(backend):
    params, _, _ = problem()
    before = {k: v.copy() for k, v in params.items()}
    original = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ZeroDivisionError, match=r"planted failure.*W1\[1, 2\]"):
        fastfd.numerical_gradient(lambda p: _raise_at_w1_1_2(p, original), params,
                                  evaluator=evaluator_for(backend))
    for key in params:
        np.testing.assert_array_equal(params[key], before[key])


def _die_in_worker(p, parent):
    if os.getpid() != parent:
        os._exit(3)
    return float(np.sum(p ** 2))


def test_dead_worker_gives_a_clear_error_quickly():
    # a hang would stall the suite here; loky notices the dead worker and raises at once
    x = np.ones(64)
    parent = os.getpid()
    with pytest.raises(RuntimeError, match="worker process died"):
        fastfd.numerical_gradient(lambda p: _die_in_worker(p, parent), x,
                                  n_jobs=2, backend="loky")
    np.testing.assert_array_equal(x, np.ones(64))


@pytest.mark.parametrize("backend", ["serial", "threading"])  # interrupts reach the caller
def test_keyboard_interrupt_leaves_params(backend):
    x = np.linspace(0, 1, 50)
    before = x.copy()
    calls = []

    def loss(p):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return float(np.sum(p**2))

    with pytest.raises(KeyboardInterrupt):
        fastfd.numerical_gradient(loss, x, evaluator=evaluator_for(backend))
    np.testing.assert_array_equal(x, before)


def test_dask_without_client_is_a_clear_error(monkeypatch):
    distributed = pytest.importorskip("distributed")

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "get_client", no_client)
    with pytest.raises(RuntimeError, match="active distributed.Client"):
        fastfd.numerical_gradient(lambda p: float(p @ p), np.ones(3), backend="dask")


@pytest.mark.parametrize("name", ["serial", "loky"])
def test_progress_bar(capsys, name):
    x = np.linspace(0, 1, 30)
    fastfd.numerical_gradient(lambda p: float(p @ p), x, progress=True,
                              evaluator=evaluator_for(name))
    err = capsys.readouterr().err
    done = re.findall(r"(\d+)/(\d+)", err)[-1]  # one bar for the noise estimate and the 60
    assert done[0] == done[1] and int(done[1]) > 60 and "eval" in err
    fastfd.numerical_gradient(lambda p: float(p @ p), x, evaluator=evaluator_for(name))
    assert capsys.readouterr().err == ""


def test_parallel_settings_reach_named_evaluators_and_clash_with_instances():
    x = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match="carries its own parallel settings"):
        fastfd.numerical_gradient(lambda p: float(p @ p), x, evaluator=SerialEvaluator(),
                                  n_jobs=2)
    with pytest.raises(ValueError, match="drop n_jobs"):
        fastfd.numerical_gradient(lambda p: float(p @ p), x, evaluator="serial", n_jobs=2)
    g = fastfd.numerical_gradient(lambda p: float(p @ p), x, evaluator="joblib", n_jobs=2,
                                  backend="threading")
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)


def _write_when_one_entry_moves(p, base):
    value = float(np.sum(p**2))
    if np.count_nonzero(p != base) == 1:
        p[-1] = 0.0  # fine at the params and on the noise line: only workers see this
    return value


def test_loss_modifying_its_input_is_caught_on_every_backend(backend):
    x = np.linspace(-1, 1, 16)
    base = x.copy()
    with pytest.raises(RuntimeError, match="modified its input in place"):
        fastfd.check_gradient(lambda p: _write_when_one_entry_moves(p, base), lambda p: 2 * p,
                              x, evaluator=evaluator_for(backend))
    np.testing.assert_array_equal(x, base)


def _refuse_in(p, caller):
    if os.getpid() == caller:
        raise AssertionError("the loss ran in the caller's process")
    return float(p @ p)


def test_dask_never_evaluates_in_the_caller_even_with_one_worker_thread():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        x = np.linspace(-1, 1, 12)
        report = fastfd.check_gradient(_refuse_in, lambda p, caller: 2 * p, x,
                                       args=(os.getpid(),), backend="dask")
    assert report.passed


def _die_at_entry_3(p, base):
    if p[3] != base[3] and np.count_nonzero(p != base) == 1:
        os._exit(1)
    return float(p @ p)


def test_dask_worker_death_is_a_clear_error_naming_the_entries(dask_client):
    x = np.ones(20)
    with pytest.raises(fastfd.errors.WorkerDiedError, match=r"dask worker process died.*x\["):
        fastfd.numerical_gradient(_die_at_entry_3, x, args=(x.copy(),), backend="dask")
    np.testing.assert_array_equal(x, np.ones(20))
    dask_client.wait_for_workers(2, timeout=30)  # the nanny restarts it for later tests


_scratch = np.zeros(16)


def _thread_unsafe(p):
    _scratch[:] = p  # a scratch buffer shared by every call
    time.sleep(1e-4)  # other threads write into it meanwhile
    return float(_scratch @ _scratch)


def test_thread_unsafe_loss_is_named_on_the_threading_backend():
    with pytest.raises(fastfd.errors.ThreadUnsafeLossError, match=r"not thread-safe: at x\["):
        fastfd.numerical_gradient(_thread_unsafe, np.linspace(-1, 1, 16), n_jobs=4,
                                  backend="threading")
    g = fastfd.numerical_gradient(_thread_unsafe, np.linspace(-1, 1, 16))  # fine alone
    np.testing.assert_allclose(g, 2 * np.linspace(-1, 1, 16), rtol=1e-7, atol=1e-9)


def test_concurrent_threading_checks_leave_blas_threads_as_they_were():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    x = np.linspace(-1, 1, 200)
    errors = []

    def one():
        try:
            fastfd.numerical_gradient(lambda p: float(p @ p), x, n_jobs=2, backend="threading")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert blas_threads() == before


def _writes_into_closed_over(p, buffer):
    buffer[: p.size] = p
    return float(p @ p)


def test_loky_read_only_shared_arrays_are_explained():
    big = np.zeros(200_000)  # large enough for joblib to memmap it
    with pytest.raises(ValueError, match="shared read-only between the worker processes"):
        fastfd.numerical_gradient(lambda p: _writes_into_closed_over(p, big), np.ones(8),
                                  n_jobs=2, backend="loky")


@pytest.mark.parametrize("name", ["serial", "threading", "loky"])
def test_progress_moves_about_every_second_for_a_slow_loss(name):
    """Chunks are sized by time: a loss of 0.3 s reports progress every ~3 evaluations."""
    from fastfd.executors._base import PROGRESS_SECONDS, chunk_size_for

    evaluator = evaluator_for(name)
    evaluator.seconds_per_eval = 0.3
    assert chunk_size_for(evaluator, 4096) == int(PROGRESS_SECONDS / 0.3)
    evaluator.seconds_per_eval = 1e-6
    assert chunk_size_for(evaluator, 64) == 64  # fast losses keep the count-based chunks
    ticks = []
    bound = evaluator.bind(lambda p: float(p @ p), naive_layout(40))
    bound.seconds_per_eval = 0.3
    bound.progress = ticks.append
    x = np.linspace(-1, 1, 40)
    bound.perturbed_values(x, np.arange(40), np.full(40, 1e-3))
    assert sum(ticks) == 40 and max(ticks) <= int(PROGRESS_SECONDS / 0.3)


def naive_layout(n):
    from fastfd._params import flatten

    return flatten(np.zeros(n))[0]
