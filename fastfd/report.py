"""Results of a gradient check: verdict, metrics, worst entries, reasons, text and JSON.

This stage formats what the judge decided; it never evaluates the loss. Every reason it
writes is a claim about the judged data it was given (tested in ``tests/test_reasons.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import _judge as judge
from ._sampling import confidence_statement


@dataclass(frozen=True)
class Entry:
    """One checked entry, direction or kink group as shown in a report.

    ``error_bar`` is what the finite difference cannot resolve (truncation plus noise; at a
    kink, the width of the one-sided range is not included); ``step`` the step of the
    estimate shown; ``detail`` a short note (the cause of a weak entry, a kink's one-sided
    range).
    """

    name: str
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    status: str
    error_bar: float = math.nan
    step: float = math.nan
    detail: str = ""


@dataclass(frozen=True)
class ArraySummary:
    """How one parameter array fared."""

    name: str
    n_params: int
    n_checked: int
    n_confirmed: int
    n_failed: int
    n_weak: int
    n_kinks: int
    max_rel_error: float
    verdict: str


@dataclass(frozen=True)
class NoiseReport:
    """The loss's noise at the params as the check measured it (see ``fastfd._noise``)."""

    sigma: float
    relative: float
    source: str
    n_evals: int
    description: str


@dataclass(frozen=True)
class GradientCheck:
    """The outcome of :func:`fastfd.check_gradient` (immutable).

    Attributes
    ----------
    verdict : {"pass", "fail", "inconclusive"}
        ``"fail"`` when some entry, direction or kink group is wrong beyond tolerance plus
        error bar; ``"inconclusive"`` when no entry is confirmed or most are weak (their error
        bars are too wide to have seen an ``rtol`` discrepancy) and no second opinion
        resolves them; ``"pass"`` otherwise. A pass rests on confirmed entries only.
    reasons : tuple of str
        Sentences explaining the verdict, its limits, and what would resolve weak entries.
    n_params, n_checked, n_evals : int
        Parameters in total, entries compared, loss evaluations made (all stages).
    n_confirmed : int
        Checked entries confirmed (their error bar resolves an ``rtol`` discrepancy), valid
        kinks included.
    max_rel_error, norm_rel_error : float
        Largest ``|a - n| / max(|a|, |n|)`` over the entries that carry evidence (confirmed
        or failed, kinks excluded) and stand above their error bar (an entry near zero is
        judged against its array's scale, where its own relative error means nothing), and
        ``||a - n|| / (||a|| + ||n||)`` over every entry with evidence.
    sign_agreement : float or None
        Fraction of those entries, among the ones clearly non-zero, whose signs agree.
    n_evidence : int
        How many entries those three metrics are computed over.
    resolution : float or None
        The widest error bar among confirmed entries, relative to what it was judged against
        (the entry's value or its array's gradient scale): every confirmed entry is right to
        within ``rtol`` plus this.
    worst : tuple of Entry
        The entries farthest outside their tolerance plus error bar, worst first (localized
        entries included).
    kinks : tuple of str
        Entries at a kink whose analytic values lie between the one-sided differences.
    failed : tuple of str
        Failing entries, directions, localized entries and kink groups.
    weak : tuple of str
        Entries (and directions) whose evidence was too weak to count.
    rtol, atol : float
        Tolerances used.
    step : float
        Median first-pass step.
    method : str
        Finite-difference stencil of the first pass.
    elapsed_s : float
        Wall time of the check.
    confidence : str or None
        For a sampled pass only: what it proves about the unchecked entries (rule of three
        over confirmed entries).
    sampled : bool
        Whether a subset of the entries was checked.
    arrays : tuple of ArraySummary
        Per parameter array.
    directions : tuple of Entry
        Random-direction checks (``g . v`` against a directional difference).
    localized : tuple of Entry
        Entries found behind a failing direction by bisection, each re-checked as a coordinate.
    joint : tuple of Entry
        Kink entries that interact, checked jointly (``g . v`` must lie between the one-sided
        directional derivatives along their sum).
    noise : NoiseReport
        The loss's measured noise.
    dtype : str
        Dtype of the parameters.
    """

    verdict: str
    reasons: tuple[str, ...]
    n_params: int
    n_checked: int
    n_evals: int
    n_confirmed: int
    max_rel_error: float
    norm_rel_error: float
    sign_agreement: float | None
    n_evidence: int
    resolution: float | None
    worst: tuple[Entry, ...]
    kinks: tuple[str, ...]
    failed: tuple[str, ...]
    weak: tuple[str, ...]
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
    joint: tuple[Entry, ...] = field(default=())
    noise: NoiseReport | None = None
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
        return json_safe(data)

    def _title(self) -> str:
        return "gradient check"

    def _extra_lines(self) -> list[str]:
        return []

    def __str__(self) -> str:
        lines = [f"fastfd {self._title()}: {self.verdict.upper()}", *self._extra_lines()]
        scope = "sampled" if self.sampled else "all"
        lines.append(
            f"  {self.n_checked} of {self.n_params} entries checked ({scope}; {self.method}, "
            f"step ~{self.step:.2g}, {self.dtype}), {self.n_evals} loss evaluations "
            f"in {self.elapsed_s:.3g} s")
        if self.noise is not None:
            lines.append(f"  {self.noise.description}")
        sign = "n/a" if self.sign_agreement is None else f"{self.sign_agreement:.1%}"
        lines.append(
            f"  over {self.n_evidence} entries with evidence: max rel error (above error bars) "
            f"{self.max_rel_error:.2e}, norm rel error {self.norm_rel_error:.2e}, sign "
            f"agreement {sign} (rtol {self.rtol:.0e}, atol {self.atol:.0e})")
        resolved = (f"resolved to {self.resolution:.1e} relative or better"
                    if self.resolution is not None else "none resolved")
        totals = {k: sum(getattr(s, k) for s in self.arrays)
                  for k in ("n_failed", "n_weak")}
        lines.append(f"  entries: confirmed {self.n_confirmed} of {self.n_checked} ({resolved}), "
                     f"weak {totals['n_weak']}, kinks {len(self.kinks)}, failed "
                     f"{totals['n_failed']}")
        if self.confidence:
            lines.append(f"  {self.confidence}")
        if self.kinks:
            lines.append(f"  kinks ({len(self.kinks)}): {_names(self.kinks)}")
        if self.failed:
            lines.append(f"  FAILED ({len(self.failed)}): {_names(self.failed)}")
        if self.weak:
            lines.append(f"  weak ({len(self.weak)}): {_names(self.weak)}")
        for title, entries in (("worst entries", self.worst),
                               (f"random directions ({len(self.directions)})", self.directions),
                               ("localized behind a failing direction", self.localized),
                               ("kink entries checked jointly", self.joint)):
            if entries:
                lines.append(f"  {title}:")
                lines.extend(_table(entries))
        if len(self.arrays) > 1:
            lines.append("  per array:")
            for s in self.arrays:
                lines.append(
                    f"    {s.name:<12} {s.verdict:<13} {s.n_checked:>8} of {s.n_params:<9} "
                    f"checked  confirmed {s.n_confirmed:<6} failed {s.n_failed:<5} weak "
                    f"{s.n_weak:<5} kinks {s.n_kinks:<5} max rel error {s.max_rel_error:.1e}")
        for reason in self.reasons:
            lines.append(f"  - {reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class JacobianCheck(GradientCheck):
    """The outcome of :func:`fastfd.check_jacobian`, :func:`fastfd.check_hessian`,
    :func:`fastfd.check_jvp` and :func:`fastfd.check_hvp` (immutable).

    Every field of :class:`GradientCheck`, its entries being Jacobian entries named
    ``J[i, x[j]]`` (Hessians: ``H[x[i], x[j]]``; products: ``(J v0)[i]``), plus:

    Attributes
    ----------
    kind : str
        ``"Jacobian"``, ``"Hessian"``, ``"JVP"`` or ``"HVP"``.
    shape : tuple of int
        ``(outputs, params)`` of the matrix.
    n_groups : int
        Column groups evaluated together (the colors of the sparsity pattern); the first
        pass costs two evaluations per group.
    pattern_errors : tuple of str
        What contradicts the sparsity pattern (or the symmetry of a Hessian): entries outside
        it that the function or ``jac`` makes nonzero. Any of them fails the check.
    taylor : TaylorTest or None
        The rate-3 Taylor second opinion of :func:`fastfd.check_hvp`.
    """

    kind: str = "Jacobian"
    shape: tuple = (0, 0)
    n_groups: int = 0
    pattern_errors: tuple = ()
    taylor: object = None

    def _title(self) -> str:
        return f"{self.kind} check"

    def _extra_lines(self) -> list[str]:
        lines = [f"  {self.kind} of shape {self.shape[0]} x {self.shape[1]}"
                 + (f", {self.n_groups} column groups" if self.n_groups else "")]
        for error in self.pattern_errors[:_N_WORST]:
            lines.append(f"  PATTERN: {error}")
        if len(self.pattern_errors) > _N_WORST:
            lines.append(f"  ... and {len(self.pattern_errors) - _N_WORST} more")
        if self.taylor is not None:
            lines.append(f"  Taylor test (rate 3 when right): {self.taylor.reason}")
        return lines

    @classmethod
    def from_check(cls, check: GradientCheck, **extra) -> JacobianCheck:
        base = {name: getattr(check, name) for name in GradientCheck.__dataclass_fields__}
        return cls(**base, **extra)

    def to_dict(self) -> dict:
        data = super().to_dict()
        if self.taylor is not None:
            data["taylor"] = self.taylor.to_dict()
        return data


def _names(names, limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _table(entries) -> list[str]:
    width = max(12, max(len(e.name) for e in entries))
    rows = [f"    {'entry':<{width}} {'analytic':>12} {'numeric':>12} {'abs err':>9} "
            f"{'err bar':>9} {'rel err':>9}  status"]
    for e in entries:
        detail = f" ({e.detail})" if e.detail else ""
        rows.append(
            f"    {e.name:<{width}} {e.analytic:>12.5e} {e.numeric:>12.5e} {e.abs_error:>9.1e} "
            f"{e.error_bar:>9.1e} {e.rel_error:>9.1e}  {e.status}{detail}")
    return rows


def json_safe(value):
    """``value`` with tuples as lists, numpy scalars as Python ones, non-finite floats None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value


# --------------------------------------------------------------------------------------------
# building a report from judged probes
# --------------------------------------------------------------------------------------------


@dataclass
class Judged:
    """Per-probe results of a judged stage (parallel arrays), as the engine hands them over.

    ``ids`` are what ``name_of`` names (flat coordinates for entries); names are made only for
    the probes a report lists, so a judged stage of millions of entries stays cheap.
    """

    ids: np.ndarray
    name_of: object  # callable: id -> str
    analytic: np.ndarray
    numeric: np.ndarray
    error: np.ndarray  # error bar (abs)
    scale: np.ndarray  # what the error bar is judged against
    step: np.ndarray
    status: np.ndarray  # object array of judge statuses
    cause: np.ndarray  # object array: judge.NOISE / judge.TRUNCATION / ""
    owner: np.ndarray | None = None  # parameter array of each entry
    forward: np.ndarray | None = None  # one-sided differences at kinks (NaN elsewhere)
    backward: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Judged:
        nothing = np.zeros(0)
        return cls(np.zeros(0, dtype=np.int64), str, nothing, nothing, nothing, nothing,
                   nothing, np.zeros(0, dtype=object), np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, *statuses) -> np.ndarray:
        return np.isin(self.status.astype(str), statuses) if len(self) else np.zeros(0, bool)

    def count(self, *statuses) -> int:
        return int(self.mask(*statuses).sum())

    def names_with(self, *statuses) -> tuple[str, ...]:
        return tuple(self.name_of(i) for i in self.ids[self.mask(*statuses)])

    def one_sided(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` of the one-sided range (NaN where not at a kink)."""
        if self.forward is None:
            nan = np.full(len(self), np.nan)
            return nan, nan
        return np.fmin(self.forward, self.backward), np.fmax(self.forward, self.backward)

    def entries(self, index=None) -> tuple[Entry, ...]:
        index = range(len(self)) if index is None else index
        lower, upper = self.one_sided()
        out = []
        for i in index:
            a, n = float(self.analytic[i]), float(self.numeric[i])
            detail = str(self.cause[i])
            if np.isfinite(lower[i]):
                detail = f"one-sided range [{lower[i]:.5g}, {upper[i]:.5g}]"
            out.append(Entry(self.name_of(self.ids[i]), a, n, abs(a - n),
                             float(judge.relative_error(np.array([a]), np.array([n]))[0]),
                             str(self.status[i]), float(self.error[i]), float(self.step[i]),
                             detail))
        return tuple(out)

    def outside(self, rtol: float, atol: float) -> np.ndarray:
        """How far each probe is outside tolerance plus error bar, in units of that allowance
        (> 1 fails); kinks measured from their one-sided range."""
        a, n = self.analytic, self.numeric
        lower, upper = self.one_sided()
        kinked = np.isfinite(lower)
        n = np.where(kinked, np.clip(a, np.where(kinked, lower, 0), np.where(kinked, upper, 0)), n)
        allowed = judge.tolerance(a, n, rtol, atol) + np.nan_to_num(self.error, posinf=0.0)
        return np.abs(a - n) / np.maximum(allowed, np.finfo(float).tiny)


_N_WORST = 5


def build_check(*, entries: Judged, directions: Judged, localized: Judged, joint: Judged,
                verdict: str, reasons: list[str], n_params: int, n_evals: int, rtol: float,
                atol: float, step: float, method: str, elapsed: float, sampled: bool,
                array_names: list[str], array_sizes: list[int], noise, dtype: str
                ) -> GradientCheck:
    """Assemble the immutable :class:`GradientCheck` from judged probes (no evaluation)."""
    status = entries.status.astype(str)
    evidence = np.isin(status, (judge.PASS, judge.FAIL))
    a, n = entries.analytic[evidence], entries.numeric[evidence]
    rel = judge.relative_error(entries.analytic, entries.numeric)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    norm_rel = float(np.linalg.norm(a - n) / denom) if denom > 0 else 0.0
    clear = evidence & (np.maximum(np.abs(entries.analytic), np.abs(entries.numeric))
                        > np.nan_to_num(entries.error, posinf=np.inf))
    sign_agreement = (float(np.mean(np.sign(entries.analytic[clear])
                                    == np.sign(entries.numeric[clear]))) if clear.any() else None)
    confirmed = np.isin(status, (judge.PASS, judge.KINK))
    resolved = status == judge.PASS
    resolution = (float(np.max(entries.error[resolved] / np.maximum(entries.scale[resolved],
                                                                    np.finfo(float).tiny)))
                  if resolved.any() else None)
    n_confirmed = int(confirmed.sum())
    confidence = (confidence_statement(n_confirmed, n_params)
                  if verdict == "pass" and sampled else None)
    if confidence:
        reasons.append(f"sampled check: {confidence} (only confirmed entries count)")

    pool = [entries, localized]
    scored = []
    for source in pool:
        if not len(source):
            continue
        score = source.outside(rtol, atol)
        for i in range(len(source)):
            if str(source.status[i]) in (judge.FAIL, judge.KINK_FAIL, judge.PASS):
                scored.append((float(score[i]), source, i))
    scored.sort(key=lambda item: -item[0])
    shown: dict[str, Entry] = {}  # an entry localized and also sampled is listed once
    for _, source, i in scored:
        entry = source.entries([i])[0]
        shown.setdefault(entry.name, entry)
        if len(shown) == _N_WORST:
            break
    worst = tuple(shown.values())

    arrays = []
    owner = entries.owner if entries.owner is not None else np.zeros(len(entries), dtype=int)
    for j, (name, size) in enumerate(zip(array_names, array_sizes)):
        mine = owner == j
        kinds = status[mine]
        n_fail = int(np.sum(judge.failing(kinds)))
        n_conf = int(np.isin(kinds, (judge.PASS, judge.KINK)).sum())
        n_weak = int(np.sum(kinds == judge.WEAK))
        mine_evidence = mine & evidence
        if not mine.any():
            array_verdict = "not checked"
        elif n_fail:
            array_verdict = "fail"
        elif n_conf and n_weak <= n_conf:
            array_verdict = "pass"
        else:
            array_verdict = "inconclusive"
        arrays.append(ArraySummary(
            name=name, n_params=int(size), n_checked=int(mine.sum()), n_confirmed=n_conf,
            n_failed=n_fail, n_weak=n_weak, n_kinks=int(np.sum(kinds == judge.KINK)),
            max_rel_error=float(rel[mine_evidence].max()) if mine_evidence.any() else 0.0,
            verdict=array_verdict))
    failed = (entries.names_with(judge.FAIL, judge.KINK_FAIL)
              + directions.names_with(judge.FAIL)
              + localized.names_with(judge.FAIL, judge.KINK_FAIL)
              + joint.names_with(judge.FAIL))
    return GradientCheck(
        verdict=verdict,
        reasons=tuple(reasons),
        n_params=n_params,
        n_checked=len(entries),
        n_evals=n_evals,
        n_confirmed=n_confirmed,
        max_rel_error=float(rel[clear].max()) if clear.any() else 0.0,
        norm_rel_error=norm_rel,
        sign_agreement=sign_agreement,
        n_evidence=int(evidence.sum()),
        resolution=resolution,
        worst=worst,
        kinks=entries.names_with(judge.KINK),
        failed=tuple(dict.fromkeys(failed)),
        weak=entries.names_with(judge.WEAK) + directions.names_with(judge.WEAK),
        rtol=rtol,
        atol=atol,
        step=step,
        method=method,
        elapsed_s=elapsed,
        confidence=confidence,
        sampled=sampled,
        arrays=tuple(arrays),
        directions=directions.entries(),
        localized=localized.entries(),
        joint=joint.entries(),
        noise=NoiseReport(float(noise.sigma), float(noise.relative), noise.source,
                          int(noise.n_evals), noise.describe()),
        dtype=dtype,
    )


def _relative(judged: Judged, mask: np.ndarray) -> np.ndarray:
    return judged.error[mask] / np.maximum(judged.scale[mask], np.finfo(float).tiny)


def explain(*, verdict: str, entries: Judged, directions: Judged, localized: Judged,
            joint: Judged, n_kink_tested: int, noise, rtol: float, dtype: str, taylor,
            taylor_decision: str | None, notes: list[str]) -> list[str]:
    """The reasons printed beside a verdict, each a statement about the judged data."""
    reasons: list[str] = []
    n = len(entries)
    n_failed = entries.count(judge.FAIL, judge.KINK_FAIL)
    if n_failed:
        reasons.append(f"{n_failed} of {n} checked entries differ from the finite differences "
                       "by more than the tolerance plus their error bar")
    n_dir_failed = directions.count(judge.FAIL)
    if n_dir_failed:
        reasons.append(f"{n_dir_failed} of {len(directions)} random directions disagree: g . v "
                       "differs from the directional difference by more than the tolerance "
                       "plus its error bar")
    if len(localized):
        names = ", ".join(localized.name_of(i) for i in localized.ids)
        reasons.append(f"a failing direction was localized by bisection to {len(localized)} "
                       f"entr{'y' if len(localized) == 1 else 'ies'}: {names}")
    n_joint_failed = joint.count(judge.FAIL)
    if n_joint_failed:
        reasons.append(
            f"{n_joint_failed} group{'s' if n_joint_failed > 1 else ''} of interacting kink "
            "entries {} jointly not a subgradient: g . v along their sum lies outside the "
            "one-sided derivatives, although each entry alone lies in its own range (e.g. a "
            "gradient routed to every tied maximum)".format(
                "are" if n_joint_failed > 1 else "is"))
    at_kink = entries.count(judge.KINK_FAIL)
    if at_kink:
        reasons.append(f"{at_kink} failing entries sit at kinks and your values lie outside the "
                       "range of the one-sided differences (not a subgradient); where many kinks "
                       "coincide (e.g. all-zero weights with a ReLU'(0) convention) check at a "
                       "random point instead")

    confirmed = entries.count(judge.PASS, judge.KINK)
    weak = entries.mask(judge.WEAK)
    if verdict != "fail" and judge.mostly_weak(entries.status):
        head = (f"only {confirmed} of {n} checked entries are confirmed and {int(weak.sum())} "
                f"are weak: their error bars are too wide to have seen an rtol={rtol:.0e} "
                "discrepancy")
        if taylor_decision is not None:
            head += (f", so a Taylor test along a random direction decides ({taylor_decision}): "
                     f"{taylor.reason}")
        reasons.insert(0, head)
    if taylor is not None and taylor_decision is None:
        why = taylor.reason
        if taylor.resolution is not None and taylor.directional_derivative != 0:
            why += (f"; it resolves g . v only to {taylor.resolution:.1g} "
                    f"({taylor.resolution / abs(taylor.directional_derivative):.1g} relative), "
                    f"not to rtol, so it is no evidence")
        reasons.append(f"Taylor test along a random direction: {why}")

    by_noise = weak & (entries.cause.astype(str) == judge.NOISE)
    if by_noise.any():
        rel = _relative(entries, by_noise)
        largest = float(np.nanmax(entries.step[by_noise]))
        if "float32 precision although" in noise.describe():
            advice = "compute the loss in float64"
        else:
            advice = (f"pass rtol={_round_up(float(np.max(rel)))} to accept that resolution, or "
                      "a larger step where the loss is smooth on that scale")
        reasons.append(
            f"{int(by_noise.sum())} entries are weak because the loss's noise limits them: "
            f"even at the largest steps tried (up to {largest:.2g}) noise / step leaves error "
            f"bars of {float(np.min(rel)):.1g} to {float(np.max(rel)):.1g} relative (they are "
            f"consistent to that); {advice}")
        values = np.maximum(np.abs(entries.analytic), np.abs(entries.numeric))
        if weak.all() and np.all(values[weak] <= entries.error[weak]):
            reasons.append(
                f"the whole gradient is below what any step resolves (|g| up to "
                f"{float(values.max()):.2g}, error bars at least "
                f"{float(entries.error.min()):.2g}): the params may sit at an optimum; check "
                "at a point away from it")
    by_truncation = weak & (entries.cause.astype(str) == judge.TRUNCATION)
    if by_truncation.any():
        rel = _relative(entries, by_truncation)
        smallest = float(np.nanmin(entries.step[by_truncation]))
        reasons.append(
            f"{int(by_truncation.sum())} entries are weak because truncation limits them: the "
            f"loss curves faster than the smallest step tried ({smallest:.2g}) resolves, "
            f"leaving error bars of {float(np.min(rel)):.1g} to {float(np.max(rel)):.1g} "
            f"relative; pass a smaller step, e.g. step={smallest / 16:.1g}")
    passed = entries.mask(judge.PASS)
    if passed.any():
        rel = judge.relative_error(entries.analytic, entries.numeric)
        size = np.maximum(np.abs(entries.analytic), np.abs(entries.numeric))
        loose = passed & (rel > rtol) & (size > entries.error)
        if loose.any():
            k = int(np.flatnonzero(loose)[np.argmax(rel[loose])])
            reasons.append(
                f"{int(loose.sum())} confirmed entries differ by more than rtol relative, within "
                f"their error bars (e.g. {entries.name_of(entries.ids[k])}: |a - n| = "
                f"{abs(entries.analytic[k] - entries.numeric[k]):.2g}, error bar "
                f"{entries.error[k]:.2g}); they count because that bar is within rtol of their "
                "array's gradient scale: a discrepancy beyond tolerance plus bar would have "
                "failed")
    untested = weak & (entries.cause.astype(str) == judge.JOINT)
    if untested.any():
        reasons.append(
            f"{int(untested.sum())} kink entries are weak because they were not tested jointly "
            f"(the joint subgradient test takes {n_kink_tested} kink entries, pairwise): each "
            "lies in its own one-sided range, but a gradient wrong only jointly among them (one "
            "routed to every tied maximum) would not be seen; check a smaller input or a point "
            "with fewer ties")
    n_kinks = entries.count(judge.KINK)
    if n_kinks:
        reasons.append(f"{n_kinks} entries sit at a kink (hinge, ReLU, max, |x|): the one-sided "
                       "differences disagree down to the smallest step, and your values lie "
                       "between them, as a subgradient's must")
    if n_kink_tested >= 2:
        reasons.append(f"joint subgradient test: {n_kink_tested} kink entries tested pairwise "
                       f"for interaction; {len(joint)} interacting pair(s) or group(s) "
                       f"checked jointly, {n_joint_failed} failed")
    dir_weak = directions.count(judge.WEAK)
    dir_kink = directions.count(judge.KINK)
    if dir_weak or dir_kink:
        reasons.append(f"{dir_weak + dir_kink} of {len(directions)} random directions carry no "
                       "evidence (weak, or through a kink that persists at the smallest step) "
                       "and do not count for the verdict")
    if float(np.finfo(dtype).eps) > 1e-10:
        reasons.append(f"parameters are {dtype}: finite differences resolve only a few digits "
                       f"(rtol {rtol:.0e}); cast params to float64 for a sharper check")
    reasons.extend(notes)
    return reasons


def _round_up(value: float) -> str:
    """``value`` rounded up to one significant digit, as a string (for suggested tolerances)."""
    exponent = math.floor(math.log10(value))
    mantissa = math.ceil(value / 10**exponent)
    if mantissa == 10:
        mantissa, exponent = 1, exponent + 1
    return f"{mantissa}e{exponent}"
