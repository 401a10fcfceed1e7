"""Manipulation functions: reshape, permute, broadcast, concat, flip, astype, ..."""

from __future__ import annotations

import math
import numbers

from ..core import Zero, broadcast_shapes, create, instantiate, primitive, raw_namespace
from ..tracer import make_alias, make_view
from ._families import (
    batch_axis_param,
    data_axis_param,
    export,
    is_arraylike,
    is_complex_of_real,
    is_float,
    move_batch_to,
    norm_axis,
    pad_batched,
    unbroadcast,
)
from .elementwise import PRIMS as _EW
from .indexing import _same, _whole, data_dependent, fresh, op_context, take


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


def _reshape_impl(bk, x, *, shape):
    return bk.reshape(x, shape)


_reshape_impl.direct = "reshape"  # jit lowers the call to the backend function itself
_reshape = primitive(
    "reshape", _reshape_impl,
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
    if copy is False:  # never a copy: a view
        return _reshape_view(x, shape, "reshape")
    out = fresh(x) if shape == tuple(x.shape) else _reshape.bind(x, shape=shape)
    return out if copy else make_alias(x, out, "reshape")


def _reshape_view(x, shape, name):
    """``x`` reshaped by inserting or removing unit dims: a view (NumPy always gives one)."""
    if shape == tuple(x.shape):
        return make_view(x, fresh(x), name, _same, _whole)
    return make_view(x, _reshape.bind(x, shape=shape), name,
                     lambda p: _reshape.bind(p, shape=shape),
                     lambda p, v: _reshape.bind(v, shape=tuple(p.shape)))


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
        return make_view(x, fresh(x), "permute_dims", _same, _whole)
    inv = _inverse(axes)
    return make_view(x, _permute.bind(x, axes=axes), "permute_dims",
                     lambda p: _permute.bind(p, axes=axes),
                     lambda p, v: _permute.bind(v, axes=inv))


@export
def matrix_transpose(x, /):
    """Swap the last two dims."""
    if x.ndim < 2:
        raise ValueError("matrix_transpose: x must have at least 2 dims")
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return permute_dims(x, axes)


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
def expand_dims(x, /, axis=0):
    """Insert a unit dim at ``axis`` (or several, for a tuple); an axis outside
    ``[-x.ndim - 1, x.ndim]`` raises ``IndexError`` (as the standard asks)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    for a in axes:
        if not -nd <= a < nd:
            raise IndexError(f"expand_dims: axis={a} is out of bounds for the result's {nd} dims")
    axes = sorted(a % nd for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"expand_dims: repeated axis in {axis!r}")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return _reshape_view(x, tuple(shape), "expand_dims")


@export
def squeeze(x, /, axis):
    """Remove unit dims ``axis``."""
    axes = {norm_axis(a, x.ndim) for a in ((axis,) if isinstance(axis, int) else axis)}
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: dim {a} has size {x.shape[a]}, not 1")
    return _reshape_view(x, tuple(s for i, s in enumerate(x.shape) if i not in axes), "squeeze")


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
        return make_view(x, fresh(x), "broadcast_to", _same, None)
    return make_view(x, _bcast.bind(x, shape=shape), "broadcast_to",
                     lambda p: _bcast.bind(p, shape=shape), None)


@export
def broadcast_arrays(*arrays):
    """Broadcast arrays against each other."""
    shape = broadcast_shapes(*(a.shape for a in arrays))
    # an array of the broadcast shape comes back as itself (as in NumPy), the others as
    # read-only views (broadcast_to)
    return [a if tuple(a.shape) == shape else broadcast_to(a, shape) for a in arrays]


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
        return fresh(arrays[0])
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
    return make_view(x, _flip.bind(x, axis=axis), "flip",
                     lambda p: _flip.bind(p, axis=axis), lambda p, v: _flip.bind(v, axis=axis))


# --- astype, stop_gradient, *_like ---------------------------------------------------------

def _astype_jvp(xp, p, t, *, dtype):
    out = _astype.bind(p[0], dtype=dtype)
    if not is_float(out):
        return out, Zero(out)
    return out, _astype.bind(t[0], dtype=dtype)


def _astype_vjp(xp, g, out, p, needs, *, dtype):
    if not is_float(p[0]):
        return [None]
    if is_complex_of_real(g, p[0]):  # real -> complex: the cotangent is the real part
        g = xp.real(g)
    return [_astype.bind(g, dtype=p[0].dtype)]


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
        return x  # NumPy returns the array itself
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
    # the result is the same for every batch element: made from the shape (no x[0], which
    # does not exist in a batch of size 0)
    x = v[0]
    return xp.full(tuple(x.shape[1:]), fill_value, dtype=x.dtype if dtype is None else dtype,
                   device=x.device), False


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


# --- roll --------------------------------------------------------------------------------

def _roll_batch(xp, v, b, n, *, shift, axis):
    x = v[0]
    if axis is None:  # roll each example's flattened array
        flat = xp.reshape(x, (x.shape[0], -1))
        out = _roll.bind(flat, shift=shift, axis=(1,))
        return xp.reshape(out, tuple(x.shape)), True
    return _roll.bind(x, shift=shift, axis=tuple(a + 1 for a in axis)), True


def _roll_data(ctx, ops, has, *, shift, axis):
    if axis is None:
        raise ctx.mixing("rolls the flattened array (axis=None)")
    return ops, {"shift": shift, "axis": ctx.axes(ops[0].ndim + ctx.k, axis)}


def _roll_impl(bk, x, *, shift, axis):
    return bk.roll(x, shift if axis is not None else shift[0], axis=axis)


_roll = primitive(
    "roll", _roll_impl,
    jvp=lambda xp, p, t, **kw: (_roll.bind(p[0], **kw), _roll.bind(t[0], **kw)),
    vjp=lambda xp, g, out, p, needs, *, shift, axis: [
        _roll.bind(g, shift=tuple(-s for s in shift), axis=axis)],
    batch=_roll_batch, data=_roll_data)


@export
def roll(x, /, shift, *, axis=None):
    """Shift elements cyclically by ``shift`` along ``axis`` (ints or tuples of equal
    length; ``axis=None`` rolls the flattened array and restores the shape).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.roll(np.arange(4.0), 1)
    array([3., 0., 1., 2.])
    """
    if axis is None:
        if not isinstance(shift, int):
            shift = sum(int(s) for s in shift)
        return _roll.bind(x, shift=(int(shift),), axis=None)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    shifts = (shift,) * len(axes) if isinstance(shift, int) else tuple(shift)
    if len(shifts) != len(axes):
        raise ValueError(f"roll: shift {shift!r} and axis {axis!r} must have the same length")
    axes = tuple(norm_axis(a, x.ndim) for a in axes)
    return _roll.bind(x, shift=tuple(int(s) for s in shifts), axis=axes)


# --- tile, repeat ------------------------------------------------------------------------

@export
def tile(x, repetitions, /):
    """Repeat ``x`` ``repetitions[i]`` times along each dim (the repetitions align with
    the trailing dims; extra ones prepend dims).  A composite of reshape and
    broadcast_to, so its derivative sums the copies.

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.tile(np.array([1.0, 2.0]), (2,))
    array([1., 2., 1., 2.])
    """
    reps = tuple(int(r) for r in repetitions)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: repetitions must be non-negative, got {reps}")
    nd = max(x.ndim, len(reps))
    reps = (1,) * (nd - len(reps)) + reps
    with op_context("tile"):
        if x.ndim < nd:
            x = reshape(x, (1,) * (nd - x.ndim) + tuple(x.shape))
        if all(r == 1 for r in reps):
            return fresh(x)
        s1, sb, sf = [], [], []
        for r, n in zip(reps, x.shape):
            if r == 1:
                s1.append(n)
                sb.append(n)
            else:
                s1 += [1, n]
                sb += [r, n]
            sf.append(r * n)
        return reshape(broadcast_to(reshape(x, tuple(s1)), tuple(sb)), tuple(sf))


def _repeat_index_impl(bk, repeats, *, n):
    return bk.repeat(bk.arange(n, device=repeats.device), repeats, axis=0)


_rep_batch, _rep_data = data_dependent(
    "repeat with array repeats",
    "pass repeats as a Python int, or compute the result outside the transformation")
_repeat_index = primitive("repeat_index", _repeat_index_impl, differentiable=False,
                          batch=_rep_batch, data=_rep_data)


@export
def repeat(x, repeats, /, *, axis=None):
    """Repeat each element of ``x`` along ``axis`` (``None``: of the flattened array).

    ``repeats`` is an int (a composite of broadcast and reshape: valid under vmap and
    ``batch_ndim``) or a 1-d integer array with one count per element (or one in
    all): then the output length depends on the values (eager, jvp and vjp only) and
    the result is a gather, whose derivative sums the copies.

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.repeat(np.array([1.0, 2.0]), 2)
    array([1., 1., 2., 2.])
    """
    with op_context("repeat"):
        if axis is None:
            x = reshape(x, (-1,))
            axis = 0
        axis = norm_axis(axis, x.ndim)
        shp = tuple(x.shape)
        if isinstance(repeats, numbers.Integral) and not isinstance(repeats, bool):
            repeats = int(repeats)
            if repeats < 0:
                raise ValueError(f"repeat: repeats must be non-negative, got {repeats}")
            y = expand_dims(x, axis=axis + 1)
            y = broadcast_to(y, shp[:axis + 1] + (repeats,) + shp[axis + 1:])
            return reshape(y, shp[:axis] + (shp[axis] * repeats,) + shp[axis + 1:])
        if not is_arraylike(repeats) or repeats.ndim > 1:
            raise ValueError("repeat: repeats must be an int or a 1-d integer array")
        if repeats.ndim == 0:
            repeats = reshape(repeats, (1,))
        return take(x, _repeat_index.bind(repeats, n=shp[axis]), axis=axis)


# --- diff --------------------------------------------------------------------------------

@export
def diff(x, /, *, axis=-1, n=1, prepend=None, append=None):
    """``n``-th forward difference along ``axis``, after joining ``prepend`` and
    ``append`` (arrays shaped like ``x`` except along ``axis``; Python scalars are
    broadcast to one slice).  A composite: differentiable in ``x``, ``prepend`` and
    ``append``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.diff(np.array([1.0, 4.0, 9.0]))
    array([3., 5.])
    """
    if x.ndim == 0:
        raise ValueError("diff: x must have at least one dim")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"diff: n must be a non-negative int, got {n!r}")
    axis = norm_axis(axis, x.ndim)
    with op_context("diff"):
        if prepend is not None or append is not None:
            one = tuple(1 if i == axis else s for i, s in enumerate(x.shape))
            parts = []
            for a in (prepend, x, append):
                if a is None:
                    continue
                if not is_arraylike(a):
                    a = create(raw_namespace(x).full, one, a, dtype=x.dtype, device=x.device)
                parts.append(a)
            x = concat(parts, axis=axis)
        for _ in range(n):
            m = x.shape[axis]
            hi = tuple(slice(1, None) if i == axis else slice(None) for i in range(x.ndim))
            lo = tuple(slice(None, m - 1) if i == axis else slice(None) for i in range(x.ndim))
            x = _EW["subtract"].bind(x[hi], x[lo])
        return fresh(x)
