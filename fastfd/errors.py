"""Exceptions fastfd raises when the loss, not the caller's arguments, makes a check meaningless.

They are the contract between fastfd's layers (the command line maps them to exit codes by
type, never by message text). Each subclasses the builtin a caller would catch anyway, so
``except RuntimeError`` keeps working. Errors raised *inside* the user's loss are re-raised
unchanged (same type, same traceback) with a note naming the entry being evaluated.
"""

from __future__ import annotations

__all__ = [
    "FastFDError",
    "InternalError",
    "LongRunWarning",
    "LossModifiedInputError",
    "LossNotFiniteError",
    "NonDeterministicLossError",
    "NotComplexSafeError",
    "ThreadUnsafeLossError",
    "WorkerDiedError",
]


class FastFDError(Exception):
    """Base of fastfd's own errors about the loss or the way it is evaluated."""


class LossModifiedInputError(FastFDError, RuntimeError):
    """The loss wrote into the parameters it was given; the results would be meaningless."""


class NonDeterministicLossError(FastFDError, RuntimeError):
    """The loss returned different values at the same point (dropout on, an unseeded RNG)."""


class NotComplexSafeError(FastFDError, ValueError):
    """``method="complex"`` on a loss that does not extend analytically to complex params."""


class ThreadUnsafeLossError(FastFDError, RuntimeError):
    """The loss gives other values in threads than alone (shared scratch buffers)."""


class LossNotFiniteError(FastFDError, ValueError):
    """The loss is NaN or infinite at the params or at a perturbed point."""


class WorkerDiedError(FastFDError, RuntimeError):
    """A worker process evaluating the loss died (crash, ``os._exit``, out of memory)."""


class InternalError(FastFDError, RuntimeError):
    """A fastfd invariant failed: a bug in fastfd, never a problem of the caller's."""


class LongRunWarning(UserWarning):
    """A call estimated (from its first evaluation) to run for minutes or more."""
