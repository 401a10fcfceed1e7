"""Views and in-place writes: a write through a view reaches its base and every other
live view of it, as NumPy's views do, in every transformation, with exact derivatives;
the aliasing xpdiff does not model raises an ``AliasingError`` (docs/namespace-functions.md).

Each program is run on plain arrays (the reference: NumPy and array-api-strict give
views) and on traced ones."""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd
from xpdiff import AliasingError
from xpdiff.backend import to_host
from xpdiff.testing import check_grads

RNG = np.random.default_rng(0)
X = RNG.standard_normal(5)
XB = RNG.standard_normal((3, 5))  # a batch of three samples


def _ns(x):
    return x.__array_namespace__()


# --- the programs (per sample: indexing along the last dims only, so batch_ndim works) --------

def slice_add(x):
    """The minimal case: ``v = y[1:]; v += 10`` must change ``y``."""
    y = x * 1.0
    v = y[..., 1:]
    v += 10.0 * x[..., 1:]
    return y


def view_of_view(x):
    y = x * 2.0
    v = y[..., 1:]
    w = v[..., ::2]  # a strided view of a view
    w *= x[..., 1::2]
    return y * v[..., :1]


def siblings(x):
    """Two views of one base: a write through one is seen by the other and the base."""
    y = x * 1.0
    a = y[..., :3]
    b = y[..., 2:]
    a += x[..., :3] ** 2
    b[..., 0] = x[..., 4] * 3.0  # b[0] is a[2]
    return a * 1.0 + b[..., :3] * 2.0 + y[..., 1:4]


def base_write(x):
    """A write to the base (a slice assignment and an in-place operator) is seen by the views."""
    y = x * 1.0
    v = y[..., 1:4]
    e = y[..., None, 2]  # an int and None: shape (..., 1)
    y[..., 2] = x[..., 0] ** 3
    y *= x
    return v + e


def mixed_layout(x):
    """Views through expand_dims, flip, squeeze and a full slice."""
    xp = _ns(x)
    y = x * 1.0
    f = xp.flip(y, axis=-1)
    e = xp.expand_dims(y, axis=-1)
    s = xp.squeeze(e, axis=-1)
    whole = y[...]
    f[..., 0] = x[..., 0] * 5.0  # y[-1]
    e[..., 1, 0] += x[..., 1]  # y[1]
    s[..., 2] *= x[..., 2]
    whole[..., 3] = -whole[..., 3]
    return y * f + s


PROGRAMS = [slice_add, view_of_view, siblings, base_write, mixed_layout]


def _host(a):
    return np.asarray(to_host(a))


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.__name__)
def test_values_match_numpy_views(backend, prog):
    x = backend.asarray(X)
    want = prog(X.copy())  # NumPy's views
    np.testing.assert_allclose(_host(prog(x)), want)  # plain arrays of the backend
    out, _ = xd.jvp(prog, (x,), (x,))
    np.testing.assert_allclose(_host(out), want)
    out, _ = xd.vjp(prog, x)
    np.testing.assert_allclose(_host(out), want)
    np.testing.assert_allclose(_host(xd.vmap(prog)(backend.asarray(XB))),
                               np.stack([prog(r.copy()) for r in XB]))


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.__name__)
def test_derivatives_exact(prog):
    check_grads(prog, (X,), order=2)
    J = xd.jacfwd(prog)(X)
    np.testing.assert_allclose(xd.jacrev(prog)(X), J, rtol=1e-12, atol=1e-12)
    loop = np.stack([xd.jacobian(prog)(r) for r in XB])
    np.testing.assert_allclose(xd.jacobian(prog, batch_ndim=1)(XB), loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xd.vmap(xd.jacrev(prog))(XB), loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xd.vmap(xd.jacfwd(prog))(XB), loop, rtol=1e-12, atol=1e-12)

    def scalar(x):
        return _ns(x).sum(prog(x) ** 2, axis=-1)

    H = xd.hessian(scalar)(X)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-10)
    Hl = np.stack([xd.hessian(scalar)(r) for r in XB])
    np.testing.assert_allclose(xd.hessian(scalar, batch_ndim=1)(XB), Hl, rtol=1e-10, atol=1e-10)
    g = xd.grad(scalar)
    eps = 1e-6
    fd = np.stack([(g(X + eps * e) - g(X - eps * e)) / (2 * eps) for e in np.eye(5)], axis=-1)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6)


def test_minimal_repro_in_every_transform():
    want = np.array([0.0, 10.0, 10.0])

    def f(x):
        y = x * 1.0
        v = y[1:]
        v += 10.0
        return y

    x = np.zeros(3)
    np.testing.assert_allclose(xd.jvp(f, (x,), (x,))[0], want)
    np.testing.assert_allclose(xd.vjp(f, x)[0], want)
    np.testing.assert_allclose(xd.vmap(f)(np.zeros((2, 3))), [want, want])
    np.testing.assert_allclose(xd.value_and_grad(lambda x: _ns(x).sum(f(x)))(x)[0], 20.0)
    np.testing.assert_allclose(xd.jacfwd(f)(x), np.eye(3))
    np.testing.assert_allclose(xd.jacrev(f)(x), np.eye(3))
    y = xd.DiffArray(x) * 1.0  # the eager API
    v = y[1:]
    v += 10.0
    np.testing.assert_allclose(y.value, want)


def test_transpose_views():
    def f(x):
        xp = _ns(x)
        y = xp.reshape(x, (2, 3), copy=True) * 1.0
        t = y.T
        m = xp.matrix_transpose(y)
        p = xp.permute_dims(y, (1, 0))
        t[0, 1] = 7.0 * x[0]
        m[2] *= x[1]
        return p * 1.0, y

    x = np.arange(1.0, 7.0)
    p, y = f(x.copy())
    outs, pull = xd.vjp(f, x)
    np.testing.assert_allclose(outs[0], p)
    np.testing.assert_allclose(outs[1], y)
    check_grads(lambda x: f(x)[1], (x,), order=2)


def test_broadcast_to_is_a_read_only_view():
    def f(x):
        xp = _ns(x)
        y = x * 1.0
        b = xp.broadcast_to(y, (2, 3))
        y[0] = 5.0  # seen by the broadcast view, as in NumPy
        return b

    np.testing.assert_allclose(xd.jacrev(f)(np.ones(3))[1], np.diag([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="read-only"):  # NumPy refuses too
        f(np.ones(3)).__setitem__(0, 1.0)

    def g(x):
        b = _ns(x).broadcast_to(x * 1.0, (2, 3))
        b[0, 0] = 1.0

    with pytest.raises(AliasingError, match="read-only view made by broadcast_to"):
        xd.grad(lambda x: g(x) or _ns(x).sum(x))(np.ones(3))


def test_reshape_aliasing_is_refused_while_both_are_alive():
    """Whether NumPy's reshape is a view depends on the memory layout: a write to either
    array while both are alive raises, naming reshape and the fix."""
    def to_result(x):
        y = x * 1.0
        r = _ns(x).reshape(y, (2, 2))
        r[0, 0] = 1.0
        return y

    def to_base(x):
        y = x * 1.0
        r = _ns(x).reshape(y, (2, 2))
        y[0] = 1.0
        return r

    for f in (to_result, to_base):
        with pytest.raises(AliasingError, match=r"reshape.*copy=True"):
            xd.jacrev(f)(np.ones(4))

    def fine(x):
        xp = _ns(x)
        r = xp.reshape(x * 1.0, (2, 2))  # the base is a temporary: nothing else sees the write
        r[0, 0] = x[3]
        c = xp.reshape(r, (4,), copy=True)
        c[1] = 0.0
        v = xp.reshape(r, (4,), copy=False)  # never a copy: a view
        v[2] = 2.0 * x[0]
        return xp.concat([c, xp.reshape(r, (4,), copy=True)])

    x = np.arange(1.0, 5.0)
    np.testing.assert_allclose(xd.jvp(fine, (x,), (x,))[0], [4, 0, 3, 4, 4, 2, 2, 4])
    check_grads(fine, (x,), order=2)


def test_advanced_indexing_gives_a_copy_as_in_numpy():
    def f(x):
        xp = _ns(x)
        y = x * 1.0
        c = y[xp.asarray([0, 2])]
        c += 100.0
        return y

    x = np.arange(3.0)
    np.testing.assert_allclose(xd.jvp(f, (x,), (x,))[0], f(x))
    np.testing.assert_allclose(f(x), x)


def test_views_of_an_eager_leaf_are_read_only():
    x = xd.DiffArray(np.arange(3.0))
    v = x[1:]
    with pytest.raises(TypeError, match="in-place update"):
        v += 1.0
    np.testing.assert_allclose(x.value, [0.0, 1.0, 2.0])
    y = x * 2.0
    w = y[:2]
    w *= x[:2]
    np.testing.assert_allclose(y.value, [0.0, 2.0, 4.0])
    np.testing.assert_allclose(y.to(x, jacobian=True).value, np.diag([0.0, 4.0, 2.0]))


def test_dead_views_are_not_kept():
    """A long-lived base does not accumulate references to views that are gone."""
    kept = []

    def g(x):
        y = x * 1.0
        for i in range(1000):
            y[i % 3:]
        kept.append(len(y._view.children))
        return y

    xd.jvp(g, (X[:3],), (X[:3],))
    assert kept[0] <= 32


def test_long_chains_of_views():
    def f(x):
        y = x * 1.0
        v = y
        for _ in range(3000):
            v = v[..., :]  # a view of a view of ...
        v[..., 0] = x[..., 1] * 2.0
        return y

    x = np.arange(3.0)
    np.testing.assert_allclose(xd.jacrev(f)(x), [[0, 2, 0], [0, 1, 0], [0, 0, 1]])


def test_broadcast_arrays_returns_unbroadcast_arrays_themselves():
    def f(x):
        xp = _ns(x)
        y = x * 1.0
        a, b = xp.broadcast_arrays(y, x[:1])
        assert a is y
        a[0] = 2.0 * x[1]  # writable: it is y
        with pytest.raises(AliasingError, match="broadcast_to"):
            b[0] = 1.0
        return y

    x = np.arange(1.0, 4.0)
    np.testing.assert_allclose(xd.jacrev(f)(x), [[0, 2, 0], [0, 1, 0], [0, 0, 1]])


def test_copy_of_a_view_is_independent():
    import copy

    def f(x):
        y = x * 1.0
        c = copy.copy(y[1:])
        c += 10.0
        return y + 0.0, c

    (y, c), _ = xd.vjp(f, np.zeros(3))
    np.testing.assert_allclose(y, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(c, [10.0, 10.0])


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.__name__)
def test_views_under_jit(prog):
    """The staged program replays the writes through views (values and Jacobians)."""
    f, J = xd.jit(prog), xd.jit(xd.jacrev(prog))
    for k in range(3):
        x = X + k
        np.testing.assert_allclose(f(x), prog(x.copy()))
        np.testing.assert_allclose(J(x), xd.jacrev(prog)(x), rtol=1e-12, atol=1e-12)
