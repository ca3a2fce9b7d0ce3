"""Linear classifiers with exact, incremental perturbed losses: the fast path for linear models.

Perturbing one weight ``W[d, c]`` by ``h`` changes only score column ``c``, by ``h * X[:, d]``,
so the loss at the perturbed point follows exactly from cached scores in O(N) instead of the
O(N * D * C) of a fresh evaluation, and in delta form (no subtraction of two full losses), so
a smaller step is usable. Every engine feature (sampling, directions, kinks, reports) works on
these models unchanged because they bring their own :class:`~fastfd.executors.Evaluator`.

Examples
--------
>>> import numpy as np, fastfd
>>> rng = np.random.default_rng(0)
>>> X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
>>> model = fastfd.models.LinearSoftmax(X, y, reg=0.1)
>>> W = 0.01 * rng.standard_normal((6, 3))
>>> fastfd.check_gradient(model, model.grad, W).verdict
'pass'
"""

from __future__ import annotations

import numpy as np

from ._stencils import Stencil
from .executors import Evaluator
from .kernels import _data, softmax, svm

__all__ = ["LinearSVM", "LinearSoftmax"]

# Rounding of the delta form: each term of the O(N) sum carries a few ulps of its own size,
# bounded by |h| * mean_i |X[i, d]| (probabilities and hinge slopes are at most 1).
_TERM_ULPS = 16.0


class _LinearModel:
    """Shared machinery: data validated once, loss/grad via the Numba kernels."""

    param_name = "W"  # entries are reported as W[d, c]

    def __init__(self, X, y, reg: float = 0.0, n_classes: int | None = None):
        self._data = _data.prepare_data(X, y, n_classes)
        self.reg = _data._check_reg(reg)
        self._col_absmean = np.abs(self._data.X).mean(axis=0).astype(np.float64)

    @property
    def X(self) -> np.ndarray:
        return self._data.X

    @property
    def y(self) -> np.ndarray:
        return self._data.y

    def __call__(self, W) -> float:
        """The loss at ``W`` (shape (D, C))."""
        return self.loss(W)

    def loss(self, W) -> float:
        """The loss at ``W``: mean data loss + ``reg * sum(W * W)``."""
        raise NotImplementedError

    def grad(self, W) -> np.ndarray:
        """Analytic gradient with respect to ``W``."""
        return self.loss_and_grad(W)[1]

    def loss_and_grad(self, W) -> tuple[float, np.ndarray]:
        """Loss and analytic gradient in one pass."""
        raise NotImplementedError

    def _deltas(self, W, rows, cols, offsets) -> np.ndarray:
        raise NotImplementedError

    def _kink_flags(self, W, rows, cols, steps) -> np.ndarray:
        return np.zeros(len(rows), dtype=bool)

    def fastfd_evaluator(self) -> Evaluator:
        """The exact incremental evaluator the engine uses for this model."""
        return _LinearEvaluator(self)


class LinearSoftmax(_LinearModel):
    """Softmax (cross-entropy) loss of a linear classifier, cs231n convention.

    ``loss(W) = mean_i [logsumexp(X_i W) - (X_i W)_{y_i}] + reg * sum(W * W)``.

    Parameters
    ----------
    X : ndarray, shape (N, D)
        Examples (float32 or float64); include a ones column for a bias.
    y : ndarray, shape (N,)
        Integer labels in ``[0, C)``.
    reg : float
        L2 regularization strength.
    n_classes : int, optional
        Number of classes ``C``; default ``max(y) + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.models import LinearSoftmax
    >>> X, y = np.eye(3), np.array([0, 1, 2])
    >>> m = LinearSoftmax(X, y, reg=0.0)
    >>> round(m(np.zeros((3, 3))), 6)  # log(3): all classes equally likely
    1.098612
    >>> m.grad(np.zeros((3, 3))).shape
    (3, 3)
    """

    def loss(self, W):
        return softmax.softmax_loss(W, self._data.X, self._data.y, self.reg)

    def loss_and_grad(self, W):
        return softmax.softmax_loss_and_grad(W, self._data.X, self._data.y, self.reg)

    def _deltas(self, W, rows, cols, offsets):
        return softmax.softmax_perturbed_deltas(W, self._data, self.reg, rows, cols, offsets)


class LinearSVM(_LinearModel):
    """Multiclass hinge (SVM) loss of a linear classifier, cs231n convention.

    ``loss(W) = mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + delta) + reg * sum(W * W)``
    with ``s = X W``. The hinge has kinks; the model reports exactly which coordinates have
    a margin crossing zero within the step, and the check lists them in ``kinks``.

    Parameters
    ----------
    X, y, reg, n_classes
        As in :class:`LinearSoftmax`.
    delta : float
        Margin (default 1.0).

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> X, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    >>> m = fastfd.models.LinearSVM(X, y, reg=0.0)
    >>> m(np.zeros((2, 2)))  # every margin is delta = 1
    1.0
    >>> fastfd.check_gradient(m, m.grad, np.array([[0.3, -0.2], [0.1, 0.4]])).verdict
    'pass'
    """

    def __init__(self, X, y, reg: float = 0.0, delta: float = 1.0, n_classes: int | None = None):
        super().__init__(X, y, reg, n_classes)
        self.delta = svm._check_delta(delta)

    def loss(self, W):
        return svm.svm_loss(W, self._data.X, self._data.y, self.reg, delta=self.delta)

    def loss_and_grad(self, W):
        return svm.svm_loss_and_grad(W, self._data.X, self._data.y, self.reg, delta=self.delta)

    def _deltas(self, W, rows, cols, offsets):
        return svm.svm_perturbed_deltas(W, self._data, self.reg, rows, cols, offsets,
                                        delta=self.delta)

    def _kink_flags(self, W, rows, cols, steps):
        return svm.svm_kink_flags(W, self._data, rows, cols, steps, delta=self.delta)


class _LinearEvaluator(Evaluator):
    """Perturbed losses of a linear model from cached scores, exact and O(N) per coordinate."""

    full_cost_per_eval = False

    def __init__(self, model: _LinearModel):
        self.model = model

    def bind(self, f, layout):
        n_features = self.model.X.shape[1]
        shape = layout.shapes[0]
        if layout.kind != "array" or len(shape) != 2 or shape[0] != n_features:
            raise ValueError(
                f"{type(self.model).__name__} takes W as one array of shape (D, C) = "
                f"({n_features}, C); got params of kind {layout.kind} with shapes {layout.shapes}"
            )
        return super().bind(f, layout)

    def _split(self, x, coords):
        W = x.reshape(self.layout.shapes[0])
        rows, cols = np.divmod(np.asarray(coords, dtype=np.int64), W.shape[1])
        return W, rows, cols

    def value(self, x):
        return self.model(x.reshape(self.layout.shapes[0]))

    def perturbed_values(self, x, coords, offsets):
        return self.perturbed_deltas(x, coords, offsets, 0.0) + float(self.value(x))

    def perturbed_deltas(self, x, coords, offsets, f0):
        W, rows, cols = self._split(x, coords)
        out = self.model._deltas(W, rows, cols, offsets)
        if self.progress is not None:
            self.progress(len(coords))
        return out

    def kink_flags(self, x, coords, steps):
        W, rows, cols = self._split(x, coords)
        return self.model._kink_flags(W, rows, cols, np.abs(steps))

    def default_steps(self, x, stencil: Stencil):
        # no cancellation in the delta form, so a step far below EPS**(1/3) is usable and
        # shrinks the truncation error: EPS**(1/2) whatever the stencil
        eps = float(np.finfo(x.dtype).eps)
        return np.sqrt(eps) * np.maximum(1.0, np.abs(x.astype(np.float64)))

    exact_deltas = True

    def delta_noise(self, deltas, coords, offsets, eps):
        # eps is that of the params' dtype: float32 weights carry float32 rounding into any
        # analytic gradient computed from them, so the floor cannot be float64's
        rows = np.asarray(coords) // self.layout.shapes[0][1]
        scale = np.abs(offsets) * self.model._col_absmean[rows]
        return _TERM_ULPS * eps * (np.abs(deltas) + scale)
