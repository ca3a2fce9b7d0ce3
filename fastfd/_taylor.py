"""The Taylor test: a gradient check with no step to choose.

``r(e) = |f(x + e v) - f(x) - e g.v|`` falls like ``e**2`` when ``g`` is the gradient and like
``e`` when it is not. Used by :func:`fastfd.taylor_test` and, as a second opinion, by
:func:`fastfd.check_gradient`; it evaluates the loss only through the :class:`Session`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import _validate
from ._params import dot
from ._session import Session
from .report import json_safe

# Taylor test.
TAYLOR_POINTS = 16  # e0, e0/2, ..., e0/2**15: 32 loss evaluations
_TAYLOR_E0 = 0.1  # e0 * max|v| = 0.1 * max(1, max|x|)
# Remainders are trusted only this many standard deviations of the measured noise of
# f(x+ev) - f(x) above zero (noise then moves each by under 3%, too little to bend a slope),
# plus this many units of rounding of g.d.
_TAYLOR_SIGMAS = 30.0
_TAYLOR_ROUNDING = 50.0
_FLOOR = "30 standard deviations of the loss's measured noise"
_FIT_POINTS = 4  # the smallest e above the floor: the asymptotic end of the sequence
_MIN_FIT_POINTS = 3
_PASS_SLOPE, _FAIL_SLOPE = 1.8, 1.2
_KINK_SLOPE = 1.5  # the second difference falls like e (kink) rather than e**2 (smooth)
_MAX_SLOPE_SPREAD = 0.75  # consecutive slopes in the fit must agree: asymptotic regime
_PASS_MIN_LOCAL_SLOPE = 1.7  # and none may sink towards 1 (a first-order part emerging)


def loglog_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of ``log10 y`` against ``log10 x`` over positive finite points."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None
    slope, intercept = np.polyfit(np.log10(x[ok]), np.log10(y[ok]), 1)
    return float(slope), float(intercept)


@dataclass(frozen=True)
class TaylorTest:
    """The outcome of :func:`taylor_test` (immutable).

    Attributes
    ----------
    verdict : {"pass", "fail", "inconclusive"}
        ``"pass"`` when the remainder falls like ``e**2`` (fitted slope >= 1.8), ``"fail"``
        when it falls like ``e`` (slope <= 1.2, no kink), ``"inconclusive"`` otherwise: too
        few remainders above the noise floor, a kink along the direction, or a slope in
        between.
    reason : str
        One sentence explaining the verdict.
    eps : tuple of float
        The multiples ``e`` of the direction, largest first.
    remainders : tuple of float
        ``|f(x + e v) - f(x) - g.d(e)|`` with ``d(e)`` the displacement really taken after
        rounding ``x + e v`` to the params' dtype (NaN where the loss was not finite).
    backward_remainders : tuple of float
        ``|f(x - e v) - f(x) - g.d(-e)|``.
    noise_floor : tuple of float
        What rounding of ``f`` (and of ``g.d``) can explain in each forward remainder;
        only remainders above it are fitted.
    slopes : tuple of float
        ``log(r_k / r_k+1) / log(e_k / e_k+1)`` between consecutive points (NaN where
        undefined).
    fitted_slope : float or None
        Least-squares slope over the fitted points.
    fit_eps : tuple of float
        The ``e`` of the fitted points: the smallest ones above the floor (the asymptotic end).
    kink : bool
        Whether the second difference ``f(x+ev) + f(x-ev) - 2 f(x)`` falls like ``e``
        (a kink along the direction) instead of ``e**2``.
    directional_derivative : float
        ``g . v``.
    resolution : float or None
        The smallest error in ``g . v`` the fitted points could reveal:
        ``r(e_min) / e_min`` at the smallest fitted ``e`` (an error ``delta`` adds
        ``e * delta`` to the remainder, visible once it exceeds the ``e**2`` part). A
        slope of 2 proves ``g . v`` right only to this resolution.
    first_order_error : float or None
        ``(r(e) - r(-e)) / 2e`` at the smallest fitted ``e`` (signed remainders): the
        directional derivative minus ``g . v``, when the slope is 1.
    f0 : float
        ``f(x)``.
    direction : str
        Where ``v`` came from.
    """

    verdict: str
    reason: str
    eps: tuple[float, ...]
    remainders: tuple[float, ...]
    backward_remainders: tuple[float, ...]
    noise_floor: tuple[float, ...]
    slopes: tuple[float, ...]
    fitted_slope: float | None
    fit_eps: tuple[float, ...]
    kink: bool
    directional_derivative: float
    resolution: float | None
    first_order_error: float | None
    f0: float
    direction: str
    order: int = 1
    curvature: float | None = None

    @property
    def passed(self) -> bool:
        """True when the verdict is ``"pass"``."""
        return self.verdict == "pass"

    def decides(self, rtol: float, atol: float = 0.0) -> str | None:
        """``"pass"`` when the slope is 2 and the fit resolves an ``rtol`` discrepancy of
        ``g . v``; ``"fail"`` when the slope is 1 and the first-order error it measures
        exceeds that tolerance; None otherwise (then the test is no evidence either way)."""
        checked = self.directional_derivative if self.order == 1 else self.curvature
        allowed = rtol * abs(checked) + atol
        if self.verdict == "pass" and self.resolution is not None and self.resolution <= allowed:
            return "pass"
        if (self.verdict == "fail" and self.first_order_error is not None
                and abs(self.first_order_error) > allowed):
            return "fail"
        return None

    def to_dict(self) -> dict:
        """A JSON-serializable dict of every field (non-finite floats become None)."""
        data = asdict(self)
        data["passed"] = self.passed
        return json_safe(data)

    def __str__(self) -> str:
        slope = "n/a" if self.fitted_slope is None else f"{self.fitted_slope:.2f}"
        lines = [
            f"fastfd Taylor test: {self.verdict.upper()}",
            f"  r(e) = |f(x + e v) - f(x) - e g.v| along a {self.direction}; f(x) = "
            f"{self.f0:.6g}, g.v = {self.directional_derivative:.6g}",
            f"  fitted slope {slope} (2: gradient right, 1: gradient wrong)"
            + ("; kink along the direction" if self.kink else ""),
            f"    {'e':>9}  {'r(e)':>9}  {'r(-e)':>9}  {'floor':>9}  {'slope':>6}",
        ]
        fitted = set(self.fit_eps)
        slopes = (*self.slopes, math.nan)
        for e, r, rb, fl, s in zip(self.eps, self.remainders, self.backward_remainders,
                                   self.noise_floor, slopes):
            shown = "" if not math.isfinite(s) else f"{s:6.2f}"
            mark = "  fit" if e in fitted else ""
            lines.append(f"    {e:>9.2e}  {r:>9.2e}  {rb:>9.2e}  {fl:>9.2e}  {shown:>6}{mark}")
        lines.append(f"  - {self.reason}")
        return "\n".join(lines)


def taylor_eps(eps, session: Session, v: np.ndarray, points: int = TAYLOR_POINTS
               ) -> np.ndarray:
    """The multiples of the direction, validated, largest first.

    Default: ``points`` values halving from ``e0`` with ``e0 * max|v| = 0.1 *
    max(1, max|x|)``; a float is taken as ``e0``.
    """
    if eps is None:
        scale = max(1.0, float(np.max(np.abs(session.x))))
        return _TAYLOR_E0 * scale / float(np.max(np.abs(v))) * 0.5 ** np.arange(points)
    if np.ndim(eps) == 0 and not isinstance(eps, (str, bytes)):
        what = "None, a positive float or a sequence of them"
        return _validate.positive_float(eps, "eps", what) * 0.5 ** np.arange(points)
    return _validate.descending(eps, "eps", min_size=_MIN_FIT_POINTS, repeats=False)


def _fit_window(usable: np.ndarray) -> np.ndarray:
    """The last ``_FIT_POINTS`` of the contiguous usable block that ends at the smallest
    usable ``e``: the most asymptotic points that still stand above the noise floor."""
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        return idx
    last = first = int(idx[-1])
    while first > 0 and usable[first - 1] and last - first + 1 < _FIT_POINTS:
        first -= 1
    return np.arange(first, last + 1)


def run_taylor(session: Session, analytic_leaves: list[np.ndarray], v: np.ndarray,
               eps: np.ndarray, direction: str, curvature: float | None = None) -> TaylorTest:
    """The Taylor test on a prepared session: ``v`` flat float64, ``eps`` largest first.

    With ``curvature`` (``v'Hv`` of a Hessian to check) the second-order term is subtracted
    too: the remainder then falls like ``e**3`` when ``v'Hv`` is right, ``e**2`` when not.
    """
    order = 1 if curvature is None else 2
    quadratic = 0.0 if curvature is None else 0.5 * eps**2 * curvature
    layout, n = session.layout, len(eps)
    abs_leaves = [np.abs(np.asarray(leaf, dtype=np.float64)) for leaf in analytic_leaves]
    # per e: g.d(e), g.d(-e), |g|.|d(e)| and |g|.|d(e) + d(-e)|; the O(P) displacements are
    # not kept, so memory stays O(P) whatever the number of e
    projections = np.empty((n, 4))
    for k, e in enumerate(eps):
        plus, minus = session.displacement(v, e), session.displacement(v, -e)
        if not (np.any(plus) and np.any(minus)):
            raise ValueError(
                f"eps {e:.3g} is lost to rounding: params + eps * direction == params in "
                f"{layout.dtype}; use larger eps (or the default)")
        projections[k] = (dot(layout, analytic_leaves, plus), dot(layout, analytic_leaves, minus),
                          dot(layout, abs_leaves, np.abs(plus)),
                          dot(layout, abs_leaves, np.abs(plus + minus)))
    gd_plus, gd_minus, gd_scale, asymmetry = projections.T
    deltas = session.direction_deltas(v, np.concatenate([eps, -eps]), "Taylor test",
                                      allow_nonfinite=True)
    # a large e may leave the loss's domain (log, sqrt): those points are dropped, not fatal
    finite = np.isfinite(deltas[:n]) & np.isfinite(deltas[n:])
    d_plus, d_minus = deltas[:n], deltas[n:]
    # the measured noise of f(x+ev) - f(x), and rounding of g.d (as precise as the loss)
    eps_loss = session.result_eps
    floor = (_TAYLOR_SIGMAS * math.sqrt(2.0) * session.noise.sigma
             + _TAYLOR_ROUNDING * eps_loss * gd_scale)
    floor = floor + _TAYLOR_ROUNDING * eps_loss * np.abs(quadratic)
    floor_back = floor
    r_plus, r_minus = d_plus - gd_plus - quadratic, d_minus - gd_minus - quadratic
    # x + ev and x - ev round differently, so the second difference r+ + r- keeps
    # g.(d(e) + d(-e)): a rounding-sized first-order term a wrong g does not cancel
    floor_second = floor + floor_back + _TAYLOR_ROUNDING * eps_loss * asymmetry
    remainders = np.where(finite, np.abs(r_plus), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.log(remainders[:-1] / remainders[1:]) / np.log(eps[:-1] / eps[1:])
    slopes[~np.isfinite(slopes)] = np.nan

    usable = finite & (np.abs(r_plus) > floor)
    window = _fit_window(usable)
    fit = loglog_fit(eps[window], remainders[window]) if len(window) >= _MIN_FIT_POINTS else None
    fitted_slope = None if fit is None else fit[0]
    # A kink along v: the second difference r+ + r- = f(x+ev) + f(x-ev) - 2 f(x) keeps a
    # first-order part (slope 1); smooth losses give e**2 v'Hv whatever the gradient.
    second = r_plus + r_minus
    kink_fit = None
    if fit is not None:
        resolved = window[np.abs(second[window]) > floor_second[window]]
        kink_fit = loglog_fit(eps[resolved], np.abs(second[resolved]))
    kink = kink_fit is not None and kink_fit[0] < _KINK_SLOPE
    verdict, reason = _taylor_verdict(
        fitted_slope, kink, window, usable, slopes, eps, r_plus, r_minus, d_plus, d_minus, floor,
        finite, order)
    smallest = window[-1] if fit is not None else None
    if fit is None:
        resolution = error = None
    elif order == 1:
        resolution = float(remainders[smallest] / eps[smallest])
        error = float((r_plus[smallest] - r_minus[smallest]) / (2 * eps[smallest]))
    else:  # a wrong v'Hv by delta adds e**2 delta / 2 to both remainders
        resolution = float(2 * remainders[smallest] / eps[smallest] ** 2)
        error = float((r_plus[smallest] + r_minus[smallest]) / eps[smallest] ** 2)
    return TaylorTest(
        verdict=verdict,
        reason=reason,
        eps=tuple(float(e) for e in eps),
        remainders=tuple(float(r) for r in remainders),
        backward_remainders=tuple(float(r) for r in np.where(finite, np.abs(r_minus), np.nan)),
        noise_floor=tuple(float(fl) for fl in np.where(finite, floor, np.nan)),
        slopes=tuple(float(s) for s in slopes),
        fitted_slope=fitted_slope,
        fit_eps=tuple(float(e) for e in eps[window]) if fit is not None else (),
        kink=bool(kink),
        directional_derivative=dot(layout, analytic_leaves, v),
        resolution=resolution,
        first_order_error=error,
        f0=float(session.f0),
        direction=direction,
        order=order,
        curvature=curvature,
    )


def _taylor_verdict(fitted_slope, kink, window, usable, slopes, eps, r_plus, r_minus, d_plus,
                    d_minus, floor, finite, order: int = 1) -> tuple[str, str]:
    """(verdict, reason) from the fitted slope, the kink test and the points behind them.

    ``order`` 1 checks ``g.v`` (slopes 2 right, 1 wrong), 2 checks ``v'Hv`` (3 and 2)."""
    shift = order - 1
    checked = "g.v" if order == 1 else "v'Hv"
    change = "first-order" if order == 1 else "second-order"
    dropped = int((~finite).sum())
    note = (f" ({dropped} of {len(eps)} e dropped: the loss is not finite at x +- e v)"
            if dropped else "")
    if fitted_slope is None:
        n_above = int(usable.sum())
        if n_above:
            why = (f"{n_above} of {len(eps)} remainders stand above the noise floor ({_FLOOR}) "
                   f"but not {_MIN_FIT_POINTS} consecutive ones: too few to fit a slope (pass "
                   "larger eps, or cast params to float64)")
        elif np.any(finite & (np.abs(d_plus) > floor)):
            why = (f"no remainder stands above the noise floor ({_FLOOR}) although f changes "
                   "measurably along v: g.v predicts that change to within the noise at every e "
                   "(f is nearly linear along v), so no slope can be seen")
        else:
            why = (f"no remainder stands above the noise floor ({_FLOOR}) and f does not "
                   "change measurably along v: the loss is noise at every e")
        return "inconclusive", f"inconclusive: {why}{note}"
    smallest = int(window[-1])
    e_fit = f"e in [{eps[smallest]:.2g}, {eps[int(window[0])]:.2g}]"
    if kink:
        # same sign: g.v lies between the one-sided derivatives, as a subgradient's does
        inside = (r_plus[smallest] * r_minus[smallest] >= 0
                  or min(abs(r_plus[smallest]), abs(r_minus[smallest])) <= floor[smallest])
        e = eps[smallest]
        right, left = d_plus[smallest] / e, -d_minus[smallest] / e
        if inside:
            return "inconclusive", (
                "inconclusive: kink along the direction (f(x+ev) + f(x-ev) - 2 f(x) falls "
                f"like e, not e**2, over {e_fit}); g.v lies between the one-sided "
                "derivatives, as a subgradient's must, so the remainder's slope of "
                f"{fitted_slope:.2f} says nothing about the gradient{note}")
        return "fail", (
            "fail: kink along the direction, and g.v lies outside the one-sided derivatives "
            f"(about {min(left, right):.6g} and {max(left, right):.6g} at e = {e:.2g}): "
            f"not a subgradient{note}")
    in_fit = slopes[window[:-1]]
    spread = float(np.nanmax(in_fit) - np.nanmin(in_fit)) if np.isfinite(in_fit).any() else 0.0
    if spread > _MAX_SLOPE_SPREAD:
        return "inconclusive", (
            f"inconclusive: the slopes between consecutive e vary by {spread:.2f} over "
            f"{e_fit}: the remainders are not in the asymptotic regime (pass smaller eps){note}")
    if fitted_slope >= _PASS_SLOPE + shift and np.min(in_fit) < _PASS_MIN_LOCAL_SLOPE + shift:
        # a first-order part shows up as the slope sinking towards 1 at the smallest e
        return "inconclusive", (
            f"inconclusive: the fitted slope is {fitted_slope:.2f} over {e_fit}, but it sinks "
            f"to {float(in_fit[-1]):.2f} at the smallest e: a {change} part may be "
            f"emerging below the noise floor{note}")
    if fitted_slope >= _PASS_SLOPE + shift:
        return "pass", (
            f"pass: the remainder falls like e**{fitted_slope:.2f} over {e_fit}: {checked} "
            f"matches the {change} change of f{note}")
    if fitted_slope <= _FAIL_SLOPE + shift:
        e = eps[smallest]
        if order == 1:
            off = -(r_plus[smallest] - r_minus[smallest]) / (2 * e)
            what = "the directional derivative"
        else:
            off = -(r_plus[smallest] + r_minus[smallest]) / e**2
            what = "the second directional derivative"
        return "fail", (
            f"fail: the remainder falls like e**{fitted_slope:.2f} over {e_fit}, so it keeps a "
            f"{change} part: {checked} differs from {what} by about {off:.3g}{note}")
    return "inconclusive", (
        f"inconclusive: the fitted slope {fitted_slope:.2f} over {e_fit} is neither "
        f"~{order + 1} (pass, >= {_PASS_SLOPE + shift}) nor ~{order} (fail, <= "
        f"{_FAIL_SLOPE + shift}){note}")
