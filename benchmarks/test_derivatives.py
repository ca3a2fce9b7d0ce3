"""Derivative checks: banded Jacobians, the complex step, a conv layer's backward pass.

All measured in the same run:

1. The banded Jacobian of ``examples/least_squares_jacobian.py`` (``-u'' + exp(u) = f``,
   tridiagonal, 3 column groups) at n = 10,000: ``fastfd.numerical_jacobian`` with
   ``sparsity`` against ``scipy.optimize._numdiff.approx_derivative(fun, x0,
   sparsity=...)`` (the engine behind ``least_squares``' finite-difference Jacobians,
   central ``3-point`` like fastfd's) and ``check_jacobian``'s cost. Dense, both at n = 1,000
   (fastfd's dense path does O(n) bookkeeping per column over all n**2 entries: at n = 2,000
   it takes ~11 s, at 10,000 it would need minutes and gigabytes), and scipy's dense also at
   n = 10,000 (20,000 evaluations).
2. The complex step against central differences on the three smooth losses of
   ``examples/complex_step.py``: error against the analytic gradient and evaluations.
3. ``check_vjp`` on the naive conv layer of ``examples/layers_backward.py`` at the notebook
   shape (x 2x3x8x8, w 3x3x3x3, stride 1, pad 1) against the notebook's
   ``eval_numerical_gradient_array`` loop (h = 1e-5, every coordinate of x, w and b).

Times go to the shared ratio table (``TARGETS``); evaluation counts and errors, which are not
times, are printed in a table of their own at the end of the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastfd

from .conftest import FIGURES, TARGETS, record

sparse = pytest.importorskip("scipy.sparse")
approx_derivative = pytest.importorskip("scipy.optimize._numdiff").approx_derivative

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N_SPARSE = 10_000
N_DENSE = 1_000

TARGETS.extend([
    # fastfd measures the noise of every output first (~50 evaluations; scipy assumes EPS)
    ("fastfd numerical_jacobian / scipy approx_derivative, both sparse (3 groups), n=10,000",
     "jac_sparse_fastfd_10000", "jac_sparse_scipy_10000", 20.0, "max"),
    ("fastfd dense / sparse numerical_jacobian, tridiagonal, n=1,000 (speedup)",
     "jac_dense_fastfd_1000", "jac_sparse_fastfd_1000", 10.0, "min"),
    # per-entry bookkeeping of 1e6 entries dominates a cheap O(n) function
    ("fastfd numerical_jacobian / scipy approx_derivative, both dense, n=1,000",
     "jac_dense_fastfd_1000", "jac_dense_scipy_1000", 10.0, "max"),
    ("check_jacobian (all 29,998 entries, error bars) / numerical_jacobian, sparse, n=10,000",
     "jac_check_sparse_10000", "jac_sparse_fastfd_10000", 5.0, "max"),
    ("scipy dense approx_derivative / fastfd sparse check_jacobian, n=10,000 (speedup)",
     "jac_dense_scipy_10000", "jac_check_sparse_10000", 1.0, "min"),
    ("check_vjp, conv x 2x3x8x8 w 3x3x3x3 / notebook eval_numerical_gradient_array loop",
     "vjp_conv_check", "vjp_conv_loop", 1.5, "max"),
])

def figure(label: str, value: float, bound: float | None = None, kind: str = "max",
           fmt: str = "{:,.0f}") -> None:
    """A figure that is not a time (an evaluation count, an error), printed by conftest."""
    FIGURES.append((label, value, bound, kind, fmt))


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"fastfd_bench_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.f(*args, **kwargs)


# ---------------------------------------------------------------- 1. banded Jacobian


@pytest.fixture(scope="module")
def bvp_module():
    return load_example("least_squares_jacobian")


def bvp(module, n):
    problem = module.BVP(n)
    u0 = 0.5 * problem.t * (1 - problem.t) + 0.1 * np.sin(7 * np.pi * problem.t)
    return problem, u0


def jacobian_error(J, exact) -> float:
    J = J.toarray() if sparse.issparse(J) else np.asarray(J)
    exact = exact.toarray()
    return float(np.max(np.abs(J - exact)) / np.max(np.abs(exact)))


@pytest.mark.parametrize("n", [N_SPARSE, N_DENSE])
def test_sparse_numerical_jacobian(benchmark, bvp_module, n):
    problem, u0 = bvp(bvp_module, n)
    f = Counted(problem.resid)
    J = fastfd.numerical_jacobian(f, u0, sparsity=problem.pattern())
    evals = f.calls
    benchmark.pedantic(fastfd.numerical_jacobian, args=(problem.resid, u0),
                       kwargs={"sparsity": problem.pattern()}, rounds=5, warmup_rounds=1)
    error = jacobian_error(J, problem.jac(u0)) if n <= N_DENSE else float(
        abs(J - problem.jac(u0)).max() / abs(problem.jac(u0)).max())
    assert error < 1e-9
    record(f"jac_sparse_fastfd_{n}", benchmark)
    figure(f"fastfd numerical_jacobian, sparse, n={n:,}: evaluations (3 groups; 2n = "
           f"{2 * n:,})", evals, 100, "max")
    if n == N_SPARSE:
        figure(f"fastfd numerical_jacobian, sparse, n={n:,}: max |J - jac| / max |jac|",
               error, 1e-9, "max", "{:.1e}")


def test_sparse_scipy_approx_derivative(benchmark, bvp_module):
    problem, u0 = bvp(bvp_module, N_SPARSE)
    f = Counted(problem.resid)
    J = approx_derivative(f, u0, method="3-point", sparsity=problem.pattern())
    evals = f.calls
    benchmark.pedantic(approx_derivative, args=(problem.resid, u0),
                       kwargs={"method": "3-point", "sparsity": problem.pattern()},
                       rounds=5, warmup_rounds=1)
    error = float(abs(J - problem.jac(u0)).max() / abs(problem.jac(u0)).max())
    record(f"jac_sparse_scipy_{N_SPARSE}", benchmark)
    figure(f"scipy approx_derivative 3-point, sparse, n={N_SPARSE:,}: evaluations", evals)
    figure(f"scipy approx_derivative 3-point, sparse, n={N_SPARSE:,}: max |J - jac| / "
           "max |jac|", error, None, fmt="{:.1e}")


def test_sparse_check_jacobian(benchmark, bvp_module):
    problem, u0 = bvp(bvp_module, N_SPARSE)
    pattern = problem.pattern()
    report = benchmark.pedantic(fastfd.check_jacobian, args=(problem.resid, problem.jac, u0),
                                kwargs={"sparsity": pattern}, rounds=3, warmup_rounds=1)
    assert report.verdict == "pass" and report.n_checked == 3 * N_SPARSE - 2
    record(f"jac_check_sparse_{N_SPARSE}", benchmark)
    figure(f"check_jacobian, sparse, n={N_SPARSE:,}: evaluations for "
           f"{report.n_checked:,} entries ({report.n_groups} groups)", report.n_evals, 100,
           "max")


@pytest.mark.parametrize("who", ["fastfd", "scipy"])
def test_dense_jacobian(benchmark, bvp_module, who):
    problem, u0 = bvp(bvp_module, N_DENSE)
    f = Counted(problem.resid)
    if who == "fastfd":
        J = benchmark.pedantic(fastfd.numerical_jacobian, args=(f, u0), rounds=1)
    else:
        J = benchmark.pedantic(approx_derivative, args=(f, u0), kwargs={"method": "3-point"},
                               rounds=1)
    assert jacobian_error(J, problem.jac(u0)) < 1e-6
    record(f"jac_dense_{who}_{N_DENSE}", benchmark)
    figure(f"{who} dense Jacobian, n={N_DENSE:,}: evaluations", f.calls)


def test_dense_scipy_at_10000(benchmark, bvp_module):
    problem, u0 = bvp(bvp_module, N_SPARSE)
    f = Counted(problem.resid)
    J = benchmark.pedantic(approx_derivative, args=(f, u0), kwargs={"method": "3-point"},
                           rounds=1)
    assert J.shape == (N_SPARSE, N_SPARSE)
    del J
    record(f"jac_dense_scipy_{N_SPARSE}", benchmark)
    figure(f"scipy dense approx_derivative, n={N_SPARSE:,}: evaluations", f.calls)


# ---------------------------------------------------------------- 2. complex step


@pytest.fixture(scope="module")
def smooth_losses():
    return load_example("complex_step").losses()


@pytest.mark.parametrize("name", ["martins", "rosenbrock", "softmax"])
@pytest.mark.parametrize("method", ["central", "complex"])
def test_complex_vs_central(benchmark, smooth_losses, name, method):
    f, grad, x = smooth_losses[name]
    counted = Counted(f)
    g = fastfd.numerical_gradient(counted, x, method=method)
    evals = counted.calls
    benchmark.pedantic(fastfd.numerical_gradient, args=(f, x), kwargs={"method": method},
                       rounds=20, warmup_rounds=2)
    exact = grad(x)
    error = float(np.max(np.abs(g - exact)) / np.max(np.abs(exact)))
    check = fastfd.check_gradient(f, grad, x, method=method)
    assert check.verdict == "pass"
    record(f"grad_{method}_{name}", benchmark)
    bound = 1e-14 if method == "complex" else None
    figure(f"{name} (n={x.size}), {method}: max |g - exact| / max |exact|", error, bound,
           "max", "{:.1e}")
    figure(f"{name} (n={x.size}), {method}: evaluations, numerical_gradient", evals,
           x.size + 7 if method == "complex" else None, "max")
    figure(f"{name} (n={x.size}), {method}: evaluations, check_gradient", check.n_evals,
           x.size + 7 if method == "complex" else None, "max")


# ---------------------------------------------------------------- 3. conv layer VJP


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """The notebook's loop: a central difference of ``sum(f(x) * df)`` per coordinate."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = f(x).copy()
        x[ix] = oldval - h
        neg = f(x).copy()
        x[ix] = oldval
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


@pytest.fixture(scope="module")
def conv():
    layers = load_example("layers_backward")
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(3, 3, 3, 3)), rng.normal(size=3)
    conv_param = {"stride": 1, "pad": 1}
    out, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dout = rng.normal(size=out.shape)
    return layers, x, w, b, conv_param, dout, cache


def test_conv_notebook_loop(benchmark, conv):
    layers, x, w, b, conv_param, dout, cache = conv
    forward = layers.conv_forward_naive
    calls = Counted(forward)

    def notebook():
        dx = eval_numerical_gradient_array(lambda x: calls(x, w, b, conv_param)[0], x.copy(),
                                           dout)
        dw = eval_numerical_gradient_array(lambda w: calls(x, w, b, conv_param)[0], w.copy(),
                                           dout)
        db = eval_numerical_gradient_array(lambda b: calls(x, w, b, conv_param)[0], b.copy(),
                                           dout)
        return dx, dw, db

    dx, dw, db = benchmark.pedantic(notebook, rounds=3)
    adx, adw, adb = layers.conv_backward_naive(dout, cache)
    rel = max(np.max(np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n)))
              for a, n in [(adx, dx), (adw, dw), (adb, db)])
    record("vjp_conv_loop", benchmark)
    figure("conv layer, notebook loop: evaluations (2 per coordinate, 468 coordinates)",
           calls.calls / 3)
    figure("conv layer, notebook loop: max rel_error (the number it prints; no verdict)", rel,
           None, fmt="{:.1e}")


def test_conv_check_vjp(benchmark, conv):
    layers, x, w, b, conv_param, dout, cache = conv
    inputs = {"x": x, "w": w, "b": b, "conv_param": conv_param}

    def forward(**kw):
        return layers.conv_forward_naive(**kw)[0]

    def backward(d):
        return layers.conv_backward_naive(d, cache)

    report = benchmark.pedantic(fastfd.check_vjp, args=(forward, backward, inputs),
                                kwargs={"dout": dout}, rounds=3)
    assert report.verdict == "pass" and report.n_checked == 468
    record("vjp_conv_check", benchmark)
    figure("conv layer, check_vjp: evaluations (every entry, error bars, verdict)",
           report.n_evals, 2 * 468 + 50, "max")

