"""Indexing: basic ``__getitem__``, functional ``__setitem__`` (``set_at``), ``take``.

Keys are normalised to one entry per dim (ints, slices, ``None``), so every rule
sees explicit positions.
"""

from __future__ import annotations

from .._core import Zero, instantiate, primitive
from ._families import backend_of, export, is_arraylike, move_batch_to, norm_axis, pad_batched, unbroadcast

_FULL = slice(None)


def normalize_key(key, shape, where="__getitem__"):
    """Expand ``key`` into a tuple with one entry per dim (plus ``None`` insertions)."""
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if is_arraylike(k) or isinstance(k, (list, bool)):
            raise IndexError(
                f"{where}: indexing with arrays, lists or booleans is not supported yet; use "
                f"xp.take(x, indices, axis=...) for integer indices")
        if not (k is None or k is Ellipsis or isinstance(k, (int, slice))):
            raise IndexError(f"{where}: unsupported index {k!r}")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > len(shape):
        raise IndexError(f"{where}: too many indices ({n_real}) for an array with {len(shape)} dims")
    if key.count(Ellipsis) > 1:
        raise IndexError(f"{where}: at most one Ellipsis")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (_FULL,) * (len(shape) - n_real) + key[i + 1:]
    else:
        key = key + (_FULL,) * (len(shape) - n_real)
    out, d = [], 0
    for k in key:
        if k is None:
            out.append(None)
            continue
        n = shape[d]
        if isinstance(k, int):
            if not -n <= k < n:
                raise IndexError(f"{where}: index {k} is out of bounds for dim {d} of size {n}")
            out.append(k % n)
        else:
            start, stop, step = k.indices(n)
            if (start, stop, step) == (0, n, 1):
                out.append(_FULL)
            else:  # a negative step running past 0 must stop at None, not at -1
                out.append(slice(start, None if stop < 0 else stop, step))
        d += 1
    return tuple(out)


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
        if k is None or k != _FULL:
            raise ctx.mixing(f"indexes a data dim with {k!r}")
        d += 1
    return key[len(key):] if d == ctx.k else key


# --- getitem ------------------------------------------------------------------------------

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


def _getitem_fn(x, key):
    key = normalize_key(key, x.shape)
    if all(k == _FULL for k in key):
        return x
    return _getitem.bind(x, key=key)


# --- set_at: x with x[key] replaced by v --------------------------------------------------

def _set_impl(bk, x, v, *, key):
    y = bk.asarray(x, copy=True)
    y[key] = v
    return y


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


def _setitem_fn(x, key, value):
    key = normalize_key(key, x.shape, "__setitem__")
    if not is_arraylike(value):
        value = backend_of(x).asarray(value, dtype=x.dtype, device=x.device)
    elif value.dtype != x.dtype:
        from .manipulation import astype

        value = astype(value, x.dtype)
    return _set_at.bind(x, value, key=key)


# --- take ---------------------------------------------------------------------------------

def _take_vjp(xp, g, out, p, needs, *, axis):
    x, idx = p
    n = x.shape[axis]
    onehot = xp.astype(xp.equal(xp.reshape(idx, (-1, 1)), xp.arange(n, device=g.device)), g.dtype)
    gm = xp.moveaxis(g, axis, -1)  # (..., m)
    cx = xp.moveaxis(xp.matmul(gm, onehot), -1, axis)  # (..., n)
    return [cx, None]


def _take_batch(xp, vals, batched, n, *, axis):
    x, idx = vals
    bx, bi = batched
    if not bi:
        return _take.bind(x, idx, axis=axis + 1), True
    # batched indices: gather from the flattened (batch, axis) pair
    x = move_batch_to(x, bx, n, xp)
    xm = xp.moveaxis(x, axis + 1, 1)  # (n, m, ...)
    m = xm.shape[1]
    flat = xp.reshape(xm, (n * m,) + tuple(xm.shape[2:]))
    offs = xp.reshape(xp.multiply(xp.arange(n, device=idx.device), m), (n, 1))
    gathered = _take.bind(flat, xp.reshape(xp.add(idx, offs), (-1,)), axis=0)
    out = xp.reshape(gathered, (n, idx.shape[1]) + tuple(xm.shape[2:]))
    return xp.moveaxis(out, 1, axis + 1), True


def _take_data(ctx, ops, has, *, axis):
    if has[1]:
        raise ctx.mixing("takes data-dependent indices along a non-data dim")
    return ops, {"axis": ctx.axes(ops[0].ndim + ctx.k, axis)}


_take = primitive(
    "take", lambda bk, x, idx, *, axis: bk.take(x, idx, axis=axis),
    jvp=lambda xp, p, t, *, axis: (_take.bind(p[0], p[1], axis=axis), _take.bind(t[0], p[1], axis=axis)),
    vjp=_take_vjp, batch=_take_batch, data=_take_data)


@export
def take(x, indices, /, *, axis=None):
    """Take elements along ``axis`` at integer ``indices`` (1-d)."""
    if axis is None:
        if x.ndim != 1:
            raise ValueError("take: axis is required for arrays with more than one dim")
        axis = 0
    return _take.bind(x, indices, axis=norm_axis(axis, x.ndim))


# --- select: per-sample row of a shared array (used to lift under batch_ndim) -----------

def _select_impl(bk, x, i):
    return bk.reshape(bk.take(x, bk.reshape(i, (1,)), axis=0), x.shape[1:])


def _select_vjp(xp, g, out, p, needs, **kw):
    x, i = p
    m = x.shape[0]
    onehot = xp.astype(xp.equal(xp.arange(m, device=g.device), i), g.dtype)
    return [xp.multiply(xp.reshape(onehot, (m,) + (1,) * g.ndim), g), None]


def _select_batch(xp, vals, batched, n, **kw):
    x, i = vals
    bx, bi = batched
    if bi and not bx:
        return _take.bind(x, i, axis=0), True
    if bx and not bi:
        return _take.bind(x, xp.reshape(i, (1,)), axis=1)[:, 0, ...], True
    m = x.shape[1]
    flat = xp.reshape(x, (n * m,) + tuple(x.shape[2:]))
    return _take.bind(flat, xp.add(xp.multiply(xp.arange(n, device=i.device), m), i), axis=0), True


_select = primitive(
    "select", _select_impl,
    jvp=lambda xp, p, t: (_select.bind(p[0], p[1]), _select.bind(t[0], p[1])),
    vjp=_select_vjp, batch=_select_batch)


def select(x, i):
    """``x[i]`` for a 0-d integer array ``i`` (internal: lifting under ``batch_ndim``)."""
    return _select.bind(x, i)
