"""Analytic vs numeric: per-probe judgement, refinement of suspects, the verdict.

A probe is a coordinate or a random direction. Suspects (probes missing the first test) are
judged on a step ladder h, h/4, h/16, h/64:

* pass when a central quotient or a Richardson combination meets the test, at a level whose
  estimate moved beyond rounding (so truncation, not noise, was the culprit);
* kink when the gap between one-sided quotients does not shrink with h (a smooth function's
  gap shrinks like h): then the analytic value must lie between the one-sided quotients;
* fail when successive levels agree with each other but clearly not with the analytic value;
* unresolved when rounding noise is larger than the remaining discrepancy.
"""

from __future__ import annotations

import numpy as np

from ._combine import Quotients, richardson

PASS, FAIL, KINK, UNRESOLVED = "pass", "fail", "kink", "unresolved"
KINK_FAIL = "fail at kink"  # at a kink, and the analytic value is outside the one-sided range


def failing(status) -> np.ndarray:
    """Mask of failing statuses (plain failures and failures at kinks)."""
    status = np.asarray(status, dtype=object)
    return (status == FAIL) | (status == KINK_FAIL)

# A kink's one-sided gap stays put as h shrinks; a smooth gap falls by the ladder ratio (4).
_KINK_GAP_RATIO = 0.5
# A failure must stand out from the scatter between ladder levels by this factor.
_FAIL_MARGIN = 3.0


def tolerance(a, n, rtol: float, atol: float, noise):
    """Allowed ``|a - n|``: relative part, absolute part, and what the differences resolve."""
    return rtol * np.maximum(np.abs(a), np.abs(n)) + atol + noise


def meets(a, n, noise, rtol: float, atol: float):
    return np.abs(a - n) <= tolerance(a, n, rtol, atol, noise)


def relative_error(a, n):
    """``|a - n| / max(|a|, |n|)``, 0 where both are exactly 0."""
    scale = np.maximum(np.abs(a), np.abs(n))
    return np.divide(np.abs(a - n), scale, out=np.zeros_like(scale, dtype=float), where=scale > 0)


def refine(a_levels, levels: list[Quotients], rtol: float, atol: float, kink_flags=None):
    """Judge suspects on a step ladder.

    Parameters
    ----------
    a_levels : ndarray, shape (L, n) or (n,)
        Analytic values to compare at each level (directions project the gradient onto the
        displacement actually taken, which rounding makes level-dependent).
    levels : list of Quotients
        One per ladder level, largest step first.
    kink_flags : ndarray of bool or None
        Exact kink flags at the smallest step, from an evaluator that knows them.

    Returns
    -------
    status : ndarray of str
    numeric : ndarray
        The estimate the status rests on.
    noise : ndarray
        Its rounding floor.
    """
    n_levels = len(levels)
    size = len(levels[0].central)
    a_levels = np.broadcast_to(np.asarray(a_levels, dtype=float), (n_levels, size))
    status = np.full(size, UNRESOLVED, dtype=object)
    numeric = levels[-1].central.copy()
    noise = levels[-1].noise_central.copy()
    open_ = np.ones(size, dtype=bool)

    # 1. a smaller step (or a Richardson pair) resolves the truncation error. Only levels whose
    #    estimate moved away from the first one beyond rounding count: otherwise the larger
    #    rounding floor of a small step would let any small error through.
    first = levels[0]
    for j, q in enumerate(levels):
        a = a_levels[j]
        moved = np.abs(q.central - first.central) > first.noise_central + q.noise_central
        candidates = [(q.central, q.noise_central)]
        if j > 0:
            prev = levels[j - 1]
            candidates.append((richardson(q.central, prev.central),
                               richardson(q.noise_central, -prev.noise_central)))
        for est, est_noise in candidates:
            ok = open_ & meets(a, est, est_noise, rtol, atol) & (moved if j > 0 else True)
            status[ok], numeric[ok], noise[ok] = PASS, est[ok], est_noise[ok]
            open_ &= ~ok

    # 2. kinks: the one-sided gap persists as h shrinks
    last, a = levels[-1], a_levels[-1]
    gaps = [np.abs(q.forward - q.backward) for q in levels]
    if kink_flags is not None:
        kink = np.asarray(kink_flags, dtype=bool)
    else:
        resolved_gap = gaps[-1] > tolerance(last.forward, last.backward, rtol, atol,
                                            2 * last.noise_side)
        persists = np.ones(size, dtype=bool)
        for j in range(max(1, n_levels - 2), n_levels):
            persists &= gaps[j] > _KINK_GAP_RATIO * gaps[j - 1]
        kink = resolved_gap & persists
    kink &= open_
    lo = np.minimum(last.forward, last.backward)
    hi = np.maximum(last.forward, last.backward)
    slack = tolerance(a, hi, rtol, atol, last.noise_side)
    inside = (a >= lo - slack) & (a <= hi + slack)
    status[kink & inside] = KINK
    status[kink & ~inside] = KINK_FAIL
    numeric[kink] = np.where(a[kink] < lo[kink], lo[kink], hi[kink])
    noise[kink] = last.noise_side[kink]
    open_ &= ~kink

    # 3. levels agree with each other but not with the analytic value -> fail
    for j in range(n_levels - 1, 0, -1):
        q, prev, a = levels[j], levels[j - 1], a_levels[j]
        spread = np.abs(q.central - prev.central)
        agree = spread <= tolerance(q.central, prev.central, rtol, atol,
                                    q.noise_central + prev.noise_central)
        clearly_off = np.abs(a - q.central) > np.maximum(
            _FAIL_MARGIN * spread,
            tolerance(a, q.central, rtol, atol, _FAIL_MARGIN * q.noise_central),
        )
        bad = open_ & agree & clearly_off
        status[bad], numeric[bad], noise[bad] = FAIL, q.central[bad], q.noise_central[bad]
        open_ &= ~bad
    return status, numeric, noise
