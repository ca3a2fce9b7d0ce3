"""Differences of f-values -> derivative estimates: one-sided pairs, central, Richardson."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The rounding floor of a quotient is NOISE_MULTIPLE times the rounding error expected in the
# f-values it combines, divided by the step: a small multiple, so a loss summing many terms
# (whose error grows with their number) is not mistaken for a wrong gradient.
NOISE_MULTIPLE = 4.0

LADDER_RATIO = 4.0
LADDER_LEVELS = 4


@dataclass(frozen=True)
class Quotients:
    """Difference quotients at one step level, for many probes (arrays of equal length).

    ``forward`` and ``backward`` are the one-sided quotients whose gap reveals a kink;
    ``central`` is their step-weighted mean. ``noise_*`` are their rounding floors.
    """

    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    noise_central: np.ndarray
    noise_side: np.ndarray
    step: np.ndarray

    def take(self, index) -> Quotients:
        """The quotients of the probes ``index`` only."""
        return Quotients(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def quotients(delta_plus, delta_minus, step_plus, step_minus, floor_plus, floor_minus):
    """Quotients from ``f(x + h+) - f(x)`` and ``f(x - h-) - f(x)`` with the actual steps."""
    span = step_plus + step_minus
    return Quotients(
        central=(delta_plus - delta_minus) / span,
        forward=delta_plus / step_plus,
        backward=-delta_minus / step_minus,
        noise_central=NOISE_MULTIPLE * (floor_plus + floor_minus) / span,
        noise_side=NOISE_MULTIPLE * np.maximum(floor_plus / step_plus, floor_minus / step_minus),
        step=0.5 * span,
    )


def value_floor(f0: float, deltas, eps: float) -> np.ndarray:
    """Rounding error of ``f(x + d) - f(x)`` computed by subtracting two rounded losses."""
    return eps * (abs(f0) + np.abs(f0 + np.asarray(deltas)))


def richardson(fine: np.ndarray, coarse: np.ndarray, order: int = 2) -> np.ndarray:
    """Cancel the leading ``h**order`` error of two estimates whose steps differ by LADDER_RATIO.

    With ratio 4 and order 2 this is ``(16 n(h/4) - n(h)) / 15``.
    """
    gain = LADDER_RATIO**order
    return (gain * fine - coarse) / (gain - 1.0)


def stencil_noise(weights, floors: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Rounding floor of ``sum_j w_j delta_j / h`` given the floors of the deltas (rows)."""
    return NOISE_MULTIPLE * (np.abs(np.asarray(weights)) @ floors) / steps
