"""Plain-numpy linear-classifier losses: the test oracle and the benchmark baseline.

Conventions (cs231n): ``W`` is (D, C), ``X`` is (N, D), ``y`` is (N,) integer labels in
``[0, C)``, ``scores = X @ W``, loss = mean data loss + ``reg * sum(W * W)``, whose gradient adds
``2 * reg * W``.

- Softmax: ``loss_i = logsumexp(scores_i) - scores_i[y_i]``, max-shifted so large scores cannot
  overflow ``exp``.
- Multiclass SVM: ``margins_ij = scores_ij - scores_i[y_i] + delta`` for ``j != y_i`` and
  ``loss_i = sum_{j != y_i} max(0, margins_ij)``. At a margin of exactly 0 the hinge has no
  derivative; the gradient counts a margin only when ``margin > 0`` (the cs231n vectorized
  convention), so a tie contributes nothing.

The loss and gradient functions are the standard vectorized numpy a cs231n student writes, no loop
over examples; fastfd's numba kernels are benchmarked against them. The ``*_perturbed_deltas``
functions are deliberately brute force (one full loss per coordinate) and inherit the cancellation
of ``loss(W + h) - loss(W)``: they are oracles for small problems, not fast paths. Nothing here
validates its input; see :mod:`fastfd.kernels.softmax` and :mod:`fastfd.kernels.svm` for that.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "softmax_grad",
    "softmax_loss",
    "softmax_loss_and_grad",
    "softmax_perturbed_deltas",
    "svm_grad",
    "svm_kink_flags",
    "svm_loss",
    "svm_loss_and_grad",
    "svm_perturbed_deltas",
]


def softmax_loss_and_grad(W, X, y, reg):
    """Softmax (cross-entropy) loss and its gradient with respect to ``W``.

    Examples
    --------
    >>> import numpy as np
    >>> W, X, y = np.zeros((2, 3)), np.ones((4, 2)), np.array([0, 1, 2, 0])
    >>> loss, dW = softmax_loss_and_grad(W, X, y, 0.0)
    >>> bool(np.isclose(loss, np.log(3))), dW.shape  # all scores equal: log(C)
    (True, (2, 3))
    """
    n_examples = X.shape[0]
    examples = np.arange(n_examples)
    scores = X @ W
    scores -= scores.max(axis=1, keepdims=True)
    exp_scores = np.exp(scores)
    sums = exp_scores.sum(axis=1)
    data_loss = np.sum(np.log(sums)) - np.sum(scores[examples, y])
    loss = data_loss / n_examples + reg * np.sum(W * W)
    dscores = exp_scores / sums[:, None]
    dscores[examples, y] -= 1
    dscores /= n_examples
    dW = X.T @ dscores + 2 * reg * W
    return float(loss), dW


def softmax_loss(W, X, y, reg):
    """Softmax loss only."""
    return softmax_loss_and_grad(W, X, y, reg)[0]


def softmax_grad(W, X, y, reg):
    """Gradient of the softmax loss with respect to ``W``."""
    return softmax_loss_and_grad(W, X, y, reg)[1]


def svm_loss_and_grad(W, X, y, reg, delta=1.0):
    """Multiclass SVM (hinge) loss and its gradient (``margin > 0`` counts, see module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> W, X, y = np.zeros((2, 3)), np.ones((4, 2)), np.array([0, 1, 2, 0])
    >>> loss, dW = svm_loss_and_grad(W, X, y, 0.0)
    >>> loss  # every margin is delta = 1, two wrong classes per example
    2.0
    """
    n_examples = X.shape[0]
    examples = np.arange(n_examples)
    scores = X @ W
    correct_scores = scores[examples, y]
    margins = np.maximum(0, scores - correct_scores[:, None] + delta)
    margins[examples, y] = 0
    loss = np.sum(margins) / n_examples + reg * np.sum(W * W)
    counts = (margins > 0).astype(scores.dtype)
    counts[examples, y] = -np.sum(counts, axis=1)
    dW = X.T @ counts / n_examples + 2 * reg * W
    return float(loss), dW


def svm_loss(W, X, y, reg, delta=1.0):
    """Multiclass SVM loss only."""
    return svm_loss_and_grad(W, X, y, reg, delta)[0]


def svm_grad(W, X, y, reg, delta=1.0):
    """Gradient of the multiclass SVM loss with respect to ``W``."""
    return svm_loss_and_grad(W, X, y, reg, delta)[1]


def _brute_force_deltas(loss, W, rows, cols, offsets):
    """``loss(Wp) - loss(W)`` with ``Wp[rows[k], cols[k]] = W[rows[k], cols[k]] + offsets[k]``."""
    base = loss(W)
    deltas = np.empty(len(rows), dtype=np.float64)
    for k in range(len(rows)):
        perturbed = W.copy()
        perturbed[rows[k], cols[k]] = W[rows[k], cols[k]] + offsets[k]
        deltas[k] = loss(perturbed) - base
    return deltas


def softmax_perturbed_deltas(W, X, y, reg, rows, cols, offsets):
    """Brute-force ``softmax_loss(W + offsets[k] e_(rows[k], cols[k])) - softmax_loss(W)``.

    The perturbed entry is rounded to ``W``'s dtype, as an in-place write would be.
    """
    return _brute_force_deltas(lambda V: softmax_loss(V, X, y, reg), W, rows, cols, offsets)


def svm_perturbed_deltas(W, X, y, reg, rows, cols, offsets, delta=1.0):
    """Brute-force ``svm_loss(W + offsets[k] e_(rows[k], cols[k])) - svm_loss(W)``."""
    return _brute_force_deltas(lambda V: svm_loss(V, X, y, reg, delta), W, rows, cols, offsets)


def svm_kink_flags(W, X, y, rows, cols, steps, delta=1.0):
    """Whether a hinge kink lies within ``steps[k]`` of ``W`` along ``(rows[k], cols[k])``.

    Moving ``W[d, c]`` by ``t`` moves margin ``(i, c)`` by ``t * X[i, d]`` for examples with
    ``y_i != c``, and every margin ``(i, j != c)`` by ``-t * X[i, d]`` for examples with
    ``y_i == c``. Flag ``k`` is True when one of those margins with ``X[i, d] != 0`` reaches 0 for
    some ``|t| <= steps[k]``, i.e. ``|margin| <= steps[k] * |X[i, d]|`` (a margin exactly 0 at
    ``W`` included). Margins with ``X[i, d] == 0`` do not move and cannot kink.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0]])
    >>> W = np.zeros((2, 2))  # both scores 0, the one margin is delta = 1
    >>> svm_kink_flags(W, X, np.array([0]), np.array([0, 1, 1]), np.array([1, 1, 1]),
    ...                np.array([1.0, 0.5, 0.4]))  # margin 1 moves by t * 1, t * 2, t * 2
    array([ True,  True, False])
    """
    n_examples = X.shape[0]
    examples = np.arange(n_examples)
    scores = X @ W
    margins = scores - scores[examples, y][:, None] + delta
    margins[examples, y] = np.inf  # the correct class has no hinge
    flags = np.zeros(len(rows), dtype=bool)
    for k in range(len(rows)):
        d, c = rows[k], cols[k]
        feature = X[:, d]
        reach = steps[k] * np.abs(feature)
        moving = feature != 0
        others = (y != c) & moving & (np.abs(margins[:, c]) <= reach)
        own = ((y == c) & moving)[:, None] & (np.abs(margins) <= reach[:, None])
        flags[k] = others.any() or own.any()
    return flags
