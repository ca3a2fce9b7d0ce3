"""fastfd: fast, parallel numerical gradients and honest gradient checks.

Public API
----------
numerical_gradient, directional_derivative, check_gradient
    The finite-difference engine and the gradient check.
GradientCheck
    The immutable result of a check.
testing.assert_gradient_close
    For pytest users.
models.LinearSoftmax, models.LinearSVM
    Linear classifiers with exact incremental perturbed losses.
"""

from . import models, testing
from .engine import check_gradient, directional_derivative, numerical_gradient
from .report import GradientCheck

__version__ = "0.1.0"

__all__ = [
    "GradientCheck",
    "check_gradient",
    "directional_derivative",
    "numerical_gradient",
    "models",
    "testing",
]
