"""The pure-numpy baseline: textbook numerical-gradient loops and the CIFAR-shaped problem.

The loops live in the package (``fastfd._baseline``) so that ``fastfd demo`` and
``fastfd bench`` time exactly the same code; this module is the benchmarks' name for them.
"""

from fastfd._baseline import (
    centered_on_coords,
    cifar_like_problem,
    eval_numerical_gradient,
    eval_numerical_gradient_centered,
    grad_check_sparse,
)

__all__ = [
    "centered_on_coords",
    "cifar_like_problem",
    "eval_numerical_gradient",
    "eval_numerical_gradient_centered",
    "grad_check_sparse",
]
