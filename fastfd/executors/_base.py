"""The evaluator protocol and the serial reference evaluator.

An evaluator computes ``f(x + offsets[k] * e[coords[k]])`` for many ``k`` on the private flat
vector ``x`` and leaves ``x`` exactly as it found it. Every other evaluator must give the same
numbers as :class:`SerialEvaluator`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from .._params import Layout
from .._plan import chunk_slices
from .._validate import n_jobs as check_n_jobs  # noqa: F401  (re-exported for the evaluators)
from ..errors import LossModifiedInputError


def loss_scalar(value) -> float:
    """``value`` as a Python float, or a TypeError when the loss did not return a real scalar."""
    if isinstance(value, float):
        return value
    if isinstance(value, (str, bytes, bool, np.str_, np.bytes_, np.bool_)) or (
        isinstance(value, np.ndarray) and value.dtype.kind not in "fiu"
    ):
        raise TypeError(f"the loss must return a real scalar; got {type(value).__name__} {value!r}")
    if isinstance(value, tuple) and len(value) == 2:
        raise TypeError("the loss must return a scalar; got a tuple of 2: for a function "
                        "returning (loss, grad), pass grad=True (as scipy's jac=True)")
    if np.ndim(value) != 0:
        raise TypeError(
            f"the loss must return a scalar; got {type(value).__name__} of shape {np.shape(value)}"
        )
    if isinstance(value, (complex, np.complexfloating)) or not np.isrealobj(value):
        raise TypeError(f"the loss must return a real scalar; got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"the loss must return a real scalar; got {type(value).__name__}") from None


def loss_args(layout: Layout, x: np.ndarray) -> Callable[[], object]:
    """A function returning the loss's argument: the params' structure as views into ``x``.

    Views are built once; each call gets a fresh container, since the loss may mutate it.
    """
    views = layout.views(x)
    if isinstance(views, (dict, list)):
        return lambda: type(views)(views)
    return lambda: views


def raise_if_modified(x: np.ndarray, reference: np.ndarray, names) -> None:
    """Raise :class:`~fastfd.errors.LossModifiedInputError` if the loss left ``x`` different
    from ``reference`` (it wrote into its argument): the numbers would be meaningless."""
    differs = x != reference
    if differs.any():
        raise modified_input_error(names(int(np.flatnonzero(differs)[0])))


def modified_input_error(name: str) -> LossModifiedInputError:
    return LossModifiedInputError(
        f"the loss modified its input in place (first at {name}); fastfd evaluates it on a "
        "private copy, so your arrays are unchanged, but the results are meaningless: make "
        "the loss leave its argument unchanged")


def annotate(error: BaseException, where: str) -> None:
    """Name the failing entry on an exception in place, keeping its type and traceback.

    A plain one-string message gets the entry appended (so ``str(error)`` names it); every
    exception gets a note (``__notes__``, shown in tracebacks; set by hand before Python 3.11),
    which survives pickling from worker processes. Other ``args`` are left alone: rewriting
    them garbles KeyError or OSError and can break unpickling.
    """
    if len(error.args) == 1 and isinstance(error.args[0], str) and type(error) is not KeyError:
        error.args = (f"{error.args[0]} (raised while evaluating the loss at {where})",)
    add_note(error, f"fastfd: the caller's parameters are unchanged; failing entry: {where}")
    try:  # a typed marker for callers (the CLI): raised by the loss, at this entry
        error.fastfd_entry = where
    except (AttributeError, TypeError):  # exceptions with __slots__ or read-only attributes
        pass


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``, also on Python 3.10 (where tracebacks still show it)."""
    if hasattr(error, "add_note"):
        error.add_note(note)
    else:  # Python 3.10
        error.__notes__ = [*getattr(error, "__notes__", []), note]


def evaluate_coords(
    f: Callable, args, x: np.ndarray, coords: np.ndarray, offsets: np.ndarray, names
) -> np.ndarray:
    """The serial loop every generic evaluator runs (also inside worker processes).

    ``args()`` returns the loss's argument (views into ``x``). Each entry is written as
    ``x[i] = xi + h`` and restored from the saved ``xi`` (never ``x[i] -= h``, which drifts),
    inside ``try/finally`` so an exception or KeyboardInterrupt leaves ``x`` intact.
    """
    out = np.empty(len(coords), dtype=np.float64)
    # Python scalars: numpy scalar indexing per evaluation costs more than microsecond losses
    for k, (i, offset) in enumerate(zip(np.asarray(coords).tolist(),
                                        np.asarray(offsets).tolist())):
        xi = x[i]
        try:
            x[i] = float(xi) + offset  # in float64, rounded once to x's dtype on the write
            out[k] = loss_scalar(f(args()))
        except Exception as error:
            annotate(error, f"{names(i)} {offset:+.3g}")
            raise
        finally:
            x[i] = xi
    return out


PROGRESS_SECONDS = 1.0  # work between progress updates, at most, where the loss is slow
_POINT_CHUNK = 2**16  # entries of x + s * direction written (and checked) at a time


def _point(block: np.ndarray, step: np.ndarray, s: float) -> np.ndarray:
    """``x + s * direction`` rounded to ``x``'s dtype as every evaluator and the engine round
    it: the product and the sum in float64, one rounding at the end."""
    moved = s * step
    moved += block
    return moved.astype(block.dtype, copy=False)


class _Gathered:
    """The entries ``index`` of ``view`` as an array-like supporting slices (sparse moves)."""

    def __init__(self, view: np.ndarray, index: np.ndarray):
        self.base, self.where = view, index

    def __getitem__(self, part):
        return self.base[self.where[part]]

    def __setitem__(self, part, values):
        self.base[self.where[part]] = values


class Evaluator:
    """Protocol for computing losses at perturbed points of the flat parameter vector.

    Subclasses implement :meth:`perturbed_values`; the engine calls :meth:`bind` once with
    the loss and the parameter layout, then :meth:`value`, :meth:`perturbed_deltas` and
    :meth:`direction_values`. ``x`` is the engine's private flat copy of the parameters;
    every method must leave it unchanged on return, also when the loss raises.

    Evaluators that compute differences without subtracting two full losses set
    ``exact_deltas`` and override :meth:`perturbed_deltas`, :meth:`delta_noise` and
    :meth:`default_steps`.
    """

    progress: Callable[[int], object] | None = None
    #: seconds per evaluation (the session sets it after the first): chunks are sized so a
    #: slow loss still reports progress about every second
    seconds_per_eval: float | None = None
    f: Callable | None = None
    layout: Layout | None = None

    def bind(self, f: Callable, layout: Layout) -> Evaluator:
        """A copy of this evaluator bound to the loss ``f`` and the parameter ``layout``."""
        bound = copy.copy(self)
        bound.f, bound.layout = f, layout
        return bound

    def _args(self, x: np.ndarray):
        return loss_args(self.layout, x)

    def value(self, x: np.ndarray):
        """``f`` at ``x``, as the loss returned it (the engine inspects its dtype)."""
        return self.f(self._args(x)())

    def perturbed_values(self, x: np.ndarray, coords: np.ndarray, offsets: np.ndarray):
        """``f(x + offsets[k] * e[coords[k]])`` for every ``k`` as float64; ``x`` unchanged."""
        raise NotImplementedError

    def perturbed_deltas(self, x, coords, offsets, f0: float) -> np.ndarray:
        """``f(x + offsets[k] * e[coords[k]]) - f(x)``; override when it can be done exactly."""
        return self.perturbed_values(x, coords, offsets) - f0

    def direction_values(self, x: np.ndarray, direction: np.ndarray, scales,
                         support: slice | None = None) -> np.ndarray:
        """``f(x + s * direction)`` (rounded to the dtype of ``x``) for every scale ``s``.

        ``direction`` is zero outside ``support`` (a slice of ``x``, default all), so only that
        block is moved: bisection over coordinates costs O(block) besides the loss itself. A
        sparse direction (kink pairs, the noise line of a huge model) saves and moves only its
        non-zero entries; a dense one is written in chunks, so the memory beyond ``x`` is one
        saved copy of the block.
        """
        support = slice(None) if support is None else support
        args = self._args(x)
        view = x[support]
        step = direction[support]
        start = support.start or 0
        nonzero = np.flatnonzero(step) if 8 * np.count_nonzero(step) < step.size else None
        position = (lambda i: start + i) if nonzero is None else (
            lambda i: start + int(nonzero[i]))
        if nonzero is not None:
            view, step = _Gathered(view, nonzero), step[nonzero]
        saved = view[...].copy()
        out = np.empty(len(scales), dtype=np.float64)
        try:
            for k, s in enumerate(scales):
                for part in chunk_slices(len(saved), _POINT_CHUNK):
                    view[part] = _point(saved[part], step[part], s)
                try:
                    out[k] = loss_scalar(self.f(args()))
                except Exception as error:
                    annotate(error, f"x + {s:.3g} * direction")
                    raise
                # restoring below would hide a loss that writes into its argument
                for part in chunk_slices(len(saved), _POINT_CHUNK):
                    raise_if_modified(view[part], _point(saved[part], step[part], s),
                                      lambda i, part=part: self.layout.name(
                                          position(part.start + i)))
        finally:
            view[...] = saved
        return out

    #: True when :meth:`perturbed_deltas` computes differences without subtracting two
    #: rounded losses (models): their noise is :meth:`delta_noise`, not the loss's own.
    exact_deltas = False
    #: why exact deltas need no measured noise, in words for the report
    exact_reason: str | None = None

    def delta_noise(self, deltas: np.ndarray, coords: np.ndarray, offsets: np.ndarray,
                    eps: float) -> np.ndarray:
        """Standard deviation of the error of each exact delta (``exact_deltas`` only);
        ``eps`` is the rounding unit of the params' dtype."""
        raise NotImplementedError(f"{type(self).__name__} computes deltas by subtraction")

    #: True when coordinate moves are imaginary (the complex step): not rounded against ``x``
    imaginary_moves = False

    #: True when a perturbed evaluation costs about one full loss evaluation (divided by
    #: :meth:`parallelism`); False for evaluators with their own fast path (stacks, kernels)
    full_cost_per_eval = True

    def parallelism(self) -> int:
        """How many evaluations run at once (workers)."""
        return 1

    def extra_evals(self) -> int:
        """Loss evaluations made on the evaluator's own account since the last call (checks
        such as the complex step's safety test), for the session's count."""
        return 0

    def kink_flags(self, x, coords, steps) -> np.ndarray | None:
        """Exact flags of a kink within ``[x - steps, x + steps]``, or None when unknown."""
        return None

    def default_steps(self, x, stencil) -> np.ndarray | None:
        """Evaluator-specific default steps (e.g. smaller for exact deltas), or None."""
        return None


def chunk_size_for(evaluator: Evaluator, by_count: int) -> int:
    """Evaluations per chunk: ``by_count``, fewer where the loss is so slow that a chunk would
    take more than ``PROGRESS_SECONDS``."""
    spe = evaluator.seconds_per_eval
    if not spe:
        return by_count
    return max(1, min(by_count, int(PROGRESS_SECONDS / spe)))


class SerialEvaluator(Evaluator):
    """Evaluates perturbations one after another in this process: the reference evaluator.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd._params import flatten
    >>> layout, x = flatten(np.array([1.0, 2.0]))
    >>> ev = SerialEvaluator().bind(lambda p: float(p @ p), layout)
    >>> ev.perturbed_values(x, np.array([0, 1]), np.array([0.5, -1.0]))
    array([6.25, 2.  ])
    >>> x
    array([1., 2.])
    """

    chunk_size = 512  # evaluations between progress updates

    def perturbed_values(self, x, coords, offsets):
        args = self._args(x)
        out = np.empty(len(coords), dtype=np.float64)
        for part in chunk_slices(len(coords), chunk_size_for(self, self.chunk_size)):
            out[part] = evaluate_coords(self.f, args, x, coords[part], offsets[part],
                                        self.layout.name)
            if self.progress is not None:
                self.progress(part.stop - part.start)
        return out
