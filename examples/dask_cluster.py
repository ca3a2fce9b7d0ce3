"""Run a gradient check on a Dask cluster through joblib's dask backend.

A ``distributed.LocalCluster`` on this machine stands in for a real cluster: with a real
one, connect with ``distributed.Client("tcp://scheduler:8786")`` instead. The check is the
same call with ``backend="dask"``; fastfd sends the loss and the parameters to the workers once
(dask scatters them) and the numbers are identical to a serial run.

    python examples/dask_cluster.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastfd


def make_problem(n: int, d: int, h: int, c: int, seed: int = 0):
    """A two-layer tanh network with dict params: a loss of about a millisecond."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, c))
    params = {"W1": rng.standard_normal((d, h)) / np.sqrt(d), "W2": rng.standard_normal((h, c))}

    def loss(p):
        return 0.5 * float(np.sum((np.tanh(X @ p["W1"]) @ p["W2"] - Y) ** 2)) / n

    def grad(p):
        hidden = np.tanh(X @ p["W1"])
        residual = (hidden @ p["W2"] - Y) / n
        dhidden = (residual @ p["W2"].T) * (1 - hidden**2)
        return {"W1": X.T @ dhidden, "W2": hidden.T @ residual}

    return params, loss, grad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem, two workers")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    n, d = (64, 64) if args.quick else (256, 512)
    params, loss, grad = make_problem(n, d, h=16, c=4)
    sample = 200 if args.quick else 2000

    began = time.perf_counter()
    serial = fastfd.check_gradient(loss, grad, params, sample=sample)
    serial_s = time.perf_counter() - began
    print(f"serial:  {serial.verdict}, {serial.n_evals} evaluations in {serial_s:.2f} s")

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
        fastfd.check_gradient(loss, grad, params, sample=10, backend="dask")  # warm the workers
        began = time.perf_counter()
        on_dask = fastfd.check_gradient(loss, grad, params, sample=sample, backend="dask")
        dask_s = time.perf_counter() - began
    print(f"dask:    {on_dask.verdict}, {on_dask.n_evals} evaluations in {dask_s:.2f} s "
          f"on {args.workers} workers: speedup {serial_s / dask_s:.2f}x")
    same = serial.max_rel_error == on_dask.max_rel_error and serial.worst == on_dask.worst
    print(f"identical numbers to the serial run: {same}")
    return 0 if same and on_dask.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
