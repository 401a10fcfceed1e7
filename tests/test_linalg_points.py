"""linalg derivatives where the conformance suite's inputs go: complex matrices (forward
mode), exactly singular matrices, and ``svd(full_matrices=True)`` of non-square input.

The primal values are the backend's own; a tangent is NaN only where the derivative
does not exist, and no rule warns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpdiff as xd

xp = xd.numpy
RNG = np.random.default_rng(7)


def _fd(f, a, e, h=1e-6):
    """Central differences of every output of ``f`` at ``a`` in direction ``e``."""
    hi, lo = f(a + h * e), f(a - h * e)
    hi, lo = (hi, lo) if isinstance(hi, tuple) else ((hi,), (lo,))
    return [(np.asarray(p) - np.asarray(m)) / (2 * h) for p, m in zip(hi, lo)]


def _check_jvp(f, a, e, atol=1e-7):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, t = xd.jvp(f, (a,), (e,))
    t = t if isinstance(t, tuple) else (t,)
    for got, want in zip(t, _fd(f, a, e)):
        np.testing.assert_allclose(got, want, atol=atol)


def _cplx(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


def _h(a):
    return xp.conj(xp.matrix_transpose(a))


_COMPLEX = {
    "cholesky": lambda a: xp.linalg.cholesky((a + _h(a)) / 2),
    "slogdet": lambda a: tuple(xp.linalg.slogdet(a)),
    "det": xp.linalg.det,
    "eigvalsh": lambda a: xp.linalg.eigvalsh((a + _h(a)) / 2),
    "qr": lambda a: tuple(xp.linalg.qr(a)),
    "svdvals": xp.linalg.svdvals,
    "svd projectors": lambda a: (lambda u, s, vh: (u @ _h(u), _h(vh) @ vh, s))(
        *xp.linalg.svd(a, full_matrices=False)),
    "pinv": xp.linalg.pinv,
    "matrix_norm(ord=2)": lambda a: xp.linalg.matrix_norm(a, ord=2),
}


@pytest.mark.parametrize("name", sorted(_COMPLEX))
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_complex_forward_mode_matches_finite_differences(name, shape):
    square = name in ("cholesky", "slogdet", "det", "eigvalsh")
    if square and shape[0] != shape[1]:
        pytest.skip("square input only")
    a = _cplx(*shape)
    if name == "cholesky":
        a = a @ np.conj(a.T) + np.eye(shape[0])
    _check_jvp(_COMPLEX[name], a, _cplx(*shape))


def test_complex_reverse_mode_names_forward_mode():
    with pytest.raises(TypeError, match="linalg.svd: reverse-mode.*forward mode"):
        xd.grad(lambda a: xp.sum(xp.linalg.svdvals(a)))(_cplx(3, 3))


SINGULAR = [np.array([[1.0, 2.0], [2.0, 4.0]]), np.zeros((3, 3)),
            np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 5.0]])]


@pytest.mark.parametrize("a", SINGULAR, ids=["rank1-2x2", "zero-3x3", "rank2-3x3"])
def test_det_derivative_at_singular_matrices(a):
    # det is a polynomial: tr(adj(A) dA) exists everywhere (it used to raise LinAlgError)
    e = RNG.standard_normal(a.shape)
    _check_jvp(xp.linalg.det, a, e)
    g = xd.grad(xp.linalg.det)(a)
    np.testing.assert_allclose(np.sum(g * e), _fd(np.linalg.det, a, e)[0], atol=1e-7)
    assert xd.numpy.linalg.det(a) == np.linalg.det(a)


def test_det_hessian_where_invertible_and_nan_where_singular():
    a = RNG.standard_normal((3, 3))
    e, f = RNG.standard_normal((2, 3, 3))
    h = 1e-4
    d = np.linalg.det
    fd = (d(a + h * e + h * f) - d(a + h * e - h * f) - d(a - h * e + h * f)
          + d(a - h * e - h * f)) / (4 * h * h)
    H = xd.hessian(xp.linalg.det)(a)
    np.testing.assert_allclose(np.einsum("ij,ijkl,kl", e, H, f), fd, rtol=1e-6)
    # at an exactly singular matrix second derivatives are not computed (docs/linalg-fft.md)
    assert np.isnan(xd.hessian(xp.linalg.det)(SINGULAR[0])).all()


@pytest.mark.parametrize("fn", ["slogdet", "qr", "svd"])
def test_singular_primal_is_the_backends_and_tangent_nan_only_where_undefined(fn):
    a = np.stack([SINGULAR[0], np.array([[2.0, 1.0], [1.0, 3.0]])])
    f = {"slogdet": lambda a: tuple(xp.linalg.slogdet(a)),
         "qr": lambda a: tuple(xp.linalg.qr(a)),
         "svd": lambda a: tuple(xp.linalg.svd(a))}[fn]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, t = xd.jvp(f, (a,), (np.ones_like(a),))
    want = {"slogdet": np.linalg.slogdet, "qr": np.linalg.qr, "svd": np.linalg.svd}[fn](a)
    for o, w in zip(out, want):
        np.testing.assert_array_equal(o, w)
    for tt in t:  # the invertible matrix of the stack keeps finite tangents
        assert np.isfinite(tt[1]).all()
    if fn == "slogdet":
        assert np.isnan(t[1][0])  # log|det| -> -inf: no derivative


@pytest.mark.parametrize("shape", [(4, 2), (2, 4)])
def test_svd_full_matrices_non_square(shape):
    a = RNG.standard_normal(shape)
    k = min(shape)
    (u, s, vh), (du, ds, dvh) = xd.jvp(lambda a: tuple(xp.linalg.svd(a)), (a,), (np.ones(shape),))
    assert u.shape == (shape[0], shape[0]) and vh.shape == (shape[1], shape[1])
    # the extra columns of U (rows of Vh) are not unique: NaN; the rest is exact
    extra = du[:, k:] if shape[0] > k else dvh[k:]
    assert np.isnan(extra).all()
    assert np.isfinite(du[:, :k]).all() and np.isfinite(dvh[:k]).all()

    def rebuild(a):
        u, s, vh = xp.linalg.svd(a)
        return (u[:, :k] * s) @ vh[:k]

    _check_jvp(rebuild, a, RNG.standard_normal(shape))
    g = xd.grad(lambda a: xp.sum(rebuild(a) ** 2))(a)
    np.testing.assert_allclose(g, 2 * a, atol=1e-10)
    # a cotangent on the extra columns has no derivative to reach
    g = xd.grad(lambda a: xp.sum(xp.linalg.svd(a)[0] ** 3) + xp.sum(xp.linalg.svd(a)[2] ** 3))(a)
    assert np.isnan(g).all()


def test_qr_complete_tall():
    a = RNG.standard_normal((4, 2))
    (q, r), (dq, dr) = xd.jvp(lambda a: tuple(xp.linalg.qr(a, mode="complete")), (a,),
                              (np.ones((4, 2)),))
    assert q.shape == (4, 4) and r.shape == (4, 2)
    assert np.isnan(dq[:, 2:]).all() and np.isfinite(dq[:, :2]).all() and (dr[2:] == 0).all()
    g = xd.grad(lambda a: xp.sum(xp.linalg.qr(a, mode="complete")[1] ** 2))(a)
    np.testing.assert_allclose(g, 2 * a, atol=1e-12)  # sum(R**2) = sum(A**2)
