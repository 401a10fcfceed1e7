"""Values of the ``special`` submodule: accuracy against SciPy (float64, ~1e-13 relative)
and against high-precision references in the tails, edge values, no floating-point
warnings, float32, other backends, closed-form derivatives and stability of the
max-shifted compositions.  (Derivatives against finite differences, vmap and
``batch_ndim`` come from the op table: src/xpdiff/testing/optable/special.py.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpdiff as xd
from xpdiff import backend as _backend

sc = pytest.importorskip("scipy.special")


@pytest.fixture(autouse=True)
def _composites(monkeypatch):
    """These tests check the composites (standard functions only) against SciPy: NumPy's native
    kernels (SciPy itself, tests/test_device_paths.py) are switched off here."""
    monkeypatch.setattr(_backend, "NATIVE_KERNELS", {})
    monkeypatch.setattr(_backend, "_NATIVE", {})

xs = xd.namespace("numpy").special
RNG = np.random.default_rng(0)


def _grid(lo, hi, n=4000):
    return np.concatenate([np.linspace(lo, hi, n), RNG.uniform(lo, hi, n)])


def _close(got, want, rtol=1e-13, atol=0.0):
    got = np.asarray(got)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# ranges where SciPy itself is accurate to ~1e-14 (beyond them SciPy's ndtr/log_ndtr lose
# digits to the rounding of x/sqrt(2), its gammaln near 1 and 2 and its digamma near the
# negative poles lose relative accuracy; those regions are checked against mpmath below)
UNARY = [
    ("erf", _grid(-8, 8)),
    ("erfc", np.concatenate([_grid(-8, 8), _grid(8, 25)])),
    ("ndtr", np.concatenate([_grid(-20, 10), _grid(-2, 2)])),
    ("log_ndtr", np.concatenate([_grid(-1e4, -30), _grid(-30, 20)])),
    ("expit", _grid(-700, 700)),
    ("logit", np.concatenate([_grid(0, 1), np.geomspace(1e-300, 0.5, 500),
                              1 - np.geomspace(1e-16, 0.5, 500)])),
    ("gammaln", np.concatenate([_grid(1e-3, 0.9), _grid(1.1, 1.9), _grid(2.1, 30),
                                np.geomspace(1e-300, 1e300, 500), [1.0, 2.0]])),
    ("digamma", np.concatenate([_grid(1e-3, 30), _grid(0.5, 3), np.geomspace(1e-300, 1e300, 500),
                                [1.0, 2.0]])),
]


@pytest.mark.parametrize("name, x", UNARY, ids=[u[0] for u in UNARY])
def test_matches_scipy(name, x):
    _close(getattr(xs, name)(x), getattr(sc, name)(x))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_polygamma_matches_scipy(n):
    x = np.concatenate([_grid(1e-2, 30), np.geomspace(1e-3, 1e10, 300)])
    _close(xs.polygamma(n, x), sc.polygamma(n, x))


def _mp_cases():
    near_roots = np.concatenate([RNG.uniform(0.9, 1.1, 60), RNG.uniform(1.9, 2.1, 60),
                                 1 + np.geomspace(1e-12, 1e-2, 30), 2 - np.geomspace(1e-12, 1e-2, 30)])
    negative = RNG.uniform(-30, 0, 200)
    near_poles = np.round(negative[:100]) + RNG.choice([-1, 1], 100) * np.geomspace(1e-10, 1e-2, 100)
    return [
        ("ndtr", np.concatenate([RNG.uniform(-37.5, -20, 100), RNG.uniform(-5, 5, 50)]),
         lambda m, v: m.ncdf(v), 2e-15, 0.0),
        ("log_ndtr", np.concatenate([RNG.uniform(20, 37, 100), RNG.uniform(-1e3, 0, 50)]),
         lambda m, v: m.log(m.ncdf(v)) if v < 0 else m.log1p(-m.ncdf(-v)), 2e-15, 0.0),
        ("erfc", RNG.uniform(20, 26.5, 100), lambda m, v: m.erfc(v), 2e-15, 0.0),
        ("gammaln", near_roots, lambda m, v: m.loggamma(v), 2e-15, 0.0),
        ("gammaln", RNG.uniform(0, 30, 200), lambda m, v: m.loggamma(v), 2e-14, 0.0),
        # near the negative roots of digamma (reflection): absolute accuracy
        ("digamma", np.concatenate([near_poles, negative[100:], RNG.uniform(0, 30, 100)]),
         lambda m, v: m.digamma(v), 3e-15, 2e-15),
    ]


@pytest.mark.parametrize("case", range(6))
def test_matches_mpmath(case):
    mp = pytest.importorskip("mpmath")
    name, x, ref, rtol, atol = _mp_cases()[case]
    with mp.workdps(60):
        want = np.array([float(ref(mp, mp.mpf(float(v)))) for v in x])
    _close(getattr(xs, name)(x), want, rtol=rtol, atol=atol)


def test_negative_arguments():
    # log|Gamma| cancels near its negative roots (reflection formula): absolute accuracy there
    x = _grid(-30, -1e-3)
    x = x[x != np.round(x)]
    want = sc.gammaln(x)
    _close(xs.gammaln(x), want, rtol=1e-13, atol=1e-14 * np.max(np.abs(want)))
    far = np.abs(want) > 0.5
    _close(xs.gammaln(x[far]), want[far], rtol=1e-13)


def test_tails_against_high_precision():
    # references computed with mpmath at 60 digits
    cases = [
        ("ndtr", -37.5, 4.605353009581955e-308), ("ndtr", -20.0, 2.7536241186062337e-89),
        ("erfc", 26.0, 5.663192408856143e-296),
        ("log_ndtr", -40.0, -804.6084420137538), ("log_ndtr", -1000.0, -500007.82669481216),
        ("log_ndtr", -1e10, -5e19), ("log_ndtr", -1e150, -4.9999999999999995e+299),
        ("log_ndtr", 10.0, -7.619853024160525e-24), ("log_ndtr", 37.0, -5.725571222524577e-300),
        ("gammaln", 1.0000001, -5.772155829918507e-08),
        ("gammaln", 1.999999999, -4.227843697573328e-10),
        ("gammaln", 1e300, 6.897755278982137e+302), ("gammaln", 1e-300, 690.7755278982137),
    ]
    for name, x, want in cases:
        _close(getattr(xs, name)(np.asarray(x)), want, rtol=2e-15)
    # digamma near its positive root: relative accuracy kept
    _close(xs.digamma(np.asarray(1.46163214496837)), 7.427911395089404e-15, rtol=1e-12)


EDGES = np.array([0.0, -0.0, 1.0, -1.0, -2.0, -2.5, np.inf, -np.inf, np.nan, 1e-320, -1e-320,
                  1e308, -1e308, 5e-324])


@pytest.mark.parametrize("name", ["erf", "erfc", "ndtr", "log_ndtr", "expit", "logit", "gammaln",
                                  "digamma", "entr"])
def test_edge_values_without_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = getattr(xs, name)(EDGES)
    with np.errstate(all="ignore"):
        want = getattr(sc, name)(EDGES)
    if name == "gammaln":  # scipy: -inf at -inf (log|Gamma| has no limit), inf for subnormals
        want[EDGES == -np.inf] = np.inf
        sub = (EDGES != 0) & (np.abs(EDGES) < 1e-307)
        want[sub] = -np.log(np.abs(EDGES[sub]))
    np.testing.assert_array_equal(np.signbit(got[got == 0]), np.signbit(want[got == 0]))
    _close(got, want, rtol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_polygamma_edges_without_warnings(n):
    x = np.array([0.0, -1.0, -3.0, np.inf, -np.inf, np.nan, 1e-200, 1e-320, -1e-300, 1e300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = xs.polygamma(n, x)
    with np.errstate(all="ignore"):
        want = sc.polygamma(n, x)
    _close(got, want, rtol=1e-13)


def test_xlogy_xlog1py():
    x = np.array([0.0, 0.0, 0.0, 0.0, 2.0, -3.0, 0.0])
    y = np.array([0.0, -1.0, np.nan, np.inf, 3.0, 0.5, 2.0])
    with warnings.catch_warnings():  # x == 0 never warns (x != 0, y == 0 is log(0): it does)
        warnings.simplefilter("error")
        got = xs.xlogy(x, y)
        got1 = xs.xlog1py(x, y - 1.0)
    _close(got, sc.xlogy(x, y))
    _close(got1, sc.xlog1py(x, y - 1.0))
    _close(xs.xlogy(2.0, np.asarray([1.0, np.e])), [0.0, 2.0])  # Python scalars allowed
    # the derivative in x at x = 0 is log(y), not 0
    assert xd.grad(lambda x: xs.xlogy(x, np.asarray(3.0)))(np.asarray(0.0)) == pytest.approx(
        np.log(3.0))


def test_float32():
    x = np.linspace(-5, 5, 101, dtype=np.float32)
    for name in ["erf", "erfc", "ndtr", "log_ndtr", "expit", "gammaln", "digamma"]:
        got = getattr(xs, name)(x)
        assert got.dtype == np.float32, name
        with np.errstate(all="ignore"):
            want = getattr(sc, name)(x.astype(np.float64))
        ok = np.isfinite(want) & (np.abs(want) > 1e-30)
        np.testing.assert_allclose(got[ok], want[ok], rtol=3e-5, err_msg=name)


def test_integer_input_is_cast_and_complex_refused():
    assert xs.erf(np.arange(3)).dtype == np.float64
    with pytest.raises(TypeError, match="special.erf: complex"):
        xs.erf(np.ones(2, dtype=np.complex128))
    with pytest.raises(TypeError, match="special.gammaln: expected an array"):
        xs.gammaln(1.0)
    with pytest.raises(TypeError, match="polygamma: n must be"):
        xs.polygamma(1.5, np.ones(2))


def test_other_backend_gives_same_values():
    strict = pytest.importorskip("array_api_strict")
    sp = xd.namespace("array_api_strict").special
    x = np.linspace(-4, 4, 33)
    dev = strict.Device("device1")
    xa = strict.asarray(x, device=dev)
    for name in ["erf", "erfc", "ndtr", "log_ndtr", "expit", "gammaln", "digamma", "entr"]:
        got = getattr(sp, name)(xa)
        assert got.device == dev
        got = np.asarray(got.to_device(strict.Device("CPU_DEVICE")))
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(got, getattr(xs, name)(x), rtol=1e-15, equal_nan=True,
                                       err_msg=name)


def test_closed_form_derivatives():
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(xd.vmap(xd.grad(xs.erf))(x), 2 / np.sqrt(np.pi) * np.exp(-x**2),
                               rtol=1e-14)
    xp_ = np.linspace(0.2, 6, 13)
    np.testing.assert_allclose(xd.vmap(xd.grad(xs.gammaln))(xp_), sc.digamma(xp_), rtol=1e-13)
    np.testing.assert_allclose(xd.vmap(xd.grad(xs.digamma))(xp_), sc.polygamma(1, xp_),
                               rtol=1e-13)
    np.testing.assert_allclose(xd.vmap(xd.grad(xd.grad(xs.digamma)))(xp_), sc.polygamma(2, xp_),
                               rtol=1e-13)
    # d/dx log ndtr(x) = pdf/cdf stays finite far in the left tail (reference: mpmath)
    assert float(xd.grad(xs.log_ndtr)(np.asarray(-40.0))) == pytest.approx(40.02496884720726,
                                                                          rel=1e-14)
    np.testing.assert_allclose(xd.vmap(xd.grad(xs.expit))(x), sc.expit(x) * sc.expit(-x),
                               rtol=1e-14)


def test_max_shift_stability():
    a = np.array([[1000.0, 1000.0, -np.inf], [-1000.0, -1001.0, -1002.0]])
    _close(xs.logsumexp(a, axis=-1), sc.logsumexp(a, axis=-1))
    _close(xs.softmax(a, axis=-1), sc.softmax(a, axis=-1))
    _close(xs.log_softmax(a, axis=-1), sc.log_softmax(a, axis=-1))
    _close(xs.logsumexp(a), sc.logsumexp(a))
    _close(xs.logsumexp(a, axis=0, keepdims=True), sc.logsumexp(a, axis=0, keepdims=True))
    b = np.array([[1.0, -2.0, 1.0], [0.5, 0.5, 1.0]])
    got, sign = xs.logsumexp(a, axis=1, b=b, return_sign=True)
    want, wsign = sc.logsumexp(a, axis=1, b=b, return_sign=True)
    _close(got, want)
    np.testing.assert_array_equal(sign, wsign)
    # the gradient of logsumexp is softmax, finite at huge arguments
    g = xd.grad(lambda v: xs.logsumexp(v))(np.array([1000.0, 1000.0, 999.0]))
    _close(g, sc.softmax(np.array([1000.0, 1000.0, 999.0])), rtol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _close(xs.logsumexp(np.full(3, -np.inf)), -np.inf)


def test_reachable_from_traced_arrays():
    def f(x):
        sp = x.__array_namespace__().special
        return sp.gammaln(x) + sp.erf(x)

    x = np.array([0.5, 2.0])
    _, t = xd.jvp(f, (x,), (np.ones(2),))
    np.testing.assert_allclose(t, sc.digamma(x) + 2 / np.sqrt(np.pi) * np.exp(-x**2), rtol=1e-13)


def test_xlogy_computes_in_the_promoted_dtype(backend):
    # an int64 x is cast to the default float64: y (float32) must be promoted before the
    # log, not after (which returned float64 values with float32 accuracy)
    sp = xd.namespace(backend.name.split("-")[0]).special
    x = backend.asarray([1, 2, 3], np.int64)
    y = backend.asarray([0.1, 2.0, 3.0], np.float32)
    want = sc.xlogy(np.array([1, 2, 3]), np.array([0.1, 2.0, 3.0], np.float32))
    got = sp.xlogy(x, y)
    assert got.dtype == backend.xp.float64
    _close(backend.to_numpy(got), want, rtol=1e-15)
    # traced (as the conformance harness runs): the tangent has the result's dtype too
    val, tan = xd.jvp(lambda v: sp.xlogy(x, v), (y,), (backend.asarray([1.0, 1.0, 1.0], np.float32),))
    assert val.dtype == tan.dtype == backend.xp.float64
    _close(backend.to_numpy(tan), [1 / np.float64(np.float32(0.1)), 1.0, 1.0], rtol=1e-15)
