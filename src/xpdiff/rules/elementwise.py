"""Elementwise functions: each states only its partial derivatives."""

from __future__ import annotations

import math

from ..backend import fix_result, namespace_of
from ..core import Zero, bind, namespace_for_values
from ..tracer import Tracer
from ._families import (
    _SCALARS,
    dtype_kind,
    elementwise,
    export,
    is_complex_of_real,
    known_scalar,
    operands,
    unbroadcast,
)

# Rules use the namespace's functions, not operators: a raw backend array on the
# left of an operator would not defer to a traced array on the right.

# name -> derivative (xp, x, y) -> dy/dx, for unary functions
_UNARY = {
    "negative": lambda xp, x, y: -1,
    "positive": lambda xp, x, y: 1,
    "abs": lambda xp, x, y: xp.sign(x),
    "square": lambda xp, x, y: xp.multiply(x, 2.0),
    "sqrt": lambda xp, x, y: _over_root(xp, 0.5, y),
    "exp": lambda xp, x, y: y,
    "expm1": lambda xp, x, y: xp.add(y, 1.0),
    "log": lambda xp, x, y: xp.divide(1.0, x),
    "log1p": lambda xp, x, y: xp.divide(1.0, xp.add(x, 1.0)),
    "log2": lambda xp, x, y: xp.divide(1.0 / math.log(2.0), x),
    "log10": lambda xp, x, y: xp.divide(1.0 / math.log(10.0), x),
    "sin": lambda xp, x, y: xp.cos(x),
    "cos": lambda xp, x, y: xp.negative(xp.sin(x)),
    "tan": lambda xp, x, y: xp.add(xp.square(y), 1.0),
    "asin": lambda xp, x, y: _over_root(xp, 1.0, xp.sqrt(xp.subtract(1.0, xp.square(x)))),
    "acos": lambda xp, x, y: _over_root(xp, -1.0, xp.sqrt(xp.subtract(1.0, xp.square(x)))),
    "atan": lambda xp, x, y: xp.divide(1.0, xp.add(xp.square(x), 1.0)),
    "sinh": lambda xp, x, y: xp.cosh(x),
    "cosh": lambda xp, x, y: xp.sinh(x),
    "tanh": lambda xp, x, y: xp.subtract(1.0, xp.square(y)),
    "asinh": lambda xp, x, y: xp.divide(1.0, xp.sqrt(xp.add(xp.square(x), 1.0))),
    "acosh": lambda xp, x, y: _over_root(xp, 1.0, xp.sqrt(xp.subtract(xp.square(x), 1.0))),
    "atanh": lambda xp, x, y: xp.divide(1.0, xp.subtract(1.0, xp.square(x))),
    "reciprocal": lambda xp, x, y: xp.negative(xp.square(y)),
    "conj": lambda xp, x, y: 1,
    "real": lambda xp, x, y: 1,
}

# unary functions whose derivative is zero or undefined: no derivative flows
_UNARY_NODIFF = ["sign", "floor", "ceil", "trunc", "round", "isfinite", "isinf", "isnan",
                 "signbit", "logical_not", "bitwise_invert", "imag"]

def _over_root(xp, num, r):
    """``num / r`` for a Python number ``num`` and a square root ``r`` (>= 0 or NaN):
    ``+-inf`` where ``r == 0`` (an infinite derivative), without a division by zero."""
    zero = xp.equal(r, 0.0)
    return xp.where(zero, num * math.inf, xp.divide(num, xp.where(zero, 1.0, r)))


def _datan2(xp, a, b, num):
    """``num / (a**2 + b**2)`` (``num`` is ``b`` or ``-a``) as ``(num / h) / h`` with
    ``h = hypot(a, b)`` (no overflow or underflow of the squares); 0 at the origin
    (a subgradient) and where ``h`` is infinite (the limit), without 0/0 or inf/inf."""
    h = xp.hypot(a, b)
    bad = xp.logical_or(xp.equal(h, 0.0), xp.isinf(h))
    hs = xp.where(bad, 1.0, h)
    return xp.where(bad, 0.0, xp.divide(xp.divide(num, hs), hs))


def _dhypot(xp, a, h):
    """``a / hypot(a, b)``: 0 at the origin (the minimum-norm subgradient, as ``abs``
    has ``sign(0) = 0``), ``sign(a)`` where ``a`` is infinite, 0 where only the other
    operand is: no 0/0 or inf/inf."""
    bad = xp.logical_or(xp.equal(h, 0.0), xp.isinf(h))
    return xp.where(bad, xp.where(xp.isinf(a), xp.sign(a), 0.0),
                    xp.divide(a, xp.where(bad, 1.0, h)))


_BINARY = {
    "add": (lambda xp, p, y: 1, lambda xp, p, y: 1),
    "subtract": (lambda xp, p, y: 1, lambda xp, p, y: -1),
    "multiply": (lambda xp, p, y: p[1], lambda xp, p, y: p[0]),
    "divide": (lambda xp, p, y: xp.divide(1.0, p[1]),
               lambda xp, p, y: xp.negative(xp.divide(y, p[1]))),
    "pow": (lambda xp, p, y: _dpow_base(xp, p[0], p[1], y),
            lambda xp, p, y: _dpow_exp(xp, p[0], p[1], y)),
    "maximum": (lambda xp, p, y: _dmax(xp, p[0], p[1], xp.greater),
                lambda xp, p, y: _dmax(xp, p[1], p[0], xp.greater)),
    "minimum": (lambda xp, p, y: _dmax(xp, p[0], p[1], xp.less),
                lambda xp, p, y: _dmax(xp, p[1], p[0], xp.less)),
    "atan2": (lambda xp, p, y: _datan2(xp, p[0], p[1], p[1]),
              lambda xp, p, y: _datan2(xp, p[0], p[1], xp.negative(p[0]))),
    "hypot": (lambda xp, p, y: _dhypot(xp, p[0], y), lambda xp, p, y: _dhypot(xp, p[1], y)),
    "logaddexp": (lambda xp, p, y: _dlogaddexp(xp, p[0], y),
                  lambda xp, p, y: _dlogaddexp(xp, p[1], y)),
    "copysign": (lambda xp, p, y: xp.subtract(
        1.0, xp.multiply(2.0, xp.astype(xp.not_equal(xp.signbit(p[0]), xp.signbit(p[1])), y.dtype))),
        None),
    "remainder": (lambda xp, p, y: 1, lambda xp, p, y: xp.negative(xp.floor_divide(p[0], p[1]))),
}

_BINARY_NODIFF = ["floor_divide", "equal", "not_equal", "less", "less_equal", "greater",
                  "greater_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and",
                  "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
                  "nextafter"]


def _dlogaddexp(xp, a, y):
    """``exp(a - y)``, with 1 where ``a == y`` is infinite (no inf - inf)."""
    same_inf = xp.logical_and(xp.isinf(y), xp.equal(a, y))
    return xp.exp(xp.where(same_inf, 0.0, xp.subtract(a, xp.where(same_inf, 0.0, y))))


def _dpow_base(xp, a, b, y):
    # b * a**(b-1), with 0 where b == 0 (so 0**0 has derivative 0): the exponent is
    # masked (b = 0 -> a**0 = 1, times b = 0), so a scalar b costs a scalar select.
    # At a == 0 with b < 1 the derivative is infinite: b * inf, formed without 0**(b-1)
    # (a division by zero).  A Python exponent n >= 1 (x ** 2) has neither case: its
    # derivative is n * a**(n-1) as is (a itself times 2 for a square)
    n = known_scalar(b)
    if type(n) in (int, float) and n >= 1:
        if n == 1:
            return 1
        return xp.multiply(b, a if n == 2 else xp.pow(a, n - 1))
    b1 = xp.where(xp.equal(b, 0.0), 1.0, b)
    e = xp.subtract(b1, 1.0)
    pole = xp.logical_and(xp.equal(a, 0.0), xp.less(e, 0.0))
    return xp.multiply(b, xp.where(pole, math.inf, xp.pow(xp.where(pole, 1.0, a), e)))


def _dpow_exp(xp, a, b, y):
    # log(a) * a**b, with 0 where a == 0 (the limit for b > 0) and NaN where a < 0 (no
    # real logarithm), without evaluating log at 0 or below
    pos = xp.greater(a, 0.0)
    val = xp.multiply(xp.log(xp.where(pos, a, 1.0)), y)
    return xp.where(pos, val, xp.where(xp.equal(a, 0.0), 0.0, xp.where(xp.less(a, 0.0), math.nan, val)))


def _dmax(xp, a, b, cmp):
    """d maximum(a, b)/da (or minimum with ``less``): ties split evenly (0.5 each)."""
    return xp.add(xp.astype(cmp(a, b), a.dtype), xp.multiply(0.5, xp.astype(xp.equal(a, b), a.dtype)))


# --- implementations that correct the backend on the standard's special cases --------------
# (NumPy's complex expm1/tanh and float floor_divide miss some of them)

def _real_operands(bk, *xs):
    """No operand has a complex dtype: the impls below are then the backend's function
    itself (``direct_if``: jit records that call)."""
    return all(dtype_kind(bk, x.dtype) != "complex floating" for x in xs)


def _expm1_impl(bk, x):
    y = bk.expm1(x)
    if _real_operands(bk, x):
        return y

    def c(re, im):  # a constant of y's dtype (two Python scalars in where would promote)
        return bk.full_like(y, complex(re, im))

    a, b = bk.real(x), bk.imag(x)
    neg_b = bk.signbit(b)
    b_zero = b == 0.0
    b_bad = bk.isinf(b) | bk.isnan(b)
    inf, nan = math.inf, math.nan
    y = bk.where((a == 0.0) & b_zero, bk.where(neg_b, c(0.0, -0.0), c(0.0, 0.0)), y)
    y = bk.where((a == inf) & b_zero, bk.where(neg_b, c(inf, -0.0), c(inf, 0.0)), y)
    y = bk.where((a == -inf) & b_bad, c(-1.0, 0.0), y)
    y = bk.where((a == inf) & b_bad, c(inf, nan), y)
    return bk.where(bk.isnan(a) & b_zero, bk.where(neg_b, c(nan, -0.0), c(nan, 0.0)), y)


def _tanh_impl(bk, x):
    y = bk.tanh(x)
    if _real_operands(bk, x):
        return y

    def c(re, im):
        return bk.full_like(y, complex(re, im))

    a, b = bk.real(x), bk.imag(x)
    neg_b = bk.signbit(b)
    fin_b = bk.isfinite(b)
    y = bk.where((a == math.inf) & fin_b, bk.where(neg_b, c(1.0, -0.0), c(1.0, 0.0)), y)
    return bk.where((a == -math.inf) & fin_b, bk.where(neg_b, c(-1.0, -0.0), c(-1.0, 0.0)), y)


_expm1_impl.direct_if = ("expm1", _real_operands)
_tanh_impl.direct_if = ("tanh", _real_operands)


def _floor_divide_impl(bk, x1, x2):
    if not (dtype_kind(bk, x1.dtype) == "real floating" == dtype_kind(bk, x2.dtype)):
        return bk.floor_divide(x1, x2)
    # exactly one operand infinite: the quotient itself (+-inf, or +-0 with the right sign)
    one_inf = (bk.isinf(x1) != bk.isinf(x2)) & ~bk.isnan(x1) & ~bk.isnan(x2)
    y = bk.floor_divide(bk.where(one_inf, 1.0, x1), bk.where(one_inf, 1.0, x2))
    return bk.where(one_inf, x1 / bk.where(one_inf, x2, 1.0), y)


_floor_divide_impl.direct_if = (  # the plain call unless both are real floating
    "floor_divide", lambda bk, x1, x2: not (dtype_kind(bk, x1.dtype) == "real floating"
                                            == dtype_kind(bk, x2.dtype)))
_IMPLS = {"expm1": _expm1_impl, "tanh": _tanh_impl, "floor_divide": _floor_divide_impl}

PRIMS = {}


def _def_unary(name, deriv):
    prim = elementwise(name, (lambda xp, p, y, _d=deriv: _d(xp, p[0], y),) if deriv else None,
                       impl=_IMPLS.get(name))
    PRIMS[name] = prim

    def fn(x, /):
        return bind(prim, (x,), {})

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (array API standard), differentiable through xpdiff."
    export(fn)


def _def_binary(name, partials):
    prim = elementwise(name, partials, impl=_IMPLS.get(name))
    PRIMS[name] = prim

    def fn(x1, x2, /):
        if isinstance(x1, _SCALARS) or isinstance(x2, _SCALARS):
            x1, x2 = operands(x1, x2)
        return bind(prim, (x1, x2), {})

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (array API standard), differentiable through xpdiff."
    export(fn)


for _n, _d in _UNARY.items():
    _def_unary(_n, _d)
for _n in _UNARY_NODIFF:
    _def_unary(_n, None)
for _n, _d in _BINARY.items():
    _def_binary(_n, _d)
for _n in _BINARY_NODIFF:
    _def_binary(_n, None)

# How a structured tangent's low-rank weight in closed form passes operand i (see
# xpdiff.interpreters.structured.Scaling): ("shift", a) is the constant a, ("scale", k) is
# k times the operand's value.  exp turns a shift into a scaling, log a scaling into a
# shift; products and quotients pass scalings (k * u * v = k * out; the divisor's gives
# -k * out).  Other primitives have no rule: their weights are computed as arrays.
_SCALING = {
    "exp": lambda i, f: ("scale", f[1]) if f[0] == "shift" else None,
    "log": lambda i, f: ("shift", f[1]) if f[0] == "scale" else None,
    "negative": lambda i, f: f if f[0] == "scale" else ("shift", -f[1]),
    "multiply": lambda i, f: f if f[0] == "scale" else None,
    "divide": lambda i, f: (f if i == 0 else ("scale", -f[1])) if f[0] == "scale" else None,
}
for _n, _rule in _SCALING.items():
    PRIMS[_n].scaling = _rule


def _where_impl(bk, c, a, b):
    return bk.where(c, a, b)


_where = elementwise(
    "where",
    (None, lambda xp, p, y: xp.astype(p[0], y.dtype),
     lambda xp, p, y: xp.astype(xp.logical_not(p[0]), y.dtype)),
    impl=_where_impl)


def _where_jvp(xp, primals, tangents):
    """The tangent of the selected operand: a select, never ``c * ta + (1 - c) * tb``
    (which is NaN where the branch not taken has a NaN tangent)."""
    c, a, b = primals
    out = _where.bind(c, a, b)
    _, ta, tb = tangents
    za, zb = ta is None or isinstance(ta, Zero), tb is None or isinstance(tb, Zero)
    if za and zb:
        return out, Zero(out)
    t = xp.where(c, 0.0 if za else ta, 0.0 if zb else tb)
    if t.dtype != out.dtype:
        t = xp.astype(t, out.dtype)
    if tuple(t.shape) != tuple(out.shape):
        t = xp.broadcast_to(t, out.shape)
    return out, t


def _where_vjp(xp, g, out, primals, needs):
    """Each branch gets the cotangent where it was selected and 0 elsewhere (a select)."""
    c, a, b = primals
    res = [None]
    for x, need, picked in ((a, needs[1], True), (b, needs[2], False)):
        if not need:
            res.append(None)
            continue
        ct = unbroadcast(xp, xp.where(c, g, 0.0) if picked else xp.where(c, 0.0, g), x.shape)
        res.append(xp.real(ct) if is_complex_of_real(ct, x) else ct)
    return res


_where.jvp, _where.vjp, _where.select = _where_jvp, _where_vjp, True


@export
def where(condition, x1, x2, /):
    """Elementwise select: ``x1`` where ``condition`` else ``x2``.

    The derivative is the selected operand's: the branch not taken contributes a
    strong zero, so a NaN or infinite derivative there does not leak into the result
    (docs/where.md).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(xd.numpy.where(x > 0, x, 0.0)))(np.array([-1.0, 2.0]))
    array([0., 1.])
    >>> with np.errstate(invalid="ignore"):
    ...     xd.grad(lambda x: xd.numpy.sum(xd.numpy.where(x > 0, xd.numpy.sqrt(x), 0.0)))(
    ...         np.array([-1.0, 4.0]))
    array([0.  , 0.25])
    """
    x1, x2 = operands(x1, x2)
    return _where.bind(condition, x1, x2)


@export
def isin(x1, x2, /, *, invert=False):
    """Whether each element of ``x1`` is in ``x2`` (API 2025.12; no derivative flows).

    The backend's ``isin`` for raw arrays when it has one; otherwise (and for traced
    arrays) a comparison of every element with every element of ``x2``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.namespace("numpy", api_version="2025.12").isin(np.arange(4), np.asarray([1, 3]))
    array([False,  True, False,  True])
    """
    x1, x2 = operands(x1, x2)
    if not isinstance(x1, Tracer) and not isinstance(x2, Tracer):
        bk = namespace_of(x1)
        if hasattr(bk, "isin"):
            return fix_result(bk.isin(x1, x2, invert=invert))

    xp = namespace_for_values((x1, x2))
    hits = xp.any(xp.equal(xp.expand_dims(x1, axis=-1), xp.reshape(x2, (-1,))), axis=-1)
    return xp.logical_not(hits) if invert else hits


@export
def clip(x, /, min=None, max=None):
    """Clamp ``x`` to ``[min, max]``; the derivative is 1 inside, 0 outside (ties split)."""
    if min is not None:
        x = PRIMS["maximum"].bind(*operands(x, min))
    if max is not None:
        x = PRIMS["minimum"].bind(*operands(x, max))
    return x
