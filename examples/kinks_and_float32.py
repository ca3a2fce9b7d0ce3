"""Kinks and float32: where a naive gradient check raises false alarms or proves nothing.

1. A linear SVM with a tie at the margin (a hinge exactly at 0): the loss has no derivative
   there, the textbook relative error looks alarming, and fastfd lists the entries as kinks
   instead of failing them, after checking that the analytic value lies between the one-sided
   differences.
2. A sign error at that very hinge is still caught: a kink is no hiding place.
3. A ReLU network with pre-activations exactly 0: both subgradient conventions (``z > 0`` and
   ``z >= 0``) are accepted, a wrong mask is not.
4. The same softmax problem in float64 and float32: what each can resolve (rtol), the reason
   printed with a float32 verdict, and a 0.1% bug that only float64 can see.
5. What pass, fail and inconclusive mean: a check at an optimum (every partial derivative ~ 0)
   and one where every entry sits on a kink.

Run::

    python examples/kinks_and_float32.py            # N=500, D=128 for the float32 part
    python examples/kinks_and_float32.py --quick    # N=100, D=32
"""

from __future__ import annotations

import argparse

import numpy as np

import fastfd
from fastfd._baseline import cifar_like_problem, grad_check_sparse
from fastfd.models import LinearSVM


def indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def heading(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")


# --- 1 and 2: a hinge exactly at zero ------------------------------------------------------------

def tied_svm(seed: int = 0):
    """Small integer data and quarter-integer weights with one margin exactly 0 (a tie)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 4, size=(6, 4)).astype(float)
    y = np.array([0, 1, 2, 0, 1, 2])
    W = rng.integers(-2, 3, size=(4, 3)).astype(float) / 4
    return W, X, y


def svm_margins(W, X, y):
    scores = X @ W
    margins = scores - scores[np.arange(len(y)), y][:, None] + 1.0
    margins[np.arange(len(y)), y] = np.nan
    return margins


def hinge_section() -> dict:
    heading("1. A linear SVM with a margin exactly at zero")
    W, X, y = tied_svm()
    model = LinearSVM(X, y, reg=0.01)
    margins = svm_margins(W, X, y)
    ties = [(int(i), int(j)) for i, j in zip(*np.nonzero(margins == 0))]
    print(f"Integer data, W in quarter steps: margin(s) exactly 0 at (example, class) {ties}.")
    print("The hinge max(0, m) has no derivative at m = 0; the analytic gradient uses the")
    print("convention 'counts only if m > 0', one of the two one-sided slopes.\n")

    rows = grad_check_sparse(model, W.copy(), model.grad(W), num_checks=8, seed=3)
    print("  Textbook sparse check (central, h = 1e-5):")
    for ix, numeric, analytic, rel in rows:
        flag = "  <- 'probably wrong'" if rel > 1e-2 else ""
        print(f"    W[{ix[0]}, {ix[1]}]  numeric {numeric:+.6f}  analytic {analytic:+.6f}  "
              f"rel error {rel:.1e}{flag}")
    print("  The central difference averages the two slopes of the kink, so a correct")
    print("  gradient shows relative errors of order 1 there.\n")

    result = fastfd.check_gradient(model, model.grad, W)
    print("  fastfd.check_gradient(model, model.grad, W):")
    print(indent(str(result)))
    print("  Every W[d, c] that moves the tied margin (class columns 1 and 2, X[1, d] != 0)")
    print("  is listed as a kink and excluded; the remaining entries decide the verdict.")

    heading("2. A sign error at the hinge is still caught")
    kink = result.kinks[0]
    d, c = (int(k) for k in kink[2:-1].split(","))
    grad = model.grad(W)
    for name in result.kinks:  # pick the kink entry with the largest gradient
        i, j = (int(k) for k in name[2:-1].split(","))
        if abs(grad[i, j]) > abs(grad[d, c]):
            d, c = i, j
    wrong = grad.copy()
    wrong[d, c] = -wrong[d, c]
    print(f"The analytic gradient with the sign of W[{d}, {c}] flipped "
          f"({grad[d, c]:+.4f} -> {wrong[d, c]:+.4f}), an entry at the kink:")
    caught = fastfd.check_gradient(model, wrong, W)
    print(indent(str(caught)))
    print("  A kink excuses an entry only if its analytic value lies between the one-sided")
    print("  differences; a flipped sign lies outside, so it fails by name.")
    return {"ties": ties, "tied": result, "sign_error": caught, "flipped": f"W[{d}, {c}]"}


# --- 3: ReLU at exactly zero ---------------------------------------------------------------------

def relu_net(seed: int = 1):
    """A 3-4-2 ReLU regression net whose units 1 and 3 have pre-activation exactly 0 on an
    example (integer inputs, half-integer weights, the bias set to cancel)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(8, 3)).astype(float)
    Y = rng.standard_normal((8, 2))
    W1 = rng.integers(-2, 3, size=(3, 4)).astype(float) / 2
    b1 = rng.standard_normal(4)
    b1[1] = -(X[0] @ W1[:, 1])
    b1[3] = -(X[5] @ W1[:, 3])
    params = {"W1": W1, "b1": b1, "W2": rng.standard_normal((4, 2))}

    def loss(p):
        hidden = np.maximum(0.0, X @ p["W1"] + p["b1"])
        return 0.5 * float(np.sum((hidden @ p["W2"] - Y) ** 2))

    def grad(p, mask="z > 0"):
        pre = X @ p["W1"] + p["b1"]
        hidden = np.maximum(0.0, pre)
        residual = hidden @ p["W2"] - Y
        dhidden = residual @ p["W2"].T
        gate = {"z > 0": pre > 0, "z >= 0": pre >= 0, "no mask": np.ones_like(pre)}[mask]
        dpre = dhidden * gate
        return {"W1": X.T @ dpre, "b1": dpre.sum(axis=0), "W2": hidden.T @ residual}

    return params, loss, grad, X


def relu_section() -> dict:
    heading("3. A ReLU network with pre-activations exactly 0")
    params, loss, grad, X = relu_net()
    pre = X @ params["W1"] + params["b1"]
    zeros = [(int(i), int(j)) for i, j in zip(*np.nonzero(pre == 0))]
    print(f"Pre-activations exactly 0 at (example, unit) {zeros}.\n")
    out = {}
    for mask in ["z > 0", "z >= 0", "no mask"]:
        result = fastfd.check_gradient(loss, lambda p, m=mask: grad(p, m), params)
        print(f"  backprop with ReLU'(z) = {mask!r}: {result.verdict.upper()}  "
              f"(kinks {len(result.kinks)}, failed {len(result.failed)})")
        out[mask] = result
    print("\n  Report for the 'z > 0' convention:")
    print(indent(str(out["z > 0"])))
    print("  Both conventions give a valid one-sided slope at z = 0 and pass; forgetting the")
    print(f"  mask fails at {', '.join(out['no mask'].failed[:4])} ...")
    return out


# --- 4 and 5: float32 and the verdicts ---------------------------------------------------------

def softmax_loss(W, X, y, reg):
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    log_probs = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean() + reg * np.sum(W * W)


def softmax_grad(W, X, y, reg):
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(y)), y] -= 1.0
    return X.T @ probs / len(y) + 2 * reg * W


def float32_section(n: int, d: int) -> dict:
    heading("4. The same softmax problem in float64 and in float32")
    reg = 0.1
    print(f"CIFAR-shaped softmax, N={n}, D={d} (+ bias), plain numpy loss and gradient;")
    print("the float32 run casts X and W, so the loss is computed in float32 throughout.\n")
    out = {}
    print(f"  {'dtype':<8} {'gradient':<16} {'verdict':<13} {'rtol':>7} {'step':>8} "
          f"{'max rel err':>11}  failed")
    for dtype in (np.float64, np.float32):
        W, X, y = cifar_like_problem(n=n, d=d, dtype=dtype)
        f = lambda V, X=X, y=y: softmax_loss(V, X, y, reg)  # noqa: E731
        for label, scale in [("correct", 1.0), ("0.1% too large", 1.001)]:
            def g(V, X=X, y=y, scale=scale):
                return (scale * softmax_grad(V, X, y, reg)).astype(V.dtype)

            result = fastfd.check_gradient(f, g, W)
            out[(np.dtype(dtype).name, label)] = result
            print(f"  {np.dtype(dtype).name:<8} {label:<16} {result.verdict.upper():<13} "
                  f"{result.rtol:>7.0e} {result.step:>8.1e} {result.max_rel_error:>11.1e}  "
                  f"{len(result.failed)} of {result.n_checked}")
    print("\n  The float32 report for the correct gradient:")
    print(indent(str(out[("float32", "correct")])))
    print("  float32 keeps ~7 digits; a central difference of a float32 loss resolves about")
    print("  2-3, so the tolerance is 1e-2 and the report says so. A 0.1% error is below what")
    print("  float32 differences can see: it passes in float32 and fails in float64. Check")
    print("  gradients in float64 whenever you can, even if you train in float32.")

    heading("5. What the verdicts mean")
    print("  PASS          every checked entry matches within rtol plus the rounding floor of")
    print("                its difference (after refinement at smaller steps), no direction")
    print("                disagrees, and enough entries carry evidence.")
    print("  FAIL          some entry or direction differs beyond truncation and rounding")
    print("                error: the gradient is wrong there, and the entry is named.")
    print("  INCONCLUSIVE  (nearly) every checked entry is a kink, unresolved, or too small")
    print("                for the finite differences to resolve, and no other evidence (a")
    print("                Taylor test along a random direction) settles it: nothing proven.\n")
    rng = np.random.default_rng(0)
    n_small, d_small, classes = 60, 8, 3
    labels = rng.integers(0, classes, n_small)
    X = rng.standard_normal((n_small, d_small)) + rng.standard_normal((classes, d_small))[labels]
    W = np.zeros((d_small, classes))
    for _ in range(2000):  # gradient descent to the optimum: the gradient vanishes there
        W -= 0.5 * softmax_grad(W, X, labels, reg)
    f = lambda V: softmax_loss(V, X, labels, reg)  # noqa: E731
    g = lambda V: softmax_grad(V, X, labels, reg)  # noqa: E731
    print(f"  a) A small softmax trained to its optimum (max |gradient| {np.abs(g(W)).max():.0e}):")
    print("     every partial derivative is below what a finite difference can resolve, so")
    print("     the entries alone prove nothing.")
    result = fastfd.check_gradient(f, g, W)
    print(indent(str(result), "     "))
    if any("Taylor" in reason for reason in result.reasons):
        print("     fastfd fell back on a Taylor test: along a random direction v the remainder")
        print("     f(x + e v) - f(x) - e g.v falls like e**2 for a right gradient, like e for a")
        print("     wrong one, whatever the size of g.")
    out["optimum"] = result
    wrong = fastfd.check_gradient(f, lambda V: g(V) + 1e-3, W)
    print(f"\n  b) The same point with a gradient that is wrong by 1e-3 everywhere: "
          f"{wrong.verdict.upper()}")
    print(f"     ({wrong.reasons[0]})")
    out["optimum_wrong"] = wrong

    rng = np.random.default_rng(1)
    Xs, ys = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    svm = LinearSVM(Xs, ys, reg=0.0, delta=0.0)
    W0 = np.zeros((4, 3))
    print("\n  c) An SVM with margin delta = 0 at the zero initialization W = 0: every margin")
    print("     is exactly 0, so every entry and every direction sits on a kink.")
    tied = fastfd.check_gradient(svm, svm.grad, W0)
    print(indent(str(tied), "     "))
    print(f"     Verdict {tied.verdict.upper()}: every analytic value lies between its one-sided")
    print("     differences (a valid subgradient component), and the kink entries that share a")
    print("     hinge were checked jointly along their sums. A kink cannot confirm a derivative")
    print("     (there is none), but it can confirm a subgradient.")
    out["all_kinks"] = tied
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller float32 problem")
    args = parser.parse_args(argv)
    results = hinge_section()
    results["relu"] = relu_section()
    results["float"] = float32_section(n=100 if args.quick else 500, d=32 if args.quick else 128)
    return results


if __name__ == "__main__":
    main()
