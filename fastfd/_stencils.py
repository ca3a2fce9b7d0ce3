"""Finite-difference stencils as frozen data.

A stencil estimates ``f'(x) ~= sum_k weights[k] * f(x + offsets[k] * h) / h``.
Adding a method means adding an instance here, not a branch in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stencil:
    """Offsets (in units of the step) and weights of a first-derivative formula.

    Parameters
    ----------
    name : str
        Public method name (``"central"`` ...).
    offsets : tuple of float
        Multiples of the step ``h`` at which ``f`` is evaluated; ``0`` means ``f(x)``.
    weights : tuple of float
        Weights of the ``f`` values; they sum to zero.
    order : int
        Order of the truncation error, ``O(h**order)``.
    """

    name: str
    offsets: tuple[float, ...]
    weights: tuple[float, ...]
    order: int

    @property
    def step_exponent(self) -> float:
        """Exponent ``p`` of the default step ``EPS**p``: balances truncation against rounding."""
        return 1.0 / (self.order + 1)

    @property
    def perturbed(self) -> tuple[tuple[float, float], ...]:
        """(offset, weight) pairs that need an evaluation away from ``x``."""
        return tuple((o, w) for o, w in zip(self.offsets, self.weights) if o != 0)

    @property
    def base_weight(self) -> float:
        """Weight of ``f(x)`` (zero for symmetric stencils)."""
        return sum(w for o, w in zip(self.offsets, self.weights) if o == 0)


STENCILS: dict[str, Stencil] = {
    s.name: s
    for s in (
        Stencil("forward", (0.0, 1.0), (-1.0, 1.0), 1),
        Stencil("backward", (-1.0, 0.0), (-1.0, 1.0), 1),
        Stencil("central", (-1.0, 1.0), (-0.5, 0.5), 2),
        Stencil("central4", (-2.0, -1.0, 1.0, 2.0), (1 / 12, -8 / 12, 8 / 12, -1 / 12), 4),
    )
}


def get_stencil(method: str) -> Stencil:
    """Return the stencil called ``method`` or raise a ValueError listing the valid names."""
    try:
        return STENCILS[method]
    except (KeyError, TypeError):
        valid = ", ".join(repr(m) for m in STENCILS)
        raise ValueError(f"method must be one of {valid}; got {method!r}") from None


def apply_stencil(stencil: Stencil, deltas: np.ndarray, steps: np.ndarray,
                  moves: np.ndarray | None = None) -> np.ndarray:
    """Combine ``deltas[j, k] = f(x + moves[j, k] e_k) - f(x)`` into derivatives.

    ``deltas`` has one row per perturbed offset of the stencil (in ``stencil.perturbed`` order);
    ``moves`` are the displacements really taken (``offset_j * steps`` before rounding).
    Because the weights sum to zero, ``f(x)`` cancels and only differences are needed.
    Two-point stencils divide by the displacements really taken, which rounding can make
    asymmetric; longer stencils use the nominal weights (a relative error of about
    ``ulp(x) / h``).
    """
    nodes = [o for o, _ in stencil.perturbed]
    if moves is not None and len(nodes) == 1:
        return deltas[0] / moves[0]
    if moves is not None and nodes == [-1.0, 1.0]:
        return (deltas[1] - deltas[0]) / (moves[1] - moves[0])
    weights = np.array([w for _, w in stencil.perturbed])
    return weights @ deltas / steps
