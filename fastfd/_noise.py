"""Measure the noise of the loss at ``x`` instead of assuming it (Moré & Wild's difference table).

Rounding in the loss (float32 arithmetic behind float64 params, cancellation, long sums) and
noisy simulations make ``f(x)`` differ from the smooth function it computes by an error that
behaves like noise. Along a short line ``x + t d`` (``t = -4 .. 4``, equally spaced, exactly
representable), the ``k``-th differences of a smooth function shrink like ``spacing**k``
while those of noise do not: once the smooth part is gone, ``gamma_k * mean(Delta^k f)**2``
with ``gamma_k = (k!)**2 / (2k)!`` estimates the noise variance whatever ``k`` (Moré and
Wild, "Estimating computational noise", SIAM J. Sci. Comput. 33(3), 2011). The estimate is
accepted when three consecutive orders agree within a factor of 4 and the differences change
sign (noise, not a smooth trend).

A kink crossed by the line also looks like noise, but its contribution shrinks with the
spacing while noise does not, so two spacings are measured and the smaller estimate kept.
Cost: 9 to 49 loss evaluations, whatever the number of parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

T_MAX = 4  # the line has 2 * T_MAX + 1 points (t = -4 .. 4)
_RATIO_AGREE = 4.0  # three consecutive noise levels within this factor
SPACING_JUMP = 64.0  # change of spacing after "too small" / "too large"
_MAX_LINES = 6
MAX_SPACING = 1e-2  # relative to max(1, |x|): beyond that the line is no longer local
_FAR_MOVE = 0.1  # one evaluation this far decides "the loss does not depend on params"
# Non-determinism below this many units in the last place of f is treated as noise
# (multi-threaded reductions can differ in the last bits between calls).
_JITTER_ULPS = 64.0

_PRECISION_BAND = 8.0

MEASURED, NOT_DETECTED, EXACT = "measured", "not detected", "exact deltas"
OK, TOO_SMALL, TOO_LARGE = "ok", "spacing too small", "spacing too large"


@dataclass(frozen=True)
class NoiseEstimate:
    """The noise level of the loss at the params, and how it was obtained.

    Attributes
    ----------
    sigma : float
        Standard deviation of the noise in one loss value (absolute).
    f0 : float
        The loss at the params.
    source : {"measured", "not detected", "exact deltas"}
        ``"measured"``: from the difference table; ``"not detected"``: the line showed no
        noise (``sigma`` is then the rounding of the loss's dtype); ``"exact deltas"``: the
        evaluator computes differences without subtracting two losses (models), so the loss's
        own noise does not enter the coordinate differences.
    n_evals : int
        Loss evaluations spent on the estimate.
    spacing : float or None
        Relative spacing of the line that gave the estimate.
    eps : float
        Rounding unit of the params' dtype.
    params_dtype : str
    result_eps : float
        Rounding unit of the coarser of the params' and the loss's result dtype.
    f_scale : float
        The largest ``|f|`` seen on the line.
    exact_reason : str
        For ``"exact deltas"``: why the differences need no measured noise.
    """

    sigma: float
    f0: float
    source: str
    n_evals: int
    spacing: float | None
    eps: float
    params_dtype: str
    result_eps: float = 0.0
    f_scale: float = 0.0
    exact_reason: str = "the model computes exact differences"

    @property
    def relative(self) -> float:
        """``sigma / |f(x)|`` (inf when ``f(x) == 0`` and ``sigma > 0``)."""
        if self.f0 == 0:
            return math.inf if self.sigma > 0 else 0.0
        return self.sigma / abs(self.f0)

    @property
    def rel_noise(self) -> float:
        """The relative noise the step rules and default tolerances use: the measured level
        against the larger of ``|f(x)|`` and the values seen on the line (a loss that happens
        to be near 0 at ``x`` is not infinitely noisy), never below the params' rounding unit,
        at most 1e-2; the coarser rounding unit of params and result when nothing was seen."""
        if self.source == NOT_DETECTED:
            return float(max(self.eps, self.result_eps))
        if self.source == EXACT:  # exact deltas are precise relative to themselves, not to f
            return float(self.eps)
        size = max(abs(self.f0), self.f_scale)
        rel = self.sigma / size if size > 0 else math.inf
        return float(min(1e-2, max(self.eps, rel)))

    def describe(self) -> str:
        """One sentence in words a user understands."""
        if self.source == EXACT:
            return (f"loss noise: not measured; {self.exact_reason} (rounding bound of "
                    f"{self.params_dtype})")
        if self.source == NOT_DETECTED:
            return (f"loss noise: not detected along a random line ({self.n_evals} evaluations); "
                    f"assumed {self.params_dtype} rounding of the loss")
        rel = self.relative
        head = f"loss noise ~{rel:.1g} relative (measured from {self.n_evals} evaluations)"
        eps32 = float(np.finfo(np.float32).eps)
        # rounding to a dtype leaves a relative noise of 0.1 to 0.3 eps; sums of rounded terms
        # a few times that; the estimate itself is good to a factor of 3
        if rel <= _PRECISION_BAND * self.eps:
            return f"{head}: the loss is computed in about {self.params_dtype} precision"
        if self.params_dtype == "float64" and eps32 / 30 <= rel <= _PRECISION_BAND * eps32:
            return (f"{head}: the loss is computed in about float32 precision although params "
                    "are float64")
        if rel < eps32 / 30:
            return (f"{head}: {rel / self.eps:.0f} times float64 rounding; the loss loses "
                    "digits to cancellation or to sums of large terms")
        return (f"{head}: far above {self.params_dtype} rounding; the loss is noisy (a "
                "simulation, an iterative solver, a coarse tolerance)")


def difference_table(values: np.ndarray) -> tuple[float, str]:
    """Noise level from ``f`` at equally spaced points: ``(sigma, status)``.

    ``status`` is ``"ok"``, ``"spacing too small"`` (half the values repeat: the line moves
    ``f`` by less than its rounding) or ``"spacing too large"`` (no order shows noise: the
    smooth part dominates every difference).

    Examples
    --------
    >>> t = np.arange(-4, 5)
    >>> noise = 1e-10 * np.random.default_rng(0).standard_normal(9)
    >>> sigma, status = difference_table(1.0 + 1e-3 * t + noise)
    >>> status, 0.3 < sigma / 1e-10 < 3
    ('ok', True)
    >>> difference_table(np.ones(9))[1]
    'spacing too small'
    """
    sigma, status = difference_tables(np.asarray(values, dtype=np.float64)[:, None])
    return float(sigma[0]), str(status[0])


def difference_tables(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`difference_table` for every column of ``values`` (points x components) at once:
    the noise of each output of a vector-valued function from the same line evaluations."""
    f = np.asarray(values, dtype=np.float64)
    n, m = f.shape
    top = np.maximum(np.abs(f.max(axis=0)), np.abs(f.min(axis=0)))
    status = np.full(m, OK, dtype=object)
    status[f.max(axis=0) - f.min(axis=0) > 0.1 * top] = TOO_LARGE
    levels = np.empty((n - 1, m))
    sign_change = np.empty((n - 1, m), dtype=bool)
    gamma = 1.0
    diffs = f
    for k in range(1, n):
        diffs = np.diff(diffs, axis=0)
        if k == 1:
            flat = np.count_nonzero(diffs == 0, axis=0) >= n / 2
            status[flat & (status == OK)] = TOO_SMALL
        gamma *= 0.5 * k / (2 * k - 1)  # gamma_k = (k!)**2 / (2k)!
        levels[k - 1] = np.sqrt(gamma * np.mean(diffs**2, axis=0))
        sign_change[k - 1] = (diffs.min(axis=0) < 0) & (0 < diffs.max(axis=0))
    sigma = np.full(m, math.nan)
    undecided = status == OK
    for k in range(n - 3):
        window = levels[k:k + 3]
        accept = undecided & sign_change[k] & (window.max(axis=0)
                                               <= _RATIO_AGREE * window.min(axis=0))
        sigma[accept] = levels[k, accept]
        undecided &= ~accept
    status[undecided] = TOO_LARGE
    return sigma, status


def measure(line_values: Callable[[np.ndarray, np.ndarray], np.ndarray],
            line: Callable[[float], np.ndarray], f0: float, eps: float,
            result_eps: float) -> NoiseEstimate:
    """Estimate the noise of ``f`` at ``x`` along a fixed random line.

    ``line(spacing)`` returns the displacement ``d`` of one step of the line (about
    ``spacing * max(1, |x|)`` per entry, exactly representable: see
    :func:`fastfd._steps.exact_line`); ``line_values(d, ts)`` returns ``f(x + t * d)`` for every
    ``t``. Raises :class:`~fastfd.errors.NonDeterministicLossError` when ``f(x)`` evaluated
    again differs from ``f0`` beyond last-bit jitter.
    """
    from .errors import LossNotFiniteError, NonDeterministicLossError

    ts = np.array([t for t in range(-T_MAX, T_MAX + 1) if t != 0], dtype=np.float64)
    spacing = math.sqrt(eps)
    n_evals = 0
    repeat = float(line_values(None, np.array([0.0]))[0])
    n_evals += 1
    jitter = abs(repeat - f0)
    if jitter > _JITTER_ULPS * result_eps * abs(f0):
        raise NonDeterministicLossError(
            f"the loss is not deterministic: it returned {f0!r} and then {repeat!r} at the "
            "same params (dropout left on? an unseeded random number generator?); finite "
            "differences need the same value at the same point: fix the seed or switch the "
            "randomness off for the check")
    found: list[tuple[float, float]] = []
    small, large = None, None  # the largest spacing too small, the smallest too large
    lines, finite_lines, smallest = 0, 0, spacing
    quantum = math.inf  # the smallest change of f seen: an upper bound on its rounding step
    f_scale = 0.0
    for _ in range(_MAX_LINES):
        d = line(spacing)
        if not d.any():
            status = TOO_SMALL
        else:
            values = line_values(d, ts)
            n_evals += len(ts)
            lines += 1
            smallest = min(smallest, spacing)
            table = np.insert(values, T_MAX, f0)
            finite = bool(np.all(np.isfinite(table)))
            finite_lines += finite
            sigma, status = difference_table(table) if finite else (math.nan, TOO_LARGE)
            steps = np.abs(np.diff(table))
            if finite:
                f_scale = max(f_scale, float(np.max(np.abs(table))))
            if finite and steps.any():
                quantum = min(quantum, float(steps[steps > 0].min()))
        if status == OK:
            found.append((sigma, spacing))
            if len(found) == 2 or small is not None:
                break
            small = spacing / SPACING_JUMP  # a kink crossed by the line shrinks with it
            spacing = small
            continue
        if found:
            break
        if status == TOO_SMALL:
            small = spacing
        else:
            large = spacing
        if small is not None and large is not None:
            if large / small < 2.0:
                break
            spacing = math.sqrt(small * large)  # between a staircase and a flat line
        elif status == TOO_SMALL:
            spacing *= SPACING_JUMP
            if spacing > MAX_SPACING:
                break
        else:
            spacing /= SPACING_JUMP
    if lines and not finite_lines:
        raise LossNotFiniteError(
            "the loss is not finite at params + t * direction on a random line through params "
            f"(where fastfd measures the loss's noise; relative spacings down to {smallest:.1g}, "
            "|t| <= 4): it must be finite near params in every direction, not only along the "
            "coordinate axes")
    if found:
        sigma, used = min(found)
        sigma = max(sigma, jitter)
        return NoiseEstimate(sigma, f0, MEASURED, n_evals, used, eps, _dtype_name(eps),
                             result_eps, f_scale)
    # no noise seen: the rounding of the loss's dtype, or of the smallest step f was seen to
    # take (a float32 staircase behind a float64 result), whichever is coarser
    staircase = quantum / math.sqrt(12.0) if math.isfinite(quantum) else 0.0
    sigma = max(result_eps * abs(f0), staircase, jitter)
    return NoiseEstimate(sigma, f0, NOT_DETECTED, n_evals, None, eps, _dtype_name(eps),
                         result_eps, f_scale)


def far_change(line_values, line, f0: float) -> float:
    """``f(x + d) - f(x)`` for a line step of 10% of ``max(1, |x|)``: one evaluation telling
    whether ``f`` depends on ``x`` at all (used when the noise lines never saw ``f`` change)."""
    return float(line_values(line(_FAR_MOVE), np.array([1.0]))[0]) - f0


def exact(f0: float, eps: float, reason: str | None = None) -> NoiseEstimate:
    """The estimate for evaluators with exact deltas: the rounding of the params' dtype."""
    extra = {} if reason is None else {"exact_reason": reason}
    return NoiseEstimate(eps * abs(f0), f0, EXACT, 0, None, eps, _dtype_name(eps), eps,
                         abs(f0), **extra)


def _dtype_name(eps: float) -> str:
    return "float32" if eps > 1e-10 else "float64"
