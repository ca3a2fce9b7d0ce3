"""Estimates with error bars -> a status per probe, the next step to try, and the verdict.

A probe is a coordinate, a random direction, or a pair of kink coordinates. Statuses:

* ``pass`` (confirmed): the analytic value agrees within tolerance plus error bar, and the
  error bar is no wider than the tolerance, judged against the larger of the probe's own
  value and the scale of its array's gradient (so confirmed zeros count);
* ``fail``: the discrepancy exceeds tolerance plus error bar;
* ``weak``: consistent, but the error bar is too wide to have seen an ``rtol`` discrepancy;
  the cause (noise or truncation) is kept, and weak evidence never counts for a pass;
* ``kink``: the one-sided differences disagree at every step down to the smallest (hinge,
  ReLU, max) and the analytic value lies between them, as a subgradient's must;
* ``fail at kink``: at a kink, outside the one-sided range.

Open probes are told where to go next: up the step ladder when noise dominates the error
bar, down when truncation does (or when a kink must be followed to the smallest step).
"""

from __future__ import annotations

import numpy as np

from ._combine import NOISE_SIGMAS, Best, Ladder

PASS, FAIL, WEAK, KINK, KINK_FAIL = "pass", "fail", "weak", "kink", "fail at kink"
OPEN = "open"
NOISE, TRUNCATION = "noise", "truncation"
JOINT = "kink not tested jointly"  # cause of a weak kink entry beyond the joint test's limit

# A kink's one-sided gap stays put as h shrinks; a smooth gap falls by the ladder ratio (4).
_KINK_PERSIST = 0.5
KINK_LEVELS = 4


def failing(status) -> np.ndarray:
    """Mask of failing statuses (plain failures and failures at kinks)."""
    status = np.asarray(status, dtype=object)
    return (status == FAIL) | (status == KINK_FAIL)


def tolerance(a, n, rtol: float, atol: float):
    """Allowed ``|a - n|`` before the error bar: ``rtol * max(|a|, |n|) + atol``."""
    return rtol * np.maximum(np.abs(a), np.abs(n)) + atol


def relative_error(a, n):
    """``|a - n| / max(|a|, |n|)``, 0 where both are exactly 0."""
    size = np.maximum(np.abs(a), np.abs(n))
    return np.divide(np.abs(a - n), size, out=np.zeros_like(size, dtype=float), where=size > 0)


def resolution_scale(a, n, array_scale):
    """What an error bar is judged against: the probe's own size or its array's gradient."""
    return np.maximum(np.maximum(np.abs(a), np.abs(n)), array_scale)


def array_scales(owner: np.ndarray, analytic: np.ndarray, numeric: np.ndarray,
                 n_arrays: int) -> np.ndarray:
    """Per probe, the RMS over its array's probes of ``min(|a|, |n|)``.

    The smaller of the two sides: a wrong analytic value cannot inflate the scale (then every
    other entry would look resolved), and neither can a noise-dominated numeric one.
    """
    size = np.minimum(np.abs(analytic), np.abs(numeric))
    sums = np.bincount(owner, weights=size**2, minlength=n_arrays)
    counts = np.maximum(np.bincount(owner, minlength=n_arrays), 1)
    return np.sqrt(sums / counts)[owner]


def first_pass(a, numeric, noise, rtol, atol, scale):
    """Statuses after the first stencil pass: ``pass`` where the values agree and the noise
    bar is already within tolerance, else ``open`` (refined on the ladder).

    No truncation bound is needed for a confirmation: agreement within tolerance leaves
    truncation no room except to cancel a bug of the same size exactly.
    """
    bar = NOISE_SIGMAS * noise
    agree = np.abs(a - numeric) <= tolerance(a, numeric, rtol, atol) + bar
    resolved = bar <= rtol * scale + atol
    return np.where(agree & resolved, PASS, OPEN).astype(object)


class Decision:
    """Statuses, causes and next ladder levels of the probes of one refinement round."""

    def __init__(self, n: int):
        self.status = np.full(n, OPEN, dtype=object)
        self.cause = np.full(n, "", dtype=object)
        self.next_level = np.zeros(n, dtype=np.int64)

    @property
    def open(self) -> np.ndarray:
        return self.status == OPEN


def decide(ladder: Ladder, rtol: float, atol: float, scale: np.ndarray, bottom: np.ndarray,
           top: np.ndarray, kink_flags: np.ndarray | None = None,
           kink_fails: bool = True, kink_floor: np.ndarray | None = None
           ) -> tuple[Decision, Best]:
    """Judge every probe of ``ladder`` and say where the open ones go next.

    ``bottom``/``top`` are the lowest and highest levels allowed per probe; ``kink_flags``
    exact kink flags at each probe's smallest evaluated step (from an evaluator that knows);
    ``kink_fails=False`` for directions, whose kinks are never failures by themselves;
    ``kink_floor`` the level a kink must persist down to (default ``-KINK_LEVELS``, i.e.
    ``h0 / 256``; lower when ``h0`` is larger than the default step).
    """
    n = ladder.size
    out = Decision(n)
    best = ladder.best()
    lo, hi = ladder.lo, ladder.hi

    # kinks: the one-sided gap resolved at the smallest step and not shrinking with it
    gap_lo, gap_noise_lo = ladder.gap(lo)
    has_two = hi > lo
    gap_up, _ = ladder.gap(np.minimum(lo + 1, hi))
    persists = has_two & (gap_lo > NOISE_SIGMAS * gap_noise_lo) & (gap_lo >= _KINK_PERSIST * gap_up)
    two_below = hi >= lo + 2
    gap_up2, _ = ladder.gap(np.minimum(lo + 2, hi))
    persists &= ~two_below | (gap_up >= _KINK_PERSIST * gap_up2)
    kink = persists if kink_flags is None else (np.asarray(kink_flags, dtype=bool) & has_two)
    # a kink is followed down to kink_floor: persisting there, it is at x
    floor = np.full(n, -KINK_LEVELS) if kink_floor is None else kink_floor
    follow = kink & (lo > np.maximum(bottom, floor))
    out.next_level[follow] = lo[follow] - 1
    at_floor = kink & ~follow
    if at_floor.any():
        f, b = ladder.at("forward", lo), ladder.at("backward", lo)
        a = ladder.at("analytic", lo)
        low, high = np.minimum(f, b), np.maximum(f, b)
        slack = tolerance(a, high, rtol, atol) + NOISE_SIGMAS * ladder.at("noise_side", lo)
        inside = (a >= low - slack) & (a <= high + slack)
        out.status[at_floor & inside] = KINK
        out.status[at_floor & ~inside] = KINK_FAIL if kink_fails else KINK

    # smooth probes: fail, confirm, or move the step towards the smaller error bar
    smooth = ~kink
    a, value = best.analytic, best.value
    gap = np.abs(a - value)
    allowed = tolerance(a, value, rtol, atol)
    finite = np.isfinite(best.error)
    failed = smooth & finite & (gap > allowed + best.error)
    confirmed = smooth & finite & ~failed & (best.error <= rtol * scale + atol)
    out.status[failed] = FAIL
    out.status[confirmed] = PASS
    undecided = smooth & ~failed & ~confirmed
    can_up, can_down = hi < top, lo > bottom
    # certified: noise dominates -> larger steps, truncation dominates -> smaller ones;
    # one level only -> up (that bounds this level's truncation either way); several levels
    # but none certified (differences not yet contracting) -> smaller steps
    noisy = finite & ~(best.truncation > NOISE_SIGMAS * best.noise)
    single = ~finite & ~has_two
    # once the largest steps show truncation, larger ones only add more of it
    can_up &= ~has_two | ladder.agree(hi - 1)
    up = undecided & (noisy | (single & can_up))
    down = undecided & ~up
    out.next_level[up & can_up] = hi[up & can_up] + 1
    out.next_level[down & can_down] = lo[down & can_down] - 1
    stuck_up = up & ~can_up
    stuck_down = down & ~can_down
    out.status[stuck_up | stuck_down] = WEAK
    out.cause[stuck_up] = NOISE
    out.cause[stuck_down] = TRUNCATION
    return out, best


def mostly_weak(status) -> bool:
    """No entry confirmed, or weak entries the majority: the entries alone cannot pass."""
    status = np.asarray(status, dtype=object).astype(str)
    confirmed = np.isin(status, (PASS, KINK)).sum()
    return bool(confirmed == 0 or (status == WEAK).sum() > len(status) / 2)


def verdict(entries, directions, localized, joint, second_opinion: str | None) -> str:
    """``"fail"`` on any failure; else ``"pass"`` when confirmed entries carry the check (or,
    failing that, a second opinion that resolves ``rtol`` says pass); else ``"inconclusive"``.

    Weak entries and weak or kinked directions never count for a pass.
    """
    if any(failing(s).any() for s in (entries, directions, localized, joint)):
        return "fail"
    if not mostly_weak(entries):
        return "pass"
    return second_opinion if second_opinion in ("pass", "fail") else "inconclusive"
