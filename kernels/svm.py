"""Multiclass SVM (hinge) loss of a linear classifier: loss, gradient, perturbed losses, kinks.

Conventions as in :mod:`fastfd.kernels.reference`: ``W`` (D, C), ``X`` (N, D), ``y`` (N,),
``margins_ij = scores_ij - scores_i[y_i] + delta`` for ``j != y_i``,
``loss = mean_i sum_{j != y_i} max(0, margins_ij) + reg * sum(W * W)``.

Gradient convention at a kink: a margin counts in the gradient only when ``margin > 0`` (the cs231n
vectorized convention); a margin of exactly 0 contributes nothing. :func:`svm_kink_flags` says
which coordinates have such a kink within a step, so a gradient check can set them aside.

The public functions validate their input and call private ``@njit`` kernels that assume it is
valid; the loss and gradient matmuls run in numpy's BLAS, the perturbed paths' scores in
:mod:`fastfd.kernels._scores`.

:func:`svm_perturbed_deltas`: perturbing ``W[d, c]`` by ``h`` moves, with ``t_i = h * X[i, d]``,
margin ``(i, c)`` by ``+t_i`` for examples with ``y_i != c``, and every margin ``(i, j != c)`` by
``-t_i`` for examples with ``y_i == c``. Each hinge change ``max(0, m + t) - max(0, m)`` is taken
piecewise (``t`` when both sides are positive, 0 when neither is, the one non-zero side at a
crossing), so it is exact and nothing cancels.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._config import JIT_OPTIONS, PARALLEL_OPTIONS
from ._data import check_data, check_inputs, check_perturbations
from ._scores import loss_and_dscores, scores_float64, weight_gradient

__all__ = [
    "svm_grad",
    "svm_kink_flags",
    "svm_loss",
    "svm_loss_and_grad",
    "svm_perturbed_deltas",
]


def _check_delta(delta) -> float:
    if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, numbers.Real):
        raise TypeError(f"delta must be a real number; got {type(delta).__name__} {delta!r}")
    if not np.isfinite(delta):
        raise ValueError(f"delta must be finite; got {delta!r}")
    return float(delta)


@njit(**JIT_OPTIONS)
def _hinge_rows(scores, y, delta, dscores):
    """Sum of the positive margins over all rows; fills ``dscores`` with ``dloss/dscores``
    (``margin > 0`` counts). Accumulates in float64 whatever the dtype."""
    n_examples, n_classes = scores.shape
    inv_n = 1.0 / n_examples
    total = 0.0
    for i in range(n_examples):
        label = y[i]
        n_positive = 0
        for j in range(n_classes):
            dscores[i, j] = 0.0
            if j != label:
                margin = (np.float64(scores[i, j]) - scores[i, label]) + delta
                if margin > 0.0:
                    total += margin
                    n_positive += 1
                    dscores[i, j] = inv_n
                elif margin != margin:
                    total += margin  # NaN propagates, as through numpy's maximum(0, margin)
        dscores[i, label] = -n_positive * inv_n
    return total


def svm_loss_and_grad(W, X, y, reg, delta=1.0):
    """Multiclass SVM loss and its gradient with respect to ``W`` (``margin > 0`` counts).

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
    delta : float, default 1.0
        The margin the correct class must win by.

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
    >>> loss, dW = svm_loss_and_grad(W, X, y, 0.0)
    >>> loss  # every margin is delta = 1, two wrong classes per example
    2.0
    """
    W, X, y, reg = check_inputs(W, X, y, reg)
    delta = _check_delta(delta)
    loss, dscores = loss_and_dscores(_hinge_rows, W, X, y, reg, delta)
    return loss, weight_gradient(X, dscores, W, reg)


def svm_loss(W, X, y, reg, delta=1.0):
    """Multiclass SVM loss (see :func:`svm_loss_and_grad`); skips the gradient's matmul."""
    W, X, y, reg = check_inputs(W, X, y, reg)
    return loss_and_dscores(_hinge_rows, W, X, y, reg, _check_delta(delta))[0]


def svm_grad(W, X, y, reg, delta=1.0):
    """Gradient of the multiclass SVM loss (see :func:`svm_loss_and_grad`)."""
    return svm_loss_and_grad(W, X, y, reg, delta)[1]


@njit(**JIT_OPTIONS)
def _hinge_change(margin, shift):
    """``max(0, margin + shift) - max(0, margin)`` without subtracting two hinges."""
    moved = margin + shift
    if margin > 0.0:
        return shift if moved > 0.0 else -margin
    return moved if moved > 0.0 else 0.0


@njit(**PARALLEL_OPTIONS)
def _hinge_deltas_kernel(
    XT, y, margins, margins_t, own_slope, own_radius, W, reg, rows, cols, offsets, out
):
    """``out[k] = loss(W + offsets[k] e_(rows[k], cols[k])) - loss(W)``, parallel over ``k``.

    ``margins`` (N, C) and ``margins_t`` (C, N) hold the margins at ``W`` with ``-inf`` at the
    correct class (no hinge: every change there is 0). For an example of class ``c``,
    ``own_slope[c, i]`` is minus its number of positive margins and ``own_radius[c, i]`` the
    smallest ``|margin|`` (elsewhere 0 and ``inf``).
    """
    n_examples, n_classes = margins.shape
    for k in prange(rows.shape[0]):
        d = rows[k]
        c = cols[k]
        h = offsets[k]
        feature = XT[d]
        margins_c = margins_t[c]
        slope_c = own_slope[c]
        radius_c = own_radius[c]
        total = 0.0
        n_crossing = 0
        # Branch-free pass: an example of class c whose margins all stay on their side (|t| <
        # radius) changes by exactly slope * t; the others' single hinge is taken piecewise.
        for i in range(n_examples):
            shift = h * feature[i]
            total += _hinge_change(margins_c[i], shift) + slope_c[i] * shift
            if abs(shift) >= radius_c[i]:
                n_crossing += 1
        if n_crossing > 0:
            # some example of class c has a margin crossing 0: take every hinge piecewise
            total = 0.0
            for i in range(n_examples):
                shift = h * feature[i]
                if y[i] != c:
                    total += _hinge_change(margins_c[i], shift)
                else:
                    for j in range(n_classes):
                        if j != c:
                            total += _hinge_change(margins[i, j], -shift)
        out[k] = total / n_examples + reg * h * (2.0 * W[d, c] + h)


@njit(**PARALLEL_OPTIONS)
def _hinge_kink_kernel(XT, kink_radius, rows, cols, steps, flags):
    """``flags[k]``: a margin moved by coordinate ``k`` reaches 0 within ``steps[k]``.

    ``kink_radius[c, i]`` is the smallest ``|margin|`` that ``W[:, c]`` moves for example ``i``.
    """
    n_examples = XT.shape[1]
    for k in prange(rows.shape[0]):
        feature = XT[rows[k]]
        radius = kink_radius[cols[k]]
        step = steps[k]
        # counted rather than searched with an early exit: the branch-free loop vectorizes
        n_kinks = 0
        for i in range(n_examples):
            x = np.float64(feature[i])
            n_kinks += (radius[i] <= step * abs(x)) & (x != 0.0)
        flags[k] = n_kinks > 0


class _HingeTables(NamedTuple):
    """Margins at ``W`` (float64) arranged for the per-coordinate loops over examples."""

    margins: np.ndarray  # (N, C), -inf at the correct class: no hinge, every change there is 0
    margins_t: np.ndarray  # (C, N) contiguous copy
    own_slope: np.ndarray  # (C, N): -(number of positive margins) where y_i == c, else 0
    own_radius: np.ndarray  # (C, N): min_j |margins[i, j]| where y_i == c, else inf
    kink_radius: np.ndarray  # (C, N): own_radius where y_i == c, else |margins[i, c]|


def _hinge_tables(W, data, delta) -> _HingeTables:
    scores = scores_float64(data.X, W)
    examples = np.arange(scores.shape[0])
    margins = scores - scores[examples, data.y][:, None] + delta
    margins[examples, data.y] = -np.inf
    margins_t = np.ascontiguousarray(margins.T)
    own = data.y[None, :] == np.arange(W.shape[1])[:, None]
    n_positive = np.count_nonzero(margins > 0, axis=1).astype(np.float64)
    own_slope = np.where(own, -n_positive[None, :], 0.0)
    own_radius = np.where(own, np.abs(margins).min(axis=1)[None, :], np.inf)
    kink_radius = np.where(own, own_radius, np.abs(margins_t))
    return _HingeTables(margins, margins_t, own_slope, own_radius, kink_radius)


def svm_perturbed_deltas(W, data, reg, rows, cols, offsets, delta=1.0):
    """Exact loss changes ``loss(W + offsets[k] e_(rows[k], cols[k])) - loss(W)`` for every ``k``.

    Computed in float64 in delta form (see the module docstring), O(N) per coordinate, parallel
    over coordinates. Exact also across kinks: a step over a hinge gives the true change of the
    loss, not a linearization. The perturbed point is ``W[rows[k], cols[k]] + offsets[k]`` in exact
    arithmetic; to get the point an in-place write would give, pass
    ``offsets = (W[r, c] + h) - W[r, c]``.

    Parameters
    ----------
    W : ndarray, shape (D, C)
        Weights, same dtype as ``data.X``; ``C`` may exceed ``data.n_classes``.
    data : LinearData
        From ``fastfd.kernels.prepare_data(X, y)``.
    reg : float
        L2 regularization strength, ``>= 0``.
    rows, cols : ndarray of int, shape (K,)
        Coordinates ``(rows[k], cols[k])`` of ``W``.
    offsets : ndarray of float, shape (K,)
        Finite perturbations, any sign.
    delta : float, default 1.0
        The SVM margin.

    Returns
    -------
    ndarray, shape (K,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.kernels import prepare_data
    >>> X, y, W = np.array([[1.0, 2.0]]), np.array([0]), np.zeros((2, 2))
    >>> svm_perturbed_deltas(W, prepare_data(X, y), 0.0, [1, 1], [1, 1], [0.25, -1.0])
    array([ 0.5, -1. ])
    """
    W, reg, _ = check_data(W, data, reg)
    delta = _check_delta(delta)
    rows, cols, offsets = check_perturbations(rows, cols, offsets, W.shape)
    tables = _hinge_tables(W, data, delta)
    out = np.empty(rows.shape[0], dtype=np.float64)
    _hinge_deltas_kernel(
        data.XT,
        data.y,
        tables.margins,
        tables.margins_t,
        tables.own_slope,
        tables.own_radius,
        np.ascontiguousarray(W, dtype=np.float64),
        reg,
        rows,
        cols,
        offsets,
        out,
    )
    return out


def svm_kink_flags(W, data, rows, cols, steps, delta=1.0):
    """Whether a hinge kink lies within ``steps[k]`` of ``W`` along ``(rows[k], cols[k])``.

    Flag ``k`` is True when a margin moved by ``W[rows[k], cols[k]]`` (through an ``X[i, d] != 0``)
    reaches 0 for some perturbation ``|t| <= steps[k]``: ``|margin| <= steps[k] * |X[i, d]|``,
    which includes a margin exactly 0 at ``W``. Same definition as
    :func:`fastfd.kernels.reference.svm_kink_flags`, margins computed in float64.

    Parameters
    ----------
    W : ndarray, shape (D, C)
    data : LinearData
    rows, cols : ndarray of int, shape (K,)
    steps : ndarray of float, shape (K,)
        Finite, ``>= 0``.
    delta : float, default 1.0

    Returns
    -------
    ndarray of bool, shape (K,)

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.kernels import prepare_data
    >>> X, y, W = np.array([[1.0, 2.0]]), np.array([0]), np.zeros((2, 2))
    >>> svm_kink_flags(W, prepare_data(X, y), [0, 1, 1], [1, 1, 1], [1.0, 0.5, 0.4])
    array([ True,  True, False])
    """
    W, _, _ = check_data(W, data, 0.0)
    delta = _check_delta(delta)
    rows, cols, steps = check_perturbations(rows, cols, steps, W.shape, offsets_name="steps")
    flags = np.empty(rows.shape[0], dtype=np.bool_)
    _hinge_kink_kernel(data.XT, _hinge_tables(W, data, delta).kink_radius, rows, cols, steps, flags)
    return flags
