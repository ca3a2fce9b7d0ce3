"""f-deltas -> derivative estimates with error bars.

Noise enters through two models: generic evaluators subtract two rounded losses, so every
f value carries the measured noise ``sigma`` (shared by ``f(x)``); exact evaluators return
deltas with an error of their own (``delta_sigma``). The noise of ``sum_j w_j delta_j`` follows
from the weights either way.

Truncation is measured, not assumed: on the refinement ladder (steps ``h0 * 4**k``) the
estimate at level ``k`` is bounded by its difference to level ``k + 1`` once the levels show
that bound holds (they agree within noise, or their differences contract towards smaller
steps as ``h**2`` predicts; see :meth:`Ladder.best`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._stencils import CENTRAL, Stencil, derivative_weights
from ._steps import LADDER_RATIO, LEVELS_DOWN, LEVELS_UP

# Error bars count this many standard deviations of the noise: rounding noise is bounded and
# roughly Gaussian once summed, so a discrepancy beyond 4 sigma is not noise.
NOISE_SIGMAS = 4.0
# Differences between levels must shrink at least this much per level towards smaller steps
# before they bound the truncation: asymptotically they shrink by LADDER_RATIO**2 = 16, while
# far outside that regime (steps beyond a period, estimates decaying like 1/h) they can
# shrink by 4; 1/8 tells the two apart.
_CONTRACTION = 0.125
_SAFETY = 2.0
_ASYMPTOTIC_GAIN = 15.0  # LADDER_RATIO**2 - 1: how much faster the coarser error grows
# A smooth function's gap F - B follows h f'' to within a relative (h f''''/f'')**2 / 12;
# 10% allows steps up to about where the central difference leaves its asymptotic regime.
_GAP_SLACK = 0.1
# What is left of the gap's excess is charged, doubled, to the truncation bound: a kink adds
# to the central difference at most about the excess it leaves in the gap.
_KINK_FACTOR = 2.0
N_LEVELS = LEVELS_DOWN + LEVELS_UP + 1


def stencil_estimates(stencil: Stencil, moves: np.ndarray, deltas: np.ndarray,
                      value_sigma: float, delta_sigma: np.ndarray | None = None):
    """Derivatives from ``deltas[j] = f(x + moves[j]) - f(x)`` at the stencil's perturbed nodes.

    ``moves`` are the displacements really taken, one row per perturbed node and one column
    per entry; the weights are derived for exactly those nodes. Returns ``(values, noise)``,
    the noise being one standard deviation.
    """
    rows, n = len(stencil.offsets), deltas.shape[1]
    nodes = np.zeros((rows, n))
    full = np.zeros((rows, n))
    own = np.zeros((rows, n))
    perturbed = [j for j, o in enumerate(stencil.offsets) if o != 0]
    nodes[perturbed] = moves
    full[perturbed] = deltas
    if delta_sigma is not None:
        own[perturbed] = delta_sigma
    w = derivative_weights(nodes)
    values = np.sum(w * full, axis=0)
    var = value_sigma**2 * np.sum(w * w, axis=0) + np.sum((w * own) ** 2, axis=0)
    return values, np.sqrt(var)


@dataclass(frozen=True)
class Level:
    """Central and one-sided quotients of many probes at one step each (arrays of equal length).

    ``noise`` is one standard deviation of ``central``; ``noise_side`` that of ``forward`` and
    ``backward``. ``analytic`` is the analytic value to compare at this step (constant for a
    coordinate; for a direction it follows the displacement really taken).
    """

    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    noise: np.ndarray
    noise_side: np.ndarray
    step: np.ndarray
    analytic: np.ndarray

    def take(self, index) -> Level:
        return Level(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def central_level(delta_plus, delta_minus, step_plus, step_minus, analytic,
                  value_sigma: float, sigma_plus=None, sigma_minus=None) -> Level:
    """A :class:`Level` from ``f(x + h+) - f(x)`` and ``f(x - h-) - f(x)`` with the actual
    steps ``h+, h- > 0``."""
    moves = np.stack([-step_minus, step_plus])
    deltas = np.stack([delta_minus, delta_plus])
    own = None if sigma_plus is None else np.stack([sigma_minus, sigma_plus])
    central, noise = stencil_estimates(CENTRAL, moves, deltas, value_sigma, own)
    side_var_plus = 2 * value_sigma**2 + (0 if sigma_plus is None else sigma_plus**2)
    side_var_minus = 2 * value_sigma**2 + (0 if sigma_minus is None else sigma_minus**2)
    noise_side = np.maximum(np.sqrt(side_var_plus) / step_plus,
                            np.sqrt(side_var_minus) / step_minus)
    return Level(
        central=central,
        forward=delta_plus / step_plus,
        backward=-delta_minus / step_minus,
        noise=noise,
        noise_side=noise_side,
        step=0.5 * (step_plus + step_minus),
        analytic=np.broadcast_to(np.asarray(analytic, dtype=np.float64), central.shape).copy(),
    )


@dataclass(frozen=True)
class Best:
    """The estimate of least error bar per probe, and what the bar is made of."""

    value: np.ndarray
    error: np.ndarray  # truncation + NOISE_SIGMAS * noise; inf where no level pair exists
    truncation: np.ndarray
    noise: np.ndarray  # one standard deviation
    level: np.ndarray  # ladder level of the estimate (int)
    analytic: np.ndarray


class Ladder:
    """Central differences of ``n`` probes at the ladder levels evaluated so far.

    Level ``k`` (``-LEVELS_DOWN <= k <= LEVELS_UP``) is stored in row ``k + LEVELS_DOWN``;
    rows not evaluated hold NaN. Each probe's evaluated levels form a contiguous range
    ``[lo, hi]``.
    """

    fields = ("central", "forward", "backward", "noise", "noise_side", "step", "analytic")

    def __init__(self, n: int):
        for name in self.fields:
            setattr(self, name, np.full((N_LEVELS, n), np.nan))
        self.lo = np.full(n, LEVELS_UP + 1, dtype=np.int64)
        self.hi = np.full(n, -LEVELS_DOWN - 1, dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.lo)

    def record(self, probes: np.ndarray, levels: np.ndarray, level: Level) -> None:
        rows = np.asarray(levels) + LEVELS_DOWN
        for name in self.fields:
            getattr(self, name)[rows, probes] = getattr(level, name)
        self.lo[probes] = np.minimum(self.lo[probes], levels)
        self.hi[probes] = np.maximum(self.hi[probes], levels)

    def at(self, name: str, levels: np.ndarray, probes: np.ndarray | None = None) -> np.ndarray:
        """Field ``name`` at one level per probe."""
        probes = np.arange(self.size) if probes is None else probes
        return getattr(self, name)[np.asarray(levels) + LEVELS_DOWN, probes]

    def best(self) -> Best:
        """Per probe, the level ``k`` minimizing ``T_k + NOISE_SIGMAS * N_k``.

        The truncation ``T_k`` of level ``k`` is bounded only where the levels show it (and
        their one-sided gaps shrink as a smooth function's do, ``|F - B| = h |f''|``): when
        the two agree within their noise (then ``15 T_k``, the asymptotic difference, is below
        that noise: ``T_k <= 2 (|D_{k+1} - D_k| + noise) / 15``), or when the differences
        contract towards smaller steps at a ratio ``c <= 1/2`` (``T_k <= 2 |D_{k+1} - D_k|
        c / (1 - c)``, at most ``|D_{k+1} - D_k|``; ``c = 1/16`` gives the Richardson bound,
        doubled for safety). Without either the estimate has no error
        bar (inf): large steps outside the asymptotic regime prove nothing either way.
        """
        d, noise = self.central, self.noise
        diff = np.abs(d[1:] - d[:-1])  # row k: |D_{k+1} - D_k|, NaN unless both evaluated
        pair_noise = NOISE_SIGMAS * np.sqrt(noise[1:] ** 2 + noise[:-1] ** 2)
        agree = diff <= pair_noise
        trunc = np.full(diff.shape, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = diff[:-1] / diff[1:]  # row k: diff_k / diff_{k+1}
            contract = ratio <= _CONTRACTION
            trunc[:-1] = np.where(
                contract, diff[:-1] * np.minimum(1.0, _SAFETY * ratio / (1.0 - ratio)), np.inf)
        # agreeing within noise: |T_{k+1} - T_k| = 15 T_k asymptotically is below that noise
        trunc = np.where(agree, _SAFETY * (diff + pair_noise) / _ASYMPTOTIC_GAIN, trunc)
        # either bound assumes a smooth function, whose one-sided gap F - B = h f'' shrinks
        # by exactly 4 per level. A kink crossed within the step (a hinge near its margin)
        # adds to the gap what it adds, halved, to the central difference, and that part
        # does not shrink: a gap off the smooth prediction leaves the level uncertified
        gap = self.forward - self.backward
        gap_noise = NOISE_SIGMAS * 2.0 * self.noise_side
        # row k: how far the gap at level k is off a quarter of the gap at level k + 1
        excess = np.maximum(np.abs(gap[:-1] - gap[1:] / LADDER_RATIO) - gap_noise[:-1], 0.0)
        clear = excess <= _GAP_SLACK * np.abs(gap[:-1])
        # both pairs a bound rests on (k, k+1 and k+1, k+2): one can match by coincidence
        above = np.vstack([excess[1:], np.full((1, self.size), np.nan)])
        clear_above = np.vstack([clear[1:], np.ones((1, self.size), bool)]) | np.isnan(above)
        kink_part = _KINK_FACTOR * np.fmax(excess, above)
        trunc = np.where(clear & clear_above, np.fmax(trunc, kink_part), np.inf)
        trunc[np.isnan(diff)] = np.nan
        error = trunc + NOISE_SIGMAS * noise[:-1]
        certified = np.isfinite(error)
        any_pair = certified.any(axis=0)
        row = np.argmin(np.where(certified, error, np.inf), axis=0)
        cols = np.arange(self.size)
        lo_row = np.clip(self.lo, -LEVELS_DOWN, LEVELS_UP) + LEVELS_DOWN
        row = np.where(any_pair, row, lo_row)  # nothing certified: the smallest step so far
        pick = (row, cols)
        safe_row = np.minimum(row, N_LEVELS - 2)
        return Best(
            value=d[pick],
            error=np.where(any_pair, error[safe_row, cols], np.inf),
            truncation=np.where(any_pair, trunc[safe_row, cols], np.inf),
            noise=noise[pick],
            level=row - LEVELS_DOWN,
            analytic=self.analytic[pick],
        )

    def agree(self, levels: np.ndarray) -> np.ndarray:
        """Whether levels ``k`` and ``k + 1`` agree within their noise (False if either is
        missing), one ``k`` per probe."""
        k = np.clip(np.asarray(levels), -LEVELS_DOWN, LEVELS_UP - 1)
        here, above = self.at("central", k), self.at("central", k + 1)
        pair_noise = NOISE_SIGMAS * np.hypot(self.at("noise", k), self.at("noise", k + 1))
        return np.abs(above - here) <= pair_noise

    def gap(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``|forward - backward|`` at one level per probe, and its noise (one sigma)."""
        forward, backward = self.at("forward", levels), self.at("backward", levels)
        return np.abs(forward - backward), 2.0 * self.at("noise_side", levels)
