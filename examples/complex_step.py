"""The complex step against central differences on three smooth losses: accuracy and cost.

For a loss that extends analytically to complex input, ``Im f(x + i h e_j) / h`` is the
partial derivative with truncation ``O(h**2)`` and *no cancellation* (no difference of two
rounded losses is taken), so ``h = 1e-20`` gives the gradient to rounding, with one evaluation
per entry instead of two. ``method="complex"`` does this on fastfd's engine after checking
once, along a random direction, that the loss is complex-safe.

Three smooth losses, each with its analytic gradient:

- ``martins``: ``sum exp(x) / sqrt(sin(x)**3 + cos(x)**3)``, the classic complex-step test
  function (Martins, Sturdza & Alonso 2003), 30 entries in [0.1, 1.4];
- ``rosenbrock``: the 40-dimensional Rosenbrock function at a random point;
- ``softmax``: softmax cross-entropy of a 10 x 4 linear classifier on 50 examples (the
  log-sum-exp written without ``max``, which is not complex-safe).

For each, the gradient by ``numerical_gradient(method="central")`` (default, noise-adapted
steps), by the textbook central loop (``h = 1e-5``) and by ``method="complex"``: the largest
error against the analytic gradient (relative to ``max |g|``) and the evaluations (counted
calls). Then ``check_gradient(method="complex", rtol=1e-10)`` catches a 1e-7 relative error
that central differences cannot resolve, and a loss with ``np.abs`` (an L1 penalty) is
refused.

Run::

    python examples/complex_step.py
    python examples/complex_step.py --quick     # the same (already fast)
"""

from __future__ import annotations

import argparse

import numpy as np

import fastfd
from fastfd._baseline import eval_numerical_gradient_centered
from fastfd.errors import NotComplexSafeError


class Counted:
    """A loss that counts its calls."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


def martins(x):
    return np.sum(np.exp(x) / np.sqrt(np.sin(x) ** 3 + np.cos(x) ** 3))


def martins_grad(x):
    s, c = np.sin(x), np.cos(x)
    d = s**3 + c**3
    return np.exp(x) / np.sqrt(d) * (1 - 1.5 * (s**2 * c - c**2 * s) / d)


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    r = x[1:] - x[:-1] ** 2
    g[:-1] = -400.0 * x[:-1] * r - 2 * (1 - x[:-1])
    g[1:] += 200.0 * r
    return g


def softmax_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, 10))
    y = rng.integers(0, 4, size=50)
    onehot = np.eye(4)[y]

    def loss(W):
        scores = X @ W
        log_norm = np.log(np.sum(np.exp(scores), axis=1))  # no max: complex-safe
        return np.mean(log_norm - np.sum(scores * onehot, axis=1)) + 0.05 * np.sum(W * W)

    def grad(W):
        scores = X @ W
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return X.T @ (p - onehot) / len(y) + 0.1 * W

    return loss, grad


def losses():
    rng = np.random.default_rng(0)
    softmax, softmax_grad = softmax_problem()
    return {
        "martins": (martins, martins_grad, np.linspace(0.1, 1.4, 30)),
        "rosenbrock": (rosenbrock, rosenbrock_grad, rng.uniform(-1.5, 1.5, 40)),
        "softmax": (softmax, softmax_grad, 0.3 * rng.normal(size=(10, 4))),
    }


def relative_error(numeric, exact) -> float:
    return float(np.max(np.abs(numeric - exact)) / np.max(np.abs(exact)))


def compare(name, f, grad, x) -> dict:
    exact = grad(x)
    row = {"n": x.size}
    for method in ("central", "complex"):
        counted = Counted(f)
        g = fastfd.numerical_gradient(counted, x, method=method)
        row[method] = {"error": relative_error(g, exact), "evals": counted.calls}
    counted = Counted(f)
    g = eval_numerical_gradient_centered(counted, np.array(x, dtype=float, copy=True))
    row["textbook"] = {"error": relative_error(g, exact), "evals": counted.calls}
    for method in ("central", "complex"):
        check = fastfd.check_gradient(f, grad, x, method=method)
        row[method]["check"] = check
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted; the example is small")
    parser.parse_args(argv)
    out: dict = {}
    print("Largest error against the analytic gradient, relative to max |g|, and loss calls\n")
    header = (f"  {'loss':<11} {'n':>3}  {'central (fastfd)':>18}  {'central h=1e-5':>18}  "
              f"{'complex step':>18}")
    print(header)
    for name, (f, grad, x) in losses().items():
        row = compare(name, f, grad, x)
        out[name] = row
        cells = [f"{row[m]['error']:8.1e} {row[m]['evals']:>5} ev"
                 for m in ("central", "textbook", "complex")]
        print(f"  {name:<11} {row['n']:>3}  " + "  ".join(f"{c:>18}" for c in cells))
    print("\n  check_gradient(f, grad, x, method=...): verdict, tolerance and loss evaluations")
    for name, row in out.items():
        central, imaginary = row["central"]["check"], row["complex"]["check"]
        print(f"  {name:<11} central {central.verdict.upper()} rtol {central.rtol:.0e} "
              f"{central.n_evals:>4} evals   complex {imaginary.verdict.upper()} rtol "
              f"{imaginary.rtol:.0e} {imaginary.n_evals:>4} evals")
    print("  The complex check spends f(x), 6 evaluations on the safety check and one per entry;")
    print("  central spends the noise measurement and two per entry (plus refinement).")

    f, grad, x = losses()["martins"]

    def off(v):
        return grad(v) * (1 + 1e-7)

    resolved = fastfd.check_gradient(f, off, x, method="complex", rtol=1e-10)
    blind = fastfd.check_gradient(f, off, x)
    print(f"\nA gradient 1e-7 too large (relative) on martins: central {blind.verdict.upper()} "
          f"(rtol {blind.rtol:.0e}), complex with rtol=1e-10 {resolved.verdict.upper()} "
          f"({len(resolved.failed)} of {resolved.n_checked} entries fail)")
    out["tiny_bug"] = {"central": blind, "complex": resolved}

    def lasso(w):  # an L1 penalty: np.abs of a complex number is real, Im is lost
        return rosenbrock(w) + 0.1 * np.sum(np.abs(w))

    try:
        fastfd.numerical_gradient(lasso, x, method="complex")
        refused = None
    except NotComplexSafeError as error:
        refused = str(error)
    print("\nRosenbrock + 0.1 |x|_1 with method='complex' is refused (NotComplexSafeError):")
    print(f"  {refused}")
    out["refused"] = refused
    return out


if __name__ == "__main__":
    main()
