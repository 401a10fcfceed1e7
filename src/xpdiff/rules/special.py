"""Special functions: the ``special`` submodule of the namespace (``xp.special.erf``, ...).

SciPy looks special functions up as ``xp.special.<name>`` on namespaces it does not
know, so ``scipy.special`` functions of traced arrays land here.  The standard has
no ``erf`` or ``gammaln``; their values are computed from standard functions only
(so they run on every backend and device), to about 1e-15 relative accuracy in
float64:

* ``erfcx(a) = exp(a**2) erfc(a)`` for ``a >= 0``: one Chebyshev expansion of
  ``(a + 2) erfcx(a)`` in ``t = (a - 2) / (a + 2)`` (28 coefficients below, computed
  once with mpmath at 50 digits: max relative error 4e-16 on ``[0, inf)``).  ``erf``
  near 0 uses its Taylor series; ``erfc``, ``ndtr`` and ``log_ndtr`` combine ``erfcx``
  with ``exp(-a**2)`` split as ``exp(-ah**2) exp(-(a - ah)(a + ah))`` (``ah`` = ``a``
  rounded down to 1/16, so ``ah**2`` is exact); ``log_ndtr(x)`` for ``x < 0`` is
  ``-x**2/2 + log(erfcx(-x/sqrt 2)/2)``, accurate for arbitrarily negative ``x``.
* ``gammaln``: the Taylor series of ``lgamma(2 + e) = (1 - gamma) e + sum_k (-1)**k
  (zeta(k) - 1) e**k / k`` for ``x`` in ``(0, 2.5]`` (with ``lgamma(x) = lgamma(x + 1)
  - log x``), Stirling's series after shifting ``x`` to at least 10 above, and the
  reflection formula for ``x <= 0``.
* ``polygamma(n, x)`` (``digamma`` is ``n = 0``): Euler-Maclaurin (the shifted
  asymptotic series) for ``x > 0``, a Taylor series around the positive root
  ``1.4616...`` of ``digamma``, and the reflection formula (derivatives of
  ``pi cot(pi x)``) for ``x <= 0``.

Derivatives are closed forms: ``erf' = 2/sqrt(pi) exp(-x**2)``, ``gammaln' =
digamma``, ``polygamma(n)' = polygamma(n + 1)`` (so every order is available),
``log_ndtr' = exp(-x**2/2 - log_ndtr(x)) / sqrt(2 pi)``, ``expit' = expit(x)
expit(-x)``.  ``logsumexp``, ``softmax``, ``log_softmax``, ``entr``, ``xlogy`` and
``xlog1py`` are compositions of namespace functions (max-shifted, so stable).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from ..backend import with_native
from ..core import Zero, namespace_for_values, primitive, raw_namespace
from ._families import (
    batch_broadcast,
    data_broadcast,
    elementwise,
    export,
    is_arraylike,
    operands,
    unbroadcast,
)
from .manipulation import astype, stop_gradient

# --- constants, computed once in Python --------------------------------------------------------


def _bernoulli(m: int) -> list[Fraction]:
    """Bernoulli numbers B_0 .. B_m (B_1 = -1/2), exactly."""
    b = [Fraction(1)]
    for n in range(1, m + 1):
        b.append(-sum(math.comb(n + 1, k) * b[k] for k in range(n)) / (n + 1))
    return b


_B = _bernoulli(40)


def _hurwitz_zeta(s: int, a: float) -> float:
    """zeta(s, a) = sum_k (a + k)**-s for integer s >= 2 and a >= 1 (Euler-Maclaurin)."""
    n = 16
    head = [(a + k) ** -s for k in range(n)]
    z = a + n
    tail = [z ** (1 - s) / (s - 1), z ** -s / 2]
    rising = Fraction(s)  # s (s + 1) ... (s + 2j - 2)
    for j in range(1, 12):
        tail.append(float(_B[2 * j] / math.factorial(2 * j) * rising) * z ** (-s - 2 * j + 1))
        rising *= (s + 2 * j - 1) * (s + 2 * j)
    return math.fsum(head + tail)


_EULER_GAMMA = 0.57721566490153286061
_LOG_PI = math.log(math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT1_2 = math.sqrt(0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Chebyshev coefficients of (a + 2) erfcx(a) in t = (a - 2)/(a + 2), a in [0, inf)
_ERFCX_K = 2.0
_ERFCX_CHEB = (
    1.1540674772329393, -0.710873842540997, 0.13019031765757305, -0.007342284791673278,
    -0.002225689486705265, 0.0003215165983075616, 6.556063148346275e-05, -1.0884883291010032e-05,
    -3.0309331106342965e-06, 2.859521636233973e-07, 1.6469217654838986e-07, 2.5925693704613126e-09,
    -8.309443262030397e-09, -1.2694116556725622e-09, 2.864164542451249e-10, 1.232078021040926e-10,
    4.122427710943604e-12, -7.142986297707039e-12, -1.7172845686857513e-12, 1.2291200426429715e-13,
    1.483745152943428e-13, 2.5790086806430775e-14, -4.717451463359914e-15, -3.145879014838014e-15,
    -4.557065030049009e-16, 1.2617768116665392e-16, 7.21141472113325e-17, 1.188028735749358e-17,
)

# erf(x) = x * sum_n c_n x**(2n) for |x| < 0.5
_ERF_TAYLOR = tuple(_TWO_OVER_SQRT_PI * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                    for n in range(15))

# lgamma(2 + e) = sum_k c_k e**k, c_1 = 1 - gamma, c_k = (-1)**k (zeta(k) - 1) / k, |e| <= 0.5
_LGAMMA2_TAYLOR = (1.0 - _EULER_GAMMA,) + tuple(
    (-1) ** k * _hurwitz_zeta(k, 2.0) / k for k in range(2, 30))
# digamma(2 + e) = sum_k k c_k e**(k - 1), the derivative of the series above
_DIGAMMA2_TAYLOR = tuple(k * c for k, c in enumerate(_LGAMMA2_TAYLOR, start=1))

# the positive root of digamma, as hi + lo, and digamma's Taylor series around it:
# digamma(x0 + d) = sum_n (-1)**(n + 1) zeta(n + 1, x0) d**n
_DIGAMMA_ROOT_HI = 1.4616321449683622
_DIGAMMA_ROOT_LO = 9.549995429965697e-17
_DIGAMMA_ROOT_TAYLOR = tuple((-1) ** (n + 1) * _hurwitz_zeta(n + 1, _DIGAMMA_ROOT_HI)
                             for n in range(1, 26))

# Stirling's series of lgamma: sum_k B_2k / (2k (2k - 1)) z**(1 - 2k)
_STIRLING = tuple(float(_B[2 * k] / (2 * k * (2 * k - 1))) for k in range(1, 10))

_SHIFT = 10  # polygamma/lgamma: shift x up to at least this before the asymptotic series


def _cot_derivative_poly(n: int) -> list[int]:
    """Coefficients (lowest first) of P_n with d^n/dy^n cot(y) = P_n(cot y)."""
    p = [0, 1]  # P_0(c) = c
    for _ in range(n):
        dp = [k * p[k] for k in range(1, len(p))] + [0]  # P'
        # -(1 + c^2) P'(c)
        q = [0] * (len(dp) + 2)
        for k, v in enumerate(dp):
            q[k] -= v
            q[k + 2] -= v
        while len(q) > 1 and q[-1] == 0:
            q.pop()
        p = q
    return p


# --- raw evaluation on backend arrays (the implementations) -----------------------------------
# These run on raw arrays of one backend (``bk`` is its namespace), so operators are safe
# here.  Every branch is evaluated on "safe" inputs so that no floating-point warning is
# raised for any input, including inf and nan.


def _horner(coefs: tuple, t: Any) -> Any:
    acc = coefs[-1]
    for c in coefs[-2::-1]:
        acc = acc * t + c
    return acc


def _finfo_max(bk: Any, x: Any) -> float:
    return float(bk.finfo(x.dtype).max)


def _erfcx_nonneg(bk: Any, a: Any) -> Any:
    """exp(a**2) erfc(a) for a >= 0 (inf -> 0, nan -> nan)."""
    fin = bk.isfinite(a)
    s = bk.where(fin, a, 0.0)
    t = (s - _ERFCX_K) / (s + _ERFCX_K)
    b1 = bk.zeros_like(t)
    b2 = bk.zeros_like(t)
    t2 = 2.0 * t
    for c in _ERFCX_CHEB[:0:-1]:
        b1, b2 = t2 * b1 - b2 + c, b1
    r = (t * b1 - b2 + _ERFCX_CHEB[0]) / (s + _ERFCX_K)
    return bk.where(fin, r, bk.where(a > 0, 0.0, a))


def _exp_neg_sq(bk: Any, a: Any, scale: float = 1.0) -> Any:
    """exp(-scale * a**2) for a >= 0 with a**2 split so that no rounding is amplified."""
    a = bk.minimum(a, 40.0)
    ah = bk.floor(a * 16.0) / 16.0
    return bk.exp(-scale * (ah * ah)) * bk.exp(-scale * ((a - ah) * (a + ah)))


def _erfc_tail(bk: Any, a: Any) -> Any:
    """erfc(a) for a >= 0."""
    return _exp_neg_sq(bk, bk.where(bk.isnan(a), 0.0, a)) * _erfcx_nonneg(bk, a)


def _erf_impl(bk: Any, x: Any) -> Any:
    a = bk.abs(x)
    small = a < 0.5
    s = bk.where(small, x, 0.0)
    taylor = s * _horner(_ERF_TAYLOR, s * s)
    e = _erfc_tail(bk, a)
    return bk.where(small, taylor, bk.where(x < 0, e - 1.0, 1.0 - e))


def _erfc_impl(bk: Any, x: Any) -> Any:
    e = _erfc_tail(bk, bk.abs(x))
    return bk.where(x < 0, 2.0 - e, e)


def _ndtr_tail(bk: Any, a: Any) -> Any:
    """P(Z > a) = erfc(a / sqrt 2) / 2 for a >= 0 (exp(-a**2/2) split exactly)."""
    safe = bk.where(bk.isnan(a), 0.0, a)
    return 0.5 * _exp_neg_sq(bk, safe, 0.5) * _erfcx_nonneg(bk, a * _SQRT1_2)


def _ndtr_impl(bk: Any, x: Any) -> Any:
    q = _ndtr_tail(bk, bk.abs(x))
    return bk.where(x < 0, q, 1.0 - q)


def _log_ndtr_impl(bk: Any, x: Any) -> Any:
    a = bk.abs(x)
    lim = math.sqrt(2.0) * math.sqrt(_finfo_max(bk, x)) * 0.99  # beyond, -a**2/2 overflows
    s = bk.where(bk.isfinite(a), bk.minimum(a, lim), lim)
    # x < 0: log(erfc(a/sqrt 2)/2) = -a**2/2 + log(erfcx(a/sqrt 2)/2)
    neg = -((0.5 * s) * s) + bk.log(0.5 * _erfcx_nonneg(bk, s * _SQRT1_2))
    neg = bk.where(a >= lim, -math.inf, neg)
    pos = bk.log1p(-_ndtr_tail(bk, s))
    out = bk.where(x < 0, neg, pos)
    return bk.where(bk.isnan(x), x, out)


def _expit_impl(bk: Any, x: Any) -> Any:
    e = bk.exp(-bk.abs(x))
    return bk.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logit_impl(bk: Any, p: Any) -> Any:
    inside = (p > 0.0) & (p < 1.0)
    s = bk.where(inside, p, 0.5)
    mid = (s >= 0.25) & (s <= 0.75)
    # near 1/2: log(p/(1-p)) = log1p((2p - 1)/(1 - p)), 2p - 1 exact
    m = bk.where(mid, s, 0.5)
    central = bk.log1p((2.0 * m - 1.0) / (1.0 - m))
    tails = bk.log(s) - bk.log1p(-s)
    out = bk.where(mid, central, tails)
    edge = bk.where(p == 0.0, -math.inf, bk.where(p == 1.0, math.inf, bk.full_like(p, math.nan)))
    return bk.where(inside, out, bk.where(bk.isnan(p), p, edge))


def _log_sinpi_abs(bk: Any, x: Any) -> Any:
    """log |sin(pi x)| for finite non-integer x, with exact argument reduction (and
    log(pi r) for tiny r, where pi r would round in the subnormal range)."""
    r = bk.abs(x - bk.round(x))  # in [0, 1/2], exact
    tiny = r < 1e-8
    rs = bk.where(r == 0.0, 1.0, r)
    return bk.where(tiny, _LOG_PI + bk.log(rs), bk.log(bk.sin(math.pi * bk.where(tiny, 0.5, rs))))


def _lgamma_overflow(big: float) -> float:
    """The largest x > 0 with lgamma(x) below ``big`` (slightly under, Newton in Python)."""
    x = big / math.log(big)
    for _ in range(50):  # fixed point of x (log x - 1) = big
        x = big / (math.log(x) - 1.0)
    return x * (1.0 - 1e-6)


def _lgamma_pos(bk: Any, y: Any) -> Any:
    """lgamma(y) for y > 0 (finite)."""
    big = _lgamma_overflow(_finfo_max(bk, y))
    # series region (0, 2.5]
    e = bk.where(y < 0.5, y, bk.where(y < 1.5, y - 1.0, y - 2.0))
    e = bk.clip(e, -0.5, 0.5)
    series = e * _horner(_LGAMMA2_TAYLOR, e)  # lgamma(2 + e)
    l1p = bk.log1p(e)  # lgamma(1 + e) = lgamma(2 + e) - log1p(e)
    ys = bk.where(y < 0.5, y, 1.0)
    low = bk.where(y < 0.5, series - l1p - bk.log(ys),
                   bk.where(y < 1.5, series - l1p, series))
    # Stirling region (2.5, inf): shift up to _SHIFT
    z = bk.clip(y, 2.5, big)
    prod = bk.ones_like(z)
    for _ in range(_SHIFT - 2):
        m = z < _SHIFT
        prod = bk.where(m, prod * z, prod)
        z = bk.where(m, z + 1.0, z)
    zi = 1.0 / z
    corr = zi * _horner(_STIRLING, zi * zi)
    lz = bk.log(z)
    high = z * (lz - 1.0) - 0.5 * lz + _HALF_LOG_2PI + corr - bk.log(prod)
    high = bk.where(y > big, math.inf, high)
    return bk.where(y <= 2.5, low, high)


def _gammaln_impl(bk: Any, x: Any) -> Any:
    fin = bk.isfinite(x)
    xs = bk.where(fin, x, 1.0)
    pos = xs > 0
    y = bk.where(pos, xs, 1.0 - xs)
    lg = _lgamma_pos(bk, y)
    pole = xs == bk.round(xs)
    refl = _LOG_PI - _log_sinpi_abs(bk, xs) - lg
    out = bk.where(pos, lg, bk.where(pole, math.inf, refl))
    return bk.where(fin, out, bk.where(bk.isnan(x), x, math.inf))


def _psi_pos(bk: Any, y: Any, n: int) -> Any:
    """polygamma(n, y) for y > 0 (finite), by Euler-Maclaurin."""
    # below ``tiny``, n!/y**(n+1) overflows: the result is infinite
    tiny = (math.factorial(n) / _finfo_max(bk, y)) ** (1.0 / (n + 1)) * 1.01
    ysafe = bk.maximum(y, tiny)
    z = ysafe
    acc = bk.zeros_like(z)
    shift = _SHIFT + 2 * n
    for _ in range(shift):
        m = z < shift
        term = 1.0 / z if n == 0 else z ** -(n + 1)
        acc = bk.where(m, acc + term, acc)
        z = bk.where(m, z + 1.0, z)
    zi = 1.0 / z
    zi2 = zi * zi
    if n == 0:
        coefs = tuple(float(_B[2 * k] / (2 * k)) for k in range(1, 12))
        out = bk.log(z) - 0.5 * zi - zi2 * _horner(coefs, zi2) - acc
        out = bk.where(y < ysafe, -math.inf, out)
    else:
        # zeta(n+1, z) ~ z**-n/n + z**-(n+1)/2 + sum_k B_2k/(2k)! (n+1)_(2k-1) z**-(n+2k)
        coefs = []
        for k in range(1, 14):
            rising = math.prod(range(n + 1, n + 2 * k))
            coefs.append(float(_B[2 * k] / math.factorial(2 * k) * rising))
        zn = z ** -n
        zeta = zn * (1.0 / n + 0.5 * zi + zi2 * _horner(tuple(coefs), zi2)) + acc
        out = (-1) ** (n + 1) * math.factorial(n) * zeta
        out = bk.where(y < ysafe, (-1) ** (n + 1) * math.inf, out)
    return out


def _psi_impl(bk: Any, x: Any, n: int) -> Any:
    fin = bk.isfinite(x)
    xs = bk.where(fin, x, 1.0)
    pos = xs > 0
    y = bk.where(pos, xs, 1.0 - xs)
    p = _psi_pos(bk, y, n)
    if n == 0:
        # (0, 2.5]: digamma(2 + e) is the derivative of lgamma's series
        e = bk.clip(bk.where(y < 0.5, y, bk.where(y < 1.5, y - 1.0, y - 2.0)), -0.5, 0.5)
        dser = _horner(_DIGAMMA2_TAYLOR, e)
        tiny = 1.01 / _finfo_max(bk, y)
        ys = bk.where(y < 0.5, bk.maximum(y, tiny), 1.0)
        low = bk.where(y < 0.5, dser - 1.0 / (1.0 + e) - 1.0 / ys,
                       bk.where(y < 1.5, dser - 1.0 / bk.where(y < 0.5, 1.0, y), dser))
        p = bk.where(y <= 2.5, bk.where(y < tiny, -math.inf, low), p)
        # around the positive root
        d = bk.clip((y - _DIGAMMA_ROOT_HI) - _DIGAMMA_ROOT_LO, -0.25, 0.25)
        near = bk.abs(y - _DIGAMMA_ROOT_HI) < 0.25
        p = bk.where(near, d * _horner(_DIGAMMA_ROOT_TAYLOR, d), p)
    # reflection for x <= 0: psi_n(x) = -pi d^n/dx^n cot(pi x) + (-1)^n psi_n(1 - x)
    r = xs - bk.round(xs)  # exact, in [-1/2, 1/2]
    a = bk.abs(r)
    pole = a == 0.0
    # cot(pi a) = 1/tan(pi a) for a <= 1/4, tan(pi (1/2 - a)) above (1/2 - a is exact)
    near = a <= 0.25
    tan_near = bk.tan(math.pi * bk.where(near & ~pole, a, 0.25))
    cot_far = bk.tan(math.pi * (0.5 - bk.where(near, 0.5, a)))
    # near a pole, cot(pi x) and its derivatives overflow: there the result is +-inf
    poly = tuple(float(v) for v in _cot_derivative_poly(n))
    c_lim = (_finfo_max(bk, x) / (math.pi ** (n + 1) * sum(abs(v) for v in poly))) ** (1 / (n + 1))
    huge = near & (tan_near < 1.0 / c_lim)
    c = bk.where(near, 1.0 / bk.where(huge, 1.0, tan_near), cot_far)
    c = bk.where(r < 0, -c, c)
    refl = -(math.pi ** (n + 1)) * _horner(poly, c) + (-1) ** n * p
    sgn = bk.where(r < 0, -1.0, bk.ones_like(r)) ** (n + 1)
    refl = bk.where(huge, -((-1) ** n) * sgn * math.inf, refl)
    if n == 0:
        pole_val = bk.where(bk.signbit(xs), math.inf, bk.full_like(xs, -math.inf))
        pole_val = bk.where(xs == 0.0, pole_val, math.nan)
    else:
        pole_val = (-1) ** (n + 1) * math.inf
    out = bk.where(pos, p, bk.where(pole, pole_val, refl))
    if n == 0:
        inf_val = bk.where(x > 0, math.inf, bk.full_like(x, math.nan))
    else:
        inf_val = bk.where(x > 0, 0.0, bk.full_like(x, (-1) ** (n + 1) * math.inf))
    return bk.where(fin, out, bk.where(bk.isnan(x), x, inf_val))


# --- primitives ----------------------------------------------------------------------------


def _dexp_sq(xp: Any, x: Any, c: float) -> Any:
    return xp.multiply(c, xp.exp(xp.negative(xp.square(x))))


_erf = elementwise("erf", (lambda xp, p, y: _dexp_sq(xp, p[0], _TWO_OVER_SQRT_PI),),
                   impl=with_native("erf", _erf_impl))
_erfc = elementwise("erfc", (lambda xp, p, y: _dexp_sq(xp, p[0], -_TWO_OVER_SQRT_PI),),
                    impl=with_native("erfc", _erfc_impl))
_ndtr = elementwise(
    "ndtr", (lambda xp, p, y: xp.multiply(
        _INV_SQRT_2PI, xp.exp(xp.multiply(-0.5, xp.square(p[0])))),),
    impl=with_native("ndtr", _ndtr_impl))
_log_ndtr = elementwise(
    "log_ndtr", (lambda xp, p, y: xp.multiply(_INV_SQRT_2PI, xp.exp(
        xp.subtract(xp.multiply(-0.5, xp.square(p[0])), y))),),
    impl=with_native("log_ndtr", _log_ndtr_impl))
_expit = elementwise("expit", (lambda xp, p, y: xp.multiply(y, _expit.bind(xp.negative(p[0]))),),
                     impl=with_native("expit", _expit_impl))
_logit = elementwise("logit", (lambda xp, p, y: xp.divide(
    1.0, xp.multiply(p[0], xp.subtract(1.0, p[0]))),), impl=with_native("logit", _logit_impl))
_gammaln = elementwise("gammaln", (lambda xp, p, y: _polygamma.bind(p[0], n=0),),
                       impl=with_native("gammaln", _gammaln_impl))


def _polygamma_jvp(xp, primals, tangents, *, n):
    x, t = primals[0], tangents[0]
    return _polygamma.bind(x, n=n), xp.multiply(t, _polygamma.bind(x, n=n + 1))


def _polygamma_vjp(xp, g, out, primals, needs, *, n):
    return [xp.multiply(g, _polygamma.bind(primals[0], n=n + 1))]


_polygamma = primitive(
    "polygamma", with_native("polygamma", lambda bk, x, *, n: _psi_impl(bk, x, n)),
    jvp=_polygamma_jvp, vjp=_polygamma_vjp,
    batch=lambda xp, v, b, size, *, n: (_polygamma.bind(v[0], n=n), True),
    data=lambda ctx, ops, has, **kw: (ops, kw))


def _order_is_constant(derivative_asked: bool) -> None:
    if derivative_asked:
        raise TypeError("special.polygamma: the order n is an integer and has no derivative, "
                        "but a derivative with respect to n was asked for (n is traced); pass "
                        "n as a constant: a Python int, an integer array, or stop_gradient(n)")


def _polygamma_n_jvp(xp, primals, tangents):
    n, x = primals
    _order_is_constant(not isinstance(tangents[0], Zero))
    return _polygamma_n.bind(n, x), xp.multiply(tangents[1], _polygamma_n.bind(xp.add(n, 1), x))


def _polygamma_n_vjp(xp, g, out, primals, needs):
    n, x = primals
    _order_is_constant(needs[0])
    return [None, unbroadcast(xp, xp.multiply(g, _polygamma_n.bind(xp.add(n, 1), x)),
                              x.shape)]


def _polygamma_n_composite(bk: Any, n: Any, x: Any) -> Any:
    raise NotImplementedError(
        "special.polygamma: an array order n needs a native polygamma kernel (NumPy or CuPy "
        "with SciPy installed); on this backend pass n as a Python int (the composite "
        "is unrolled for one order)")


_polygamma_n = primitive(
    "polygamma_n", with_native("polygamma_n", _polygamma_n_composite),
    jvp=_polygamma_n_jvp, vjp=_polygamma_n_vjp, data=data_broadcast)
_polygamma_n.batch = batch_broadcast(_polygamma_n)


# --- the submodule's functions -------------------------------------------------------------


def _floating(x: Any, fname: str) -> Any:
    """``x`` as a real floating array (integers and bools cast to the default float)."""
    if not is_arraylike(x):
        raise TypeError(f"special.{fname}: expected an array, got {type(x).__name__}; "
                        f"convert it with xp.asarray")
    bk = raw_namespace(x)
    if bk.isdtype(x.dtype, "real floating"):
        return x
    if bk.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"special.{fname}: complex input ({x.dtype}) is not supported; "
                        f"pass a real floating array")
    info = bk.__array_namespace_info__()
    return astype(x, info.default_dtypes(device=x.device)["real floating"])


@export(name="special.erf")
def erf(x, /):
    """The error function ``2/sqrt(pi) int_0^x exp(-t**2) dt`` (differentiable).

    >>> import numpy as np, xpdiff as xd
    >>> xs = xd.numpy.special
    >>> float(xs.erf(np.asarray(0.5)))
    0.5204998778130465
    >>> float(xd.grad(xs.erf)(np.asarray(0.0)))  # 2/sqrt(pi)
    1.1283791670955126
    """
    return _erf.bind(_floating(x, "erf"))


@export(name="special.erfc")
def erfc(x, /):
    """The complementary error function ``1 - erf(x)``, accurate in the right tail."""
    return _erfc.bind(_floating(x, "erfc"))


@export(name="special.ndtr")
def ndtr(x, /):
    """The standard normal CDF ``(1 + erf(x/sqrt 2)) / 2``, accurate in the left tail."""
    return _ndtr.bind(_floating(x, "ndtr"))


@export(name="special.log_ndtr")
def log_ndtr(x, /):
    """``log(ndtr(x))``, accurate for very negative ``x`` (no underflow) and for large ``x``.

    >>> import numpy as np, xpdiff as xd
    >>> round(float(xd.numpy.special.log_ndtr(np.asarray(-40.0))), 10)
    -804.6084420138
    """
    return _log_ndtr.bind(_floating(x, "log_ndtr"))


@export(name="special.expit")
def expit(x, /):
    """The logistic sigmoid ``1 / (1 + exp(-x))`` (no overflow for any ``x``)."""
    return _expit.bind(_floating(x, "expit"))


@export(name="special.logit")
def logit(x, /):
    """The inverse of ``expit``: ``log(p / (1 - p))``."""
    return _logit.bind(_floating(x, "logit"))


@export(name="special.gammaln")
def gammaln(x, /):
    """``log |Gamma(x)|``; its derivative is ``digamma``.

    >>> import numpy as np, xpdiff as xd
    >>> round(float(xd.numpy.special.gammaln(np.asarray(0.5))), 13)  # log(sqrt(pi))
    0.5723649429247
    """
    return _gammaln.bind(_floating(x, "gammaln"))


@export(name="special.polygamma")
def polygamma(n, x, /):
    """The ``n``-th derivative of ``digamma``; differentiable in ``x`` to every order
    (``d/dx polygamma(n, x) = polygamma(n + 1, x)``).

    ``n`` is a Python int >= 0, or an array of integer orders (as SciPy passes it)
    broadcast against ``x``; the result then has SciPy's dtype (integer orders count as
    the default floating dtype: with ``float32`` values the result is ``float64``).  An
    array ``n`` is a constant: a derivative with respect to it is refused
    (``TypeError``; it has none), and it needs a native kernel (NumPy or CuPy with
    SciPy installed; elsewhere pass a Python int).

    >>> import numpy as np, xpdiff as xd
    >>> n, x = np.array([1, 2]), np.array([1.0, 1.0])
    >>> xd.grad(lambda x: xd.numpy.sum(xd.numpy.special.polygamma(n, x)))(x).round(6)
    array([-2.404114,  6.493939])
    """
    if is_arraylike(n):
        xp = namespace_for_values([n, x] if is_arraylike(x) else [n])
        if not (xp.isdtype(n.dtype, "integral") or xp.isdtype(n.dtype, "real floating")):
            raise TypeError(f"special.polygamma: n must hold integer orders (an integer or "
                            f"real floating array), got dtype {n.dtype}")
        x = _floating(x, "polygamma")
        # as SciPy: integer orders count as the default floating dtype (int orders and
        # float32 x give float64), floating orders as their own
        order = n.dtype
        if xp.isdtype(order, "integral"):
            order = xp.__array_namespace_info__().default_dtypes(device=x.device)["real floating"]
        dt = xp.result_type(order, x.dtype)
        if dt != x.dtype:
            x = xp.astype(x, dt)
        return _polygamma_n.bind(n, x)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TypeError(f"special.polygamma: n must be a Python int >= 0 or an array of "
                        f"integer orders, got {n!r}")
    return _polygamma.bind(_floating(x, "polygamma"), n=n)


@export(name="special.digamma")
def digamma(x, /):
    """The digamma function ``Gamma'(x) / Gamma(x)``; its derivative is ``polygamma(1, x)``.

    >>> import numpy as np, xpdiff as xd
    >>> round(float(xd.numpy.special.digamma(np.asarray(1.0))), 15)  # -Euler's gamma
    -0.577215664901533
    """
    return _polygamma.bind(_floating(x, "digamma"), n=0)


@export(name="special.entr")
def entr(x, /):
    """Elementwise entropy ``-x log x`` (0 at 0, ``-inf`` for ``x < 0``)."""
    xp = namespace_for_values([x])
    x = _floating(x, "entr")
    fmax = xp.finfo(x.dtype).max
    lim = fmax / math.log(fmax)  # beyond, x log x overflows
    pos = xp.logical_and(xp.greater(x, 0.0), xp.less_equal(x, lim))
    safe = xp.where(pos, x, 1.0)
    val = xp.negative(xp.multiply(safe, xp.log(safe)))
    rest = xp.where(xp.equal(x, 0.0), 0.0, xp.where(xp.isnan(x), x, -math.inf))
    return xp.where(pos, val, rest)


def _xlog(x, y, fname, log_fn, bad):
    x, y = operands(x, y)
    x, y = _floating(x, fname), _floating(y, fname)
    xp = namespace_for_values([x, y])
    if x.dtype != y.dtype:  # computed and returned in the promoted dtype
        dt = xp.result_type(x, y)
        x, y = xp.astype(x, dt), xp.astype(y, dt)
    zero_x = xp.logical_and(xp.equal(x, 0.0), bad(xp, y))
    return xp.multiply(x, log_fn(xp, xp.where(zero_x, 1.0, y)))


@export(name="special.xlogy")
def xlogy(x, y, /):
    """``x * log(y)``, 0 where ``x == 0`` (unless ``y`` is nan); Python scalars allowed.

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.special.xlogy(np.asarray([0.0, 2.0]), np.asarray([0.0, np.e]))
    array([0., 2.])
    """
    return _xlog(x, y, "xlogy", lambda xp, v: xp.log(v),
                 lambda xp, y: xp.logical_or(xp.less_equal(y, 0.0), xp.equal(y, math.inf)))


@export(name="special.xlog1py")
def xlog1py(x, y, /):
    """``x * log1p(y)``, 0 where ``x == 0`` (unless ``y`` is nan); Python scalars allowed."""
    return _xlog(x, y, "xlog1py", lambda xp, v: xp.log1p(v),
                 lambda xp, y: xp.logical_or(xp.less_equal(y, -1.0), xp.equal(y, math.inf)))


def _shift(xp, a, axis):
    """The max over ``axis`` (kept dims) as a constant, 0 where it is not finite."""
    m = stop_gradient(xp.max(a, axis=axis, keepdims=True))
    return xp.where(xp.isfinite(m), m, 0.0)


@export(name="special.logsumexp")
def logsumexp(a, /, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a), axis))`` computed stably (shifted by the max).

    Args:
        a: a real floating array.
        axis: an int, a tuple of ints or ``None`` (all axes).
        b: optional weights broadcastable against ``a``.
        keepdims: keep the reduced dims with size 1.
        return_sign: also return the sign of the sum (needed when ``b`` has negative
            entries); then returns ``(log|sum|, sign)``.

    >>> import numpy as np, xpdiff as xd
    >>> float(xd.numpy.special.logsumexp(np.asarray([1000.0, 1000.0])))
    1000.6931471805599
    """
    a = _floating(a, "logsumexp")
    xp = namespace_for_values([a])
    m = _shift(xp, a, axis)
    e = xp.exp(xp.subtract(a, m))
    if b is not None:
        e = xp.multiply(e, b)
    s = xp.sum(e, axis=axis, keepdims=True)
    sign = None
    if return_sign:
        sign = xp.sign(s)
        s = xp.abs(s)
    empty = xp.equal(s, 0.0)  # all terms 0: -inf, without a log(0) warning
    out = xp.where(empty, -math.inf, xp.add(xp.log(xp.where(empty, 1.0, s)), m))
    if not keepdims:
        axes = tuple(range(e.ndim)) if axis is None else axis
        if axes != ():
            out = xp.squeeze(out, axis=axes)
            sign = None if sign is None else xp.squeeze(sign, axis=axes)
    if return_sign:
        return out, stop_gradient(sign)
    return out


@export(name="special.softmax")
def softmax(x, /, axis=None):
    """``exp(x) / sum(exp(x), axis)`` computed stably (shifted by the max).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.special.softmax(np.asarray([0.0, 0.0]))
    array([0.5, 0.5])
    """
    x = _floating(x, "softmax")
    xp = namespace_for_values([x])
    e = xp.exp(xp.subtract(x, _shift(xp, x, axis)))
    return xp.divide(e, xp.sum(e, axis=axis, keepdims=True))


@export(name="special.log_softmax")
def log_softmax(x, /, axis=None):
    """``x - logsumexp(x, axis)`` computed stably."""
    x = _floating(x, "log_softmax")
    xp = namespace_for_values([x])
    z = xp.subtract(x, _shift(xp, x, axis))
    return xp.subtract(z, xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True)))


PRIMS = {p.name: p for p in (_erf, _erfc, _ndtr, _log_ndtr, _expit, _logit, _gammaln, _polygamma)}

__all__ = ["PRIMS", "digamma", "entr", "erf", "erfc", "expit", "gammaln", "log_ndtr",
           "log_softmax", "logit", "logsumexp", "ndtr", "polygamma", "softmax", "xlog1py",
           "xlogy"]
