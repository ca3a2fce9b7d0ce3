"""Numba options for every fastfd kernel, in one place.

Every ``@njit`` in :mod:`fastfd.kernels` takes its options from here: ``@njit(**JIT_OPTIONS)`` for
serial kernels, ``@njit(**PARALLEL_OPTIONS)`` for the ``prange`` kernels.

Why these values:

- ``cache=True``: compiled kernels are stored next to the sources, so only the first run after an
  install or a numba upgrade pays the compilation (seconds), not every process.
- ``fastmath`` is a *set* of LLVM flags, never ``True``: ``True`` adds ``nnan`` and ``ninf``, which
  let LLVM assume NaN and Inf never occur; a NaN loss could then turn into garbage instead of NaN,
  and the ``-inf`` sentinel of the hinge kernels would break. The flags kept only relax rounding:
  ``contract`` (fused multiply-add), ``arcp`` (``x / y`` as ``x * (1 / y)``), ``afn`` (faster libm
  calls), ``nsz`` (the sign of zero may change) and ``reassoc``: without it LLVM will not
  vectorize a floating-point sum, and the O(N) sums of the perturbed-loss kernels are the hot
  loops of the package (2-3x slower without it). The tests bound the re-association error at
  1e-12 relative.
- ``parallel=True`` only for the kernels whose ``prange`` pays (many perturbed coordinates).

Environment overrides, read once at import (values ``0/false/no/off`` or ``1/true/yes/on``):

- ``FASTFD_NUMBA_CACHE=0``: do not write or read the on-disk cache (read-only installs, debugging).
- ``FASTFD_NUMBA_FASTMATH=0``: strict IEEE arithmetic (to tell a fastmath effect from a bug).
- ``FASTFD_NUMBA_PARALLEL=0``: the ``prange`` kernels run serially (when the caller already runs one
  process per core, so numba threads would oversubscribe them).

``NUMBA_DISABLE_JIT=1`` (numba's own switch) runs the kernels as plain Python, for coverage.
"""

from __future__ import annotations

import os

__all__ = ["FASTMATH_FLAGS", "JIT_OPTIONS", "PARALLEL_OPTIONS"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_flag(name: str, default: bool) -> bool:
    """The boolean value of environment variable ``name``, ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"environment variable {name} must be one of {', '.join(_FALSE)} (off) or "
        f"{', '.join(_TRUE)} (on); got {os.environ[name]!r}"
    )


#: LLVM fast-math flags that keep NaN/Inf semantics (no ``nnan``, no ``ninf``).
FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

_fastmath = set(FASTMATH_FLAGS) if _env_flag("FASTFD_NUMBA_FASTMATH", True) else False

#: Options for serial kernels: ``@njit(**JIT_OPTIONS)``.
JIT_OPTIONS = {"cache": _env_flag("FASTFD_NUMBA_CACHE", True), "fastmath": _fastmath}

#: Options for ``prange`` kernels: ``@njit(**PARALLEL_OPTIONS)``.
PARALLEL_OPTIONS = {**JIT_OPTIONS, "parallel": _env_flag("FASTFD_NUMBA_PARALLEL", True)}
