"""``fastfd demo`` and ``fastfd bench``: fastfd against the textbook loop, timed here and now.

Both use the public API only (``check_gradient``, ``numerical_gradient``, the models) and the
textbook loops of ``fastfd._baseline`` (the benchmarks time the same code); their tables are
formatted by ``fastfd._table``, as the benchmarks' ratio table is.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time

import numpy as np

from .._table import duration, ratio, table
from .errors import CliError


class _CompileClock:
    """Wall time spent compiling numba functions (cache loads are not compilations)."""

    def __init__(self):
        self.seconds = 0.0
        self._depth = 0
        self._began = 0.0

    def on_start(self, event) -> None:
        if self._depth == 0:
            self._began = time.perf_counter()
        self._depth += 1

    def on_end(self, event) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._began


@contextlib.contextmanager
def numba_compilation():
    """A :class:`_CompileClock` running during the block (numba's event API, "numba:compile";
    nested compilations are counted once)."""
    clock = _CompileClock()
    try:
        from numba.core import event
    except ImportError:  # no numba event API: report nothing
        yield clock
        return

    class Listener(event.Listener):
        def on_start(self, ev):
            clock.on_start(ev)

        def on_end(self, ev):
            clock.on_end(ev)

    listener = Listener()
    event.register("numba:compile", listener)
    try:
        yield clock
    finally:
        event.unregister("numba:compile", listener)


def demo(n_baseline: int = 300, out=None) -> int:
    """Check a correct and a broken gradient of CIFAR-shaped linear classifiers; print timings.

    Returns the exit code (0 when the correct gradients pass and the broken ones fail).
    """
    from .. import check_gradient
    from .._baseline import centered_on_coords, cifar_like_problem
    from ..kernels import reference
    from ..models import LinearSoftmax, LinearSVM

    out = out or sys.stdout
    W, X, y = cifar_like_problem()
    if not 1 <= n_baseline <= W.size:
        raise CliError(f"--baseline-coords must lie in [1, {W.size}] (the demo's weights); "
                       f"got {n_baseline}")
    reg = 2.5e4
    n, d = X.shape
    print(f"fastfd demo: CIFAR-10-shaped linear classifiers, N={n} examples, D={d} "
          f"({d - 1} pixel-like features + bias), C={W.shape[1]} classes: {W.size:,} weights, "
          f"reg={reg:g}\n", file=out)
    ok = True
    for title, Model, loss_and_grad, loss in (
        ("softmax", LinearSoftmax, reference.softmax_loss_and_grad, reference.softmax_loss),
        ("SVM", LinearSVM, reference.svm_loss_and_grad, reference.svm_loss),
    ):
        model = Model(X, y, reg)
        with numba_compilation() as warm_up:
            model(W)  # compile (or load cached) kernels outside the timings

        def your_grad(w, loss_and_grad=loss_and_grad):
            return loss_and_grad(w, X, y, reg)[1]

        def broken_grad(w, your_grad=your_grad):
            return your_grad(w) - reg * w  # regularization gradient reg*W instead of 2*reg*W

        with numba_compilation() as compiled:
            began = time.perf_counter()
            good = check_gradient(model, your_grad, W, sample="all")
            fastfd_s = time.perf_counter() - began
        bad = check_gradient(model, broken_grad, W, sample="all")
        print(f"== {title}: your vectorized numpy gradient ==\n{good}\n", file=out)
        print(f"== {title}: the same with a bug (reg*W instead of 2*reg*W) ==\n{bad}\n", file=out)

        coords = np.random.default_rng(0).choice(W.size, n_baseline, replace=False)
        began = time.perf_counter()
        centered_on_coords(functools.partial(loss, X=X, y=y, reg=reg), W.copy(), coords)
        per_coord = (time.perf_counter() - began) / n_baseline
        loop_s = per_coord * W.size
        print(f"   timing: fastfd checked all {W.size:,} entries in {fastfd_s:.3f} s; the textbook "
              f"centered loop takes {per_coord * 1e3:.2f} ms per coordinate (measured on "
              f"{n_baseline}), about {loop_s:.0f} s for all: {loop_s / fastfd_s:,.0f}x faster",
              file=out)
        if compiled.seconds > 0:
            rest = fastfd_s - compiled.seconds
            without = (f", about {loop_s / rest:,.0f}x faster without it" if rest > 0.05 * fastfd_s
                       else "")
            print(f"   first run includes Numba compilation ({compiled.seconds:.1f} s of the "
                  f"{fastfd_s:.1f} s{without}); cached on later runs", file=out)
        if warm_up.seconds > 0:
            print(f"   (and {warm_up.seconds:.1f} s compiling the model's loss before the "
                  "timings; also cached)", file=out)
        print(file=out)
        ok &= good.verdict == "pass" and bad.verdict == "fail"
    return 0 if ok else 1


def _best_of_each(repeats: int, *calls) -> list[float]:
    """Best wall times of several calls, run in turn in every repeat so that a change of the
    machine's load (other processes) hits all of them alike."""
    best = [math.inf] * len(calls)
    for _ in range(max(1, repeats)):
        for k, call in enumerate(calls):
            began = time.perf_counter()
            call()
            best[k] = min(best[k], time.perf_counter() - began)
    return best


def _cores() -> str:
    total = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"{total} CPU cores" + (f" ({usable} usable)" if usable != total else "")


def bench(quick: bool = False, out=None, *, size=None, loop_coords=None, engine_coords=None,
          repeats=None) -> int:
    """Time fastfd against the textbook centered loop on this machine; print a ratio table.

    (a) CIFAR-shaped linear softmax and SVM: one numpy analytic gradient, fastfd's full
    numerical gradient via the model, and the textbook loop timed on ``loop_coords``
    coordinates and scaled to all. (b) A generic numpy loss (the softmax loss as a plain
    callable, one BLAS thread): fastfd's serial engine, ``check_gradient(sample=k)``, against
    the loop on as many coordinates as the check compared, as overhead per loss evaluation
    (every evaluation of this loss costs the same, whichever entry it moves). Every time is
    the best of ``repeats``; the calls compared take turns within each repeat, so changes of
    load hit them alike.

    ``size`` is ``(N, D, C)`` with ``D`` counting the bias column; the other arguments
    override the defaults of ``quick``. Returns 0.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    from .. import check_gradient, numerical_gradient
    from .._baseline import centered_on_coords, cifar_like_problem
    from ..kernels import reference
    from ..models import LinearSoftmax, LinearSVM

    out = out or sys.stdout
    began = time.perf_counter()
    n, d, c = size or (500, 769 if quick else 3073, 10)
    repeats = repeats or (5 if quick else 3)
    reg = 2.5e4
    W, X, y = cifar_like_problem(n=n, d=d - 1, c=c)
    loop_coords = min(W.size, loop_coords or (100 if quick else 200))
    engine_coords = min(W.size, engine_coords or (100 if quick else 200))
    blas = sorted({str(lib.get("num_threads")) for lib in threadpool_info()
                   if lib.get("user_api") == "blas"}) or ["?"]
    print(f"fastfd bench{' --quick' if quick else ''}: {_cores()}, numpy BLAS threads "
          f"{'/'.join(blas)}; every time measured now, in this run, best of {repeats}", file=out)

    kinds = {
        "softmax": (LinearSoftmax, reference.softmax_loss_and_grad, reference.softmax_loss),
        "SVM": (LinearSVM, reference.svm_loss_and_grad, reference.svm_loss),
    }
    warm = time.perf_counter()
    models = {}
    for name, (Model, _, _) in kinds.items():
        models[name] = Model(X, y, reg)
        numerical_gradient(models[name], W)  # compile or load the cached kernels, untimed
    print(f"numba kernels compiled or loaded from cache in {time.perf_counter() - warm:.2f} s "
          "(not in the timings)\n", file=out)

    rows: dict[str, list[str]] = {}
    coords = np.random.default_rng(0).choice(W.size, loop_coords, replace=False)
    for name, (_, loss_and_grad, loss) in kinds.items():
        plain = functools.partial(loss, X=X, y=y, reg=reg)
        analytic_s, model_s, loop_s = _best_of_each(
            repeats,
            functools.partial(loss_and_grad, W, X, y, reg),
            functools.partial(numerical_gradient, models[name], W),
            functools.partial(centered_on_coords, plain, W.copy(), coords))
        numeric, analytic = numerical_gradient(models[name], W), loss_and_grad(W, X, y, reg)[1]
        agreement = np.linalg.norm(numeric - analytic) / (
            np.linalg.norm(numeric) + np.linalg.norm(analytic))
        per_coord = loop_s / loop_coords
        for label, value in (
            ("numpy analytic loss+grad (one call)", duration(analytic_s)),
            ("fastfd full numerical gradient (model)", duration(model_s)),
            ("textbook centered loop, per coordinate", duration(per_coord)),
            (f"textbook centered loop, all {W.size:,} (*)", duration(per_coord * W.size)),
            ("speedup per coordinate (loop / fastfd)", ratio(per_coord * W.size / model_s)),
            ("fastfd full gradient / one analytic grad", f"{model_s / analytic_s:,.1f}x"),
            ("fastfd vs analytic (norm rel error)", f"{agreement:.1e}"),
        ):
            rows.setdefault(label, []).append(value)
    print(f"(a) CIFAR-shaped linear classifiers: N={n}, D={d} (with bias), C={c}: "
          f"{W.size:,} weights, reg={reg:g}", file=out)
    for line in table([[label, *values] for label, values in rows.items()],
                      header=["", "softmax", "SVM"]):
        print(line, file=out)
    print(f"  (*) the loop timed on {loop_coords:,} random coordinates and scaled to all "
          f"{W.size:,}\n", file=out)

    loss = functools.partial(reference.softmax_loss, X=X, y=y, reg=reg)
    grad = reference.softmax_grad(W, X, y, reg)
    sample = engine_coords if engine_coords < W.size else "all"
    results = []
    with threadpool_limits(1):
        # an untimed first check says how many entries check_gradient(sample=k) compares; the
        # loop then times as many coordinates
        n_checked = check_gradient(loss, grad, W, sample=sample, seed=0).n_checked
        same = np.random.default_rng(1).choice(W.size, n_checked, replace=False)
        loop_s, engine_s = _best_of_each(
            repeats,
            lambda: centered_on_coords(loss, W.copy(), same),
            lambda: results.append(check_gradient(loss, grad, W, sample=sample, seed=0)))
    result = results[-1]
    loop_evals = 2 * len(same)
    loop_per, engine_per = loop_s / loop_evals, engine_s / result.n_evals
    print("(b) generic numpy loss (the softmax loss above as a plain callable, 1 BLAS thread):\n"
          f"    fastfd's serial engine, check_gradient(sample={sample!r}) -> {result.verdict} "
          f"on {result.n_checked:,} entries,\n    vs the textbook loop on as many coordinates",
          file=out)
    for line in table([["textbook loop", duration(loop_s), loop_evals, duration(loop_per)],
                       ["fastfd engine", duration(engine_s), result.n_evals,
                        duration(engine_per)]],
                      header=["", "time", "evals", "per eval"]):
        print(line, file=out)
    print(f"  overhead per evaluation: {100 * (engine_per / loop_per - 1):+.1f}% "
          "(includes flattening, planning, the comparison and the report)\n", file=out)
    print(f"bench wall time {time.perf_counter() - began:.1f} s", file=out)
    return 0
