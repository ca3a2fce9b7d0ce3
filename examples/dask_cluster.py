"""Run a gradient check on a Dask cluster through fastfd's dask backend, and see when it pays.

A ``distributed.LocalCluster`` on this machine stands in for a real cluster: with a real
one, connect with ``distributed.Client("tcp://scheduler:8786")`` instead. The check is the
same call with ``backend="dask"``; fastfd sends the loss and the parameters to the cluster once
(held by a task; each worker unpickles the loss once) and the numbers are identical to a serial
run.

Dask costs scheduling and round trips: every stage of a check (the noise line, the first pass,
each refinement round) waits for its results. The example measures that overhead against a
serial run with BLAS on one thread (as in every dask worker, so the comparison is like for
like) and prints it next to the loss's own cost: a local cluster on one machine shares the
same cores with its scheduler and workers, so it pays off only for losses that cost far more
than the overhead per evaluation; a real cluster adds cores.

    python examples/dask_cluster.py --quick   # a ~15 us loss: the overhead dominates
    python examples/dask_cluster.py           # a few-ms loss, 16 MiB of data in the loss
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import fastfd


def make_problem(n: int, d: int, h: int, c: int, seed: int = 0):
    """A two-layer tanh network with dict params; the loss costs about ``n * d * h`` flops."""
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


def duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{1e6 * seconds:.0f} us"
    if seconds < 1:
        return f"{1e3 * seconds:.{1 if seconds < 0.01 else 0}f} ms"
    return f"{seconds:.{1 if seconds < 10 else 0}f} s"


def seconds_per_eval(loss, params, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        loss(params)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a cheap loss, a small sample")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    workers = args.workers
    n, d = (64, 64) if args.quick else (1024, 2048)
    sample = 200 if args.quick else 500
    params, loss, grad = make_problem(n, d, h=16, c=4)
    n_params = sum(p.size for p in params.values())

    with threadpool_limits(1):  # as in each worker: BLAS on one thread
        eval_s = seconds_per_eval(loss, params)
        began = time.perf_counter()
        serial = fastfd.check_gradient(loss, grad, params, sample=sample)
        serial_s = time.perf_counter() - began
    print(f"Loss: a two-layer tanh net on {n} x {d} inputs, {n_params:,} params; one evaluation "
          f"{duration(eval_s)} (median of 20)")
    print(f"serial:  {serial.verdict}, {serial.n_evals} evaluations in {duration(serial_s)} "
          "(BLAS on 1 thread, as in each dask worker)")

    # the loss carries its data (X: 16 MiB without --quick) to the cluster once per check;
    # dask warns about any task graph over 10 MiB
    warnings.filterwarnings("ignore", message="Sending large graph")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
        fastfd.check_gradient(loss, grad, params, sample=10, backend="dask")  # warm the workers
        began = time.perf_counter()
        on_dask = fastfd.check_gradient(loss, grad, params, sample=sample, backend="dask")
        dask_s = time.perf_counter() - began
    speedup = serial_s / dask_s
    ratio = speedup if speedup >= 1 else 1 / speedup
    faster = f"{ratio:.{1 if ratio < 10 else 0}f}x {'faster' if speedup >= 1 else 'slower'} than"
    print(f"dask:    {on_dask.verdict}, {on_dask.n_evals} evaluations in {duration(dask_s)} on "
          f"{workers} local workers: {faster} serial")
    same = serial.max_rel_error == on_dask.max_rel_error and serial.worst == on_dask.worst
    print(f"identical numbers to the serial run: {same}")

    overhead_s = max(0.0, dask_s - serial_s / workers)
    per_eval = overhead_s / on_dask.n_evals
    print(f"\nDask's time beyond an even split of the serial time over {workers} workers: "
          f"{duration(overhead_s)}")
    print(f"(scheduling, round trips, data), {duration(per_eval)} per evaluation against "
          f"{duration(eval_s)} for the loss itself.")
    print(f"This machine: {os.cpu_count()} cores, load average {load:.1f} before the "
          f"{workers} workers and the scheduler joined.")
    if speedup >= 1:
        print("The loss costs more than the overhead, so the workers pay off; a real cluster's "
              "workers divide")
        print("the evaluations further.")
    else:
        print("The overhead outweighs what the extra workers save, so the local cluster is "
              "slower than serial.")
        print("Dask pays off when a loss evaluation costs far more than that overhead and the "
              "cluster brings")
        print("cores this machine does not have; for a cheap loss on one machine, stay serial.")
    return {"serial": serial, "dask": on_dask, "same": same, "serial_s": serial_s,
            "dask_s": dask_s, "eval_s": eval_s, "overhead_s": overhead_s}


if __name__ == "__main__":
    result = main()
    raise SystemExit(0 if result["same"] and result["dask"].passed else 1)
