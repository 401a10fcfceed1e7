"""Manipulation functions: reshape, permute, broadcast, concat, flip, astype, ..."""

from __future__ import annotations

import math

from .._core import Zero, instantiate, primitive
from ._families import (
    batch_axis_param,
    data_axis_param,
    export,
    is_arraylike,
    is_float,
    move_batch_to,
    norm_axis,
    pad_batched,
    unbroadcast,
)


def _resolve_shape(shape, size, name="reshape"):
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{name}: at most one -1 in shape {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise ValueError(f"{name}: cannot reshape an array of size {size} into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ValueError(f"{name}: cannot reshape an array of size {size} into shape {shape}")
    return shape


# --- reshape -----------------------------------------------------------------------------

def _reshape_data(ctx, ops, has, *, shape):
    if tuple(shape[: ctx.k]) != ctx.B:
        raise ctx.mixing(f"reshapes {ctx.B + tuple(ops[0].shape)} to {shape}, not keeping the "
                         f"data dims as a leading block")
    return ops, {"shape": tuple(shape[ctx.k:])}


_reshape = primitive(
    "reshape", lambda bk, x, *, shape: bk.reshape(x, shape),
    jvp=lambda xp, p, t, *, shape: (_reshape.bind(p[0], shape=shape), _reshape.bind(t[0], shape=shape)),
    vjp=lambda xp, g, out, p, needs, *, shape: [_reshape.bind(g, shape=tuple(p[0].shape))],
    batch=lambda xp, v, b, n, *, shape: (_reshape.bind(v[0], shape=(v[0].shape[0],) + shape), True),
    data=_reshape_data)


@export
def reshape(x, /, shape, *, copy=None):
    """Reshape ``x`` (one ``-1`` allowed); under ``batch_ndim`` the data dims must stay leading.

    >>> import numpy as np, xpdiff as xd
    >>> xd.jacobian(lambda x: xd.numpy.reshape(x, (2, 2)))(np.ones(4)).shape
    (2, 2, 4)
    """
    shape = _resolve_shape(shape, math.prod(x.shape))
    if shape == tuple(x.shape):
        return x
    return _reshape.bind(x, shape=shape)


# --- permute_dims ------------------------------------------------------------------------

def _permute_data(ctx, ops, has, *, axes):
    if tuple(axes[: ctx.k]) != tuple(range(ctx.k)):
        raise ctx.mixing(f"permutes dims with axes={axes}, moving a data dim")
    return ops, {"axes": tuple(a - ctx.k for a in axes[ctx.k:])}


def _inverse(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


_permute = primitive(
    "permute_dims", lambda bk, x, *, axes: bk.permute_dims(x, axes),
    jvp=lambda xp, p, t, *, axes: (_permute.bind(p[0], axes=axes), _permute.bind(t[0], axes=axes)),
    vjp=lambda xp, g, out, p, needs, *, axes: [_permute.bind(g, axes=_inverse(axes))],
    batch=lambda xp, v, b, n, *, axes: (_permute.bind(v[0], axes=(0,) + tuple(a + 1 for a in axes)), True),
    data=_permute_data)


@export
def permute_dims(x, /, axes):
    """Permute the dims of ``x``."""
    axes = tuple(norm_axis(a, x.ndim) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"permute_dims: axes={axes} is not a permutation of {x.ndim} dims")
    if axes == tuple(range(x.ndim)):
        return x
    return _permute.bind(x, axes=axes)


@export
def matrix_transpose(x, /):
    """Swap the last two dims."""
    if x.ndim < 2:
        raise ValueError("matrix_transpose: x must have at least 2 dims")
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return _permute.bind(x, axes=axes)


@export
def moveaxis(x, source, destination, /):
    """Move dims ``source`` to positions ``destination``."""
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    src = tuple(norm_axis(a, x.ndim, "source") for a in src)
    dst = tuple(norm_axis(a, x.ndim, "destination") for a in dst)
    order = [i for i in range(x.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute_dims(x, tuple(order))


@export
def expand_dims(x, /, *, axis=0):
    """Insert a unit dim at ``axis`` (or several, for a tuple)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    axes = sorted(norm_axis(a, nd) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return _reshape.bind(x, shape=tuple(shape))


@export
def squeeze(x, /, axis):
    """Remove unit dims ``axis``."""
    axes = {norm_axis(a, x.ndim) for a in ((axis,) if isinstance(axis, int) else axis)}
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: dim {a} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


# --- broadcast_to ------------------------------------------------------------------------

def _bcast_batch(xp, v, b, n, *, shape):
    x = pad_batched(xp, v[0], len(shape))
    return _bcast.bind(x, shape=(x.shape[0],) + tuple(shape)), True


def _bcast_data(ctx, ops, has, *, shape):
    if len(shape) != ops[0].ndim + ctx.k or tuple(shape[: ctx.k]) != ctx.B:
        raise ctx.mixing(f"broadcasts {ctx.B + tuple(ops[0].shape)} to {shape}, which moves the "
                         f"data dims")
    return ops, {"shape": tuple(shape[ctx.k:])}


_bcast = primitive(
    "broadcast_to", lambda bk, x, *, shape: bk.broadcast_to(x, shape),
    jvp=lambda xp, p, t, *, shape: (_bcast.bind(p[0], shape=shape), _bcast.bind(t[0], shape=shape)),
    vjp=lambda xp, g, out, p, needs, *, shape: [unbroadcast(xp, g, p[0].shape)],
    batch=_bcast_batch, data=_bcast_data)


@export
def broadcast_to(x, /, shape):
    """Broadcast ``x`` to ``shape``."""
    shape = tuple(shape)
    if shape == tuple(x.shape):
        return x
    return _bcast.bind(x, shape=shape)


@export
def broadcast_arrays(*arrays):
    """Broadcast arrays against each other."""
    from .._backend import namespace_of  # noqa: F401  (shape arithmetic only)

    shape = _broadcast_shapes(*(a.shape for a in arrays))
    return [broadcast_to(a, shape) for a in arrays]


def _broadcast_shapes(*shapes):
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(nd):
        dims = {s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0} - {1}
        if len(dims) > 1:
            raise ValueError(f"shapes {shapes} cannot be broadcast together")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


# --- concat / stack ----------------------------------------------------------------------

def _concat_jvp(xp, p, t, *, axis):
    return _concat.bind(*p, axis=axis), _concat.bind(*[instantiate(xp, ti) for ti in t], axis=axis)


def _concat_vjp(xp, g, out, p, needs, *, axis):
    res, start = [], 0
    for x, need in zip(p, needs):
        stop = start + x.shape[axis]
        if need:
            idx = tuple(slice(start, stop) if i == axis else slice(None) for i in range(g.ndim))
            res.append(g[idx])
        else:
            res.append(None)
        start = stop
    return res


def _concat_batch(xp, v, b, n, *, axis):
    return _concat.bind(*[move_batch_to(x, bi, n, xp) for x, bi in zip(v, b)], axis=axis + 1), True


def _concat_data(ctx, ops, has, *, axis):
    nd = next(o.ndim + ctx.k for o, h in zip(ops, has) if h)
    ax = ctx.axes(nd, axis)
    ops = [o if h else ctx.lift(o) for o, h in zip(ops, has)]
    return ops, {"axis": ax}


_concat = primitive("concat", lambda bk, *xs, axis: bk.concat(list(xs), axis=axis),
                    jvp=_concat_jvp, vjp=_concat_vjp, batch=_concat_batch, data=_concat_data)


@export
def concat(arrays, /, *, axis=0):
    """Join arrays along an existing dim (``axis=None`` flattens first)."""
    arrays = list(arrays)
    if axis is None:
        arrays = [reshape(a, (-1,)) for a in arrays]
        axis = 0
    axis = norm_axis(axis, arrays[0].ndim)
    if len(arrays) == 1:
        return arrays[0]
    return _concat.bind(*arrays, axis=axis)


@export
def stack(arrays, /, *, axis=0):
    """Join arrays along a new dim."""
    arrays = list(arrays)
    return concat([expand_dims(a, axis=axis) for a in arrays], axis=axis)


@export
def unstack(x, /, *, axis=0):
    """Split ``x`` along ``axis`` into a tuple of arrays."""
    axis = norm_axis(axis, x.ndim)
    return tuple(x[(slice(None),) * axis + (i,)] for i in range(x.shape[axis]))


# --- flip --------------------------------------------------------------------------------

def _flip_impl(bk, x, *, axis=None):
    return bk.flip(x, axis=axis)


_flip = primitive(
    "flip", _flip_impl,
    jvp=lambda xp, p, t, **kw: (_flip.bind(p[0], **kw), _flip.bind(t[0], **kw)),
    vjp=lambda xp, g, out, p, needs, **kw: [_flip.bind(g, **kw)],
    data=data_axis_param())
_flip.batch = batch_axis_param(_flip)


@export
def flip(x, /, *, axis=None):
    """Reverse the order of elements along ``axis`` (all dims if ``None``)."""
    return _flip.bind(x, axis=axis)


# --- astype, stop_gradient, *_like ---------------------------------------------------------

def _astype_jvp(xp, p, t, *, dtype):
    out = _astype.bind(p[0], dtype=dtype)
    if not is_float(out):
        return out, Zero(out)
    return out, _astype.bind(t[0], dtype=dtype)


def _astype_vjp(xp, g, out, p, needs, *, dtype):
    return [_astype.bind(g, dtype=p[0].dtype) if is_float(p[0]) else None]


_astype = primitive(
    "astype", lambda bk, x, *, dtype: bk.astype(x, dtype),
    jvp=_astype_jvp, vjp=_astype_vjp,
    batch=lambda xp, v, b, n, *, dtype: (_astype.bind(v[0], dtype=dtype), True),
    data=lambda ctx, ops, has, **kw: (ops, kw))


@export
def astype(x, dtype, /, *, copy=True, device=None):
    """Cast ``x`` to ``dtype`` (derivatives flow between floating dtypes only)."""
    if device is not None and device != x.device:
        raise ValueError("astype: changing device inside xpdiff is not supported; use to_device")
    if dtype == x.dtype and not copy:
        return x
    return _astype.bind(x, dtype=dtype)


_stop = primitive("stop_gradient", lambda bk, x: x, differentiable=False,
                  batch=lambda xp, v, b, n: (_stop.bind(v[0]), True),
                  data=lambda ctx, ops, has: (ops, {}))


def stop_gradient(x):
    """``x`` with no derivative flowing through it (a constant to every transformation).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(x * xd.stop_gradient(x)))(np.array([3.0]))
    array([3.])
    """
    if not is_arraylike(x):
        return x
    return _stop.bind(x)


def _full_like_batch(xp, v, b, n, *, fill_value, dtype):
    x = v[0]
    return _full_like.bind(x[0, ...], fill_value=fill_value, dtype=dtype), False


_full_like = primitive(
    "full_like", lambda bk, x, *, fill_value, dtype: bk.full_like(x, fill_value, dtype=dtype),
    differentiable=False, batch=_full_like_batch,
    data=lambda ctx, ops, has, **kw: (ops, kw))


@export
def full_like(x, /, fill_value, *, dtype=None, device=None):
    """An array like ``x`` filled with ``fill_value`` (a constant: no derivative)."""
    return _full_like.bind(x, fill_value=fill_value, dtype=dtype)


@export
def zeros_like(x, /, *, dtype=None, device=None):
    """Zeros like ``x``."""
    return _full_like.bind(x, fill_value=0, dtype=dtype)


@export
def ones_like(x, /, *, dtype=None, device=None):
    """Ones like ``x``."""
    return _full_like.bind(x, fill_value=1, dtype=dtype)


@export
def empty_like(x, /, *, dtype=None, device=None):
    """An uninitialised array like ``x`` (zeros under xpdiff)."""
    return _full_like.bind(x, fill_value=0, dtype=dtype)
