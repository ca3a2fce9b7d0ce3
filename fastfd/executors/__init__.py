"""Evaluators: the ways fastfd computes a loss at perturbed parameter vectors.

Every evaluator implements the small protocol of :class:`Evaluator`; the engine never
branches on which one it holds. :func:`select_evaluator` picks one from the arguments.

A loss object can bring its own evaluator, as :mod:`fastfd.models` do: a method
``fastfd_evaluator()`` returning an :class:`Evaluator` (bound by the engine), and optionally a
``param_name`` attribute naming its single array in reports (``W[12, 3]`` instead of
``x[12, 3]``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._params import Layout
from ._base import Evaluator, SerialEvaluator, check_n_jobs
from ._batched import BatchedEvaluator
from ._dask import DaskEvaluator
from ._joblib import JoblibEvaluator
from ._numba import NumbaEvaluator
from ._numba import accepts as numba_accepts

__all__ = [
    "BatchedEvaluator",
    "DaskEvaluator",
    "Evaluator",
    "JoblibEvaluator",
    "NumbaEvaluator",
    "SerialEvaluator",
    "select_evaluator",
]

_NAMED = {
    "serial": SerialEvaluator,
    "joblib": JoblibEvaluator,
    "batched": BatchedEvaluator,
    "numba": NumbaEvaluator,
    "dask": DaskEvaluator,
}


def select_evaluator(f: Callable, layout: Layout, *, evaluator=None, n_jobs: int = 1,
                     backend: str | None = None, batched: bool = False) -> Evaluator:
    """The evaluator for ``f``: an explicit choice, else the model's own, else the compiled
    driver for an ``@njit`` loss of one flat float64 vector, else joblib when ``n_jobs != 1``
    or a ``backend`` is named, else serial.
    """
    check_n_jobs(n_jobs)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be None or a joblib backend name; got {backend!r}")
    if not isinstance(batched, (bool, np.bool_)):
        raise TypeError(f"batched must be True or False; got {batched!r}")
    if batched:
        if n_jobs != 1 or backend is not None:
            raise ValueError("batched=True evaluates stacks in this process; drop n_jobs/backend")
        if evaluator is not None and not isinstance(evaluator, BatchedEvaluator):
            raise ValueError("batched=True picks the BatchedEvaluator; pass batched=True or "
                             "evaluator=, not both")
        return (evaluator or BatchedEvaluator()).bind(f, layout)
    parallel = n_jobs != 1 or backend is not None
    if isinstance(evaluator, Evaluator):
        if parallel:
            raise ValueError("an Evaluator instance carries its own parallel settings; pass "
                             "n_jobs/backend to its constructor, not to this call")
        return evaluator.bind(f, layout)
    if isinstance(evaluator, str):
        if evaluator not in _NAMED:
            valid = ", ".join(repr(k) for k in _NAMED)
            raise ValueError(f"evaluator must be an Evaluator or one of {valid}; "
                             f"got {evaluator!r}")
        if evaluator == "joblib":
            return JoblibEvaluator(n_jobs=n_jobs, backend=backend or "loky").bind(f, layout)
        if backend is not None:
            raise ValueError(f"backend={backend!r} applies to the joblib evaluator, not to "
                             f"evaluator={evaluator!r}")
        if evaluator in ("numba", "dask"):
            return _NAMED[evaluator](n_jobs=n_jobs).bind(f, layout)
        if n_jobs != 1:
            raise ValueError(f"evaluator={evaluator!r} runs in this process; drop n_jobs")
        return _NAMED[evaluator]().bind(f, layout)
    if evaluator is not None:
        raise TypeError(f"evaluator must be an Evaluator instance or a name; got {evaluator!r}")
    own = getattr(f, "fastfd_evaluator", None)
    if callable(own):  # models: exact incremental evaluation, already parallel inside
        return own().bind(f, layout)
    if backend is None and numba_accepts(f, layout):
        return NumbaEvaluator(n_jobs=n_jobs).bind(f, layout)
    if backend == "dask":  # n_jobs sizes the chunks; the default 1 means the whole cluster
        return DaskEvaluator(n_jobs=-1 if n_jobs == 1 else n_jobs).bind(f, layout)
    if parallel:
        return JoblibEvaluator(n_jobs=n_jobs, backend=backend or "loky").bind(f, layout)
    return SerialEvaluator().bind(f, layout)
