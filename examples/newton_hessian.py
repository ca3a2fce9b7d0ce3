"""Newton's method for L2-regularized logistic regression, its hand-written Hessian checked first.

The loss ``f(w) = mean(log(1 + exp(z)) - y z) + lam / 2 |w|**2`` with ``z = X w`` (labels 0/1,
a bias column in ``X``) has gradient ``X'(p - y) / N + lam w`` and Hessian
``X' diag(p (1 - p)) X / N + lam I`` with ``p = sigmoid(z)``; its Hessian-vector product is
``X'(p (1 - p) * (X v)) / N + lam v``.

1. ``fastfd.check_hessian(f, hess, w, grad=grad)`` checks every entry of the Hessian against
   differences of the analytic gradient (one difference per column, so the entries are good
   to ~1e-10), and ``fastfd.check_hvp(f, hvp, w, grad=grad)`` checks ``H v`` along random
   directions and runs a Taylor test: ``|f(w + e v) - f(w) - e g.v - e**2 v'Hv / 2|`` falls
   like ``e**3`` when ``v'Hv`` is right.
2. Two wrong Hessians: the regularization forgotten (``+ lam I`` missing: the diagonal
   entries fail by name, the off-diagonal ones pass) and the weight ``p (1 - p)`` replaced by
   ``p`` (a missing factor: every entry fails). Their HVPs fail entry by entry too, and the
   Taylor remainder falls like ``e**2`` (fitted slope ~2 instead of ~3).
3. A few Newton steps ``w -= H^-1 g`` with the checked Hessian: quadratic convergence.

Run::

    python examples/newton_hessian.py
    python examples/newton_hessian.py --quick    # the same (already fast)
"""

from __future__ import annotations

import argparse

import numpy as np

import fastfd

LAM = 0.1


def make_problem(n: int = 200, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.normal(size=(n, d)), np.ones((n, 1))])  # the last weight is the bias
    w_true = rng.normal(size=d + 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ w_true))).astype(float)
    return X, y


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class Logistic:
    def __init__(self, X, y, lam=LAM):
        self.X, self.y, self.lam, self.n = X, y, lam, len(y)

    def loss(self, w):
        z = self.X @ w
        return float(np.mean(np.logaddexp(0, z) - self.y * z) + 0.5 * self.lam * w @ w)

    def grad(self, w):
        p = sigmoid(self.X @ w)
        return self.X.T @ (p - self.y) / self.n + self.lam * w

    def hess(self, w, *, reg=True, weight="p(1-p)"):
        p = sigmoid(self.X @ w)
        s = p * (1 - p) if weight == "p(1-p)" else p
        H = (self.X.T * s) @ self.X / self.n
        return H + self.lam * np.eye(len(w)) if reg else H

    def hvp(self, w, v, *, reg=True, weight="p(1-p)"):
        p = sigmoid(self.X @ w)
        s = p * (1 - p) if weight == "p(1-p)" else p
        Hv = self.X.T @ (s * (self.X @ v)) / self.n
        return Hv + self.lam * v if reg else Hv


def line(label, report) -> str:
    taylor = report.taylor
    slope = ("" if taylor is None or taylor.fitted_slope is None else
             f"  Taylor {taylor.verdict.upper()} slope {taylor.fitted_slope:.2f}")
    failed = report.failed
    names = ", ".join(failed[:3]) + (f", ... ({len(failed) - 3} more)" if len(failed) > 3
                                     else "")
    return (f"  {label:<42} {report.verdict.upper():<5} {report.n_checked:>3} entries, "
            f"{report.n_evals:>3} evals{slope}" + (f"\n      failing: {names}" if failed else ""))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted; the example is small")
    parser.parse_args(argv)
    X, y = make_problem()
    model = Logistic(X, y)
    w = np.random.default_rng(1).normal(size=X.shape[1])
    d = len(w)
    print(f"L2 logistic regression, N={len(y)}, {d} weights (bias included), lam={LAM}\n")
    out: dict = {}

    print("1. The hand-written Hessian and HVP, and two wrong ones")
    hessians = {
        "right": model.hess,
        "no regularization": lambda v: model.hess(v, reg=False),
        "weight p instead of p(1-p)": lambda v: model.hess(v, weight="p"),
    }
    hvps = {
        "right": model.hvp,
        "no regularization": lambda v, t: model.hvp(v, t, reg=False),
        "weight p instead of p(1-p)": lambda v, t: model.hvp(v, t, weight="p"),
    }
    out["hessian"], out["hvp"] = {}, {}
    for label, hess in hessians.items():
        report = fastfd.check_hessian(model.loss, hess, w, grad=model.grad)
        out["hessian"][label] = report
        print(line(f"check_hessian, {label}", report))
    for label, hvp in hvps.items():
        report = fastfd.check_hvp(model.loss, hvp, w, grad=model.grad)
        out["hvp"][label] = report
        print(line(f"check_hvp, {label}", report))
    off_diagonal = [f"H[x[{i}], x[{j}]]" for i in range(d) for j in range(d) if i != j]
    print(f"\n   Without lam I the {d} diagonal entries fail and the {len(off_diagonal)} "
          "off-diagonal ones pass;")
    right_taylor = out["hvp"]["right"].taylor
    wrong_taylor = out["hvp"]["no regularization"].taylor
    print(f"   the Taylor remainder falls like e**{right_taylor.fitted_slope:.2f} with the "
          f"right v'Hv and like e**{wrong_taylor.fitted_slope:.2f} without lam:")
    print(f"     right: {right_taylor.reason}")
    print(f"     wrong: {wrong_taylor.reason}")

    H_numeric = fastfd.numerical_hessian(model.loss, w, grad=model.grad)
    H_gap = float(np.max(np.abs(H_numeric - model.hess(w))))
    H_fd = fastfd.numerical_hessian(model.loss, w)  # differences of a difference gradient
    fd_gap = float(np.max(np.abs(H_fd - model.hess(w))))
    print(f"\n   numerical_hessian vs hess: max abs gap {H_gap:.1e} from the analytic gradient,"
          f" {fd_gap:.1e} from finite-difference gradients")
    out["numerical_gap"], out["fd_gap"] = H_gap, fd_gap

    print("\n2. Newton's method with the checked Hessian, from w = 0")
    v = np.zeros(d)
    history = []
    for k in range(7):
        g = model.grad(v)
        history.append((model.loss(v), float(np.linalg.norm(g))))
        print(f"   step {k}: loss {history[-1][0]:.15f}   |grad| {history[-1][1]:.2e}")
        if history[-1][1] < 1e-14:
            break
        v = v - np.linalg.solve(model.hess(v), g)
    out["newton"] = history
    out["w_star"] = v
    final = fastfd.check_hessian(model.loss, model.hess, v, grad=model.grad)
    print(f"   the Hessian checked at the optimum: {final.verdict.upper()}")
    out["at_optimum"] = final
    print("\nThe Hessian report without regularization:")
    print("\n".join("    " + s for s in str(out["hessian"]["no regularization"]).splitlines()))
    return out


if __name__ == "__main__":
    main()
