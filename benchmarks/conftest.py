"""Shared fixtures and the ratio table printed after a benchmark run.

Each benchmark records its best time under a key; ``TARGETS`` says which ratios of those times
(measured in the same run) the issues require. Run:

    python -m pytest benchmarks --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from fastfd._table import duration, table, target

from .baseline import cifar_like_problem

TIMES: dict[str, float] = {}
# (label, value, bound or None, "max"/"min", format): figures that are not times
FIGURES: list[tuple[str, float, float | None, str, str]] = []
SCALE: dict[str, float] = {}  # multiply a key's time by this before comparing (subset loops)

# (label, numerator key, denominator key, bound, "max" = ratio must be <= bound, "min" >=)
TARGETS = [
    ("engine overhead per evaluation vs textbook loop, 1 ms-class numpy loss",
     "engine_per_eval", "loop_per_eval", 1.05, "max"),
    ("numba softmax loss+grad / numpy reference",
     "numba_softmax_lg", "numpy_softmax_lg", 1.0, "max"),
    ("numba SVM loss+grad / numpy reference", "numba_svm_lg", "numpy_svm_lg", 1.0, "max"),
    ("full numerical gradient via LinearSoftmax / one numpy analytic gradient",
     "model_softmax_full", "numpy_softmax_lg", 25.0, "max"),
    ("full numerical gradient via LinearSVM / one numpy analytic gradient",
     "model_svm_full", "numpy_svm_lg", 25.0, "max"),
    ("textbook central loop (scaled to all coords) / fastfd full, softmax",
     "loop_softmax_full", "model_softmax_full", 1000.0, "min"),
    ("textbook central loop (scaled to all coords) / fastfd full, SVM",
     "loop_svm_full", "model_svm_full", 1000.0, "min"),
]
TARGETS += [
    ("2-process loky / serial engine with 1 BLAS thread, ~1 ms softmax loss, k=2000 (speedup)",
     "softmax_k2000_serial", "softmax_k2000_loky2", 1.8, "min"),
    ("textbook loop with default BLAS threads / 2-process loky, k=2000 (speedup)",
     "softmax_k2000_loop", "softmax_k2000_loky2", 1.0, "min"),
    ("textbook loop, 1 BLAS thread (scaled) / 2-process loky full gradient, ReLU net 154,160",
     "relu_full_loop_1thread", "relu_full_loky2", 1.8, "min"),
    ("textbook loop, default BLAS threads (scaled) / 2-process loky full gradient, ReLU net",
     "relu_full_loop_default", "relu_full_loky2", 1.0, "min"),
    ("textbook loop / batched full gradient, logistic regression N=20 D=64 C=10",
     "loop_logreg_full", "batched_logreg_full", 2.5, "min"),
]
TARGETS += [
    ("numba evaluator 1 thread / compiled loop, ~10 us njit loss (overhead <= ~1 us/eval)",
     "numba_1thread_per_eval", "numba_direct_per_eval", 1.10, "max"),
    ("numba evaluator speedup, 1 thread / 2 threads", "numba_1thread_per_eval",
     "numba_2thread_per_eval", 1.8, "min"),
    ("serial evaluator / numba evaluator 1 thread, same njit loss",
     "serial_numba_loss_per_eval", "numba_1thread_per_eval", 1.0, "min"),
]
ABSOLUTE = [
    ("sampled check k=1000 via LinearSoftmax, directions=0 (s)", "model_softmax_k1000_nodir",
     0.050),
    ("sampled check k=1000 via LinearSVM, directions=0 (s)", "model_svm_k1000_nodir", 0.050),
    ("sampled check k=1000 via LinearSoftmax, 3 random directions (default) (s)",
     "model_softmax_k1000", 0.200),
    ("sampled check k=1000 via LinearSVM, 3 random directions (default) (s)",
     "model_svm_k1000", 0.200),
]


def record(key: str, benchmark, scale: float = 1.0) -> None:
    """Remember the best time of ``benchmark`` (times ``scale``) under ``key``."""
    TIMES[key] = benchmark.stats.stats.min * scale


@pytest.fixture(scope="session")
def cifar():
    """CIFAR-10-shaped problem: N=500, D=3073 (pixel-like, mean subtracted, bias), C=10."""
    W, X, y = cifar_like_problem()
    return W, X, y, 2.5e4


def pytest_terminal_summary(terminalreporter):
    if not TIMES:
        return
    write = terminalreporter.write_line
    rows = []
    for label, num, den, bound, kind in TARGETS:
        if num in TIMES and den in TIMES:
            value = TIMES[num] / TIMES[den]
            ok, goal = target(value, bound, kind)
            rows.append(["OK" if ok else "MISS", f"{value:,.3g}", goal, label])
    for label, key, bound in ABSOLUTE:
        if key in TIMES:
            ok, goal = target(TIMES[key], bound, "max")
            rows.append(["OK" if ok else "MISS", f"{TIMES[key]:.4f}", goal, label])
    write("")
    write("fastfd ratio table (times measured in this run)")
    for line in table(rows, header=["", "measured", "target", ""], align="<>><"):
        write(line)
    for line in table([[key, duration(value)] for key, value in sorted(TIMES.items())],
                      indent="    "):
        write(line)
    if FIGURES:
        rows = []
        for label, value, bound, kind, fmt in FIGURES:
            ok, goal = target(value, bound, kind) if bound is not None else (None, "")
            rows.append(["" if ok is None else "OK" if ok else "MISS", fmt.format(value), goal,
                         label])
        write("")
        write("fastfd figures that are not times (evaluation counts, errors; this run)")
        for line in table(rows, header=["", "measured", "target", ""], align="<>><"):
            write(line)


def rng():
    return np.random.default_rng(0)
