"""Orchestration: flatten -> plan -> evaluate -> combine -> compare -> report.

This module wires the pieces together; the numerics live in ``_steps``, ``_stencils``,
``_combine`` and ``_compare``, the evaluation in ``executors``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np

from . import _compare as cmp
from ._combine import (
    LADDER_LEVELS,
    LADDER_RATIO,
    Quotients,
    quotients,
    stencil_noise,
    value_floor,
)
from ._params import Layout, checked_leaves, dot, first_difference, flatten, gather
from ._plan import ladder_plan, stencil_plan
from ._sampling import (
    confidence_statement,
    parse_sample,
    parse_seed,
    random_directions,
    stratified_sample,
)
from ._stencils import STENCILS, Stencil, apply_stencil, get_stencil
from ._steps import checked_actual_steps, default_steps, validate_steps
from .executors import Evaluator, select_evaluator
from .executors._base import annotate, loss_scalar
from .report import ArraySummary, Entry, GradientCheck

AUTO_BUDGET_S = 10.0

# Parameters shared by numerical_gradient and check_gradient, written once.
_EXECUTION_DOC = """\
    n_jobs : int
        Workers for the perturbed evaluations (joblib convention: ``-1`` = all cores). Results
        equal the serial run's, bit for bit when the loss does the same arithmetic in
        every worker.
    backend : str, optional
        ``"loky"`` (processes; the default when ``n_jobs != 1``) pays off for losses of about
        0.1 ms and more: a chunk of hundreds of evaluations costs about a millisecond to
        schedule, and the loss and ``x`` are sent to each worker once. ``"threading"`` avoids
        pickling but helps only when the loss releases the GIL (large BLAS calls, numba
        ``nogil``). ``"dask"`` runs the same chunks on the active ``distributed.Client``
        (``with distributed.Client(...):`` around the call; ``pip install 'fastfd[dask]'``).
        An ``@njit`` loss of one flat float64 vector runs in a compiled ``prange`` driver with
        ``n_jobs`` threads, and models from :mod:`fastfd.models` use their exact incremental
        evaluator: both are faster than any process pool.
    progress : bool
        Show a tqdm progress bar (evaluations done / total, rate, ETA); off by default.
    evaluator : Evaluator or str, optional
        How to evaluate perturbed losses (an :class:`~fastfd.executors.Evaluator` or one of
        ``"serial"``, ``"joblib"``, ``"numba"``, ``"batched"``); chosen automatically.
    batched : bool
        ``f`` takes a stack of K parameter sets (every array with a leading axis of length K)
        and returns K losses; perturbations are sent in stacks (a reused buffer, sized to
        bound memory), which removes the per-call Python overhead that dominates losses of
        a few microseconds.
"""

_PROBE_COORDS = 16
_N_WORST = 5
_INCONCLUSIVE_WEAK_FRACTION = 0.9
_LOCALIZE_LIMIT = 8  # wrong entries named per failing direction before bisection stops


class _Run:
    """State shared by the steps of one call: layout, private x, evaluator, base value."""

    def __init__(self, f, params, method, evaluator, n_jobs, backend, progress, batched=False):
        if not callable(f):
            raise TypeError(f"f must be a callable loss f(params) -> float; got {type(f).__name__}")
        self.stencil: Stencil = get_stencil(method)
        self.params = params
        self.layout: Layout
        self.layout, self.x = flatten(params, getattr(f, "param_name", "x"))
        self.evaluator: Evaluator = select_evaluator(
            f, self.layout, evaluator=evaluator, n_jobs=n_jobs, backend=backend, batched=batched
        )
        self.progress = progress
        self.n_evals = 0
        self._x_absmax = None  # max |x|, for direction steps (computed once)
        began = time.perf_counter()
        raw = self._guarded(lambda: self.evaluator.value(self.x), "params")
        self.base_seconds = time.perf_counter() - began
        self.n_evals += 1
        self.f0 = loss_scalar(raw)
        if not np.isfinite(self.f0):
            raise ValueError(f"the loss is not finite at params (got {self.f0!r})")
        eps = np.finfo(self.layout.dtype).eps
        raw_dtype = np.asarray(raw).dtype
        if raw_dtype.kind == "f":
            eps = max(eps, np.finfo(raw_dtype).eps)
        self.eps_loss = float(eps)  # rounding of the loss: the coarser of params and result

    @staticmethod
    def _guarded(call, where):
        try:
            return call()
        except Exception as error:
            annotate(error, where)
            raise

    @contextlib.contextmanager
    def progress_bar(self, total: int, desc: str):
        if not self.progress or total == 0:
            yield
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=desc, unit="eval") as bar:
            self.evaluator.progress = bar.update
            try:
                yield
            finally:
                self.evaluator.progress = None

    def nominal_steps(self, step, coords: np.ndarray, stencil: Stencil) -> np.ndarray:
        """Nominal steps at ``coords`` from the user's ``step`` or the default rule.

        ``step`` may be a scalar, an array of the single-array params' shape, or a structure
        like ``params``.
        """
        x_at = self.x[coords]
        if isinstance(step, np.ndarray) and step.ndim == 0:
            step = step.item()
        if step is None:
            special = self.evaluator.default_steps(x_at, stencil)
            return special if special is not None else default_steps(x_at, stencil)
        if not isinstance(step, (dict, list, tuple, np.ndarray)):
            return validate_steps(step, len(coords), x_at, stencil)
        flat = self.layout.flatten_like(step, "step")
        return validate_steps(flat, self.layout.size, self.x, stencil, self.layout.name)[coords]

    def deltas(self, coords: np.ndarray, offsets: np.ndarray, stage: str) -> np.ndarray:
        """``f(x + offsets[k] e[coords[k]]) - f(x)``, with a clear error if one is not finite."""
        with self.progress_bar(len(coords), f"fastfd {stage}"):
            d = self.evaluator.perturbed_deltas(self.x, coords, offsets, self.f0)
        self.n_evals += len(coords)
        bad = ~np.isfinite(d)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"the loss is not finite at {self.layout.name(coords[k])} perturbed by "
                f"{offsets[k]:+.3g} (f = {float(self.f0 + d[k])!r}); the step leaves the loss's "
                "domain: pass a smaller step"
            )
        return d

    def floors(self, deltas: np.ndarray, coords, offsets) -> np.ndarray:
        """Rounding floors of perturbed deltas (shapes of ``deltas``, ``coords``, ``offsets``)."""
        floor = self.evaluator.rounding_floor(
            self.f0, deltas.reshape(-1), self.eps_loss, coords.reshape(-1), offsets.reshape(-1))
        return np.asarray(floor).reshape(deltas.shape)

    def first_pass(self, coords, nominal):
        """Derivative estimates and their rounding floors at ``coords`` with the run's stencil.

        Returns ``(estimates, noise, steps)``.
        """
        return self.stencil_pass(coords, nominal)[:3]

    def stencil_pass(self, coords, nominal):
        """:meth:`first_pass` plus, for the central stencil, its :class:`Quotients` (the first
        level of the step ladder, so refining suspects does not evaluate it again)."""
        names = self.layout.name
        x_at = self.x[coords]
        steps = checked_actual_steps(x_at, nominal, lambda k: names(coords[k]))
        plan_coords, offsets = stencil_plan(coords, steps, self.stencil)
        # the move really taken at every node: x - h (or x + 2h) need not be representable
        offsets = checked_actual_steps(np.tile(x_at, len(offsets) // len(coords)), offsets,
                                       lambda k: names(plan_coords[k]))
        deltas = self.deltas(plan_coords, offsets, "differences").reshape(-1, len(coords))
        estimates = apply_stencil(self.stencil, deltas, steps, offsets.reshape(deltas.shape))
        weights = [w for _, w in self.stencil.perturbed]
        floors = self.floors(deltas, plan_coords, offsets)
        level0 = None
        if self.stencil.name == "central":  # nodes -1, +1: rows 0 and 1
            moves = offsets.reshape(deltas.shape)
            level0 = quotients(deltas[1], deltas[0], moves[1], -moves[0], floors[1], floors[0])
        return estimates, stencil_noise(weights, floors, steps), steps, level0

    def ladder(self, coords, nominal, level0: Quotients | None = None):
        """Quotients of suspects on the step ladder, one :class:`Quotients` per level;
        ``level0`` (from :meth:`stencil_pass`) replaces the evaluations of the first level."""
        skip = 0 if level0 is None else 1
        plan_coords, offsets, steps_plus, steps_minus = ladder_plan(
            coords, self.x[coords], nominal / LADDER_RATIO**skip, LADDER_LEVELS - skip)
        shape = (len(steps_plus), 2, len(coords))
        deltas = self.deltas(plan_coords, offsets, "refining suspects").reshape(shape)
        floors = self.floors(deltas, plan_coords, offsets)
        levels = [
            quotients(d[0], d[1], hp, hm, fl[0], fl[1])
            for d, fl, hp, hm in zip(deltas, floors, steps_plus, steps_minus)
        ]
        return levels if level0 is None else [level0, *levels]

    def direction_deltas(self, direction: np.ndarray, scales, support=slice(None)):
        """``f(x + s * direction) - f(x)`` for every scale; ``direction`` is zero outside
        ``support``. Callers check with :meth:`displacement` that the steps are not lost."""
        values = self.evaluator.direction_values(self.x, direction, np.asarray(scales, float),
                                                 support=support)
        self.n_evals += len(scales)
        bad = ~np.isfinite(values)
        if bad.any():
            scale = scales[int(np.flatnonzero(bad)[0])]
            raise ValueError(
                f"the loss is not finite at params + {scale:.3g} * direction; pass a smaller step"
            )
        return values - self.f0

    def displacement(self, direction: np.ndarray, scale: float, support=slice(None)):
        """What ``x + scale * direction`` really moves (on ``support``) after rounding to the
        params' dtype, computed as the evaluators compute the point; raises if nothing moves."""
        xs = self.x[support]
        moved = scale * direction[support]
        moved += xs  # float64, as in the evaluators' np.add(x, s * direction)
        if self.layout.dtype != np.float64:
            moved = moved.astype(self.layout.dtype).astype(np.float64)
        moved -= xs
        if not moved.any():
            raise ValueError(
                f"step {abs(scale):.3g} along the direction is lost to rounding: params + "
                f"step * direction == params in {self.layout.dtype}; use a larger step "
                "(or the default)")
        return moved

    def direction_step(self, direction: np.ndarray, step, stencil: Stencil = STENCILS["central"]
                       ) -> float:
        """Step along ``direction``: a scalar ``step``, else the coordinate rule for its
        largest component (per-entry steps do not apply to a direction)."""
        if isinstance(step, np.ndarray) and step.ndim == 0:
            step = step.item()
        if step is not None and not isinstance(step, (dict, list, tuple, np.ndarray)):
            return float(validate_steps(step, 1, self.x[:1], STENCILS["central"])[0])
        biggest = float(np.max(np.abs(direction)))
        if biggest == 0:
            raise ValueError("direction is zero; pass a non-zero direction")
        if self._x_absmax is None:
            self._x_absmax = float(np.max(np.abs(self.x)))
        rule = default_steps(np.array([self._x_absmax], dtype=self.layout.dtype), stencil)[0]
        return float(rule / biggest)

    def ensure_unmodified(self) -> None:
        """Raise if the loss changed its argument in place (the numbers would be meaningless)."""
        i = first_difference(self.layout, self.x, self.params)
        if i is not None:
            raise RuntimeError(
                f"the loss modified its input in place (first at {self.layout.name(i)}); fastfd "
                "evaluates it on a private copy, so your arrays are unchanged, but the results "
                "are meaningless: make the loss leave its argument unchanged"
            )


def _check_tolerance(value, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a non-negative float or None; got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite float; got {value!r}")
    return float(value)


def default_rtol(dtype) -> float:
    """Relative tolerance for params of ``dtype``: 1e-5 for float64, about 1e-2 for float32."""
    eps = float(np.finfo(dtype).eps)
    return min(0.1, max(1e-5, 1e5 * eps))


def numerical_gradient(
    f: Callable,
    params,
    *,
    method: str = "central",
    step=None,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
    evaluator: Evaluator | str | None = None,
    batched: bool = False,
):
    """Finite-difference gradient of a scalar loss, with the structure of ``params``.

    Parameters
    ----------
    f : callable
        ``f(params) -> float``. It receives views of a private copy shaped like ``params``;
        the caller's arrays are never modified.
    params : ndarray or dict/list/tuple of ndarrays
        Float32 or float64 parameters (one dtype for all arrays).
    method : {"central", "forward", "backward", "central4"}
        Stencil; ``central`` is second order, ``central4`` fourth order.
    step : float, array or structure like params, optional
        Step per entry. Default: ``EPS**(1/3) * max(1, |x|)`` for central,
        ``EPS**(1/2) * max(1, |x|)`` for one-sided, ``EPS**(1/5) ...`` for ``central4``,
        with ``EPS`` of the params' dtype. Models from :mod:`fastfd.models` use a smaller step
        because they compute differences without cancellation.
    %(execution)s

    Returns
    -------
    ndarray or dict/list/tuple of ndarrays
        Same structure, shapes and dtype as ``params``.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> g = fastfd.numerical_gradient(lambda p: np.sum(p["w"] ** 2) + p["b"][0],
    ...                               {"w": np.array([1.0, -2.0]), "b": np.zeros(1)})
    >>> np.round(g["w"], 6), np.round(g["b"], 6)
    (array([ 2., -4.]), array([1.]))
    """
    run = _Run(f, params, method, evaluator, n_jobs, backend, progress, batched)
    coords = np.arange(run.layout.size)
    estimates, _, _ = run.first_pass(coords, run.nominal_steps(step, coords, run.stencil))
    run.ensure_unmodified()
    return run.layout.unflatten(estimates)


def directional_derivative(
    f: Callable, params, direction, *, method: str = "central", step: float | None = None
) -> float:
    """Finite-difference derivative of ``f`` along ``direction``: ``grad(f) . direction``.

    Parameters
    ----------
    f : callable
        ``f(params) -> float``.
    params : ndarray or dict/list/tuple of ndarrays
        Point of evaluation (float32 or float64).
    direction : same structure as params
        The direction (not normalized).
    method : {"central", "forward", "backward", "central4"}
    step : float, optional
        Multiple of ``direction`` to step. Default: the coordinate rule applied to the
        direction's largest component.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> round(fastfd.directional_derivative(lambda x: x @ x, np.array([1.0, 2.0]),
    ...                                     np.array([1.0, 1.0])), 6)
    6.0
    """
    run = _Run(f, params, method, None, 1, None, False)
    v = run.layout.flatten_like(direction, "direction")
    t = run.direction_step(v, step, run.stencil)
    scales = [o * t for o, _ in run.stencil.perturbed]
    for scale in scales:
        run.displacement(v, scale)  # raises if the step is lost to rounding
    deltas = run.direction_deltas(v, scales)
    run.ensure_unmodified()
    return float(np.dot([w for _, w in run.stencil.perturbed], deltas) / t)


def check_gradient(
    f: Callable,
    grad,
    params,
    *,
    sample="auto",
    directions: int = 0,
    method: str = "central",
    step=None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
    evaluator: Evaluator | str | None = None,
    batched: bool = False,
) -> GradientCheck:
    """Compare an analytic gradient with finite differences and give an honest verdict.

    Every checked entry must satisfy ``|a - n| <= rtol * max(|a|, |n|) + atol + noise``
    where ``noise`` is the rounding floor of the difference quotient. Entries that miss are
    refined on a step ladder (h, h/4, h/16, h/64) before anything is called a failure:
    truncation error is removed by Richardson extrapolation, kinks (hinge, ReLU, ``|x|``)
    are detected by the persistent gap between one-sided differences and excluded (the
    analytic value must still lie between them), and entries swamped by rounding are
    reported as unresolved.

    Parameters
    ----------
    f : callable
        ``f(params) -> float``; receives views of a private copy of ``params``.
    grad : callable or structure like params
        ``grad(params)`` returning the analytic gradient, or the gradient itself.
    params : ndarray or dict/list/tuple of ndarrays
        Float32 or float64 parameters.
    sample : "auto", "all", None, int or float
        ``"auto"`` checks every entry when the estimated cost (timed on the first
        evaluations) fits about 10 s, otherwise a stratified sample that does; an int ``k``
        checks about ``k`` entries, a float in (0, 1] that fraction. Samples take entries from
        every parameter array (at least ``min(size, 5)``) and from the first and last slice
        along every axis. The same seed gives the same sample.
    directions : int
        Also check this many random unit directions (``g . v`` against a directional
        difference, two evaluations each).
    method : {"central", "forward", "backward", "central4"}
        Stencil of the first pass.
    step : float, array or structure like params, optional
        Steps; default from the dtype (see :func:`numerical_gradient`).
    rtol, atol : float, optional
        Tolerances; ``rtol`` defaults to 1e-5 for float64 and 1e-2 for float32, ``atol``
        to 0 (the rounding floor already acts as an absolute tolerance).
    seed : int
        Seed of the sample and of the random directions.
    %(execution)s

    Returns
    -------
    GradientCheck
        Verdict, metrics, worst entries, kinks; ``str()`` gives a readable report.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> loss = lambda x: 0.5 * x @ A @ x
    >>> fastfd.check_gradient(loss, lambda x: A @ x, np.array([1.0, -1.0])).verdict
    'pass'
    >>> fastfd.check_gradient(loss, lambda x: A.T @ x + 1e-3, np.array([1.0, -1.0])).verdict
    'fail'
    """
    start = time.perf_counter()
    # validate the cheap arguments before the first loss evaluation
    _check_tolerance(rtol, "rtol", 0.0)
    atol = _check_tolerance(atol, "atol", 0.0)
    if isinstance(directions, (bool, np.bool_)) or not isinstance(directions, (int, np.integer)):
        raise TypeError(f"directions must be a non-negative int; got {directions!r}")
    if directions < 0:
        raise ValueError(f"directions must be a non-negative int; got {directions}")
    rng = parse_seed(seed)
    parse_sample(sample, 2)
    run = _Run(f, params, method, evaluator, n_jobs, backend, progress, batched)
    layout = run.layout
    rtol = _check_tolerance(rtol, "rtol", default_rtol(layout.dtype))
    sample_k = parse_sample(sample, layout.size)

    analytic_leaves = _analytic(run, grad)
    del grad

    reasons: list[str] = []
    if sample_k == "auto":
        sample_k = _auto_sample(run, step, reasons)
    if sample_k is None:
        coords = np.arange(layout.size)
    else:
        coords = stratified_sample(layout, sample_k, rng)

    analytic, numeric, noise, status, steps = _check_coords(
        run, analytic_leaves, coords, step, rtol, atol)
    direction_entries, localized = _check_directions(
        run, analytic_leaves, directions, seed, step, rtol, atol)
    if localized.size:
        reasons.append(
            f"a failing direction was localized by bisection to {localized.size} "
            f"entr{'y' if localized.size == 1 else 'ies'}: {', '.join(layout.names(localized))}")
        localized_entries = _entries(layout, localized, *_check_coords(
            run, analytic_leaves, localized, step, rtol, atol)[:4])
    else:
        localized_entries = ()
    run.ensure_unmodified()
    def second_opinion():
        from .diagnostics import _second_opinion  # diagnostics builds on this module

        return _second_opinion(run, analytic_leaves, seed)

    return _report(
        run, coords, analytic, numeric, noise, status, steps, direction_entries,
        localized_entries, second_opinion,
        rtol=rtol, atol=atol, sampled=sample_k is not None, reasons=reasons,
        elapsed=time.perf_counter() - start,
    )


def _analytic(run: _Run, grad) -> list[np.ndarray]:
    """The analytic gradient's arrays, validated, without a flat copy (O(P) memory matters
    for huge models). A callable gets views of the private copy; if it writes to them, the
    copy is restored from the caller's (untouched) arrays."""
    layout, x = run.layout, run.x
    called = callable(grad)
    if called:
        grad = run._guarded(lambda: grad(layout.views(x)), "params (in grad)")
    leaves = checked_leaves(layout, grad, "gradient")
    # a gradient aliasing the buffer would change under the perturbations: copy it (before
    # the buffer is restored below); keep every array contiguous so that partial dot
    # products never copy whole arrays
    leaves = [np.array(leaf) if np.shares_memory(leaf, x) else np.ascontiguousarray(leaf)
              for leaf in leaves]
    if called and first_difference(layout, x, run.params) is not None:
        for leaf, (_, s) in zip(checked_leaves(layout, run.params, "params"), layout.slices()):
            x[s] = leaf.reshape(-1)  # grad wrote into its argument: undo it
    return leaves


def _auto_sample(run: _Run, step, reasons: list[str]):
    """None (check all) if the estimated cost fits AUTO_BUDGET_S, else a sample size that does."""
    size = run.layout.size
    n_offsets = len(run.stencil.perturbed)
    if run.base_seconds * size * n_offsets <= AUTO_BUDGET_S:
        return None  # even at the cost of a full evaluation each, everything fits
    # Time growing probes: per-call overhead (caches, process pools) is amortized by the
    # larger ones, so a fast evaluator is not mistaken for a slow one.
    n_probe = min(size, _PROBE_COORDS)
    warm = np.arange(n_probe)  # first call: pools start, kernels compile; not timed
    run.first_pass(warm, run.nominal_steps(step, warm, run.stencil))
    while True:
        probe = np.arange(n_probe)
        began = time.perf_counter()
        run.first_pass(probe, run.nominal_steps(step, probe, run.stencil))
        elapsed = time.perf_counter() - began
        per_eval = elapsed / (n_probe * n_offsets)
        estimate = per_eval * size * n_offsets
        bigger = min(size, 16 * n_probe)
        if estimate <= AUTO_BUDGET_S or bigger == n_probe or 16 * elapsed > AUTO_BUDGET_S / 10:
            break
        n_probe = bigger
    if estimate <= AUTO_BUDGET_S:
        return None
    k = max(min(size, 100), int(AUTO_BUDGET_S / (per_eval * n_offsets)))
    if k >= size:
        return None
    reasons.append(
        f"sample='auto': checking all {size} entries would take about {estimate:.0f} s, so a "
        f"stratified sample of {k} entries fits the {AUTO_BUDGET_S:.0f} s budget "
        "(pass sample='all' to check everything)"
    )
    return k


def _judge_direction(run: _Run, analytic_leaves, v: np.ndarray, step, rtol, atol,
                     support: slice | None = None):
    """``(analytic, numeric, status)`` of the directional derivative along ``v`` (restricted
    to the block ``support`` of coordinates when given).

    The analytic side is ``g . (d+ + d-) / 2s`` with the displacements ``d+-`` really taken
    after rounding, so float32 rounding of ``x + s v`` does not masquerade as a wrong gradient.
    Suspects go down the same step ladder as coordinates.
    """
    support = slice(0, run.layout.size) if support is None else support
    t = run.direction_step(v[support], step)
    levels, a_levels = [], []
    for j in range(LADDER_LEVELS):
        s = t / LADDER_RATIO**j
        span = run.displacement(v, s, support)
        span -= run.displacement(v, -s, support)
        dp, dm = run.direction_deltas(v, [s, -s], support)
        a_levels.append(dot(run.layout, analytic_leaves, span, support.start) / (2 * s))
        levels.append(quotients(
            np.array([dp]), np.array([dm]), np.array([s]), np.array([s]),
            value_floor(run.f0, dp, run.eps_loss), value_floor(run.f0, dm, run.eps_loss),
        ))
        if j == 0 and cmp.meets(a_levels[0], levels[0].central, levels[0].noise_central,
                                rtol, atol)[0]:
            return float(a_levels[0]), float(levels[0].central[0]), cmp.PASS
    status, numeric, _ = cmp.refine(np.array(a_levels)[:, None], levels, rtol, atol)
    return float(a_levels[0]), float(numeric[0]), str(status[0])


def _localize(run: _Run, analytic_leaves, v: np.ndarray, step, rtol, atol,
              limit: int = _LOCALIZE_LIMIT) -> list[int]:
    """Flat indices of wrong entries behind a failing direction ``v``, by bisection.

    The directional error along ``v`` restricted to a block of coordinates is the sum of the
    wrong entries' errors in that block (times ``v``), so testing both halves of every failing
    block finds ``k`` wrong entries with O(k log P) directional checks.
    """
    found: list[int] = []
    blocks = [(0, run.layout.size)]
    while blocks and len(found) < limit:
        lo, hi = blocks.pop()
        if hi - lo == 1:
            found.append(lo)
            continue
        mid = (lo + hi) // 2
        for a, b in ((mid, hi), (lo, mid)):  # the lower half is popped first
            verdict = _judge_direction(run, analytic_leaves, v, step, rtol, atol, slice(a, b))[2]
            if cmp.failing(verdict):
                blocks.append((a, b))
    return sorted(found)


def _check_directions(run: _Run, analytic_leaves, m: int, seed: int, step, rtol, atol):
    """Judge ``m`` random unit directions; localize the wrong entries behind failing ones.

    Returns the direction entries and the flat indices localized.
    """
    entries, localized = [], []
    rng = np.random.default_rng([int(seed), 1])  # its own stream: the sample is unaffected
    for index, v in enumerate(random_directions(run.layout.size, m, rng)):
        a, numeric, status = _judge_direction(run, analytic_leaves, v, step, rtol, atol)
        rel = float(cmp.relative_error(np.array([a]), np.array([numeric]))[0])
        entries.append(Entry(f"direction {index}", a, numeric, abs(a - numeric), rel, status))
        if cmp.failing(status) and not localized:
            localized = _localize(run, analytic_leaves, v, step, rtol, atol)
    return entries, np.array(localized, dtype=np.int64)


def _check_coords(run: _Run, analytic_leaves, coords, step, rtol, atol):
    """First pass at ``coords``, then the step ladder for suspects.

    Returns ``(analytic, numeric, noise, status, steps)`` arrays over ``coords``.
    """
    nominal = run.nominal_steps(step, coords, run.stencil)
    analytic = gather(run.layout, analytic_leaves, coords)
    numeric, noise, steps, level0 = run.stencil_pass(coords, nominal)
    status = np.where(cmp.meets(analytic, numeric, noise, rtol, atol), cmp.PASS, cmp.FAIL)
    status = status.astype(object)
    suspects = np.flatnonzero(status != cmp.PASS)
    if suspects.size:
        level0 = None if level0 is None else level0.take(suspects)
        levels = run.ladder(coords[suspects], nominal[suspects], level0)
        flags = run.evaluator.kink_flags(run.x, coords[suspects], levels[-1].step)
        s_status, s_numeric, s_noise = cmp.refine(analytic[suspects], levels, rtol, atol, flags)
        status[suspects], numeric[suspects], noise[suspects] = s_status, s_numeric, s_noise
    return analytic, numeric, noise, status, steps


def _entries(layout, coords, analytic, numeric, noise, status):
    """Report entries for ``coords`` (names, values, errors, statuses)."""
    rel = cmp.relative_error(analytic, numeric)
    return tuple(
        Entry(layout.name(c), float(a), float(n), float(abs(a - n)), float(r), str(st))
        for c, a, n, r, st in zip(coords, analytic, numeric, rel, status)
    )


def _report(run, coords, analytic, numeric, noise, status, steps, direction_entries,
            localized, second_opinion, *,
            rtol, atol, sampled, reasons, elapsed) -> GradientCheck:
    layout = run.layout
    is_kink = status == cmp.KINK
    judged = ~is_kink
    a, n = analytic[judged], numeric[judged]
    rel = cmp.relative_error(analytic, numeric)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    norm_rel = float(np.linalg.norm(a - n) / denom) if denom > 0 else 0.0
    above_noise = np.maximum(np.abs(analytic), np.abs(numeric)) > noise
    signed = judged & above_noise
    sign_agreement = (
        float(np.mean(np.sign(analytic[signed]) == np.sign(numeric[signed])))
        if signed.any() else None
    )
    failed = np.flatnonzero(cmp.failing(status))
    unresolved = np.flatnonzero(status == cmp.UNRESOLVED)
    below_noise = (status == cmp.PASS) & ~above_noise
    weak = int(is_kink.sum() + len(unresolved) + below_noise.sum())
    n_checked = len(coords)
    informative = n_checked - weak
    dir_failed = [e.name for e in direction_entries if cmp.failing(e.status)]

    if len(failed):
        reasons.insert(0, f"{len(failed)} of {n_checked} checked entries differ from the "
                          "finite differences beyond truncation and rounding error")
    if dir_failed:
        reasons.insert(0, f"{len(dir_failed)} of {len(direction_entries)} random directions "
                          "disagree: g . v differs from the directional difference")
    if len(failed) or dir_failed:
        verdict = "fail"
    elif informative == 0 or weak >= _INCONCLUSIVE_WEAK_FRACTION * n_checked:
        weak_reason = (f"only {informative} of {n_checked} checked entries carry evidence; the "
                       "rest are kinks, unresolved or below the rounding floor")
        opinion = second_opinion()
        if opinion.verdict in ("pass", "fail"):
            verdict = opinion.verdict
            reasons.insert(0, f"{weak_reason}, so a Taylor test along a random direction decides "
                              f"({opinion.verdict}): {opinion.reason}")
        else:
            verdict = "inconclusive"
            reasons.insert(0, weak_reason)
            reasons.append(f"Taylor test along a random direction: {opinion.reason}")
    else:
        verdict = "pass"
    at_kink = int(np.sum(status == cmp.KINK_FAIL))
    if at_kink:
        reasons.append(f"{at_kink} failing entries sit at kinks and your values lie outside the "
                       "range of the one-sided differences (not a subgradient); where many kinks "
                       "coincide (e.g. all-zero weights with a ReLU'(0) convention) check at a "
                       "random point instead")
    if is_kink.any():
        reasons.append(f"{int(is_kink.sum())} entries sit at a kink within the step (hinge, ReLU, "
                       "|x|) and were excluded; their analytic values lie between the one-sided "
                       "differences")
    if len(unresolved):
        reasons.append(f"{len(unresolved)} entries are unresolved: rounding noise is larger than "
                       "the discrepancy")
    if below_noise.any():
        reasons.append(f"{int(below_noise.sum())} entries are below the rounding floor of the "
                       "finite differences (|g| too small to resolve)")
    if np.finfo(layout.dtype).eps > 1e-10:
        reasons.append(f"parameters are {layout.dtype}: finite differences resolve only a few "
                       f"digits (rtol {rtol:.0e}); cast params to float64 for a sharper check")
    # the rule of three counts entries that carried evidence, and only entry-wise passes
    taylor_decided = informative == 0 or weak >= _INCONCLUSIVE_WEAK_FRACTION * n_checked
    confidence = (confidence_statement(informative, layout.size)
                  if verdict == "pass" and not taylor_decided else None)
    if confidence:
        reasons.append(f"sampled check: {confidence}")

    score = np.abs(analytic - numeric) / np.maximum(
        cmp.tolerance(analytic, numeric, rtol, atol, noise), np.finfo(float).tiny)
    score[is_kink] = -1.0
    worst_idx = [i for i in np.argsort(-score, kind="stable")[:_N_WORST] if score[i] >= 0]
    worst_idx = np.array(worst_idx, dtype=np.int64)
    worst = _entries(layout, coords[worst_idx], analytic[worst_idx], numeric[worst_idx],
                     noise[worst_idx], status[worst_idx])
    owner = layout.array_of(coords)
    arrays = []
    for j in range(layout.n_arrays):
        mine = owner == j
        kinds = status[mine]
        n_fail = int(np.sum(cmp.failing(kinds)))
        mine_judged = mine & judged
        arrays.append(ArraySummary(
            name=layout.array_label(j),
            n_params=int(layout.starts[j + 1] - layout.starts[j]),
            n_checked=int(mine.sum()),
            n_failed=n_fail,
            n_kinks=int(np.sum(kinds == cmp.KINK)),
            max_rel_error=float(rel[mine_judged].max()) if mine_judged.any() else 0.0,
            verdict="not checked" if not mine.any() else "fail" if n_fail else
            "pass" if np.any(mine & above_noise & (status == cmp.PASS)) else "inconclusive",
        ))
    return GradientCheck(
        verdict=verdict,
        reasons=tuple(reasons),
        n_params=layout.size,
        n_checked=n_checked,
        n_evals=run.n_evals,
        max_rel_error=float(rel[judged].max()) if judged.any() else 0.0,
        norm_rel_error=norm_rel,
        sign_agreement=sign_agreement,
        worst=worst,
        kinks=tuple(layout.names(coords[is_kink])),
        failed=tuple(layout.names(coords[failed])) + tuple(dir_failed)
        + tuple(e.name for e in localized if cmp.failing(e.status)),
        unresolved=tuple(layout.names(coords[unresolved]))
        + tuple(e.name for e in direction_entries if e.status == cmp.UNRESOLVED),
        rtol=rtol,
        atol=atol,
        step=float(np.median(steps)),
        method=run.stencil.name,
        elapsed_s=elapsed,
        confidence=confidence,
        sampled=sampled,
        arrays=tuple(arrays),
        directions=tuple(direction_entries),
        localized=localized,
        dtype=str(layout.dtype),
    )


for _documented in (numerical_gradient, check_gradient):
    _documented.__doc__ = _documented.__doc__.replace("    %(execution)s\n", _EXECUTION_DOC)
