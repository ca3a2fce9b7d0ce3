"""The stacked evaluator: losses that take K parameter sets at once and return K losses.

A batched loss receives every parameter array with a leading stack axis of length K
(``{"W": (K, D, C), "b": (K, C)}``, ``(K, *shape)`` for a single array) and returns an array of
shape ``(K,)``. One call then evaluates K perturbations, so the per-call Python overhead that
dominates small losses is paid once per stack instead of once per perturbation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import _validate
from .._params import Layout
from ..errors import InternalError
from ._base import Evaluator, annotate

DEFAULT_MAX_STACK = 1024
# With max_stack=None a stack also stays about cache-sized, and so do the loss's stacked
# temporaries: on the logistic-regression benchmark (P=650) stacks of 150..320 rows
# (0.8..1.7 MB) ran about 1.5x faster than stacks of 650..1024 rows.
DEFAULT_STACK_BYTES = 2**20


def _stacked_views(layout: Layout, buffer: np.ndarray) -> list[np.ndarray]:
    """Read-only ``(K, *shape)`` views of every parameter array into the ``(K, P)`` ``buffer``.

    Read-only, so a loss that writes into its argument raises instead of silently corrupting
    the stack that later batches reuse.
    """
    rows = buffer.shape[0]
    views = []
    for (_, span), shape in zip(layout.slices(), layout.shapes):
        view = buffer[:, span].reshape(rows, *shape)
        if view.base is not buffer:  # a copy would receive no perturbation at all
            raise InternalError(f"stacked parameter view {shape} is a copy")
        view.flags.writeable = False
        views.append(view)
    return views


def _batch_losses(result, k: int) -> np.ndarray:
    """The loss's answer for a stack of ``k`` as a real array of shape ``(k,)``, else an error."""
    values = np.asarray(result)
    if values.dtype.kind not in "fiu":
        raise TypeError(f"a batched loss must return a real array of shape ({k},); got "
                        f"{type(result).__name__} of dtype {values.dtype}")
    if values.shape != (k,):
        hint = (" (is the loss written for a leading stack axis on every parameter array?)"
                if values.ndim == 0 else "")
        raise ValueError(f"a batched loss must return one loss per stacked parameter set: "
                         f"expected shape ({k},), got {values.shape}{hint}")
    return values


def _note_read_only(error: ValueError) -> None:
    if "read-only" in str(error) and hasattr(error, "add_note"):
        error.add_note("fastfd: the stacked parameters are read-only; a batched loss must not "
                       "modify its argument in place")


class _Stack:
    """The reusable ``(K, P)`` buffer, every row equal to ``x`` between batches, and its views."""

    def __init__(self, layout: Layout, rows: int, x: np.ndarray):
        self.buffer = np.empty((rows, layout.size), dtype=layout.dtype)
        self.buffer[:] = x
        self.views = _stacked_views(layout, self.buffer)
        self.rows = np.arange(rows)

    def holds(self, x: np.ndarray) -> bool:
        """Whether the rows equal ``x`` bit for bit (``-0.0`` included)."""
        row = self.buffer[0]
        return row.dtype == x.dtype and np.array_equal(
            row.view(np.uint8), np.ascontiguousarray(x).view(np.uint8))


class BatchedEvaluator(Evaluator):
    """Evaluates K perturbations per call of a loss that takes a stack of parameter sets.

    The loss receives the caller's structure with a leading stack axis on every array and
    returns K losses. Perturbations are written into a private ``(K, P)`` buffer whose rows
    all hold ``x``: row ``r`` gets ``x[coords[r]] + offsets[r]`` (vectorized), the loss is
    called once, and the saved originals are written back in ``try/finally``. ``x`` itself is
    never written. The stacked views are read-only.

    Parameters
    ----------
    max_stack : int, optional
        Most parameter sets per call. Default: up to 1024, fewer where a stack would pass
        ``DEFAULT_STACK_BYTES`` (1 MiB), so the loss's stacked temporaries stay in cache.
    max_bytes : int
        Hard memory cap of the stack buffer; K is at least 1 whatever the caps.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd._params import flatten
    >>> layout, x = flatten(np.array([1.0, 2.0]))
    >>> ev = BatchedEvaluator(max_stack=2).bind(lambda p: np.sum(p * p, axis=1), layout)
    >>> ev.perturbed_values(x, np.array([0, 1, 0]), np.array([0.5, -1.0, -0.5]))
    array([6.25, 2.  , 4.25])
    >>> x
    array([1., 2.])

    Through the engine:

    >>> import fastfd
    >>> g = fastfd.numerical_gradient(lambda p: np.sum(p["w"] ** 2, axis=1),
    ...                               {"w": np.array([1.0, -2.0])}, evaluator=BatchedEvaluator())
    >>> np.round(g["w"], 6)
    array([ 2., -4.])
    """

    full_cost_per_eval = False

    def __init__(self, max_stack: int | None = None, max_bytes: int = 64 * 2**20):
        _validate.positive_int(max_stack, "max_stack", allow_none=True)
        _validate.positive_int(max_bytes, "max_bytes")
        self.max_stack = None if max_stack is None else int(max_stack)
        self.max_bytes = int(max_bytes)
        self._stack: _Stack | None = None

    def __repr__(self) -> str:
        return f"BatchedEvaluator(max_stack={self.max_stack!r}, max_bytes={self.max_bytes!r})"

    def bind(self, f: Callable, layout: Layout) -> BatchedEvaluator:
        bound = super().bind(f, layout)
        bound._stack = None  # never share a buffer between bound copies
        return bound

    def stack_size(self, n: int) -> int:
        """Parameter sets per call for ``n`` perturbations: the smallest of ``n``, ``max_stack``
        (default: 1024 or what fits ``DEFAULT_STACK_BYTES``) and what fits ``max_bytes``,
        at least 1."""
        row_bytes = self.layout.size * self.layout.dtype.itemsize
        if self.max_stack is None:
            cap = min(DEFAULT_MAX_STACK, DEFAULT_STACK_BYTES // row_bytes)
        else:
            cap = self.max_stack
        return max(1, min(n, cap, self.max_bytes // row_bytes))

    def _call(self, arrays: list[np.ndarray], k: int) -> np.ndarray:
        try:
            result = self.f(self.layout._pack(arrays))  # a fresh container per call
        except ValueError as error:
            _note_read_only(error)
            raise
        return _batch_losses(result, k)

    def value(self, x: np.ndarray):
        """``f`` at ``x`` from a stack of one (a read-only view of ``x``), dtype kept."""
        views = []
        for (_, span), shape in zip(self.layout.slices(), self.layout.shapes):
            view = x[span].reshape(1, *shape)  # a view: x is the engine's contiguous vector
            view.flags.writeable = False
            views.append(view)
        return self._call(views, 1)[0]

    def _stack_for(self, x: np.ndarray, rows: int) -> _Stack:
        stack = self._stack
        if stack is None or len(stack.rows) < rows:
            stack = self._stack = _Stack(self.layout, rows, x)
        elif not stack.holds(x):
            stack.buffer[:] = x
        return stack

    def perturbed_values(self, x: np.ndarray, coords: np.ndarray, offsets: np.ndarray):
        """``f(x + offsets[k] * e[coords[k]])`` for every ``k`` as float64; ``x`` unchanged."""
        coords = np.asarray(coords)
        offsets = np.asarray(offsets)
        out = np.empty(len(coords), dtype=np.float64)
        if not len(coords):
            return out
        size = self.stack_size(len(coords))
        stack = self._stack_for(x, size)
        buffer, full_views = stack.buffer, stack.views
        for begin in range(0, len(coords), size):
            k = min(size, len(coords) - begin)
            rows, cols = stack.rows[:k], coords[begin:begin + k]
            original = buffer[rows, cols]  # the saved values written back, never subtracted
            views = full_views if k == len(stack.rows) else [v[:k] for v in full_views]
            try:
                buffer[rows, cols] = original + offsets[begin:begin + k]
                out[begin:begin + k] = self._call(views, k)  # copied before the restore
            except Exception as error:
                name = self.layout.name
                annotate(error, f"entries {name(cols[0])} .. {name(cols[-1])} (stack of {k})")
                raise
            finally:
                buffer[rows, cols] = original
            if self.progress is not None:
                self.progress(k)
        return out

    def direction_values(self, x: np.ndarray, direction: np.ndarray, scales,
                         support: slice | None = None) -> np.ndarray:
        """``f(x + s * direction)`` (rounded to the dtype of ``x``) for every scale, stacked.

        ``direction`` is zero outside ``support`` (a slice of ``x``, default all).
        """
        support = slice(None) if support is None else support
        scales = np.asarray(scales, dtype=np.float64)
        out = np.empty(len(scales), dtype=np.float64)
        size = self.stack_size(len(scales))
        for begin in range(0, len(scales), size):
            part = scales[begin:begin + size]
            rows = np.empty((len(part), self.layout.size), dtype=self.layout.dtype)
            rows[:] = x
            for r, s in enumerate(part):
                np.add(x[support], s * direction[support], out=rows[r, support], casting="unsafe")
            try:
                out[begin:begin + len(part)] = self._call(_stacked_views(self.layout, rows),
                                                          len(part))
            except Exception as error:
                listed = ", ".join(f"{s:.3g}" for s in part)
                annotate(error, f"x + s * direction for s in [{listed}]")
                raise
        return out
