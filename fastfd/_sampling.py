"""Which coordinates and directions to check, and what a sampled pass means."""

from __future__ import annotations

import numpy as np

from ._params import Layout

MIN_PER_ARRAY = 5


def _boundary_entries(shape: tuple[int, ...], rng: np.random.Generator) -> list[int]:
    """One random entry from the first and from the last slice along every axis.

    Off-by-one and forgotten-term bugs live there: bias rows, the last class, the first and
    last time step.
    """
    picks = []
    for axis, n in enumerate(shape):
        for end in {0, n - 1}:
            index = [int(rng.integers(m)) for m in shape]
            index[axis] = end
            picks.append(int(np.ravel_multi_index(index, shape)))
    return list(dict.fromkeys(picks))


def stratified_sample(layout: Layout, k: int, rng: np.random.Generator) -> np.ndarray:
    """About ``k`` flat coordinates: every array in proportion to its size, at least
    ``min(size, max(5, 2 * ndim))`` from each, starting with one entry of the first and of
    the last slice along every axis. Sorted, no duplicates.

    Examples
    --------
    >>> from fastfd._params import flatten
    >>> layout, _ = flatten({"W": np.zeros((100, 10)), "b": np.zeros(10)})
    >>> coords = stratified_sample(layout, 50, np.random.default_rng(0))
    >>> len(coords), int((coords >= 1000).sum())
    (50, 5)
    """
    sizes = np.diff(layout.starts)
    # room for one entry of the first and the last slice along every axis
    floor = np.minimum(sizes, [max(MIN_PER_ARRAY, 2 * len(shape)) for shape in layout.shapes])
    spare = max(0, k - int(floor.sum()))
    quota = np.minimum(sizes, floor + np.floor(spare * sizes / sizes.sum())).astype(np.int64)
    # hand out what rounding left to the largest arrays, without exceeding their size
    for j in np.argsort(-sizes, kind="stable"):
        short = k - int(quota.sum())
        if short <= 0:
            break
        quota[j] = min(sizes[j], quota[j] + short)
    chosen = []
    for j, shape in enumerate(layout.shapes):
        q, size = int(quota[j]), int(sizes[j])
        if q == 0:
            continue
        picks = _boundary_entries(shape, rng)[:q] if shape else [0]
        if q > len(picks):
            if size > 4 * q:  # sparse: O(q) work and memory, whatever the array's size
                rest = _sparse_draw(size, q - len(picks), picks, rng)
            else:
                rest = rng.choice(np.setdiff1d(np.arange(size), picks), size=q - len(picks),
                                  replace=False)
            picks = list(picks) + np.asarray(rest).tolist()
        chosen.append(np.asarray(picks, dtype=np.int64) + layout.starts[j])
    return np.unique(np.concatenate(chosen))


def _sparse_draw(size: int, count: int, exclude, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct ints in ``[0, size)`` not in ``exclude``, in O(count) memory."""
    found: dict[int, None] = {}
    taken = set(exclude)
    while len(found) < count:
        for v in rng.integers(size, size=2 * (count - len(found))).tolist():
            if v not in taken and v not in found:
                found[v] = None
                if len(found) == count:
                    break
    return np.fromiter(found, dtype=np.int64, count=count)


def random_directions(layout: Layout, m: int, rng: np.random.Generator):
    """Yield ``m`` random unit vectors, one at a time (O(P) memory).

    Each parameter array's block is a Gaussian vector of norm ``1 / sqrt(n_arrays)``: every
    array weighs the same in ``g . v``, so a wrong bias of 10 entries is not swamped by a
    weight matrix of a million.
    """
    for _ in range(m):
        yield normalized_per_array(layout, rng.standard_normal(layout.size), 1.0)


def normalized_per_array(layout: Layout, v: np.ndarray, total_norm: float) -> np.ndarray:
    """``v`` (in place) with every array's block scaled to norm ``total_norm / sqrt(A)``;
    blocks that are all zero stay zero."""
    share = total_norm / np.sqrt(layout.n_arrays)
    for _, span in layout.slices():
        norm = np.linalg.norm(v[span])
        if norm > 0:
            v[span] *= share / norm
    return v


def confidence_statement(n_checked: int, n_params: int, level: float = 0.95) -> str | None:
    """What a sampled pass proves (rule of three), or None for a full check.

    With ``k`` uniformly drawn entries and none wrong, the fraction ``q`` of wrong entries
    satisfies ``(1 - q)**k >= 0.05``, so ``q < -ln(0.05) / k ~= 3 / k`` at 95% confidence.

    Examples
    --------
    >>> confidence_statement(1000, 30730)
    'with 95% confidence fewer than 0.3% of entries are wrong (1000 of 30730 checked)'
    """
    if n_checked >= n_params or n_checked == 0:
        return None
    bound = -np.log(1.0 - level) / n_checked
    return (
        f"with {level:.0%} confidence fewer than {_pct(bound)} of entries are wrong "
        f"({n_checked} of {n_params} checked)"
    )


def _pct(q: float) -> str:
    value = 100.0 * q
    return f"{value:.2g}%" if value < 10 else f"{value:.0f}%"
