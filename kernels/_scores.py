"""Scores ``X @ W`` in float64 for the perturbed-loss paths, computed by numba, not BLAS.

Why not ``X @ W`` in numpy: OpenBLAS worker threads busy-wait for up to ~0.1 s after each call,
and on a machine with few cores they steal the cores from the ``prange`` kernel that follows (on
2 cores this doubled the time of a perturbed-deltas call). A numba matmul runs on numba's own
threads, about as fast here (the matrix is skinny: C columns), reads float32 ``X`` without a
float64 copy, and accumulates in float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import PARALLEL_OPTIONS
from ._data import check_finite_result

__all__ = ["scores_float64"]


@njit(**PARALLEL_OPTIONS)
def _scores_kernel(X, WT, out):
    """``out[i, c] = sum_d X[i, d] * WT[c, d]`` in float64, parallel over examples."""
    n_examples, n_features = X.shape
    n_classes = WT.shape[0]
    for i in prange(n_examples):
        row = X[i]
        for c in range(n_classes):
            weights = WT[c]
            total = 0.0
            for d in range(n_features):
                total += row[d] * weights[d]
            out[i, c] = total


def scores_float64(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``X @ W`` as a float64 (N, C) array, for C-contiguous float32/float64 ``X`` (validated)."""
    out = np.empty((X.shape[0], W.shape[1]), dtype=np.float64)
    _scores_kernel(X, np.ascontiguousarray(W.T, dtype=np.float64), out)
    return out


def loss_and_dscores(rows_kernel, W, X, y, reg, *args):
    """Loss and ``dloss/dscores`` of validated input for a per-row kernel.

    ``rows_kernel(scores, y, *args, dscores)`` fills ``dscores`` and returns the summed data
    loss; the matmul stays in BLAS (Numba's ``np.dot`` would need SciPy).
    """
    scores = X @ W
    dscores = np.empty_like(scores)
    data_loss = rows_kernel(scores, np.asarray(y, dtype=np.int64), *args, dscores)
    loss = float(data_loss) / X.shape[0] + reg * float(np.vdot(W, W))
    check_finite_result(loss, W, X)
    return loss, dscores


def weight_gradient(X, dscores, W, reg):
    """``X.T @ dscores + 2 reg W``, the gradient of every linear loss from its ``dscores``."""
    # X.T @ dscores rather than the equal (dscores.T @ X).T: the latter ran ~20% faster on an
    # idle 2-core machine but several times slower whenever another process wanted the cores
    dW = X.T @ dscores
    dW += 2 * reg * W
    return dW
