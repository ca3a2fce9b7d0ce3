"""Sparsity patterns and column groups: a banded Jacobian costs a handful of evaluations.

Columns that share no row can be perturbed together: each row of ``f(x + sum_G h_j e_j)``
then moves with the one column of the group that row depends on (Curtis, Powell & Reid,
"On the estimation of sparse Jacobian matrices", 1974). Groups come from a greedy coloring
of the column intersection graph, columns taken in order of decreasing count of entries.
"""

from __future__ import annotations

import numpy as np


def pattern(sparsity, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of the structural entries of ``sparsity`` (a boolean matrix, or a scipy
    sparse matrix whose stored entries are the pattern), checked against ``shape``."""
    if hasattr(sparsity, "tocoo") and not isinstance(sparsity, np.ndarray):
        coo = sparsity.tocoo()
        got = tuple(coo.shape)
        rows, cols = np.asarray(coo.row, dtype=np.int64), np.asarray(coo.col, dtype=np.int64)
        keep = np.asarray(coo.data) != 0
        rows, cols = rows[keep], cols[keep]
    else:
        dense = np.asarray(sparsity)
        if dense.ndim != 2:
            raise ValueError(f"sparsity must be a 2-d boolean matrix (or scipy sparse) of shape "
                             f"{shape}; got an array of shape {dense.shape}")
        if dense.dtype.kind not in "biuf":
            raise TypeError(f"sparsity must be boolean (or 0/1); got dtype {dense.dtype}")
        got = dense.shape
        rows, cols = np.nonzero(dense)
    if got != tuple(shape):
        raise ValueError(f"sparsity has shape {got}, but the Jacobian is {shape} (outputs x "
                         "params, params flattened in order)")
    order = np.lexsort((rows, cols))  # by column, then row
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def group_columns(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A group number per column such that no two columns of a group share a row.

    Greedy: columns with more entries first, each into the lowest group whose rows it does
    not touch. Columns without entries go to group 0 (they need no evaluation of their own,
    but sit in a group so that their zero column is measured too).

    Examples
    --------
    >>> import numpy as np
    >>> band = np.eye(6, dtype=bool) | np.eye(6, k=1, dtype=bool) | np.eye(6, k=-1, dtype=bool)
    >>> r, c = np.nonzero(band.T)  # column-major order
    >>> group_columns(c, r, (6, 6)).tolist()
    [2, 0, 1, 2, 0, 1]
    """
    m, n = shape
    starts = np.searchsorted(cols, np.arange(n + 1))
    counts = np.diff(starts)
    group = np.zeros(n, dtype=np.int64)
    taken: list[np.ndarray] = []  # rows used by each group
    for j in np.argsort(-counts, kind="stable"):
        mine = rows[starts[j]:starts[j + 1]]
        for g, used in enumerate(taken):
            if not used[mine].any():
                used[mine] = True
                group[j] = g
                break
        else:
            used = np.zeros(m, dtype=bool)
            used[mine] = True
            taken.append(used)
            group[j] = len(taken) - 1
    return group
