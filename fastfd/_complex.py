"""The complex step: ``f'(x) e_j = Im f(x + i h e_j) / h``, exact to rounding for analytic losses.

No difference of two rounded losses is taken, so there is no cancellation and no step-size
dilemma: with ``h = 1e-20 max(1, |x|)`` the truncation ``h**2 f''' / 6`` is far below rounding
(Martins, Sturdza & Alonso, ACM TOMS 29(3), 2003). It needs a *complex-safe* loss: one that
extends analytically to complex input (no ``abs``, ``maximum``, comparisons, ``float()`` or
``astype(float)`` on perturbed values). :class:`ComplexStepEvaluator` checks that once, along a
random direction, against ordinary central differences, and says what is wrong otherwise.

The complex step runs on the same engine: ``g(t) = Im f(x + i t)`` is a real loss of the
displacement ``t``, evaluated by the session's own evaluator (serial, threads, processes,
dask) from ``t = 0``, and its values are exact deltas (``g(0) = 0``) whose only error is the
rounding of the imaginary part.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._params import Layout
from ._steps import scale
from .errors import NotComplexSafeError
from .executors import Evaluator

try:
    from numpy.exceptions import ComplexWarning
except ImportError:  # numpy < 1.25
    from numpy import ComplexWarning
STEP = 1e-20  # relative to max(1, |x|)
# Rounding of the imaginary part, per delta, in units of the params' dtype: a few ulps of
# |Im f| from the handful of operations each entry goes through.
_ULPS = 8.0
_CHECK_RTOL = 1e-4  # complex step vs central difference along the safety check's direction
_SEED = 20031  # the safety check's direction
_CHECK_EVALS = 6  # f(x) and f(x + i h v) complex, four real points along v


class ImaginaryPart:
    """``t -> Im f(x0 + i t)``: a real loss of the displacement (picklable, for workers)."""

    def __init__(self, f, layout: Layout, x0: np.ndarray):
        self.f, self.layout, self.x0 = f, layout, np.array(x0, copy=True)
        self.complex_dtype = np.result_type(x0.dtype, np.complex64)

    def point(self, t: np.ndarray):
        z = np.empty(self.layout.size, dtype=self.complex_dtype)
        z.real = self.x0
        z.imag = t
        return self.layout.views(z)

    def raw(self, t: np.ndarray):
        """What ``f`` returns at ``x0 + i t`` (``t`` flat)."""
        return self.f(self.point(t))

    def __call__(self, t_struct) -> float:
        return imaginary(self.raw(self.layout.flatten_like(t_struct, "displacement")))


def imaginary(value) -> float:
    """``Im`` of a loss value (0.0 for a real one: the safety check tells the two apart)."""
    if np.ndim(value) != 0:
        raise TypeError(f"the loss must return a scalar; got shape {np.shape(value)}")
    return float(np.imag(value))


class ComplexStepEvaluator(Evaluator):
    """Coordinate derivatives by the complex step through an inner (real) evaluator.

    ``value`` and ``direction_values`` are the inner evaluator's, so the loss's noise is still
    measured and random directions still use central differences; only coordinate deltas are
    complex steps. Built by the session for ``method="complex"``.
    """

    exact_deltas = True
    imaginary_moves = True
    exact_reason = ("the complex step takes no difference of two losses (its error is the "
                    "rounding of Im f)")

    def __init__(self, real: Evaluator):
        self.real = real
        self.f, self.layout = real.f, real.layout
        self._imag: Evaluator | None = None
        self._x0: np.ndarray | None = None
        self._extra = 0

    # the session sets these on its evaluator; the inner ones do the work
    @property
    def progress(self):
        return self.real.progress

    @progress.setter
    def progress(self, value) -> None:
        self.real.progress = value
        if self._imag is not None:
            self._imag.progress = value

    @property
    def seconds_per_eval(self):
        return self.real.seconds_per_eval

    @seconds_per_eval.setter
    def seconds_per_eval(self, value) -> None:
        self.real.seconds_per_eval = value

    def parallelism(self) -> int:
        return self.real.parallelism()

    def value(self, x):
        return self.real.value(x)

    def direction_values(self, x, direction, scales, support=None):
        return self.real.direction_values(x, direction, scales, support)

    def perturbed_deltas(self, x, coords, offsets, f0):
        imag = self._imaginary_evaluator(x)
        return imag.perturbed_values(np.zeros_like(x), coords, offsets)

    def perturbed_values(self, x, coords, offsets):
        raise NotImplementedError("the complex step gives deltas, not values")

    def extra_evals(self) -> int:
        extra, self._extra = self._extra, 0
        return extra

    def delta_noise(self, deltas, coords, offsets, eps):
        return _ULPS * eps * np.abs(deltas)

    def default_steps(self, x, stencil):
        return STEP * scale(x)

    def _imaginary_evaluator(self, x: np.ndarray) -> Evaluator:
        if self._imag is None or not np.array_equal(self._x0, x):
            g = ImaginaryPart(self.f, self.layout, x)
            self._extra += check_complex_safe(g, self.real, x)
            self._imag = self.real.bind(g, self.layout)
            self._imag.progress = self.real.progress
            self._x0 = x.copy()
        return self._imag


def check_complex_safe(g: ImaginaryPart, real: Evaluator, x: np.ndarray) -> int:
    """Raise :class:`~fastfd.errors.NotComplexSafeError` unless the complex step along a random
    direction matches central differences of the real loss (and ``f(x)`` is real); returns
    the evaluations spent (6)."""
    rng = np.random.default_rng(_SEED)
    v = rng.standard_normal(x.size) * scale(x)
    v /= np.linalg.norm(v)
    hint = ("method='complex' needs a loss that extends analytically to complex params: no "
            "abs, maximum/minimum, comparisons, float(), astype(float) or np.real on values "
            "that depend on params; use method='central' for this loss")
    h = STEP * float(np.max(scale(x)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ComplexWarning)
            at_x = g.raw(np.zeros(x.size))
            along = g.raw(h * v)
    except Warning as warning:
        raise NotComplexSafeError(f"the loss discards the imaginary part of its complex input "
                                  f"({type(warning).__name__}: {warning}); {hint}") from None
    except (TypeError, ValueError) as error:
        raise NotComplexSafeError(f"the loss raised {type(error).__name__} on complex params "
                                  f"({error}); {hint}") from None
    if np.iscomplexobj(at_x) and np.imag(at_x) != 0:
        raise NotComplexSafeError(f"the loss is not real at real params (f(x) = {at_x!r}); {hint}")
    # the real directional derivative, by central differences at two moderate steps (their
    # difference bounds the truncation of the finer)
    s = float(np.finfo(x.dtype).eps) ** (1 / 3) * max(1.0, float(np.max(np.abs(x))))
    values = real.direction_values(x, v, np.array([s, -s, s / 4, -s / 4]))
    central = (values[2] - values[3]) / (s / 2)
    coarse = (values[0] - values[1]) / (2 * s)
    f0 = float(np.real(at_x))
    noise = 100 * float(np.finfo(x.dtype).eps) * max(abs(f0), *np.abs(values)) / (s / 4)
    truncation = 2 * abs(coarse - central) / 15
    if not np.iscomplexobj(along) or np.imag(along) == 0:
        if abs(central) > noise + truncation:
            raise NotComplexSafeError(
                f"the loss drops the imaginary part of its result: Im f(x + i h v) = 0 along a "
                f"random direction v, where central differences give a derivative of "
                f"{central:.6g}; {hint}")
        return _CHECK_EVALS
    complex_step = float(np.imag(along)) / h
    size = max(abs(complex_step), abs(central))
    if abs(complex_step - central) > _CHECK_RTOL * size + noise + truncation:
        raise NotComplexSafeError(
            f"the complex step gives {complex_step:.8g} along a random direction, central "
            f"differences {central:.8g}: the loss is not complex-safe (a conj, abs or a branch "
            f"on the perturbed values changes the imaginary part); {hint}")
    return _CHECK_EVALS
