"""What runs inside workers (processes, threads, dask): the loss unpickled once, BLAS and numba
limited to one thread, the serial loop on a private copy of ``x``.

Shared by :mod:`._joblib` and :mod:`._dask`, so every parallel backend evaluates exactly as
:class:`~fastfd.executors.SerialEvaluator` does and the numbers are bit-identical.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict

import cloudpickle
import numpy as np

from ._base import SerialEvaluator, add_note, evaluate_coords, loss_args, raise_if_modified

_losses: OrderedDict = OrderedDict()  # token -> unpickled loss, per worker process
_losses_lock = threading.Lock()  # dask workers run tasks in threads

_limit_lock = threading.Lock()
_limit_users = 0
_limiter = None


def pickled(f, where: str) -> np.ndarray:
    """``f`` pickled once (cloudpickle) as a byte array, or a clear error."""
    try:
        return np.frombuffer(cloudpickle.dumps(f), dtype=np.uint8)
    except Exception as error:
        raise TypeError(f"the loss cannot be sent to {where} workers ({error}); use "
                        "backend='threading' or n_jobs=1") from error


def loss_in_worker(token: str, blob: np.ndarray):
    """The loss of ``token``, unpickled once per worker process (a few cached)."""
    with _losses_lock:
        f = _losses.get(token)
        if f is None:
            try:
                f = cloudpickle.loads(blob.tobytes())
            except ImportError as error:  # ModuleNotFoundError included
                name = getattr(error, "name", None) or str(error)
                raise ImportError(
                    f"the workers cannot import {name!r}, which the loss needs: install it on "
                    "the workers (or make the module importable there, e.g. on PYTHONPATH); a "
                    "loss defined in a script file can be sent by value with "
                    "cloudpickle.register_pickle_by_value(module)") from None
            _losses[token] = f
            while len(_losses) > 4:
                _losses.popitem(last=False)
        return f


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS/OpenMP limited to one thread in this process while any user is inside.

    Reference counted, so concurrent users (threads of one process: the threading backend,
    dask worker threads, concurrent checks) restore the original limits only when the last
    one leaves, and never restore a limit another user still relies on.
    """
    global _limit_users, _limiter
    from threadpoolctl import threadpool_limits

    with _limit_lock:
        if _limit_users == 0:
            _limiter = threadpool_limits(1)
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                _limiter.restore_original_limits()
                _limiter = None


@contextlib.contextmanager
def single_threaded_inner():
    """BLAS/OpenMP and numba threads = 1 inside a worker, so workers x threads <= cores."""
    numba = sys.modules.get("numba")
    with single_threaded_blas():
        previous = numba.get_num_threads() if numba is not None else None
        if numba is not None:
            numba.set_num_threads(1)
        try:
            yield
        finally:
            if numba is not None:
                numba.set_num_threads(previous)


_READ_ONLY_NOTE = ("fastfd: with backend='loky' the large arrays your loss closes over are "
                   "shared read-only between the worker processes (joblib memmaps them once): "
                   "copy an array before writing into it, or use backend='threading'")


def evaluate_chunk(source, layout, x, coords, offsets, limit_threads: bool):
    """The serial loop on one chunk; ``source`` is the loss or its ``(token, pickle)``."""
    f = loss_in_worker(*source) if isinstance(source, tuple) else source
    private = np.array(x, copy=True)  # x may be a shared read-only memmap
    args = loss_args(layout, private)
    context = single_threaded_inner() if limit_threads else contextlib.nullcontext()
    with context:
        try:
            values = evaluate_coords(f, args, private, coords, offsets, layout.name)
        except ValueError as error:
            if "read-only" in str(error):  # numpy's words for a write into a memmap
                add_note(error, _READ_ONLY_NOTE)
            raise
    # the serial evaluator's input is checked by the engine; a worker's private copy here
    raise_if_modified(private, x, layout.name)
    return values


def evaluate_value(source, layout, x):
    """``f(x)`` in a worker, as the loss returned it."""
    f = loss_in_worker(*source) if isinstance(source, tuple) else source
    private = np.array(x, copy=True)
    with single_threaded_inner():
        value = SerialEvaluator().bind(f, layout).value(private)
    raise_if_modified(private, x, layout.name)
    return value


def evaluate_direction(source, layout, x, direction, scales, support):
    """``f(x + s * direction)`` for every scale, in a worker (the serial evaluator's code)."""
    f = loss_in_worker(*source) if isinstance(source, tuple) else source
    private = np.array(x, copy=True)
    with single_threaded_inner():
        values = SerialEvaluator().bind(f, layout).direction_values(private, direction, scales,
                                                                    support)
    raise_if_modified(private, x, layout.name)
    return values
