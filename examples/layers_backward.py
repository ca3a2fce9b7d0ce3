"""Layer backward passes, written as in the cs231n assignments, checked with ``check_vjp``.

Each layer has a numpy forward (returning ``out, cache``) and a backward taking ``dout, cache``,
the way a student writes them. ``fastfd.check_vjp(forward, backward, inputs)`` checks the
backward pass against central differences of ``<dout, forward(inputs)>`` (the notebooks'
``eval_numerical_gradient_array``) with error bars, kink handling and a verdict, and names the
entries that are wrong (``dx[1, 0, 3, 4]``, ``dgamma[2]``).

Layers: affine, ReLU, batch normalization (the graph backward and the simplified one),
dropout with a fixed mask, a naive convolution (x 2x3x8x8, w 3x3x3x3, stride 1, pad 1; loops
over images and output positions forward, over every window and filter backward), 2x2 max
pooling (without ties, and with ties, where routing the gradient to the first maximum is a
valid subgradient but routing it to every tied maximum is not), a vanilla RNN step (tanh) and
an LSTM step (two outputs, so ``dout`` is a tuple). Each right backward passes; one planted
bug per layer is caught and its entries are named.

Run::

    python examples/layers_backward.py
    python examples/layers_backward.py --quick     # the same (already a few seconds)
"""

from __future__ import annotations

import argparse

import numpy as np

import fastfd

# --------------------------------------------------------------------------- the layers


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_backward_bug(dout, cache):
    """Planted bug: db takes the first example's upstream gradient instead of the batch sum."""
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout[0]


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    x = cache
    return dout * (x > 0)


def relu_backward_bug(dout, cache):
    """Planted bug: a leaky slope left over from an experiment (0.01 for x < 0)."""
    x = cache
    return np.where(x > 0, dout, 0.01 * dout)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training mode: normalize with the batch's own mean and variance."""
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc**2, axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    return gamma * xhat + beta, (xhat, xc, std, gamma)


def batchnorm_backward(dout, cache):
    """Backprop through the graph, node by node."""
    xhat, xc, std, gamma = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dxc = dxhat / std
    dstd = -np.sum(dxhat * xc, axis=0) / std**2
    dvar = 0.5 * dstd / std
    dxc += 2.0 * xc * dvar / n
    dmu = -np.sum(dxc, axis=0)
    dx = dxc + dmu / n
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """The simplified expression, derived on paper."""
    xhat, _, std, gamma = cache
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * np.mean(dxhat * xhat, axis=0)) / std
    return dx, dgamma, dbeta


def batchnorm_backward_alt_bug(dout, cache):
    """Planted bug: dgamma from the centred input instead of the normalized one."""
    xc = cache[1]
    dx, _, dbeta = batchnorm_backward_alt(dout, cache)
    return dx, np.sum(dout * xc, axis=0), dbeta


def dropout_forward(x, mask, p):
    """Inverted dropout with a fixed keep mask (so forward is deterministic)."""
    return x * mask / p, (mask, p)


def dropout_backward(dout, cache):
    mask, p = cache
    return dout * mask / p


def dropout_backward_bug(dout, cache):
    """Planted bug: forgets the 1 / p of inverted dropout."""
    mask, _ = cache
    return dout * mask


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, H_out, W_out))
    w_rows = w.reshape(F, -1)  # one row per filter: the loop over f is a matrix-vector product
    for n in range(N):
        for i in range(H_out):
            for j in range(W_out):
                window = xpad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                out[n, :, i, j] = w_rows @ window.ravel() + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache, accumulate=True):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    r, c = i * stride, j * stride
                    dw[f] += xpad[n, :, r:r + HH, c:c + WW] * dout[n, f, i, j]
                    if accumulate:
                        dxpad[n, :, r:r + HH, c:c + WW] += w[f] * dout[n, f, i, j]
                    else:  # the bug: overlapping windows overwrite each other
                        dxpad[n, :, r:r + HH, c:c + WW] = w[f] * dout[n, f, i, j]
    dx = dxpad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def conv_backward_naive_bug(dout, cache):
    """Planted bug: ``dxpad[...] = ...`` instead of ``+=``."""
    return conv_backward_naive(dout, cache, accumulate=False)


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache, swap_index=False, every_tie=False):
    """Route each upstream gradient to the first maximum of its window (``np.argmax``)."""
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                    if every_tie:  # every entry equal to the max gets the whole gradient
                        dx[n, c, i * s:i * s + ph, j * s:j * s + pw] += \
                            (window == window.max()) * dout[n, c, i, j]
                        continue
                    a, bb = np.unravel_index(np.argmax(window), window.shape)
                    if swap_index:  # the bug: row and column of the argmax swapped
                        a, bb = bb, a
                    dx[n, c, i * s + a, j * s + bb] += dout[n, c, i, j]
    return dx


def max_pool_backward_bug(dout, cache):
    """Planted bug: ``j, i = unravel_index(...)``, row and column of the maximum swapped."""
    return max_pool_backward_naive(dout, cache, swap_index=True)


def max_pool_backward_every_tie(dout, cache):
    """Every tied maximum gets the full upstream gradient: not a subgradient."""
    return max_pool_backward_naive(dout, cache, every_tie=True)


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_step_backward_bug(dnext_h, cache):
    """Planted bug: dWh skips the tanh derivative."""
    dx, dprev_h, dWx, _, db = rnn_step_backward(dnext_h, cache)
    prev_h = cache[1]
    return dx, dprev_h, dWx, prev_h.T @ dnext_h, db


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), \
        np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache, forget_gate=True):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc**2)
    do = dnext_h * tc
    df, di, dg = dc * prev_c, dc * g, dc * i
    dprev_c = dc * f if forget_gate else dc
    da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)])
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_step_backward_bug(dnext_h, dnext_c, cache):
    """Planted bug: dprev_c forgets the forget gate (``dc`` instead of ``dc * f``)."""
    return lstm_step_backward(dnext_h, dnext_c, cache, forget_gate=False)


# --------------------------------------------------------------------------- the checks


def first(fn):
    """``lambda **inputs: fn(**inputs)[0]``: the forward without its cache."""
    return lambda **inputs: fn(**inputs)[0]


def vjp(forward, backward, inputs, **kwargs):
    """``check_vjp`` with ``backward(dout)`` calling ``backward(dout, cache)`` at the inputs."""
    cache = forward(**inputs)[-1]
    return fastfd.check_vjp(first(forward), lambda dout: backward(dout, cache), inputs,
                            **kwargs)


def summary(label: str, report) -> None:
    failed = report.failed
    names = ", ".join(failed[:4]) + (f", ... ({len(failed) - 4} more)" if len(failed) > 4 else "")
    extra = f"  kinks {len(report.kinks)}" if report.kinks else ""
    print(f"  {label:<40} {report.verdict.upper():<5} checked {report.n_checked:>4}  "
          f"evals {report.n_evals:>5}  {report.elapsed_s:6.2f} s{extra}"
          + (f"\n      failing: {names}" if failed else ""))


def layer_checks() -> dict:
    rng = np.random.default_rng(0)
    out: dict = {}
    given: dict = {}  # the inputs, for whoever wants to work out which entries a bug touches

    # affine: x (4, 2, 3) flattened to 6 features, 5 outputs
    inputs = {"x": rng.normal(size=(4, 2, 3)), "w": rng.normal(size=(6, 5)),
              "b": rng.normal(size=5)}
    given["affine"] = inputs
    out["affine"] = {"right": vjp(affine_forward, affine_backward, inputs),
                     "bug": vjp(affine_forward, affine_backward_bug, inputs)}

    # ReLU: no input exactly at 0 here (the kinks example covers that)
    inputs = {"x": rng.normal(size=(4, 6))}
    given["relu"] = inputs
    out["relu"] = {"right": vjp(relu_forward, relu_backward, inputs),
                   "bug": vjp(relu_forward, relu_backward_bug, inputs)}

    # batch normalization, training mode: x (6, 4) with non-trivial mean and scale
    inputs = {"x": 3.0 * rng.normal(size=(6, 4)) + 2.0, "gamma": rng.normal(size=4),
              "beta": rng.normal(size=4)}
    given["batchnorm"] = inputs
    out["batchnorm"] = {"right": vjp(batchnorm_forward, batchnorm_backward, inputs),
                        "alt": vjp(batchnorm_forward, batchnorm_backward_alt, inputs),
                        "bug": vjp(batchnorm_forward, batchnorm_backward_alt_bug, inputs)}

    # dropout, p = 0.6, with a fixed boolean mask (passed through, not differentiated)
    x = rng.normal(size=(5, 6))
    inputs = {"x": x, "mask": rng.random(x.shape) < 0.6, "p": 0.6}
    given["dropout"] = inputs
    out["dropout"] = {"right": vjp(dropout_forward, dropout_backward, inputs),
                      "bug": vjp(dropout_forward, dropout_backward_bug, inputs)}

    # convolution at the notebook's shape; conv_param is passed through
    inputs = {"x": rng.normal(size=(2, 3, 8, 8)), "w": rng.normal(size=(3, 3, 3, 3)),
              "b": rng.normal(size=3), "conv_param": {"stride": 1, "pad": 1}}
    given["conv"] = inputs
    out["conv"] = {"right": vjp(conv_forward_naive, conv_backward_naive, inputs),
                   "bug": vjp(conv_forward_naive, conv_backward_naive_bug, inputs)}

    # max pooling 2x2 stride 2, without ties (continuous x) ...
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    inputs = {"x": rng.normal(size=(2, 2, 4, 4)), "pool_param": pool}
    given["maxpool"] = inputs
    out["maxpool"] = {"right": vjp(max_pool_forward_naive, max_pool_backward_naive, inputs),
                      "bug": vjp(max_pool_forward_naive, max_pool_backward_bug, inputs)}
    # ... and with ties: repeated values put the maximum twice in five windows and three
    # times in one (13 tied entries; fastfd tests up to 16 kink entries pairwise for ties)
    tied_x = rng.normal(size=(2, 2, 4, 4))
    ties = [((0, 0, 0, 0), [(0, 1)]), ((0, 1, 1, 0), [(1, 1)]), ((1, 0, 0, 1), [(1, 0)]),
            ((1, 1, 1, 1), [(0, 0)]), ((0, 0, 1, 1), [(0, 1)]), ((1, 0, 1, 0), [(0, 1), (1, 0)])]
    tied_windows = []
    for (n, c, i, j), copies in ties:
        window = tied_x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]  # a view: edits tied_x
        a, bb = np.unravel_index(np.argmax(window), (2, 2))
        for a2, b2 in copies:
            if (a2, b2) == (a, bb):
                a2, b2 = 1 - a2, 1 - b2
            window[a2, b2] = window[a, bb]
        tied_windows.append(sorted((n, c, 2 * i + r, 2 * j + q) for r in range(2)
                                   for q in range(2) if window[r, q] == window.max()))
    inputs = {"x": tied_x, "pool_param": pool}
    given["maxpool_ties"] = inputs
    out["maxpool_ties"] = {
        "tied_windows": tied_windows,
        "first": vjp(max_pool_forward_naive, max_pool_backward_naive, inputs),
        "every": vjp(max_pool_forward_naive, max_pool_backward_every_tie, inputs)}

    # vanilla RNN step: N=3, D=4, H=5
    inputs = {"x": rng.normal(size=(3, 4)), "prev_h": rng.normal(size=(3, 5)),
              "Wx": 0.5 * rng.normal(size=(4, 5)), "Wh": 0.5 * rng.normal(size=(5, 5)),
              "b": rng.normal(size=5)}
    given["rnn"] = inputs
    out["rnn"] = {"right": vjp(rnn_step_forward, rnn_step_backward, inputs),
                  "bug": vjp(rnn_step_forward, rnn_step_backward_bug, inputs)}

    # LSTM step: two outputs (next_h, next_c), so dout is a tuple (dnext_h, dnext_c)
    N, D, H = 3, 4, 5
    inputs = {"x": rng.normal(size=(N, D)), "prev_h": rng.normal(size=(N, H)),
              "prev_c": rng.normal(size=(N, H)), "Wx": 0.5 * rng.normal(size=(D, 4 * H)),
              "Wh": 0.5 * rng.normal(size=(H, 4 * H)), "b": 0.5 * rng.normal(size=4 * H)}
    cache = lstm_step_forward(**inputs)[-1]

    def lstm(**kw):
        return lstm_step_forward(**kw)[:2]

    dout = (rng.normal(size=(N, H)), rng.normal(size=(N, H)))
    given["lstm"] = inputs
    out["lstm"] = {
        "right": fastfd.check_vjp(lstm, lambda d: lstm_step_backward(*d, cache), inputs,
                                  dout=dout),
        "bug": fastfd.check_vjp(lstm, lambda d: lstm_step_backward_bug(*d, cache), inputs,
                                dout=dout)}
    return out, given


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted; the example is small")
    parser.parse_args(argv)
    print("fastfd.check_vjp on cs231n-style layers (right backward, then one planted bug)\n")
    results, given = layer_checks()
    labels = {"right": "backward", "alt": "simplified backward", "bug": "planted bug",
              "first": "ties, gradient to the first maximum",
              "every": "ties, gradient to every tied maximum"}
    for layer, reports in results.items():
        print(f"{layer}")
        for key, report in reports.items():
            if key == "tied_windows":
                print(f"  {len(report)} of 16 pooling windows have a tied maximum "
                      f"({sum(map(len, report))} tied entries)")
                continue
            summary(labels[key] + ("" if key != "bug" else
                                   f": {BUGS[layer]}"), report)
    print("\nThe planted bug of each layer, caught by name:")
    for layer in BUGS:
        bug = results[layer]["bug"]
        print(f"  {layer:<10} {bug.failed[0]:<16} ({len(bug.failed)} failing entries)")
    ties = results["maxpool_ties"]
    print("\nMax pooling with ties: routing the gradient to the first maximum is a valid")
    print("subgradient (the tied entries are kinks whose one-sided differences bracket it):")
    print(f"  {ties['first'].verdict.upper()}, {len(ties['first'].kinks)} kink entries; routing "
          f"it to every tied maximum doubles it: {ties['every'].verdict.upper()} at "
          f"{', '.join(ties['every'].failed[:3])}")
    print("\nThe conv layer's report with the bug:")
    print("\n".join("    " + line for line in str(results["conv"]["bug"]).splitlines()))
    results["inputs"] = given
    return results


BUGS = {
    "affine": "db = dout[0]",
    "relu": "leaky 0.01 slope",
    "batchnorm": "dgamma uses x - mu",
    "dropout": "forgets 1 / p",
    "conv": "dxpad = instead of +=",
    "maxpool": "argmax row/col swapped",
    "rnn": "dWh skips tanh'",
    "lstm": "dprev_c = dc (no f)",
}


if __name__ == "__main__":
    main()
