"""VJP, JVP, Jacobian, Hessian and HVP checks: right derivatives pass, planted bugs fail and are
named, kinks are handled as in check_gradient, bad inputs get clear errors."""

import numpy as np
import pytest

import fastfd
from fastfd.errors import NotComplexSafeError

sparse = pytest.importorskip("scipy.sparse")
rng = np.random.default_rng(0)


# ---------------------------------------------------------------- VJP


def affine_inputs():
    r = np.random.default_rng(1)
    return {"x": r.normal(size=(4, 5)), "w": r.normal(size=(5, 3)), "b": r.normal(size=3)}


def affine_forward(x, w, b):
    return x @ w + b


def test_vjp_affine_right_passes_and_a_bug_is_named():
    inputs = affine_inputs()
    x, w = inputs["x"], inputs["w"]
    right = fastfd.check_vjp(affine_forward,
                             lambda d: (d @ w.T, x.T @ d, d.sum(axis=0)), inputs)
    assert right.verdict == "pass" and right.n_checked == 20 + 15 + 3
    wrong_dw = lambda d: {"dx": d @ w.T, "dw": x.T @ d * np.r_[1, 1, 1, 1, 1.1][:, None],  # noqa: E731
                          "db": d.sum(axis=0)}
    report = fastfd.check_vjp(affine_forward, wrong_dw, inputs)
    assert report.verdict == "fail"
    assert set(report.failed) == {f"dw[4, {j}]" for j in range(3)}


def test_vjp_relu_with_dead_units_and_kinks():
    x = np.array([[-1.0, 0.0, 2.0], [0.5, -0.3, 0.0]])
    forward = lambda x: np.maximum(x, 0)  # noqa: E731
    report = fastfd.check_vjp(forward, lambda d: d * (x > 0), {"x": x})
    assert report.verdict == "pass" and set(report.kinks) == {"dx[0, 1]", "dx[1, 2]"}
    leaky = fastfd.check_vjp(forward, lambda d: d * (x >= -0.5), {"x": x})
    assert leaky.verdict == "fail" and "dx[1, 1]" in leaky.failed


def maxpool(x):
    n, h, w = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def maxpool_backward(x, dout, every_tie):
    n, h, w = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2)
    top = windows.max(axis=(2, 4), keepdims=True)
    mask = windows == top
    if not every_tie:  # route to the first maximum of each window only
        flat = mask.transpose(0, 1, 3, 2, 4).reshape(n, h // 2, w // 2, 4)
        first = np.zeros_like(flat)
        first[np.arange(n)[:, None, None], np.arange(h // 2)[None, :, None],
              np.arange(w // 2)[None, None, :], flat.argmax(axis=-1)] = True
        mask = first.reshape(n, h // 2, w // 2, 2, 2).transpose(0, 1, 3, 2, 4)
    dx = mask * dout[:, :, None, :, None]
    return dx.reshape(n, h, w)


def test_vjp_max_pool_ties_first_maximum_passes_every_tie_fails():
    x = np.round(np.random.default_rng(3).normal(size=(2, 4, 4)))  # many ties
    dout = np.random.default_rng(4).normal(size=(2, 2, 2))
    first = fastfd.check_vjp(maxpool, lambda d: maxpool_backward(x, d, False), {"x": x},
                             dout=dout, directions=3)
    assert first.verdict == "pass" and first.kinks
    every = fastfd.check_vjp(maxpool, lambda d: maxpool_backward(x, d, True), {"x": x},
                             dout=dout)
    assert every.verdict == "fail"


def test_vjp_tuple_output_and_passthrough_inputs():
    r = np.random.default_rng(5)
    inputs = {"x": r.normal(size=(3, 4)), "idx": np.array([0, 2, 1]), "scale": 2.0}

    def forward(x, idx, scale):
        return scale * x[np.arange(3), idx], np.tanh(x)

    def backward(douts):
        d1, d2 = douts
        dx = (1 - np.tanh(inputs["x"]) ** 2) * d2
        dx[np.arange(3), inputs["idx"]] += inputs["scale"] * d1
        return {"x": dx}

    assert fastfd.check_vjp(forward, backward, inputs).verdict == "pass"
    with pytest.raises(TypeError, match="dout must be a tuple of 2"):
        fastfd.check_vjp(forward, backward, inputs, dout=np.ones(3))
    with pytest.raises(ValueError, match=r"dout 1 has shape \(3, 3\).*\(3, 4\)"):
        fastfd.check_vjp(forward, backward, inputs, dout=(np.ones(3), np.ones((3, 3))))


def test_vjp_bad_inputs_are_clear():
    inputs = affine_inputs()
    backward = lambda d: (d, d)  # noqa: E731
    with pytest.raises(ValueError, match="2 gradients for 3 inputs"):
        fastfd.check_vjp(affine_forward, backward, inputs)
    with pytest.raises(ValueError, match=r"wrt names \['z'\]"):
        fastfd.check_vjp(affine_forward, backward, inputs, wrt="z")
    with pytest.raises(ValueError, match="no gradient for input 'b'"):
        fastfd.check_vjp(affine_forward, lambda d: {"x": 1, "w": 1}, inputs)
    with pytest.raises(TypeError, match="inputs must be a dict"):
        fastfd.check_vjp(affine_forward, backward, [1.0])


# ---------------------------------------------------------------- JVP and Jacobians


def F(x):
    return np.array([x[0] * x[1], np.sin(x[2]) * x[0], x[1] ** 2])


def JF(x):
    return np.array([[x[1], x[0], 0], [np.sin(x[2]), 0, x[0] * np.cos(x[2])],
                     [0, 2 * x[1], 0]])


X3 = np.array([0.7, -1.3, 0.4])


def test_jacobian_dense_right_passes_bug_named_and_jvp():
    assert fastfd.check_jacobian(F, JF, X3).verdict == "pass"
    bad = lambda x: JF(x) + np.eye(3)[2][None, :] * np.array([[0], [1e-3], [0]])  # noqa: E731
    report = fastfd.check_jacobian(F, bad, X3)
    assert report.verdict == "fail" and report.failed == ("J[1, x[2]]",)
    assert isinstance(report, fastfd.JacobianCheck) and report.shape == (3, 3)
    jvp = lambda x, v: JF(x) @ v  # noqa: E731
    assert fastfd.check_jvp(F, jvp, X3, tangents=2).verdict == "pass"
    wrong = fastfd.check_jvp(F, lambda x, v: bad(x) @ v, X3)
    assert wrong.verdict == "fail" and all(n.startswith("(J v") for n in wrong.failed)


def bvp(n):
    h = 1.0 / (n + 1)

    def resid(u):
        up, um = np.r_[u[1:], 0.0], np.r_[0.0, u[:-1]]
        return (up - 2 * u + um) / h**2 - np.exp(u)

    def jac(u):
        off = np.full(n - 1, 1 / h**2)
        return sparse.diags([off, -2 / h**2 - np.exp(u), off], [-1, 0, 1], format="csr")

    pattern = sparse.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1])
    return resid, jac, pattern, np.sin(np.linspace(0, 3, n))


def test_banded_jacobian_costs_the_groups_not_n():
    resid, jac, pattern, u = bvp(3000)
    report = fastfd.check_jacobian(resid, jac, u, sparsity=pattern)
    assert report.verdict == "pass" and report.n_groups == 3
    assert report.n_checked == 3 * 3000 - 2
    assert report.n_evals < 80  # noise lines + 2 per group (+ refinement), not 2 n
    J = fastfd.numerical_jacobian(resid, u, sparsity=pattern)
    assert sparse.issparse(J)
    np.testing.assert_allclose(J.toarray(), jac(u).toarray(), rtol=1e-6, atol=1e-3)


def test_banded_jacobian_bug_and_missed_pattern_entries_are_named():
    resid, jac, pattern, u = bvp(600)

    def buggy(v):
        J = jac(v).tolil()
        J[300, 301] *= 1.001
        return J.tocsr()

    report = fastfd.check_jacobian(resid, buggy, u, sparsity=pattern)
    assert report.verdict == "fail" and report.failed == ("J[300, x[301]]",)
    coupled = lambda v: resid(v) + np.r_[np.zeros(599), 100 * v[7]]  # noqa: E731
    missed = fastfd.check_jacobian(coupled, jac, u, sparsity=pattern)
    assert missed.verdict == "fail"
    assert [e.name for e in missed.localized] == ["J[599, x[7]] (outside pattern)"]
    stray = jac(u).tolil()
    stray[3, 400] = 5.0
    outside = fastfd.check_jacobian(resid, stray.tocsr(), u, sparsity=pattern)
    assert outside.verdict == "fail" and "J" in outside.pattern_errors[0]
    assert "at J[3, x[400]]" in outside.pattern_errors[0]


def test_jacobian_kink_is_handled():
    f = lambda x: np.array([np.maximum(x[0], 0.0), x[1] ** 2])  # noqa: E731
    jac = lambda x: np.array([[float(x[0] > 0), 0], [0, 2 * x[1]]])  # noqa: E731
    report = fastfd.check_jacobian(f, jac, np.array([0.0, 1.5]))
    assert report.verdict == "pass" and report.kinks == ("J[0, x[0]]",)


def test_jacobian_bad_inputs_are_clear():
    with pytest.raises(ValueError, match=r"jac has shape \(2, 3\); expected \(3, 3\)"):
        fastfd.check_jacobian(F, np.zeros((2, 3)), X3)
    with pytest.raises(ValueError, match=r"sparsity has shape \(3, 2\), but the Jacobian is"):
        fastfd.check_jacobian(F, JF, X3, sparsity=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="method must be one of 'central', 'complex'"):
        fastfd.numerical_jacobian(F, X3, method="forward4")
    with pytest.raises(NotComplexSafeError):
        fastfd.numerical_jacobian(lambda x: np.abs(x), X3, method="complex")
    with pytest.raises(ValueError, match="backward='dask'|backend='dask'"):
        fastfd.check_jacobian(F, JF, X3, backend="dask")


def test_numerical_jacobian_complex_and_parallel_give_the_serial_numbers():
    exact = JF(X3)
    complex_step = fastfd.numerical_jacobian(F, X3, method="complex")
    np.testing.assert_allclose(complex_step, exact, rtol=1e-15, atol=1e-16)
    serial = fastfd.numerical_jacobian(F, X3)
    for backend in ("threading", "loky"):
        np.testing.assert_array_equal(
            fastfd.numerical_jacobian(F, X3, n_jobs=2, backend=backend), serial)


# ---------------------------------------------------------------- Hessians


A = np.random.default_rng(7).normal(size=(5, 5))
A = A @ A.T


def quartic(x):
    return 0.5 * x @ A @ x + np.sum(x**4)


def quartic_grad(x):
    return A @ x + 4 * x**3


def quartic_hess(x):
    return A + np.diag(12 * x**2)


XH = np.linspace(-1, 1, 5)


def test_hessian_right_passes_wrong_and_asymmetric_fail():
    for grad in (quartic_grad, None):
        assert fastfd.check_hessian(quartic, quartic_hess, XH, grad=grad).verdict == "pass"
    both = lambda x: (quartic(x), quartic_grad(x))  # noqa: E731
    assert fastfd.check_hessian(both, quartic_hess, XH, grad=True).verdict == "pass"
    wrong = lambda x: A + np.diag(6 * x**2)  # noqa: E731
    report = fastfd.check_hessian(quartic, wrong, XH, grad=quartic_grad)
    assert report.verdict == "fail" and "H[x[0], x[0]]" in report.failed
    assert "H[x[2], x[2]]" not in report.failed  # 12 x**2 = 6 x**2 = 0 at x = 0
    skew = lambda x: quartic_hess(x) + np.triu(np.full((5, 5), 1e-2), 1)  # noqa: E731
    asym = fastfd.check_hessian(quartic, skew, XH, grad=quartic_grad)
    assert asym.verdict == "fail" and asym.pattern_errors[0].startswith("hess is not symmetric")
    H = fastfd.numerical_hessian(quartic, XH, grad=quartic_grad)
    np.testing.assert_allclose(H, quartic_hess(XH), rtol=1e-7, atol=1e-7)


def test_hvp_entries_and_rate_three_taylor_test():
    hvp = lambda x, v: quartic_hess(x) @ v  # noqa: E731
    right = fastfd.check_hvp(quartic, hvp, XH, grad=quartic_grad)
    assert right.verdict == "pass" and right.taylor.verdict == "pass"
    assert right.taylor.fitted_slope == pytest.approx(3.0, abs=0.3)
    wrong = lambda x, v: (quartic_hess(x) + 1e-2 * np.eye(5)) @ v  # noqa: E731
    report = fastfd.check_hvp(quartic, wrong, XH, grad=quartic_grad)
    assert report.verdict == "fail" and report.taylor.verdict == "fail"
    assert report.taylor.fitted_slope == pytest.approx(2.0, abs=0.3)
    assert "(H v0)[x[0]]" in report.failed
    assert fastfd.check_hvp(quartic, hvp, XH).taylor is None  # no analytic gradient


def _tied_pairs(k):
    return np.repeat(np.random.default_rng(0).normal(size=k), 2).reshape(k, 2)


def _first_max(dout, k, bug):
    dx = np.zeros((k, 2))
    dx[:, 0] = dout
    if bug:  # pair 0 routes its gradient to both tied maxima
        dx[0, 1] = dout[0]
    return dx


@pytest.mark.parametrize("seed", range(3))
def test_every_tie_is_tested_jointly_up_to_the_limit(seed):
    x = _tied_pairs(20)  # 40 kink entries
    bad = fastfd.check_vjp(lambda x: x.max(axis=1), lambda d: _first_max(d, 20, True),
                           {"x": x}, seed=seed)
    assert bad.verdict == "fail"


def test_kinks_beyond_the_joint_limit_are_weak_and_say_why():
    from fastfd.engine import _MAX_JOINT_KINKS

    k = 40  # 80 kink entries: only _MAX_JOINT_KINKS of them can be tested jointly
    report = fastfd.check_vjp(lambda x: x.max(axis=1), lambda d: _first_max(d, k, False),
                              {"x": _tied_pairs(k)})
    untested = 2 * k - _MAX_JOINT_KINKS
    assert len(report.weak) == untested and len(report.kinks) == _MAX_JOINT_KINKS
    assert report.verdict == "pass"  # most entries confirmed; the rest named as weak
    assert any(f"{untested} kink entries are weak because they were not tested jointly" in r
               for r in report.reasons)


def test_sampled_jacobian_directions_catch_a_wrong_entry_outside_the_sample():
    r = np.random.default_rng(9)
    M = r.normal(size=(30, 2000))
    f = lambda x: M @ x + 0.1 * np.sin(x[:30])  # noqa: E731
    jac = lambda x: M + np.pad(np.diag(0.1 * np.cos(x[:30])), ((0, 0), (0, 1970)))  # noqa: E731
    x = r.normal(size=2000)
    right = fastfd.check_jacobian(f, jac, x, sample=50)
    assert right.verdict == "pass" and right.sampled and len(right.directions) == 3 * 30
    wrong = lambda x: jac(x) + 5.0 * (np.arange(30)[:, None] == 3) * (np.arange(2000) == 1234)  # noqa: E731
    report = fastfd.check_jacobian(f, wrong, x, sample=50, seed=0)
    assert report.verdict == "fail"
    assert "J[3, x[1234]]" not in report.failed  # not in the sample of 50 columns
    assert any(n.startswith("(J v") for n in report.failed)  # the directions saw it
