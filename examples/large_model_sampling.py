"""A 10,000,000-parameter model: sampled checks, random directions, and one wrong entry.

A full finite-difference check costs two loss evaluations per parameter: 20 million here, more
than a day of compute at a few milliseconds each (the example times the loss and says how
long). fastfd offers two cheaper kinds of evidence:

- a stratified sample of entries (``sample=1000``): every parameter array is visited, and the
  report states what a pass proves (rule of three: with k entries checked and none wrong,
  fewer than about 3/k of all entries are wrong, at 95% confidence);
- random directions (``directions=3``): ``g . v`` against a directional difference along a
  random unit vector ``v``, two evaluations each, and every entry takes part.

A bug in a single entry out of ten million slips through any affordable sample (a sample of
1000 contains it with probability 1e-4), but it moves ``g . v``: the directions catch it,
and fastfd then localizes it by bisection. Memory stays a small multiple of the parameters:
nothing P x P, no dense sample bookkeeping.

The model is ``{"W": (2500, 3999), "b": (2500,)}`` in float64 with a smooth loss that costs one
pass over W: a weighted sum of squares of the rows of W plus a term coupling each bias to its
row's norm. Run::

    python examples/large_model_sampling.py            # 10,000,000 parameters (~1.5 min, 2 cores)
    python examples/large_model_sampling.py --quick    # 100,000 parameters
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import fastfd


def make_model(rows: int, cols: int, seed: int = 0):
    """Params, loss and analytic gradient of the row-norm model."""
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((rows, cols)), "b": 0.1 * rng.standard_normal(rows)}
    weights = 1.0 + 0.5 * np.sin(np.arange(rows))  # one weight per row, in [0.5, 1.5]

    def loss(p):
        """``0.5 sum_r a_r q_r + sum_r b_r log(1 + q_r) + 0.5 |b|^2`` with ``q_r = |W_r|^2``."""
        norms2 = np.einsum("ij,ij->i", p["W"], p["W"])  # one pass over W, no temporary
        b = p["b"]
        return 0.5 * np.dot(weights, norms2) + np.dot(b, np.log1p(norms2)) + 0.5 * np.dot(b, b)

    def grad(p):
        W, b = p["W"], p["b"]
        norms2 = np.einsum("ij,ij->i", W, W)
        return {"W": (weights + 2 * b / (1 + norms2))[:, None] * W, "b": np.log1p(norms2) + b}

    return params, loss, grad


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def duration(seconds: float) -> str:
    """``seconds`` in the unit a reader takes in at a glance: us, ms, s, min, h or days."""
    if seconds < 1e-3:
        return f"{1e6 * seconds:.0f} us"
    if seconds < 1:
        return f"{1e3 * seconds:.{1 if seconds < 0.01 else 0}f} ms"
    if seconds < 120:
        return f"{seconds:.{1 if seconds < 10 else 0}f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def seconds_per_eval(loss, params, repeats: int = 5) -> float:
    """Median wall time of ``repeats`` loss evaluations (the first call included)."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        loss(params)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def mib(n_bytes: float) -> str:
    mb = n_bytes / 2**20
    return f"{mb:.{1 if mb < 10 else 0}f} MiB"


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 parameters")
    parser.add_argument("--sample", type=int, default=1000, help="entries in the sampled check")
    args = parser.parse_args(argv)
    rows, cols = (250, 399) if args.quick else (2500, 3999)

    params, loss, grad = make_model(rows, cols)
    n_params = sum(p.size for p in params.values())
    param_bytes = sum(p.nbytes for p in params.values())
    param_mb = param_bytes / 2**20
    began = time.perf_counter()
    eval_s = seconds_per_eval(loss, params)
    full_s = 2 * n_params * eval_s
    grad(params)  # the user's own footprint: params plus one gradient
    base_mb = peak_rss_mb()
    print(f"Model: W {params['W'].shape} + b {params['b'].shape} = {n_params:,} float64 "
          f"parameters ({mib(param_bytes)})")
    print(f"One loss evaluation: {duration(eval_s)} (median of 5). A full central-difference "
          f"check is 2 x {n_params:,}")
    print(f"= {2 * n_params:,} evaluations: ~{duration(full_s)} at that rate, serially.")
    print(f"Peak RSS with the params and one gradient in memory: {base_mb:.0f} MiB\n")
    out = {"n_params": n_params}

    print(f"1. Sampled check of the correct gradient (sample={args.sample}):")
    sampled = fastfd.check_gradient(loss, grad, params, sample=args.sample, seed=0)
    print(indent(str(sampled)))
    sampled_mb = peak_rss_mb()
    print(f"  What the pass proves: {sampled.confidence}.")
    print(f"  Cost: {sampled.n_evals:,} evaluations in {duration(sampled.elapsed_s)}, against "
          f"~{duration(full_s)} for the full check.")
    print(f"  Peak RSS so far {sampled_mb:.0f} MiB: +{sampled_mb - base_mb:.0f} MiB for the "
          "check (fastfd's private copy of the params,")
    print("  the analytic gradient it asked for, and vectors of P floats for the noise line).\n")
    out["sampled"] = sampled

    print("2. Random-direction check of the correct gradient (directions=3, a token sample):")
    directed = fastfd.check_gradient(loss, grad, params, sample=10, directions=3, seed=0)
    print(indent(str(directed)))
    directions_mb = peak_rss_mb()
    print("  Each direction is a unit vector over all parameters: g . v involves every entry,")
    print("  for 2 loss evaluations plus a few vector operations of P floats each.")
    print(f"  Peak RSS so far {directions_mb:.0f} MiB: a few vectors of P floats, never P x P.\n")
    out["directions"] = directed

    bad_row, bad_col = rows // 2 - 16, cols // 3 + 1  # an interior entry

    def buggy_grad(p):
        g = grad(p)
        g["W"][bad_row, bad_col] *= -1.0  # a sign error in exactly one entry
        return g

    print(f"3. A sign error planted in one entry, W[{bad_row}, {bad_col}] "
          f"(1 of {n_params:,}), checked with sample=100 and directions=3:")
    caught = fastfd.check_gradient(loss, buggy_grad, params, sample=100, directions=3, seed=0)
    print(indent(str(caught)))
    entries_ok = [s for s in caught.failed if not s.startswith("direction")]
    failing_dirs = [s for s in caught.failed if s.startswith("direction")]
    print(f"  Failing directions: {', '.join(failing_dirs) or 'none'}")
    localized = getattr(caught, "localized", None)
    if localized:
        print(f"  Localized by bisection: {', '.join(e.name for e in localized)} "
              f"(analytic {localized[0].analytic:+.4g}, numeric {localized[0].numeric:+.4g})")
    else:
        print("  (this fastfd does not localize failing directions; the directions above are")
        print("  the evidence: some entry of the gradient is wrong)")
    sampled_hits = [s for s in entries_ok if s != f"W[{bad_row}, {bad_col}]"]
    print(f"  The sampled entries alone pass (failing sampled entries: {len(sampled_hits)}): "
          f"a sample of {args.sample} would")
    print(f"  contain the wrong entry with probability {args.sample / n_params:.0e}. "
          "A direction has a component of")
    print(f"  ~1/sqrt(P) = {1 / np.sqrt(n_params):.0e} along it, so the sign error shifts "
          "g . v by about 2 |g_i| / sqrt(P).")
    same = len(caught.directions) == len(directed.directions) and all(
        np.isclose(w.numeric, r.numeric, rtol=1e-4)
        for w, r in zip(caught.directions, directed.directions))
    if same:  # the same seed draws the same directions: compare with the correct gradient's
        print("  |g . v - numeric| per direction, the same directions as in 2 (same seed):")
        for wrong, right in zip(caught.directions, directed.directions):
            print(f"    {wrong.name}: {wrong.abs_error:.1e} (error bar {wrong.error_bar:.1e}) "
                  f"with the sign error, {right.abs_error:.1e} with the correct gradient: "
                  f"{wrong.status}")
    if len(failing_dirs) < len(caught.directions):
        print("  A direction fails where the shift exceeds rtol |g . v| plus its error bar; one "
              "with a small")
        print("  component along the wrong entry, or a large g . v, can pass: hence several "
              "directions.")
    out["caught"] = caught
    out["bad_entry"] = f"W[{bad_row}, {bad_col}]"

    final_mb = peak_rss_mb()
    if param_mb >= 20:
        print(f"\nPeak RSS {final_mb:.0f} MiB: {(final_mb - base_mb) / param_mb:.1f}x the params' "
              f"{mib(param_bytes)} on top of the user's own {base_mb:.0f} MiB.")
    else:  # RSS grows in allocator-sized steps: a ratio to 1 MiB of params means nothing
        print(f"\nPeak RSS {final_mb:.0f} MiB, +{final_mb - base_mb:.0f} MiB over the user's own "
              f"{base_mb:.0f} MiB (the params, {mib(param_bytes)}, are too")
        print("  small for a ratio to them to mean anything; run without --quick for that).")
    print(f"Total time {duration(time.perf_counter() - began)}")
    out["peak_rss_mb"] = final_mb
    out["extra_mb"] = final_mb - base_mb
    return out


if __name__ == "__main__":
    main()
