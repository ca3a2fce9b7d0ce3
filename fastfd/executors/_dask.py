"""Chunks of coordinates on a Dask cluster through the active ``distributed.Client``.

Every evaluation runs on the workers, never in the caller's process: ``f(x)``, the noise line,
directions and coordinate chunks alike (joblib's dask backend runs tasks in the caller when
the cluster has a single worker thread, and reports a worker's death as a cancelled future).
The loss is pickled once and held with ``x`` by a task on the cluster (not scattered: a
worker killed by the loss would take scattered data with it); every worker unpickles it once,
and each chunk runs the serial loop on a private copy of ``x``, so the numbers equal the serial
run's. A worker that dies (after the scheduler's own retries on other workers) is a
:class:`~fastfd.errors.WorkerDiedError` naming the chunk's entries.
"""

from __future__ import annotations

import uuid

import numpy as np

from .._plan import chunk_slices
from .._validate import n_jobs as check_n_jobs
from ..errors import WorkerDiedError
from ._base import Evaluator, chunk_size_for
from ._joblib import CHUNKS_PER_WORKER, MAX_CHUNK, died_message
from ._workers import evaluate_chunk, evaluate_direction, evaluate_value, pickled


def require_client():
    """The active ``distributed.Client``, or a clear error saying what to do."""
    try:
        import distributed
    except ImportError:
        raise ImportError("backend='dask' needs dask.distributed: pip install 'fastfd[dask]'"
                          ) from None
    try:
        return distributed.get_client()
    except ValueError:
        raise RuntimeError(
            "backend='dask' needs an active distributed.Client: run the check inside "
            "`with distributed.Client(...):` (a LocalCluster or your cluster's scheduler; on "
            "the command line, --scheduler ADDRESS)") from None


def _held(value):
    """A task whose result is ``value``: data the scheduler can recompute on another worker."""
    return value


def _worker_died(error: BaseException) -> bool:
    return type(error).__name__ in ("KilledWorker", "FutureCancelledError", "CancelledError")


class DaskEvaluator(Evaluator):
    """Evaluate perturbations in chunks on the active ``distributed.Client``.

    Parameters
    ----------
    n_jobs : int
        Chunks in flight are sized for this many workers; ``-1`` (default) uses every thread
        of the cluster.

    Examples
    --------
    ``with distributed.Client("tcp://scheduler:8786"): fastfd.check_gradient(f, g, params,
    backend="dask")``, or ``evaluator=DaskEvaluator()``.
    """

    def __init__(self, n_jobs: int = -1):
        self.n_jobs = check_n_jobs(n_jobs)
        self._source = None
        self._x = None

    def __repr__(self) -> str:
        return f"DaskEvaluator(n_jobs={self.n_jobs})"

    def bind(self, f, layout):
        self.client = require_client()
        bound = super().bind(f, layout)
        bound.client = self.client
        bound._source = None
        bound._x = None
        return bound

    def _scattered(self, x: np.ndarray):
        """The loss (pickled once) and ``x`` on every worker; ``x`` is sent again only if it
        changed (the engine's ``x`` is restored after every evaluation, so it never does)."""
        # held by tasks, not scattered: a worker killed by the loss takes scattered data with
        # it, while a task's result is recomputed elsewhere and the killer chunk is reported
        if self._source is None:
            blob = pickled(self.f, "dask")
            token = uuid.uuid4().hex
            self._source = (token, self.client.submit(_held, blob, pure=False))
        if self._x is None or not np.array_equal(self._x[0], x):
            self._x = (x.copy(), self.client.submit(_held, x.copy(), pure=False))
        return self._source, self._x[1]

    def parallelism(self) -> int:
        return self._workers()

    def _workers(self) -> int:
        threads = sum(self.client.nthreads().values()) or 1
        return threads if self.n_jobs < 0 else min(self.n_jobs, threads)

    def _run(self, function, *args, coords=None):
        """One task on a worker (never here); a dead worker becomes a clear error."""
        (token, blob), x_future = self._scattered(args[0])
        future = self.client.submit(function, (token, blob), self.layout, x_future, *args[1:],
                                    pure=False)
        try:
            return future.result()
        except Exception as error:
            if _worker_died(error):
                raise WorkerDiedError(died_message("dask", self.layout,
                                                   np.zeros(0) if coords is None else coords)
                                      ) from error
            raise

    def value(self, x):
        return self._run(evaluate_value, x)

    def direction_values(self, x, direction, scales, support=None):
        return self._run(evaluate_direction, x, direction, np.asarray(scales, dtype=float),
                         support)

    def perturbed_values(self, x, coords, offsets):
        n = len(coords)
        by_count = min(MAX_CHUNK, max(1, -(-n // (self._workers() * CHUNKS_PER_WORKER))))
        chunks = chunk_slices(n, chunk_size_for(self, by_count))
        (token, blob), x_future = self._scattered(x)
        futures = [self.client.submit(evaluate_chunk, (token, blob), self.layout, x_future,
                                      coords[c], offsets[c], True, pure=False) for c in chunks]
        index = {future.key: k for k, future in enumerate(futures)}
        out = np.empty(n, dtype=np.float64)
        from distributed import as_completed

        try:
            for future in as_completed(futures):
                c = chunks[index[future.key]]
                try:
                    out[c] = future.result()
                except Exception as error:
                    if _worker_died(error):
                        raise WorkerDiedError(died_message("dask", self.layout, coords[c])
                                              ) from error
                    raise
                if self.progress is not None:
                    self.progress(c.stop - c.start)
        finally:
            for future in futures:
                future.cancel()
        return out
