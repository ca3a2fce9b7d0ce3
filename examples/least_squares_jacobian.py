"""A banded Jacobian, hand-written in scipy.sparse, checked at a cost that does not grow with n.

The boundary-value problem ``-u'' + exp(u) = f`` on (0, 1), ``u(0) = u(1) = 0``, discretized by
central differences on ``n`` interior points, gives ``n`` residuals

    r_i(u) = (-u[i-1] + 2 u[i] - u[i+1]) / h**2 + exp(u[i]) - f_i,     h = 1 / (n + 1),

whose Jacobian is tridiagonal: ``2 / h**2 + exp(u[i])`` on the diagonal, ``-1 / h**2`` beside
it. ``f`` is manufactured so that ``u(t) = sin(pi t)`` solves the continuous problem.

``fastfd.check_jacobian(resid, jac, u, sparsity=pattern)`` checks every one of the ``3n - 2``
entries with its own error bar, perturbing the columns that share no row together: a
tridiagonal pattern has 3 column groups, so the check costs a few tens of evaluations instead
of ``2n``. It then:

1. names a planted bug in a single entry (a sign slip in one off-diagonal);
2. reports a sparsity pattern that misses an entry, twice: the analytic matrix has a nonzero
   outside it (a PATTERN line) and the function moves a row that the pattern says its
   column group cannot (found by bisection of the group, named ``(outside pattern)``);
3. uses the checked Jacobian in a few Newton steps (``scipy.sparse.linalg.spsolve``), and
   compares the solution with ``sin(pi t)``.

Run::

    python examples/least_squares_jacobian.py             # n = 10,000
    python examples/least_squares_jacobian.py --quick     # n = 2,000
    python examples/least_squares_jacobian.py --n 50000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

import fastfd


class BVP:
    """``-u'' + exp(u) = f`` on ``n`` interior points; ``calls`` counts residual evaluations."""

    def __init__(self, n: int):
        self.n = n
        self.h = 1.0 / (n + 1)
        self.t = np.arange(1, n + 1) * self.h
        exact = np.sin(np.pi * self.t)
        self.exact = exact
        self.f = np.pi**2 * exact + np.exp(exact)
        self.calls = 0

    def resid(self, u):
        self.calls += 1
        left = np.concatenate(([0.0], u[:-1]))  # u(0) = 0
        right = np.concatenate((u[1:], [0.0]))  # u(1) = 0
        return (2 * u - left - right) / self.h**2 + np.exp(u) - self.f

    def jac(self, u):
        off = np.full(self.n - 1, -1.0 / self.h**2)
        return sp.diags([off, 2.0 / self.h**2 + np.exp(u), off], [-1, 0, 1], format="csr")

    def pattern(self):
        ones = np.ones(self.n - 1)
        return sp.diags([ones, np.ones(self.n), ones], [-1, 0, 1], format="csr")


def counted(bvp: BVP, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the residual evaluations it made."""
    before = bvp.calls
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, bvp.calls - before, time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 2,000")
    parser.add_argument("--n", type=int, default=None, help="interior points (default 10,000)")
    args = parser.parse_args(argv)
    n = args.n or (2000 if args.quick else 10_000)
    bvp = BVP(n)
    u0 = 0.5 * bvp.t * (1 - bvp.t) + 0.1 * np.sin(7 * np.pi * bvp.t)  # a rough first guess
    pattern = bvp.pattern()
    out: dict = {"n": n}

    print(f"-u'' + exp(u) = f on {n:,} interior points: a tridiagonal {n:,} x {n:,} Jacobian "
          f"({3 * n - 2:,} nonzeros)\n")

    # the numerical Jacobian with the pattern: 3 column groups
    J, evals, seconds = counted(bvp, fastfd.numerical_jacobian, bvp.resid, u0,
                                sparsity=pattern)
    gap = abs(J - bvp.jac(u0)).max() / abs(bvp.jac(u0)).max()
    print(f"numerical_jacobian(resid, u0, sparsity=pattern): {evals} evaluations, "
          f"{seconds:.3f} s, max |J - jac| / max |jac| = {gap:.1e}")
    print(f"  (dense: 2n = {2 * n:,} evaluations of the same O(n) residual)")
    out["numerical"] = {"evals": evals, "rel_gap": gap, "sparse": sp.issparse(J)}

    # 1. the check of the right Jacobian, then a sign slip in one entry
    right, evals, seconds = counted(bvp, fastfd.check_jacobian, bvp.resid, bvp.jac, u0,
                                    sparsity=pattern)
    print(f"\ncheck_jacobian(resid, jac, u0, sparsity=pattern): {right.verdict.upper()}, "
          f"{right.n_checked:,} entries, {right.n_groups} column groups, "
          f"{right.n_evals} evaluations ({evals} residual calls), {seconds:.2f} s")
    out["right"], out["right_calls"] = right, evals

    row = 3 * n // 5 - 1

    def jac_sign_slip(u):
        J = bvp.jac(u).tolil()
        J[row, row + 1] = -J[row, row + 1]  # a + where the stencil has a -
        return J.tocsr()

    bug = fastfd.check_jacobian(bvp.resid, jac_sign_slip, u0, sparsity=pattern)
    print(f"\n1. A sign slip in J[{row}, {row + 1}]: {bug.verdict.upper()}, failing "
          f"{', '.join(bug.failed)} ({bug.n_evals} evaluations)")
    out["bug"], out["bug_entry"] = bug, f"J[{row}, x[{row + 1}]]"

    # 2. a pattern that misses one entry (row 7 depends on u[6], the pattern says it does not)
    missing = pattern.tolil()
    missing[7, 6] = 0
    missing = missing.tocsr()
    missing.eliminate_zeros()
    holes = fastfd.check_jacobian(bvp.resid, bvp.jac, u0, sparsity=missing)
    print(f"\n2. A pattern without J[7, 6]: {holes.verdict.upper()} "
          f"({holes.n_groups} column groups, {holes.n_evals} evaluations)")
    for line in holes.pattern_errors:
        print(f"   PATTERN: {line}")
    for entry in holes.localized:
        print(f"   localized: {entry.name}, numeric {entry.numeric:.6g}")
    out["holes"] = holes

    # 3. Newton's method on the square system with the checked Jacobian
    u = u0.copy()
    start = time.perf_counter()
    norms = [float(np.linalg.norm(bvp.resid(u)))]
    for _ in range(6):
        u = u - spsolve(bvp.jac(u).tocsc(), bvp.resid(u))
        norms.append(float(np.linalg.norm(bvp.resid(u))))
    seconds = time.perf_counter() - start
    error = float(np.max(np.abs(u - bvp.exact)))
    print(f"\n3. Six Newton steps u -= spsolve(jac(u), resid(u)), {seconds:.2f} s: |r| "
          + " -> ".join(f"{r:.1e}" for r in norms))
    print(f"   max |u - sin(pi t)| = {error:.1e} (the discretization error, O(h**2) = "
          f"{bvp.h**2:.0e})")
    final = fastfd.check_jacobian(bvp.resid, bvp.jac, u, sparsity=pattern)
    print(f"   the Jacobian checked at the solution: {final.verdict.upper()}")
    print("   (scipy.optimize.least_squares(resid, u0, jac=jac) takes the same sparse jac, but"
          "\n   its LSMR trust-region steps stall on this stiff system: cond(J) ~ 4 / (pi h)**2"
          f" = {4 / (np.pi * bvp.h) ** 2:.0e})")
    out["newton"] = {"u": u, "error": error, "residual_norms": norms}
    out["final"] = final
    print("\nThe report of the sign slip:")
    print("\n".join("    " + line for line in str(bug).splitlines()))
    return out


if __name__ == "__main__":
    main()
