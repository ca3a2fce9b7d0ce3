"""Orchestration: flatten -> noise -> plan -> evaluate -> combine -> judge -> report.

This module wires the stages together; the numerics live in ``_noise`` (the loss's noise),
``_steps`` (step rules), ``_plan``/``_differences`` (perturbations and their combination),
``_combine`` (error bars), ``_judge`` (statuses and verdict) and ``report`` (formatting), the
evaluation in ``executors`` behind a :class:`~fastfd._session.Session`.

Refinement is a loop over plan -> evaluate -> combine -> judge for the probes (entries,
directions) that are not yet decided: each round moves every open probe one level up the
step ladder (noise dominates its error bar) or down (truncation dominates, or a kink must be
followed to the smallest step).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np

from . import _judge as judge
from . import _validate
from ._calls import loss_and_grad, loss_only
from ._combine import NOISE_SIGMAS, Ladder, Level
from ._differences import (
    coord_level,
    direction_level,
    level_from_pass,
    nominal_steps,
    stencil_pass,
)
from ._params import gather
from ._sampling import random_directions, stratified_sample
from ._session import Session
from ._stencils import CENTRAL, derivative_weights, get_stencil
from ._steps import (
    LADDER_RATIO,
    bottom_level,
    default_steps,
    direction_levels,
    direction_step,
    level_steps,
    top_level,
)
from ._taylor import run_taylor, taylor_eps
from .errors import LongRunWarning
from .executors import Evaluator
from .report import GradientCheck, Judged, build_check, explain

AUTO_BUDGET_S = 10.0
LONG_RUN_S = 300.0  # a numerical_gradient estimated longer than this warns before starting
_GRADIENT_CHUNK = 2**16  # entries per stencil pass of numerical_gradient (bounded memory)
_PROBE_COORDS = 16
AUTO_SIZES = (1000, 200, 50)  # the samples sample="auto" chooses between, largest first
_REFINE_ALLOWANCE = 1.5  # evaluations of a check per first-pass evaluation, at most about
_EVALS_PER_DIRECTION = 8  # a direction's ladder levels (2 evaluations each)
_SAMPLED_DIRECTIONS = 3  # directions=None on a sampled check: catch what the sample missed
_DIRECTION_RETRIES = 2  # fresh directions drawn in place of ones that run through a kink
_SECOND_OPINION_POINTS = 24  # Taylor test points (48 evaluations)
_LOCALIZE_LIMIT = 8  # wrong entries named per failing direction before bisection stops
_MAX_JOINT_KINKS = 48  # kink entries tested pairwise for interactions (pairs: 1128)
# Two kinks interact when the loss along e_i + e_j misses the sum of the coordinates' own
# changes by more than noise and this fraction of those changes.
_INTERACTION = 0.01

# Parameters shared by the public functions, written once.
CALL_DOC = """\
    args, kwargs : tuple, dict, optional
        Extra arguments: ``f(params, *args, **kwargs)`` as scipy.optimize calls it (a callable
        ``grad`` receives them too), e.g. ``args=(X, y, reg)``.
"""
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
        ``nogil``); the loss must then be thread-safe. ``"dask"`` runs the same chunks on the
        active ``distributed.Client`` (``with distributed.Client(...):`` around the call;
        ``pip install 'fastfd[dask]'``). An ``@njit`` loss of one flat float64 vector runs in
        a compiled ``prange`` driver with ``n_jobs`` threads, and models from
        :mod:`fastfd.models` use their exact incremental evaluator: both are faster than any
        process pool.
    progress : bool
        Show one tqdm progress bar for every loss evaluation of the call; off by default.
    evaluator : Evaluator or str, optional
        How to evaluate perturbed losses (an :class:`~fastfd.executors.Evaluator` or one of
        ``"serial"``, ``"joblib"``, ``"numba"``, ``"batched"``); chosen automatically.
    batched : bool
        ``f`` takes a stack of K parameter sets (every array with a leading axis of length K)
        and returns K losses; perturbations are sent in stacks (a reused buffer, sized to
        bound memory), which removes the per-call Python overhead that dominates losses of
        a few microseconds.
    bind : bool
        For a loss that reads a model's own container instead of its argument (the cs231n
        idiom ``lambda _: model.loss(X, y)[0]`` with ``params=model.params``): fastfd puts its
        private copies into ``params`` (a dict or list) for the duration of the call and puts
        your arrays back after (they are never written). Serial evaluation only.
"""


def default_rtol(rel_noise: float) -> float:
    """Relative tolerance for a loss of relative noise ``rel_noise`` (at least the params'
    rounding unit): 1e-5 for float64 precision, 1.2e-2 for float32, in between like the
    accuracy of a central difference, ``rel_noise**(2/3)``.

    Examples
    --------
    >>> default_rtol(2.2e-16), round(default_rtol(1.19e-7), 4)
    (1e-05, 0.0119)
    """
    eps32 = float(np.finfo(np.float32).eps)
    return float(min(0.1, max(1e-5, 1e5 * eps32 * (rel_noise / eps32) ** (2 / 3))))


def numerical_gradient(
    f: Callable,
    params,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    method: str = "central",
    step=None,
    n_jobs: int = 1,
    backend: str | None = None,
    progress: bool = False,
    evaluator: Evaluator | str | None = None,
    batched: bool = False,
    bind: bool = False,
):
    """Finite-difference gradient of a scalar loss, with the structure of ``params``.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> float``. It receives numpy views of a private copy
        shaped like ``params``; the caller's arrays are never modified.
    params : array, array-like, float, or dict/list/tuple/NamedTuple of them (nested)
        float32 or float64 parameters (one dtype for all arrays); array-likes (lists of
        floats, JAX arrays, CPU torch tensors, xarray) are converted once.
    %(call)s
    method : {"central", "forward", "backward", "central4", "complex"}
        Stencil; ``central`` is second order, ``central4`` fourth order. ``complex`` is the
        complex step ``Im f(x + i h e_j) / h`` (``h = 1e-20 max(1, |x|)``): exact to rounding,
        one evaluation per entry, for losses that extend analytically to complex params (a
        loss that does not is detected along a random direction and refused with
        :class:`~fastfd.errors.NotComplexSafeError`).
    step : float, array or structure like params, optional
        Step per entry. Default: ``noise**(1/3) * max(1, |x|)`` for central,
        ``noise**(1/2) * max(1, |x|)`` for one-sided, ``noise**(1/5) ...`` for ``central4``,
        where ``noise`` is the loss's relative noise measured at ``params`` (9 to 49 extra
        evaluations; at least the rounding unit of the params' dtype). Models from
        :mod:`fastfd.models` use a smaller step because they compute differences without
        cancellation.
    %(execution)s

    Returns
    -------
    ndarray or structure of ndarrays
        Same structure, shapes and dtype as ``params`` (numpy arrays).

    Warns
    -----
    fastfd.errors.LongRunWarning
        Before starting, when the estimated time exceeds a few minutes (the estimate, from the
        first evaluation, and the memory needed are in the message). The gradient is computed
        in chunks: memory beyond the params and the result stays O(chunk).

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> g = fastfd.numerical_gradient(lambda p: np.sum(p["w"] ** 2) + p["b"][0],
    ...                               {"w": np.array([1.0, -2.0]), "b": np.zeros(1)})
    >>> np.round(g["w"], 6), np.round(g["b"], 6)
    (array([ 2., -4.]), array([1.]))
    >>> np.round(fastfd.numerical_gradient(lambda w, c: c * w @ w, [1.0, 2.0], args=(3.0,)), 6)
    array([ 6., 12.])
    """
    stencil = get_stencil(method)
    loss = loss_only(f, args, kwargs)
    with Session(loss, params, evaluator=evaluator, n_jobs=n_jobs, backend=backend,
                 batched=batched, progress=progress, bind=bind,
                 complex_step=stencil.name == "complex") as session:
        size = session.layout.size
        _warn_if_long(session, size * len(stencil.perturbed), "numerical_gradient")
        estimates = np.empty(size)
        for lo in range(0, size, _GRADIENT_CHUNK):
            coords = np.arange(lo, min(size, lo + _GRADIENT_CHUNK))
            nominal = nominal_steps(session, step, coords, stencil)
            estimates[lo:lo + len(coords)] = stencil_pass(session, coords, nominal, stencil)[0]
        session.ensure_unmodified()
    return session.layout.unflatten(estimates)


def _warn_if_long(session: Session, n_evals: int, what: str) -> None:
    """A LongRunWarning before a job the first evaluation says will take minutes or more."""
    estimate = session.base_seconds * n_evals
    if session.evaluator.exact_deltas or estimate <= LONG_RUN_S:
        return
    memory = 3 * session.layout.size * 8 / 2**30
    warnings.warn(
        f"{what} of {session.layout.size:,} entries needs {n_evals:,} loss evaluations: about "
        f"{_duration(estimate)} at {session.base_seconds * 1e3:.3g} ms each (the first one), and "
        f"about {memory:.2g} GiB besides your own arrays; consider check_gradient(sample=...), "
        "n_jobs=-1, or a model with an exact evaluator", LongRunWarning, stacklevel=3)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    if seconds >= 1:
        return f"{seconds:.0f} s"
    return f"{seconds:.2g} s"


def directional_derivative(
    f: Callable, params, direction, *, args: tuple = (), kwargs: dict | None = None,
    method: str = "central", step: float | None = None
) -> float:
    """Finite-difference derivative of ``f`` along ``direction``: ``grad(f) . direction``.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> float``.
    params : array, array-like or structure of them
        Point of evaluation (float32 or float64).
    direction : same structure as params
        The direction (not normalized).
    %(call)s
    method : {"central", "forward", "backward", "central4"}
    step : float, optional
        Multiple of ``direction`` to step. Default: the coordinate rule (with the loss's
        measured noise) applied to the direction's own scale, ``||step * direction||`` about
        one coordinate step.

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
    stencil = get_stencil(method)
    if stencil.name == "complex":
        raise ValueError("method='complex' applies to coordinates (numerical_gradient, "
                         "check_gradient, numerical_jacobian); use 'central' for a direction")
    with Session(loss_only(f, args, kwargs), params) as session:
        v = session.layout.flatten_like(direction, "direction")
        if not v.any():
            raise ValueError("direction is zero; pass a non-zero direction")
        s = _direction_step(session, v, step, stencil)
        scales = np.array(stencil.perturbed) * s
        for scale in scales:
            if not session.displacement(v, scale).any():
                raise ValueError(
                    f"step {abs(scale):.3g} along the direction is lost to rounding: params + "
                    f"step * direction == params in {session.layout.dtype}; use a larger step "
                    "(or the default)")
        deltas = session.direction_deltas(v, scales, "direction")
        session.ensure_unmodified()
    weights = derivative_weights(stencil.offsets)
    perturbed = [w for w, o in zip(weights, stencil.offsets) if o != 0]
    return float(np.dot(perturbed, deltas) / s)


def _direction_step(session: Session, v: np.ndarray, step, stencil=CENTRAL,
                    support: slice | None = None) -> float:
    """The step along ``v`` (restricted to ``support``): ``step / ||v||`` for a scalar user
    step, else the rule of :func:`fastfd._steps.direction_step` with the measured noise."""
    support = slice(None) if support is None else support
    given = _validate.scalar_step(step)
    if given is not None:
        return given / float(np.linalg.norm(v[support]))
    return direction_step(session.x[support], v[support], stencil, session.noise.rel_noise)


def check_gradient(
    f: Callable,
    grad,
    params,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    sample="auto",
    directions: int | None = None,
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
    bind: bool = False,
) -> GradientCheck:
    """Compare an analytic gradient with finite differences and give a verdict you can trust.

    First the loss's noise is measured at ``params`` (a difference table along a short line,
    a few dozen evaluations). Every finite difference then carries an error bar: the measured
    noise divided by the step, plus the truncation error measured between step levels. An
    entry is *confirmed* when it agrees within ``rtol`` plus its error bar and that error bar
    is no wider than the tolerance (judged against the entry's value or, for entries near
    zero, its array's gradient scale), *failed* when the discrepancy exceeds tolerance plus
    error bar, *weak* otherwise. Entries not confirmed by the first pass move along a step
    ladder (``h * 4**k`` from ``h/256`` to ``0.1 max(1, |x|)``): up when noise dominates their
    error bar, down when truncation does. Kinks (hinge, ReLU, max, ``|x|``) are recognised by
    one-sided differences that disagree at every step down to the smallest; the analytic
    value must lie between them, and kink entries that interact (max-pool ties) are checked
    jointly. A pass rests on confirmed entries only: when none are confirmed or most are
    weak the verdict is ``"inconclusive"``, with the resolution reached and what would
    resolve the rest.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> float``; receives numpy views of a private copy of
        ``params``. With ``grad=True``, ``f`` returns ``(loss, grad)`` (scipy's ``jac=True``,
        cs231n's ``svm_loss_vectorized``).
    grad : callable, structure like params, or True
        ``grad(params, *args, **kwargs)`` returning the analytic gradient, the gradient itself,
        or True when ``f`` returns ``(loss, grad)``: the gradient part is taken once, at
        ``params``, and the loss part for every perturbation.
    params : array, array-like, float, or dict/list/tuple/NamedTuple of them (nested)
        float32 or float64 parameters; array-likes (lists of floats, JAX arrays, CPU torch
        tensors, xarray) are converted once and the loss receives numpy arrays. Entries are
        named by their path (``W1[12, 3]``, ``layers[0]["W"][1, 2]``).
    %(call)s
    sample : "auto", "all", None, int or float
        ``"auto"`` checks every entry when the estimated cost (from the timings of the
        first evaluations, no extra ones) fits about 10 s, otherwise the largest of the fixed
        sizes 1000, 200 and 50 that fits, otherwise the smallest stratified sample with a
        :class:`~fastfd.errors.LongRunWarning` before it starts; fixed sizes make the sample
        the same on any machine for the same seed. An int ``k``
        checks about ``k`` entries, a float in (0, 1] that fraction. Samples take entries from
        every parameter array (at least ``min(size, 5)``) and from the first and last slice
        along every axis. The same seed gives the same sample.
    directions : int, optional
        Also check this many random unit directions (``g . v`` against a directional
        difference, two evaluations per step level; each parameter array gets the same share
        of ``v``). A failing direction is localized to the wrong entries by bisection.
        Default: 3 for a sampled check (to catch wrong entries outside the sample), 0 for a
        full one.
    method : {"central", "forward", "backward", "central4", "complex"}
        Stencil of the first pass (refinement always uses central pairs, complex ones for
        ``"complex"``: see :func:`numerical_gradient`; random directions stay real central
        differences).
    step : float, array or structure like params, optional
        First-pass steps; default from the measured noise (see :func:`numerical_gradient`).
    rtol, atol : float, optional
        Tolerances. ``rtol`` defaults to 1e-5 for a loss computed in float64 precision and
        about 1e-2 in float32 precision (params or arithmetic: the measured noise decides);
        ``atol`` to 0.
    seed : int
        Seed of the sample, the random directions and the noise line.
    %(execution)s

    Returns
    -------
    GradientCheck
        Verdict, metrics, error bars, worst entries, kinks; ``str()`` gives a readable report.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> loss = lambda x: 0.5 * x @ A @ x
    >>> fastfd.check_gradient(loss, lambda x: A @ x, np.array([1.0, -1.0])).verdict
    'pass'
    >>> fastfd.check_gradient(loss, lambda x: A.T @ x + 1e-3, np.array([1.0, -1.0])).verdict
    'fail'

    A function returning ``(loss, grad)`` with extra arguments, as scipy.optimize takes it:

    >>> def fun(x, A):
    ...     return 0.5 * x @ A @ x, A @ x
    >>> fastfd.check_gradient(fun, True, [1.0, -1.0], args=(A,)).verdict
    'pass'
    """
    start = time.perf_counter()
    # validate the cheap arguments before the first loss evaluation
    user_rtol = _validate.tolerance(rtol, "rtol")
    atol = _validate.tolerance(atol, "atol") or 0.0
    n_directions = _validate.count(directions, "directions", allow_none=True)
    rng = _validate.seed(seed)
    _validate.sample(sample, 2)
    stencil = get_stencil(method)
    loss, grad = loss_and_grad(f, grad, args, kwargs)
    with Session(loss, params, evaluator=evaluator, n_jobs=n_jobs, backend=backend,
                 batched=batched, progress=progress, seed=seed, bind=bind,
                 complex_step=stencil.name == "complex") as session:
        layout = session.layout
        leaves = session.analytic(grad)
        del grad
        noise = session.coordinate_noise
        rtol = user_rtol if user_rtol is not None else default_rtol(noise.rel_noise)
        notes: list[str] = []
        sample_k = _validate.sample(sample, layout.size)
        if sample_k == "auto":
            sample_k = _auto_sample(session, step, stencil, n_directions, notes)
        sampled = sample_k is not None
        coords = (np.arange(layout.size) if not sampled
                  else stratified_sample(layout, sample_k, rng))
        if sampled and session.kept_pass is not None:  # the timing pass is evidence too
            coords = np.union1d(coords, session.kept_pass[1])
        entries, first_steps = _check_entries(session, leaves, coords, stencil, step, rtol, atol)
        if n_directions is None:
            n_directions = _SAMPLED_DIRECTIONS if sampled else 0
        direction_probes, localized = _check_directions(session, leaves, n_directions, seed,
                                                        step, rtol, atol)
        if localized.size:
            localized_probes = _check_entries(session, leaves, localized, stencil, step, rtol,
                                              atol)[0]
        else:
            localized_probes = Judged.empty()
        joint, n_kink_tested = _check_joint_kinks(session, leaves, entries, coords, seed,
                                                  rtol, atol)
        any_failure = (judge.failing(entries.status).any()
                       or judge.failing(direction_probes.status).any()
                       or judge.failing(localized_probes.status).any()
                       or judge.failing(joint.status).any())
        taylor = None
        if not any_failure and judge.mostly_weak(entries.status):
            v = next(random_directions(layout, 1, np.random.default_rng([int(seed), 2])))
            # down to e0 / 2**23: the remainder's resolution of g . v is C * e_min
            taylor = run_taylor(session, leaves, v,
                                taylor_eps(None, session, v, _SECOND_OPINION_POINTS),
                                f"random unit direction (seed {seed}, second opinion)")
        session.ensure_unmodified()
    taylor_decision = None if taylor is None else taylor.decides(rtol, atol)
    verdict = judge.verdict(entries.status, direction_probes.status, localized_probes.status,
                            joint.status, taylor_decision)
    reasons = explain(
        verdict=verdict, entries=entries, directions=direction_probes,
        localized=localized_probes, joint=joint, n_kink_tested=n_kink_tested, noise=noise,
        rtol=rtol, dtype=str(layout.dtype), taylor=taylor, taylor_decision=taylor_decision,
        notes=notes)
    return build_check(
        entries=entries, directions=direction_probes, localized=localized_probes, joint=joint,
        verdict=verdict, reasons=reasons, n_params=layout.size, n_evals=session.n_evals,
        rtol=rtol, atol=atol, step=float(np.median(first_steps)), method=stencil.name,
        elapsed=time.perf_counter() - start, sampled=sampled,
        array_names=[layout.array_label(j) for j in range(layout.n_arrays)],
        array_sizes=[int(s) for s in np.diff(layout.starts)], noise=noise,
        dtype=str(layout.dtype))


def _auto_sample(session: Session, step, stencil, n_directions: int | None,
                 notes: list[str]):
    """None (check all) when the estimated cost fits ``AUTO_BUDGET_S``, else the largest of
    the fixed sizes ``AUTO_SIZES`` that fits, else the minimum stratified sample (warned).

    The sizes are fixed, so the same seed gives the same sample on any machine unless the
    estimate sits near a boundary (a factor of 5 apart). The estimate costs no extra
    evaluation for generic evaluators (the noise line's timings); evaluators with their own
    fast path time a first pass on a few entries, which the check then reuses.
    """
    size = session.layout.size
    evaluator = session.evaluator
    n_nodes = len(stencil.perturbed)
    per_full = session.seconds_per_eval()
    if per_full * size * n_nodes * _REFINE_ALLOWANCE <= AUTO_BUDGET_S:
        return None  # even at the cost of a full evaluation each, everything fits
    if evaluator.full_cost_per_eval:
        per_coord = per_full / max(1, evaluator.parallelism())
    else:
        probe = np.arange(min(size, _PROBE_COORDS))
        nominal = nominal_steps(session, step, probe, stencil)
        stencil_pass(session, probe, nominal, stencil, "timing")  # pools start, kernels compile
        began = time.perf_counter()
        kept = stencil_pass(session, probe, nominal, stencil, "timing")
        per_coord = (time.perf_counter() - began) / (len(probe) * n_nodes)
        session.kept_pass = (stencil, probe, nominal, kept)

    def estimate(k: int, dirs: int) -> float:
        # refinement of suspects and weak entries: at most about half a pass more
        coords = per_coord * n_nodes * k * _REFINE_ALLOWANCE
        return coords + per_full * dirs * _EVALS_PER_DIRECTION

    full = estimate(size, n_directions or 0)
    if full <= AUTO_BUDGET_S:
        return None
    dirs = _SAMPLED_DIRECTIONS if n_directions is None else n_directions
    minimum = int(stratified_sample(session.layout, 0, np.random.default_rng(0)).size)
    for k in AUTO_SIZES:
        if minimum <= k < size and estimate(k, dirs) <= AUTO_BUDGET_S:
            notes.append(
                f"sample='auto': checking all {size:,} entries would take about "
                f"{_duration(full)}, so a stratified sample of {k} entries (and {dirs} random "
                f"directions) fits the {AUTO_BUDGET_S:.3g} s budget (pass sample='all' to check "
                "everything)")
            return k
    cost = estimate(minimum, dirs)
    if cost <= AUTO_BUDGET_S:
        notes.append(
            f"sample='auto': checking all {size:,} entries would take about "
            f"{_duration(full)}, so the smallest stratified sample ({minimum} entries and "
            f"{dirs} random directions) fits the {AUTO_BUDGET_S:.3g} s budget (pass sample=k "
            "for more)")
        return minimum
    message = (f"sample='auto': even the smallest stratified sample ({minimum} entries, "
               f"{dirs} directions) takes about {_duration(cost)} at "
               f"{per_full * 1e3:.3g} ms per loss evaluation, over the {AUTO_BUDGET_S:.3g} s "
               "budget; checking it anyway (pass sample=k or directions=0 to bound the work)")
    warnings.warn(message, LongRunWarning, stacklevel=3)
    notes.append(message)
    return minimum


# --------------------------------------------------------------------------------------------
# refinement: plan -> evaluate -> combine -> judge until every probe is decided
# --------------------------------------------------------------------------------------------


class _Outcome:
    """What refinement decided per probe (parallel arrays)."""

    def __init__(self, n: int):
        self.status = np.full(n, judge.OPEN, dtype=object)
        self.cause = np.full(n, "", dtype=object)
        self.value = np.full(n, np.nan)
        self.error = np.full(n, np.nan)
        self.step = np.full(n, np.nan)
        self.analytic = np.full(n, np.nan)
        self.forward = np.full(n, np.nan)
        self.backward = np.full(n, np.nan)


def _refine(ladder: Ladder, evaluate: Callable[[np.ndarray, np.ndarray], Level],
            bottom: np.ndarray, top: np.ndarray, rtol: float, atol: float, scale: np.ndarray,
            kink_flags: Callable[[Ladder], np.ndarray | None] | None = None,
            kink_fails: bool = True, kink_floor: np.ndarray | None = None) -> _Outcome:
    """Move every open probe along the ladder until :func:`fastfd._judge.decide` decides it.

    ``evaluate(probes, levels)`` returns the :class:`Level` of those probes at those levels
    (NaN where the loss was not finite or the step was lost); the level bounds then close in.
    """
    n = ladder.size
    out = _Outcome(n)
    bottom, top = bottom.copy(), top.copy()
    while True:
        flags = kink_flags(ladder) if kink_flags is not None else None
        decision, best = judge.decide(ladder, rtol, atol, scale, bottom, top, flags, kink_fails,
                                      kink_floor)
        newly = (out.status == judge.OPEN) & ~decision.open
        if newly.any():
            _record(out, newly, decision, best, ladder)
        still = np.flatnonzero((out.status == judge.OPEN) & decision.open)
        if not still.size:
            return out
        levels = decision.next_level[still]
        level = evaluate(still, levels)
        bad = ~np.isfinite(level.central)
        if bad.any():
            up = levels > ladder.hi[still]
            top[still[bad & up]] = levels[bad & up] - 1
            bottom[still[bad & ~up]] = levels[bad & ~up] + 1
        good = ~bad
        ladder.record(still[good], levels[good], level.take(good))


def _record(out: _Outcome, newly: np.ndarray, decision, best, ladder: Ladder) -> None:
    status = decision.status
    out.status[newly] = status[newly]
    out.cause[newly] = decision.cause[newly]
    out.value[newly] = best.value[newly]
    out.error[newly] = best.error[newly]
    out.analytic[newly] = best.analytic[newly]
    out.step[newly] = ladder.at("step", best.level)[newly]
    kinked = newly & np.isin(status.astype(str), (judge.KINK, judge.KINK_FAIL))
    if kinked.any():
        lo = ladder.lo
        for name in ("forward", "backward", "step", "analytic"):
            getattr(out, name)[kinked] = ladder.at(name, lo)[kinked]
        out.value[kinked] = ladder.at("central", lo)[kinked]
        out.error[kinked] = NOISE_SIGMAS * ladder.at("noise_side", lo)[kinked]


def _check_entries(session: Session, leaves, coords: np.ndarray, stencil, step, rtol: float,
                   atol: float) -> tuple[Judged, np.ndarray]:
    """First pass at ``coords``, then the ladder for every entry it does not confirm.

    Returns the judged entries and the first-pass steps.
    """
    layout = session.layout
    analytic = gather(layout, leaves, coords)
    nominal = nominal_steps(session, step, coords, stencil)
    numeric, noise, moves, deltas, own = stencil_pass(session, coords, nominal, stencil)
    owner = layout.array_of(coords)
    scale = judge.resolution_scale(
        analytic, numeric, judge.array_scales(owner, analytic, numeric, layout.n_arrays))
    status = judge.first_pass(analytic, numeric, noise, rtol, atol, scale)
    judged = Judged(
        ids=coords, name_of=layout.name, analytic=analytic, numeric=numeric,
        error=NOISE_SIGMAS * noise, scale=scale, step=nominal.copy(), status=status,
        cause=np.full(len(coords), "", dtype=object), owner=owner,
        forward=np.full(len(coords), np.nan), backward=np.full(len(coords), np.nan))
    open_ = np.flatnonzero(status == judge.OPEN)
    if open_.size:
        sigma = session.coordinate_noise.sigma if not session.evaluator.exact_deltas else 0.0
        level0 = level_from_pass(stencil, analytic, sigma, moves, deltas, own)
        central = nominal if level0 is not None else nominal_steps(session, step, coords,
                                                                   CENTRAL)
        outcome = _refine_coords(session, coords[open_], analytic[open_], central[open_],
                                 None if level0 is None else level0.take(open_), rtol, atol,
                                 scale[open_])
        for name in ("status", "cause", "step", "forward", "backward"):
            getattr(judged, name)[open_] = getattr(outcome, name)
        judged.numeric[open_] = outcome.value
        judged.error[open_] = outcome.error
    return judged, nominal


def _refine_coords(session: Session, coords, analytic, h0, level0: Level | None, rtol, atol,
                   scale) -> _Outcome:
    ladder = Ladder(len(coords))
    x_at = session.x[coords]
    bottom, top = bottom_level(x_at, h0), top_level(x_at, h0)

    def evaluate(probes, levels):
        return coord_level(session, coords[probes], level_steps(h0[probes], levels),
                           analytic[probes])

    everyone = np.arange(len(coords))
    zero = np.zeros(len(coords), dtype=np.int64)
    ladder.record(everyone, zero, level0 if level0 is not None else evaluate(everyone, zero))

    def flags(lad: Ladder):
        return session.evaluator.kink_flags(session.x, coords, lad.at("step", lad.lo))

    # a kink must persist down to 1/256 of the default step (deeper when h0 is larger)
    default = default_steps(x_at, CENTRAL, session.coordinate_noise.rel_noise)
    above = np.ceil(np.log(np.maximum(h0 / default, 1.0)) / np.log(LADDER_RATIO))
    kink_floor = np.maximum(bottom, -judge.KINK_LEVELS - above.astype(np.int64))
    return _refine(ladder, evaluate, bottom, top, rtol, atol, scale, flags,
                   kink_floor=kink_floor)


# --------------------------------------------------------------------------------------------
# directions and localization
# --------------------------------------------------------------------------------------------


def _refine_directions(session: Session, leaves, vs: list[np.ndarray], supports: list[slice],
                       step, rtol: float, atol: float) -> _Outcome:
    """Judge ``g . v`` for every direction (zero outside its support) on the step ladder."""
    n = len(vs)
    s0 = np.array([_direction_step(session, v, step, CENTRAL, sup) for v, sup in zip(vs, supports)])
    bounds = [direction_levels(s, v[sup], session.x[sup]) for s, v, sup in zip(s0, vs, supports)]
    bottom = np.array([b for b, _ in bounds], dtype=np.int64)
    top = np.array([t for _, t in bounds], dtype=np.int64)

    def evaluate(probes, levels):
        parts = [direction_level(session, leaves, vs[p], float(s0[p] * 4.0**k), supports[p])
                 for p, k in zip(probes.tolist(), levels.tolist())]
        return Level(*(np.concatenate([getattr(part, name) for part in parts])
                       for name in Level.__dataclass_fields__))

    ladder = Ladder(n)
    everyone = np.arange(n)
    ladder.record(everyone, np.zeros(n, dtype=np.int64), evaluate(everyone, np.zeros(n, int)))
    first = ladder.best()
    scale = np.maximum(np.abs(first.analytic), np.abs(first.value))
    scale = np.where(np.isfinite(scale), scale, 0.0)
    return _refine(ladder, evaluate, bottom, top, rtol, atol, scale, kink_fails=False)


def _direction_judged(names: list[str], outcome: _Outcome) -> Judged:
    n = len(names)
    return Judged(ids=np.arange(n), name_of=lambda i: names[i], analytic=outcome.analytic,
                  numeric=outcome.value, error=outcome.error,
                  scale=np.maximum(np.abs(outcome.analytic), np.abs(outcome.value)),
                  step=outcome.step, status=outcome.status, cause=outcome.cause,
                  forward=outcome.forward, backward=outcome.backward)


def _check_directions(session: Session, leaves, m: int, seed: int, step, rtol, atol):
    """Judge ``m`` random directions (a fresh one in place of one that runs through a kink,
    up to ``_DIRECTION_RETRIES`` in all); localize the wrong entries behind the first failing
    one. Directions are drawn and judged one at a time, so memory holds one O(P) direction.

    Returns the judged directions and the flat indices localized.
    """
    if m == 0:
        return Judged.empty(), np.zeros(0, dtype=np.int64)
    layout = session.layout
    rng = np.random.default_rng([int(seed), 1])  # its own stream: the sample is unaffected
    whole = [slice(0, layout.size)]
    names, outcomes, localized = [], [], []
    retries = _DIRECTION_RETRIES
    for k in range(m):
        name = f"direction {k}"
        while True:
            v = next(random_directions(layout, 1, rng))
            outcome = _refine_directions(session, leaves, [v], whole, step, rtol, atol)
            if outcome.status[0] != judge.KINK or retries == 0:
                break
            retries -= 1
            name = f"direction {k} (redrawn: the first crossed a kink)"
        names.append(name)
        outcomes.append(outcome)
        if judge.failing(outcome.status)[0] and not localized:
            localized = _localize(session, leaves, v, step, rtol, atol) or [-1]
        del v
    merged = _Outcome(m)
    for name in vars(merged):
        getattr(merged, name)[:] = [getattr(o, name)[0] for o in outcomes]
    found = [i for i in localized if i >= 0]
    return _direction_judged(names, merged), np.array(found, dtype=np.int64)


def _localize(session: Session, leaves, v: np.ndarray, step, rtol, atol,
              limit: int = _LOCALIZE_LIMIT) -> list[int]:
    """Flat indices of wrong entries behind a failing direction ``v``, by bisection.

    The directional error along ``v`` restricted to a block of coordinates is the sum of the
    wrong entries' errors in that block (times ``v``), so testing both halves of every failing
    block finds ``k`` wrong entries with O(k log P) directional checks.
    """
    found: list[int] = []
    blocks = [(0, session.layout.size)]
    while blocks and len(found) < limit:
        lo, hi = blocks.pop()
        if hi - lo == 1:
            found.append(lo)
            continue
        mid = (lo + hi) // 2
        halves = [(mid, hi), (lo, mid)]  # the lower half is popped first
        # v restricted to a block is v itself with that block as its support: no copies
        outcome = _refine_directions(session, leaves, [v, v],
                                     [slice(a, b) for a, b in halves], step, rtol, atol)
        for (a, b), failed in zip(halves, judge.failing(outcome.status)):
            if failed:
                blocks.append((a, b))
    return sorted(found)


# --------------------------------------------------------------------------------------------
# kinks that interact: the joint subgradient test
# --------------------------------------------------------------------------------------------


def _check_joint_kinks(session: Session, leaves, entries: Judged, coords: np.ndarray,
                       seed: int, rtol: float, atol: float) -> tuple[Judged, int]:
    """Test pairs of kink entries for interaction and check interacting ones jointly.

    Two kinks interact when the loss along ``h_i e_i + h_j e_j`` changes by other than the
    sum of the coordinates' own changes (a max of several tied entries; not two independent
    ReLUs). For an interacting pair, and for every group of three or more connected ones,
    ``g . v`` must lie between the one-sided directional derivatives along their sum, as a
    subgradient's must. Directions mixing independent kinks are never tested: for a sum of
    convex and concave pieces a valid subgradient can violate that test.

    Returns the judged joint probes and how many kink entries were tested.
    """
    kinks = np.flatnonzero(entries.status == judge.KINK)
    if kinks.size < 2:
        return Judged.empty(), int(kinks.size)
    if kinks.size > _MAX_JOINT_KINKS:
        # the others cannot be tested jointly: valid alone, they are no evidence for a pass
        # (a gradient routed to every tied maximum is wrong only jointly)
        rng = np.random.default_rng([int(seed), 4])
        chosen = np.sort(rng.choice(kinks, _MAX_JOINT_KINKS, replace=False))
        untested = np.setdiff1d(kinks, chosen)
        entries.status[untested] = judge.WEAK
        entries.cause[untested] = judge.JOINT
        kinks = chosen
    layout = session.layout
    sigma = session.noise.sigma
    idx = coords[kinks]
    h = entries.step[kinks]
    plus = entries.forward[kinks] * h  # f(x + h e_i) - f(x)
    minus = -entries.backward[kinks] * h  # f(x - h e_i) - f(x)
    a = entries.analytic[kinks]
    allowance = NOISE_SIGMAS * np.sqrt(6.0) * sigma
    results: list[dict] = []
    names: list[str] = []
    groups: dict[int, list[int]] = {}
    parent = list(range(len(idx)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in range(len(idx)):
        for q in range(p + 1, len(idx)):
            members = [p, q]
            outcome = _joint_probe(session, layout, idx[members], h[members], a[members],
                                   plus[members], minus[members], allowance, sigma, rtol, atol)
            if outcome is None:
                continue
            parent[root(q)] = root(p)
            results.append(outcome)
            names.append(" + ".join(layout.name(i) for i in idx[members]))
    for p in range(len(idx)):
        groups.setdefault(root(p), []).append(p)
    for members in groups.values():
        if len(members) < 3:
            continue
        outcome = _joint_probe(session, layout, idx[members], h[members], a[members],
                               plus[members], minus[members], allowance, sigma, rtol, atol,
                               force=True)
        results.append(outcome)
        names.append(f"{layout.name(idx[members[0]])} + ... ({len(members)} tied entries)")
    if not results:
        return Judged.empty(), len(idx)
    column = {key: np.array([r[key] for r in results]) for key in results[0]}
    return Judged(ids=np.arange(len(names)), name_of=names.__getitem__,
                  analytic=column["analytic"], numeric=column["numeric"],
                  error=column["error"], scale=column["scale"], step=column["step"],
                  status=column["status"].astype(object),
                  cause=np.full(len(names), "", dtype=object),
                  forward=column["right"], backward=column["left"]), len(idx)


def _joint_probe(session, layout, idx, h, a, plus, minus, allowance, sigma, rtol, atol,
                 force: bool = False) -> dict | None:
    """``g . v`` along ``v = sum h_i e_i`` against the one-sided derivatives, per unit length
    of ``v``; None when the entries do not interact (and ``force`` is off)."""
    v = np.zeros(layout.size)
    v[idx] = h
    support = slice(int(idx.min()), int(idx.max()) + 1)
    along_plus, along_minus = session.direction_deltas(v, [1.0, -1.0], "kinks", support)
    separate_plus, separate_minus = float(np.sum(plus)), float(np.sum(minus))
    slack = allowance + _INTERACTION * float(np.sum(np.abs(plus)))
    interacts = (abs(along_plus - separate_plus) > slack
                 or abs(along_minus - separate_minus) > slack)
    if not (interacts or force):
        return None
    length = float(np.linalg.norm(h))
    g_v = float(a @ h) / length
    right, left = along_plus / length, -along_minus / length
    lower, upper = min(left, right), max(left, right)
    error = NOISE_SIGMAS * np.sqrt(2.0) * sigma / length
    allowed = float(judge.tolerance(np.array(g_v), np.array(max(abs(lower), abs(upper))), rtol,
                                    atol)) + error
    inside = lower - allowed <= g_v <= upper + allowed
    return {"analytic": g_v, "numeric": float(np.clip(g_v, lower, upper)), "error": error,
            "scale": max(abs(g_v), abs(upper), abs(lower)), "step": length, "right": right,
            "left": left, "status": judge.KINK if inside else judge.FAIL}
