"""fastfd: fast, parallel numerical gradients and honest gradient checks.

Public API
----------
numerical_gradient, directional_derivative, check_gradient
    The finite-difference engine and the gradient check.
step_sweep, taylor_test
    Diagnostics: error vs step (truncation and rounding regimes), Taylor remainder slopes.
GradientCheck
    The immutable result of a check.
testing.assert_gradient_close
    For pytest users.
models.LinearSoftmax, models.LinearSVM
    Linear classifiers with exact incremental perturbed losses.
errors
    The exceptions fastfd raises about the loss (modified input, non-determinism, ...).
"""

from . import errors, models, testing
from .diagnostics import Regime, StepSweep, TaylorTest, step_sweep, taylor_test
from .engine import check_gradient, directional_derivative, numerical_gradient
from .report import GradientCheck

__version__ = "0.1.0"

__all__ = [
    "GradientCheck",
    "Regime",
    "StepSweep",
    "TaylorTest",
    "check_gradient",
    "directional_derivative",
    "numerical_gradient",
    "step_sweep",
    "taylor_test",
    "errors",
    "models",
    "testing",
]
