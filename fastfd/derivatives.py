"""Every derivative hand-written numpy code provides, checked on the gradient check's engine.

``check_vjp``
    A layer's backward pass (``dx, dw, db = affine_backward(dout, cache)``): the gradient of
    ``<dout, forward(inputs)>``, checked with :func:`fastfd.check_gradient` itself, so kinks
    (ReLU, max-pool ties), measured noise, sampling and parallel evaluators all apply.
``numerical_jacobian``, ``check_jacobian``, ``check_jvp``
    Vector-valued functions; with ``sparsity``, columns that share no row are perturbed
    together, so a banded Jacobian costs two evaluations per group and step level.
``numerical_hessian``, ``check_hessian``, ``check_hvp``
    Second order: the Jacobian of the gradient (analytic, or computed by finite differences),
    and for Hessian-vector products a Taylor test whose remainder falls like ``e**3`` when
    ``v'Hv`` is right.

Every check returns a :class:`~fastfd.report.JacobianCheck` (a :class:`GradientCheck` with the
matrix's shape, column groups and pattern errors), with entries named ``J[i, x[j]]``,
``H[W[0, 1], b[2]]`` or ``(J v0)[i]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np

from . import _judge as judge
from . import _validate
from ._calls import WithArgs, extra_args, loss_only
from ._coloring import group_columns, pattern
from ._combine import NOISE_SIGMAS
from ._sampling import random_directions, stratified_sample
from ._vector import (
    Columns,
    Tangents,
    VectorSession,
    column_levels,
    column_steps,
    judge_probes,
    judged,
)
from .engine import AUTO_BUDGET_S, check_gradient, default_rtol
from .report import GradientCheck, JacobianCheck, Judged, build_check, explain

__all__ = [
    "check_hessian",
    "check_hvp",
    "check_jacobian",
    "check_jvp",
    "check_vjp",
    "numerical_hessian",
    "numerical_jacobian",
]

_SAMPLED_COLUMNS = 200  # columns of a large Jacobian checked by sample="auto"
_MAX_PROBES = 2_000_000  # entries of a full check before sample="auto" samples columns
_SAMPLED_DIRECTIONS = 3
_LOCALIZE_LIMIT = 8  # pattern violations named by bisection
_METHODS = ("central", "complex")


# ---------------------------------------------------------------------- VJP


class _InnerProduct:
    """``x -> sum_k <dout_k, forward(**inputs)_k>`` over the inputs named in ``wrt``
    (picklable, for workers)."""

    def __init__(self, forward, inputs: dict, wrt: tuple[str, ...], douts: list, is_tuple):
        self.forward, self.wrt, self.douts, self.is_tuple = forward, wrt, douts, is_tuple
        self.others = {k: v for k, v in inputs.items() if k not in wrt}

    def __call__(self, params) -> float:
        out = self.forward(**self.others, **{name: params["d" + name] for name in self.wrt})
        outs = _outputs(out, self.is_tuple)
        return float(sum(np.sum(np.asarray(o, dtype=np.float64) * d)
                         for o, d in zip(outs, self.douts)))


def _outputs(out, is_tuple: bool) -> list:
    if is_tuple:
        if not isinstance(out, (tuple, list)):
            raise TypeError(f"forward returned a tuple at the inputs but "
                            f"{type(out).__name__} at a perturbed point")
        return list(out)
    return [out]


def check_vjp(forward: Callable, backward: Callable, inputs: Mapping, *, dout=None,
              wrt=None, seed: int = 0, **check_kwargs) -> GradientCheck:
    """Check a backward pass: ``backward(dout)`` against the gradient of ``<dout, forward>``.

    This is the layer check of the cs231n notebooks (``eval_numerical_gradient_array``), as a
    vector-Jacobian product check on :func:`fastfd.check_gradient`'s engine: measured noise,
    error bars, kinks (ReLU, max-pool ties checked jointly), sampling and random directions for
    large inputs, parallel evaluators.

    Parameters
    ----------
    forward : callable
        ``forward(**inputs) -> array`` or a tuple of arrays (an LSTM step's ``next_h,
        next_c``). Write ``lambda x, w, b: affine_forward(x, w, b)[0]`` to drop a cache.
    backward : callable
        ``backward(dout) -> grads``: a dict keyed by input name (``"x"`` or ``"dx"``), a tuple
        in the order of ``wrt`` (as ``affine_backward(dout, cache) -> (dx, dw, db)``), or one
        array when ``wrt`` has one name. It is called once, at the inputs.
    inputs : dict
        Name -> value. The inputs in ``wrt`` must be float32/float64 arrays; the others
        (labels, word indices, dropout masks, conv parameters) are passed through unchanged
        and may be of any type.
    dout : array or tuple of arrays, optional
        The upstream gradient, shaped like the output(s). Default: standard normal, seeded.
    wrt : str or sequence of str, optional
        Inputs to differentiate. Default: every input that is a float numpy array.
    seed : int
        Seed of the default ``dout`` and of the check (sample, directions, noise line).
    **check_kwargs
        Passed to :func:`fastfd.check_gradient` (``rtol``, ``atol``, ``sample``,
        ``directions``, ``method``, ``n_jobs``, ``backend``, ...).

    Returns
    -------
    GradientCheck
        Entries named ``dx[3, 1, 4, 4]``, ``dw[0, 2, 1, 1]``.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    >>> forward = lambda x, w, b: x @ w + b
    >>> backward = lambda dout: (dout @ w.T, x.T @ dout, dout.sum(axis=0))
    >>> fastfd.check_vjp(forward, backward, {"x": x, "w": w, "b": b}).verdict
    'pass'
    >>> wrong = lambda dout: (dout @ w.T, x.T @ dout, dout.mean(axis=0))
    >>> report = fastfd.check_vjp(forward, wrong, {"x": x, "w": w, "b": b})
    >>> report.verdict, report.failed[0]
    ('fail', 'db[0]')
    """
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
        raise TypeError("inputs must be a dict of name -> value, the keyword arguments of "
                        f"forward; got {type(inputs).__name__}")
    if not callable(forward) or not callable(backward):
        raise TypeError("forward and backward must be callables")
    for name in ("grad", "params", "args", "kwargs", "bind"):
        if name in check_kwargs:
            raise TypeError(f"check_vjp does not take {name}=: inputs and backward give them")
    wrt = _wrt(inputs, wrt)
    out = forward(**inputs)
    is_tuple = isinstance(out, (tuple, list))
    outs = _outputs(out, is_tuple)
    for k, o in enumerate(outs):
        arr = np.asarray(o)
        if arr.dtype.kind not in "fc" or arr.dtype.kind == "c":
            raise TypeError(f"forward's output {k} must be a float array; got dtype {arr.dtype}")
    _validate.seed(seed)
    rng = np.random.default_rng([int(seed), 11])
    douts = _douts(dout, outs, is_tuple, rng)
    grads = _vjp_grads(backward(douts[0] if not is_tuple else tuple(douts)), wrt, inputs)
    params = {"d" + name: inputs[name] for name in wrt}
    analytic = {"d" + name: grads[name] for name in wrt}
    loss = _InnerProduct(forward, dict(inputs), wrt, douts, is_tuple)
    return check_gradient(loss, analytic, params, seed=seed, **check_kwargs)


def _wrt(inputs: Mapping, wrt) -> tuple[str, ...]:
    if wrt is None:
        names = tuple(k for k, v in inputs.items()
                      if isinstance(v, np.ndarray) and v.dtype.kind == "f")
        if not names:
            raise ValueError("no input is a float array; name the inputs to differentiate "
                             "with wrt=")
        return names
    names = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    unknown = [n for n in names if n not in inputs]
    if unknown:
        raise ValueError(f"wrt names {unknown} that are not inputs; inputs are "
                         f"{list(inputs)}")
    if not names:
        raise ValueError("wrt is empty; name at least one input to differentiate")
    return names


def _douts(dout, outs: list, is_tuple: bool, rng) -> list[np.ndarray]:
    if dout is None:
        return [rng.standard_normal(np.shape(o)) for o in outs]
    given = list(dout) if is_tuple else [dout]
    if is_tuple and not isinstance(dout, (tuple, list)):
        raise TypeError(f"forward returns a tuple of {len(outs)} arrays, so dout must be a "
                        f"tuple of {len(outs)}; got {type(dout).__name__}")
    if len(given) != len(outs):
        raise ValueError(f"dout has {len(given)} arrays; forward returns {len(outs)}")
    douts = []
    for k, (d, o) in enumerate(zip(given, outs)):
        d = np.asarray(d, dtype=np.float64)
        if d.shape != np.shape(o):
            which = f" {k}" if is_tuple else ""
            raise ValueError(f"dout{which} has shape {d.shape}, but forward's output{which} "
                             f"has shape {np.shape(o)}")
        if not np.all(np.isfinite(d)):
            raise ValueError("dout has non-finite entries")
        douts.append(d)
    return douts


def _vjp_grads(grads, wrt: tuple[str, ...], inputs) -> dict:
    """backward's result as name -> array, from a dict, a tuple in wrt order or one array."""
    if isinstance(grads, Mapping):
        out = {}
        for name in wrt:
            for key in (name, "d" + name):
                if key in grads:
                    out[name] = grads[key]
                    break
            else:
                raise ValueError(f"backward's dict has no gradient for input {name!r} (keys "
                                 f"{list(grads)}; expected {name!r} or 'd{name}')")
        return out
    if isinstance(grads, (tuple, list)):
        if len(grads) < len(wrt):
            raise ValueError(f"backward returned {len(grads)} gradients for {len(wrt)} inputs "
                             f"{list(wrt)} (a tuple is read in the order of wrt)")
        if len(grads) > len(wrt):
            raise ValueError(
                f"backward returned {len(grads)} gradients but wrt names {len(wrt)} inputs "
                f"{list(wrt)}: pass wrt= with the inputs in backward's order")
        return dict(zip(wrt, grads))
    if len(wrt) == 1:
        return {wrt[0]: grads}
    raise TypeError(f"backward returned {type(grads).__name__}; expected a dict or a tuple of "
                    f"{len(wrt)} gradients")


# ---------------------------------------------------------------------- Jacobians


def _method(method: str) -> bool:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}; "
                         f"got {method!r}")
    return method == "complex"


def _check_complex(session: VectorSession) -> None:
    """Refuse a function that is not complex-safe, along a random projection of its outputs."""
    from ._complex import ImaginaryPart, check_complex_safe
    from .executors import SerialEvaluator

    u = np.random.default_rng([session.seed, 5]).standard_normal(session.m)
    projected = _Projected(session.F, u)
    check_complex_safe(ImaginaryPart(projected, session.layout, session.x),
                       SerialEvaluator().bind(_RealProjection(projected), session.layout),
                       session.x)
    session.n_evals += 6


class _Projected:
    def __init__(self, F, u):
        self.F, self.u = F, u

    def __call__(self, params):
        out = self.F(params)
        if isinstance(out, (tuple, list)):
            out = np.concatenate([np.ravel(np.asarray(o)) for o in out])
        return np.ravel(np.asarray(out)) @ self.u


class _RealProjection(_Projected):
    def __init__(self, projected: _Projected):
        super().__init__(projected.F, projected.u)

    def __call__(self, params):
        return float(np.real(super().__call__(params)))


def _structure(session: VectorSession, sparsity):
    m, n = session.m, session.layout.size
    if sparsity is None:
        return None, None
    return pattern(sparsity, (m, n))


def numerical_jacobian(f: Callable, params, *, args: tuple = (), kwargs: dict | None = None,
                       sparsity=None, method: str = "central", step=None, n_jobs: int = 1,
                       backend: str | None = None):
    """The Jacobian of a vector-valued ``f`` by finite differences (or the complex step).

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> array`` (any shape, flattened; or a tuple of arrays,
        concatenated).
    params : like :func:`fastfd.numerical_gradient`'s (flattened in order for the columns).
    sparsity : boolean array or scipy sparse matrix, shape (outputs, params), optional
        Where the Jacobian may be nonzero. Columns that share no row are perturbed together
        (greedy coloring), so the cost is two evaluations per group instead of per column.
    method : {"central", "complex"}
        ``complex``: ``Im f(x + i h e_G) / h``, exact to rounding, one evaluation per group,
        for functions that extend analytically to complex params (checked).
    step : float, array or structure like params, optional
        Steps; default from the measured noise of the outputs.
    n_jobs, backend
        joblib settings for the perturbed points (``"threading"``, ``"loky"``).

    Returns
    -------
    ndarray of shape (outputs, params), or scipy.sparse.csr_matrix when ``sparsity`` is sparse

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> f = lambda x: np.array([x[0] * x[1], np.sin(x[1])])
    >>> np.round(fastfd.numerical_jacobian(f, np.array([2.0, 0.0])), 6)
    array([[0., 2.],
           [0., 1.]])
    """
    imaginary = _method(method)
    session = VectorSession(loss_only(f, args, kwargs), params, n_jobs=n_jobs, backend=backend)
    m, n = session.m, session.layout.size
    rows, cols = _structure(session, sparsity)
    if rows is None:
        rows, cols = np.repeat(np.arange(m), n), np.tile(np.arange(n), m)
        group = np.arange(n)
    else:
        group = group_columns(rows, cols, (m, n))
    if imaginary:
        _check_complex(session)
        rel_noise = session.eps
    else:
        rel_noise = session.measure_noise().rel_noise if step is None else session.eps
    everything = np.arange(n)
    h0 = column_steps(session, everything, step, rel_noise, imaginary)
    columns = Columns(session, everything, group, h0, imaginary)
    dp, dm, sp, sm = columns.evaluate(cols, np.zeros(len(cols), dtype=np.int64), rows)
    values = (dp - dm) / (sp + sm)
    session.ensure_unmodified()
    if sparsity is not None and hasattr(sparsity, "tocoo") and not isinstance(sparsity,
                                                                             np.ndarray):
        import scipy.sparse

        return scipy.sparse.csr_matrix((values, (rows, cols)), shape=(m, n))
    out = np.zeros((m, n))
    out[rows, cols] = values
    return out


def _analytic_matrix(jac, session: VectorSession, what: str):
    """``jac`` (a callable of the params, or the matrix) as a dense (m, n) array or a CSR
    matrix, with a clear error when its shape is not (outputs, params)."""
    m, n = session.m, session.layout.size
    if callable(jac):
        value = jac(session.layout.views(np.array(session.x, copy=True)))
    else:
        value = jac
    if hasattr(value, "tocsr") and not isinstance(value, np.ndarray):
        if tuple(value.shape) != (m, n):
            raise ValueError(f"{what} has shape {tuple(value.shape)}; expected {(m, n)} "
                             "(outputs x params, params flattened in order)")
        csr = value.tocsr().astype(np.float64)
        if not np.all(np.isfinite(csr.data)):
            raise ValueError(f"{what} has non-finite entries")
        return csr
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != m * n or (arr.ndim == 2 and arr.shape != (m, n)):
        raise ValueError(f"{what} has shape {arr.shape}; expected {(m, n)} (outputs x params, "
                         "params flattened in order)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has non-finite entries")
    return arr.reshape(m, n)


def _entries_of(J, rows, cols) -> np.ndarray:
    if isinstance(J, np.ndarray):
        return J[rows, cols]
    return np.asarray(J[rows, cols]).reshape(-1)


def _outside_pattern(J, rows, cols, name, what: str) -> list[str]:
    """Nonzero analytic entries where the pattern has none."""
    m, n = J.shape
    inside = np.zeros(0, dtype=np.int64) if rows is None else rows * n + cols
    if isinstance(J, np.ndarray):
        nz = np.flatnonzero(J)
        values = J.reshape(-1)[nz]
    else:
        coo = J.tocoo()
        keep = coo.data != 0
        nz = coo.row[keep].astype(np.int64) * n + coo.col[keep]
        values = coo.data[keep]
    stray = ~np.isin(nz, inside)
    out = []
    for flat, value in zip(nz[stray][:_LOCALIZE_LIMIT], values[stray][:_LOCALIZE_LIMIT]):
        i, j = divmod(int(flat), n)
        out.append(f"{what} has {value:.6g} at {name(i, j)}, outside the sparsity pattern: "
                   "the pattern misses it or the matrix is wrong")
    if stray.sum() > _LOCALIZE_LIMIT:
        out.append(f"... {int(stray.sum()) - _LOCALIZE_LIMIT} more nonzero entries outside "
                   "the pattern")
    return out


def _row_namer(session: VectorSession, rows_are_params: bool, symbol: str):
    layout, shape = session.layout, session.out_shape
    if rows_are_params:
        return lambda i: f"{symbol}[{layout.name(i)}"
    if len(shape) <= 1:
        return lambda i: f"{symbol}[{i}"
    return lambda i: f"{symbol}[({', '.join(str(int(k)) for k in np.unravel_index(i, shape))})"


def _check_matrix(session: VectorSession, J, *, kind: str, symbol: str, rows_are_params: bool,
                  sparsity, sample, directions, method: str, step, rtol, atol, seed,
                  extra_errors: list[str], start: float) -> JacobianCheck:
    """The Jacobian check proper: entries (all, or sampled columns), random directions, the
    pattern, then the report."""
    imaginary = _method(method)
    layout = session.layout
    m, n = session.m, layout.size
    user_rtol = _validate.tolerance(rtol, "rtol")
    atol = _validate.tolerance(atol, "atol") or 0.0
    n_directions = _validate.count(directions, "directions", allow_none=True)
    rng = _validate.seed(seed)
    row_name = _row_namer(session, rows_are_params, symbol)
    col_name = layout.name

    def name(i, j):
        return f"{row_name(i)}, {col_name(j)}]"

    rows, cols = _structure(session, sparsity)
    errors = list(extra_errors)
    if rows is not None:
        errors += _outside_pattern(J, rows, cols, name, kind)
    n_entries = m * n if rows is None else len(rows)
    if imaginary:
        _check_complex(session)
        noise = session.exact_noise()
    else:
        noise = session.measure_noise()
    rtol = user_rtol if user_rtol is not None else default_rtol(noise.rel_noise)

    # which columns: all, or a stratified sample
    sample_k = _validate.sample(sample, n)
    n_groups_all = (n if rows is None else int(group_columns(rows, cols, (m, n)).max()) + 1
                    if len(rows) else 0)
    if sample_k == "auto":
        cost = 2 * n_groups_all * session.base_seconds * 1.5
        sample_k = (None if cost <= AUTO_BUDGET_S and n_entries <= _MAX_PROBES
                    else min(n, _SAMPLED_COLUMNS))
        if sample_k == n:
            sample_k = None
    sampled = sample_k is not None
    checked_cols = (np.arange(n) if not sampled
                    else stratified_sample(layout, sample_k, rng))
    if rows is None:
        p_rows = np.repeat(np.arange(m), len(checked_cols))
        p_cols = np.tile(checked_cols, m)
        local_group = np.arange(len(checked_cols))
    else:
        keep = np.isin(cols, checked_cols)
        p_rows, p_cols = rows[keep], cols[keep]
        # colour the checked columns only (columns without entries join group 0)
        sub_rows, sub_cols_local = p_rows, np.searchsorted(checked_cols, p_cols)
        order = np.lexsort((sub_rows, sub_cols_local))
        local_group = group_columns(sub_rows[order], sub_cols_local[order],
                                    (m, len(checked_cols)))
    local = np.searchsorted(checked_cols, p_cols)
    analytic = _entries_of(J, p_rows, p_cols)
    h0 = column_steps(session, checked_cols, step, noise.rel_noise, imaginary)
    columns = Columns(session, checked_cols, local_group, h0, imaginary)
    bottom_c, top_c = column_levels(session, checked_cols, h0, imaginary)

    results = judge_probes(
        lambda probes, levels: columns.evaluate(local[probes], levels, p_rows[probes]),
        p_rows, analytic, noise.sigma_per_output, bottom_c[local], top_c[local], rtol, atol,
        kink_fails=True, exact=imaginary, eps=session.eps, row_scale_owner=p_rows,
        n_owners=m)
    entries = judged(np.arange(len(p_rows)), lambda k: name(p_rows[k], p_cols[k]), analytic,
                     results, layout.array_of(p_cols))

    # the pattern itself: rows outside it that move when a group moves
    localized = Judged.empty()
    if rows is not None and not imaginary:
        collided = _recheck_alone(session, columns, entries, local, p_rows, rtol, atol)
        localized = _pattern_violations(session, columns, rows, cols, checked_cols, noise,
                                        entries, p_rows, rtol, atol, name, collided)

    # random directions: every row of J v against the analytic product
    if n_directions is None:
        n_directions = _SAMPLED_DIRECTIONS if sampled else 0
    direction_probes = Judged.empty()
    if n_directions:
        V = np.stack(list(random_directions(layout, n_directions,
                                            np.random.default_rng([int(seed), 6]))))
        Jv = np.stack([np.asarray(J @ v).reshape(-1) for v in V])
        direction_probes, _ = _check_tangents(session, V, Jv, noise, rtol, atol,
                                              lambda t, i: f"(J v{t})[{i}]", kink_fails=False)

    verdict = judge.verdict(entries.status, direction_probes.status, localized.status,
                            Judged.empty().status, None)
    if errors:
        verdict = "fail"
    reasons = explain(
        verdict=verdict, entries=entries, directions=direction_probes,
        localized=Judged.empty(), joint=Judged.empty(), n_kink_tested=0, noise=noise,
        rtol=rtol, dtype=str(layout.dtype), taylor=None, taylor_decision=None, notes=[])
    if len(localized):
        reasons.insert(0, f"{len(localized)} entries outside the sparsity pattern are nonzero "
                       "(named by bisection of their column group)")
    if errors:
        reasons.insert(0, f"{len(errors)} contradictions of the pattern or symmetry (see "
                       "PATTERN lines)")
    check = build_check(
        entries=entries, directions=direction_probes, localized=localized,
        joint=Judged.empty(), verdict=verdict, reasons=reasons, n_params=n_entries,
        n_evals=session.n_evals, rtol=rtol, atol=atol, step=float(np.median(h0)),
        method=method, elapsed=time.perf_counter() - start, sampled=sampled,
        array_names=[layout.array_label(j) for j in range(layout.n_arrays)],
        array_sizes=[int(s) * m for s in np.diff(layout.starts)], noise=noise,
        dtype=str(layout.dtype))
    session.ensure_unmodified()
    return JacobianCheck.from_check(check, kind=kind, shape=(m, n),
                                    n_groups=columns.n_groups, pattern_errors=tuple(errors))


def _single_column(session: VectorSession, columns: Columns, local_cols: np.ndarray):
    """``(F(x + h e_S) - F(x - h e_S)) / (h+ + h-)`` rows for the column set ``S`` at the first
    steps, and the largest step (for magnitudes)."""
    from ._steps import actual_steps

    idx = columns.cols[local_cols]
    nominal = columns.h0[local_cols]
    plus = actual_steps(session.x[idx], nominal)
    minus = -actual_steps(session.x[idx], -nominal)
    values = session.points([(idx, plus), (idx, -minus)])
    return values[0] - values[1], float(np.max(plus + minus))


def _recheck_alone(session, columns: Columns, entries: Judged, local, p_rows, rtol,
                   atol) -> dict[int, set[int]]:
    """Failed entries of shared groups evaluated with their column alone: where that agrees,
    another column of the group moved the row (the pattern misses an entry), not this one.

    Such entries are re-judged by the lone column (pass) and returned as ``{group: rows}``
    for the pattern check to localize.
    """
    collided: dict[int, set[int]] = {}
    failed = np.flatnonzero(judge.failing(entries.status))
    for k in failed[:4 * _LOCALIZE_LIMIT]:
        g = int(columns.group[local[k]])
        if len(columns.members[g]) == 1:
            continue
        diff, h = _single_column(session, columns, np.array([local[k]]))
        value = diff[p_rows[k]] / h
        a = entries.analytic[k]
        if abs(a - value) <= judge.tolerance(a, value, rtol, atol) + entries.error[k]:
            entries.status[k] = judge.PASS
            entries.numeric[k] = value
            collided.setdefault(g, set()).add(int(p_rows[k]))
    return collided


def _pattern_violations(session, columns: Columns, rows, cols, checked_cols, noise,
                        entries: Judged, p_rows, rtol, atol, name,
                        collided: dict[int, set[int]]) -> Judged:
    """Rows that move with a group although the pattern gives them no column in it (or move
    more than their structural column explains: ``collided``), each localized to its column
    by bisection of the group."""
    m = session.m
    sigma = noise.sigma_per_output
    # the scale an entry of each row is judged against: its confirmed entries' size
    row_scale = np.zeros(m)
    np.maximum.at(row_scale, p_rows, np.abs(entries.numeric))
    structural = {}
    group_of_col = dict(zip(checked_cols.tolist(), columns.group.tolist()))
    for r, c in zip(rows.tolist(), cols.tolist()):
        g = group_of_col.get(c)
        if g is not None:
            structural.setdefault(g, set()).add(r)
    found = []  # (row, col, value, error)

    def moving_rows(local_cols, candidate_rows):
        diff, h = _single_column(session, columns, local_cols)
        diff = diff[candidate_rows]
        noise_bar = NOISE_SIGMAS * math.sqrt(2.0) * sigma[candidate_rows]
        size = np.abs(diff) / h
        moving = (np.abs(diff) > noise_bar) & (size > rtol * row_scale[candidate_rows] + atol)
        return candidate_rows[moving], diff[moving] / h, noise_bar[moving] / h

    def bisect(local_cols, candidate_rows):
        if len(found) >= _LOCALIZE_LIMIT or not len(candidate_rows):
            return
        if len(local_cols) == 1:
            moved, value, bar = moving_rows(local_cols, candidate_rows)
            for r, v, b in zip(moved, value, bar):
                found.append((int(r), int(checked_cols[local_cols[0]]), float(v), float(b)))
            return
        half = len(local_cols) // 2
        for part in (local_cols[:half], local_cols[half:]):
            moved, _, _ = moving_rows(part, candidate_rows)
            bisect(part, moved)

    for g in range(columns.n_groups):
        members = columns.members[g]
        for r in sorted(collided.get(g, ())):  # its own column was fine alone: the others
            structural_cols = members[np.isin(checked_cols[members], cols[rows == r])]
            others_cols = np.setdiff1d(members, structural_cols)
            if others_cols.size:
                bisect(others_cols, np.array([r]))
        values = columns.cache.get((g, 0))
        others = np.setdiff1d(np.arange(m), np.fromiter(structural.get(g, ()), dtype=np.int64))
        if values is not None and others.size:
            h = float(np.max(columns.h0[members]))
            diff = (values[0] - values[1])[others]
            noise_bar = NOISE_SIGMAS * math.sqrt(2.0) * sigma[others]
            suspect = others[(np.abs(diff) > noise_bar)
                             & (np.abs(diff) / (2 * h) > rtol * row_scale[others] + atol)]
            if suspect.size:
                bisect(members, suspect)
        if len(found) >= _LOCALIZE_LIMIT:
            break
    if not found:
        return Judged.empty()
    r, c, v, b = (np.array(t) for t in zip(*found))
    n = len(found)
    return Judged(ids=np.arange(n), name_of=lambda k: f"{name(r[k], c[k])} (outside pattern)",
                  analytic=np.zeros(n), numeric=v, error=b, scale=np.maximum(np.abs(v), 1e-300),
                  step=np.full(n, np.nan), status=np.full(n, judge.FAIL, dtype=object),
                  cause=np.full(n, "", dtype=object), owner=session.layout.array_of(c))


def _check_tangents(session: VectorSession, V: np.ndarray, analytic_rows: np.ndarray, noise,
                    rtol, atol, name_of, kink_fails: bool) -> tuple[Judged, np.ndarray]:
    """Every row of ``J v`` for every tangent ``v`` (rows of ``V``) against ``analytic_rows``;
    also returns the first step along each tangent."""
    m = session.m
    tangents = Tangents(session, V, noise.rel_noise)
    T = len(V)
    p_tan = np.repeat(np.arange(T), m)
    p_rows = np.tile(np.arange(m), T)
    analytic = analytic_rows.reshape(-1)
    results = judge_probes(
        lambda probes, levels: tangents.evaluate(p_tan[probes], levels, p_rows[probes]),
        p_rows, analytic, noise.sigma_per_output, tangents.bottom[p_tan], tangents.top[p_tan],
        rtol, atol, kink_fails=kink_fails, exact=False, eps=session.eps,
        row_scale_owner=p_rows, n_owners=m)
    return judged(np.arange(T * m), lambda k: name_of(int(p_tan[k]), int(p_rows[k])),
                  analytic, results, np.zeros(T * m, dtype=np.int64)), tangents.s0


def check_jacobian(f: Callable, jac, params, *, args: tuple = (), kwargs: dict | None = None,
                   sparsity=None, sample="auto", directions: int | None = None,
                   method: str = "central", step=None, rtol: float | None = None,
                   atol: float | None = None, seed: int = 0, n_jobs: int = 1,
                   backend: str | None = None) -> JacobianCheck:
    """Check a hand-written Jacobian against finite differences, entry by entry.

    Every entry gets an error bar (measured noise of its output row over the step, plus
    truncation between step levels) and a status, as in :func:`fastfd.check_gradient`;
    entries near zero are judged against their row's scale. With ``sparsity``, columns that
    share no row are perturbed together, and rows that move outside the pattern are found
    and named by bisection: the pattern itself is checked.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> array`` (any shape, flattened row-major).
    jac : callable, array or scipy sparse matrix
        ``jac(params, *args, **kwargs)`` or the matrix itself, shape (outputs, params).
    params : like :func:`fastfd.check_gradient`'s (columns in flattened order).
    sparsity : boolean array or scipy sparse matrix, optional
        The pattern of the Jacobian (see :func:`numerical_jacobian`).
    sample : "auto", "all", int or float
        Columns to check: ``"auto"`` checks all when two evaluations per column group fit
        about 10 s (and the entries number at most 2e6), else 200 sampled columns.
    directions : int, optional
        Random unit directions ``v``: every row of ``J v`` is checked against ``jac @ v``.
        Default 3 when columns are sampled, else 0.
    method : {"central", "complex"}
    step, rtol, atol, seed, n_jobs, backend
        As in :func:`fastfd.check_gradient` (``backend``: ``"threading"`` or ``"loky"``).

    Returns
    -------
    JacobianCheck

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> f = lambda x: np.array([x[0] ** 2, x[0] * x[1]])
    >>> jac = lambda x: np.array([[2 * x[0], 0.0], [x[1], x[0]]])
    >>> fastfd.check_jacobian(f, jac, np.array([1.0, 2.0])).verdict
    'pass'
    >>> wrong = lambda x: np.array([[2 * x[0], 0.0], [x[0], x[1]]])
    >>> fastfd.check_jacobian(f, wrong, np.array([1.0, 2.0])).failed
    ('J[1, x[0]]', 'J[1, x[1]]')
    """
    start = time.perf_counter()
    args, kwargs = extra_args(args, kwargs)
    session = VectorSession(loss_only(f, args, kwargs), params, n_jobs=n_jobs,
                            backend=backend, seed=seed)
    if callable(jac) and (args or kwargs):
        jac = WithArgs(jac, args, kwargs)
    J = _analytic_matrix(jac, session, "jac")
    return _check_matrix(session, J, kind="Jacobian", symbol="J", rows_are_params=False,
                         sparsity=sparsity, sample=sample, directions=directions,
                         method=method, step=step, rtol=rtol, atol=atol, seed=seed,
                         extra_errors=[], start=start)


def check_jvp(f: Callable, jvp: Callable, params, *, tangents=3, args: tuple = (),
              kwargs: dict | None = None, rtol: float | None = None,
              atol: float | None = None, seed: int = 0, n_jobs: int = 1,
              backend: str | None = None) -> JacobianCheck:
    """Check a Jacobian-vector product ``jvp(params, v) = J v`` along tangents.

    Every row of ``J v`` is checked against a directional difference of ``f`` along ``v``
    with its own error bar, step ladder and kink test.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> array``.
    jvp : callable
        ``jvp(params, v, *args, **kwargs) -> array`` like ``f``'s output; ``v`` is shaped
        like ``params``.
    tangents : int or sequence of structures like params
        How many random unit tangents (normalized per parameter array, seeded), or the
        tangents themselves.

    Returns
    -------
    JacobianCheck
        Entries named ``(J v0)[i]``.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> f = lambda x: np.sin(x) * x[0]
    >>> jvp = lambda x, v: np.cos(x) * v * x[0] + np.sin(x) * v[0]
    >>> fastfd.check_jvp(f, jvp, np.array([0.5, 1.0, 2.0])).verdict
    'pass'
    """
    start = time.perf_counter()
    args, kwargs = extra_args(args, kwargs)
    session = VectorSession(loss_only(f, args, kwargs), params, n_jobs=n_jobs,
                            backend=backend, seed=seed)
    return _check_products(session, jvp, tangents, args, kwargs, rtol, atol, seed, "JVP",
                           "J", start)


def _tangent_matrix(session: VectorSession, tangents, seed) -> np.ndarray:
    layout = session.layout
    if isinstance(tangents, (int, np.integer)) and not isinstance(tangents, bool):
        k = _validate.count(tangents, "tangents")
        if k == 0:
            raise ValueError("tangents must be at least 1")
        return np.stack(list(random_directions(layout, k, np.random.default_rng([int(seed),
                                                                                  7]))))
    if isinstance(tangents, (list, tuple)) and tangents:
        V = np.stack([layout.flatten_like(t, "tangent") for t in tangents])
        if not np.all(V.any(axis=1)):
            raise ValueError("a tangent is zero; pass non-zero tangents")
        return V
    raise TypeError("tangents must be a count or a non-empty list of structures like params")


def _check_products(session: VectorSession, product: Callable, tangents, args, kwargs, rtol,
                    atol, seed, kind: str, symbol: str, start: float,
                    taylor=None) -> JacobianCheck:
    layout = session.layout
    user_rtol = _validate.tolerance(rtol, "rtol")
    atol = _validate.tolerance(atol, "atol") or 0.0
    _validate.seed(seed)
    V = _tangent_matrix(session, tangents, seed)
    analytic = []
    for t, v in enumerate(V):
        value = product(layout.views(np.array(session.x, copy=True)), layout.unflatten(v),
                        *args, **kwargs)
        flat = np.asarray(_flatten_output(value, layout if symbol == "H" else None),
                          dtype=np.float64).reshape(-1)
        if flat.size != session.m:
            raise ValueError(f"{kind.lower()} returned {flat.size} values for tangent {t}; the "
                             f"function has {session.m} outputs")
        analytic.append(flat)
    noise = session.measure_noise()
    rtol = user_rtol if user_rtol is not None else default_rtol(noise.rel_noise)
    name_rows = (layout.name if symbol == "H" else str)
    probes, steps = _check_tangents(session, V, np.stack(analytic), noise, rtol, atol,
                                    lambda t, i: f"({symbol} v{t})[{name_rows(i)}]",
                                    kink_fails=True)
    taylor_decision = None if taylor is None else taylor(rtol, atol)
    verdict = judge.verdict(probes.status, Judged.empty().status, Judged.empty().status,
                            Judged.empty().status, None)
    test = None
    if taylor_decision is not None:
        test, decision = taylor_decision
        if decision == "fail":
            verdict = "fail"
        elif verdict == "inconclusive" and decision == "pass":
            verdict = "pass"
    reasons = explain(
        verdict=verdict, entries=probes, directions=Judged.empty(), localized=Judged.empty(),
        joint=Judged.empty(), n_kink_tested=0, noise=noise, rtol=rtol,
        dtype=str(layout.dtype), taylor=None, taylor_decision=None, notes=[])
    if test is not None:
        reasons.append(f"Taylor test along a random direction: {test.reason}")
    check = build_check(
        entries=probes, directions=Judged.empty(), localized=Judged.empty(),
        joint=Judged.empty(), verdict=verdict, reasons=reasons, n_params=session.m * len(V),
        n_evals=session.n_evals, rtol=rtol, atol=atol, step=float(np.median(steps)),
        method="central",
        elapsed=time.perf_counter() - start, sampled=False, array_names=["products"],
        array_sizes=[session.m * len(V)], noise=noise, dtype=str(layout.dtype))
    session.ensure_unmodified()
    return JacobianCheck.from_check(check, kind=kind, shape=(session.m, layout.size),
                                    taylor=test)


def _flatten_output(value, layout):
    if layout is not None and not isinstance(value, np.ndarray):
        return layout.flatten_like(value, "the product")
    return value


# ---------------------------------------------------------------------- Hessians


class _FlatGradient:
    """The gradient of ``f`` as a flat float64 vector: analytic (``grad`` callable or True for
    ``(loss, grad)`` functions) or, with ``grad=None``, by central differences."""

    def __init__(self, f, grad, layout, args, kwargs):
        self.f, self.grad, self.layout, self.args, self.kwargs = f, grad, layout, args, kwargs

    def __call__(self, params):
        if self.grad is True:
            from ._calls import pair

            value = pair(self.f(params, *self.args, **self.kwargs))[1]
        elif callable(self.grad):
            value = self.grad(params, *self.args, **self.kwargs)
        else:
            from .engine import numerical_gradient

            value = numerical_gradient(self.f, params, args=self.args, kwargs=self.kwargs)
        return self.layout.flatten_like(value, "gradient")  # refuses complex, NaN, shapes


def _gradient_session(f, grad, params, args, kwargs, n_jobs, backend, seed) -> VectorSession:
    layout = _layout_of(params)
    if grad is not None and grad is not True and not callable(grad):
        raise TypeError("grad must be a callable, True for a function returning (loss, grad), "
                        f"or None (the gradient by finite differences); got {grad!r:.40}")
    return VectorSession(_FlatGradient(f, grad, layout, args, kwargs), params, n_jobs=n_jobs,
                         backend=backend, seed=seed)


def numerical_hessian(f: Callable, params, *, grad=None, args: tuple = (),
                      kwargs: dict | None = None, sparsity=None, step=None, n_jobs: int = 1,
                      backend: str | None = None) -> np.ndarray:
    """The Hessian of a scalar loss: the Jacobian of its gradient, symmetrized.

    Parameters
    ----------
    f : callable
        ``f(params, *args, **kwargs) -> float`` (or ``(loss, grad)`` with ``grad=True``).
    grad : callable, True or None
        The analytic gradient (most accurate: one difference), True when ``f`` returns
        ``(loss, grad)``, or None for the gradient by central differences (differences of
        differences: about half the digits, and ``2n`` loss evaluations per point).
    sparsity : optional
        The Hessian's pattern (see :func:`numerical_jacobian`).

    Returns
    -------
    ndarray of shape (n, n)
        ``(H + H.T) / 2`` with ``n`` the number of parameters (flattened in order).

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> f = lambda x: x[0] ** 2 * x[1]
    >>> np.round(fastfd.numerical_hessian(f, np.array([1.0, 3.0]),
    ...                                   grad=lambda x: np.array([2 * x[0] * x[1], x[0] ** 2])), 6)
    array([[6., 2.],
           [2., 0.]])
    """
    args, kwargs = extra_args(args, kwargs)
    G = _FlatGradient(f, grad, _layout_of(params), args, kwargs)
    H = numerical_jacobian(G, params, sparsity=sparsity, step=step, n_jobs=n_jobs,
                           backend=backend)
    return 0.5 * (H + H.T)


def _layout_of(params):
    from ._params import flatten_leaves

    return flatten_leaves(params, "x")[0]


def _symmetry_errors(H, layout, rtol: float) -> list[str]:
    dense = H if isinstance(H, np.ndarray) else H.toarray()
    gap = np.abs(dense - dense.T)
    size = np.maximum(np.abs(dense), np.abs(dense.T))
    bad = np.argwhere(np.triu(gap > rtol * size + np.finfo(float).tiny, 1))
    out = []
    for i, j in bad[:_LOCALIZE_LIMIT]:
        out.append(f"hess is not symmetric: H[{layout.name(i)}, {layout.name(j)}] = "
                   f"{dense[i, j]:.6g} but H[{layout.name(j)}, {layout.name(i)}] = "
                   f"{dense[j, i]:.6g}")
    if len(bad) > _LOCALIZE_LIMIT:
        out.append(f"... {len(bad) - _LOCALIZE_LIMIT} more asymmetric pairs")
    return out


def check_hessian(f: Callable, hess, params, *, grad=None, args: tuple = (),
                  kwargs: dict | None = None, sparsity=None, sample="auto",
                  directions: int | None = None, step=None, rtol: float | None = None,
                  atol: float | None = None, seed: int = 0, n_jobs: int = 1,
                  backend: str | None = None) -> JacobianCheck:
    """Check a hand-written Hessian entry by entry: the Jacobian of the gradient.

    Parameters
    ----------
    f : callable
        The scalar loss ``f(params, *args, **kwargs)`` (``(loss, grad)`` with ``grad=True``).
    hess : callable or array
        ``hess(params, *args, **kwargs)`` or the matrix, shape (n, n) (params flattened in
        order; a single array's ``(*shape, *shape)`` is accepted too).
    grad : callable, True or None
        The gradient to difference (see :func:`numerical_hessian`); None differences a
        central-difference gradient (coarser: its noise is measured, so the error bars say so).
    sparsity, sample, directions, step, rtol, atol, seed, n_jobs, backend
        As in :func:`check_jacobian`.

    Returns
    -------
    JacobianCheck
        Entries named ``H[x[i], x[j]]``; an asymmetric ``hess`` is reported and fails.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> f, g = (lambda x: 0.5 * x @ A @ x + x[0] ** 3), (lambda x: A @ x + [3 * x[0] ** 2, 0])
    >>> fastfd.check_hessian(f, lambda x: A + np.diag([6 * x[0], 0]), np.array([1.0, -1.0]),
    ...                      grad=g).verdict
    'pass'
    """
    start = time.perf_counter()
    args, kwargs = extra_args(args, kwargs)
    session = _gradient_session(f, grad, params, args, kwargs, n_jobs, backend, seed)
    if callable(hess) and (args or kwargs):
        hess = WithArgs(hess, args, kwargs)
    H = _analytic_matrix(hess, session, "hess")
    user_rtol = _validate.tolerance(rtol, "rtol")
    errors = _symmetry_errors(H, session.layout, user_rtol or 1e-10)
    return _check_matrix(session, H, kind="Hessian", symbol="H", rows_are_params=True,
                         sparsity=sparsity, sample=sample, directions=directions,
                         method="central", step=step, rtol=rtol, atol=atol, seed=seed,
                         extra_errors=errors, start=start)


def check_hvp(f: Callable, hvp: Callable, params, *, grad=None, directions=3,
              args: tuple = (), kwargs: dict | None = None, rtol: float | None = None,
              atol: float | None = None, seed: int = 0, n_jobs: int = 1,
              backend: str | None = None) -> JacobianCheck:
    """Check a Hessian-vector product ``hvp(params, v) = H v`` along random directions.

    Every entry of ``H v`` is checked against a directional difference of the gradient
    (analytic with ``grad``, else by central differences). With an analytic gradient a Taylor
    test gives a second opinion: ``|f(x + e v) - f(x) - e g.v - e**2 v'Hv / 2|`` falls like
    ``e**3`` when ``v'Hv`` is right and like ``e**2`` when it is not.

    Parameters
    ----------
    f : callable
        The scalar loss (``(loss, grad)`` with ``grad=True``).
    hvp : callable
        ``hvp(params, v, *args, **kwargs)``, shaped like params.
    grad : callable, True or None
    directions : int or sequence of structures like params
        Random unit directions (seeded), or the directions themselves.

    Returns
    -------
    JacobianCheck
        Entries named ``(H v0)[x[i]]``; ``taylor`` holds the rate-3 test.

    Examples
    --------
    >>> import numpy as np, fastfd
    >>> f = lambda x: np.sum(np.exp(x)) + x[0] * x[1]
    >>> g = lambda x: np.exp(x) + np.array([x[1], x[0], 0.0])
    >>> hvp = lambda x, v: np.exp(x) * v + np.array([v[1], v[0], 0.0])
    >>> fastfd.check_hvp(f, hvp, np.array([0.1, 0.2, 0.3]), grad=g).verdict
    'pass'
    """
    start = time.perf_counter()
    args, kwargs = extra_args(args, kwargs)
    session = _gradient_session(f, grad, params, args, kwargs, n_jobs, backend, seed)
    taylor = None
    if grad is not None:
        def taylor(rtol_, atol_):
            return _hvp_taylor(f, grad, hvp, params, args, kwargs, seed, rtol_, atol_)
    return _check_products(session, hvp, directions, args, kwargs, rtol, atol, seed, "HVP",
                           "H", start, taylor=taylor)


def _hvp_taylor(f, grad, hvp, params, args, kwargs, seed, rtol, atol):
    """The rate-3 Taylor test along a random direction: ``(TaylorTest, decision)``."""
    from ._calls import loss_and_grad
    from ._session import Session
    from ._taylor import run_taylor, taylor_eps

    loss, gradient = loss_and_grad(f, grad, args, kwargs)
    with Session(loss, params, seed=seed) as session:
        leaves = session.analytic(gradient)
        layout = session.layout
        v = next(random_directions(layout, 1, np.random.default_rng([int(seed), 8])))
        views = layout.views(np.array(session.x, copy=True))
        hv = layout.flatten_like(hvp(views, layout.unflatten(v), *args, **kwargs), "hvp")
        curvature = float(v @ hv)
        test = run_taylor(session, leaves, v, taylor_eps(None, session, v, 24),
                          f"random unit direction (seed {seed})", curvature=curvature)
    return test, test.decides(rtol, atol)

