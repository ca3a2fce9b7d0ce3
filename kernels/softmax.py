"""Softmax (cross-entropy) loss of a linear classifier: loss, gradient and exact perturbed losses.

Conventions as in :mod:`fastfd.kernels.reference`: ``W`` (D, C), ``X`` (N, D), ``y`` (N,),
``loss = mean_i [logsumexp(scores_i) - scores_i[y_i]] + reg * sum(W * W)``.

The public functions validate their input (:func:`fastfd.kernels._data.check_inputs`) and call
private ``@njit`` kernels that assume it is valid. The loss and gradient's two matmuls run in
numpy's BLAS (numba's ``np.dot`` would need SciPy); the nonlinear middle runs in one fused pass
over the rows.

:func:`softmax_perturbed_deltas` is the fast path of numerical gradients: perturbing ``W[d, c]`` by
``h`` moves only score column ``c``, by ``t_i = h * X[i, d]``, so with ``p = softmax(scores)``

    loss(W + h e_dc) - loss(W) = (1/N) sum_i log1p(p_ic expm1(t_i)) - h class_sums[d, c] / N
                                 + reg h (2 W[d, c] + h),

O(N) per coordinate, evaluated as a difference, never as two full losses that cancel. Its scores
come from :mod:`fastfd.kernels._scores` (numba, float64), the rest of the precomputation once per
call.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import JIT_OPTIONS, PARALLEL_OPTIONS
from ._data import check_data, check_inputs, check_perturbations
from ._scores import loss_and_dscores, scores_float64, weight_gradient

__all__ = [
    "softmax_grad",
    "softmax_loss",
    "softmax_loss_and_grad",
    "softmax_perturbed_deltas",
]

# Below this |t| the truncated series for expm1 and log1p are exact to < 1e-17 relative
# (next terms t**6 / 720 and u**7 / 7), and unlike the libm calls they vectorize.
_SERIES_LIMIT = 1e-3


@njit(**JIT_OPTIONS)
def _softmax_rows(scores, y, dscores):
    """Sum over rows of ``logsumexp(scores_i) - scores_i[y_i]``; fills ``dscores`` with
    ``(softmax(scores_i) - onehot(y_i)) / N``. Accumulates in float64 whatever the dtype."""
    n_examples, n_classes = scores.shape
    inv_n = 1.0 / n_examples
    total = 0.0
    for i in range(n_examples):
        top = np.float64(scores[i, 0])
        for j in range(1, n_classes):
            top = max(top, np.float64(scores[i, j]))
        sum_exp = 0.0
        for j in range(n_classes):
            # shifted by the row max so exp cannot overflow, whatever the scale of the scores
            exp_score = np.exp(scores[i, j] - top)
            dscores[i, j] = exp_score
            sum_exp += exp_score
        total += np.log(sum_exp) + (top - scores[i, y[i]])
        scale = inv_n / sum_exp
        for j in range(n_classes):
            dscores[i, j] *= scale
        dscores[i, y[i]] -= inv_n
    return total


def softmax_loss_and_grad(W, X, y, reg):
    """Softmax loss and its gradient with respect to ``W``.

    Parameters
    ----------
    W : ndarray, shape (D, C)
        Weights, float32 or float64.
    X : ndarray, shape (N, D)
        Examples, same dtype as ``W``.
    y : ndarray, shape (N,)
        Integer labels in ``[0, C)``.
    reg : float
        L2 regularization strength, ``>= 0``.

    Returns
    -------
    loss : float
    dW : ndarray, shape (D, C), dtype of ``W``

    Raises
    ------
    TypeError
        Non-float ``W``/``X``, ``X`` and ``W`` of different dtypes, non-integer or bool ``y``.
    ValueError
        Mismatched shapes, labels outside ``[0, C)``, negative ``reg``, or NaN/Inf in ``X``/``W``
        (found when the loss comes out non-finite; see ``check_finite_result``).

    Examples
    --------
    >>> import numpy as np
    >>> W, X, y = np.zeros((2, 3)), np.ones((4, 2)), np.array([0, 1, 2, 0])
    >>> loss, dW = softmax_loss_and_grad(W, X, y, 0.0)
    >>> bool(np.isclose(loss, np.log(3))), dW.shape  # all scores equal: log(C)
    (True, (2, 3))
    """
    W, X, y, reg = check_inputs(W, X, y, reg)
    loss, dscores = loss_and_dscores(_softmax_rows, W, X, y, reg)
    return loss, weight_gradient(X, dscores, W, reg)


def softmax_loss(W, X, y, reg):
    """Softmax loss (see :func:`softmax_loss_and_grad`); skips the gradient's matmul."""
    W, X, y, reg = check_inputs(W, X, y, reg)
    return loss_and_dscores(_softmax_rows, W, X, y, reg)[0]


def softmax_grad(W, X, y, reg):
    """Gradient of the softmax loss with respect to ``W`` (see :func:`softmax_loss_and_grad`)."""
    return softmax_loss_and_grad(W, X, y, reg)[1]


@njit(**JIT_OPTIONS)
def _expm1_series(t):
    return t * (1.0 + t * (1.0 / 2 + t * (1.0 / 6 + t * (1.0 / 24 + t * (1.0 / 120)))))


@njit(**JIT_OPTIONS)
def _log1p_series(u):
    return u * (1.0 + u * (-1.0 / 2 + u * (1.0 / 3 + u * (-1.0 / 4 + u * (1.0 / 5 - u / 6)))))


@njit(**PARALLEL_OPTIONS)
def _softmax_deltas_kernel(XT, probs_t, class_sums, col_absmax, W, reg, rows, cols, offsets, out):
    """``out[k] = loss(W + offsets[k] e_(rows[k], cols[k])) - loss(W)``, parallel over ``k``.

    ``probs_t[c, i]`` is the softmax probability of class ``c`` for example ``i`` at ``W``.
    """
    n_examples = XT.shape[1]
    for k in prange(rows.shape[0]):
        d = rows[k]
        c = cols[k]
        h = offsets[k]
        feature = XT[d]
        probs = probs_t[c]
        total = 0.0
        # log(sum_j exp(s_ij + [j == c] t_i)) - log(sum_j exp(s_ij)) = log1p(p_ic expm1(t_i));
        # p_ic expm1(t_i) > -1, and log1p/expm1 keep full relative precision for tiny t_i
        if abs(h) * col_absmax[d] < _SERIES_LIMIT:
            for i in range(n_examples):
                total += _log1p_series(probs[i] * _expm1_series(h * feature[i]))
        else:
            for i in range(n_examples):
                total += np.log1p(probs[i] * np.expm1(h * feature[i]))
        out[k] = (total - h * class_sums[d, c]) / n_examples + reg * h * (2.0 * W[d, c] + h)


def softmax_perturbed_deltas(W, data, reg, rows, cols, offsets):
    """Exact loss changes ``loss(W + offsets[k] e_(rows[k], cols[k])) - loss(W)`` for every ``k``.

    Computed in float64 in delta form (see the module docstring), O(N) per coordinate, parallel
    over coordinates, so the result has no cancellation even for tiny offsets. The perturbed point
    is ``W[rows[k], cols[k]] + offsets[k]`` in exact arithmetic; an in-place write rounds it to
    ``W``'s dtype, so to get that point pass ``offsets = (W[r, c] + h) - W[r, c]``.

    Parameters
    ----------
    W : ndarray, shape (D, C)
        Weights, same dtype as ``data.X``; ``C`` may exceed ``data.n_classes``.
    data : LinearData
        From :func:`fastfd.kernels._data.prepare_data` (``fastfd.kernels.prepare_data``).
    reg : float
        L2 regularization strength, ``>= 0``.
    rows, cols : ndarray of int, shape (K,)
        Coordinates ``(rows[k], cols[k])`` of ``W``.
    offsets : ndarray of float, shape (K,)
        Finite perturbations, any sign.

    Returns
    -------
    ndarray, shape (K,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.kernels import prepare_data, reference
    >>> rng = np.random.default_rng(0)
    >>> X, y, W = rng.normal(size=(5, 3)), np.array([0, 1, 2, 1, 0]), rng.normal(size=(3, 3))
    >>> fast = softmax_perturbed_deltas(W, prepare_data(X, y), 0.1, [0, 2], [1, 0], [0.5, -0.25])
    >>> slow = reference.softmax_perturbed_deltas(W, X, y, 0.1, [0, 2], [1, 0], [0.5, -0.25])
    >>> bool(np.allclose(fast, slow, rtol=1e-12, atol=0))
    True
    """
    W, reg, class_sums = check_data(W, data, reg)
    rows, cols, offsets = check_perturbations(rows, cols, offsets, W.shape)
    W64 = np.ascontiguousarray(W, dtype=np.float64)
    scores = scores_float64(data.X, W64)
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    out = np.empty(rows.shape[0], dtype=np.float64)
    _softmax_deltas_kernel(
        data.XT,
        np.ascontiguousarray(probs.T),
        class_sums,
        data.col_absmax,
        W64,
        reg,
        rows,
        cols,
        offsets,
        out,
    )
    return out
