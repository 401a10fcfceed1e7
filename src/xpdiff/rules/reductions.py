"""Reductions and cumulative ops (statistics chapter of the standard)."""

from __future__ import annotations

import math

from ..core import namespace_for_values, op_context, primitive
from ._families import batch_axis_param, data_axis_param, export, norm_axes, norm_axis
from .elementwise import PRIMS


def _keep(xp, g, x_shape, axis, keepdims):
    """Reshape a reduced array ``g`` so it broadcasts against the input again."""
    if keepdims:
        return g
    axes = norm_axes(axis, len(x_shape))
    shape = tuple(1 if i in axes else s for i, s in enumerate(x_shape))
    return xp.reshape(g, shape)


def _reduction(name, deriv=None, *, linear=False):
    """A reduction ``name(x, axis, keepdims)``; ``deriv(xp, x, out_keepdims)`` gives
    d out / d x elementwise (``linear`` reductions use their own transpose)."""

    def impl(bk, x, *, axis=None, keepdims=False, **kw):
        return getattr(bk, name)(x, axis=axis, keepdims=keepdims, **kw)

    impl.direct = name  # jit lowers the call to the backend function itself

    p = primitive(name, impl, differentiable=linear or deriv is not None)

    if linear:
        def jvp(xp, primals, tangents, **params):
            return p.bind(primals[0], **params), p.bind(tangents[0], **params)

        def vjp(xp, g, out, primals, needs, *, axis=None, keepdims=False, **kw):
            x = primals[0]
            return [xp.broadcast_to(_keep(xp, g, x.shape, axis, keepdims), x.shape)]
    elif deriv is not None:
        def jvp(xp, primals, tangents, *, axis=None, keepdims=False, **kw):
            x, t = primals[0], tangents[0]
            out = p.bind(x, axis=axis, keepdims=keepdims, **kw)
            d = deriv(xp, x, _keep(xp, out, x.shape, axis, keepdims), axis)
            return out, xp.sum(xp.multiply(t, d), axis=axis, keepdims=keepdims)

        def vjp(xp, g, out, primals, needs, *, axis=None, keepdims=False, **kw):
            x = primals[0]
            d = deriv(xp, x, _keep(xp, out, x.shape, axis, keepdims), axis)
            return [xp.multiply(_keep(xp, g, x.shape, axis, keepdims), d)]
    if p.differentiable:
        p.jvp, p.vjp = jvp, vjp
        p.reduce_deriv = (lambda xp, x, out, axis: 1) if linear else deriv  # structured tangents
    p.batch = batch_axis_param(p)
    p.data = data_axis_param()
    return p


def _dextreme(xp, x, out, axis):
    """d max/min: the winners share the derivative evenly (ties split).  Where a NaN
    makes the result NaN, the NaN entries are the winners (so no group is empty and
    no 0/0 is formed)."""
    mask = xp.astype(xp.logical_or(xp.equal(x, out), xp.isnan(x)), x.dtype)
    return xp.divide(mask, xp.sum(mask, axis=axis, keepdims=True))


def _dprod(xp, x, out, axis):
    """d prod / d x_i = the product of the other entries: exclusive prefix times
    exclusive suffix products over the reduced entries (no division, so exact with
    any number of zeros; its own derivatives are cumulative_prod's, exact as well)."""
    axes = norm_axes(axis, x.ndim)
    if not axes:
        return xp.ones_like(x)
    rest = tuple(i for i in range(x.ndim) if i not in axes)
    order = rest + axes
    xt = xp.permute_dims(x, order) if order != tuple(range(x.ndim)) else x
    lead = tuple(xt.shape[:len(rest)])
    flat = xp.reshape(xt, lead + (math.prod(x.shape[a] for a in axes),))
    pre = _exclusive_cumprod(xp, flat)
    suf = xp.flip(_exclusive_cumprod(xp, xp.flip(flat, axis=-1)), axis=-1)
    d = xp.reshape(xp.multiply(pre, suf), tuple(xt.shape))
    if order == tuple(range(x.ndim)):
        return d
    inv = [0] * x.ndim
    for i, a in enumerate(order):
        inv[a] = i
    return xp.permute_dims(d, tuple(inv))


def _exclusive_cumprod(xp, v):
    n = v.shape[-1]
    return _cumprod_fn(v, axis=-1, include_initial=True)[..., :n]


_sum = _reduction("sum", linear=True)
_prod = _reduction("prod", _dprod)
_max = _reduction("max", _dextreme)
_min = _reduction("min", _dextreme)
for _p in (_sum, _max, _min):  # degree one: the reduction of k * x is k times the result
    _p.scaling = lambda i, f: f if f[0] == "scale" else None
_all = _reduction("all")
_any = _reduction("any")
_count_nonzero = _reduction("count_nonzero")


@export
def sum(x, /, *, axis=None, dtype=None, keepdims=False):
    """Sum over ``axis`` (standard signature).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(x * x))(np.array([1.0, 2.0]))
    array([2., 4.])
    """
    if dtype is None:
        return _sum.bind(x, axis=axis, keepdims=keepdims)
    if dtype != x.dtype:
        x = _astype(x, dtype)
    return _sum.bind(x, axis=axis, keepdims=keepdims, dtype=dtype)


@export
def prod(x, /, *, axis=None, dtype=None, keepdims=False):
    """Product over ``axis``.

    The derivative (the product of the other entries: exclusive prefix times
    exclusive suffix products) is formed without division, so derivatives of
    every order are exact where entries are zero.

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.prod(x))(np.array([2.0, 0.0, 3.0]))
    array([0., 6., 0.])
    """
    if dtype is None:
        return _prod.bind(x, axis=axis, keepdims=keepdims)
    if dtype != x.dtype:
        x = _astype(x, dtype)
    return _prod.bind(x, axis=axis, keepdims=keepdims, dtype=dtype)


@export
def max(x, /, *, axis=None, keepdims=False):
    """Maximum over ``axis``; tied maxima share the derivative evenly."""
    return _max.bind(x, axis=axis, keepdims=keepdims)


@export
def min(x, /, *, axis=None, keepdims=False):
    """Minimum over ``axis``; tied minima share the derivative evenly."""
    return _min.bind(x, axis=axis, keepdims=keepdims)


@export
def all(x, /, *, axis=None, keepdims=False):
    """Logical AND reduction (no derivative)."""
    return _all.bind(x, axis=axis, keepdims=keepdims)


@export
def any(x, /, *, axis=None, keepdims=False):
    """Logical OR reduction (no derivative)."""
    return _any.bind(x, axis=axis, keepdims=keepdims)


@export
def count_nonzero(x, /, *, axis=None, keepdims=False):
    """Number of nonzero elements over ``axis`` (no derivative).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.count_nonzero(np.array([[0.0, 1.0], [2.0, 3.0]]), axis=1)
    array([1, 2])
    """
    return _count_nonzero.bind(x, axis=axis, keepdims=keepdims)


def _count(x, axis):
    return math.prod(x.shape[a] for a in norm_axes(axis, x.ndim))


@export
def mean(x, /, *, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``."""
    with op_context("mean"):
        return _div(sum(x, axis=axis, keepdims=keepdims), _count(x, axis))


@export
def var(x, /, *, axis=None, correction=0.0, keepdims=False):
    """Variance over ``axis`` with ``correction`` degrees of freedom removed."""
    with op_context("var"):
        d = PRIMS["subtract"].bind(x, mean(x, axis=axis, keepdims=True))
        ss = sum(PRIMS["square"].bind(d), axis=axis, keepdims=keepdims)
        return _div(ss, _count(x, axis) - correction)


@export
def std(x, /, *, axis=None, correction=0.0, keepdims=False):
    """Standard deviation (``sqrt(var)``; its derivative is infinite where var is 0)."""
    with op_context("std"):
        return PRIMS["sqrt"].bind(var(x, axis=axis, correction=correction, keepdims=keepdims))


def _arg_impl(name):
    def impl(bk, x, *, axis=None, keepdims=False):
        return getattr(bk, name)(x, axis=axis, keepdims=keepdims)

    return impl


def _arg_batch(prim):
    def rule(xp, vals, batched, size, *, axis=None, keepdims=False):
        x = vals[0]
        if axis is None:
            flat = xp.reshape(x, (x.shape[0], -1))
            out = prim.bind(flat, axis=1, keepdims=False)
            if keepdims:
                out = xp.reshape(out, (x.shape[0],) + (1,) * (x.ndim - 1))
            return out, True
        return prim.bind(x, axis=norm_axis(axis, x.ndim - 1) + 1, keepdims=keepdims), True

    return rule


for _name in ("argmax", "argmin"):
    _p = primitive(_name, _arg_impl(_name), differentiable=False)
    _p.batch = _arg_batch(_p)
    _p.data = data_axis_param()
    globals()["_" + _name] = _p


@export
def argmax(x, /, *, axis=None, keepdims=False):
    """Index of the maximum (no derivative)."""
    return _argmax.bind(x, axis=axis, keepdims=keepdims)  # noqa: F821


@export
def argmin(x, /, *, axis=None, keepdims=False):
    """Index of the minimum (no derivative)."""
    return _argmin.bind(x, axis=axis, keepdims=keepdims)  # noqa: F821


# --- cumulative_sum ------------------------------------------------------------------------

def _cumsum_impl(bk, x, *, axis, include_initial=False, dtype=None):
    return bk.cumulative_sum(x, axis=axis, include_initial=include_initial, dtype=dtype)


def _cumsum_jvp(xp, primals, tangents, **params):
    return _cumsum.bind(primals[0], **params), _cumsum.bind(tangents[0], **params)


def _cumsum_vjp(xp, g, out, primals, needs, *, axis, include_initial=False, dtype=None):
    rc = xp.flip(_cumsum.bind(xp.flip(g, axis=axis), axis=axis), axis=axis)
    if include_initial:
        idx = tuple(slice(1, None) if i == axis else slice(None) for i in range(g.ndim))
        rc = rc[idx]
    return [rc]


def _cumsum_batch(xp, vals, batched, size, *, axis, **kw):
    return _cumsum.bind(vals[0], axis=axis + 1, **kw), True


_cumsum = primitive("cumulative_sum", _cumsum_impl, jvp=_cumsum_jvp, vjp=_cumsum_vjp,
                    batch=_cumsum_batch, data=data_axis_param())


@export
def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    """Cumulative sum along ``axis`` (required unless ``x`` is 1-d)."""
    if axis is None:
        if x.ndim != 1:
            raise ValueError("cumulative_sum: axis is required for arrays with more than one dim")
        axis = 0
    kw = {} if dtype is None else {"dtype": dtype}
    if dtype is not None and dtype != x.dtype:
        x = _astype(x, dtype)
    return _cumsum.bind(x, axis=norm_axis(axis, x.ndim), include_initial=include_initial, **kw)


# --- cumulative_prod -----------------------------------------------------------------------
#
# y_k = x_k y_{k-1}, so the tangent obeys the linear recurrence h_k = x_k h_{k-1} + y_{k-1} t_k
# and the cotangent is c_j = y_{j-1} u_j with u_j = g_j + x_{j+1} u_{j+1}.  Both recurrences
# are solved by a doubling scan over (coefficient, offset) pairs: products and sums only, no
# division and no branch on zeros, so every derivative order is exact where entries are zero.

def _sl(ndim, axis, start, stop):
    return (slice(None),) * axis + (slice(start, stop),) + (slice(None),) * (ndim - axis - 1)


def _linear_recurrence(xp, a, b, axis):
    """``h_k = a_k h_{k-1} + b_k`` along ``axis`` (``h_{-1} = 0``): ``ceil(log2 n)``
    passes of Hillis-Steele doubling on the affine maps ``h -> a h + b``."""
    n, nd = a.shape[axis], a.ndim
    d = 1
    while d < n:
        lo, hi, head = _sl(nd, axis, None, n - d), _sl(nd, axis, d, None), _sl(nd, axis, None, d)
        b = xp.concat([b[head], xp.add(xp.multiply(a[hi], b[lo]), b[hi])], axis=axis)
        if 2 * d < n:
            a = xp.concat([a[head], xp.multiply(a[hi], a[lo])], axis=axis)
        d *= 2
    return b


def _exclusive(xp, y, axis, fill):
    """``y`` shifted one place along ``axis``, ``fill`` entering at the start."""
    n = y.shape[axis]
    first = xp.full_like(y[_sl(y.ndim, axis, 0, 1)], fill)
    return xp.concat([first, y[_sl(y.ndim, axis, None, n - 1)]], axis=axis)


def _cumprod_jvp(xp, primals, tangents, *, axis, dtype=None):
    x, t = primals[0], tangents[0]
    y = _cumprod.bind(x, axis=axis, dtype=dtype)
    return y, _linear_recurrence(xp, x, xp.multiply(_exclusive(xp, y, axis, 1), t), axis)


def _cumprod_vjp(xp, g, out, primals, needs, *, axis, dtype=None):
    x = primals[0]
    rx, rg = xp.flip(x, axis=axis), xp.flip(g, axis=axis)
    u = xp.flip(_linear_recurrence(xp, _exclusive(xp, rx, axis, 0), rg, axis), axis=axis)
    return [xp.multiply(_exclusive(xp, out, axis, 1), u)]


_cumprod = primitive(
    "cumulative_prod", lambda bk, x, *, axis, dtype=None: bk.cumulative_prod(x, axis=axis, dtype=dtype),
    jvp=_cumprod_jvp, vjp=_cumprod_vjp,
    batch=lambda xp, v, b, n, *, axis, **kw: (_cumprod.bind(v[0], axis=axis + 1, **kw), True),
    data=data_axis_param())


@export
def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial=False):
    """Cumulative product along ``axis`` (required unless ``x`` is 1-d).

    Derivatives of every order are exact where entries are zero (they are formed
    with products and sums only, never dividing by an entry).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.cumulative_prod(x)[-1])(np.array([2.0, 0.0, 3.0]))
    array([0., 6., 0.])
    """
    return _cumprod_fn(x, axis=axis, dtype=dtype, include_initial=include_initial)


def _cumprod_fn(x, *, axis=None, dtype=None, include_initial=False):
    if axis is None:
        if x.ndim != 1:
            raise ValueError("cumulative_prod: axis is required for arrays with more than one dim")
        axis = 0
    axis = norm_axis(axis, x.ndim)
    kw = {} if dtype is None else {"dtype": dtype}
    if dtype is not None and dtype != x.dtype:
        x = _astype(x, dtype)
    out = _cumprod.bind(x, axis=axis, **kw)
    if not include_initial:
        return out
    xp = namespace_for_values([x])
    one = tuple(1 if i == axis else s for i, s in enumerate(x.shape))
    ones = xp.ones(one, dtype=x.dtype, device=x.device)
    return xp.concat([ones, out], axis=axis)


def _div(x, n):
    return namespace_for_values([x]).divide(x, float(n))


def _astype(x, dtype):
    return namespace_for_values([x]).astype(x, dtype)
