"""Indexing: ``__getitem__`` / ``__setitem__`` (basic and advanced), ``take``,
``take_along_axis``, and the scatter-add every gather's VJP needs.

A key is parsed into one entry per position with the ellipsis expanded: ints,
slices and ``None`` (normalised), integer arrays and boolean masks.

* Basic keys (no arrays) go to the ``getitem`` / ``set_at`` primitives.
* Reading ``x[key]`` with arrays (NumPy's rules: the integer arrays and, with
  them, the ints are *advanced* indices; their broadcast shape replaces the dims
  they index when they are adjacent in the key, and goes first otherwise) is a
  composite: the basic part, then the indexed dims merged into one (row-major
  linear index), then one gather (``take``) along it.  A boolean mask becomes
  integer arrays through ``nonzero``: a data-dependent shape, fine in eager,
  jvp and vjp, refused under vmap and ``batch_ndim``.
* Writing ``x[key] = v`` with arrays computes the flat destination of every
  element of the indexed view (the same key applied to an iota) and writes with
  ``scatter_set``: for repeated destinations the last write in the view's
  row-major order wins (what NumPy does on CPU; CuPy leaves it undefined, xpdiff
  defines it on every backend).  A boolean mask whose value does not depend on
  the number of selected elements (a scalar, or a value broadcasting along the
  selected dims) is written with ``where``: this also works under vmap and
  ``batch_ndim``.

The VJP of a gather is a scatter-add, which the standard does not have; see
:func:`scatter_add`: a one-hot matmul for small problems, a stable sort plus a
segmented scan otherwise.  Index arrays carry no derivative.
"""

from __future__ import annotations

import math
import numbers
from copy import copy

from ..backend import set_at
from ..core import (
    XpdiffError,
    Zero,
    broadcast_shapes,
    create,
    instantiate,
    namespace_for_values,
    op_context,
    primitive,
    raw_namespace,
)
from ..tracer import Tracer, make_view
from ._families import export, is_arraylike, move_batch_to, norm_axis, pad_batched, unbroadcast

_FULL = slice(None)

# Largest ``m * n * rest`` (indices x bins x other elements) for which a gather's VJP
# scatters with a one-hot matmul; beyond it the sort + segmented-scan path is used.
ONEHOT_MAX = 1 << 20


class DataDependentShapeError(XpdiffError, ValueError):
    """An op whose output shape depends on the values was asked to run batched
    (under ``vmap`` or ``batch_ndim``), where every batch element would need its own shape."""


def data_dependent(name, hint):
    """Batching and data rules of an op with a data-dependent output shape: both refuse."""

    def batch(xp, vals, batched, size, **params):
        raise DataDependentShapeError(
            f"{name} under vmap: its output shape depends on the values, which differ per batch "
            f"element; {hint}")

    def data(ctx, ops, has, **params):
        if any(has):
            raise DataDependentShapeError(
                f"{ctx.where}: '{name}' on per-sample data (batch_ndim): its output shape depends "
                f"on the values, which differ per sample; {hint}")
        return ops, params

    return batch, data


MASK_HINT = ("keep the shape with xp.where instead, e.g. xp.sum(xp.where(mask, x, 0.0)) rather "
             "than xp.sum(x[mask]), and x = xp.where(mask, v, x) rather than x[mask] = v[mask]")


def fresh(x):
    """``x`` as a new traced-array object holding the same value: what a no-op (a full
    slice, a reshape to the same shape, ...) returns, so that a later in-place update
    of ``x`` does not show through it (traced arrays have value semantics)."""
    if not isinstance(x, Tracer):
        return x
    return copy(x)


# --- keys ------------------------------------------------------------------------------------

class _Arr:
    """An array entry of a key: an integer array, or a boolean mask (``mask=True``)."""

    __slots__ = ("a", "mask")

    def __init__(self, a, mask):
        self.a, self.mask = a, mask


def _entry(k, x, where):
    if isinstance(k, bool):
        raise IndexError(f"{where}: a Python bool is not a valid index; use a boolean array as a mask")
    if isinstance(k, numbers.Integral):
        return int(k)
    if k is None or k is Ellipsis or isinstance(k, slice):
        return k
    bk = raw_namespace(x)
    if isinstance(k, list):
        k = bk.asarray(k, device=x.device) if k else bk.asarray(k, dtype=bk.int64, device=x.device)
    if not is_arraylike(k):
        raise IndexError(f"{where}: unsupported index {k!r} ({type(k).__name__}); use ints, slices, "
                         f"None, ..., integer arrays or boolean arrays")
    kb = raw_namespace(k)
    if kb.isdtype(k.dtype, "bool"):
        if k.ndim == 0:
            raise IndexError(f"{where}: a 0-d boolean index is not supported; use xp.where(cond, a, b)")
        return _Arr(k, True)
    if kb.isdtype(k.dtype, "integral"):
        return _Arr(k, False)
    raise IndexError(f"{where}: arrays used as indices must have an integer or boolean dtype, "
                     f"got {k.dtype}; cast with xp.astype(i, xp.int64)")


def _parse(key, x, where):
    """``key`` as a list of entries for ``x`` (ellipsis expanded, ints and slices
    normalised), whether it holds arrays, and whether its advanced entries (arrays,
    and ints when arrays are present) are adjacent in the key as written (NumPy's
    rule: a slice, ``None`` or ``...`` between them separates them, even an ellipsis
    that stands for no dims)."""
    if type(key) is not tuple:
        key = (key,)
    shape = x.shape
    ndim = len(shape)
    items, used, ell, arrays = [], 0, -1, False
    for k in key:
        t = type(k)
        if t is not int and t is not slice and k is not None and k is not Ellipsis:
            k = _entry(k, x, where)  # numpy ints, lists, arrays, and the errors
            if type(k) is _Arr:
                arrays = True
                used += k.a.ndim if k.mask else 1
                items.append(k)
                continue
        if k is Ellipsis:
            if ell >= 0:
                raise IndexError(f"{where}: at most one Ellipsis (...) in an index")
            ell = len(items)
        elif k is not None:
            used += 1
        items.append(k)
    if used > ndim:
        raise IndexError(f"{where}: too many indices ({used}) for an array with {ndim} dims")
    adjacent = True
    if arrays:
        adv = [i for i, k in enumerate(items) if type(k) is int or type(k) is _Arr]
        adjacent = adv == list(range(adv[0], adv[-1] + 1))
    if ell >= 0:
        items[ell:ell + 1] = [_FULL] * (ndim - used)
    elif used < ndim:
        items.extend([_FULL] * (ndim - used))
    out, d = [], 0
    for k in items:
        if k is None:
            out.append(None)
            continue
        t = type(k)
        if t is _Arr:
            if k.mask:
                ms = tuple(k.a.shape)
                dims = tuple(shape[d:d + len(ms)])
                # an empty mask selects nothing: NumPy (and the conformance suite) take a
                # mask dim of size 0 against a dim of any size
                if ms != dims and not (len(ms) == len(dims) and all(
                        m in (s, 0) for m, s in zip(ms, dims))):
                    raise IndexError(f"{where}: a boolean mask of shape {ms} does not match dims "
                                     f"{d}..{d + len(ms) - 1} of an array of shape {tuple(shape)}")
                d += len(ms)
            else:
                d += 1
            out.append(k)
            continue
        n = shape[d]
        if t is int:
            if not -n <= k < n:
                raise IndexError(f"{where}: index {k} is out of bounds for dim {d} of size {n}")
            out.append(k % n)
        elif k.start is None and k.stop is None and k.step is None:
            out.append(k)
        else:
            start, stop, step = k.indices(n)
            r = range(start, stop, step)
            if (start, stop, step) == (0, n, 1):
                out.append(_FULL)
            elif not r:
                out.append(slice(0, 0, 1))
            else:  # explicit in-bounds stops; a negative step running past 0 stops at None
                end = r[-1] + (1 if step > 0 else -1)
                out.append(slice(r[0], None if end < 0 else end, step))
        d += 1
    return out, arrays, adjacent


def _is_full(k):
    return isinstance(k, slice) and k == _FULL


def index_shape(shape, key):
    """Shape of ``x[key]`` for a normalised basic key."""
    out, d = [], 0
    for k in key:
        if k is None:
            out.append(1)
            continue
        if isinstance(k, slice):
            out.append(len(range(*k.indices(shape[d]))))
        d += 1
    return tuple(out)


def _data_key(ctx, key):
    """Per-sample key: the first ``k`` dims must be taken whole."""
    d = 0
    for i, k in enumerate(key):
        if d == ctx.k:
            return key[i:]
        if k is None or not _is_full(k):
            raise ctx.mixing(f"indexes a data dim with {k!r}")
        d += 1
    return key[len(key):] if d == ctx.k else key


# --- getitem (basic) ------------------------------------------------------------------------

def _getitem_vjp(xp, g, out, p, needs, *, key):
    x = p[0]
    if None in key:  # inserted unit dims carry nothing back: drop them
        key = tuple(k for k in key if k is not None)
        g = xp.reshape(g, index_shape(x.shape, key))
    return [_set_at.bind(xp.zeros_like(x), g, key=key)]


_getitem = primitive(
    "getitem", lambda bk, x, *, key: x[key],
    jvp=lambda xp, p, t, *, key: (_getitem.bind(p[0], key=key), _getitem.bind(t[0], key=key)),
    vjp=_getitem_vjp,
    batch=lambda xp, v, b, n, *, key: (_getitem.bind(v[0], key=(_FULL,) + key), True),
    data=lambda ctx, ops, has, *, key: (ops, {"key": _data_key(ctx, key)}))


def _is_0d_mask(k):
    return is_arraylike(k) and k.ndim == 0 and raw_namespace(k).isdtype(k.dtype, "bool")


def _split_0d_masks(key):
    """A key holding 0-d boolean masks as two keys (or ``None`` if it holds none).

    The standard (and NumPy): a 0-d mask adds an axis of size 1 (``True``) or 0
    (``False``).  The first key inserts a unit axis for each 0-d mask (and each
    ``None``) and takes everything else whole; the second indexes that result with
    the rest of the key, each 0-d mask becoming a 1-d mask over its new axis."""
    key = key if type(key) is tuple else (key,)
    if not any(_is_0d_mask(k) for k in key):
        return None
    first, second = [], []
    for k in key:
        if _is_0d_mask(k):
            first.append(None)
            second.append(namespace_for_values([k]).reshape(k, (1,)))
        elif k is None:
            first.append(None)
            second.append(_FULL)
        elif k is Ellipsis:
            first.append(Ellipsis)
            second.append(Ellipsis)
        else:  # an int, a slice or an array: the dims it indexes, taken whole
            n = k.ndim if is_arraylike(k) and raw_namespace(k).isdtype(k.dtype, "bool") else 1
            first.extend([_FULL] * n)
            second.append(k)
    return tuple(first), tuple(second)


def _getitem_fn(x, key):
    if type(key) is not int and type(key) is not slice:
        split = _split_0d_masks(key)
        if split is not None:
            with op_context("__getitem__ with a 0-d boolean index"):
                return _getitem_fn(_getitem_fn(x, split[0]), split[1])
    entries, has_arrays, adjacent = _parse(key, x, "__getitem__")
    if has_arrays:
        with op_context("__getitem__ with array indices"):
            return _advanced_get(x, _expand_masks(entries), adjacent)
    key = tuple(entries)
    if not isinstance(x, Tracer):
        return x if all(_is_full(k) for k in key) else _getitem.bind(x, key=key)
    if all(_is_full(k) for k in key):  # x[:], x[...]: a view of the whole array
        return make_view(x, fresh(x), "__getitem__", _same, _whole)
    return make_view(x, _getitem.bind(x, key=key), "__getitem__",
                     lambda p: _getitem.bind(p, key=key),
                     lambda p, v: _set_at.bind(p, v, key=key))


def _same(p):
    return p


def _whole(p, v):
    return v


# --- getitem (advanced) ----------------------------------------------------------------------

def _expand_masks(entries):
    """Replace each boolean mask by the integer arrays of its ``nonzero`` (one per dim)."""
    if not any(isinstance(e, _Arr) and e.mask for e in entries):
        return entries
    out = []
    for e in entries:
        if isinstance(e, _Arr) and e.mask:
            out.extend(_Arr(i, False) for i in namespace_for_values([e.a]).nonzero(e.a))
        else:
            out.append(e)
    return out


def _linear_index(x, advs, sizes):
    """Row-major linear index (an int64 array) of the advanced entries ``advs`` into
    dims of ``sizes``; negative indices wrap."""
    ns = namespace_for_values([x])
    i64 = raw_namespace(x).int64
    terms, const, stride = [], 0, 1
    for e, n in zip(reversed(advs), reversed(sizes)):
        if isinstance(e, int):
            const += e * stride
        else:
            a = e.a if e.a.dtype == i64 else ns.astype(e.a, i64)
            a = ns.where(ns.less(a, 0), ns.add(a, n), a)
            terms.append(a if stride == 1 else ns.multiply(a, stride))
        stride *= n
    out = terms[0]
    for t in terms[1:]:
        out = ns.add(out, t)
    return ns.add(out, const) if const else out


def _advanced_get(x, entries, adjacent):
    ns = namespace_for_values([x])
    adv = [i for i, e in enumerate(entries) if isinstance(e, (int, _Arr))]
    advset = set(adv)
    basic = tuple(_FULL if i in advset else e for i, e in enumerate(entries))
    y = x if all(_is_full(k) for k in basic) else _getitem.bind(x, key=basic)
    sizes = [y.shape[i] for i in adv]
    L = _linear_index(x, [entries[i] for i in adv], sizes)
    m, N = len(adv), math.prod(sizes)
    if adjacent:
        p = adv[0]
        if m > 1:
            y = ns.reshape(y, tuple(y.shape[:p]) + (N,) + tuple(y.shape[p + m:]))
    else:
        rest = [i for i in range(y.ndim) if i not in advset]
        y = ns.permute_dims(y, tuple(adv + rest))
        y = ns.reshape(y, (N,) + tuple(y.shape[m:]))
        p = 0
    return _take.bind(y, L, axis=p)


# --- set_at: x with x[key] replaced by v (basic key) ---------------------------------------

def _set_impl(bk, x, v, *, key):
    return set_at(bk, x, key, v)  # a copy with x[key] = v (functional on JAX arrays)


def _set_jvp(xp, p, t, *, key):
    x, v = p
    tx, tv = t
    out = _set_at.bind(x, v, key=key)
    if isinstance(tx, Zero) and isinstance(tv, Zero):
        return out, Zero(out)
    tx = instantiate(xp, tx)
    tv = xp.zeros_like(v) if isinstance(tv, Zero) else tv
    return out, _set_at.bind(tx, xp.astype(tv, tx.dtype), key=key)


def _set_vjp(xp, g, out, p, needs, *, key):
    x, v = p
    cx = _set_at.bind(g, xp.zeros_like(g[key]), key=key) if needs[0] else None
    cv = unbroadcast(xp, _getitem.bind(g, key=key), v.shape) if needs[1] else None
    return [cx, cv]


def _set_batch(xp, vals, batched, n, *, key):
    x, v = vals
    bx, bv = batched
    x = move_batch_to(x, bx, n, xp)
    if bv:
        v = pad_batched(xp, v, len(index_shape(x.shape[1:], key)))
    return _set_at.bind(x, v, key=(_FULL,) + key), True


def _set_data(ctx, ops, has, *, key):
    x, v = ops
    if not has[0]:
        x = ctx.lift(x)
    new_key = _data_key(ctx, key)
    if not has[1] and is_arraylike(v):
        sel_rank = len(index_shape(ctx.B + tuple(x.shape), key))
        if v.ndim > sel_rank - ctx.k:
            v = ctx.lift(v, v.ndim - (sel_rank - ctx.k))
    return [x, v], {"key": new_key}


_set_at = primitive("set_at", _set_impl, jvp=_set_jvp, vjp=_set_vjp, batch=_set_batch,
                    data=_set_data)


def _set_written(xp, p, params):
    x = p[0]
    return _set_at.bind(xp.zeros(x.shape, dtype=xp.bool, device=x.device),
                        xp.ones((), dtype=xp.bool, device=x.device), key=params["key"])


_set_at.select, _set_at.written = True, _set_written


# --- scatter_set: x with positions dest along axis set to v (last write wins) ---------------

def _scatter_impl(bk, x, v, dest, *, axis):
    n = x.shape[axis]
    perm = bk.argsort(dest, stable=True)
    sd = bk.take(dest, perm)
    pos = bk.arange(n, dtype=dest.dtype, device=x.device)
    cnt = bk.searchsorted(sd, pos, side="right")  # number of writes at or before each position
    last = bk.where(cnt > 0, cnt - 1, bk.zeros_like(cnt))
    written = bk.logical_and(cnt > 0, bk.take(sd, last) == pos)
    src = bk.take(perm, last)  # the last write (stable sort: the latest in dest's order)
    gathered = bk.take(v, src, axis=axis)
    mask = bk.reshape(written, (n,) + (1,) * (x.ndim - axis - 1))
    return bk.where(mask, gathered, x)


def _last_writes(xp, dest):
    """``is_last[i]``: no later entry of the 1-d ``dest`` equals ``dest[i]``."""
    m = dest.shape[0]
    perm = xp.argsort(dest, stable=True)
    sd = _take.bind(dest, perm, axis=0)
    tail = xp.ones((1,), dtype=xp.bool, device=dest.device)
    last_sorted = xp.concat([xp.not_equal(sd[:m - 1], sd[1:]), tail], axis=0)
    return _take.bind(last_sorted, xp.argsort(perm, stable=True), axis=0)


def _scatter_jvp(xp, p, t, *, axis):
    x, v, dest = p
    tx, tv, _ = t
    out = _scatter.bind(x, v, dest, axis=axis)
    if isinstance(tx, Zero) and isinstance(tv, Zero):
        return out, Zero(out)
    return out, _scatter.bind(instantiate(xp, tx), instantiate(xp, tv), dest, axis=axis)


def _scatter_vjp(xp, g, out, p, needs, *, axis):
    x, v, dest = p
    cx = _scatter.bind(g, xp.zeros_like(v), dest, axis=axis) if needs[0] else None
    cv = None
    if needs[1]:
        keep = xp.reshape(_last_writes(xp, dest), (dest.shape[0],) + (1,) * (g.ndim - axis - 1))
        cv = xp.where(keep, _take.bind(g, dest, axis=axis), 0.0)
    return [cx, cv, None]


def _scatter_batch(xp, vals, batched, n, *, axis):
    x, v, dest = vals
    x, v = move_batch_to(x, batched[0], n, xp), move_batch_to(v, batched[1], n, xp)
    if not batched[2]:
        return _scatter.bind(x, v, dest, axis=axis + 1), True
    # per-example destinations: fold the batch into the written axis, offset by example
    N, M = x.shape[axis + 1], v.shape[axis + 1]
    xm = xp.moveaxis(x, 0, axis)
    vm = xp.moveaxis(v, 0, axis)
    xf = xp.reshape(xm, tuple(xm.shape[:axis]) + (n * N,) + tuple(xm.shape[axis + 2:]))
    vf = xp.reshape(vm, tuple(vm.shape[:axis]) + (n * M,) + tuple(vm.shape[axis + 2:]))
    offs = xp.reshape(xp.multiply(xp.arange(n, dtype=dest.dtype, device=dest.device), N), (n, 1))
    d = xp.reshape(xp.add(dest, offs), (n * M,))
    out = xp.reshape(_scatter.bind(xf, vf, d, axis=axis), tuple(xm.shape))
    return xp.moveaxis(out, axis, 0), True


def _scatter_data(ctx, ops, has, *, axis):
    x, v, dest = ops
    if has[2]:
        raise ctx.mixing("writes at per-sample positions given by a data-dependent index array")
    nd = (x.ndim + ctx.k) if has[0] else x.ndim
    ax = ctx.axes(nd, axis)
    return [x if has[0] else ctx.lift(x), v if has[1] else ctx.lift(v), dest], {"axis": ax}


_scatter = primitive("scatter_set", _scatter_impl, jvp=_scatter_jvp, vjp=_scatter_vjp,
                     batch=_scatter_batch, data=_scatter_data)


def _scatter_written(xp, p, params):
    x, v, dest = p
    return _scatter.bind(xp.zeros(x.shape, dtype=xp.bool, device=x.device),
                         xp.ones(v.shape, dtype=xp.bool, device=x.device), dest, axis=params["axis"])


_scatter.select, _scatter.written = True, _scatter_written


# --- setitem ---------------------------------------------------------------------------------

def _value_like(value, x):
    if isinstance(value, (bool, int, float, complex)):  # a fill on the device, no host copy
        return create(raw_namespace(x).full, (), value, dtype=x.dtype, device=x.device)
    if not is_arraylike(value):  # host data (nested lists): copied to x's device
        return create(raw_namespace(x).asarray, value, dtype=x.dtype, device=x.device)
    if value.dtype != x.dtype:
        return namespace_for_values([x]).astype(value, x.dtype)
    return value


def _setitem_fn(x, key, value):
    if type(key) is not int and type(key) is not slice:
        split = _split_0d_masks(key)
        if split is not None:  # written on x with the unit axes inserted, then removed
            with op_context("__setitem__ with a 0-d boolean index"):
                y = _setitem_fn(_getitem_fn(x, split[0]), split[1], value)
                return _getitem_fn(y, tuple(0 if k is None else k for k in split[0]))
    entries, has_arrays, adjacent = _parse(key, x, "__setitem__")
    value = _value_like(value, x)
    if not has_arrays:
        return _set_at.bind(x, value, key=tuple(entries))
    with op_context("__setitem__ with array indices"):
        out = _mask_where(x, entries, value)
        if out is None:
            out = _advanced_set(x, _expand_masks(entries), adjacent, value)
    return out


def _mask_where(x, entries, value):
    """``x[mask] = value`` as ``where`` when the key is one mask among full slices and
    ``value`` does not need the number of selected elements; else ``None``."""
    arrays = [e for e in entries if isinstance(e, _Arr)]
    if len(arrays) != 1 or not arrays[0].mask:
        return None
    if not all(isinstance(e, _Arr) or _is_full(e) for e in entries):
        return None
    mask = arrays[0].a
    d = next(i for i, e in enumerate(entries) if isinstance(e, _Arr))
    k = mask.ndim
    trail = tuple(x.shape[d + k:])
    t = len(trail)
    vs = tuple(value.shape)
    if len(vs) > t:
        if vs[-(t + 1)] != 1:
            return None  # one value per selected element: needs nonzero
        value = namespace_for_values([x]).reshape(value, vs[:-(t + 1)] + (1,) * k + vs[len(vs) - t:])
    try:
        ok = broadcast_shapes(tuple(value.shape), tuple(x.shape)) == tuple(x.shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"__setitem__: a value of shape {vs} cannot be broadcast to the selection "
                         f"x[mask] of an array of shape {tuple(x.shape)} (mask shape {tuple(mask.shape)})")
    if t:
        mask = namespace_for_values([x]).reshape(mask, tuple(mask.shape) + (1,) * t)
    return namespace_for_values([x]).where(mask, value, x)


def _advanced_set(x, entries, adjacent, value):
    ns = namespace_for_values([x])
    lead = 0
    if adjacent:  # the leading full slices stay leading in the view
        while _is_full(entries[lead]):
            lead += 1
    lshape, rshape = tuple(x.shape[:lead]), tuple(x.shape[lead:])
    N = math.prod(rshape)
    bk = raw_namespace(x)
    iota = ns.reshape(create(bk.arange, N, dtype=bk.int64, device=x.device), rshape)
    dest = _advanced_get(iota, entries[lead:], adjacent)  # flat destination of each element
    vshape = lshape + tuple(dest.shape)
    M = math.prod(dest.shape)
    vs = tuple(value.shape)
    if len(vs) > len(vshape):
        extra = len(vs) - len(vshape)
        if any(s != 1 for s in vs[:extra]):
            raise ValueError(f"__setitem__: a value of shape {vs} cannot be broadcast to the "
                             f"selection of shape {vshape}")
        value = ns.reshape(value, vs[extra:])
    try:
        value = ns.broadcast_to(value, vshape)
    except ValueError:
        raise ValueError(f"__setitem__: a value of shape {vs} cannot be broadcast to the selection "
                         f"of shape {vshape}") from None
    if M == 0:
        return fresh(x)
    value = ns.reshape(value, lshape + (M,))
    out = _scatter.bind(ns.reshape(x, lshape + (N,)), value, ns.reshape(dest, (M,)), axis=lead)
    return ns.reshape(out, tuple(x.shape))


# --- scatter-add (the VJP of gathers) ---------------------------------------------------------

def _sl(ndim, axis, start, stop):
    return (slice(None),) * axis + (slice(start, stop),) + (slice(None),) * (ndim - axis - 1)


def _segment_scan(xp, v, keys, axis):
    """Inclusive prefix sums of ``v`` along ``axis`` restarting wherever the sorted
    ``keys`` change (``keys`` broadcasts against ``v``, aligned at ``axis`` from the end).

    Hillis-Steele doubling: ``ceil(log2 m)`` passes; each adds the partial sum ``d``
    places back when the key there is the same (sorted keys: the whole span is one
    segment).  No prefix differences are taken, so no cancellation across segments.
    """
    m = v.shape[axis]
    ka = keys.ndim - (v.ndim - axis)
    d = 1
    while d < m:
        same = xp.equal(keys[_sl(keys.ndim, ka, d, None)], keys[_sl(keys.ndim, ka, None, m - d)])
        add = xp.where(same, v[_sl(v.ndim, axis, None, m - d)], 0.0)
        v = xp.concat([v[_sl(v.ndim, axis, None, d)], xp.add(v[_sl(v.ndim, axis, d, None)], add)],
                      axis=axis)
        d *= 2
    return v


def scatter_add(xp, g, idx, n, axis):
    """Sum the slices of ``g`` into ``n`` bins along ``axis``: the VJP of ``take``.

    ``g`` has shape ``pre + idx.shape + post`` (``len(pre) == axis``); bin ``j`` of
    the result (shape ``pre + (n,) + post``) is the sum of the slices whose index is
    ``j``: repeated indices accumulate.  With ``m = idx.size`` and ``R`` the size of
    ``pre + post``: a one-hot ``(m, n)`` matmul when ``m * n * R <= ONEHOT_MAX``;
    otherwise a stable sort of the indices, a segmented scan of the sorted slices
    (``ceil(log2 m)`` passes) and a read of each bin's last partial sum
    (``searchsorted``): ``O(R * m + n)`` memory.
    """
    r = idx.ndim
    pre, post = tuple(g.shape[:axis]), tuple(g.shape[axis + r:])
    m = math.prod(idx.shape)
    if r != 1:
        g = xp.reshape(g, pre + (m,) + post)
        idx = xp.reshape(idx, (m,))
    if m == 0:
        return xp.zeros(pre + (n,) + post, dtype=g.dtype, device=g.device)
    bins = xp.arange(n, dtype=idx.dtype, device=idx.device)
    if m * n * math.prod(pre + post) <= ONEHOT_MAX:
        onehot = xp.astype(xp.equal(xp.reshape(idx, (m, 1)), bins), g.dtype)
        return xp.moveaxis(xp.matmul(xp.moveaxis(g, axis, -1), onehot), -1, axis)
    perm = xp.argsort(idx, stable=True)
    keys = _take.bind(idx, perm, axis=0)
    scan = _segment_scan(xp, _take.bind(g, perm, axis=axis), xp.reshape(keys, (m,) + (1,) * len(post)),
                         axis)
    cnt = xp.searchsorted(keys, bins, side="right")
    last = xp.where(xp.greater(cnt, 0), xp.subtract(cnt, 1), 0)
    hit = xp.logical_and(xp.greater(cnt, 0), xp.equal(_take.bind(keys, last, axis=0), bins))
    return xp.where(xp.reshape(hit, (n,) + (1,) * len(post)), _take.bind(scan, last, axis=axis), 0.0)


def _count_le(xp, keys, n, axis):
    """Per row (``keys`` sorted along ``axis``, values in ``[0, n)``): how many keys are
    ``<= j`` for ``j = 0..n-1``.  One stable sort of keys and probes together (keys
    first, so equal keys land before their probe), and its inverse permutation."""
    shape = tuple(keys.shape)
    m, post = shape[axis], shape[axis + 1:]
    probes = xp.reshape(xp.arange(n, dtype=keys.dtype, device=keys.device), (n,) + (1,) * len(post))
    z = xp.concat([keys, xp.broadcast_to(probes, shape[:axis] + (n,) + post)], axis=axis)
    pos = xp.argsort(xp.argsort(z, axis=axis, stable=True), axis=axis, stable=True)
    return xp.subtract(pos[_sl(z.ndim, axis, m, None)], probes)


def scatter_add_rows(xp, g, idx, n, axis):
    """The VJP of ``take_along_axis``: per row (all dims but ``axis``), sum ``g`` into
    ``n`` bins by ``idx`` (same shape as ``g``).  One-hot (``g.size * n`` entries) when
    ``g.size * n <= ONEHOT_MAX``; else a per-row stable sort, segmented scan and a
    sort-based count: ``O(g.size + rows * n)`` memory."""
    shape = tuple(g.shape)
    post = shape[axis + 1:]
    bins = xp.reshape(xp.arange(n, dtype=idx.dtype, device=idx.device), (n,) + (1,) * len(post))
    if math.prod(shape) * n <= ONEHOT_MAX:
        onehot = xp.astype(xp.equal(xp.expand_dims(idx, axis=axis + 1), bins), g.dtype)
        return xp.sum(xp.multiply(xp.expand_dims(g, axis=axis + 1), onehot), axis=axis)
    if shape[axis] == 0:
        return xp.zeros(shape[:axis] + (n,) + post, dtype=g.dtype, device=g.device)
    perm = xp.argsort(idx, axis=axis, stable=True)
    keys = _tal.bind(idx, perm, axis=axis, perm=True)
    scan = _segment_scan(xp, _tal.bind(g, perm, axis=axis, perm=True), keys, axis)
    cnt = _count_le(xp, keys, n, axis)
    last = xp.where(xp.greater(cnt, 0), xp.subtract(cnt, 1), 0)
    hit = xp.logical_and(xp.greater(cnt, 0), xp.equal(_tal.bind(keys, last, axis=axis), bins))
    return xp.where(hit, _tal.bind(scan, last, axis=axis), 0.0)


# --- take -------------------------------------------------------------------------------------

def _take_impl(bk, x, idx, *, axis):
    if idx.ndim == 1:
        return bk.take(x, idx, axis=axis)
    out = bk.take(x, bk.reshape(idx, (-1,)), axis=axis)
    return bk.reshape(out, tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))


def _take_vjp(xp, g, out, p, needs, *, axis):
    x, idx = p
    return [scatter_add(xp, g, idx, x.shape[axis], axis), None]


def _take_batch(xp, vals, batched, n, *, axis):
    x, idx = vals
    bx, bi = batched
    if not bi:
        return _take.bind(x, idx, axis=axis + 1), True
    # batched indices: gather from the flattened (batch, axis) pair
    x = move_batch_to(x, bx, n, xp)
    r = idx.ndim - 1
    xm = xp.moveaxis(x, axis + 1, 1)  # (n, m, pre..., post...)
    m = xm.shape[1]
    flat = xp.reshape(xm, (n * m,) + tuple(xm.shape[2:]))
    offs = xp.reshape(xp.multiply(xp.arange(n, dtype=idx.dtype, device=idx.device), m), (n,) + (1,) * r)
    got = _take.bind(flat, xp.add(idx, offs), axis=0)  # (n, I..., pre..., post...)
    perm = ((0,) + tuple(range(1 + r, 1 + r + axis)) + tuple(range(1, 1 + r))
            + tuple(range(1 + r + axis, got.ndim)))
    return xp.permute_dims(got, perm), True


def _take_data(ctx, ops, has, *, axis):
    if has[0] and not has[1]:
        return ops, {"axis": ctx.axes(ops[0].ndim + ctx.k, axis)}
    if has[1] and not has[0]:
        if axis != 0:
            raise ctx.mixing(f"takes per-sample indices along axis {axis} of a shared array, which "
                             f"would put the data dims in the middle of the result")
        return ops, {"axis": 0}
    raise ctx.mixing("gathers from per-sample data with per-sample indices (each sample's indices "
                     "would read every sample); use take_along_axis for a per-sample gather")


_take = primitive(
    "take", _take_impl,
    jvp=lambda xp, p, t, *, axis: (_take.bind(p[0], p[1], axis=axis), _take.bind(t[0], p[1], axis=axis)),
    vjp=_take_vjp, batch=_take_batch, data=_take_data)


def _wrap_negative(idx, n):
    ns = namespace_for_values([idx])
    return ns.where(ns.less(idx, 0), ns.add(idx, n), idx)


@export
def take(x, indices, /, *, axis=None):
    """Take elements along ``axis`` at integer ``indices``; repeated indices accumulate
    in the derivative.

    ``indices`` may have any number of dims (the standard asks for 1-d; NumPy's
    shape rule applies: ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``);
    negative indices count from the end.

    >>> import numpy as np, xpdiff as xd
    >>> xp = xd.numpy
    >>> xd.grad(lambda x: xp.sum(xp.take(x, np.array([0, 0, 2]))))(np.ones(3))
    array([2., 0., 1.])
    """
    if axis is None:
        if x.ndim != 1:
            raise ValueError(f"take: axis is required for an array with {x.ndim} dims")
        axis = 0
    axis = norm_axis(axis, x.ndim)
    return _take.bind(x, _wrap_negative(indices, x.shape[axis]), axis=axis)


# --- take_along_axis ------------------------------------------------------------------------

def _tal_vjp(xp, g, out, p, needs, *, axis, perm=False):
    x, idx = p
    if perm:  # a permutation along axis: its transpose is the inverse permutation
        return [_tal.bind(g, xp.argsort(idx, axis=axis, stable=True), axis=axis, perm=True), None]
    return [scatter_add_rows(xp, g, idx, x.shape[axis], axis), None]


def _tal_batch(xp, vals, batched, n, *, axis, perm=False):
    x, idx = (move_batch_to(v, b, n, xp) for v, b in zip(vals, batched))
    return _tal.bind(x, idx, axis=axis + 1, perm=perm), True


def _tal_data(ctx, ops, has, *, axis, perm=False):
    nd = next(o.ndim for o, h in zip(ops, has) if h) + ctx.k
    ax = ctx.axes(nd, axis)
    return [o if h else ctx.lift(o) for o, h in zip(ops, has)], {"axis": ax, "perm": perm}


_tal = primitive(
    "take_along_axis", lambda bk, x, idx, *, axis, perm=False: bk.take_along_axis(x, idx, axis=axis),
    jvp=lambda xp, p, t, **kw: (_tal.bind(p[0], p[1], **kw), _tal.bind(t[0], p[1], **kw)),
    vjp=_tal_vjp, batch=_tal_batch, data=_tal_data)


@export
def take_along_axis(x, indices, /, *, axis=-1):
    """Pick ``x``'s elements along ``axis`` at ``indices`` (same rank as ``x``; the
    other dims broadcast).  Repeated indices accumulate in the derivative.

    >>> import numpy as np, xpdiff as xd
    >>> xp = xd.numpy
    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> xp.take_along_axis(x, np.array([[1], [0]]), axis=1)
    array([[2.],
           [3.]])
    """
    if x.ndim != indices.ndim:
        raise ValueError(f"take_along_axis: indices must have the rank of x ({x.ndim}), got "
                         f"{indices.ndim} dims")
    axis = norm_axis(axis, x.ndim)
    xs, js = list(x.shape), list(indices.shape)
    for i in range(x.ndim):
        if i != axis and xs[i] != js[i]:
            if 1 not in (xs[i], js[i]):
                raise ValueError(f"take_along_axis: indices of shape {tuple(js)} do not broadcast "
                                 f"against x of shape {tuple(xs)} (dim {i})")
            xs[i] = js[i] = max(xs[i], js[i])
    ns = namespace_for_values([x])
    if tuple(xs) != tuple(x.shape):
        x = ns.broadcast_to(x, tuple(xs))
    if tuple(js) != tuple(indices.shape):
        indices = ns.broadcast_to(indices, tuple(js))
    return _tal.bind(x, _wrap_negative(indices, x.shape[axis]), axis=axis)
