"""Input validation and the per-dataset arrays shared by the linear-classifier kernels.

:func:`check_inputs` is the one validator every public kernel wrapper calls, so the ``@njit``
kernels behind them can assume valid input (an out-of-range label or index would read out of
bounds there).
:class:`LinearData` holds what depends only on ``(X, y)``, computed once by :func:`prepare_data` and
reused by every perturbed-loss call.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "LinearData",
    "check_data",
    "check_finite_result",
    "check_inputs",
    "check_perturbations",
    "prepare_data",
]

_FLOAT_DTYPES = (np.float32, np.float64)


class LinearData(NamedTuple):
    """Arrays that depend only on the data ``(X, y)``; build it with :func:`prepare_data`.

    Attributes
    ----------
    X : ndarray, shape (N, D)
        The examples, C-contiguous, float32 or float64 (as given).
    y : ndarray, shape (N,), int64
        Labels in ``[0, n_classes)``.
    n_classes : int
        Number of classes ``C`` (at least 2).
    XT : ndarray, shape (D, N)
        C-contiguous copy of ``X.T``: feature ``d`` of every example is one contiguous row, the
        inner loop of the perturbed-loss kernels.
    class_sums : ndarray, shape (D, C), float64
        ``X.T @ onehot(y)``: the sum of feature ``d`` over the examples of class ``c``.
    col_absmax : ndarray, shape (D,), float64
        ``max_i |X[i, d]|``: bounds the score change ``h * X[i, d]`` of a step ``h`` on row ``d``.
    """

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    XT: np.ndarray
    class_sums: np.ndarray
    col_absmax: np.ndarray


def _dtype_name(array) -> str:
    return str(getattr(array, "dtype", type(array).__name__))


def _check_float_matrix(name: str, array, shape_hint: str) -> np.ndarray:
    """``array`` as a 2-D float32/float64 ndarray, or a TypeError/ValueError naming ``name``."""
    array = np.asarray(array)
    if array.dtype.type not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 array; got dtype {_dtype_name(array)} "
            f"(cast it, e.g. {name}.astype(np.float64))"
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape {shape_hint}; got {array.ndim}-D shape {array.shape}"
        )
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    """ValueError naming the first NaN/Inf entry of ``array``, if any."""
    if not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        where = ", ".join(map(str, index))
        raise ValueError(f"{name} must be finite; got {name}[{where}] = {array[index]}")


def check_finite_result(loss: float, W: np.ndarray, X: np.ndarray) -> None:
    """After a loss came out NaN/Inf, raise ValueError if a NaN/Inf in ``X`` or ``W`` caused it.

    Checked after the computation, not before: scanning ``X`` costs about a fifth of the loss and
    gradient, and a NaN/Inf entry of ``X`` or ``W`` (almost) always makes the loss non-finite. A
    non-finite loss from finite inputs (overflowing scores) is returned as it is.
    """
    if not np.isfinite(loss):
        _check_finite("X", X)
        _check_finite("W", W)


def _check_labels(y, n_examples: int) -> np.ndarray:
    """``y`` as a 1-D integer ndarray of length ``n_examples`` (labels not checked yet)."""
    y = np.asarray(y)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"y must be an array of integer class labels; got dtype {_dtype_name(y)} "
            "(bool is not allowed: pass y.astype(np.int64) if you mean classes 0 and 1)"
        )
    if y.shape != (n_examples,):
        raise ValueError(
            f"y must have shape (N,) = ({n_examples},) to match X with N = {n_examples} rows; "
            f"got shape {y.shape}"
        )
    return y


def _check_label_range(y: np.ndarray, n_classes: int, what: str) -> None:
    """ValueError naming the first label outside ``[0, n_classes)``; ``what`` says why C."""
    lowest, highest = int(y.min()), int(y.max())
    if lowest < 0 or highest >= n_classes:
        bad = int(np.flatnonzero((y < 0) | (y >= n_classes))[0])
        raise ValueError(
            f"y must hold labels in [0, {n_classes}) for {what}; got y[{bad}] = {int(y[bad])} "
            f"(labels range from {lowest} to {highest})"
        )


def _check_reg(reg) -> float:
    if isinstance(reg, (bool, np.bool_)) or not isinstance(reg, numbers.Real):
        raise TypeError(f"reg must be a real number >= 0; got {type(reg).__name__} {reg!r}")
    reg = float(reg)
    if not (np.isfinite(reg) and reg >= 0.0):
        raise ValueError(f"reg must be a finite number >= 0; got {reg!r}")
    return reg


def check_inputs(W, X, y, reg):
    """Validate the arguments of a linear-classifier loss and return them as arrays.

    Checks structure, not values: shapes, dtypes, labels and ``reg``. NaN/Inf entries are found
    by :func:`check_finite_result` after the loss (a scan of ``X`` before it would cost more than
    the loss's own non-BLAS work) or once per dataset by :func:`prepare_data`.

    Parameters
    ----------
    W : array_like, shape (D, C)
        Weights, float32 or float64, with ``C >= 2``.
    X : array_like, shape (N, D)
        Examples, same dtype as ``W``, ``N >= 1``.
    y : array_like, shape (N,)
        Integer labels (not bool) in ``[0, C)``.
    reg : float
        L2 regularization strength, finite and ``>= 0``.

    Returns
    -------
    W, X, y : ndarray
        The inputs as ndarrays (no copies when they already are).
    reg : float

    Raises
    ------
    TypeError
        Non-float ``W``/``X``, ``X`` and ``W`` of different dtypes, non-integer or bool ``y``,
        non-numeric ``reg``.
    ValueError
        Wrong shapes, an empty ``X``, labels outside ``[0, C)``, negative or non-finite ``reg``.
    """
    X = _check_float_matrix("X", X, "(N, D)")
    W = _check_float_matrix("W", W, "(D, C)")
    n_examples, n_features = X.shape
    if n_examples < 1 or n_features < 1:
        raise ValueError(f"X must have at least one row and one column; got shape {X.shape}")
    if W.shape[0] != n_features:
        raise ValueError(
            f"W must have shape (D, C) = ({n_features}, C) to match X of shape {X.shape}; "
            f"got {W.shape}"
        )
    if W.shape[1] < 2:
        raise ValueError(f"W must have at least 2 columns (classes); got shape {W.shape}")
    if X.dtype != W.dtype:
        raise TypeError(
            f"X and W must have the same dtype; got X {X.dtype} and W {W.dtype} "
            f"(cast one, e.g. X.astype(np.{W.dtype}))"
        )
    y = _check_labels(y, n_examples)
    _check_label_range(y, W.shape[1], f"W with C = {W.shape[1]} columns")
    return W, X, y, _check_reg(reg)


def check_perturbations(rows, cols, offsets, shape, offsets_name="offsets"):
    """Validate coordinates ``(rows[k], cols[k])`` of a ``shape`` matrix and per-coordinate values.

    ``offsets`` must be finite; when ``offsets_name`` is ``"steps"`` they must also be ``>= 0``.
    Returns ``rows, cols`` as int64 and ``offsets`` as float64 contiguous arrays of equal length.
    """
    n_rows, n_cols = shape
    arrays = {}
    for name, index, bound in (("rows", rows, n_rows), ("cols", cols, n_cols)):
        index = np.asarray(index)
        if index.dtype == np.bool_ or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array; got dtype {_dtype_name(index)}")
        if index.ndim != 1:
            raise ValueError(f"{name} must be 1-D; got shape {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= bound):
            bad = int(np.flatnonzero((index < 0) | (index >= bound))[0])
            raise ValueError(
                f"{name} must hold indices in [0, {bound}) for W of shape {tuple(shape)}; "
                f"got {name}[{bad}] = {int(index[bad])}"
            )
        arrays[name] = np.ascontiguousarray(index, dtype=np.int64)
    values = np.asarray(offsets)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise TypeError(f"{offsets_name} must be a real array; got dtype {_dtype_name(values)}")
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{offsets_name} must be 1-D; got shape {values.shape}")
    n_coords = arrays["rows"].shape[0]
    if arrays["cols"].shape[0] != n_coords or values.shape[0] != n_coords:
        raise ValueError(
            f"rows, cols and {offsets_name} must have the same length K; got "
            f"{n_coords}, {arrays['cols'].shape[0]} and {values.shape[0]}"
        )
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"{offsets_name} must be finite; got {offsets_name}[{bad}] = {values[bad]}"
        )
    if offsets_name == "steps" and n_coords and values.min() < 0:
        bad = int(np.flatnonzero(values < 0)[0])
        raise ValueError(f"steps must be >= 0; got steps[{bad}] = {values[bad]}")
    return arrays["rows"], arrays["cols"], values


def check_data(W, data, reg):
    """Validate ``W`` and ``reg`` against a :class:`LinearData`; return ``W``, ``reg``, class sums.

    ``W`` must be finite. It fixes the number of classes: it may have more columns than
    ``data.n_classes`` (classes without examples), whose class sums are zero.
    """
    # compared by fields, not class: a reloaded or twice-imported module (``kernels.*`` collected
    # by path next to ``fastfd.kernels.*``) defines an equal but distinct LinearData class
    if getattr(data, "_fields", None) != LinearData._fields:
        raise TypeError(
            f"data must be a LinearData from prepare_data(X, y); got {type(data).__name__}"
        )
    W, _, _, reg = check_inputs(W, data.X, data.y, reg)
    _check_finite("W", W)
    class_sums = data.class_sums
    n_missing = W.shape[1] - class_sums.shape[1]
    if n_missing > 0:
        class_sums = np.hstack([class_sums, np.zeros((class_sums.shape[0], n_missing))])
    return W, reg, class_sums


def prepare_data(X, y, n_classes=None) -> LinearData:
    """Validate ``(X, y)`` once and precompute the arrays the perturbed-loss kernels reuse.

    Parameters
    ----------
    X : array_like, shape (N, D)
        float32 or float64 examples, all finite, ``N >= 1``.
    y : array_like, shape (N,)
        Integer labels (not bool) in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes ``C >= 2``; default ``max(y) + 1`` but at least 2. A ``W`` with more
        columns is accepted later (extra classes without examples).

    Returns
    -------
    LinearData

    Raises
    ------
    TypeError
        Non-float ``X``, non-integer or bool ``y``, non-integer ``n_classes``.
    ValueError
        Wrong shapes, empty ``X``, NaN/Inf in ``X``, labels outside ``[0, n_classes)``,
        ``n_classes < 2``.

    Examples
    --------
    >>> import numpy as np
    >>> data = prepare_data(np.array([[1.0, 2.0], [3.0, -4.0]]), np.array([0, 1]))
    >>> data.n_classes, data.XT.shape
    (2, (2, 2))
    >>> data.class_sums
    array([[ 1.,  3.],
           [ 2., -4.]])
    """
    X = _check_float_matrix("X", X, "(N, D)")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least one row and one column; got shape {X.shape}")
    _check_finite("X", X)
    y = _check_labels(y, X.shape[0])
    if n_classes is None:
        n_classes = max(int(y.max()) + 1, 2)
        if y.min() < 0:
            _check_label_range(y, n_classes, "labels counted from 0")
    else:
        if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, numbers.Integral):
            raise TypeError(
                f"n_classes must be an integer >= 2 or None; got {type(n_classes).__name__}"
            )
        n_classes = int(n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2; got {n_classes}")
        _check_label_range(y, n_classes, f"n_classes = {n_classes}")
    # private read-only copies: a caller reusing X as a buffer must not desynchronize the
    # cached tables below from the data the losses read
    X = np.array(X, order="C", copy=True)
    y = np.array(y, dtype=np.int64, copy=True)
    X.setflags(write=False)
    y.setflags(write=False)
    XT = np.ascontiguousarray(X.T)
    onehot = np.zeros((X.shape[0], n_classes))
    onehot[np.arange(X.shape[0]), y] = 1.0
    class_sums = XT.astype(np.float64, copy=False) @ onehot
    col_absmax = np.abs(X).max(axis=0).astype(np.float64)
    return LinearData(X, y, n_classes, XT, class_sums, col_absmax)
