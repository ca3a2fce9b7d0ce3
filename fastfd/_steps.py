"""Step rules: pure functions from (x, dtype, stencil) to the steps actually taken."""

from __future__ import annotations

import numpy as np

from ._stencils import Stencil


def default_steps(x: np.ndarray, stencil: Stencil, eps: float | None = None) -> np.ndarray:
    """Dtype-aware default step ``EPS**(1/(order+1)) * max(1, |x|)``.

    Central differences (order 2) give ``EPS**(1/3)``, one-sided (order 1) ``EPS**(1/2)``:
    the step that balances the truncation error ``~h**order`` against the rounding
    error ``~EPS/h``.

    Examples
    --------
    >>> from fastfd._stencils import STENCILS
    >>> default_steps(np.array([0.0, 10.0]), STENCILS["central"])
    array([6.05545445e-06, 6.05545445e-05])
    """
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    return eps**stencil.step_exponent * np.maximum(1.0, np.abs(x.astype(np.float64)))


def actual_steps(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The step really taken: ``(x + h) - x`` after rounding ``x + h`` to the dtype of ``x``.

    Dividing by the nominal ``h`` instead would add a relative error of up to
    ``ulp(x) / h`` to every difference quotient (large in float32).
    """
    rounded = (x.astype(np.float64) + steps).astype(x.dtype)
    return rounded.astype(np.float64) - x.astype(np.float64)  # exact: both are representable


def validate_steps(step, n: int, x: np.ndarray, stencil: Stencil, names=None) -> np.ndarray:
    """Nominal steps for ``n`` entries from the user's ``step`` (None, scalar or array of n).

    ``names(i)`` names entry ``i`` in error messages.
    """
    if step is None:
        return default_steps(x, stencil)
    if isinstance(step, bool):
        raise TypeError(f"step must be None, a positive float or an array of floats; got {step!r}")
    try:
        arr = np.asarray(step, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"step must be None, a positive float or an array of floats; got {type(step).__name__}"
        ) from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.size != n:
        raise ValueError(
            f"step has {arr.size} entries but the parameters have {n}; pass a scalar or one step "
            "per entry (same structure and shapes as params)"
        )
    arr = arr.reshape(-1)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f" for {names(i)}" if names is not None else ""
        raise ValueError(
            f"step must be positive and finite; got {float(arr[i])!r}{where} "
            f"({int(bad.sum())} bad entr{'y' if bad.sum() == 1 else 'ies'})"
        )
    return arr


def checked_actual_steps(x: np.ndarray, steps: np.ndarray, names) -> np.ndarray:
    """Actual steps (either sign), with an error when one vanishes after rounding (a step
    below ulp(x))."""
    taken = actual_steps(x, steps)
    zero = (taken == 0) | (np.sign(taken) != np.sign(steps))
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise ValueError(
            f"step {abs(steps[i]):.3g} for {names(i)} is lost to rounding: {x.dtype} value "
            f"{float(x[i]):.6g} + step == value; use a larger step (or the default)"
        )
    return taken
