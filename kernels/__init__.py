"""Numba kernels for linear classifiers (softmax, multiclass SVM); installed as ``fastfd.kernels``.

- :mod:`~fastfd.kernels.softmax`, :mod:`~fastfd.kernels.svm`: validated loss, gradient and exact
  perturbed-loss functions backed by ``@njit`` kernels.
- :mod:`~fastfd.kernels.reference`: plain-numpy versions, the test oracle and benchmark baseline.
- :func:`prepare_data` / :class:`LinearData`: the per-dataset arrays the perturbed losses reuse.
"""

from . import reference, softmax, svm
from ._data import LinearData, check_inputs, prepare_data

__all__ = ["LinearData", "check_inputs", "prepare_data", "reference", "softmax", "svm"]
