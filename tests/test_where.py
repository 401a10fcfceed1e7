"""Exact derivatives through ``where``: the branch not taken gives no NaN (docs/where.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpdiff as xd

xp = xd.numpy

X = np.array([-1.5, 0.0, 0.7, 2.0, 4.0])
ONEHOT = np.eye(4)[[0, 0, 2, 2, 2, 3]]  # 6 values in 4 groups; group 1 is empty
V = np.array([0.3, -1.2, 2.0, 0.5, -0.7, 1.1])
W4 = np.array([0.4, -0.9, 1.3, 0.8])


def _sqrt(x):
    return xp.where(x > 0, xp.sqrt(x), 0.0)


def _sinc(x):
    return xp.where(x != 0, xp.sin(x) / x, 1.0)


def _group_mean(v):
    s = xp.matmul(v, ONEHOT)
    n = xp.sum(xp.asarray(ONEHOT), axis=0)
    return xp.where(n > 0, s / n, 0.0) * W4


def _d_sqrt(x):
    pos = np.where(x > 0, x, 1.0)
    return np.where(x > 0, 0.5 / np.sqrt(pos), 0.0), np.where(x > 0, -0.25 * pos ** -1.5, 0.0)


def _d_sinc(x):
    s = np.where(x != 0, x, 1.0)
    d1 = (s * np.cos(s) - np.sin(s)) / s ** 2
    d2 = (-s ** 2 * np.sin(s) - 2 * s * np.cos(s) + 2 * np.sin(s)) / s ** 3
    return np.where(x != 0, d1, 0.0), np.where(x != 0, d2, 0.0)


def _d_group(v):
    n = ONEHOT.sum(axis=0)
    per_group = np.where(n > 0, W4 / np.where(n > 0, n, 1.0), 0.0)
    return ONEHOT @ per_group, np.zeros_like(v)


# (elementwise-or-vector function, input, derivative of sum(f): first and second order)
PATTERNS = {
    "where(x > 0, sqrt(x), 0)": (_sqrt, X, _d_sqrt),
    "where(x != 0, sin(x) / x, 1)": (_sinc, X, _d_sinc),
    "where(n > 0, s / n, 0) with an empty group": (_group_mean, V, _d_group),
}


def _total(f):
    return lambda x: xp.sum(f(x))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # the discarded branches warn in NumPy's own primal
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("transform", ["grad", "jacfwd", "jacrev", "jacobian_fwd", "jacobian_rev"])
def test_first_order(name, transform):
    f, x, d = PATTERNS[name]
    g = _total(f)
    t = {"grad": xd.grad, "jacfwd": xd.jacfwd, "jacrev": xd.jacrev,
         "jacobian_fwd": lambda h: xd.jacobian(h, mode="fwd"),
         "jacobian_rev": lambda h: xd.jacobian(h, mode="rev")}[transform]
    np.testing.assert_allclose(t(g)(x), d(x)[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", PATTERNS)
def test_jvp(name):
    f, x, d = PATTERNS[name]
    t = np.linspace(0.5, 1.5, x.size)
    _, out = xd.jvp(_total(f), (x,), (t,))
    np.testing.assert_allclose(out, d(x)[0] @ t, rtol=1e-12)


@pytest.mark.parametrize("name", PATTERNS)
def test_hessian(name):
    f, x, d = PATTERNS[name]
    H = xd.hessian(_total(f))(x)
    if name.startswith("where(n"):
        np.testing.assert_array_equal(H, 0.0)
    else:
        np.testing.assert_allclose(H, np.diag(d(x)[1]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", PATTERNS)
def test_vmap_grad_and_batch_ndim(name):
    f, x, d = PATTERNS[name]
    batch = np.stack([x, x[::-1], x * 0.5])
    want = np.stack([d(b)[0] for b in batch])
    np.testing.assert_allclose(xd.vmap(xd.grad(_total(f)))(batch), want, rtol=1e-12, atol=1e-15)
    per_sample = xd.jacobian(lambda xs: xp.sum(f(xs), axis=-1), batch_ndim=1)(batch)
    np.testing.assert_allclose(per_sample, want, rtol=1e-12, atol=1e-15)
    H = xd.hessian(lambda xs: xp.sum(f(xs), axis=-1), batch_ndim=1)(batch)
    want_h = np.stack([np.diag(d(b)[1]) for b in batch])
    np.testing.assert_allclose(H, want_h, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("transform", [xd.jacfwd, xd.jacrev])
def test_vector_output_structured(transform):
    # single-input Jacobians run on structured (Diag) tangents and cotangents
    want = np.diag(_d_sqrt(X)[0])
    np.testing.assert_allclose(transform(_sqrt)(X), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(transform(lambda x: xp.exp(_sqrt(x)) * 2.0)(X),
                               np.diag(2.0 * np.exp(np.sqrt(np.maximum(X, 0))) * _d_sqrt(X)[0]),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("transform", [xd.jacfwd, xd.jacrev, lambda f: xd.jacobian(f, mode="fwd")])
def test_forward_and_reverse_agree_downstream_of_where(transform):
    # sqrt'(0) is infinite, but where x <= 0 the function is the constant sqrt(0):
    # the tangent of the constant branch is a masked zero in forward mode too
    f = lambda x: xp.sqrt(xp.where(x > 0, x, 0.0))  # noqa: E731
    want = np.diag(np.where(X > 0, 0.5 / np.sqrt(np.where(X > 0, X, 1.0)), 0.0))
    np.testing.assert_allclose(transform(f)(X), want, rtol=1e-12, atol=1e-15)


def test_second_order_reverse_over_reverse():
    f = lambda x: xp.where(x > 0, xp.sqrt(x), 0.0)  # noqa: E731
    assert float(xd.grad(xd.grad(f))(np.float64(-1.0))) == 0.0
    assert float(xd.grad(xd.grad(f))(np.float64(4.0))) == pytest.approx(-0.25 / 8)


def test_nan_in_the_selected_values_propagates():
    x = np.array([-1.0, 4.0, np.nan, 9.0])
    c = np.array([True, True, True, False])  # selects sqrt at the negative x and the NaN
    f = lambda x: xp.sum(xp.where(xp.asarray(c), xp.sqrt(x), 0.0))  # noqa: E731
    for t in (xd.grad, xd.jacfwd, xd.jacrev):
        g = t(f)(x)
        assert np.isnan(g[0]) and np.isnan(g[2]), g
        np.testing.assert_array_equal(g[[1, 3]], [0.25, 0.0])
    # a NaN in a factor that multiplies the selected branch
    w = np.array([np.nan, 1.0, 1.0, np.nan])
    g = xd.grad(lambda x: xp.sum(xp.where(x > 0, x * w, 0.0)))(np.array([1.0, 2.0, -1.0, -2.0]))
    assert np.isnan(g[0]) and not np.isnan(g[3]), g
    # an unmasked path reaching the same input keeps its NaN (masked + unmasked is unmasked)
    g = xd.grad(lambda x: xp.sum(_sqrt(x)) + xp.sum(xp.sqrt(x)))(X)
    assert np.isnan(g[0]) and np.isinf(g[1]), g


def test_accumulated_masks_and_broadcasting():
    # two guarded uses of one value: masked where both are
    g = xd.grad(lambda x: xp.sum(_sqrt(x) + xp.where(x > 1, xp.sqrt(x), 0.0)))(X)
    np.testing.assert_allclose(g, _d_sqrt(X)[0] + np.where(X > 1, _d_sqrt(X)[0], 0.0))
    # an operand broadcast along a row: masked where the whole row is not selected
    x = np.array([[-1.0], [4.0], [-2.0]])
    y = np.ones((1, 3))
    c = np.array([[False] * 3, [True] * 3, [True, False, False]])
    f = lambda x: xp.sum(xp.where(xp.asarray(c), xp.sqrt(x) * y, 0.0))  # noqa: E731
    g = xd.grad(f)(x)
    assert g[0, 0] == 0.0 and g[1, 0] == pytest.approx(0.75) and np.isnan(g[2, 0]), g


def test_writes_mask_what_they_overwrite():
    x = np.array([-1.0, 4.0, -9.0, 16.0])

    def basic(x):
        y = xp.sqrt(x)
        y[0] = 0.0  # set_at
        y[2:3] = x[2:3]
        return xp.sum(y)

    def masked(x):
        y = xp.sqrt(x)
        neg = x < 0
        y[neg] = x[neg] * 2.0  # a scatter of a data-dependent number of values
        return xp.sum(y)

    for t in (xd.grad, xd.jacrev, xd.jacfwd):
        np.testing.assert_array_equal(t(basic)(x), [0.0, 0.25, 1.0, 0.125])
        np.testing.assert_array_equal(t(masked)(x), [2.0, 0.25, 2.0, 0.125])
    np.testing.assert_array_equal(xd.hessian(basic)(x), np.diag([0.0, -1 / 32, 0.0, -1 / 256]))
    batch = np.stack([x, x * 4.0])
    want = np.array([[0.0, 0.25, 1.0, 0.125], [0.0, 0.125, 1.0, 0.0625]])
    per_sample = xd.jacobian(lambda xs: xp.sum(basic_rows(xs), axis=-1), batch_ndim=1)(batch)
    np.testing.assert_allclose(per_sample, want, rtol=1e-15)
    np.testing.assert_allclose(xd.vmap(xd.grad(basic))(batch), want, rtol=1e-15)


def basic_rows(x):
    y = xp.sqrt(x)
    y[..., 0] = 0.0
    y[..., 2:3] = x[..., 2:3]
    return y
