"""Command line: ``fastfd demo`` (and more subcommands as they land).

Exit codes: 0 pass, 1 fail, 2 inconclusive, 3 usage or input error.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_USAGE = 3


def demo(n_baseline: int = 300, out=None) -> int:
    """Check a correct and a broken gradient of CIFAR-shaped linear classifiers; print timings.

    Returns the exit code (0 when the correct gradients pass and the broken ones fail).
    """
    from . import check_gradient
    from ._baseline import centered_on_coords, cifar_like_problem
    from .kernels import reference
    from .models import LinearSoftmax, LinearSVM

    out = out or sys.stdout
    W, X, y = cifar_like_problem()
    reg = 2.5e4
    n, d = X.shape
    print(f"fastfd demo: CIFAR-10-shaped linear classifiers, N={n} examples, D={d} "
          f"(3072 pixel-like features + bias), C={W.shape[1]} classes: {W.size:,} weights, "
          f"reg={reg:g}\n", file=out)
    ok = True
    for title, Model, loss_and_grad, loss in (
        ("softmax", LinearSoftmax, reference.softmax_loss_and_grad, reference.softmax_loss),
        ("SVM", LinearSVM, reference.svm_loss_and_grad, reference.svm_loss),
    ):
        model = Model(X, y, reg)
        model(W)  # compile (or load cached) kernels outside the timings

        def your_grad(w, loss_and_grad=loss_and_grad):
            return loss_and_grad(w, X, y, reg)[1]

        def broken_grad(w, your_grad=your_grad):
            return your_grad(w) - reg * w  # regularization gradient reg*W instead of 2*reg*W

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
              f"{n_baseline}), about {loop_s:.0f} s for all: {loop_s / fastfd_s:,.0f}x faster\n",
              file=out)
        ok &= good.verdict == "pass" and bad.verdict == "fail"
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastfd", description="Fast numerical gradients and honest gradient checks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="check correct and broken gradients of CIFAR-shaped "
                                         "linear classifiers, with timings")
    p_demo.add_argument("--baseline-coords", type=int, default=300,
                        help="coordinates on which to time the textbook loop (default 300)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo(args.baseline_coords)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
