"""The session: state that the stages of one public call share.

A :class:`Session` is built once per call to :func:`~fastfd.numerical_gradient`,
:func:`~fastfd.check_gradient`, :func:`~fastfd.step_sweep` or :func:`~fastfd.taylor_test`.
It holds the flattened parameters (a private copy ``x`` and its :class:`~fastfd._params.Layout`),
the evaluator, the loss at the params ``f0``, the noise estimate (measured on first use), the
count of loss evaluations, and the one progress bar of the call. Stages (noise, plan, combine,
judge) are functions; they evaluate the loss only through the session's methods, which check
every value for finiteness, count it, and leave ``x`` unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

import numpy as np

from . import _noise, _validate
from ._params import Layout, checked_leaves, dot, first_difference, flatten_leaves
from ._steps import exact_line, scale
from .errors import LossNotFiniteError
from .executors import Evaluator, select_evaluator
from .executors._base import add_note, annotate, loss_scalar, modified_input_error

_CHUNK = 2**16  # entries per chunk of O(P) work that would otherwise allocate O(P)


def complex_step_evaluator(evaluator: Evaluator) -> Evaluator:
    """The complex step through ``evaluator``, or a clear error where it cannot apply."""
    from ._complex import ComplexStepEvaluator

    if evaluator.exact_deltas or not evaluator.full_cost_per_eval:
        raise ValueError(
            f"method='complex' evaluates the loss at complex params one entry at a time; "
            f"{type(evaluator).__name__} has its own perturbation path (a model, a stack or a "
            "compiled driver): use the serial, threading, loky or dask evaluators")
    return ComplexStepEvaluator(evaluator)


def _check_bindable(params, evaluator) -> None:
    from .executors import SerialEvaluator

    if not isinstance(params, (dict, list)):
        raise TypeError(f"bind=True puts fastfd's private copies into params for the call, so "
                        f"params must be a dict or a list (a model's params); got "
                        f"{type(params).__name__}")
    if type(evaluator) is not SerialEvaluator:
        raise ValueError("bind=True evaluates the loss in this process, one perturbation at a "
                         "time (the container holds one set of arrays): drop n_jobs, backend, "
                         "batched and evaluator")


class Session:
    """State of one call: params, evaluator, ``f(x)``, noise level, evaluation count.

    Parameters
    ----------
    f : callable
        The loss.
    params : array or structure of arrays
        The caller's parameters (only read).
    evaluator, n_jobs, backend, batched
        How perturbed losses are evaluated (see :func:`fastfd.executors.select_evaluator`).
    progress : bool
        Show one tqdm bar for every evaluation the call makes.
    seed : int
        Seed of the noise line's direction (its own stream).
    bind : bool
        Put views of the private copy into ``params`` (a dict or list) while the session is
        entered, for losses that read a model's own container; the caller's arrays are put
        back on exit, never written.
    complex_step : bool
        Coordinate deltas by the complex step (``method="complex"``, see
        :mod:`fastfd._complex`); the noise line and directions stay real.

    Use it as a context manager: entering evaluates ``f(x)`` (and binds, and starts the bar),
    leaving restores the container and closes the bar, also when the loss raises.

    Attributes
    ----------
    layout : Layout
    x : ndarray
        Private flat copy of the params; every method leaves it as it found it.
    evaluator : Evaluator
    f0 : float
        The loss at the params.
    eps : float
        Rounding unit of the params' dtype.
    result_eps : float
        Rounding unit of the coarser of the params' dtype and the loss's result dtype.
    base_seconds : float
        Wall time of the first evaluation.
    line_seconds, line_evals : float, int
        Time in, and number of, full evaluations along lines (noise line, directions): the
        auto sample's estimate of a loss evaluation's cost.
    n_evals : int
        Loss evaluations so far.
    """

    def __init__(self, f: Callable, params, *, evaluator: Evaluator | str | None = None,
                 n_jobs: int = 1, backend: str | None = None, batched: bool = False,
                 progress: bool = False, seed: int = 0, bind: bool = False,
                 complex_step: bool = False):
        _validate.loss_callable(f)
        self.params = params
        self.layout: Layout
        self.layout, self.x, self._originals = flatten_leaves(
            params, getattr(f, "param_name", "x"))
        self.evaluator: Evaluator = select_evaluator(
            f, self.layout, evaluator=evaluator, n_jobs=n_jobs, backend=backend, batched=batched)
        if complex_step:
            self.evaluator = complex_step_evaluator(self.evaluator)
        self._bind = _validate.flag(bind, "bind")
        if self._bind:
            _check_bindable(params, self.evaluator)
        self.seed = int(seed)
        self.n_evals = 0
        self.line_seconds = 0.0  # time in full evaluations along lines (noise, directions)
        self.line_evals = 0
        #: a stencil pass kept for reuse: ``(stencil, coords, nominal, result)`` (the auto
        #: sample's timing pass is the check's own first pass on those entries)
        self.kept_pass = None
        self._show_progress = bool(progress)
        self._bar = None
        self._noise: _noise.NoiseEstimate | None = None
        self._bound: list | None = None
        self.eps = float(np.finfo(self.layout.dtype).eps)

    def __enter__(self) -> Session:
        """Bind the private copy (``bind=True``), start the progress bar, evaluate ``f(x)``."""
        self._stack = contextlib.ExitStack()
        try:
            if self._bind:
                self._stack.callback(self._unbind)
                self._bind_views()
            self._stack.enter_context(self._progress_bar())
            self._evaluate_base()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _evaluate_base(self) -> None:
        began = time.perf_counter()
        raw = self.guarded(lambda: self.evaluator.value(self.x), "params")
        self.base_seconds = time.perf_counter() - began
        self.evaluator.seconds_per_eval = self.base_seconds
        self.n_evals += 1
        self.f0 = loss_scalar(raw)
        self.ensure_unmodified()  # before anything else compares values at x
        if not np.isfinite(self.f0):
            raise LossNotFiniteError(f"the loss is not finite at params (got {self.f0!r})")
        eps = self.eps
        raw_dtype = np.asarray(raw).dtype
        if raw_dtype.kind == "f":
            eps = max(eps, float(np.finfo(raw_dtype).eps))
        self.result_eps = eps

    def _bind_views(self) -> None:
        """Put views of the private copy into the caller's container (``bind=True``), so a loss
        that reads the container instead of its argument sees the perturbations."""
        views = self.layout.views(self.x)
        keys = list(self.params.keys()) if isinstance(self.params, Mapping) else range(
            len(self.params))
        self._bound = [(k, self.params[k]) for k in keys]
        for k in keys:
            self.params[k] = views[k]

    def _unbind(self) -> None:
        """Put the caller's own arrays back (they were never written)."""
        for k, original in self._bound or ():
            self.params[k] = original
        self._bound = None

    # ------------------------------------------------------------------ evaluation helpers

    @staticmethod
    def guarded(call, where: str):
        """``call()``, naming ``where`` on any exception it raises (type and traceback kept)."""
        try:
            return call()
        except Exception as error:
            annotate(error, where)
            raise

    @contextlib.contextmanager
    def _progress_bar(self):
        """One bar for every evaluation made inside the block (none unless ``progress``)."""
        if not self._show_progress:
            yield
            return
        from tqdm.auto import tqdm

        with tqdm(total=0, desc="fastfd", unit="eval") as bar:
            self._bar = bar
            self.evaluator.progress = bar.update
            try:
                yield
            finally:
                self.evaluator.progress = None
                self._bar = None

    def _announce(self, n: int, stage: str) -> None:
        if self._bar is not None:
            self._bar.total += n
            self._bar.set_description(f"fastfd {stage}", refresh=False)
            self._bar.refresh()

    def coord_deltas(self, coords: np.ndarray, offsets: np.ndarray, stage: str,
                     allow_nonfinite: bool = False) -> np.ndarray:
        """``f(x + offsets[k] e[coords[k]]) - f(x)``; a clear error where one is not finite,
        unless ``allow_nonfinite`` (ladder levels above the first: NaN is then returned)."""
        self._announce(len(coords), stage)
        d = self.evaluator.perturbed_deltas(self.x, coords, offsets, self.f0)
        self.n_evals += len(coords) + self.evaluator.extra_evals()
        bad = ~np.isfinite(d)
        if bad.any():
            if allow_nonfinite:
                return np.where(bad, np.nan, d)
            k = int(np.flatnonzero(bad)[0])
            raise LossNotFiniteError(
                f"the loss is not finite at {self.layout.name(coords[k])} perturbed by "
                f"{offsets[k]:+.3g} (f = {float(self.f0 + d[k])!r}); the step leaves the loss's "
                "domain: pass a smaller step")
        return d

    def direction_deltas(self, direction: np.ndarray, scales, stage: str,
                         support: slice | None = None, allow_nonfinite: bool = False):
        """``f(x + s * direction) - f(x)`` for every scale ``s``; ``direction`` is zero
        outside ``support``."""
        scales = np.asarray(scales, dtype=float)
        self._announce(len(scales), stage)
        began = time.perf_counter()
        try:
            values = self.evaluator.direction_values(self.x, direction, scales, support=support)
        except Exception as error:
            add_note(error, f"fastfd: stage {stage!r} (params moved along a direction)")
            raise
        self.line_seconds += time.perf_counter() - began
        self.line_evals += len(scales)
        if self._bar is not None:
            self._bar.update(len(scales))
        self.n_evals += len(scales)
        bad = ~np.isfinite(values)
        if bad.any() and not allow_nonfinite:
            scale = scales[int(np.flatnonzero(bad)[0])]
            raise LossNotFiniteError(
                f"the loss is not finite at params + {scale:.3g} * direction; pass a smaller step")
        return np.where(bad, np.nan, values - self.f0)

    def seconds_per_eval(self) -> float:
        """Mean wall time of one full loss evaluation so far."""
        if self.line_evals:
            return self.line_seconds / self.line_evals
        return self.base_seconds

    def displacement(self, direction: np.ndarray, scale: float, support=None) -> np.ndarray:
        """What ``x + scale * direction`` really moves (on ``support``) after rounding to the
        params' dtype, computed as the evaluators compute the point; zeros if nothing moves."""
        support = slice(None) if support is None else support
        xs = self.x[support]
        moved = scale * direction[support]
        moved += xs  # float64, as in the evaluators' np.add(x, s * direction)
        if self.layout.dtype != np.float64:
            moved = moved.astype(self.layout.dtype).astype(np.float64)
        moved -= xs
        return moved

    def span_projection(self, leaves, direction: np.ndarray, scale: float,
                        support: slice | None = None) -> tuple[float, bool]:
        """``(g . (d(+s) - d(-s)), moved)``: the analytic gradient ``leaves`` against the
        displacements really taken at ``x +- scale * direction`` (zero outside ``support``),
        and whether either moved at all. Computed in chunks (O(1) extra memory)."""
        support = slice(0, self.layout.size) if support is None else support
        total, moved = 0.0, False
        for lo in range(support.start, support.stop, _CHUNK):
            part = slice(lo, min(support.stop, lo + _CHUNK))
            span = self.displacement(direction, scale, part)
            span -= self.displacement(direction, -scale, part)
            moved = moved or bool(span.any())
            total += dot(self.layout, leaves, span, lo)
        return total, moved

    # ------------------------------------------------------------------ noise

    @property
    def noise(self) -> _noise.NoiseEstimate:
        """The loss's noise at the params, measured on first use (9 to 49 evaluations)."""
        if self._noise is None:
            self._noise = self._measure_noise()
        return self._noise

    @property
    def coordinate_noise(self) -> _noise.NoiseEstimate:
        """The noise model of coordinate differences: the evaluator's own bound where it
        computes exact deltas (no evaluation), else the measured noise."""
        if self.evaluator.exact_deltas:
            return _noise.exact(self.f0, self.eps, self.evaluator.exact_reason)
        return self.noise

    def _measure_noise(self) -> _noise.NoiseEstimate:
        # every entry moves (by ~spacing * max(1, |x|), Gaussian): how much rounding changes
        # depends on how many entries move, and directions move them all. The Gaussian is
        # redrawn per line from the same seed, chunk by chunk: one O(P) array at a time.
        size = self.layout.size

        def line(spacing: float) -> np.ndarray:
            rng = np.random.default_rng([self.seed, 3])
            d = np.empty(size)
            for lo in range(0, size, _CHUNK):
                part = slice(lo, min(size, lo + _CHUNK))
                xs = self.x[part]
                step = rng.standard_normal(part.stop - lo) * (spacing * scale(xs))
                d[part] = exact_line(xs, step, _noise.T_MAX)
            return d

        def values(d, ts):
            if d is None:  # f(x) again
                d = np.zeros(size)
            return self.direction_deltas(d, ts, "noise", allow_nonfinite=True) + self.f0

        estimate = _noise.measure(values, line, self.f0, self.eps, self.result_eps)
        if estimate.source == _noise.NOT_DETECTED and _noise.far_change(
                values, line, self.f0) == 0:
            raise ValueError(
                "the loss does not change when the parameters change (not even when every "
                "entry moves by 10%): it does not depend on the argument it is given. A loss "
                "such as `lambda _: model.loss(X, y)` reads the model's own arrays, not "
                "fastfd's private copy: write `lambda p: model.loss(p, X, y)`, or pass "
                "bind=True with params=model.params (see the README)")
        return estimate

    # ------------------------------------------------------------------ the analytic side

    def analytic(self, grad) -> list[np.ndarray]:
        """The analytic gradient's arrays, validated, without a flat copy (O(P) memory matters
        for huge models). A callable gets views of the private copy; if it writes to them, the
        copy is restored from the caller's (untouched) arrays."""
        layout, x = self.layout, self.x
        called = callable(grad)
        if called:
            grad = self.guarded(lambda: grad(layout.views(x)), "params (in grad)")
        leaves = checked_leaves(layout, grad, "gradient")
        # a gradient aliasing the buffer would change under the perturbations: copy it (before
        # the buffer is restored below); keep every array contiguous so that partial dot
        # products never copy whole arrays
        leaves = [np.array(leaf) if np.shares_memory(leaf, x) else np.ascontiguousarray(leaf)
                  for leaf in leaves]
        if called and first_difference(layout, x, self._originals) is not None:
            for leaf, (_, s) in zip(self._originals, layout.slices()):
                x[s] = leaf.reshape(-1)  # grad wrote into its argument: undo it
        return leaves

    def ensure_unmodified(self) -> None:
        """Raise if the loss changed its argument in place (the numbers would be meaningless)."""
        i = first_difference(self.layout, self.x, self._originals)
        if i is not None:
            raise modified_input_error(self.layout.name(i))
