"""Chunks of coordinates across local processes or threads with joblib.

Local processes (loky) receive the loss through joblib's pickler, which memmaps the large
numpy arrays it closes over once per call, so workers share one copy of the data (read-only:
a loss writing into them is told so). Workers perturb a private copy of ``x`` with the same
loop as :class:`SerialEvaluator`, so the numbers are identical to a serial run. Threads share
this process: the loss must then be thread-safe, and a cheap serial re-evaluation of the first
perturbations of every call says so when it is not. ``backend="dask"`` is served by
:class:`~fastfd.executors.DaskEvaluator` (the distributed client's own API).
"""

from __future__ import annotations

import contextlib

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config

from .._plan import chunk_slices
from ..errors import ThreadUnsafeLossError, WorkerDiedError
from ._base import Evaluator, chunk_size_for, evaluate_coords, loss_args
from ._workers import evaluate_chunk, single_threaded_blas

# Chunks per worker: enough to balance uneven chunks, few enough that scheduling (about a
# millisecond per task) stays negligible next to hundreds of evaluations per chunk.
CHUNKS_PER_WORKER = 4
MAX_CHUNK = 4096
_PROCESS_BACKENDS = {"loky", "multiprocessing"}
_THREAD_CHECKS = 4  # perturbations re-evaluated serially after a threaded call


def died_message(where: str, layout, coords) -> str:
    """One sentence for a dead worker, naming the entries of the chunk it may have held."""
    span = (f"one of the entries {layout.name(int(coords[0]))} .. "
            f"{layout.name(int(coords[-1]))}" if len(coords) else "no entry")
    return (f"a {where} worker process died while evaluating the loss (a crash, os._exit or "
            f"out of memory), at {span}; the caller's parameters are unchanged")


class JoblibEvaluator(Evaluator):
    """Evaluate perturbations in chunks on a joblib backend.

    Parameters
    ----------
    n_jobs : int
        Workers (joblib convention: -1 = all cores).
    backend : str
        A joblib backend: ``"loky"`` (processes, default), ``"threading"``,
        ``"multiprocessing"``; ``"dask"`` gives a :class:`DaskEvaluator`.

    Notes
    -----
    Pays off when one loss evaluation costs much more than the scheduling of a chunk (about a
    millisecond per chunk of hundreds of evaluations): numpy losses of ~0.1 ms and up. Threads
    help only when the loss releases the GIL (large numpy/BLAS operations, numba ``nogil``),
    and need a thread-safe loss (no shared scratch buffers).
    """

    def __init__(self, n_jobs: int = -1, backend: str = "loky"):
        self.n_jobs = n_jobs
        self.backend = backend

    def bind(self, f, layout):
        if self.backend == "dask":
            from ._dask import DaskEvaluator

            return DaskEvaluator(n_jobs=self.n_jobs).bind(f, layout)
        return super().bind(f, layout)

    def parallelism(self) -> int:
        return self.n_workers()

    def n_workers(self) -> int:
        with parallel_config(backend=self.backend):
            return max(1, effective_n_jobs(self.n_jobs))

    def perturbed_values(self, x, coords, offsets):
        n = len(coords)
        workers = self.n_workers()
        by_count = min(MAX_CHUNK, max(1, -(-n // (workers * CHUNKS_PER_WORKER))))
        chunks = chunk_slices(n, chunk_size_for(self, by_count))
        in_processes = self.backend in _PROCESS_BACKENDS
        out = np.empty(n, dtype=np.float64)
        tasks = (delayed(evaluate_chunk)(self.f, self.layout, x, coords[c], offsets[c],
                                         in_processes) for c in chunks)
        options = {"inner_max_num_threads": 1} if self.backend == "loky" else {}
        # threads share this process's BLAS pool
        limited = contextlib.nullcontext() if in_processes else single_threaded_blas()
        received = 0
        with limited:
            try:
                with parallel_config(backend=self.backend, n_jobs=self.n_jobs, **options):
                    for values in Parallel(return_as="generator")(tasks):
                        c = chunks[received]
                        out[c] = values
                        received += 1
                        if self.progress is not None:
                            self.progress(c.stop - c.start)
            except Exception as error:
                if type(error).__name__ == "TerminatedWorkerError":
                    c = chunks[min(received, len(chunks) - 1)]  # the first chunk still awaited
                    raise WorkerDiedError(died_message(self.backend, self.layout, coords[c])
                                          ) from error
                raise
            if not in_processes:
                self._check_thread_safety(x, coords, offsets, out)
        return out

    def _check_thread_safety(self, x, coords, offsets, out) -> None:
        """Re-evaluate the first perturbations serially: a loss that writes into buffers the
        threads share gives other numbers in threads than alone."""
        k = min(_THREAD_CHECKS, len(coords))
        if not k:
            return
        private = np.array(x, copy=True)
        again = evaluate_coords(self.f, loss_args(self.layout, private), private, coords[:k],
                                offsets[:k], self.layout.name)
        differs = again != out[:k]
        if differs.any():
            i = int(np.flatnonzero(differs)[0])
            raise ThreadUnsafeLossError(
                f"the loss is not thread-safe: at {self.layout.name(int(coords[i]))} "
                f"{offsets[i]:+.3g} it returned {out[i]!r} in a thread and {again[i]!r} alone "
                "(does it write into arrays shared between calls?); use backend='loky' or "
                "n_jobs=1")
