"""Family constructors shared by the rule modules.

Elementwise families state only their partial derivatives; JVP, VJP (with
broadcasting undone in :func:`unbroadcast`), batching and data-view rules are
derived here.  Axis-taking families share one batching rule and one data rule.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from ..core import IMMUTABLE, Zero, instantiate, norm_axes, norm_axis, primitive, raw_namespace
from ..interpreters.forward import partials_tangent, scaled

EXPORTS: dict[str, Callable] = {}


def export(fn: Callable | None = None, *, name: str | None = None) -> Callable:
    """Register ``fn`` as a function of xpdiff's namespace.

    ``name`` may be dotted to place it in an extension submodule, e.g.
    ``@export(name="linalg.inv")`` or ``@export(name="special.erf")``.
    """
    def deco(f: Callable) -> Callable:
        EXPORTS[name or f.__name__.rstrip("_")] = f
        return f

    return deco if fn is None else deco(fn)


# --- small helpers -----------------------------------------------------------------------

def is_arraylike(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


_SCALAR_CACHE: dict = {}


def as_operand(s: Any, like: Any) -> Any:
    """A Python scalar as a 0-d array matching ``like`` (dtype and device).

    Converted scalars are cached (they are never handed out to user code, and
    every primitive treats its operands as immutable).
    """
    if is_arraylike(s):
        return s
    return scalar_operand(s, like)


def scalar_operand(s: Any, like: Any) -> Any:
    """:func:`as_operand` for a known Python scalar ``s`` (cached)."""
    dt = like.dtype
    dev = like.device
    # type(dt) first: dtypes of two libraries never compare
    key = (type(s), _exact(s), type(dt), dt, _device_key(dev))
    hit = _SCALAR_CACHE.get(key)
    if hit is not None:
        return hit
    out = _as_operand(s, like, dt, dev)
    if len(_SCALAR_CACHE) > 512:
        _SCALAR_CACHE.clear()
        IMMUTABLE.clear()
    _SCALAR_CACHE[key] = out
    IMMUTABLE[id(out)] = (out, s)  # jit may fold computations on it; rules may read s
    return out


def known_scalar(x: Any) -> Any:
    """The Python scalar that the operand ``x`` was made from (``x ** 2``: ``2``), or
    ``None``: rules may choose a simpler form for a constant they can read on the host,
    without asking the device."""
    hit = IMMUTABLE.get(id(x))
    return hit[1] if hit is not None and hit[0] is x else None


def _exact(s: Any) -> Any:
    """A cache key for a Python scalar that tells apart what ``==`` does not: ``0.0``
    and ``-0.0``, and NaNs (which equal nothing, themselves included)."""
    if isinstance(s, float):
        return struct.pack("<d", s)
    if isinstance(s, complex):
        return struct.pack("<dd", s.real, s.imag)
    return s


def _device_key(dev: Any) -> Any:
    """A hashable cache key for a device: the device itself when it is hashable, else
    its type and spelling (CuPy's devices are unhashable; two of them that print alike
    are the same device)."""
    try:
        hash(dev)
    except TypeError:
        return (type(dev), repr(dev))
    return dev


def _as_operand(s: Any, like: Any, dt: Any, dev: Any) -> Any:
    bk = raw_namespace(like)
    kind = dtype_kind(bk, dt)
    if isinstance(s, bool):
        pass
    elif isinstance(s, int):
        dt = None if kind == "bool" else dt
    elif isinstance(s, float):
        dt = dt if kind in ("real floating", "complex floating") else None
    elif isinstance(s, complex):
        if kind == "real floating":  # the complex dtype of the same precision (standard)
            dt = bk.complex64 if dt == bk.float32 else bk.complex128
        elif kind != "complex floating":
            dt = None
    else:
        raise TypeError(f"expected an array or a Python scalar, got {type(s).__name__}")
    # a fill on the device, not a host-to-device copy (without dt: the dtype full gives the
    # Python scalar, as asarray would)
    return bk.full((), s, dtype=dt, device=dev)


_KINDS: dict = {}


def dtype_kind(bk: Any, dt: Any) -> str:
    """The standard's kind of a dtype ("bool", "integral", "real floating", ...), cached."""
    key = (id(bk), dt)
    k = _KINDS.get(key)
    if k is None:
        for k in ("bool", "signed integer", "unsigned integer", "real floating",
                  "complex floating"):
            if bk.isdtype(dt, k):
                break
        _KINDS[key] = k
    return k


_SCALARS = (bool, int, float, complex)


def operands(*args: Any) -> tuple:
    """Convert the Python scalars among ``args`` to arrays like the first array."""
    if len(args) == 2:  # the hot case (binary operators with one Python scalar)
        a, b = args
        sa, sb = isinstance(a, _SCALARS), isinstance(b, _SCALARS)
        if sa != sb:
            return (a, scalar_operand(b, a)) if sb else (scalar_operand(a, b), b)
        if not sa:
            return args
    elif not any(isinstance(a, _SCALARS) for a in args):
        return args
    like = next((a for a in args if is_arraylike(a)), None)
    if like is None:
        raise TypeError("at least one argument must be an array")
    return tuple(as_operand(a, like) for a in args)


def unbroadcast(xp: Any, g: Any, shape: tuple) -> Any:
    """Sum ``g`` down to ``shape`` (undo broadcasting): the one place it is done."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = xp.sum(g, axis=axes)
    return xp.reshape(g, shape)


def move_batch_to(v: Any, b: bool, size: int, xp: Any) -> Any:
    """Materialise an unbatched value as batched (batch axis first)."""
    return v if b else xp.broadcast_to(v, (size,) + tuple(v.shape))


def pad_batched(xp: Any, v: Any, rank: int) -> Any:
    """Insert unit dims after the batch axis so the per-example rank is ``rank``."""
    r = v.ndim - 1
    if r >= rank:
        return v
    return xp.reshape(v, (v.shape[0],) + (1,) * (rank - r) + tuple(v.shape[1:]))


# --- broadcasting (elementwise) families ------------------------------------------------------

def batch_broadcast(prim):
    """Batching rule of a broadcasting op: align per-example ranks, batch axis first."""

    def rule(xp, vals, batched, size, **params):
        r = -1  # the per-example rank of the result
        for v, b in zip(vals, batched):
            nd = getattr(v, "ndim", None)
            if nd is not None and nd - b > r:
                r = nd - b
        new = [pad_batched(xp, v, r) if b and v.ndim - 1 < r else v
               for v, b in zip(vals, batched)]
        return prim.bind(*new, **params), True

    return rule


def align_data(ctx, ops, has, core: int = 0) -> list:
    """Align operands of a broadcasting op under the data view: data operands must
    have the full (apparent) rank, so their data dims lead; a shared operand whose
    leading dims line up with the data dims is lifted (each sample reads its row).
    ``core`` trailing dims (matrix dims of linalg ops) never broadcast."""
    k = ctx.k
    R = max((o.ndim + k if h else o.ndim) for o, h in zip(ops, has) if is_arraylike(o))
    new = []
    for o, h in zip(ops, has):
        if not is_arraylike(o):
            new.append(o)
        elif h:
            if o.ndim + k != R:
                raise ctx.outranked(o, ops, has, core)
            new.append(o)
        elif o.ndim > core and o.ndim > R - k:
            new.append(ctx.lift(o, o.ndim - (R - k)))
        else:
            new.append(o)
    return new


def data_broadcast(ctx, ops, has, **params):
    """Data rule of a broadcasting (elementwise) op: see :func:`align_data`."""
    return align_data(ctx, ops, has), params


def elementwise(name: str, partials: tuple | None, impl: Callable | None = None):
    """An elementwise primitive from its partial derivatives.

    ``partials`` holds one entry per operand: ``None`` (no derivative flows to it)
    or ``d(xp, primals, out)`` returning the derivative (an array or a Python
    number).  Only the partials that are needed are computed.  ``partials=None``
    makes the primitive non-differentiable (comparisons, ``floor``, ...).
    """
    if impl is None:
        def impl(bk, *args, _n=name):
            return getattr(bk, _n)(*args)

        impl.direct = name  # jit lowers the call to the backend function itself

    p = primitive(name, impl, differentiable=partials is not None)

    def jvp(xp, primals, tangents):
        out = p.bind(*primals)
        return out, partials_tangent(xp, partials, primals, tangents, out)

    def vjp(xp, g, out, primals, needs, partials=partials):
        # ``partials``: the interpreters pass them guarded against masked zeros
        res = []
        for x, d, need in zip(primals, partials, needs):
            if not need or d is None:
                res.append(None)
            else:
                c = unbroadcast(xp, scaled(xp, g, d(xp, primals, out)), x.shape)
                if is_complex_of_real(c, x):  # a real operand of a complex result
                    c = xp.real(c)
                res.append(c)
        return res

    if p.differentiable:
        p.jvp, p.vjp = jvp, vjp
        p.partials = partials
    p.batch = batch_broadcast(p)
    p.data = data_broadcast
    return p


# --- axis families -------------------------------------------------------------------------

def batch_axis_param(prim, key: str = "axis", none_means_all: bool = True):
    """Batching rule for ops with an axis parameter (int, tuple or None)."""

    def rule(xp, vals, batched, size, **params):
        x = vals[0]
        r = x.ndim - 1
        ax = params.get(key)
        if ax is None:
            ax = tuple(range(1, r + 1)) if none_means_all else None
        elif isinstance(ax, int):
            ax = norm_axis(ax, r) + 1
        else:
            ax = tuple(norm_axis(a, r) + 1 for a in ax)
        params = dict(params, **{key: ax})
        new = [vals[0]] + [move_batch_to(v, b, size, xp) if is_arraylike(v) else v
                           for v, b in zip(vals[1:], batched[1:])]
        return prim.bind(*new, **params), True

    return rule


def data_axis_param(key: str = "axis"):
    def rule(ctx, ops, has, **params):
        if not has[0]:
            raise ctx.mixing("uses a data operand in a non-data position")
        params = dict(params, **{key: ctx.axes(ops[0].ndim + ctx.k, params.get(key))})
        return ops, params

    return rule


def is_complex_of_real(c: Any, x: Any) -> bool:
    """Whether the cotangent ``c`` is complex while its primal ``x`` is real (the
    cotangent of a real input is the real part: docs/linalg-fft.md)."""
    if c.dtype == x.dtype:
        return False
    bk = raw_namespace(x)
    return (dtype_kind(bk, c.dtype) == "complex floating"
            and dtype_kind(bk, x.dtype) != "complex floating")


def is_float(x: Any) -> bool:
    return dtype_kind(raw_namespace(x), x.dtype) in ("real floating", "complex floating")


def size_of(shape: tuple) -> int:
    return math.prod(shape)


__all__ = ["EXPORTS", "Zero", "export", "instantiate", "norm_axes", "norm_axis"]
