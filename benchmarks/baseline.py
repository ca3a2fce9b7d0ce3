"""The textbook numerical-gradient loops: the pure-numpy baseline fastfd is measured against.

These are the loops from the classic course notes, written anew: a forward difference with
``h = 1e-5`` over every coordinate, its centered variant, and a sparse check of random
coordinates. They evaluate the whole loss once or twice per coordinate from Python.
"""

from __future__ import annotations

import numpy as np


def eval_numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Forward differences ``(f(x + h e_i) - f(x)) / h`` over every coordinate of ``x``.

    ``x`` is perturbed in place and each entry restored before moving on.
    """
    fx = f(x)
    grad = np.zeros(x.shape)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxh = f(x)
        x[ix] = old
        grad[ix] = (fxh - fx) / h
        it.iternext()
    return grad


def eval_numerical_gradient_centered(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centered differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` over every coordinate."""
    return centered_on_coords(f, x, np.arange(x.size), h).reshape(x.shape)


def centered_on_coords(f, x: np.ndarray, coords: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """The centered loop restricted to flat ``coords``: time it on a subset and scale."""
    flat = x.reshape(-1)  # a view for contiguous x, so writes reach f's argument
    out = np.empty(len(coords))
    for k, i in enumerate(coords):
        old = flat[i]
        flat[i] = old + h
        fxph = f(x)
        flat[i] = old - h
        fxmh = f(x)
        flat[i] = old
        out[k] = (fxph - fxmh) / (2 * h)
    return out


def grad_check_sparse(f, x: np.ndarray, analytic_grad: np.ndarray, num_checks: int = 10,
                      h: float = 1e-5, seed: int = 0) -> list[tuple[tuple, float, float, float]]:
    """Check ``num_checks`` random coordinates: (index, numeric, analytic, relative error)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_checks):
        ix = tuple(int(rng.integers(m)) for m in x.shape)
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        numeric = (fxph - fxmh) / (2 * h)
        analytic = float(analytic_grad[ix])
        rel = abs(numeric - analytic) / (abs(numeric) + abs(analytic))
        rows.append((ix, numeric, analytic, rel))
    return rows


def cifar_like_problem(n: int = 500, d: int = 3072, c: int = 10, seed: int = 0,
                       dtype=np.float64):
    """Synthetic CIFAR-10-shaped data: pixel-like values 0..255, mean subtracted, bias column.

    Returns ``W (d + 1, c)`` = 1e-4 * randn, ``X (n, d + 1)`` and labels ``y (n,)``.
    """
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, d)).astype(np.float64)
    # a little structure per class, so the classes differ like images do
    y = rng.integers(0, c, size=n)
    pixels += 8.0 * rng.standard_normal((c, d))[y]
    pixels -= pixels.mean(axis=0)
    X = np.hstack([pixels, np.ones((n, 1))]).astype(dtype)
    W = (1e-4 * rng.standard_normal((d + 1, c))).astype(dtype)
    return W, X, y
