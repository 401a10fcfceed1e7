"""Reductions and cumulative ops (statistics chapter of the standard)."""

from __future__ import annotations

import math

from .._core import primitive
from ._families import batch_axis_param, data_axis_param, export, norm_axes, norm_axis


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

    p = primitive(name, impl, differentiable=linear or deriv is not None)

    if linear:
        def jvp(xp, primals, tangents, **params):
            return p.bind(primals[0], **params), p.bind(tangents[0], **params)

        def vjp(xp, g, out, primals, needs, *, axis=None, keepdims=False, **kw):
            x = primals[0]
            return [xp.broadcast_to(_keep(xp, g, x.shape, axis, keepdims), x.shape)]
    elif deriv is not None:
        def jvp(xp, primals, tangents, *, axis=None, keepdims=False):
            x, t = primals[0], tangents[0]
            out = p.bind(x, axis=axis, keepdims=keepdims)
            d = deriv(xp, x, _keep(xp, out, x.shape, axis, keepdims), axis)
            return out, xp.sum(xp.multiply(t, d), axis=axis, keepdims=keepdims)

        def vjp(xp, g, out, primals, needs, *, axis=None, keepdims=False):
            x = primals[0]
            d = deriv(xp, x, _keep(xp, out, x.shape, axis, keepdims), axis)
            return [xp.multiply(_keep(xp, g, x.shape, axis, keepdims), d)]
    if p.differentiable:
        p.jvp, p.vjp = jvp, vjp
    p.batch = batch_axis_param(p)
    p.data = data_axis_param()
    return p


def _dextreme(xp, x, out, axis):
    """d max/min: the winners share the derivative evenly (ties split)."""
    mask = xp.astype(xp.equal(x, out), x.dtype)
    return xp.divide(mask, xp.sum(mask, axis=axis, keepdims=True))


def _dprod(xp, x, out, axis):
    """d prod / d x_i = product of the other entries (exact with zeros)."""
    zero = xp.equal(x, 0.0)
    xs = xp.where(zero, 1.0, x)
    p_nz = xp.prod(xs, axis=axis, keepdims=True)
    nz = xp.sum(xp.astype(zero, x.dtype), axis=axis, keepdims=True)
    one_zero = xp.logical_and(xp.equal(nz, 1.0), zero)
    return xp.where(xp.equal(nz, 0.0), xp.divide(p_nz, xs), xp.where(one_zero, p_nz, 0.0))


_sum = _reduction("sum", linear=True)
_prod = _reduction("prod", _dprod)
_max = _reduction("max", _dextreme)
_min = _reduction("min", _dextreme)
_all = _reduction("all")
_any = _reduction("any")


@export
def sum(x, /, *, axis=None, dtype=None, keepdims=False):
    """Sum over ``axis`` (standard signature).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(x * x))(np.array([1.0, 2.0]))
    array([2., 4.])
    """
    if dtype is not None and dtype != x.dtype:
        x = _astype(x, dtype)
    return _sum.bind(x, axis=axis, keepdims=keepdims)


@export
def prod(x, /, *, axis=None, dtype=None, keepdims=False):
    """Product over ``axis``; its derivative is exact where entries are zero."""
    if dtype is not None and dtype != x.dtype:
        x = _astype(x, dtype)
    return _prod.bind(x, axis=axis, keepdims=keepdims)


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


def _count(x, axis):
    return math.prod(x.shape[a] for a in norm_axes(axis, x.ndim))


@export
def mean(x, /, *, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``."""
    return _div(sum(x, axis=axis, keepdims=keepdims), _count(x, axis))


@export
def var(x, /, *, axis=None, correction=0.0, keepdims=False):
    """Variance over ``axis`` with ``correction`` degrees of freedom removed."""
    from .elementwise import PRIMS

    d = PRIMS["subtract"].bind(x, mean(x, axis=axis, keepdims=True))
    ss = sum(PRIMS["square"].bind(d), axis=axis, keepdims=keepdims)
    return _div(ss, _count(x, axis) - correction)


@export
def std(x, /, *, axis=None, correction=0.0, keepdims=False):
    """Standard deviation (``sqrt(var)``; its derivative is infinite where var is 0)."""
    from .elementwise import PRIMS

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

def _cumsum_impl(bk, x, *, axis, include_initial=False):
    return bk.cumulative_sum(x, axis=axis, include_initial=include_initial)


def _cumsum_jvp(xp, primals, tangents, **params):
    return _cumsum.bind(primals[0], **params), _cumsum.bind(tangents[0], **params)


def _cumsum_vjp(xp, g, out, primals, needs, *, axis, include_initial=False):
    rc = xp.flip(_cumsum.bind(xp.flip(g, axis=axis), axis=axis), axis=axis)
    if include_initial:
        idx = tuple(slice(1, None) if i == axis else slice(None) for i in range(g.ndim))
        rc = rc[idx]
    return [rc]


def _cumsum_batch(xp, vals, batched, size, *, axis, include_initial=False):
    return _cumsum.bind(vals[0], axis=axis + 1, include_initial=include_initial), True


_cumsum = primitive("cumulative_sum", _cumsum_impl, jvp=_cumsum_jvp, vjp=_cumsum_vjp,
                    batch=_cumsum_batch, data=data_axis_param())


@export
def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    """Cumulative sum along ``axis`` (required unless ``x`` is 1-d)."""
    if axis is None:
        if x.ndim != 1:
            raise ValueError("cumulative_sum: axis is required for arrays with more than one dim")
        axis = 0
    if dtype is not None and dtype != x.dtype:
        x = _astype(x, dtype)
    return _cumsum.bind(x, axis=norm_axis(axis, x.ndim), include_initial=include_initial)


def _div(x, n):
    from ._families import EXPORTS

    return EXPORTS["divide"](x, float(n))


def _astype(x, dtype):
    from .manipulation import astype

    return astype(x, dtype)
