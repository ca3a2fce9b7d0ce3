"""Helpers for using fastfd inside a test suite."""

from __future__ import annotations

from collections.abc import Callable

from .engine import check_gradient
from .report import GradientCheck


def assert_gradient_close(f: Callable, grad, params, **check_kwargs) -> GradientCheck:
    """Assert that ``grad`` matches finite differences of ``f`` at ``params``.

    Runs :func:`fastfd.check_gradient` and raises ``AssertionError`` with the full report
    unless the verdict is ``"pass"`` (an inconclusive check also raises: it proves nothing).

    Parameters
    ----------
    f, grad, params
        As in :func:`fastfd.check_gradient` (``grad=True`` for ``f`` returning
        ``(loss, grad)``).
    **check_kwargs
        Any keyword of :func:`fastfd.check_gradient` (``sample``, ``rtol``, ``seed`` ...).

    Returns
    -------
    GradientCheck
        The passing check, for further assertions.

    Examples
    --------
    >>> import numpy as np
    >>> from fastfd.testing import assert_gradient_close
    >>> _ = assert_gradient_close(lambda x: np.sum(np.sin(x)), np.cos, np.linspace(0, 1, 5))
    """
    __tracebackhide__ = True  # pytest shows the report, not this frame
    result = check_gradient(f, grad, params, **check_kwargs)
    if not result.passed:
        raise AssertionError(f"gradient check did not pass\n{result}")
    return result
