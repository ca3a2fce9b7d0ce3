"""Diagnostics beyond a pass/fail check: the error-versus-step curve and the Taylor test.

:func:`step_sweep` shows why the default step is what it is: the finite-difference error
falls like ``h**order`` while truncation dominates, then rises like ``EPS / h`` once rounding
does. :func:`taylor_test` checks a gradient without choosing a step at all: the remainder
``|f(x + e v) - f(x) - e g.v|`` falls like ``e**2`` for a correct gradient and like ``e``
for a wrong one.

Both run on a :class:`~fastfd._session.Session`, so models' exact evaluators, parallel
backends, entry names and error handling apply unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from . import _validate
from ._calls import loss_and_grad
from ._differences import nominal_steps, stencil_pass
from ._judge import relative_error
from ._params import gather
from ._sampling import random_directions, stratified_sample
from ._session import Session
from ._stencils import get_stencil
from ._steps import actual_steps
from ._taylor import TaylorTest, loglog_fit, run_taylor, taylor_eps
from .executors import Evaluator
from .report import json_safe

__all__ = ["Regime", "StepSweep", "TaylorTest", "step_sweep", "taylor_test"]

DEFAULT_STEPS = np.logspace(-1, -12, 23)  # 1e-1 .. 1e-12 in half decades
SWEEP_AUTO_SAMPLE = 2000

LOST, SATURATED, TRUNCATION, PLATEAU, ROUNDING = (
    "lost to rounding", "saturated", "truncation", "plateau", "rounding")

# Regime detection on the error-vs-step curve.
# A relative error this large means the difference quotient carries no correct digit.
_SATURATED_ERROR = 0.25
# Points within this factor of the minimum error form the plateau (the curve's rounded bottom,
# where truncation and rounding are comparable and neither slope is visible).
_PLATEAU_FACTOR = 3.0
# Rounding error is random: a monotone run may dip below its running maximum by this factor.
_WIGGLE = 2.0
# A wrong gradient: the curve's flat bottom spans at least this many decades of steps, at an
# error this many times above what a correct gradient reaches.
_FLAT_DECADES = 3.0
_WRONG_FACTOR = 100.0



# --------------------------------------------------------------------------------------------
# step sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regime:
    """A stretch of the error-vs-step curve.

    Attributes
    ----------
    name : {"truncation", "plateau", "rounding"}
    step_max, step_min : float
        The largest and smallest step of the stretch.
    slope : float or None
        Least-squares slope of ``log(error)`` against ``log(step)`` over the stretch
        (None with fewer than two positive errors).
    n_points : int
        Steps in the stretch.
    """

    name: str
    step_max: float
    step_min: float
    slope: float | None
    n_points: int


@dataclass(frozen=True)
class StepSweep:
    """The outcome of :func:`step_sweep` (immutable).

    Attributes
    ----------
    steps : tuple of float
        Absolute steps, largest first.
    norm_rel_error : tuple of float
        ``||a - n|| / (||a|| + ||n||)`` over the checked entries at each step (NaN where the
        step is lost to rounding).
    max_rel_error : tuple of float
        Largest ``|a - n| / max(|a|, |n|)`` over the checked entries at each step.
    labels : tuple of str
        The regime of each step: ``"truncation"``, ``"plateau"``, ``"rounding"``,
        ``"saturated"`` (no correct digit), ``"lost to rounding"`` (``x + h == x`` for some
        entry) or ``""`` (outside the monotone runs either side of the minimum).
    method : str
        Finite-difference stencil.
    order : int
        Its truncation order: the slope expected in the truncation regime.
    best_step, best_error : float or None
        The step with the smallest norm relative error, and that error.
    regimes : tuple of Regime
        The regimes found, largest steps first; truncation and rounding are absent when the
        curve shows no monotone run of at least two points on their side.
    dtype : str
        Dtype of the parameters.
    n_params, n_checked, n_evals : int
        Parameters, entries compared at every step, loss evaluations made.
    sampled : bool
        Whether a subset of the entries was checked.
    diagnosis : str or None
        ``"the gradient is wrong, not the step: ..."`` when the error stays flat over
        decades of steps far above what the finite differences achieve for a correct
        gradient of a loss this precise (the measured noise says how far); None otherwise.
    """

    steps: tuple[float, ...]
    norm_rel_error: tuple[float, ...]
    max_rel_error: tuple[float, ...]
    labels: tuple[str, ...]
    method: str
    order: int
    best_step: float | None
    best_error: float | None
    regimes: tuple[Regime, ...]
    dtype: str
    n_params: int
    n_checked: int
    n_evals: int
    sampled: bool
    diagnosis: str | None = None

    def regime(self, name: str) -> Regime | None:
        """The regime called ``name``, or None when the curve does not show it."""
        return next((r for r in self.regimes if r.name == name), None)

    @property
    def truncation(self) -> Regime | None:
        """The large-step regime where the error falls like ``h**order``."""
        return self.regime(TRUNCATION)

    @property
    def plateau(self) -> Regime | None:
        """The bottom of the curve, around the best step."""
        return self.regime(PLATEAU)

    @property
    def rounding(self) -> Regime | None:
        """The small-step regime where the error grows like ``EPS / h``."""
        return self.regime(ROUNDING)

    def to_dict(self) -> dict:
        """A JSON-serializable dict of every field (non-finite floats become None)."""
        return json_safe(asdict(self))

    def __str__(self) -> str:
        scope = "sampled" if self.sampled else "all"
        lines = [
            f"fastfd step sweep: {self.method} differences (order {self.order}), "
            f"{self.n_checked} of {self.n_params} entries ({scope}), {self.dtype}, "
            f"{self.n_evals} loss evaluations",
            f"    {'step':>9}  {'norm rel err':>12}  {'max rel err':>11}  regime",
        ]
        for h, norm, worst, label in zip(self.steps, self.norm_rel_error, self.max_rel_error,
                                         self.labels):
            mark = "  <- best" if h == self.best_step else ""
            lines.append(f"    {h:>9.2e}  {norm:>12.2e}  {worst:>11.2e}  {label or '-'}{mark}")
        if self.best_step is None:
            lines.append("  no step could be evaluated (all lost to rounding)")
            return "\n".join(lines)
        lines.append(f"  best step {self.best_step:.2e} (norm rel error {self.best_error:.2e})")
        expected = {TRUNCATION: f"expected ~{self.order}", ROUNDING: "expected ~-1",
                    PLATEAU: "expected ~0"}
        for name in (TRUNCATION, PLATEAU, ROUNDING):
            found = self.regime(name)
            if found is None:
                lines.append(f"  {name}: not seen in this range of steps")
                continue
            slope = "n/a" if found.slope is None else f"{found.slope:+.2f}"
            lines.append(
                f"  {name}: steps {found.step_max:.1e} .. {found.step_min:.1e}, slope {slope} "
                f"({expected[name]})"
            )
        if self.diagnosis:
            lines.append(f"  {self.diagnosis}")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Log-log plot of the errors against the step, regimes and best step annotated.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw; a new figure by default.

        Returns
        -------
        matplotlib.axes.Axes
        """
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ImportError("plotting needs matplotlib: pip install 'fastfd[plot]'") from None
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
        steps = np.asarray(self.steps, dtype=float)
        norm = _positive_or_nan(self.norm_rel_error)
        ax.loglog(steps, norm, "o-", label="norm rel error")
        ax.loglog(steps, _positive_or_nan(self.max_rel_error), "s--", alpha=0.6,
                  label="max rel error")
        labels = np.asarray(self.labels, dtype=object)
        for found in (self.truncation, self.rounding):
            if found is None or found.slope is None:
                continue
            mine = labels == found.name
            slope, intercept = loglog_fit(steps[mine], norm[mine])
            span = np.array([found.step_min, found.step_max])
            line = 10.0**intercept * span**slope
            ax.loglog(span, line, ":", color="black", linewidth=1)
            mid = math.sqrt(found.step_min * found.step_max)
            ax.annotate(f"{found.name}: slope {slope:+.2f}",
                        xy=(mid, 10.0**intercept * mid**slope), xytext=(0, 8),
                        textcoords="offset points", ha="center", fontsize="small")
        if self.best_step is not None:
            ax.axvline(self.best_step, color="gray", linewidth=0.8)
            ax.loglog([self.best_step], [self.best_error or np.nan], "*", markersize=14,
                      label=f"best step {self.best_step:.1e}")
        ax.set_xlabel("step h")
        ax.set_ylabel("relative error")
        ax.set_title(f"fastfd step sweep ({self.method}, {self.dtype})")
        if self.diagnosis:
            ax.text(0.02, 0.02, "the gradient is wrong, not the step", transform=ax.transAxes,
                    color="red", fontsize="small", va="bottom")
        ax.legend(fontsize="small")
        return ax


def _positive_or_nan(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return np.where(arr > 0, arr, np.nan)


def _monotone_run(errors: np.ndarray, usable: np.ndarray, start: int, direction: int) -> list[int]:
    """Indices from ``start`` outward along ``direction`` while the error keeps rising (up to
    a dip of ``_WIGGLE`` below its running maximum: rounding error is random)."""
    run, top = [start], errors[start]
    k = start + direction
    while 0 <= k < len(errors) and usable[k] and errors[k] >= top / _WIGGLE:
        run.append(k)
        top = max(top, errors[k])
        k += direction
    return run


def detect_regimes(steps, errors) -> tuple[tuple[str, ...], tuple[Regime, ...]]:
    """Label each point of an error-vs-step curve and fit the slope of each regime.

    From the minimum, the curve is followed outward on both sides while the error keeps
    rising. Points within ``_PLATEAU_FACTOR`` of the minimum are the plateau; the rest of the
    run towards larger steps is the truncation regime, towards smaller steps the rounding
    regime. Each slope is a least-squares fit in log-log. Points whose error exceeds
    ``_SATURATED_ERROR`` carry no digit and end a run; NaN errors are steps lost to rounding.

    Parameters
    ----------
    steps : array of float
        Steps, largest first.
    errors : array of float
        Relative errors at those steps (NaN: not evaluated).

    Returns
    -------
    labels : tuple of str
        The regime of every point (``""`` for points outside the runs).
    regimes : tuple of Regime
        Truncation, plateau and rounding, each only if present.

    Examples
    --------
    >>> h = np.logspace(-1, -12, 23)
    >>> labels, regimes = detect_regimes(h, h**2 + 1e-16 / h)
    >>> [(r.name, r.n_points, round(r.slope, 1)) for r in regimes]
    [('truncation', 8, 2.0), ('plateau', 3, 0.0), ('rounding', 12, -1.0)]
    >>> labels[0], labels[9], labels[-1]
    ('truncation', 'plateau', 'rounding')
    """
    steps = np.asarray(steps, dtype=float)
    errors = np.asarray(errors, dtype=float)
    labels = np.full(len(steps), "", dtype=object)
    finite = np.isfinite(errors)
    labels[~finite] = LOST
    saturated = finite & (errors >= _SATURATED_ERROR)
    labels[saturated] = SATURATED
    usable = finite & ~saturated
    if not usable.any():
        return tuple(labels), ()
    best = int(np.flatnonzero(usable)[np.argmin(errors[usable])])
    bottom = _PLATEAU_FACTOR * errors[best]
    plateau = [best]
    regimes = []
    for name, direction in ((TRUNCATION, -1), (ROUNDING, +1)):
        side = _monotone_run(errors, usable, best, direction)[1:]
        n_flat = next((j for j, k in enumerate(side) if errors[k] > bottom), len(side))
        plateau += side[:n_flat]
        slope_points = side[n_flat:]
        fit = loglog_fit(steps[slope_points], errors[slope_points])
        if fit is None:
            continue
        labels[slope_points] = name
        regimes.append(Regime(name, float(steps[slope_points].max()),
                              float(steps[slope_points].min()), fit[0], len(slope_points)))
    plateau = sorted(plateau)
    labels[plateau] = PLATEAU
    fit = loglog_fit(steps[plateau], errors[plateau])
    regimes.append(Regime(PLATEAU, float(steps[plateau].max()), float(steps[plateau].min()),
                          None if fit is None else fit[0], len(plateau)))
    order = {TRUNCATION: 0, PLATEAU: 1, ROUNDING: 2}
    return tuple(labels), tuple(sorted(regimes, key=lambda r: order[r.name]))


def step_sweep(
    f: Callable,
    grad,
    params,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    steps=None,
    sample="auto",
    method: str = "central",
    seed: int = 0,
    n_jobs: int = 1,
    backend: str | None = None,
    evaluator: Evaluator | str | None = None,
) -> StepSweep:
    """Finite-difference error against the analytic gradient over a range of steps.

    At every step ``h`` the finite-difference gradient of the sampled entries is compared
    with the analytic one. Large steps show the truncation regime (the error falls like
    ``h**order``: 2 for central, 1 for one-sided, 4 for ``central4``), small steps the
    rounding regime (the error grows like ``EPS / h``), with a plateau between them whose
    bottom is the best step.

    Parameters
    ----------
    f, grad, params, args, kwargs
        As in :func:`fastfd.check_gradient` (``grad=True`` for ``f`` returning
        ``(loss, grad)``).
    steps : sequence of float, optional
        Absolute steps (the same ``h`` for every entry, *not* scaled by ``max(1, |x|)`` as
        the default steps of :func:`fastfd.check_gradient` are), swept from the largest to
        the smallest. Default ``np.logspace(-1, -12, 23)``: 1e-1 to 1e-12 in half decades.
        A step lost to rounding for some entry (``x + h == x``) is reported with NaN errors.
        The loss must be finite within ``[x - 2h, x + 2h]`` for every step.
    sample : "auto", "all", None, int or float
        Entries to compare: ``"auto"`` takes all entries up to 2000, else a stratified
        sample of 2000; an int ``k`` about ``k`` entries, a float that fraction (the same
        stratified rule as :func:`fastfd.check_gradient`). The same entries are used at
        every step.
    method : {"central", "forward", "backward", "central4"}
        Stencil.
    seed : int
        Seed of the sample.
    n_jobs, backend : int, str, optional
        Parallel evaluation (joblib convention, ``-1`` = all cores).
    evaluator : Evaluator or str, optional
        How to evaluate perturbed losses; chosen automatically by default (models from
        :mod:`fastfd.models` bring an exact incremental one, whose differences have no
        cancellation, so the rounding regime moves to far smaller steps or disappears).

    Returns
    -------
    StepSweep
        Errors per step, best step, regimes with their fitted slopes; ``str()`` gives a
        table, ``plot()`` a log-log figure.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.diagnostics import step_sweep
    >>> sweep = step_sweep(lambda x: np.sum(np.sin(x)), np.cos, np.linspace(-1, 1, 7))
    >>> round(sweep.truncation.slope), round(sweep.rounding.slope)
    (2, -1)
    >>> 1e-7 < sweep.best_step < 1e-4
    True
    """
    stencil = get_stencil(method)
    if stencil.name == "complex":
        raise ValueError("step_sweep shows the step dilemma of differences; method='complex' "
                         "has none (its error is rounding at any tiny step)")
    rng = _validate.seed(seed)
    _validate.sample(sample, 2)
    sweep = DEFAULT_STEPS.copy() if steps is None else _validate.descending(steps, "steps")
    loss, grad = loss_and_grad(f, grad, args, kwargs)
    with Session(loss, params, evaluator=evaluator, n_jobs=n_jobs, backend=backend,
                 seed=seed) as session:
        layout = session.layout
        sample_k = _validate.sample(sample, layout.size)
        if sample_k == "auto":
            sample_k = None if layout.size <= SWEEP_AUTO_SAMPLE else SWEEP_AUTO_SAMPLE
        analytic_leaves = session.analytic(grad)
        del grad
        if sample_k is None:
            coords = np.arange(layout.size)
        else:
            coords = stratified_sample(layout, sample_k, rng)
        analytic = gather(layout, analytic_leaves, coords)
        a_norm = float(np.linalg.norm(analytic))
        rel_noise = session.coordinate_noise.rel_noise

        norm_errors, max_errors = [], []
        for h in sweep:
            nominal = nominal_steps(session, float(h), coords, stencil)
            if np.any(actual_steps(session.x[coords], nominal) <= 0):
                norm_errors.append(math.nan)
                max_errors.append(math.nan)
                continue
            numeric = stencil_pass(session, coords, nominal, stencil, "sweep")[0]
            denom = a_norm + float(np.linalg.norm(numeric))
            norm_errors.append(float(np.linalg.norm(analytic - numeric) / denom)
                               if denom > 0 else 0.0)
            max_errors.append(float(relative_error(analytic, numeric).max()))
        session.ensure_unmodified()

    labels, regimes = detect_regimes(sweep, norm_errors)
    errors = np.asarray(norm_errors)
    evaluated = np.isfinite(errors)
    best = int(np.flatnonzero(evaluated)[np.argmin(errors[evaluated])]) if evaluated.any() else None
    return StepSweep(
        steps=tuple(float(h) for h in sweep),
        norm_rel_error=tuple(norm_errors),
        max_rel_error=tuple(max_errors),
        labels=labels,
        method=stencil.name,
        order=stencil.order,
        best_step=None if best is None else float(sweep[best]),
        best_error=None if best is None else float(errors[best]),
        regimes=regimes,
        dtype=str(layout.dtype),
        n_params=layout.size,
        n_checked=len(coords),
        n_evals=session.n_evals,
        sampled=sample_k is not None,
        diagnosis=_diagnose(regimes, best_error=None if best is None else float(errors[best]),
                            stencil=stencil, rel_noise=rel_noise),
    )


def _diagnose(regimes, best_error, stencil, rel_noise: float) -> str | None:
    """The wrong-gradient diagnosis: a flat bottom over >= 3 decades of steps, far above the
    error a correct gradient reaches at the best step, ``~rel_noise**(order/(order+1))``."""
    plateau = next((r for r in regimes if r.name == PLATEAU), None)
    if plateau is None or best_error is None:
        return None
    decades = math.log10(plateau.step_max / plateau.step_min)
    achievable = rel_noise ** (stencil.order / (stencil.order + 1))
    if decades < _FLAT_DECADES or best_error < _WRONG_FACTOR * achievable:
        return None
    return (f"the gradient is wrong, not the step: the error stays near {best_error:.1e} over "
            f"{decades:.0f} decades of steps ({plateau.step_max:.0e} .. {plateau.step_min:.0e}), "
            f"while a correct gradient of a loss this precise (noise ~{rel_noise:.0e} relative) "
            f"reaches about {achievable:.0e} at the best step")


# --------------------------------------------------------------------------------------------
# Taylor test
# --------------------------------------------------------------------------------------------


def taylor_test(f: Callable, grad, params, *, args: tuple = (), kwargs: dict | None = None,
                direction=None, seed: int = 0, eps=None) -> TaylorTest:
    """Check a gradient by the Taylor remainder along one direction, with no step to choose.

    ``r(e) = |f(x + e v) - f(x) - e g.v|`` is ``O(e**2)`` when ``g`` is the gradient and
    ``O(e)`` when it is not, so the slope of ``log r`` against ``log e`` is 2 or 1. The
    ``e g.v`` term uses the displacement really taken after rounding ``x + e v`` to the
    params' dtype. Remainders within 30 standard deviations of the loss's noise (measured at
    ``params``, see :func:`fastfd.check_gradient`) are not fitted; the slope is fitted on the
    smallest ``e`` above that floor (up to 4 points), where the expansion is asymptotic. The
    result's ``resolution`` says how small an error of ``g.v`` those points could reveal.

    A kink of ``f`` along ``v`` (``|x|``, ReLU, hinge at the origin of the line) also gives
    slope 1 with a correct subgradient. It is recognised by the second difference
    ``f(x+ev) + f(x-ev) - 2 f(x)``, which falls like ``e`` at a kink and like ``e**2``
    otherwise (a wrong gradient cancels from it): the verdict is then ``"inconclusive"``
    if ``g.v`` lies between the one-sided directional derivatives, ``"fail"`` if not.

    Parameters
    ----------
    f, grad, params, args, kwargs
        As in :func:`fastfd.check_gradient`.
    direction : structure like params, optional
        The direction ``v`` (not normalized). Default: a random unit vector drawn with
        ``seed``. One direction tests one projection ``g.v`` of the gradient; a random one
        catches any given error with probability one.
    seed : int
        Seed of the random direction.
    eps : float or sequence of float, optional
        The multiples ``e`` of ``v``. A sequence (at least 3 distinct positive values) is
        used as given; a float ``e0`` gives 16 values halving from it. Default ``e0`` with
        ``e0 * max|v| = 0.1 * max(1, max|x|)``. Values of ``e`` where the loss is not finite
        are dropped and reported.

    Returns
    -------
    TaylorTest
        Verdict, reason, remainders, slopes; ``str()`` gives a table.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.diagnostics import taylor_test
    >>> f = lambda x: np.sum(np.exp(x)) + x @ x
    >>> x = np.array([0.5, -1.0, 2.0])
    >>> result = taylor_test(f, lambda x: np.exp(x) + 2 * x, x)
    >>> result.verdict, round(result.fitted_slope)
    ('pass', 2)
    >>> taylor_test(f, lambda x: np.exp(x) + x, x).verdict
    'fail'
    """
    rng = _validate.seed(seed)
    loss, grad = loss_and_grad(f, grad, args, kwargs)
    with Session(loss, params, seed=seed) as session:
        analytic_leaves = session.analytic(grad)
        del grad
        if direction is None:
            v = next(random_directions(session.layout, 1, rng))
            where = f"random unit direction (seed {seed})"
        else:
            v = session.layout.flatten_like(direction, "direction")
            if not np.any(v):
                raise ValueError("direction is zero; pass a non-zero direction")
            where = "given direction"
        result = run_taylor(session, analytic_leaves, v, taylor_eps(eps, session, v), where)
        session.ensure_unmodified()
    return result
