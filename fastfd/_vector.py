"""Vector-valued functions on the scalar engine's stages: Jacobians, JVPs, Hessians.

The data flow is the gradient check's, with a probe per Jacobian entry (or per row of
``J v``) instead of per gradient entry:

flatten (:mod:`._params`) -> noise of every output, from the same line evaluations
(:func:`fastfd._noise.difference_tables`) -> plan (column groups from the sparsity pattern,
:mod:`._coloring`; tangents) -> evaluate ``f`` at perturbed points (serially or on joblib
workers) -> combine into one :class:`~fastfd._combine.Level` per probe -> judge on the same
two-sided step ladder (:func:`fastfd.engine._refine`, :func:`fastfd._judge.decide`) -> report
(:func:`fastfd.report.build_check`).

A point perturbs a group of columns at once (Curtis-Powell-Reid): row ``i`` of
``f(x + sum_G h_j e_j) - f(x)`` belongs to the one column of ``G`` that row ``i`` depends on,
so a banded Jacobian costs two evaluations per group and step level, whatever ``n``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _judge as judge
from . import _noise, _validate
from ._combine import NOISE_SIGMAS, Ladder, Level, central_level
from ._params import flatten_leaves
from ._plan import chunk_slices
from ._stencils import CENTRAL
from ._steps import (
    LADDER_RATIO,
    LEVELS_DOWN,
    LEVELS_UP,
    actual_steps,
    bottom_level,
    default_steps,
    direction_levels,
    direction_step,
    exact_line,
    level_steps,
    scale,
    top_level,
)
from .errors import LossNotFiniteError
from .executors._base import add_note, modified_input_error
from .report import Judged

_CHUNKS_PER_WORKER = 4
_COMPLEX_ULPS = 8.0  # rounding of Im f per delta, as in fastfd._complex
_COMPLEX_STEP = 1e-20
_EXTRA_LINES = 3  # lines beyond the projection's, for outputs it left unresolved
_MAX_VECTOR_LINES = 9


def _flat_output(value, shape: tuple[int, ...] | None, imaginary: bool) -> np.ndarray:
    """The function's value as a flat float64 vector (its imaginary part for the complex
    step), checked against the shape seen at the params."""
    if isinstance(value, (list, tuple)) and not isinstance(value, np.ndarray):
        try:
            value = np.concatenate([np.ravel(np.asarray(v)) for v in value])
        except (TypeError, ValueError) as error:
            raise TypeError(f"the function must return an array (or a tuple of arrays); "
                            f"got {type(value).__name__} ({error})") from None
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiuc":
        raise TypeError(f"the function must return a numeric array; got dtype {arr.dtype}")
    if shape is not None and arr.shape != shape and arr.size != math.prod(shape):
        raise ValueError(f"the function returned shape {arr.shape} at a perturbed point but "
                         f"{shape} at the params: its output shape must not depend on params")
    if imaginary:
        return np.ascontiguousarray(np.imag(arr), dtype=np.float64).reshape(-1)
    if arr.dtype.kind == "c":
        raise TypeError("the function returned complex values at real params; a Jacobian "
                        "check needs a real function")
    return np.asarray(arr, dtype=np.float64).reshape(-1)


def evaluate_points(F: Callable, layout, x: np.ndarray, points, imaginary: bool,
                    shape) -> np.ndarray:
    """``F`` at ``x`` moved by each ``(idx, move)`` of ``points``, one row per point.

    Runs on a private copy of ``x`` (also in workers); imaginary moves give ``Im F``.
    """
    private = np.array(x, copy=True)
    size = math.prod(shape)
    out = np.empty((len(points), size))
    if imaginary:
        z = np.empty(x.size, dtype=np.result_type(x.dtype, np.complex64))
        z.real = x
    for k, (idx, move) in enumerate(points):
        if imaginary:
            z.imag = 0.0
            z.imag[idx] = move
            args = layout.views(z)
        else:
            private[idx] = (x[idx].astype(np.float64) + move).astype(x.dtype)
            args = layout.views(private)
        try:
            out[k] = _flat_output(F(args), shape, imaginary)
        except Exception as error:
            where = (f"{len(idx)} entries moved" if len(idx) > 1
                     else f"{layout.name(int(idx[0]))} moved by {float(move[0]):+.3g}")
            add_note(error, f"fastfd: raised while evaluating the function ({where}); the "
                     "caller's parameters are unchanged")
            raise
        if not imaginary:
            private[idx] = x[idx]
            if not np.array_equal(private, x):
                i = int(np.flatnonzero(private != x)[0])
                raise modified_input_error(layout.name(i))
    return out


@dataclass(frozen=True)
class VectorNoise:
    """The noise of every output of ``f`` at the params (duck-types NoiseEstimate)."""

    sigma_per_output: np.ndarray
    relative_per_output: np.ndarray
    source: str
    n_evals: int
    eps: float
    params_dtype: str

    @property
    def sigma(self) -> float:
        return float(np.median(self.sigma_per_output)) if self.sigma_per_output.size else 0.0

    @property
    def relative(self) -> float:
        return self.rel_noise

    @property
    def rel_noise(self) -> float:
        """The median relative noise of the outputs (at least the params' rounding unit)."""
        if not self.relative_per_output.size:
            return self.eps
        return float(min(1e-2, max(self.eps, np.median(self.relative_per_output))))

    def describe(self) -> str:
        if self.source == _noise.EXACT:
            return ("output noise: not measured; the complex step takes no difference of two "
                    f"values (rounding bound of {self.params_dtype})")
        rel = self.relative_per_output
        worst = float(np.max(rel)) if rel.size else 0.0
        head = (f"output noise ~{self.rel_noise:.1g} relative (median over {rel.size} outputs, "
                f"largest {worst:.1g}; measured from {self.n_evals} evaluations)")
        eps32 = float(np.finfo(np.float32).eps)
        if self.source == _noise.NOT_DETECTED:
            return (f"output noise: not detected along a random line ({self.n_evals} "
                    f"evaluations); assumed {self.params_dtype} rounding of every output")
        if self.rel_noise <= 8 * self.eps:
            return f"{head}: computed in about {self.params_dtype} precision"
        if self.params_dtype == "float64" and eps32 / 30 <= self.rel_noise <= 8 * eps32:
            return f"{head}: computed in about float32 precision although params are float64"
        return f"{head}: above {self.params_dtype} rounding (cancellation or a noisy function)"


class VectorSession:
    """State of one vector-valued check: the private ``x``, ``f(x)``, the evaluation count,
    and the measured noise per output.

    Parameters
    ----------
    F : callable
        ``F(params) -> array`` (or a tuple of arrays, concatenated).
    params : like :func:`fastfd.check_gradient`'s.
    n_jobs, backend : joblib settings for the perturbed points (``"threading"``, ``"loky"``,
        ``"multiprocessing"``); serial by default.
    """

    def __init__(self, F: Callable, params, *, n_jobs: int = 1, backend: str | None = None,
                 seed: int = 0):
        _validate.loss_callable(F)
        self.F = F
        self.layout, self.x, self._originals = flatten_leaves(params, "x")
        self.n_jobs = _validate.n_jobs(n_jobs)
        if backend == "dask":
            raise ValueError("vector-valued checks run serially or on local joblib backends "
                             "('threading', 'loky'); backend='dask' serves scalar losses")
        if backend is not None and backend not in ("threading", "loky", "multiprocessing"):
            raise ValueError(f"backend must be None, 'threading', 'loky' or 'multiprocessing'; "
                             f"got {backend!r}")
        self.backend = backend or ("loky" if self.n_jobs != 1 else None)
        self.seed = int(seed)
        self.eps = float(np.finfo(self.layout.dtype).eps)
        self.n_evals = 0
        began = time.perf_counter()
        try:
            raw = F(self.layout.views(self.x))
        except Exception as error:
            add_note(error, "fastfd: raised while evaluating the function at params; the "
                     "caller's parameters are unchanged")
            raise
        self.base_seconds = time.perf_counter() - began
        self.n_evals += 1
        if isinstance(raw, (list, tuple)):
            self.out_shape = (sum(int(np.size(v)) for v in raw),)
        else:
            self.out_shape = np.shape(raw)
        self.f0 = _flat_output(raw, None, False)
        if not np.all(np.isfinite(self.f0)):
            k = int(np.flatnonzero(~np.isfinite(self.f0))[0])
            raise LossNotFiniteError(f"the function is not finite at params (output {k} is "
                                     f"{self.f0[k]!r})")
        self.m = self.f0.size
        result_dtype = np.asarray(raw[0] if isinstance(raw, (list, tuple)) else raw).dtype
        self.result_eps = max(self.eps, float(np.finfo(result_dtype).eps)
                              if result_dtype.kind == "f" else self.eps)
        self.ensure_unmodified()

    # ------------------------------------------------------------------ evaluation

    def points(self, points: list, imaginary: bool = False) -> np.ndarray:
        """``F`` at each perturbed point (``(idx, move)`` pairs): shape ``(len, m)``."""
        self.n_evals += len(points)
        if not points:
            return np.zeros((0, self.m))
        if self.backend is None or len(points) < 2:
            return evaluate_points(self.F, self.layout, self.x, points, imaginary,
                                   self.out_shape)
        from joblib import Parallel, delayed, effective_n_jobs, parallel_config

        from .executors._workers import single_threaded_blas

        with parallel_config(backend=self.backend):
            workers = max(1, effective_n_jobs(self.n_jobs))
        chunks = chunk_slices(len(points), max(1, -(-len(points)
                                                    // (workers * _CHUNKS_PER_WORKER))))
        in_processes = self.backend != "threading"
        task = _in_worker if in_processes else evaluate_points
        limited = contextlib.nullcontext() if in_processes else single_threaded_blas()
        with limited, parallel_config(backend=self.backend, n_jobs=self.n_jobs):
            parts = Parallel()(delayed(task)(self.F, self.layout, self.x, points[c], imaginary,
                                             self.out_shape) for c in chunks)
        return np.concatenate(parts)

    def ensure_unmodified(self) -> None:
        from ._params import first_difference

        i = first_difference(self.layout, self.x, self._originals)
        if i is not None:
            raise modified_input_error(self.layout.name(i))

    # ------------------------------------------------------------------ noise

    def measure_noise(self) -> VectorNoise:
        """Noise of every output from one line of evaluations (Moré & Wild per output); the
        spacing is found on a random projection of the outputs."""
        rng = np.random.default_rng([self.seed, 3])
        gauss = rng.standard_normal(self.layout.size)
        u = np.random.default_rng([self.seed, 4]).standard_normal(self.m) / math.sqrt(self.m)
        lines: dict[float, np.ndarray] = {}
        spacing_of: dict[int, float] = {}

        def line(spacing: float) -> np.ndarray:
            d = exact_line(self.x, gauss * spacing * scale(self.x), _noise.T_MAX)
            spacing_of[id(d)] = spacing
            return d

        def values(d, ts):
            if d is None:
                vals = self.points([(np.arange(self.layout.size), np.zeros(self.layout.size))])
            else:
                idx = np.arange(self.layout.size)
                vals = self.points([(idx, t * d) for t in ts])
                if len(ts) == 2 * _noise.T_MAX:  # a whole line (not the far check)
                    lines[spacing_of.get(id(d), -1.0)] = vals
            return vals @ u

        f0u = float(self.f0 @ u)
        estimate = _noise.measure(values, line, f0u, self.eps, self.result_eps)
        n_evals = estimate.n_evals
        if estimate.source == _noise.NOT_DETECTED and _noise.far_change(values, line, f0u) == 0:
            raise ValueError("the function does not change when the parameters change (not "
                             "even when every entry moves by 10%): it does not depend on the "
                             "argument it is given")
        # every output has its own scale: lines at further spacings for the outputs that no
        # line has resolved yet (a few, whatever the number of outputs)
        best = np.full(self.m, np.inf)
        statuses: dict[float, np.ndarray] = {}

        def absorb(spacing_k: float) -> None:
            table = np.insert(lines[spacing_k], _noise.T_MAX, self.f0, axis=0)
            measured, statuses[spacing_k] = _noise.difference_tables(table)
            ok = statuses[spacing_k] == _noise.OK
            best[ok] = np.minimum(best[ok], measured[ok])

        for spacing_k in list(lines):
            absorb(spacing_k)
        ts = np.array([t for t in range(-_noise.T_MAX, _noise.T_MAX + 1) if t], dtype=float)
        for _ in range(_EXTRA_LINES):
            open_ = ~np.isfinite(best)
            spacings = [k for k in lines if k > 0]
            if not open_.any() or len(lines) >= _MAX_VECTOR_LINES or not spacings:
                break
            # most open outputs flat on the finest line: coarser lines; else finer ones
            flat = statuses[min(spacings)][open_] == _noise.TOO_SMALL
            if np.count_nonzero(flat) > open_.sum() / 2:
                spacing = max(spacings) * _noise.SPACING_JUMP
                if spacing > _noise.MAX_SPACING:
                    break
            else:
                spacing = min(spacings) / _noise.SPACING_JUMP
            d = line(spacing)
            if not d.any():
                break
            values(d, ts)
            n_evals += len(ts)
            absorb(spacing)
        seen = np.abs(self.f0)
        for vals in lines.values():
            seen = np.maximum(seen, np.max(np.abs(vals), axis=0))
        # outputs no line resolved: their dtype's rounding of the largest value seen
        sigma = np.where(np.isfinite(best), best, self.result_eps * seen)
        source = _noise.MEASURED if np.isfinite(best).any() else _noise.NOT_DETECTED
        rel = sigma / np.maximum(seen, np.finfo(float).tiny)
        rel[seen == 0] = self.eps
        return VectorNoise(sigma, rel, source, n_evals, self.eps,
                           "float32" if self.eps > 1e-10 else "float64")

    def exact_noise(self) -> VectorNoise:
        """The complex step's noise model: rounding of the imaginary part only."""
        return VectorNoise(np.zeros(self.m), np.full(self.m, self.eps), _noise.EXACT, 0,
                           self.eps, "float32" if self.eps > 1e-10 else "float64")


def _in_worker(F, layout, x, points, imaginary, shape):
    from .executors._workers import single_threaded_inner

    with single_threaded_inner():
        return evaluate_points(F, layout, x, points, imaginary, shape)


# ---------------------------------------------------------------------- probes


def _pairs(column: np.ndarray, levels: np.ndarray):
    """The distinct ``(column, level)`` pairs of the probes (a 2 x k array) and a function
    giving the probes of pair ``p``: one sort, whatever the number of probes."""
    span = 2 * (LEVELS_DOWN + LEVELS_UP + 2)
    key = column.astype(np.int64) * span + (np.asarray(levels, dtype=np.int64) + span // 2)
    unique, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
    pairs = np.stack([unique // span, unique % span - span // 2])
    return pairs, lambda p: order[bounds[p]:bounds[p + 1]]


class Columns:
    """Coordinate columns perturbed in groups: member columns, their steps, their levels."""

    def __init__(self, session: VectorSession, cols: np.ndarray, group: np.ndarray,
                 h0: np.ndarray, imaginary: bool):
        self.session, self.imaginary = session, imaginary
        self.cols, self.group, self.h0 = cols, group, h0  # per checked column
        self.n_groups = int(group.max()) + 1 if group.size else 0
        self.members = [np.flatnonzero(group == g) for g in range(self.n_groups)]
        self.cache: dict[tuple[int, int], np.ndarray] = {}  # (group, level) -> F rows

    def moves(self, g: int, level: int):
        """``(idx, plus, minus)``: params moved and the positive moves really taken."""
        local = self.members[g]
        idx = self.cols[local]
        nominal = level_steps(self.h0[local], np.full(len(local), level))
        if self.imaginary:
            taken = actual_steps(np.zeros(len(local), dtype=self.session.x.dtype), nominal)
            return idx, taken, taken
        x_at = self.session.x[idx]
        return idx, actual_steps(x_at, nominal), -actual_steps(x_at, -nominal)

    def evaluate(self, pcol_local: np.ndarray, levels: np.ndarray, rows: np.ndarray):
        """Deltas of probes ``(rows[k], column pcol_local[k])`` at ``levels[k]``:
        ``(plus, minus, step_plus, step_minus)``."""
        session = self.session
        pairs, members_of = _pairs(self.group[pcol_local], levels)
        points, steps, todo = [], [], []
        for g, level in pairs.T:
            idx, plus, minus = self.moves(int(g), int(level))
            steps.append((plus, minus))
            if (int(g), int(level)) in self.cache:
                continue
            todo.append((int(g), int(level)))
            points.append((idx, plus))
            if not self.imaginary:
                points.append((idx, -minus))
        per = 1 if self.imaginary else 2
        fresh = session.points(points, imaginary=self.imaginary)
        for k, key in enumerate(todo):
            self.cache[key] = fresh[per * k:per * (k + 1)]
        values = np.concatenate([self.cache[(int(g), int(level))] for g, level in pairs.T])
        n = len(pcol_local)
        delta_plus, delta_minus = np.empty(n), np.empty(n)
        step_plus, step_minus = np.empty(n), np.empty(n)
        for p, (g, _level) in enumerate(pairs.T):
            mine = members_of(p)
            position = np.searchsorted(self.members[int(g)], pcol_local[mine])
            plus, minus = steps[p]
            step_plus[mine], step_minus[mine] = plus[position], minus[position]
            r = rows[mine]
            if self.imaginary:
                delta_plus[mine] = values[per * p, r]
                delta_minus[mine] = -values[per * p, r]
            else:
                delta_plus[mine] = values[per * p, r] - session.f0[r]
                delta_minus[mine] = values[per * p + 1, r] - session.f0[r]
        return delta_plus, delta_minus, step_plus, step_minus


class Tangents:
    """Directions ``v`` (rows of ``V``) probed row by row of ``f``: ``(J v)_i``."""

    def __init__(self, session: VectorSession, V: np.ndarray, rel_noise: float):
        self.session, self.V = session, V
        self.s0 = np.array([direction_step(session.x, v, CENTRAL, rel_noise) for v in V])
        bounds = [direction_levels(s, v, session.x) for s, v in zip(self.s0, V)]
        self.bottom = np.array([b for b, _ in bounds], dtype=np.int64)
        self.top = np.array([t for _, t in bounds], dtype=np.int64)

    def evaluate(self, ptan: np.ndarray, levels: np.ndarray, rows: np.ndarray):
        session = self.session
        pairs, members_of = _pairs(ptan, levels)
        points, scales = [], []
        everything = np.arange(session.layout.size)
        for t, level in pairs.T:
            s = self.s0[t] * LADDER_RATIO ** float(level)
            points.append((everything, s * self.V[t]))
            points.append((everything, -s * self.V[t]))
            scales.append(s)
        values = session.points(points)
        n = len(ptan)
        dp, dm, sp = np.empty(n), np.empty(n), np.empty(n)
        for p in range(pairs.shape[1]):
            mine = members_of(p)
            r = rows[mine]
            dp[mine] = values[2 * p, r] - session.f0[r]
            dm[mine] = values[2 * p + 1, r] - session.f0[r]
            sp[mine] = scales[p]
        return dp, dm, sp, sp


def judge_probes(evaluate: Callable, rows: np.ndarray, analytic: np.ndarray,
                 sigma: np.ndarray, bottom: np.ndarray, top: np.ndarray, rtol: float,
                 atol: float, kink_fails: bool, exact: bool, eps: float,
                 row_scale_owner: np.ndarray, n_owners: int):
    """First level for every probe, then the ladder for the ones it does not confirm.

    ``evaluate(probes, levels) -> (plus, minus, step_plus, step_minus)``. Returns
    ``(status, cause, numeric, error, step, scale, forward, backward)``.
    """
    from .engine import _refine

    n = len(rows)

    def level_of(probes, levels) -> Level:
        dp, dm, sp, sm = evaluate(probes, levels)[:4]
        with np.errstate(divide="ignore", invalid="ignore"):
            if exact:
                own_p, own_m = _COMPLEX_ULPS * eps * np.abs(dp), _COMPLEX_ULPS * eps * np.abs(dm)
                level = central_level(dp, dm, sp, sm, analytic[probes], 0.0, own_p, own_m)
            else:
                level = central_level(dp, dm, sp, sm, analytic[probes], sigma[rows[probes]])
        lost = (sp == 0) | (sm == 0) | ~np.isfinite(dp) | ~np.isfinite(dm)
        if lost.any():
            level.central[lost] = np.nan
        return level

    everyone = np.arange(n)
    zero = np.zeros(n, dtype=np.int64)
    level0 = level_of(everyone, zero)
    numeric0 = level0.central
    if not np.all(np.isfinite(numeric0)):
        raise LossNotFiniteError("the function is not finite at params +- the first step of "
                                 "some entry; pass a smaller step")
    scale = judge.resolution_scale(
        analytic, numeric0, judge.array_scales(row_scale_owner, analytic, numeric0, n_owners))
    status = judge.first_pass(analytic, numeric0, level0.noise, rtol, atol, scale)
    numeric, error = numeric0.copy(), NOISE_SIGMAS * level0.noise
    step = level0.step.copy()
    cause = np.full(n, "", dtype=object)
    forward, backward = np.full(n, np.nan), np.full(n, np.nan)
    open_ = np.flatnonzero(status == judge.OPEN)
    if open_.size:
        ladder = Ladder(open_.size)
        ladder.record(np.arange(open_.size), zero[open_], level0.take(open_))
        outcome = _refine(ladder, lambda probes, levels: level_of(open_[probes], levels),
                          bottom[open_].copy(), top[open_].copy(), rtol, atol, scale[open_],
                          kink_fails=kink_fails)
        status[open_] = outcome.status
        cause[open_] = outcome.cause
        numeric[open_] = outcome.value
        error[open_] = outcome.error
        step[open_] = outcome.step
        forward[open_], backward[open_] = outcome.forward, outcome.backward
    return status, cause, numeric, error, step, scale, forward, backward


def column_levels(session: VectorSession, cols: np.ndarray, h0: np.ndarray, imaginary: bool):
    """``(bottom, top)`` ladder levels of each checked column."""
    x_at = session.x[cols]
    if imaginary:  # any tiny step is exact: a short ladder in case of a wrong gradient
        return np.full(len(cols), -2, dtype=np.int64), np.full(len(cols), 2, dtype=np.int64)
    return bottom_level(x_at, h0), top_level(x_at, h0)


def column_steps(session: VectorSession, cols: np.ndarray, step, rel_noise: float,
                 imaginary: bool) -> np.ndarray:
    """Nominal first steps of the checked columns."""
    x_at = session.x[cols]
    if imaginary:
        return _COMPLEX_STEP * scale(x_at)
    if step is None:
        return default_steps(x_at, CENTRAL, rel_noise)
    if np.ndim(step) == 0:
        return _validate.steps(step, len(cols))
    flat = session.layout.flatten_like(step, "step")
    return _validate.steps(flat, session.layout.size, session.layout.name)[cols]


def judged(ids, name_of, analytic, results, owner) -> Judged:
    status, cause, numeric, error, step, scale, forward, backward = results
    return Judged(ids=ids, name_of=name_of, analytic=analytic, numeric=numeric, error=error,
                  scale=scale, step=step, status=status, cause=cause, owner=owner,
                  forward=forward, backward=backward)
