"""Plan perturbations: which (coordinate, offset) pairs to evaluate, and in what chunks."""

from __future__ import annotations

import numpy as np

from ._stencils import Stencil
from ._steps import actual_steps


def stencil_plan(coords: np.ndarray, steps: np.ndarray, stencil: Stencil):
    """All perturbations of one stencil pass: row ``j`` of the result is perturbed node ``j``.

    Returns flat ``(coords, offsets)`` of length ``n_nodes * len(coords)`` (nominal offsets);
    reshape the evaluator's answer to ``(n_nodes, len(coords))``.
    """
    nodes = stencil.perturbed
    return np.tile(coords, len(nodes)), np.concatenate([o * steps for o in nodes])


def level_plan(coords: np.ndarray, x_at: np.ndarray, nominal: np.ndarray):
    """The central pair ``x +- h`` of one ladder level per coordinate, rounded to ``x``'s dtype.

    Returns ``(coords, offsets, step_plus, step_minus)``: the first half of the flat plan is
    ``+h``, the second ``-h``; the steps are the positive moves really taken.
    """
    step_plus = actual_steps(x_at, nominal)
    step_minus = -actual_steps(x_at, -nominal)
    return np.tile(coords, 2), np.concatenate([step_plus, -step_minus]), step_plus, step_minus


def pair_directions(size: int, first: np.ndarray, second: np.ndarray, step_first: np.ndarray,
                    step_second: np.ndarray):
    """Sparse directions ``h_i e_i + h_j e_j`` for pairs of coordinates, one at a time, with
    the slice of ``x`` they touch (so evaluating one moves O(j - i) entries, not O(P))."""
    for i, j, hi, hj in zip(first.tolist(), second.tolist(), step_first.tolist(),
                            step_second.tolist()):
        v = np.zeros(size)
        v[i], v[j] = hi, hj
        yield v, slice(min(i, j), max(i, j) + 1)


def chunk_slices(n: int, chunk: int):
    """Consecutive slices of at most ``chunk`` items covering ``range(n)``."""
    return [slice(i, min(n, i + chunk)) for i in range(0, n, chunk)]
