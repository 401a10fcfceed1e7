"""Advanced indexing, in-place patterns, sorting/searching/set functions: values against
NumPy, derivatives (both scatter-add paths), vmap, batch_ndim and errors.

Functions that check_grads / check_vmap also run on raw arrays write ``_set(y, k, v)``
and ``_get(x, k)`` (``y[k] = v`` and ``x[k]`` on traced arrays; xpdiff's indexing on raw
ones, since array-api-strict itself refuses array writes and arrays mixed with slices)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpdiff as xd
from xpdiff import MixingError
from xpdiff.namespaces import namespace_for
from xpdiff.rules import indexing
from xpdiff.rules.indexing import DataDependentShapeError, _getitem_fn, _setitem_fn
from xpdiff.testing import check_grads, check_vmap
from xpdiff.testing.optable.more import _get, _set

RNG = np.random.default_rng(0)
X3 = RNG.standard_normal((3, 4, 5))
A = np.array([0, 2, -1])
M2 = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, True]])

# NumPy-style keys: arrays with ints, slices, None and ..., adjacent and not, broadcasting
KEYS = [
    (A,), (slice(None), A), (Ellipsis, A), (A, slice(1, 3)), (A, 1), (1, slice(None), A),
    (slice(None), 1, np.array([0, 4])), (np.array([[1], [2]]), A), (Ellipsis, np.array([[1], [2]]), A),
    (A, None, 2), (M2,), (Ellipsis, M2[0], slice(None)), (slice(None), M2[0], 0), ([0, 1],),
    (A, Ellipsis, A), (None, A, slice(None, None, -1)), (np.array(1), A), (A, A[::-1], A),
]


def _key_for(backend, key):
    def conv(k):
        if isinstance(k, np.ndarray):
            return backend.asarray(k, dtype=k.dtype)
        return k

    return tuple(conv(k) for k in key)


def _xp(backend):
    return namespace_for(backend.xp)


@pytest.mark.parametrize("key", KEYS, ids=[str(i) for i in range(len(KEYS))])
def test_getitem_matches_numpy_and_vjp_accumulates(backend, key):
    k = _key_for(backend, key)
    x = backend.asarray(X3)
    want = X3[key]
    f = lambda x: x[k]
    out, tout = xd.jvp(f, (x,), (x,))
    np.testing.assert_allclose(backend.to_numpy(out), want)
    np.testing.assert_allclose(backend.to_numpy(tout), want)
    g = RNG.standard_normal(want.shape)
    _, pull = xd.vjp(f, x)
    ref = np.zeros_like(X3)
    np.add.at(ref, key, g)  # repeated indices accumulate
    np.testing.assert_allclose(backend.to_numpy(pull(backend.asarray(g))[0]), ref)


@pytest.mark.parametrize("key", KEYS, ids=[str(i) for i in range(len(KEYS))])
def test_setitem_matches_numpy(backend, key):
    k = _key_for(backend, key)
    v = RNG.standard_normal(X3[key].shape)

    def f(x, v):
        return _set(x * 1.0, k, v)

    want = X3.copy()
    want[key] = v
    got = xd.jvp(f, (backend.asarray(X3), backend.asarray(v)), (backend.asarray(X3), backend.asarray(v)))
    np.testing.assert_allclose(backend.to_numpy(got[0]), want)
    if key is KEYS[0] or key is KEYS[7]:
        check_grads(f, (backend.asarray(X3), backend.asarray(v)), order=2)


@st.composite
def _shape_and_key(draw):
    """A shape and a NumPy-style key: ints, slices, None, one ..., integer arrays
    (possibly repeated, negative or broadcasting) and boolean masks."""
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    key, d, ell = [], 0, False
    while d < nd:
        kind = draw(st.sampled_from(["int", "slice", "arr", "arr2", "none", "ell", "mask", "stop"]))
        n = shape[d]
        if kind == "stop":
            break
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
            d += 1
        elif kind == "slice":
            bound = st.one_of(st.none(), st.integers(-n - 1, n + 1))
            key.append(slice(draw(bound), draw(bound), draw(st.sampled_from([None, -2, -1, 1, 2]))))
            d += 1
        elif kind == "arr":
            key.append(np.array(draw(st.lists(st.integers(-n, n - 1), max_size=3)), dtype=np.int64))
            d += 1
        elif kind == "arr2":
            key.append(np.array(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2))).reshape(2, 1))
            d += 1
        elif kind == "none":
            key.append(None)
        elif kind == "ell" and not ell:
            key.append(Ellipsis)
            ell = True
            d = nd - draw(st.integers(0, nd - d))
        elif kind == "mask":
            k = draw(st.integers(1, nd - d))
            size = int(np.prod(shape[d:d + k]))
            bits = draw(st.lists(st.booleans(), min_size=size, max_size=size))
            key.append(np.array(bits).reshape(shape[d:d + k]))
            d += k
    return shape, tuple(key)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_shape_and_key(), st.integers(0, 2**31))
def test_random_keys_match_numpy(case, seed):
    """Reads and writes (repeated destinations: the last write wins, as NumPy does) on
    random keys, through xpdiff's indexing on plain arrays and under jvp."""
    shape, key = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    try:
        want = x[key]
    except (IndexError, ValueError):
        return
    np.testing.assert_array_equal(_getitem_fn(x, key), want)
    v = rng.standard_normal(want.shape)
    w = x.copy()
    w[key] = v
    np.testing.assert_array_equal(_setitem_fn(x, key, v), w)

    def f(x, v):
        y = x * 1.0
        y[key] = v
        return y, x[key]

    (y, r), (ty, tr) = xd.jvp(f, (x, v), (x, v))
    np.testing.assert_array_equal(y, w)
    np.testing.assert_array_equal(ty, w)
    np.testing.assert_array_equal(tr, want)


def test_setitem_repeated_indices_last_write_wins(backend):
    idx = backend.asarray([0, 1, 0, 3, 0], dtype=np.int64)

    def f(x, v):
        return _set(x * 1.0, idx, v)

    x, v = backend.asarray([1.0, 2.0, 3.0, 4.0]), backend.asarray([10.0, 20.0, 30.0, 40.0, 50.0])
    np.testing.assert_allclose(backend.to_numpy(f(x, v)), [50.0, 20.0, 3.0, 40.0])
    for mode in ("fwd", "rev"):
        jx, jv = xd.jacobian(f, argnums=(0, 1), mode=mode)(x, v)
        np.testing.assert_allclose(backend.to_numpy(jx), np.diag([0.0, 0.0, 1.0, 0.0]))
        want = np.zeros((4, 5))
        want[0, 4] = want[1, 1] = want[3, 3] = 1.0  # only the last write to 0 (v[4]) counts
        np.testing.assert_allclose(backend.to_numpy(jv), want)
    check_grads(f, (x, v), order=2)


def test_setitem_repeated_indices_under_vmap_with_batched_indices(backend):
    xp = _xp(backend)
    idx = backend.asarray([[0, 0, 2], [1, 2, 1]], dtype=np.int64)

    def f(x, v, i):
        y = _set(x * 1.0, i, v)
        return xp.sum(y * y)

    x = backend.asarray(RNG.standard_normal((2, 4)))
    v = backend.asarray(RNG.standard_normal((2, 3)))
    check_vmap(f, (x, v, idx))
    g = xd.vmap(xd.grad(f, argnums=(0, 1)))(x, v, idx)
    for b in range(2):
        gb = xd.grad(f, argnums=(0, 1))(x[b, ...], v[b, ...], idx[b, ...])
        for u, w in zip(g, gb):
            np.testing.assert_allclose(backend.to_numpy(u)[b], backend.to_numpy(w))


def test_mask_read_write_derivatives(backend):
    mask = backend.asarray(M2, dtype=bool)

    def read(x):
        return x[mask] ** 2

    def write_scalar(x):
        y = x * 1.0
        y[mask] = 0.5
        return y * x

    def write_values(x, v):
        return _set(x * 1.0, mask, v[mask] * 3.0)

    def write_where(x):  # a mask computed from the data
        y = xd.stop_gradient(x) * 0.0 + x
        y[x > 0] = 0.0
        return y

    x = backend.asarray(RNG.standard_normal((3, 4)))
    v = backend.asarray(RNG.standard_normal((3, 4)))
    xn = backend.to_numpy(x)
    J = xd.jacobian(read)(x)
    sel = np.flatnonzero(M2)
    want = np.zeros((sel.size, 12))
    want[np.arange(sel.size), sel] = 2 * xn.ravel()[sel]
    np.testing.assert_allclose(backend.to_numpy(J).reshape(sel.size, 12), want)
    for f, args in [(read, (x,)), (write_scalar, (x,)), (write_values, (x, v)), (write_where, (x,))]:
        check_grads(f, args, order=2)
    np.testing.assert_allclose(backend.to_numpy(xd.grad(lambda x: _xp(backend).sum(write_where(x)))(x)),
                               (xn <= 0).astype(float))


def test_mask_write_with_where_works_batched(backend):
    """A mask write whose value does not depend on the number of selected elements is a
    `where`: it runs under vmap and batch_ndim, even with a per-sample mask."""
    xp = _xp(backend)

    def f(x):
        y = _set(x * 1.0, x > 0.0, 0.0)
        return _set(y, (..., backend.asarray([True, False, True], dtype=bool)), y[..., 0:1] * 2.0)

    x = backend.asarray(RNG.standard_normal((4, 3)))
    check_vmap(f, (x,))
    J = xd.jacobian(f, batch_ndim=1)(x)
    for b in range(4):
        np.testing.assert_allclose(backend.to_numpy(J)[b],
                                   backend.to_numpy(xd.jacobian(f)(x[b, ...])))
    assert xp.sum(f(x)).shape == ()


def test_mask_read_refused_under_vmap_and_batch_ndim(backend):
    x = backend.asarray(RNG.standard_normal((4, 3)))
    f = lambda x: _xp(backend).sum(x[x > 0])
    with pytest.raises(DataDependentShapeError, match="where"):
        xd.vmap(f)(x)
    with pytest.raises(DataDependentShapeError, match="where"):
        xd.jacobian(f, batch_ndim=1)(x)
    # eager, jvp and vjp are fine: the shape is known when the values are
    g = xd.grad(f)(x)
    np.testing.assert_allclose(backend.to_numpy(g), (backend.to_numpy(x) > 0).astype(float))


def test_constant_mask_read_is_fine_under_vmap_and_batch_ndim(backend):
    mask = backend.asarray([True, False, True], dtype=bool)
    f = lambda x: _get(x, (..., mask)) ** 2
    x = backend.asarray(RNG.standard_normal((4, 3)))
    check_vmap(f, (x,))
    J = xd.jacobian(f, batch_ndim=1)(x)
    assert J.shape == (4, 2, 3)


# --- in-place patterns (SciPy / array-api-extra style) ----------------------------------------

def test_inplace_patterns(backend):
    xp = _xp(backend)
    idx = backend.asarray([3, 0, 1], dtype=np.int64)
    idx2 = backend.asarray([0, 0, 2], dtype=np.int64)

    def central(x):  # out[1:-1] = ...
        out = xp.zeros_like(x)
        out[1:-1] = (x[2:] - x[:-2]) / 2.0
        out[0] = x[1] - x[0]
        out[-1] = x[-1] - x[-2]
        return out

    def standardize(X):  # X -= mean; X /= std
        X = X * 1.0
        X -= xp.mean(X, axis=0)
        X /= xp.std(X, axis=0)
        return X

    def powers(x):  # x **= 2
        y = x + 0.0
        y **= 2
        y *= x
        return y

    def gather_scatter(x):  # y = zeros_like(x); y[idx] = x[idx2]
        y = xp.zeros_like(x)
        return _set(y, idx, x[idx2] * 2.0)

    x = backend.asarray(RNG.standard_normal(5))
    X = backend.asarray(RNG.standard_normal((6, 3)))
    for f, a in [(central, x), (standardize, X), (powers, x), (gather_scatter, x)]:
        check_grads(f, (a,), order=2)
    xn = backend.to_numpy(x)
    np.testing.assert_allclose(backend.to_numpy(gather_scatter(x)),
                               [2 * xn[0], 2 * xn[2], 0.0, 2 * xn[0], 0.0])
    J = xd.jacobian(gather_scatter)(x)
    want = np.zeros((5, 5))
    want[0, 0] = want[3, 0] = want[1, 2] = 2.0
    np.testing.assert_allclose(backend.to_numpy(J), want)


def test_aliasing_views_see_writes(backend):
    """A view taken before a mutation sees it (as NumPy's views do); an explicit copy does
    not; the same Python object under two names does."""
    xp = _xp(backend)

    def f(x):
        y = x * 1.0
        view = y[0:2]
        flat = xp.reshape(y, (-1,), copy=True)
        same = y
        y[0] = 100.0
        y[1:] *= 2.0
        return view, flat, same, y

    x = backend.asarray([1.0, 2.0, 3.0])
    outs, pull = xd.vjp(f, x)
    view, flat, same, y = (backend.to_numpy(o) for o in outs)
    np.testing.assert_allclose(view, [100.0, 4.0])
    np.testing.assert_allclose(flat, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(same, [100.0, 4.0, 6.0])
    np.testing.assert_allclose(y, [100.0, 4.0, 6.0])
    z = backend.asarray([0.0, 0.0, 0.0])
    o = backend.asarray([1.0, 1.0])
    ct = pull((o, z, z, backend.asarray([1.0, 1.0, 1.0])))[0]
    np.testing.assert_allclose(backend.to_numpy(ct), [0.0, 4.0, 2.0])


# --- the two scatter-add paths -----------------------------------------------------------------

@pytest.fixture(params=["onehot", "sort-scan"])
def scatter_path(request, monkeypatch):
    if request.param == "sort-scan":
        monkeypatch.setattr(indexing, "ONEHOT_MAX", 0)
    return request.param


def test_gather_vjp_both_paths(backend, scatter_path):
    xp = _xp(backend)
    idx = backend.asarray([2, 0, 2, 5, 2, 1, 0], dtype=np.int64)
    rows = backend.asarray(RNG.integers(0, 6, size=(4, 9)), dtype=np.int64)
    x = backend.asarray(RNG.standard_normal((4, 6)))
    fs = [lambda x: xp.take(x, idx, axis=1) ** 2,
          lambda x: xp.take(x, backend.asarray([3, 0, 3, 1], dtype=np.int64), axis=0) ** 2,
          lambda x: xp.take_along_axis(x, rows, axis=1) ** 2,
          lambda x: x[idx[:3], idx[3:6]] * x[idx[:3], idx[3:6]],
          lambda x: _get(x, (slice(None), idx)) ** 2]
    for f in fs:
        check_grads(f, (x,), order=2)
        check_vmap(f, (backend.asarray(RNG.standard_normal((3, 4, 6))),))
    g = RNG.standard_normal((4, 9))
    _, pull = xd.vjp(lambda x: xp.take_along_axis(x, rows, axis=1), x)
    ref = np.zeros((4, 6))
    r = backend.to_numpy(rows)
    np.add.at(ref, (np.arange(4)[:, None], r), g)
    np.testing.assert_allclose(backend.to_numpy(pull(backend.asarray(g))[0]), ref, rtol=1e-12)


def test_gather_vjp_batched_indices_both_paths(backend, scatter_path):
    xp = _xp(backend)
    I = backend.asarray(RNG.integers(0, 6, size=(3, 7)), dtype=np.int64)
    X = backend.asarray(RNG.standard_normal((3, 4, 6)))

    def f(x, i):
        return xp.sum(_get(x, (slice(None), i)) ** 2, axis=0)

    J = xd.vmap(xd.jacobian(f, mode="rev"))(X, I)
    for b in range(3):
        Jb = xd.jacobian(f, mode="fwd")(X[b, ...], I[b, ...])
        np.testing.assert_allclose(backend.to_numpy(J)[b], backend.to_numpy(Jb), rtol=1e-12)


def test_scatter_scan_is_accurate_in_float32(monkeypatch):
    """The sort-based path adds within segments only: no cancellation across them."""
    monkeypatch.setattr(indexing, "ONEHOT_MAX", 0)
    xp = xd.numpy
    n, m = 50, 20000
    idx = RNG.integers(0, n, size=m)
    g = (RNG.standard_normal(m) * 1e3).astype(np.float32)
    g[idx == 7] = 1e-3  # a small bin next to large ones
    x = np.zeros(n, np.float32)
    _, pull = xd.vjp(lambda x: xp.take(x, idx), x)
    got = pull(g)[0]
    ref = np.zeros(n)
    np.add.at(ref, idx, g.astype(np.float64))
    np.testing.assert_allclose(got[7], ref[7], rtol=1e-4)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)


# --- sorting, searching, sets ------------------------------------------------------------------

def test_sort_derivative_follows_the_permutation(backend):
    xp = _xp(backend)
    x = backend.asarray([[3.0, -1.0, 2.0], [0.5, 4.0, -2.0]])
    for kw in [{}, {"descending": True}, {"axis": 0}, {"axis": 0, "descending": True}]:
        f = lambda x, kw=kw: xp.sort(x, **kw) * backend.asarray([1.0, 2.0, 3.0])
        check_grads(f, (x,), order=2)
        i = xp.argsort(x, **kw)
        np.testing.assert_allclose(backend.to_numpy(xp.sort(x, **kw)),
                                   backend.to_numpy(xp.take_along_axis(x, i, axis=kw.get("axis", -1))))
    J = xd.jacobian(lambda x: xp.sort(x, descending=True))(backend.asarray([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(backend.to_numpy(J), [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_searchsorted(backend):
    xp = _xp(backend)
    a = backend.asarray([1.0, 2.0, 2.0, 3.0])
    v = backend.asarray([[0.0, 2.0], [2.5, 9.0]])
    for side in ("left", "right"):
        np.testing.assert_array_equal(backend.to_numpy(xp.searchsorted(a, v, side=side)),
                                      np.searchsorted(backend.to_numpy(a), backend.to_numpy(v), side=side))
    sorter = backend.asarray([1, 2, 3, 0], dtype=np.int64)
    shuffled = backend.asarray([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(backend.to_numpy(xp.searchsorted(shuffled, 2.0, sorter=sorter)), 1)
    # one sorted array per batch element (ties included)
    A = np.sort(RNG.integers(0, 5, size=(4, 7)).astype(float), axis=1)
    V = RNG.integers(-1, 6, size=(4, 3, 2)).astype(float)
    for side in ("left", "right"):
        got = xd.vmap(lambda a, v: xp.searchsorted(a, v, side=side))(backend.asarray(A), backend.asarray(V))
        want = np.stack([np.searchsorted(A[i], V[i], side=side) for i in range(4)])
        np.testing.assert_array_equal(backend.to_numpy(got), want)
    with pytest.raises(ValueError, match="1-d"):
        xp.searchsorted(backend.asarray(A), a)


def test_no_derivative_functions(backend):
    xp = _xp(backend)
    x = backend.asarray([2.0, 0.0, 2.0, -1.0])

    def f(x):
        u = xp.unique_values(x)
        ua = xp.unique_all(x)
        uc = xp.unique_counts(x)
        ui = xp.unique_inverse(x)
        (nz,) = xp.nonzero(x)
        c = xp.count_nonzero(x)
        s = xp.astype(xp.argsort(x), x.dtype)
        assert ua.values.shape == (3,) and uc.counts.shape == (3,) and ui.inverse_indices.shape == (4,)
        return xp.sum(u) + xp.sum(xp.astype(nz, x.dtype)) + xp.astype(c, x.dtype) + xp.sum(s) + x[0]

    g = xd.grad(f)(x)
    np.testing.assert_allclose(backend.to_numpy(g), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(backend.to_numpy(xp.unique_counts(x).counts), [1, 1, 2])
    np.testing.assert_array_equal(backend.to_numpy(xp.count_nonzero(backend.asarray([[0.0, 1.0], [2.0, 3.0]]),
                                                                    axis=1, keepdims=True)), [[1], [2]])
    for fn in (xp.unique_values, lambda x: xp.unique_all(x).values, lambda x: xp.nonzero(x)[0]):
        with pytest.raises(DataDependentShapeError):
            xd.vmap(fn)(backend.asarray(RNG.standard_normal((2, 3))))
        with pytest.raises(DataDependentShapeError):
            xd.jacobian(lambda x, fn=fn: xp.astype(fn(x), x.dtype) * 0.0, batch_ndim=1)(
                backend.asarray(RNG.standard_normal((2, 3))))


# --- statistics --------------------------------------------------------------------------------

def test_prod_and_cumulative_prod_exact_with_zeros(backend):
    xp = _xp(backend)
    v = np.array([2.0, 0.0, 3.0, 0.0, 1.5])
    x = backend.asarray(v)
    g = backend.to_numpy(xd.grad(lambda x: xp.prod(x))(backend.asarray([2.0, 0.0, 3.0])))
    np.testing.assert_allclose(g, [0.0, 6.0, 0.0])
    H = backend.to_numpy(xd.hessian(lambda x: xp.prod(x))(x))  # two zeros: exact second order
    want = np.zeros((5, 5))
    want[1, 3] = want[3, 1] = 2.0 * 3.0 * 1.5
    np.testing.assert_allclose(H, want)
    Jref = np.zeros((5, 5))
    for k in range(5):
        for j in range(k + 1):
            Jref[k, j] = np.prod(np.delete(v[:k + 1], j))
    for mode in ("fwd", "rev"):
        J = xd.jacobian(lambda x: xp.cumulative_prod(x), mode=mode)(x)
        np.testing.assert_allclose(backend.to_numpy(J), Jref)
    y = xp.cumulative_prod(x, include_initial=True)
    np.testing.assert_allclose(backend.to_numpy(y), [1.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    check_grads(lambda x: xp.cumulative_prod(x, axis=0) * 1.0,
                (backend.asarray([[2.0, 0.0], [0.0, 3.0], [1.5, -1.0]]),), order=2)


def test_var_std_keepdims(backend):
    xp = _xp(backend)
    x = backend.asarray(RNG.standard_normal((3, 4)))
    xn = backend.to_numpy(x)
    v = xp.var(x, axis=1, correction=1, keepdims=True)
    s = xp.std(x, axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(backend.to_numpy(v), np.var(xn, axis=1, ddof=1, keepdims=True))
    np.testing.assert_allclose(backend.to_numpy(s), np.std(xn, keepdims=True))


def test_manipulation_values(backend):
    xp = _xp(backend)
    xn = RNG.standard_normal((2, 3))
    x = backend.asarray(xn)
    cases = [
        (xp.roll(x, (1, -1), axis=(0, 1)), np.roll(xn, (1, -1), axis=(0, 1))),
        (xp.roll(x, 2), np.roll(xn, 2)),
        (xp.tile(x, (2, 1, 3)), np.tile(xn, (2, 1, 3))),
        (xp.repeat(x, 2, axis=0), np.repeat(xn, 2, axis=0)),
        (xp.repeat(x, backend.asarray([1, 0, 3], dtype=np.int64), axis=1), np.repeat(xn, [1, 0, 3], axis=1)),
        (xp.repeat(x, 2), np.repeat(xn, 2)),
        (xp.diff(x, axis=1, n=2), np.diff(xn, axis=1, n=2)),
        (xp.diff(x, axis=0, prepend=x[:1, :], append=1.5), np.diff(xn, axis=0, prepend=xn[:1], append=1.5)),
    ]
    for got, want in cases:
        np.testing.assert_allclose(backend.to_numpy(got), want)


# --- batch_ndim: ops along data dims are refused, naming the op --------------------------------

@pytest.mark.parametrize("name, f", [
    ("sort", lambda xp, x: xp.sort(x, axis=0)),
    ("argsort", lambda xp, x: xp.astype(xp.argsort(x, axis=0), x.dtype) * x),
    ("roll", lambda xp, x: xp.roll(x, 1, axis=0)),
    ("roll", lambda xp, x: xp.roll(x, 1)),
    ("take_along_axis", lambda xp, x: xp.take_along_axis(x, np.zeros((2, 4), dtype=np.int64), axis=0)),
    ("cumulative_prod", lambda xp, x: xp.cumulative_prod(x, axis=0)),
    ("count_nonzero", lambda xp, x: xp.astype(xp.count_nonzero(x, axis=0), x.dtype) * x[0]),
    ("__getitem__ with array indices", lambda xp, x: x[xp.asarray([1, 0]), :]),
    ("__setitem__ with array indices", lambda xp, x: _set_rows(x)),
    ("repeat", lambda xp, x: xp.repeat(x, 2, axis=0)),
    ("tile", lambda xp, x: xp.tile(x, (2, 1))),
    ("diff", lambda xp, x: xp.diff(x, axis=0)),
])
def test_batch_ndim_refuses_ops_along_data_dims(name, f):
    xp = xd.numpy
    x = RNG.standard_normal((3, 4))
    with pytest.raises(MixingError, match=name):
        xd.jacobian(lambda x: f(xp, x), batch_ndim=1)(x)


def _set_rows(x):
    y = x * 1.0
    y[np.array([0, 0])] = 1.0
    return y


def test_batch_ndim_passes_ops_along_other_dims():
    xp = xd.numpy
    W = RNG.standard_normal((5, 4))
    labels = np.array([3, 0, 4])

    def f(x):
        y = xp.sort(x, axis=-1) + xp.roll(x, 1, axis=-1) + xp.cumulative_prod(x, axis=-1)
        y = y + xp.take_along_axis(x, xp.argsort(x, axis=-1), axis=-1)
        z = xp.zeros_like(x)
        z[..., np.array([1, 1, 2])] = x[..., np.array([0, 3, 3])]
        return y * z + xp.repeat(x, 1, axis=-1)

    x = RNG.standard_normal((3, 4))
    J = xd.jacobian(f, batch_ndim=1)(x)
    for b in range(3):
        np.testing.assert_allclose(J[b], xd.jacobian(f)(x[b]), rtol=1e-12)
    # per-sample lookups into a shared table: W[labels] with per-sample labels
    g = lambda w, lab: xp.sum(xp.asarray(W)[lab] * w, axis=-1)
    Jw = xd.jacobian(g, batch_ndim=1)(RNG.standard_normal((3, 4)), labels)
    assert Jw.shape == (3, 4)
    np.testing.assert_allclose(Jw, W[labels])


# --- errors ------------------------------------------------------------------------------------

def test_index_errors():
    xp = xd.numpy
    x = np.ones((2, 3))
    f = lambda k: xd.grad(lambda x: xp.sum(x[k]))(x)
    with pytest.raises(IndexError, match="integer or boolean dtype"):
        f(np.array([0.5]))
    with pytest.raises(IndexError, match="does not match"):
        f(np.array([True, False, True]))
    with pytest.raises(IndexError, match="too many indices"):
        f((np.array([0]), 0, 0))
    with pytest.raises(IndexError, match="Python bool"):
        f(True)
    with pytest.raises(IndexError, match="Ellipsis"):
        f((Ellipsis, np.array([0]), Ellipsis))

    def bad_set(x):
        y = x * 1.0
        y[np.array([0, 1])] = np.ones((3, 3))
        return y

    with pytest.raises(ValueError, match="cannot be broadcast"):
        xd.vjp(bad_set, x)
    with pytest.raises(ValueError, match="take_along_axis: indices must have the rank"):
        xp.take_along_axis(x, np.array([0]), axis=1)
    with pytest.raises(ValueError, match="roll: shift"):
        xp.roll(x, (1, 2), axis=0)
    with pytest.raises(DataDependentShapeError, match="repeat"):
        xd.vmap(lambda r: xp.repeat(xp.asarray([1.0, 2.0]), r))(np.array([[1, 2], [2, 1]]))


def test_iteration_over_the_first_axis_keeps_the_derivative(backend):
    x = backend.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])

    def f(v):
        xp = v.__array_namespace__()
        a, b, c = v  # unpacking iterates
        rows = [r * r for r in v]
        return xp.stack([a * b + c] + rows)

    J = xd.jacobian(f)(x)
    want = xd.jacobian(lambda v: v.__array_namespace__().stack(
        [v[0] * v[1] + v[2]] + [v[i] * v[i] for i in range(3)]))(x)
    np.testing.assert_allclose(backend.to_numpy(J), backend.to_numpy(want))
    # traced as the conformance harness runs it, and in reverse mode
    y, t = xd.jvp(lambda v: [r for r in v][1], (x,), (x,))
    np.testing.assert_allclose(backend.to_numpy(t), [3.0, 4.0])
    g = xd.grad(lambda v: sum(r[0] for r in v))(x)
    np.testing.assert_allclose(backend.to_numpy(g), [[1.0, 0.0]] * 3)

    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        xd.grad(lambda v: list(v[0, 0]) and v[0, 0])(x)
    with pytest.raises(MixingError, match=r"'iteration \(for a in x\)' indexes a data dim"):
        xd.jacobian(lambda v: v.__array_namespace__().stack([r for r in v]), batch_ndim=1)(x)


def test_zero_d_boolean_index_reads_and_writes(backend):
    # the standard: a 0-d boolean index adds an axis of size 1 (True) or 0 (False);
    # array-api-extra's at(x)[mask].set(v) and apply_where on 0-d inputs write with one
    T = backend.asarray(True, bool)
    F = backend.asarray(False, bool)
    x = backend.asarray([1.0, 2.0])
    s = backend.asarray(3.0)
    ones = backend.asarray([1.0, 1.0])
    for m, n in ((T, 1), (F, 0)):
        y, t = xd.jvp(lambda v: v[m], (x,), (ones,))  # traced, as the conformance harness runs
        assert tuple(y.shape) == tuple(t.shape) == (n, 2)
        assert tuple(xd.jvp(lambda v: v[..., m], (x,), (ones,))[0].shape) == (2, n)
        assert tuple(xd.jvp(lambda v: v[m], (s,), (s,))[0].shape) == (n,)
    g = xd.grad(lambda v: v.__array_namespace__().sum(v[T] * v[T]))(x)
    np.testing.assert_allclose(backend.to_numpy(g), [2.0, 4.0])

    def write(v, m):
        y = v * 1.0
        y[m] = 5.0 * v
        return y

    for m, d in ((T, 5.0), (F, 1.0)):
        val, tan = xd.jvp(lambda v: write(v, m), (s,), (backend.asarray(1.0),))
        assert float(backend.to_numpy(val)) == 3.0 * d and float(backend.to_numpy(tan)) == d
        g = xd.grad(lambda v: v.__array_namespace__().sum(write(v, m)))(x)
        np.testing.assert_allclose(backend.to_numpy(g), [d, d])
    # the write needs no data-dependent shape: it also runs under vmap
    np.testing.assert_allclose(backend.to_numpy(xd.vmap(lambda v: write(v, T))(x)), [5.0, 10.0])


@pytest.mark.parametrize("rows", [1, 2])
def test_empty_boolean_mask_selects_nothing(backend, rows):
    # NumPy (and the conformance suite) take a shape-(0,) mask on a dim of any size: it
    # selects nothing; any other mismatch stays an error
    x = backend.asarray(np.ones((rows, 3)))
    empty = backend.asarray(np.zeros(0, dtype=bool), bool)
    y, t = xd.jvp(lambda v: v[empty], (x,), (x,))
    assert tuple(y.shape) == tuple(t.shape) == (0, 3)
    g = xd.grad(lambda v: v.__array_namespace__().sum(v[empty]))(x)
    np.testing.assert_array_equal(backend.to_numpy(g), np.zeros((rows, 3)))
    with pytest.raises(IndexError, match="does not match"):
        xd.grad(lambda v: v.__array_namespace__().sum(v[backend.asarray([True] * 3, bool)]))(x)
