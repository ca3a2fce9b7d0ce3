"""fastfd: fast, parallel numerical gradients and honest gradient checks.

Public API
----------
numerical_gradient, directional_derivative, check_gradient
    The finite-difference engine and the gradient check.
check_vjp, check_jvp
    Layer backward passes (vector-Jacobian products) and Jacobian-vector products.
numerical_jacobian, check_jacobian
    Jacobians of vector-valued functions, with sparsity patterns (column groups).
numerical_hessian, check_hessian, check_hvp
    Hessians and Hessian-vector products (with a rate-3 Taylor test).
step_sweep, taylor_test
    Diagnostics: error vs step (truncation and rounding regimes), Taylor remainder slopes.
GradientCheck, JacobianCheck
    The immutable results of the checks.
testing.assert_gradient_close
    For pytest users.
models.LinearSoftmax, models.LinearSVM
    Linear classifiers with exact incremental perturbed losses.
errors
    The exceptions fastfd raises about the loss (modified input, non-determinism, ...).
"""

from . import errors, models, testing
from .derivatives import (
    check_hessian,
    check_hvp,
    check_jacobian,
    check_jvp,
    check_vjp,
    numerical_hessian,
    numerical_jacobian,
)
from .diagnostics import Regime, StepSweep, TaylorTest, step_sweep, taylor_test
from .engine import check_gradient, directional_derivative, numerical_gradient
from .report import GradientCheck, JacobianCheck

__version__ = "0.1.0"

__all__ = [
    "GradientCheck",
    "JacobianCheck",
    "Regime",
    "StepSweep",
    "TaylorTest",
    "check_gradient",
    "check_hessian",
    "check_hvp",
    "check_jacobian",
    "check_jvp",
    "check_vjp",
    "directional_derivative",
    "numerical_gradient",
    "numerical_hessian",
    "numerical_jacobian",
    "step_sweep",
    "taylor_test",
    "errors",
    "models",
    "testing",
]
