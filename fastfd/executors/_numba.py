"""Perturbed losses of an ``@njit`` loss evaluated inside compiled code: a ``prange`` driver.

For a loss made with ``@numba.njit`` that takes one flat float64 vector, the loop over
perturbations runs in a compiled driver: no Python per evaluation. The perturbations are split
into chunks, each chunk perturbs its own copy of ``x`` (made once per chunk) and the chunks run
on numba's thread pool.

The loss is passed to the driver as a first-class function (``FunctionType``), so one compiled
driver serves every loss, can be cached on disk, and calls the machine code that Python calls:
the results are bit-identical to :class:`~fastfd.executors.SerialEvaluator`'s. (A loss that
returns float32 or an integer goes through a small compiled wrapper converting the result to
float64 exactly, as ``float()`` does.)

An exception raised by the loss inside a worker thread is dropped by numba (its thread just
stops). Each chunk therefore reports that it finished; chunks that did not are re-run serially
through :func:`~fastfd.executors._base.evaluate_coords`, which raises the loss's own error
naming the entry (``x[3] +1e-05``). Each chunk also checks that the loss left its copy of
``x`` as it found it: a loss writing to its input is reported, as the engine does for the
serial evaluator.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numba
import numpy as np
from numba import prange, types
from numba.core.registry import CPUDispatcher

from .._params import Layout
from ..kernels._config import PARALLEL_OPTIONS
from ._base import Evaluator, check_n_jobs, evaluate_coords, modified_input_error

__all__ = ["NumbaEvaluator", "accepts"]

_REQUIREMENT = "the numba evaluator needs an @njit loss of one flat float64 vector"
# A chunk copies x once and scans it once more: with a few hundred evaluations per chunk
# that is under 1% of the work whenever one evaluation reads x.
_MIN_CHUNK = 256
_CHUNKS_PER_THREAD = 4  # load balance when other processes steal a core
_PROGRESS_BATCHES = 20  # driver calls per perturbed_values when progress is on


def _requirement_error(f, layout: Layout) -> Exception | None:
    """The error :meth:`NumbaEvaluator.bind` raises for ``f`` and ``layout``, None if they fit."""
    if not isinstance(f, CPUDispatcher):
        if not (numba.config.DISABLE_JIT and callable(f)):
            return TypeError(f"{_REQUIREMENT}; got a loss of type {type(f).__name__} "
                             "(decorate it with @numba.njit, or use evaluator='serial')")
    elif not getattr(f, "_can_compile", True) and (types.float64[::1],) not in f.signatures:
        compiled = ", ".join(str(sig) for sig in f.nopython_signatures)
        return TypeError(f"{_REQUIREMENT}; got a loss compiled only for {compiled} "
                         "(compilation disabled by explicit signatures): add the signature "
                         "'float64(float64[::1])', or use evaluator='serial'")
    elif f.targetoptions.get("parallel"):
        # its own prange inside our prange would oversubscribe the cores
        return TypeError(f"{_REQUIREMENT}, compiled without parallel=True; got a parallel "
                         "loss, which parallelizes itself: use evaluator='serial'")
    if layout.kind != "array":
        return TypeError(f"{_REQUIREMENT}; got params of kind {layout.kind}")
    if layout.dtype != np.float64:
        return TypeError(f"{_REQUIREMENT}; got params of dtype {layout.dtype}")
    if len(layout.shapes[0]) != 1:
        return ValueError(f"{_REQUIREMENT}; got params of shape {layout.shapes[0]}")
    return None


def accepts(f, layout: Layout) -> bool:
    """Whether :class:`NumbaEvaluator` can evaluate ``f`` on params of ``layout``.

    True for a serial ``@numba.njit`` loss (a ``CPUDispatcher``) of a single 1-D float64 array.
    Under ``NUMBA_DISABLE_JIT=1`` it is False for every loss, so plain losses stay on the serial
    evaluator, while :meth:`NumbaEvaluator.bind` takes any callable: the driver then runs as
    Python, which is how the coverage run reaches its code.
    """
    return isinstance(f, CPUDispatcher) and _requirement_error(f, layout) is None


def resolve_n_threads(n_jobs: int) -> int:
    """Numba threads for ``n_jobs`` in the joblib convention, within ``NUMBA_NUM_THREADS``.

    ``-1`` is every thread numba has, ``-2`` all but one, a positive value that many.
    """
    available = numba.config.NUMBA_NUM_THREADS
    wanted = n_jobs if n_jobs > 0 else available + 1 + n_jobs
    return max(1, min(wanted, available))


def _perturbed_chunks(f, x, coords, offsets, bounds, out, done, first_changed):
    """``out[k] = f(x + offsets[k] e[coords[k]])`` for ``k`` in the chunks ``bounds``.

    Sets ``done[c] = 1`` when chunk ``c`` finished and ``first_changed[c]`` to the first entry
    the loss wrote to (its copy of ``x`` differs from ``x``), else -1. Never writes ``x``.
    """
    for c in prange(len(bounds) - 1):
        x_chunk = x.copy()  # once per chunk: threads never share a perturbed vector
        for k in range(bounds[c], bounds[c + 1]):
            i = coords[k]
            xi = x_chunk[i]
            x_chunk[i] = xi + offsets[k]
            out[k] = f(x_chunk)
            x_chunk[i] = xi  # restore the saved value: subtracting the offset would drift
        first_changed[c] = -1
        for j in range(len(x)):
            if x_chunk[j] != x[j]:
                first_changed[c] = j
                break
        done[c] = 1


@functools.cache
def _driver():
    """The compiled driver, built on first use so that importing fastfd compiles nothing.

    The loss is a ``FunctionType`` argument, not a specialized ``Dispatcher`` type: then the
    signature does not depend on the loss, one compilation serves every loss and the on-disk
    cache works (a driver specialized on the dispatcher misses the cache in every new process
    and writes another cache file each time).
    """
    loss = types.FunctionType(types.float64(types.float64[::1]))
    vector, indices = types.float64[::1], types.int64[::1]
    signature = types.void(loss, vector, indices, vector, indices, vector, types.uint8[::1],
                           indices)
    # The driver's only arithmetic is xi + offset, which must round exactly as the serial
    # evaluator's does; fast-math flags could only make it differ.
    options = {**PARALLEL_OPTIONS, "fastmath": False}
    return numba.njit(signature, **options)(_perturbed_chunks)


def _float64_loss(f):
    """The loss as the driver calls it, or None when it cannot (the serial path then runs and
    raises the loss's own error).

    The driver's signature fixes a float64 result: a loss returning another real type gets
    a compiled wrapper converting it exactly, as ``float()`` does in the serial evaluator.
    """
    if not isinstance(f, CPUDispatcher):
        return f  # NUMBA_DISABLE_JIT: the driver is Python too
    return _float64_adapter(f)


@functools.lru_cache(maxsize=32)
def _float64_adapter(f):
    vector = (types.float64[::1],)
    try:
        f.compile(vector)  # a no-op once the engine has called the loss on x
    except Exception:
        return None
    result = f.overloads[vector].signature.return_type
    if result == types.float64:
        return f
    if not isinstance(result, (types.Float, types.Integer)):
        return None  # not a real scalar: the serial path raises a clear TypeError

    @numba.njit
    def loss_as_float64(x):
        return np.float64(f(x))

    return loss_as_float64


@contextlib.contextmanager
def _numba_threads(n_threads: int):
    """Run numba's parallel regions of this thread on ``n_threads`` threads, handing out
    chunks one at a time (dynamic scheduling), then restore both settings."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    # Static scheduling would give each thread a fixed share: one thread on a core that
    # another process also uses would hold up the whole call.
    previous_chunksize = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(previous_chunksize)
        numba.set_num_threads(previous)


def chunk_bounds(start: int, stop: int, n_threads: int) -> np.ndarray:
    """Boundaries of the chunks of ``range(start, stop)``: a multiple of ``n_threads`` chunks,
    up to ``_CHUNKS_PER_THREAD`` per thread, of at least ``_MIN_CHUNK`` evaluations when the
    range is long enough."""
    size = stop - start
    per_thread = max(1, min(_CHUNKS_PER_THREAD, size // (_MIN_CHUNK * n_threads)))
    n_chunks = max(1, min(size, n_threads * per_thread))
    return start + (np.arange(n_chunks + 1, dtype=np.int64) * size) // n_chunks


def batch_bounds(n: int, n_threads: int, with_progress: bool) -> list[tuple[int, int]]:
    """Ranges of perturbations per driver call: one call, or about ``_PROGRESS_BATCHES``
    calls (each large enough for full chunks) when progress is reported in between."""
    if not with_progress:
        return [(0, n)]
    n_batches = max(1, min(_PROGRESS_BATCHES, n // (_MIN_CHUNK * n_threads)))
    edges = (np.arange(n_batches + 1) * n) // n_batches
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


class NumbaEvaluator(Evaluator):
    """Evaluates perturbations of an ``@njit`` loss in a compiled ``prange`` driver.

    The loss must be a serial ``@numba.njit`` function of one flat float64 vector (see
    :func:`accepts`). Results are bit-identical to :class:`SerialEvaluator`'s.

    Parameters
    ----------
    n_jobs : int
        Numba threads, joblib convention: ``-1`` = all, ``-2`` = all but one, a positive
        value that many (at most ``numba.config.NUMBA_NUM_THREADS``).

    Examples
    --------
    >>> import numba, numpy as np
    >>> from fastfd._params import flatten
    >>> @numba.njit
    ... def loss(x):
    ...     return np.sum(x * x)
    >>> layout, x = flatten(np.array([1.0, 2.0]))
    >>> ev = NumbaEvaluator(n_jobs=2).bind(loss, layout)
    >>> ev.perturbed_values(x, np.array([0, 1]), np.array([0.5, -1.0]))
    array([6.25, 2.  ])
    >>> x
    array([1., 2.])
    """

    full_cost_per_eval = False

    def __init__(self, n_jobs: int = 1):
        self.n_jobs = check_n_jobs(n_jobs)

    def __repr__(self) -> str:
        return f"NumbaEvaluator(n_jobs={self.n_jobs})"

    def bind(self, f, layout: Layout) -> NumbaEvaluator:
        error = _requirement_error(f, layout)
        if error is not None:
            raise error
        return super().bind(f, layout)

    def perturbed_values(self, x, coords, offsets):
        x = np.ascontiguousarray(x, dtype=np.float64)
        coords = np.ascontiguousarray(coords, dtype=np.int64).reshape(-1)
        offsets = np.ascontiguousarray(offsets, dtype=np.float64).reshape(-1)
        if len(offsets) != len(coords):
            raise ValueError(f"offsets must have one value per coordinate; got {len(offsets)} "
                             f"offsets for {len(coords)} coords")
        out = np.full(len(coords), np.nan)
        if len(coords) == 0:
            return out
        # the compiled driver does not check bounds
        if coords.min() < 0 or coords.max() >= len(x):
            raise IndexError(f"coords must lie in [0, {len(x)}); got values from "
                             f"{coords.min()} to {coords.max()}")
        n_threads = resolve_n_threads(self.n_jobs)
        driver, loss = _driver(), _float64_loss(self.f)
        for start, stop in batch_bounds(len(coords), n_threads, self.progress is not None):
            bounds = chunk_bounds(start, stop, n_threads)
            done = np.zeros(len(bounds) - 1, dtype=np.uint8)
            first_changed = np.full(len(bounds) - 1, -1, dtype=np.int64)
            driver_error = None
            if loss is not None:
                try:
                    with _numba_threads(n_threads):
                        driver(loss, x, coords, offsets, bounds, out, done, first_changed)
                except Exception as error:
                    # the serial re-run of the unfinished chunks raises the loss's own error
                    # naming the entry; if it does not, the fast path itself failed: say so
                    driver_error = error
            if not done.all():
                self._rerun_serially(x, coords, offsets, bounds, done, out)
                if driver_error is not None:
                    warnings.warn(f"the numba driver failed ({driver_error!r}); evaluated "
                                  "serially instead", RuntimeWarning, stacklevel=2)
            self._check_unmodified(first_changed)
            if self.progress is not None:
                self.progress(stop - start)
        return out

    def _rerun_serially(self, x, coords, offsets, bounds, done, out) -> None:
        """Evaluate the chunks the driver did not finish in Python, on a private copy of
        ``x``: the loss's exception comes back annotated with the failing entry."""
        private = x.copy()
        args = self._args(private)
        for c in np.flatnonzero(done == 0):
            part = slice(int(bounds[c]), int(bounds[c + 1]))
            out[part] = evaluate_coords(self.f, args, private, coords[part], offsets[part],
                                        self.layout.name)

    def _check_unmodified(self, first_changed: np.ndarray) -> None:
        changed = first_changed[first_changed >= 0]
        if changed.size:
            raise modified_input_error(self.layout.name(int(changed.min())))
