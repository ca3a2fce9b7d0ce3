"""The user's conventions for calling a loss: extra arguments, ``(loss, grad)`` functions.

``f(params, *args, **kwargs)`` as scipy.optimize calls it, and ``grad=True`` for a function
returning ``(loss, grad)`` (scipy's ``jac=True``, cs231n's ``svm_loss_vectorized``). The wrappers
are small picklable objects, so worker processes receive them like any loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


class WithArgs:
    """``f(params, *args, **kwargs)`` as a one-argument loss (its ``[0]`` when ``part`` is 0:
    the loss of a ``(loss, grad)`` function; ``[1]``, its gradient)."""

    def __init__(self, f: Callable, args: tuple, kwargs: dict, part: int | None = None):
        self.f, self.args, self.kwargs, self.part = f, args, kwargs, part

    def __call__(self, params):
        out = self.f(params, *self.args, **self.kwargs)
        if self.part is None:
            return out
        return pair(out)[self.part]

    def __repr__(self) -> str:
        return f"WithArgs({getattr(self.f, '__name__', self.f)!r}, part={self.part})"


def pair(out):
    """``(loss, grad)`` from what a ``grad=True`` function returned, or a clear error."""
    if isinstance(out, tuple) and len(out) == 2:
        return out
    kind = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
    raise TypeError(f"grad=True means the function returns (loss, grad), like scipy's "
                    f"jac=True; it returned {kind}")


def extra_args(args, kwargs) -> tuple[tuple, dict]:
    """``args`` and ``kwargs`` validated: a tuple (a single non-tuple value is refused, as
    scipy does not guess) and a mapping with string keys."""
    if args is None:
        args = ()
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of extra positional arguments, e.g. "
                        f"args=(X, y, reg); got {type(args).__name__} (write args=(value,) "
                        "for a single one)")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"kwargs must be a dict of keyword arguments; got {kwargs!r:.60}")
    return tuple(args), dict(kwargs)


def loss_and_grad(f: Callable, grad, args=(), kwargs=None):
    """The one-argument loss and the analytic gradient (callable or value) for ``f`` and ``grad``.

    ``grad=True``: ``f`` returns ``(loss, grad)``; the loss part is used for perturbations and
    the gradient part once, at the params. A callable ``grad`` receives the same extra
    arguments as ``f``. Without extra arguments (and ``grad`` not True) ``f`` itself is
    returned, so models keep their exact evaluators and ``@njit`` losses their compiled driver.
    """
    args, kwargs = extra_args(args, kwargs)
    bound = bool(args or kwargs)
    if grad is True:
        if not callable(f):
            raise TypeError(f"f must be a callable returning (loss, grad); got "
                            f"{type(f).__name__}")
        return WithArgs(f, args, kwargs, 0), WithArgs(f, args, kwargs, 1)
    if isinstance(grad, (bool, np.bool_)):
        raise TypeError("grad must be a callable, the gradient itself, or True for a function "
                        "returning (loss, grad); got False")
    loss = WithArgs(f, args, kwargs) if bound and callable(f) else f
    if bound and callable(grad):
        grad = WithArgs(grad, args, kwargs)
    return loss, grad


def loss_only(f: Callable, args=(), kwargs=None) -> Callable:
    """The one-argument loss for functions without a gradient (``numerical_gradient``)."""
    args, kwargs = extra_args(args, kwargs)
    return WithArgs(f, args, kwargs) if (args or kwargs) and callable(f) else f
