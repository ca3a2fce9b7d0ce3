"""Chunks of coordinates across processes or threads with joblib (any backend, dask too).

Local processes (loky) receive the loss through joblib's pickler, which memmaps the large
numpy arrays it closes over once per call, so workers share one copy of the data; on dask the
loss is pickled once into a numpy byte array that dask scatters to the workers, each of which
unpickles it once and caches it. ``x`` travels the same way. Workers perturb a private copy
of ``x`` with the same loop as :class:`SerialEvaluator`, so the numbers are identical to a
serial run.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
from collections import OrderedDict

import cloudpickle
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config

from .._plan import chunk_slices
from ..errors import WorkerDiedError
from ._base import Evaluator, evaluate_coords, loss_args, raise_if_modified

# Chunks per worker: enough to balance uneven chunks, few enough that scheduling (about a
# millisecond per task) stays negligible next to hundreds of evaluations per chunk.
_CHUNKS_PER_WORKER = 4
_MAX_CHUNK = 4096
_PROCESS_BACKENDS = {"loky", "multiprocessing", "dask"}

_worker_losses: OrderedDict = OrderedDict()  # token -> unpickled loss, per worker process
_worker_lock = threading.Lock()  # dask workers run tasks in threads


def _loss_in_worker(token: str, blob: np.ndarray):
    with _worker_lock:
        f = _worker_losses.get(token)
        if f is None:
            f = cloudpickle.loads(blob.tobytes())
            _worker_losses[token] = f
            while len(_worker_losses) > 4:
                _worker_losses.popitem(last=False)
        return f


@contextlib.contextmanager
def _single_threaded_inner():
    """BLAS/OpenMP and numba threads = 1 inside a worker, so workers x threads <= cores."""
    from threadpoolctl import threadpool_limits

    numba = sys.modules.get("numba")
    previous = numba.get_num_threads() if numba is not None else None
    with threadpool_limits(1):
        if numba is not None:
            numba.set_num_threads(1)
        try:
            yield
        finally:
            if numba is not None:
                numba.set_num_threads(previous)


def _evaluate_chunk(source, layout, x, coords, offsets, limit_threads):
    """Run the serial loop on one chunk; ``source`` is the loss or its (token, pickle)."""
    f = _loss_in_worker(*source) if isinstance(source, tuple) else source
    private = np.array(x, copy=True)  # x may be a shared read-only memmap
    args = loss_args(layout, private)
    context = _single_threaded_inner() if limit_threads else contextlib.nullcontext()
    with context:
        values = evaluate_coords(f, args, private, coords, offsets, layout.name)
    # the serial evaluator's input is checked by the engine; a worker's private copy here
    raise_if_modified(private, x, layout.name)
    return values


def _require_dask_client():
    """The active ``distributed.Client``, or a clear error saying what to do."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "backend='dask' needs dask.distributed: pip install 'fastfd[dask]'"
        ) from None
    try:
        return distributed.get_client()
    except ValueError:
        raise RuntimeError(
            "backend='dask' needs an active distributed.Client: run the check inside "
            "`with distributed.Client(...):` (a LocalCluster or your cluster's scheduler)"
        ) from None


class JoblibEvaluator(Evaluator):
    """Evaluate perturbations in chunks on a joblib backend.

    Parameters
    ----------
    n_jobs : int
        Workers (joblib convention: -1 = all cores).
    backend : str
        Any joblib backend: ``"loky"`` (processes, default), ``"threading"``,
        ``"multiprocessing"``, ``"dask"`` (the active ``distributed.Client``).

    Notes
    -----
    Pays off when one loss evaluation costs much more than the scheduling of a chunk (about a
    millisecond per chunk of hundreds of evaluations): numpy losses of ~0.1 ms and up. Threads
    help only when the loss releases the GIL (large numpy/BLAS operations, numba ``nogil``).
    """

    def __init__(self, n_jobs: int = -1, backend: str = "loky"):
        self.n_jobs = n_jobs
        self.backend = backend
        self._blob = None
        self._token = None

    def bind(self, f, layout):
        if self.backend == "dask":
            _require_dask_client()
        bound = super().bind(f, layout)
        bound._token = uuid.uuid4().hex
        bound._blob = None  # pickled lazily: only when there is parallel work
        return bound

    def _pickled_loss(self) -> np.ndarray:
        if self._blob is None:
            try:
                data = cloudpickle.dumps(self.f)
            except Exception as error:
                raise TypeError(
                    f"the loss cannot be sent to {self.backend!r} workers ({error}); use "
                    "backend='threading' or n_jobs=1"
                ) from error
            self._blob = np.frombuffer(data, dtype=np.uint8)
        return self._blob

    def n_workers(self) -> int:
        with parallel_config(backend=self.backend):
            return max(1, effective_n_jobs(self.n_jobs))

    def perturbed_values(self, x, coords, offsets):
        n = len(coords)
        workers = self.n_workers()
        size = min(_MAX_CHUNK, max(1, -(-n // (workers * _CHUNKS_PER_WORKER))))
        chunks = chunk_slices(n, size)
        in_processes = self.backend in _PROCESS_BACKENDS
        # loky memmaps the large arrays inside the loss once per call (workers share those
        # pages); dask pickles task arguments per task, so the loss goes as one scattered blob
        source = (self._token, self._pickled_loss()) if self.backend == "dask" else self.f
        out = np.empty(n, dtype=np.float64)
        tasks = (
            delayed(_evaluate_chunk)(source, self.layout, x, coords[c], offsets[c], in_processes)
            for c in chunks
        )
        with self._threads_limited(in_processes):
            try:
                with parallel_config(backend=self.backend, n_jobs=self.n_jobs,
                                     **({"inner_max_num_threads": 1} if self.backend == "loky"
                                        else {})):
                    results = Parallel(return_as="generator")(tasks)
                    for c, values in zip(chunks, results):
                        out[c] = values
                        if self.progress is not None:
                            self.progress(c.stop - c.start)
            except Exception as error:
                if type(error).__name__ == "TerminatedWorkerError":
                    raise WorkerDiedError(
                        "a worker process died while evaluating the loss (crash, os._exit or "
                        f"out of memory); the caller's parameters are unchanged: {error}"
                    ) from error
                raise
        return out

    @staticmethod
    @contextlib.contextmanager
    def _threads_limited(in_processes: bool):
        if in_processes:
            yield
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # threads share this process's BLAS pool
            yield
