"""Step rules: pure functions from (x, noise level, stencil) to the steps actually taken.

The one home of every step in fastfd: the default coordinate step, the two-sided ladder of
refinement levels, the step along a direction, the exactly representable line of the noise
estimate, and the rounding of ``x + h`` to the params' dtype.
"""

from __future__ import annotations

import numpy as np

from ._stencils import Stencil

# Refinement levels h0 * LADDER_RATIO**k for k in [-LEVELS_DOWN, LEVELS_UP]: down to
# h0 / 65536 while truncation dominates (curvature far above the step rule's assumption),
# up to MAX_RELATIVE_STEP * max(1, |x|) while noise does and the levels keep agreeing
# (a loss with a large constant part, a tiny gradient near an optimum). Each level is taken
# only when the measured error bar says it helps.
LADDER_RATIO = 4.0
LEVELS_DOWN = 8
LEVELS_UP = 9
MAX_RELATIVE_STEP = 1.0


def scale(x: np.ndarray) -> np.ndarray:
    """``max(1, |x|)`` in float64: the unit of every relative step."""
    return np.maximum(1.0, np.abs(np.asarray(x, dtype=np.float64)))


def default_steps(x: np.ndarray, stencil: Stencil, rel_noise: float | None = None) -> np.ndarray:
    """The default step ``rel_noise**(1/(order+1)) * max(1, |x|)``.

    ``rel_noise`` is the relative noise of the loss (measured, see :mod:`fastfd._noise`);
    ``None`` means the rounding of the params' dtype, ``EPS``. Central differences (order 2)
    give ``EPS**(1/3)``, one-sided ones ``EPS**(1/2)``: the step that balances the truncation
    error ``~h**order`` against the noise ``~rel_noise / h``.

    Examples
    --------
    >>> from fastfd._stencils import STENCILS
    >>> default_steps(np.array([0.0, 10.0]), STENCILS["central"])
    array([6.05545445e-06, 6.05545445e-05])
    >>> default_steps(np.array([0.0]), STENCILS["central"], rel_noise=1e-9)
    array([0.001])
    """
    if rel_noise is None:
        rel_noise = float(np.finfo(x.dtype).eps)
    return rel_noise**stencil.step_exponent * scale(x)


def actual_steps(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The step really taken: ``(x + h) - x`` after rounding ``x + h`` to the dtype of ``x``.

    Dividing by the nominal ``h`` instead would add a relative error of up to
    ``ulp(x) / h`` to every difference quotient (large in float32).
    """
    rounded = (x.astype(np.float64) + steps).astype(x.dtype)
    return rounded.astype(np.float64) - x.astype(np.float64)  # exact: both are representable


def checked_actual_steps(x: np.ndarray, steps: np.ndarray, names) -> np.ndarray:
    """Actual steps (either sign), with an error when one vanishes after rounding (a step
    below ulp(x)); ``names(k)`` names entry ``k``."""
    taken = actual_steps(x, steps)
    zero = (taken == 0) | (np.sign(taken) != np.sign(steps))
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise ValueError(
            f"step {abs(steps[i]):.3g} for {names(i)} is lost to rounding: {x.dtype} value "
            f"{float(x[i]):.6g} + step == value; use a larger step (or the default)"
        )
    return taken


def level_steps(h0: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Nominal steps of ladder ``levels`` (ints, one per entry): ``h0 * 4**level``."""
    return h0 * LADDER_RATIO ** np.asarray(levels, dtype=np.float64)


def top_level(x: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """Highest ladder level per entry: steps stay within ``MAX_RELATIVE_STEP * max(1, |x|)``
    (beyond that the step is no longer local) and within ``LEVELS_UP`` levels."""
    room = MAX_RELATIVE_STEP * scale(x) / h0
    with np.errstate(divide="ignore"):
        top = np.floor(np.log(np.maximum(room, 1.0)) / np.log(LADDER_RATIO))
    return np.clip(top, 0, LEVELS_UP).astype(np.int64)


def bottom_level(x: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """Lowest ladder level per entry: ``LEVELS_DOWN`` levels down, while both ``x + h`` and
    ``x - h`` still move by at least 8 units in the last place of ``x``'s dtype."""
    ulp = np.spacing(np.abs(x)).astype(np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        room = h0 / (8.0 * ulp)
        down = np.floor(np.log(np.maximum(room, 1.0)) / np.log(LADDER_RATIO))
    return -np.clip(down, 0, LEVELS_DOWN).astype(np.int64)


def direction_step(x: np.ndarray, v: np.ndarray, stencil: Stencil,
                   rel_noise: float | None = None) -> float:
    """Step ``s`` along ``v``: the coordinate rule applied to the direction's own scale.

    ``s * v`` has the length of a default coordinate step at the ``v``-weighted scale of
    ``x`` (``||v * max(1, |x|)|| / ||v||``), so the step does not depend on how many
    coordinates ``v`` spreads over, nor on its largest component.
    """
    norm2 = float(v @ v)
    if norm2 == 0:
        raise ValueError("direction is zero; pass a non-zero direction")
    if rel_noise is None:
        rel_noise = float(np.finfo(x.dtype).eps)
    return rel_noise**stencil.step_exponent * weighted_norm(v, x) / norm2


def weighted_norm(v: np.ndarray, x: np.ndarray, chunk: int = 2**16) -> float:
    """``||v * max(1, |x|)||``, in chunks (no O(P) temporaries)."""
    total = 0.0
    for lo in range(0, len(v), chunk):
        part = v[lo:lo + chunk] * scale(x[lo:lo + chunk])
        total += float(part @ part)
    return float(np.sqrt(total))


def direction_levels(s0: float, v: np.ndarray, x: np.ndarray) -> tuple[int, int]:
    """``(bottom, top)`` ladder levels along ``v`` from the step ``s0``: the same bounds as
    for coordinates, with the direction's weighted scale in place of ``max(1, |x|)``."""
    weighted = weighted_norm(v, x) / float(v @ v)
    room = MAX_RELATIVE_STEP * weighted / s0
    top = int(np.clip(np.floor(np.log(max(room, 1.0)) / np.log(LADDER_RATIO)), 0, LEVELS_UP))
    return -LEVELS_DOWN, top


def exact_line(x: np.ndarray, direction: np.ndarray, t_max: int) -> np.ndarray:
    """``direction`` adjusted so that ``x + t * d`` is exactly representable in ``x``'s dtype
    for every integer ``|t| <= t_max``: the points of the line are then exactly equally
    spaced, as the noise estimate's difference table needs.

    Each component is rounded to a multiple of the ulp at the largest magnitude the line
    reaches; components for which some point would still round (crossing into a binade of
    coarser spacing) are set to zero.
    """
    x64 = x.astype(np.float64)
    reach = np.abs(x64) + t_max * np.abs(direction)
    quantum = np.spacing(reach.astype(x.dtype)).astype(np.float64)
    d = np.round(direction / quantum) * quantum
    for t in range(-t_max, t_max + 1):
        if t == 0:
            continue
        moved = (x64 + t * d).astype(x.dtype).astype(np.float64) - x64
        d[moved != t * d] = 0.0
    return d
