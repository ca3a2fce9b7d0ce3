"""The evaluator protocol and the serial reference evaluator.

An evaluator computes ``f(x + offsets[k] * e[coords[k]])`` for many ``k`` on the private flat
vector ``x`` and leaves ``x`` exactly as it found it. Every other evaluator must give the same
numbers as :class:`SerialEvaluator`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from .._combine import value_floor
from .._params import Layout
from .._plan import chunk_slices


def loss_scalar(value) -> float:
    """``value`` as a Python float, or a TypeError when the loss did not return a real scalar."""
    if isinstance(value, float):
        return value
    if isinstance(value, (str, bytes, bool, np.str_, np.bytes_, np.bool_)) or (
        isinstance(value, np.ndarray) and value.dtype.kind not in "fiu"
    ):
        raise TypeError(f"the loss must return a real scalar; got {type(value).__name__} {value!r}")
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


def check_n_jobs(n_jobs) -> int:
    """``n_jobs`` validated (joblib convention: non-zero, -1 = all cores)."""
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, (int, np.integer)):
        raise TypeError(f"n_jobs must be a non-zero int (joblib convention, -1 = all cores); "
                        f"got {n_jobs!r}")
    if n_jobs == 0:
        raise ValueError("n_jobs must be a non-zero int (joblib convention, -1 = all cores); got 0")
    return int(n_jobs)


def annotate(error: BaseException, where: str) -> None:
    """Name the failing entry on an exception in place, keeping its type and traceback.

    A plain one-string message gets the entry appended (so ``str(error)`` names it); every
    exception gets a note (``__notes__``, shown in tracebacks; set by hand before Python 3.11),
    which survives pickling from worker processes. Other ``args`` are left alone: rewriting
    them garbles KeyError or OSError and can break unpickling.
    """
    if len(error.args) == 1 and isinstance(error.args[0], str) and type(error) is not KeyError:
        error.args = (f"{error.args[0]} (raised while evaluating the loss at {where})",)
    note = f"fastfd: the caller's parameters are unchanged; failing entry: {where}"
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


class Evaluator:
    """Protocol for computing losses at perturbed points of the flat parameter vector.

    Subclasses implement :meth:`perturbed_values`; the engine calls :meth:`bind` once with
    the loss and the parameter layout, then :meth:`value`, :meth:`perturbed_deltas` and
    :meth:`direction_values`. ``x`` is the engine's private flat copy of the parameters;
    every method must leave it unchanged on return, also when the loss raises.

    Evaluators that compute differences without subtracting two full losses override
    :meth:`perturbed_deltas`, :meth:`rounding_floor` and :meth:`default_steps`.
    """

    progress: Callable[[int], object] | None = None
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
        block is moved: bisection over coordinates costs O(block) besides the loss itself.
        """
        support = slice(None) if support is None else support
        args = self._args(x)
        block = x[support].copy()
        step = direction[support]
        out = np.empty(len(scales), dtype=np.float64)
        try:
            for k, s in enumerate(scales):
                np.add(block, s * step, out=x[support], casting="unsafe")
                try:
                    out[k] = loss_scalar(self.f(args()))
                except Exception as error:
                    annotate(error, f"x + {s:.3g} * direction")
                    raise
        finally:
            x[support] = block
        return out

    def kink_flags(self, x, coords, steps) -> np.ndarray | None:
        """Exact flags of a kink within ``[x - steps, x + steps]``, or None when unknown."""
        return None

    def default_steps(self, x, stencil) -> np.ndarray | None:
        """Evaluator-specific default steps (e.g. smaller for exact deltas), or None."""
        return None

    def rounding_floor(self, f0: float, deltas, eps: float, coords, offsets) -> np.ndarray:
        """Absolute rounding error to expect in each result of :meth:`perturbed_deltas`.

        Generic evaluators subtract two losses, so the error scales with ``|f|``; exact
        evaluators override this with the scale of the terms they sum.
        """
        return value_floor(f0, deltas, eps)


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
        for part in chunk_slices(len(coords), self.chunk_size):
            out[part] = evaluate_coords(self.f, args, x, coords[part], offsets[part],
                                        self.layout.name)
            if self.progress is not None:
                self.progress(part.stop - part.start)
        return out
