"""Plan perturbations: which (coordinate, offset) pairs to evaluate, and in what chunks."""

from __future__ import annotations

import numpy as np

from ._combine import LADDER_LEVELS, LADDER_RATIO
from ._stencils import Stencil
from ._steps import actual_steps


def stencil_plan(coords: np.ndarray, steps: np.ndarray, stencil: Stencil):
    """All perturbations of one stencil pass: row ``j`` of the result is offset ``j``.

    Returns flat ``(coords, offsets)`` of length ``n_offsets * len(coords)``; reshape the
    evaluator's answer to ``(n_offsets, len(coords))``.
    """
    multiples = [o for o, _ in stencil.perturbed]
    return (
        np.tile(coords, len(multiples)),
        np.concatenate([o * steps for o in multiples]),
    )


def ladder_plan(coords: np.ndarray, x_at: np.ndarray, nominal: np.ndarray,
                levels: int = LADDER_LEVELS, ratio: float = LADDER_RATIO):
    """Central perturbations on the step ladder ``h, h/ratio, ...`` for suspects.

    Returns ``(coords, offsets, steps_plus, steps_minus)``; the evaluator's answer reshapes to
    ``(levels, 2, len(coords))`` (``+h`` then ``-h`` at each level). ``steps_*`` are the steps
    actually taken after rounding to the dtype of ``x``, shape ``(levels, len(coords))``.
    """
    nominal = nominal / ratio ** np.arange(levels)[:, None]
    steps_plus = actual_steps(x_at, nominal)
    steps_minus = -actual_steps(x_at, -nominal)
    offsets = np.stack([steps_plus, -steps_minus], axis=1).reshape(-1)
    return np.tile(coords, 2 * levels), offsets, steps_plus, steps_minus


def chunk_slices(n: int, chunk: int):
    """Consecutive slices of at most ``chunk`` items covering ``range(n)``."""
    return [slice(i, min(n, i + chunk)) for i in range(0, n, chunk)]
