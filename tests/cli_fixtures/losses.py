"""Losses and gradients for ``fastfd check`` / ``fastfd sweep`` tests, one pair per case.

Array params are a 1-D float vector ``x`` (multiples of 1/16 in the tests); dict params are
``{"W": (2, 3), "b": (3,)}``.
"""

import numpy as np


def _coef(x):
    return np.arange(1.0, x.size + 1.0)


def quad_loss(x):
    """A smooth loss of a vector: sum of coef * x**2 plus a cubic term."""
    return float(np.sum(_coef(x) * x**2) + np.sum(x**3))


def quad_grad(x):
    return 2 * _coef(x) * x + 3 * x**2


def wrong_grad(x):
    """The gradient with a bug in the last entry (a forgotten factor 2)."""
    g = quad_grad(x)
    g[-1] = _coef(x)[-1] * x[-1] + 3 * x[-1] ** 2
    return g


def noise_loss(x):
    """A huge constant plus a change near its rounding: the gradient is noise-limited."""
    return 1e8 + 1e-6 * float(np.sum(x))


def noise_grad(x):
    return np.full_like(x, 1e-6)


def constant_loss(x):
    """Does not depend on its argument at all."""
    return 3.0


def vector_loss(x):
    """Not a scalar."""
    return x**2


def short_grad(x):
    """A gradient with one entry too few."""
    return quad_grad(x)[:-1]


def raising_loss(x):
    """Fails when one entry leaves the starting point, whose entries are multiples of 1/16: a
    loss that breaks at the first perturbed coordinate."""
    if np.count_nonzero(x * 16 != np.round(x * 16)) == 1:
        raise ZeroDivisionError("division by zero in raising_loss")
    return quad_loss(x)


def dict_loss(p):
    return float(np.sum(np.tanh(p["W"] @ p["b"])) + np.sum(p["b"] ** 2))


def dict_grad(p):
    s = 1.0 - np.tanh(p["W"] @ p["b"]) ** 2
    return {"W": np.outer(s, p["b"]), "b": p["W"].T @ s + 2 * p["b"]}


NOT_CALLABLE = 42


class Model:
    """Loss and gradient as methods, reached with dotted names (``model.loss``)."""

    def loss(self, x):
        return quad_loss(x)

    def grad(self, x):
        return quad_grad(x)


model = Model()


def named_loss(p):
    """The vector loss of a dict ``{"x": vector}`` (a one-array file needs ``--dict``)."""
    return quad_loss(p["x"])


def named_grad(p):
    return {"x": quad_grad(p["x"])}


def exiting_loss(x):
    """Calls sys.exit(0), as a script's main function might: never a silent exit 0."""
    import sys

    sys.exit(0)


def svm_loss_vectorized(W, X, y, reg):
    """cs231n's signature: ``(W, X, y, reg) -> (loss, dW)``, a multiclass hinge loss."""
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W
    margins = np.maximum(0.0, scores - scores[rows, y][:, None] + 1.0)
    margins[rows, y] = 0.0
    loss = margins.sum() / n + reg * np.sum(W * W)
    active = (margins > 0).astype(float)
    active[rows, y] = -active.sum(axis=1)
    return float(loss), X.T @ active / n + 2 * reg * W


def shifted_loss(x, A, shift):
    """``0.5 x.A.x + shift * sum(x)`` with its matrix and shift from ``--data``."""
    return float(0.5 * x @ A @ x + shift * np.sum(x))


def shifted_grad(x, A, shift):
    return 0.5 * (A + A.T) @ x + shift
