"""Finite-difference stencils as frozen data: offsets in, weights and error order derived.

A stencil is a set of nodes ``t_j`` (multiples of the step ``h``); the first derivative is
estimated as ``sum_j w_j f(x + t_j h) / h`` with the weights of the derivative, at 0, of the
polynomial interpolating ``f`` at the nodes (:func:`derivative_weights`). The same function
gives the weights for the displacements really taken after rounding ``x + t_j h``, so the
combine stage never branches on node patterns and adding a stencil cannot add a typo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def derivative_weights(nodes) -> np.ndarray:
    """Weights ``w_j`` with ``p'(0) = sum_j w_j p(t_j)`` for every polynomial ``p`` of degree
    below the number of nodes (the derivative of the Lagrange interpolant at 0).

    ``nodes`` has shape ``(n,)`` or ``(n, m)`` (``m`` node sets, one per column, e.g. the
    displacements really taken at ``m`` entries); the result has the same shape. Nodes of a
    set must be distinct.

    Examples
    --------
    >>> derivative_weights([-1.0, 1.0])
    array([-0.5,  0.5])
    >>> np.round(derivative_weights([-2.0, -1.0, 1.0, 2.0]) * 12, 12)
    array([ 1., -8.,  8., -1.])
    """
    t = np.asarray(nodes, dtype=np.float64)
    n = t.shape[0]
    weights = np.zeros_like(t)
    # L_j'(0) = sum_{m != j} 1/(t_j - t_m) * prod_{l != j, m} (0 - t_l) / (t_j - t_l)
    for j in range(n):
        for m in range(n):
            if m == j:
                continue
            term = 1.0 / (t[j] - t[m])
            for lo in range(n):
                if lo not in (j, m):
                    term = term * (-t[lo]) / (t[j] - t[lo])
            weights[j] = weights[j] + term
    return weights


@dataclass(frozen=True)
class Stencil:
    """Nodes of a first-derivative formula; weights, order and error constant are derived.

    Parameters
    ----------
    name : str
        Public method name (``"central"`` ...).
    offsets : tuple of float
        Multiples of the step ``h`` at which ``f`` is evaluated; ``0`` means ``f(x)``.
    """

    name: str
    offsets: tuple[float, ...]

    @cached_property
    def weights(self) -> tuple[float, ...]:
        """Weights of the ``f`` values at the offsets (they sum to zero)."""
        return tuple(float(w) for w in derivative_weights(self.offsets))

    @cached_property
    def _leading_error(self) -> tuple[int, float]:
        # sum_j w_j t_j**k / k! is 0 for k = 0 and k > 1 up to the first power the nodes do
        # not fit: the estimate is f' + C h**(k - 1) f^(k) + ...
        w, t = np.array(self.weights), np.array(self.offsets)
        for k in range(len(t), len(t) + 3):
            moment = float(w @ t**k) / math.factorial(k)
            if abs(moment) > 1e-12:
                return k - 1, moment
        raise AssertionError(f"stencil {self.name}: no leading error term found")

    @property
    def order(self) -> int:
        """Order of the truncation error, ``O(h**order)``."""
        return self._leading_error[0]

    @property
    def error_constant(self) -> float:
        """``C`` in the leading truncation error ``C h**order f^(order + 1)(x)``."""
        return self._leading_error[1]

    @property
    def step_exponent(self) -> float:
        """Exponent ``p`` of the default step ``eps**p``: balances truncation against noise."""
        return 1.0 / (self.order + 1)

    @property
    def perturbed(self) -> tuple[float, ...]:
        """The offsets that need an evaluation away from ``x``."""
        return tuple(o for o in self.offsets if o != 0)


STENCILS: dict[str, Stencil] = {
    s.name: s
    for s in (
        Stencil("forward", (0.0, 1.0)),
        Stencil("backward", (-1.0, 0.0)),
        Stencil("central", (-1.0, 1.0)),
        Stencil("central4", (-2.0, -1.0, 1.0, 2.0)),
        # Im f(x + i h) / h: the nodes of "forward", evaluated at x + i h (see _complex)
        Stencil("complex", (0.0, 1.0)),
    )
}
CENTRAL = STENCILS["central"]


def get_stencil(method: str) -> Stencil:
    """Return the stencil called ``method`` or raise a ValueError listing the valid names."""
    try:
        return STENCILS[method]
    except (KeyError, TypeError):
        valid = ", ".join(repr(m) for m in STENCILS)
        raise ValueError(f"method must be one of {valid}; got {method!r}") from None
