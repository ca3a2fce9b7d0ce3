"""Numerical gradient checking of the 2-3-1 network from "Neural Networks Demystified", part 5.

A network with 2 inputs (hours of sleep, hours of study), 3 sigmoid hidden units and 1 sigmoid
output predicts a test score / 100. The cost is ``J = 0.5 * sum((y - yhat)**2)`` and backprop
gives ``dJ/dW1`` and ``dJ/dW2``. The tutorial checks backprop with a central difference
(``e = 1e-4``) over the 9 flattened weights and the ratio ``norm(g - n) / norm(g + n)``,
which should be around 1e-8 or smaller for a correct gradient.

This example reproduces that check with ``fastfd.numerical_gradient`` (same stencil, same step,
no flattening by hand), shows the report of ``fastfd.check_gradient``, and then breaks backprop
twice: forgetting the sigmoid derivative in ``delta2`` and a slip in a single entry. fastfd
names the failing weights (``[0][1, 2]`` is ``W1[1, 2]``: params are the list ``[W1, W2]``).
Last, it measures the 1e-8 rule over random initializations of a correct network: the ratio of
a correct gradient spans orders of magnitude, largest where the gradient is small, and shrinks
with a smaller ``e``, because it measures the finite difference's error; fastfd's verdict rests
on an error bar per entry and a stated ``rtol`` instead.

Run::

    python examples/neural_networks_demystified.py            # plus 1000 random initializations
    python examples/neural_networks_demystified.py --quick    # plus 200
"""

from __future__ import annotations

import argparse

import numpy as np

import fastfd

# hours of sleep, hours of study -> test score
HOURS = np.array([[3.0, 5.0], [5.0, 1.0], [10.0, 2.0]])
SCORES = np.array([[75.0], [82.0], [93.0]])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return np.exp(-z) / (1.0 + np.exp(-z)) ** 2


class SleepStudyNet:
    """The 2-3-1 sigmoid network; ``params`` is the list ``[W1 (2, 3), W2 (3, 1)]``."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def forward(self, params):
        W1, W2 = params
        z2 = self.X @ W1
        a2 = sigmoid(z2)
        z3 = a2 @ W2
        return z2, a2, z3, sigmoid(z3)

    def cost(self, params) -> float:
        yhat = self.forward(params)[-1]
        return 0.5 * float(np.sum((self.y - yhat) ** 2))

    def cost_prime(self, params, bug: str | None = None):
        """Backprop: ``[dJ/dW1, dJ/dW2]``. ``bug`` plants a mistake ("delta2" or "entry")."""
        W1, W2 = params
        z2, a2, z3, yhat = self.forward(params)
        delta3 = -(self.y - yhat) * sigmoid_prime(z3)
        dJdW2 = a2.T @ delta3
        if bug == "delta2":  # forgot the sigmoid derivative of the hidden layer
            delta2 = delta3 @ W2.T
        else:
            delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)
        dJdW1 = self.X.T @ delta2
        if bug == "entry":  # a slip that touches one weight: 0.1% off
            dJdW1[1, 2] *= 1.001
        return [dJdW1, dJdW2]


def compute_numerical_gradient(net: SleepStudyNet, params, e: float = 1e-4) -> np.ndarray:
    """The tutorial's loop: central differences over the flattened weights, step ``e``."""
    shapes = [p.shape for p in params]
    flat = np.concatenate([p.ravel() for p in params])

    def unflatten(vector):
        out, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            out.append(vector[start:start + size].reshape(shape))
            start += size
        return out

    numgrad = np.zeros_like(flat)
    perturb = np.zeros_like(flat)
    for p in range(flat.size):
        perturb[p] = e
        loss_plus = net.cost(unflatten(flat + perturb))
        loss_minus = net.cost(unflatten(flat - perturb))
        numgrad[p] = (loss_plus - loss_minus) / (2 * e)
        perturb[p] = 0.0
    return numgrad


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def ratio(g, n) -> float:
    """``norm(g - n) / norm(g + n)``, the tutorial's test."""
    return float(np.linalg.norm(g - n) / np.linalg.norm(g + n))


def names_of(params) -> list[str]:
    return [f"W{k + 1}[{i}, {j}]" for k, p in enumerate(params) for i, j in np.ndindex(p.shape)]


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer random initializations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    parser.add_argument("--inits", type=int, help="random initializations to check at the end")
    args = parser.parse_args(argv)
    inits = args.inits or (200 if args.quick else 1000)

    # normalize as the tutorial does: inputs by their column maximum, scores by 100
    X = HOURS / HOURS.max(axis=0)
    y = SCORES / 100.0
    net = SleepStudyNet(X, y)
    rng = np.random.default_rng(args.seed)
    params = [rng.standard_normal((2, 3)), rng.standard_normal((3, 1))]
    print("Inputs (sleep, study) / column max and scores / 100:")
    for xi, yi in zip(X, y):
        print(f"  x = [{xi[0]:.2f}, {xi[1]:.2f}]  ->  y = {yi[0]:.2f}")
    print(f"Random weights (seed {args.seed}), cost J = {net.cost(params):.6f}\n")

    grad = flat(net.cost_prime(params))
    textbook = compute_numerical_gradient(net, params, e=1e-4)
    numeric = flat(fastfd.numerical_gradient(net.cost, params, step=1e-4))
    print("Backprop against central differences with e = 1e-4:")
    print(f"  {'weight':<9} {'backprop':>13} {'tutorial loop':>14} {'fastfd':>13}")
    for name, g, t, n in zip(names_of(params), grad, textbook, numeric):
        print(f"  {name:<9} {g:>13.8f} {t:>14.8f} {n:>13.8f}")
    ratio_textbook, ratio_fastfd = ratio(grad, textbook), ratio(grad, numeric)
    print(f"\n  norm(g - n) / norm(g + n): tutorial loop {ratio_textbook:.2e}, "
          f"fastfd {ratio_fastfd:.2e}")
    print(f"  max |fastfd - tutorial loop| = {np.max(np.abs(numeric - textbook)):.1e}  "
          "(the same central difference; fastfd")
    print("  takes the step that x + e really moves after rounding)")
    print("  The tutorial's rule of thumb: around 1e-8 or below means backprop is right, the")
    print("  rest being the finite difference's own error (truncation ~e**2 f'''/6, rounding")
    print("  ~eps |J| / e). How far that rule carries is measured at the end.\n")

    check = fastfd.check_gradient(net.cost, net.cost_prime, params)
    print("fastfd.check_gradient(net.cost, net.cost_prime, [W1, W2]), default step:")
    print(indent(str(check)))
    print("  Entry names: [0][i, j] is W1[i, j] and [1][i, 0] is W2[i, 0].\n")

    broken = {}
    for bug, what in [("delta2", "backprop that forgets sigmoid'(z2) in delta2"),
                      ("entry", "backprop with dJdW1[1, 2] 0.1% off (a one-entry slip)")]:
        wrong = flat(net.cost_prime(params, bug=bug))
        result = fastfd.check_gradient(net.cost, lambda p, b=bug: net.cost_prime(p, bug=b),
                                       params)
        print(f"Broken: {what}")
        print(f"  tutorial ratio {ratio(wrong, textbook):.2e} (says: wrong, but not where)")
        print(indent(str(result)))
        print(f"  failing entries: {', '.join(result.failed)}\n")
        broken[bug] = result

    print(f"The same comparison on {inits} random initializations (correct backprop):")
    rows = []
    for seed in range(inits):
        r = np.random.default_rng(1000 + seed)
        p = [r.standard_normal((2, 3)), r.standard_normal((3, 1))]
        g = flat(net.cost_prime(p))
        rows.append((ratio(g, compute_numerical_gradient(net, p)), float(np.linalg.norm(g)),
                     fastfd.check_gradient(net.cost, net.cost_prime, p), p))
    ratios = np.array([row[0] for row in rows])
    norms = np.array([row[1] for row in rows])
    checks = [row[2] for row in rows]
    print(f"  tutorial ratio at e = 1e-4: min {ratios.min():.1e}, median "
          f"{np.median(ratios):.1e}, max {ratios.max():.1e} (a factor "
          f"{ratios.max() / ratios.min():.0f} apart)")
    above = int(np.sum(ratios > 1e-8))
    if above:
        print(f"  {above} of {inits} correct gradients are above the 1e-8 rule of thumb.")
    else:
        print(f"  None of the {inits} is above the 1e-8 rule of thumb; the largest is "
              f"{1e-8 / ratios.max():.1f}x below it.")
    worst = int(np.argmax(ratios))
    worst_ratio, worst_norm, worst_check, worst_params = rows[worst]
    small_e = ratio(flat(net.cost_prime(worst_params)),
                    compute_numerical_gradient(net, worst_params, e=1e-6))
    size = "small" if worst_norm < np.median(norms) / 3 else "typical"
    print(f"  At the largest ratio the gradient is {size}: norm(g) = {worst_norm:.1e} (median "
          f"{np.median(norms):.1e}). The ratio")
    print("  divides the finite difference's own error by the gradient's size, and that error "
          "depends on e:")
    print(f"  the same loop with e = 1e-6 gives {small_e:.1e} at that point instead of "
          f"{worst_ratio:.1e}. A correct gradient's")
    print("  ratio measures the finite difference, and a fixed 1e-8 knows nothing of its size "
          "at the point.")
    print("  fastfd gives every entry an error bar (measured noise / step plus the truncation "
          "seen between")
    print("  steps) and judges |analytic - numeric| against rtol plus that bar. At that point: "
          f"{worst_check.verdict.upper()},")
    print(f"  norm rel error {worst_check.norm_rel_error:.1e} (the tutorial's ratio, at "
          f"fastfd's step ~{worst_check.step:.0e}), max rel error "
          f"{worst_check.max_rel_error:.1e},")
    print(f"  confirmed entries resolved to {worst_check.resolution:.1e} or better, rtol "
          f"{worst_check.rtol:g}.")
    verdicts = [c.verdict for c in checks]
    counts = {v: verdicts.count(v) for v in sorted(set(verdicts))}
    print(f"  fastfd verdicts over the {inits}: {counts}; largest max rel error "
          f"{max(c.max_rel_error for c in checks):.1e}, against")
    print(f"  {broken['entry'].max_rel_error:.1e} for the 0.1% one-entry slip above, which it "
          "failed and named.")
    return {"ratio_textbook": ratio_textbook, "ratio_fastfd": ratio_fastfd, "check": check,
            "broken": broken, "init_ratios": ratios, "init_verdicts": counts,
            "init_above": above, "worst_ratios": (worst_ratio, small_e), "worst": worst_check}


if __name__ == "__main__":
    main()
