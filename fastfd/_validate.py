"""Argument validation: the one home of the checks on what a user passes in.

Every function raises a TypeError or ValueError that names the argument, says what was
wrong and lists what is valid; each returns the normalized value.
"""

from __future__ import annotations

import numpy as np


def loss_callable(f, what: str = "f") -> None:
    if not callable(f):
        raise TypeError(
            f"{what} must be a callable loss f(params) -> float; got {type(f).__name__}")


def flag(value, name: str) -> bool:
    """A bool option (``bind=``, ``batched=``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def tolerance(value, name: str) -> float | None:
    """``rtol``/``atol``: None (the default) or a non-negative finite float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a non-negative float or None; got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite float; got {value!r}")
    return float(value)


def count(value, name: str, allow_none: bool = False) -> int | None:
    """A non-negative int (``directions=``), or None where that means "choose for me"."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        extra = " or None" if allow_none else ""
        raise TypeError(f"{name} must be a non-negative int{extra}; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int; got {value}")
    return int(value)


def n_jobs(value) -> int:
    """``n_jobs`` in the joblib convention: non-zero, -1 = all cores."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"n_jobs must be a non-zero int (joblib convention, -1 = all cores); "
                        f"got {value!r}")
    if value == 0:
        raise ValueError("n_jobs must be a non-zero int (joblib convention, -1 = all cores); got 0")
    return int(value)


def seed(value) -> np.random.Generator:
    """A numpy Generator from a non-negative int seed.

    Only ints: the sample, the random directions, the noise line and the Taylor direction each
    draw from their own stream derived from the same seed, so that one never shifts the others.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int; got {value!r}")
    if value < 0:
        raise ValueError(f"seed must be a non-negative int; got {value}")
    return np.random.default_rng(int(value))


def sample(value, n_params: int):
    """``sample=``: ``"auto"``, ``None`` (all) or an int count below ``n_params``."""
    if value is None or (isinstance(value, str) and value == "all"):
        return None
    if isinstance(value, str):
        if value == "auto":
            return "auto"
        raise ValueError(
            f"sample must be 'auto', 'all', None, an int or a fraction; got {value!r}")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"sample must be 'auto', 'all', None, an int or a fraction; got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"sample must be a positive number of entries; got {value}")
        return None if value >= n_params else int(value)
    if isinstance(value, (float, np.floating)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"a fractional sample must lie in (0, 1]; got {value}")
        k = max(1, int(round(value * n_params)))
        return None if k >= n_params else k
    raise TypeError(
        f"sample must be 'auto', 'all', None, an int or a fraction; got {type(value).__name__}"
    )


def steps(step, n: int, names=None) -> np.ndarray:
    """Nominal steps for ``n`` entries from the user's ``step`` (a scalar or ``n`` values).

    ``names(i)`` names entry ``i`` in error messages.
    """
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


def scalar_step(step) -> float | None:
    """A single step (for a direction): None or a positive finite float."""
    if isinstance(step, np.ndarray) and step.ndim == 0:
        step = step.item()
    if step is None:
        return None
    if isinstance(step, (dict, list, tuple, np.ndarray)):
        return None  # per-entry steps do not apply to a direction: its own rule does
    return float(steps(step, 1)[0])


def positive_int(value, name: str, allow_none: bool = False) -> int | None:
    """A positive int (``max_stack=``), or None where allowed."""
    if value is None and allow_none:
        return None
    allowed = "None or a positive int" if allow_none else "a positive int"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {allowed}; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return int(value)


def positive_float(value, name: str, what: str) -> float:
    """A positive finite float; ``what`` lists the accepted forms in the error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {what}; got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite; got {value!r}")
    return float(value)


def descending(values, name: str, min_size: int = 1, repeats: bool = True) -> np.ndarray:
    """A 1-D sequence of positive finite floats (steps, Taylor multiples), largest first;
    repeated values are dropped, or refused when ``repeats`` is False."""
    what = "a sequence of positive floats"
    if isinstance(values, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be {what}; got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}; got {type(values).__name__}") from None
    if arr.ndim != 1 or arr.size < min_size:
        at_least = f"at least {min_size} values" if min_size > 1 else "non-empty"
        raise ValueError(f"{name} must be a 1-D sequence of floats ({at_least}); got shape "
                         f"{arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(f"{name} must be positive and finite; got {float(arr[bad][0])!r}")
    unique = np.unique(arr)
    if not repeats and unique.size != arr.size:
        raise ValueError(f"{name} must not repeat a value")
    return unique[::-1].copy()
