"""Results of a gradient check: verdict, metrics, worst entries, text and JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Entry:
    """One checked entry (or direction) as shown in a report."""

    name: str
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    status: str


@dataclass(frozen=True)
class ArraySummary:
    """How one parameter array fared."""

    name: str
    n_params: int
    n_checked: int
    n_failed: int
    n_kinks: int
    max_rel_error: float
    verdict: str


@dataclass(frozen=True)
class GradientCheck:
    """The outcome of :func:`fastfd.check_gradient` (immutable).

    Attributes
    ----------
    verdict : {"pass", "fail", "inconclusive"}
        ``"fail"`` when some entry or direction is wrong beyond what the finite differences
        can explain; ``"inconclusive"`` when nearly every checked entry is a kink, unresolved
        or below the rounding floor; ``"pass"`` otherwise.
    reasons : tuple of str
        Sentences explaining the verdict and its limits.
    n_params, n_checked, n_evals : int
        Parameters in total, entries compared, loss evaluations made.
    max_rel_error : float
        Largest ``|a - n| / max(|a|, |n|)`` over checked entries that are not kinks.
    norm_rel_error : float
        ``||a - n|| / (||a|| + ||n||)`` over the same entries.
    sign_agreement : float or None
        Fraction of entries above the rounding floor whose signs agree.
    worst : tuple of Entry
        The entries farthest outside their tolerance, worst first.
    kinks : tuple of str
        Names of entries excluded as non-differentiable within the step.
    failed, unresolved : tuple of str
        Names of failing and of unresolved entries (and directions).
    rtol, atol : float
        Tolerances used.
    step : float
        Median step actually taken.
    method : str
        Finite-difference stencil of the first pass.
    elapsed_s : float
        Wall time of the check.
    confidence : str or None
        For a sampled pass: what it proves about the unchecked entries (rule of three).
    sampled : bool
        Whether a subset of the entries was checked.
    arrays : tuple of ArraySummary
        Per parameter array.
    directions : tuple of Entry
        Random-direction checks (``g . v`` vs the directional difference).
    localized : tuple of Entry
        Entries found behind a failing direction by bisection (group testing), each
        re-checked as a coordinate.
    dtype : str
        Dtype of the parameters.
    """

    verdict: str
    reasons: tuple[str, ...]
    n_params: int
    n_checked: int
    n_evals: int
    max_rel_error: float
    norm_rel_error: float
    sign_agreement: float | None
    worst: tuple[Entry, ...]
    kinks: tuple[str, ...]
    failed: tuple[str, ...]
    unresolved: tuple[str, ...]
    rtol: float
    atol: float
    step: float
    method: str
    elapsed_s: float
    confidence: str | None
    sampled: bool
    arrays: tuple[ArraySummary, ...] = field(default=())
    directions: tuple[Entry, ...] = field(default=())
    localized: tuple[Entry, ...] = field(default=())
    dtype: str = "float64"

    @property
    def passed(self) -> bool:
        """True when the verdict is ``"pass"``."""
        return self.verdict == "pass"

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        """A JSON-serializable dict of every field (non-finite floats become None)."""
        data = asdict(self)
        data["passed"] = self.passed
        return _json_safe(data)

    def __str__(self) -> str:
        lines = [f"fastfd gradient check: {self.verdict.upper()}"]
        scope = "sampled" if self.sampled else "all"
        lines.append(
            f"  {self.n_checked} of {self.n_params} entries checked ({scope}; {self.method}, "
            f"step ~{self.step:.2g}, {self.dtype}), {self.n_evals} loss evaluations "
            f"in {self.elapsed_s:.3g} s"
        )
        sign = "n/a" if self.sign_agreement is None else f"{self.sign_agreement:.1%}"
        lines.append(
            f"  max rel error {self.max_rel_error:.2e}   norm rel error "
            f"{self.norm_rel_error:.2e}   sign agreement {sign}   (rtol {self.rtol:.0e}, "
            f"atol {self.atol:.0e})"
        )
        if self.confidence:
            lines.append(f"  {self.confidence}")
        if self.kinks:
            lines.append(f"  kinks excluded ({len(self.kinks)}): {_names(self.kinks)}")
        if self.failed:
            lines.append(f"  FAILED ({len(self.failed)}): {_names(self.failed)}")
        if self.unresolved:
            lines.append(f"  unresolved ({len(self.unresolved)}): {_names(self.unresolved)}")
        if self.worst:
            lines.append("  worst entries:")
            lines.extend(_table(self.worst))
        if self.directions:
            lines.append(f"  random directions ({len(self.directions)}):")
            lines.extend(_table(self.directions))
        if self.localized:
            lines.append("  localized behind a failing direction:")
            lines.extend(_table(self.localized))
        if len(self.arrays) > 1:
            lines.append("  per array:")
            for s in self.arrays:
                lines.append(
                    f"    {s.name:<12} {s.verdict:<13} {s.n_checked:>8} of {s.n_params:<9} "
                    f"checked  failed {s.n_failed:<5} kinks {s.n_kinks:<5} "
                    f"max rel error {s.max_rel_error:.1e}"
                )
        for reason in self.reasons:
            lines.append(f"  - {reason}")
        return "\n".join(lines)


def _names(names, limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _table(entries) -> list[str]:
    width = max(12, max(len(e.name) for e in entries))
    rows = [f"    {'entry':<{width}} {'analytic':>12} {'numeric':>12} {'abs err':>9} "
            f"{'rel err':>9}  status"]
    for e in entries:
        rows.append(
            f"    {e.name:<{width}} {e.analytic:>12.5e} {e.numeric:>12.5e} {e.abs_error:>9.1e} "
            f"{e.rel_error:>9.1e}  {e.status}"
        )
    return rows


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value
