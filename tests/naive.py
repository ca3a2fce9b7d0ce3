"""Slow, obvious versions of what fastfd computes fast: the oracles of the test suite."""

from __future__ import annotations

import numpy as np


def naive_gradient(f, x: np.ndarray, h: float = 1e-5, method: str = "central") -> np.ndarray:
    """The textbook loop over every coordinate of one array (restores each entry)."""
    x = x.copy()
    grad = np.zeros(x.shape)
    fx = f(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        fplus = f(x)
        x[ix] = old - h
        fminus = f(x)
        x[ix] = old
        if method == "central":
            grad[ix] = (fplus - fminus) / (2 * h)
        elif method == "forward":
            grad[ix] = (fplus - fx) / h
        else:
            grad[ix] = (fx - fminus) / h
    return grad


# --- linear classifiers, one example at a time (cs231n convention) -----------------------

def softmax_loss(W, X, y, reg):
    loss = 0.0
    for i in range(X.shape[0]):
        scores = X[i] @ W
        scores = scores - scores.max()
        loss += -scores[y[i]] + np.log(np.sum(np.exp(scores)))
    return loss / X.shape[0] + reg * np.sum(W * W)


def softmax_grad(W, X, y, reg):
    dW = np.zeros_like(W)
    for i in range(X.shape[0]):
        scores = X[i] @ W
        p = np.exp(scores - scores.max())
        p /= p.sum()
        p[y[i]] -= 1
        dW += np.outer(X[i], p)
    return dW / X.shape[0] + 2 * reg * W


def svm_loss(W, X, y, reg, delta=1.0):
    loss = 0.0
    for i in range(X.shape[0]):
        scores = X[i] @ W
        for j in range(W.shape[1]):
            if j != y[i]:
                loss += max(0.0, scores[j] - scores[y[i]] + delta)
    return loss / X.shape[0] + reg * np.sum(W * W)


def svm_grad(W, X, y, reg, delta=1.0):
    dW = np.zeros_like(W)
    for i in range(X.shape[0]):
        scores = X[i] @ W
        for j in range(W.shape[1]):
            if j != y[i] and scores[j] - scores[y[i]] + delta > 0:
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    return dW / X.shape[0] + 2 * reg * W


def linear_problem(n=20, d=6, c=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, c, size=n)
    W = (0.1 * rng.standard_normal((d, c))).astype(dtype)
    return W, X, y


# --- a two-layer ReLU net with dict params -------------------------------------------------

def relu_net_params(d=5, h=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W1": 0.5 * rng.standard_normal((d, h)),
        "b1": 0.1 * rng.standard_normal(h),
        "W2": 0.5 * rng.standard_normal((h, c)),
        "b2": 0.1 * rng.standard_normal(c),
    }


def relu_net_loss_and_grad(p, X, y, reg=0.05, bug=None):
    """Softmax loss of a 2-layer ReLU net and its backprop; ``bug`` plants a classic mistake."""
    n = X.shape[0]
    hidden_in = X @ p["W1"] + p["b1"]
    hidden = np.maximum(0, hidden_in)
    scores = hidden @ p["W2"] + p["b2"]
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(n), y])) + reg * (
        np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    dscores = probs.copy()
    dscores[np.arange(n), y] -= 1
    dscores /= n if bug != "missing_1_over_n" else 1
    grads = {"W2": hidden.T @ dscores + 2 * reg * p["W2"], "b2": dscores.sum(axis=0)}
    dhidden = dscores @ p["W2"].T
    if bug != "relu_mask":
        dhidden[hidden_in <= 0] = 0
    grads["W1"] = X.T @ dhidden + (reg if bug == "reg_factor" else 2 * reg) * p["W1"]
    grads["b1"] = dhidden.sum(axis=0)
    if bug == "sign_flip":
        grads["b1"] = -grads["b1"]
    return loss, grads


# --- the 2-3-1 sigmoid network of "Neural Networks Demystified" ---------------------------

def sleep_study_data():
    X = np.array([[3.0, 5.0], [5.0, 1.0], [10.0, 2.0]])
    y = np.array([[75.0], [82.0], [93.0]])
    return X / X.max(axis=0), y / 100.0


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_net_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 3)), rng.standard_normal((3, 1))]


def sigmoid_net_cost(p, X, y):
    yhat = sigmoid(sigmoid(X @ p[0]) @ p[1])
    return 0.5 * np.sum((y - yhat) ** 2)


def sigmoid_net_grad(p, X, y, bug=None):
    z2 = X @ p[0]
    a2 = sigmoid(z2)
    z3 = a2 @ p[1]
    yhat = sigmoid(z3)
    delta3 = -(y - yhat) * yhat * (1 - yhat)
    dW2 = a2.T @ delta3
    delta2 = (delta3 @ p[1].T) * a2 * (1 - a2)
    if bug == "missing_derivative":
        delta2 = delta3 @ p[1].T
    return [X.T @ delta2, dW2]
