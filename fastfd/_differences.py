"""Plan -> evaluate -> combine for one batch of differences: a stencil pass over coordinates,
one ladder level of coordinates or of directions. Every public function builds on these.
"""

from __future__ import annotations

import numpy as np

from . import _validate
from ._combine import Level, central_level, stencil_estimates
from ._plan import level_plan, stencil_plan
from ._session import Session
from ._stencils import Stencil
from ._steps import checked_actual_steps, default_steps


def nominal_steps(session: Session, step, coords: np.ndarray, stencil: Stencil) -> np.ndarray:
    """Nominal steps at ``coords`` from the user's ``step`` or the default rule.

    The default rule uses the measured noise of the loss (or, for evaluators with exact
    deltas, their own default). ``step`` may be a scalar, an array shaped like a single-array
    params, or a structure like ``params``.
    """
    x_at = session.x[coords]
    if isinstance(step, np.ndarray) and step.ndim == 0:
        step = step.item()
    if step is None:
        special = session.evaluator.default_steps(x_at, stencil)
        if special is not None:
            return special
        return default_steps(x_at, stencil, session.coordinate_noise.rel_noise)
    if not isinstance(step, (dict, list, tuple, np.ndarray)):
        return _validate.steps(step, len(coords))
    layout = session.layout
    flat = layout.flatten_like(step, "step")
    return _validate.steps(flat, layout.size, layout.name)[coords]


def _move_base(session: Session, coords: np.ndarray) -> np.ndarray:
    """What a move is rounded against: the entries of ``x``, or zeros where the evaluator
    moves them along the imaginary axis (the complex step: ``x + i h`` keeps every ``h``)."""
    if session.evaluator.imaginary_moves:
        return np.zeros(len(coords), dtype=session.x.dtype)
    return session.x[coords]


def _noise_model(session: Session, deltas, coords, offsets):
    """``(value_sigma, delta_sigma)`` for deltas of the session's evaluator."""
    noise = session.coordinate_noise
    if session.evaluator.exact_deltas:
        own = session.evaluator.delta_noise(deltas.reshape(-1), coords.reshape(-1),
                                            offsets.reshape(-1), session.eps)
        return 0.0, np.asarray(own).reshape(deltas.shape)
    return noise.sigma, None


def stencil_pass(session: Session, coords: np.ndarray, nominal: np.ndarray, stencil: Stencil,
                 stage: str = "differences"):
    """Derivative estimates at ``coords`` with ``stencil``.

    Returns ``(values, noise, moves, deltas, own)``: ``noise`` is one standard deviation;
    ``moves``, ``deltas`` and ``own`` (the deltas' own noise for exact evaluators, else None)
    have one row per perturbed node.
    """
    kept = session.kept_pass
    if kept is not None and kept[0] is stencil:
        reused = _reuse_kept(session, coords, nominal, stencil, stage)
        if reused is not None:
            return reused
    names = session.layout.name
    x_at = _move_base(session, coords)
    checked_actual_steps(x_at, nominal, lambda k: names(coords[k]))
    plan_coords, offsets = stencil_plan(coords, nominal, stencil)
    # the move really taken at every node: x - h (or x + 2h) need not be representable
    moves = checked_actual_steps(np.tile(x_at, len(stencil.perturbed)), offsets,
                                 lambda k: names(plan_coords[k]))
    deltas = session.coord_deltas(plan_coords, moves, stage)
    shape = (len(stencil.perturbed), len(coords))
    value_sigma, own = _noise_model(session, deltas, plan_coords, moves)
    own = None if own is None else own.reshape(shape)
    values, noise = stencil_estimates(stencil, moves.reshape(shape), deltas.reshape(shape),
                                      value_sigma, own)
    return values, noise, moves.reshape(shape), deltas.reshape(shape), own


def _reuse_kept(session: Session, coords, nominal, stencil: Stencil, stage: str):
    """The kept pass's columns where ``coords`` and steps match it, the rest evaluated now;
    None when nothing matches."""
    _, kept_coords, kept_nominal, kept_result = session.kept_pass
    where = {int(c): k for k, c in enumerate(kept_coords)}
    hit = np.array([where.get(int(c), -1) for c in coords], dtype=np.int64)
    same = hit >= 0
    same[same] = kept_nominal[hit[same]] == nominal[same]
    if not same.any():
        return None
    session.kept_pass = None  # used once: the check's own first pass
    rest = np.flatnonzero(~same)
    if rest.size:
        fresh = stencil_pass(session, coords[rest], nominal[rest], stencil, stage)
    out = []
    for j, kept_part in enumerate(kept_result):
        if kept_part is None:
            out.append(None)
            continue
        merged = np.empty(kept_part.shape[:-1] + (len(coords),), dtype=kept_part.dtype)
        merged[..., same] = kept_part[..., hit[same]]
        if rest.size:
            merged[..., rest] = fresh[j]
        out.append(merged)
    return tuple(out)


def level_from_pass(stencil: Stencil, analytic, noise_sigma, moves, deltas, own=None):
    """The first ladder level from a central stencil pass (nodes -1, +1), or None."""
    if stencil.offsets != (-1.0, 1.0):
        return None
    sig_m, sig_p = (None, None) if own is None else own
    return central_level(deltas[1], deltas[0], moves[1], -moves[0], analytic, noise_sigma,
                         sig_p, sig_m)


def coord_level(session: Session, coords: np.ndarray, nominal: np.ndarray, analytic,
                stage: str = "refining") -> Level:
    """One ladder level (``x +- h``) at ``coords``; non-finite losses give NaN, not errors."""
    plan_coords, offsets, step_plus, step_minus = level_plan(coords, _move_base(session, coords),
                                                             nominal)
    deltas = session.coord_deltas(plan_coords, offsets, stage, allow_nonfinite=True)
    value_sigma, own = _noise_model(session, deltas, plan_coords, offsets)
    n = len(coords)
    plus, minus = deltas[:n], deltas[n:]
    sig_p, sig_m = (None, None) if own is None else (own[:n], own[n:])
    lost = (step_plus == 0) | (step_minus == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = central_level(plus, minus, step_plus, step_minus, analytic, value_sigma,
                              sig_p, sig_m)
    if lost.any():
        level.central[lost] = np.nan
    return level


def direction_level(session: Session, analytic_leaves, v: np.ndarray, scale: float,
                    support: slice | None = None, stage: str = "directions") -> Level:
    """One ladder level along ``v`` (zero outside ``support``) at the multiple ``scale``.

    The analytic side is ``g . (d+ - d-) / 2s`` with the displacements ``d+-`` really taken
    after rounding, so float32 rounding of ``x + s v`` does not masquerade as a wrong gradient.
    """
    support = slice(0, session.layout.size) if support is None else support
    projection, moved = session.span_projection(analytic_leaves, v, scale, support)
    sigma = session.noise.sigma
    if not moved:
        nan = np.array([np.nan])
        return Level(nan, nan, nan, nan, nan, np.array([scale]), nan)
    plus, minus = session.direction_deltas(v, [scale, -scale], stage, support,
                                           allow_nonfinite=True)
    a = projection / (2 * scale)
    one = np.array([1.0])
    return central_level(np.array([plus]), np.array([minus]), scale * one, scale * one,
                         np.array([a]), sigma)
