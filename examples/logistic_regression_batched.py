"""Numerical gradients of a small loss, K parameter sets per call: the batched evaluator.

Multinomial logistic regression (N=20 examples, D=64 features, C=10 classes, params
``{"W": (D, C), "b": (C,)}``) costs a few microseconds of arithmetic per call but several
times that in Python and numpy call overhead, so the textbook loop, one call per perturbation,
spends its time on overhead. The loss is written once with a leading stack axis on every
parameter array; fastfd then evaluates hundreds of perturbations per call, and the same
function serves the textbook loop through a stack of one.

Run::

    python examples/logistic_regression_batched.py            # N=20, D=64, C=10
    python examples/logistic_regression_batched.py --quick    # one timing round
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastfd
from fastfd._baseline import centered_on_coords
from fastfd.executors._batched import BatchedEvaluator


def make_problem(n: int = 20, d: int = 64, c: int = 10, seed: int = 0):
    """Features ``X (n, d)``, labels ``y (n,)`` and params ``{"W": (d, c), "b": (c,)}``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    X = rng.standard_normal((n, d)) + 0.5 * rng.standard_normal((c, d))[y]
    params = {"W": 0.1 * rng.standard_normal((d, c)), "b": 0.1 * rng.standard_normal(c)}
    return X, y, params


def stacked_loss(X: np.ndarray, y: np.ndarray, reg: float = 1e-3):
    """Mean cross-entropy + ``reg * |W|^2`` of stacks ``W (K, D, C)``, ``b (K, C)``: shape (K,)."""
    rows = np.arange(len(y))

    def loss(params):
        W, b = params["W"], params["b"]
        logits = np.matmul(X, W) + b[:, None, :]  # (K, N, C): one small GEMM per stacked W
        logits = logits - logits.max(axis=-1, keepdims=True)  # exp cannot overflow
        log_norm = np.log(np.exp(logits).sum(axis=-1))
        data = (log_norm - logits[:, rows, y]).mean(axis=-1)
        return data + reg * np.sum(W * W, axis=(1, 2))

    return loss


def unstacked(batched):
    """The ordinary loss ``params -> float``: ``batched`` on a stack of one."""
    return lambda params: batched({key: value[None] for key, value in params.items()})[0]


def analytic_gradient(X: np.ndarray, y: np.ndarray, reg: float = 1e-3):
    """``params -> {"W": dL/dW, "b": dL/db}`` of the unstacked loss."""

    def grad(params):
        logits = X @ params["W"] + params["b"]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(len(y)), y] -= 1.0
        probs /= len(y)
        return {"W": X.T @ probs + 2 * reg * params["W"], "b": probs.sum(axis=0)}

    return grad


def textbook_gradient(f, params: dict, h: float = 1e-5) -> dict:
    """The centered loop over every entry of every array, one call of ``f`` per perturbation."""
    work = {key: value.copy() for key, value in params.items()}
    grad = {}
    for key, array in work.items():
        of_array = lambda a, key=key: f({**work, key: a})  # noqa: E731
        grad[key] = centered_on_coords(of_array, array, np.arange(array.size), h)
        grad[key] = grad[key].reshape(array.shape)
    return grad


def best_time(call, rounds: int):
    """``(result, best seconds)`` over ``rounds`` calls."""
    best, result = np.inf, None
    for _ in range(rounds):
        began = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - began)
    return result, best


def relative_error(a: dict, b: dict) -> float:
    """``|a - b| / (|a| + |b|)`` over all entries."""
    va = np.concatenate([a[k].ravel() for k in a])
    vb = np.concatenate([b[k].ravel() for k in a])
    return float(np.linalg.norm(va - vb) / (np.linalg.norm(va) + np.linalg.norm(vb)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="examples (default 20)")
    parser.add_argument("--d", type=int, default=64, help="features (default 64)")
    parser.add_argument("--c", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument("--quick", action="store_true", help="one timing round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else max(1, args.rounds)

    X, y, params = make_problem(args.n, args.d, args.c, args.seed)
    batched = stacked_loss(X, y)
    loss = unstacked(batched)
    grad = analytic_gradient(X, y)
    n_params = sum(v.size for v in params.values())
    print(f"logistic regression: N={args.n}, D={args.d}, C={args.c}, {n_params} parameters, "
          f"loss {loss(params):.6f}")

    fastfd.numerical_gradient(batched, params, evaluator=BatchedEvaluator())  # warm caches
    numeric, t_batched = best_time(
        lambda: fastfd.numerical_gradient(batched, params, evaluator=BatchedEvaluator()), rounds)
    loop, t_loop = best_time(lambda: textbook_gradient(loss, params), rounds)
    analytic = grad(params)
    speedup = t_loop / t_batched
    print(f"  textbook central loop ({2 * n_params} calls):   {t_loop * 1e3:8.2f} ms")
    print(f"  fastfd, batched evaluator (stacks of K):  {t_batched * 1e3:8.2f} ms  "
          f"({speedup:.1f}x faster)")
    print(f"  relative error vs analytic: batched {relative_error(numeric, analytic):.1e}, "
          f"loop {relative_error(loop, analytic):.1e}")

    check = fastfd.check_gradient(batched, grad, params, evaluator=BatchedEvaluator())
    print(f"  check_gradient (batched): {check.verdict}, {check.n_checked} entries, "
          f"max rel error {check.max_rel_error:.1e}, {check.elapsed_s * 1e3:.1f} ms")
    return {"speedup": speedup, "verdict": check.verdict, "t_batched": t_batched,
            "t_loop": t_loop, "rel_error": relative_error(numeric, analytic)}


if __name__ == "__main__":
    main()
