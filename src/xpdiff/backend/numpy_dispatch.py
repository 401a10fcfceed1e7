"""NumPy's dispatch protocols translated to the array API standard.

Layer: backend (it knows NumPy's function objects and signatures). It imports
nothing of xpdiff: every translation receives the array namespace ``ns`` to call
(xpdiff's differentiable namespace, passed in by the namespace layer), so plain
NumPy code (``np.sum(x)``, ``np.exp(x) @ W``) runs through the standard functions
when ``x`` is a traced array.

Two tables, both keyed by NumPy's own objects:

* ``UFUNCS``: ufunc -> name of the standard function (``np.arccos`` -> ``acos``);
  ``reduce`` and ``accumulate`` of the ufuncs that have a standard reduction
  (``np.add.reduce`` -> ``sum``, ``np.multiply.accumulate`` -> ``cumulative_prod``).
* ``FUNCTIONS``: NumPy function -> a translation ``(ns, *args, **kwargs)`` written
  with NumPy's signature (``np.std(x, ddof=1)`` -> ``ns.std(x, correction=1)``).

Anything else raises ``TypeError`` naming the NumPy function and, where there is
one, how to write it with the standard (``HINTS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

_NoValue = getattr(np, "_NoValue", None)

# ufunc -> standard function name
UFUNCS: dict[Any, str] = {
    np.add: "add", np.subtract: "subtract", np.multiply: "multiply", np.divide: "divide",
    np.floor_divide: "floor_divide", np.remainder: "remainder", np.power: "pow",
    np.negative: "negative", np.positive: "positive", np.absolute: "abs",
    np.exp: "exp", np.expm1: "expm1", np.log: "log", np.log1p: "log1p", np.log2: "log2",
    np.log10: "log10", np.logaddexp: "logaddexp", np.sqrt: "sqrt", np.square: "square",
    np.reciprocal: "reciprocal",
    np.sin: "sin", np.cos: "cos", np.tan: "tan", np.arcsin: "asin", np.arccos: "acos",
    np.arctan: "atan", np.arctan2: "atan2", np.sinh: "sinh", np.cosh: "cosh", np.tanh: "tanh",
    np.arcsinh: "asinh", np.arccosh: "acosh", np.arctanh: "atanh", np.hypot: "hypot",
    np.maximum: "maximum", np.minimum: "minimum", np.copysign: "copysign",
    np.nextafter: "nextafter", np.sign: "sign", np.signbit: "signbit",
    np.floor: "floor", np.ceil: "ceil", np.trunc: "trunc", np.rint: "round",
    np.equal: "equal", np.not_equal: "not_equal", np.less: "less", np.less_equal: "less_equal",
    np.greater: "greater", np.greater_equal: "greater_equal",
    np.logical_and: "logical_and", np.logical_or: "logical_or", np.logical_xor: "logical_xor",
    np.logical_not: "logical_not", np.isnan: "isnan", np.isinf: "isinf", np.isfinite: "isfinite",
    np.conjugate: "conj", np.matmul: "matmul",
    np.bitwise_and: "bitwise_and", np.bitwise_or: "bitwise_or", np.bitwise_xor: "bitwise_xor",
    np.invert: "bitwise_invert", np.left_shift: "bitwise_left_shift",
    np.right_shift: "bitwise_right_shift",
}
if hasattr(np, "vecdot"):  # a ufunc since NumPy 2.0
    UFUNCS[np.vecdot] = "vecdot"

# (ufunc, method) -> standard reduction / cumulative function
UFUNC_METHODS: dict[tuple[Any, str], str] = {
    (np.add, "reduce"): "sum", (np.multiply, "reduce"): "prod",
    (np.maximum, "reduce"): "max", (np.minimum, "reduce"): "min",
    (np.logical_and, "reduce"): "all", (np.logical_or, "reduce"): "any",
    (np.add, "accumulate"): "cumulative_sum", (np.multiply, "accumulate"): "cumulative_prod",
}

# how to write a NumPy function that has no direct counterpart
HINTS: dict[str, str] = {
    "einsum": "xp.matmul, xp.tensordot or xp.vecdot (whichever the contraction is)",
    "nansum": "xp.sum(xp.where(xp.isnan(x), 0, x))",
    "nanmean": "xp.sum(xp.where(m, x, 0)) / xp.sum(m) with m = ~xp.isnan(x)",
    "nanmax": "xp.max(xp.where(xp.isnan(x), -xp.inf, x))",
    "nanmin": "xp.min(xp.where(xp.isnan(x), xp.inf, x))",
    "isclose": "xp.abs(a - b) <= atol + rtol * xp.abs(b)",
    "allclose": "xp.all(xp.abs(a - b) <= atol + rtol * xp.abs(b))",
    "argwhere": "xp.stack(xp.nonzero(x), axis=-1)",
    "ravel": "xp.reshape(x, (-1,))",
    "unique": "xp.unique_values, xp.unique_counts, xp.unique_inverse or xp.unique_all",
    "interp": "xp.searchsorted and xp.take (the brackets) and the linear formula",
    "average": "xp.sum(w * x, axis=a) / xp.sum(w, axis=a)",
    "sinc": "xp.where(x == 0, 1.0, xp.sin(xp.pi * x) / (xp.pi * x))",
    "percentile": "xp.sort followed by xp.take",
    "quantile": "xp.sort followed by xp.take",
    "median": "xp.sort followed by xp.take",
    "pad": "xp.concat with xp.zeros / xp.full blocks",
    "cbrt": "xp.sign(x) * xp.abs(x) ** (1 / 3)",
    "exp2": "2.0 ** x",
    "deg2rad": "x * (xp.pi / 180)",
    "rad2deg": "x * (180 / xp.pi)",
    "fmax": "xp.where(xp.isnan(b) | (a >= b), a, b)",
    "fmin": "xp.where(xp.isnan(b) | (a <= b), a, b)",
    "fmod": "x - xp.trunc(x / y) * y",
    "logaddexp2": "xp.logaddexp(x * log(2), y * log(2)) / log(2)",
}


def _dtype(ns: Any, dtype: Any) -> Any:
    """The namespace's dtype for a NumPy dtype spec (``np.float32``, ``"f8"``, a dtype)."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:  # already the namespace's own dtype object
        return dtype
    return getattr(ns, name, dtype)


def _unsupported(fname: str, **given: Any) -> None:
    """Refuse NumPy-only keywords set to a non-default value (``out=``, ``where=``, ...)."""
    defaults = {"out": None, "where": True, "order": "C", "casting": "same_kind", "subok": True,
                "initial": _NoValue, "kind": None, "mode": "raise", "hermitian": False}
    for k, v in given.items():
        if v is _NoValue or (k in defaults and v is defaults[k]) or (k in defaults and _eq(v, defaults[k])):
            continue
        raise TypeError(f"numpy.{fname}: the argument {k}={v!r} has no counterpart in the array API "
                        f"standard, so it is not supported on traced arrays; leave it at its default "
                        f"and write the result with the namespace of a differentiated argument")


def _eq(a: Any, b: Any) -> bool:
    return isinstance(a, (str, bool, type(None))) and a == b


def _flat(ns: Any, a: Any) -> Any:
    return ns.reshape(a, (-1,))


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _reduction(name: str, *, has_dtype: bool = True) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
          keepdims: Any = False, initial: Any = _NoValue, where: Any = True) -> Any:
        _unsupported(name, out=out, initial=initial, where=where)
        if keepdims is _NoValue:
            keepdims = False
        kw: dict[str, Any] = {"axis": _axis(axis), "keepdims": bool(keepdims)}
        if dtype is not None:
            if not has_dtype:
                raise TypeError(f"numpy.{name}: dtype= is not supported on traced arrays")
            kw["dtype"] = _dtype(ns, dtype)
        return getattr(ns, name)(ns.asarray(a), **kw)

    return f


def _minmax(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, out: Any = None, keepdims: Any = False,
          initial: Any = _NoValue, where: Any = True) -> Any:
        _unsupported(name, out=out, initial=initial, where=where)
        return getattr(ns, name)(ns.asarray(a), axis=_axis(axis), keepdims=bool(keepdims))

    return f


def _boolred(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, out: Any = None, keepdims: Any = False,
          *, where: Any = True) -> Any:
        _unsupported(name, out=out, where=where)
        return getattr(ns, name)(ns.asarray(a), axis=_axis(axis), keepdims=bool(keepdims))

    return f


def _stat(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
          keepdims: Any = False, *, where: Any = True, mean: Any = _NoValue,
          correction: Any = _NoValue) -> Any:
        _unsupported(name, out=out, where=where, mean=mean)
        x = ns.asarray(a)
        if dtype is not None:
            x = ns.astype(x, _dtype(ns, dtype))
        corr = ddof if correction is _NoValue else correction
        return getattr(ns, name)(x, axis=_axis(axis), correction=corr, keepdims=bool(keepdims))

    return f


def _mean(ns: Any, a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
          keepdims: Any = False, *, where: Any = True) -> Any:
    _unsupported("mean", out=out, where=where)
    x = ns.asarray(a)
    if dtype is not None:
        x = ns.astype(x, _dtype(ns, dtype))
    return ns.mean(x, axis=_axis(axis), keepdims=bool(keepdims))


def _arg(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = False) -> Any:
        _unsupported(name, out=out)
        x = ns.asarray(a)
        if axis is None:
            r = getattr(ns, name)(_flat(ns, x))
            return ns.reshape(r, (1,) * x.ndim) if keepdims else r
        return getattr(ns, name)(x, axis=axis, keepdims=bool(keepdims))

    return f


def _cumulative(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = None, dtype: Any = None, out: Any = None,
          include_initial: bool = False) -> Any:
        _unsupported(name, out=out)
        x = ns.asarray(a)
        if axis is None:
            x, axis = _flat(ns, x), 0
        kw = {"dtype": _dtype(ns, dtype)} if dtype is not None else {}
        return getattr(ns, name)(x, axis=axis, include_initial=include_initial, **kw)

    return f


def _dot(ns: Any, a: Any, b: Any, out: Any = None) -> Any:
    _unsupported("dot", out=out)
    a, b = ns.asarray(a), ns.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        return ns.multiply(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return ns.matmul(a, b)
    raise TypeError("numpy.dot of arrays with more than 2 dims contracts the last axis of a with the "
                    "second-to-last of b, which has no single standard counterpart; write it with "
                    "xp.tensordot(a, b, axes=([-1], [-2])) or xp.matmul")


def _inner(ns: Any, a: Any, b: Any) -> Any:
    a, b = ns.asarray(a), ns.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        return ns.multiply(a, b)
    return ns.tensordot(a, b, axes=([-1], [-1]))


def _outer(ns: Any, a: Any, b: Any, out: Any = None) -> Any:
    _unsupported("outer", out=out)
    return ns.linalg.outer(_flat(ns, ns.asarray(a)), _flat(ns, ns.asarray(b)))


def _arrays(ns: Any, fname: str, arrays: Any, out: Any, dtype: Any, casting: Any) -> list:
    """The arrays of ``np.concatenate`` / ``np.stack``, cast to ``dtype`` if given."""
    _unsupported(fname, out=out, casting=casting)
    xs = [ns.asarray(a) for a in arrays]
    return xs if dtype is None else [ns.astype(x, _dtype(ns, dtype)) for x in xs]


def _concatenate(ns: Any, arrays: Any, axis: Any = 0, out: Any = None, *, dtype: Any = None,
                 casting: Any = "same_kind") -> Any:
    xs = _arrays(ns, "concatenate", arrays, out, dtype, casting)
    if axis is None:
        return ns.concat([_flat(ns, x) for x in xs], axis=0)
    return ns.concat(xs, axis=axis)


def _stack(ns: Any, arrays: Any, axis: int = 0, out: Any = None, *, dtype: Any = None,
           casting: Any = "same_kind") -> Any:
    return ns.stack(_arrays(ns, "stack", arrays, out, dtype, casting), axis=axis)


def _atleast(ns: Any, x: Any, nd: int) -> Any:
    x = ns.asarray(x)
    if x.ndim >= nd:
        return x
    if nd == 3 and x.ndim == 2:
        return ns.reshape(x, x.shape + (1,))
    if nd == 3:
        return ns.reshape(x, (1, -1, 1))
    return ns.reshape(x, (1,) * (nd - x.ndim) + tuple(x.shape))


def _atleast_nd(nd: int) -> Callable:
    def f(ns: Any, *arys: Any) -> Any:
        out = [_atleast(ns, a, nd) for a in arys]
        return out[0] if len(out) == 1 else tuple(out)

    return f


def _hstack(ns: Any, tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
    xs = [_atleast(ns, a, 1) for a in tup]
    return _concatenate(ns, xs, axis=0 if xs[0].ndim == 1 else 1, dtype=dtype, casting=casting)


def _vstack(ns: Any, tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
    return _concatenate(ns, [_atleast(ns, a, 2) for a in tup], axis=0, dtype=dtype, casting=casting)


def _reshape(ns: Any, a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None,
             copy: Any = None) -> Any:
    _unsupported("reshape", order=order)
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return ns.reshape(ns.asarray(a), shape, copy=copy)


def _transpose(ns: Any, a: Any, axes: Any = None) -> Any:
    x = ns.asarray(a)
    return ns.permute_dims(x, tuple(range(x.ndim))[::-1] if axes is None else tuple(axes))


def _swapaxes(ns: Any, a: Any, axis1: int, axis2: int) -> Any:
    x = ns.asarray(a)
    perm = list(range(x.ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return ns.permute_dims(x, tuple(perm))


def _squeeze(ns: Any, a: Any, axis: Any = None) -> Any:
    x = ns.asarray(a)
    if axis is None:
        axis = tuple(i for i, n in enumerate(x.shape) if n == 1)
    return ns.squeeze(x, axis=_axis(axis))


def _expand_dims(ns: Any, a: Any, axis: Any) -> Any:
    x = ns.asarray(a)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    for ax in sorted(a % nd for a in axes):
        x = ns.expand_dims(x, axis=ax)
    return x


def _where(ns: Any, condition: Any, x: Any = _NoValue, y: Any = _NoValue) -> Any:
    if x is _NoValue and y is _NoValue:
        return ns.nonzero(ns.asarray(condition))
    c = ns.asarray(condition)
    if c.dtype != ns.bool:  # NumPy reads the truth of any dtype
        c = ns.astype(c, ns.bool)
    scalars = (bool, int, float, complex)
    if isinstance(x, scalars) and isinstance(y, scalars):  # NumPy's dtype for the pair
        x = ns.asarray(x, dtype=np.result_type(x, y), device=c.device)
    return ns.where(c, x, y)


def _clip(ns: Any, a: Any, a_min: Any = _NoValue, a_max: Any = _NoValue, out: Any = None, *,
          min: Any = _NoValue, max: Any = _NoValue, **kwargs: Any) -> Any:  # noqa: A002
    _unsupported("clip", out=out, **kwargs)
    lo = min if a_min is _NoValue else a_min
    hi = max if a_max is _NoValue else a_max
    lo = None if lo is _NoValue else lo
    hi = None if hi is _NoValue else hi
    return ns.clip(ns.asarray(a), min=lo, max=hi)


def _sortlike(name: str) -> Callable:
    def f(ns: Any, a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
          stable: Any = None) -> Any:
        if order is not None:
            raise TypeError(f"numpy.{name}: order= (structured arrays) is not supported on traced arrays")
        x = ns.asarray(a)
        if axis is None:
            x, axis = _flat(ns, x), 0
        return getattr(ns, name)(x, axis=axis, stable=True if stable is None else stable)

    return f


def _flip(ns: Any, m: Any, axis: Any = None) -> Any:
    return ns.flip(ns.asarray(m), axis=_axis(axis))


def _roll(ns: Any, a: Any, shift: Any, axis: Any = None) -> Any:
    return ns.roll(ns.asarray(a), shift, axis=_axis(axis))


def _take(ns: Any, a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
    _unsupported("take", out=out, mode=mode)
    x = ns.asarray(a)
    if axis is None:
        x, axis = _flat(ns, x), 0
    idx = ns.asarray(indices)
    if idx.ndim == 0:
        return ns.squeeze(ns.take(x, ns.reshape(idx, (1,)), axis=axis), axis=axis)
    if idx.ndim > 1:
        flat = ns.take(x, _flat(ns, idx), axis=axis)
        ax = axis % x.ndim
        return ns.reshape(flat, tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]))
    return ns.take(x, idx, axis=axis)


def _repeat(ns: Any, a: Any, repeats: Any, axis: Any = None) -> Any:
    x = ns.asarray(a)
    if axis is None:
        x, axis = _flat(ns, x), 0
    return ns.repeat(x, repeats, axis=axis)


def _diff(ns: Any, a: Any, n: int = 1, axis: int = -1, prepend: Any = _NoValue,
          append: Any = _NoValue) -> Any:
    kw = {}
    if prepend is not _NoValue:
        kw["prepend"] = prepend
    if append is not _NoValue:
        kw["append"] = append
    return ns.diff(ns.asarray(a), n=n, axis=axis, **kw)


def _to_last2(ns: Any, x: Any, axis1: int, axis2: int) -> Any:
    nd = x.ndim
    a1, a2 = axis1 % nd, axis2 % nd
    rest = [i for i in range(nd) if i not in (a1, a2)]
    return ns.permute_dims(x, tuple(rest) + (a1, a2))


def _trace(ns: Any, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None,
           out: Any = None) -> Any:
    _unsupported("trace", out=out)
    x = _to_last2(ns, ns.asarray(a), axis1, axis2)
    kw = {"dtype": _dtype(ns, dtype)} if dtype is not None else {}
    return ns.linalg.trace(x, offset=offset, **kw)


def _diagonal(ns: Any, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    return ns.linalg.diagonal(_to_last2(ns, ns.asarray(a), axis1, axis2), offset=offset)


def _like(name: str) -> Callable:
    def f(ns: Any, a: Any, *args: Any, dtype: Any = None, order: Any = "K", subok: Any = True,
          shape: Any = None, device: Any = None) -> Any:
        x = ns.asarray(a)
        kw = {"dtype": _dtype(ns, dtype)} if dtype is not None else {}
        if shape is not None:
            ctor = {"zeros_like": ns.zeros, "ones_like": ns.ones, "empty_like": ns.empty}
            if name == "full_like":
                return ns.full(shape, args[0], dtype=kw.get("dtype", x.dtype), device=x.device)
            return ctor[name](shape, dtype=kw.get("dtype", x.dtype), device=x.device)
        return getattr(ns, name)(x, *args, **kw)

    return f


def _full_like(ns: Any, a: Any, fill_value: Any, dtype: Any = None, order: Any = "K",
               subok: Any = True, shape: Any = None, device: Any = None) -> Any:
    return _like("full_like")(ns, a, fill_value, dtype=dtype, shape=shape)


def _copy(ns: Any, a: Any, order: Any = "K", subok: Any = False) -> Any:
    return ns.asarray(a, copy=True)


def _round(ns: Any, a: Any, decimals: int = 0, out: Any = None) -> Any:
    _unsupported("round", out=out)
    if decimals == 0:
        return ns.round(ns.asarray(a))
    s = 10.0 ** decimals
    return ns.divide(ns.round(ns.multiply(a, s)), s)


def _astype(ns: Any, x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    return ns.astype(x, _dtype(ns, dtype), copy=copy)


def _norm(ns: Any, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A002
    x = ns.asarray(x)
    if axis is None:
        if ord is None or (x.ndim == 2 and ord == "fro") or (x.ndim == 1):
            vord = 2 if ord in (None, "fro") else ord
            return ns.linalg.vector_norm(x, axis=None, keepdims=keepdims, ord=vord)
        axis = (0, 1)
    if isinstance(axis, int):
        return ns.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=2 if ord is None else ord)
    a1, a2 = axis
    m = _to_last2(ns, x, a1, a2)
    r = ns.linalg.matrix_norm(m, ord="fro" if ord is None else ord)
    if keepdims:
        r = _expand_dims(ns, r, tuple(sorted((a1 % x.ndim, a2 % x.ndim))))
    return r


def _svd(ns: Any, a: Any, full_matrices: bool = True, compute_uv: bool = True,
         hermitian: bool = False) -> Any:
    _unsupported("linalg.svd", hermitian=hermitian)
    if not compute_uv:
        return ns.linalg.svdvals(a)
    return ns.linalg.svd(a, full_matrices=full_matrices)


def _qr(ns: Any, a: Any, mode: str = "reduced") -> Any:
    if mode not in ("reduced", "complete"):
        raise TypeError(f"numpy.linalg.qr: mode={mode!r} is not supported on traced arrays; "
                        f"use mode='reduced' or 'complete'")
    return ns.linalg.qr(a, mode=mode)


def _cholesky(ns: Any, a: Any, /, *, upper: bool = False) -> Any:
    return ns.linalg.cholesky(a, upper=upper)


def _cross(ns: Any, a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
           axis: Any = None) -> Any:
    if axis is not None:
        axisa = axisb = axisc = axis
    if (axisa, axisb, axisc) != (-1, -1, -1):
        raise TypeError("numpy.cross: only the last axis is supported on traced arrays "
                        "(move the axis with xp.moveaxis first)")
    return ns.linalg.cross(a, b)


def _tri(name: str) -> Callable:
    return lambda ns, m, k=0: getattr(ns, name)(ns.asarray(m), k=k)


def _linalg(name: str) -> Callable:
    return lambda ns, *args, **kwargs: getattr(ns.linalg, name)(*args, **kwargs)


def _same(name: str) -> Callable:
    return lambda ns, *args, **kwargs: getattr(ns, name)(*args, **kwargs)


def _meshgrid(ns: Any, *xi: Any, copy: bool = True, sparse: bool = False, indexing: str = "xy") -> Any:
    if sparse:
        raise TypeError("numpy.meshgrid: sparse=True is not supported on traced arrays")
    return tuple(ns.meshgrid(*xi, indexing=indexing))


def _broadcast_arrays(ns: Any, *args: Any, subok: bool = False) -> Any:
    return tuple(ns.broadcast_arrays(*args))


def _shape(ns: Any, a: Any) -> Any:
    return tuple(a.shape)


def _ndim(ns: Any, a: Any) -> int:
    return len(a.shape)


def _size(ns: Any, a: Any, axis: Any = None) -> int:
    return math.prod(a.shape) if axis is None else a.shape[axis]


FUNCTIONS: dict[Any, Callable] = {
    np.sum: _reduction("sum"), np.prod: _reduction("prod"), np.mean: _mean,
    np.std: _stat("std"), np.var: _stat("var"),
    np.max: _minmax("max"), np.amax: _minmax("max"), np.min: _minmax("min"), np.amin: _minmax("min"),
    np.all: _boolred("all"), np.any: _boolred("any"),
    np.argmax: _arg("argmax"), np.argmin: _arg("argmin"),
    np.cumsum: _cumulative("cumulative_sum"), np.cumprod: _cumulative("cumulative_prod"),
    np.dot: _dot, np.inner: _inner, np.outer: _outer, np.tensordot: _same("tensordot"),
    np.concatenate: _concatenate, np.stack: _stack, np.hstack: _hstack, np.vstack: _vstack,
    np.atleast_1d: _atleast_nd(1), np.atleast_2d: _atleast_nd(2), np.atleast_3d: _atleast_nd(3),
    np.reshape: _reshape, np.transpose: _transpose, np.swapaxes: _swapaxes,
    np.moveaxis: _same("moveaxis"), np.squeeze: _squeeze, np.expand_dims: _expand_dims,
    np.broadcast_to: _same("broadcast_to"), np.broadcast_arrays: _broadcast_arrays,
    np.where: _where, np.clip: _clip, np.sort: _sortlike("sort"), np.argsort: _sortlike("argsort"),
    np.flip: _flip, np.roll: _roll, np.take: _take, np.take_along_axis: _same("take_along_axis"),
    np.repeat: _repeat, np.tile: _same("tile"), np.tril: _tri("tril"), np.triu: _tri("triu"),
    np.diff: _diff, np.trace: _trace, np.diagonal: _diagonal,
    np.zeros_like: _like("zeros_like"), np.ones_like: _like("ones_like"),
    np.empty_like: _like("empty_like"), np.full_like: _full_like, np.copy: _copy,
    np.real: _same("real"), np.imag: _same("imag"), np.round: _round,
    np.nonzero: _same("nonzero"), np.count_nonzero: _same("count_nonzero"),
    np.searchsorted: _same("searchsorted"), np.meshgrid: _meshgrid,
    np.shape: _shape, np.ndim: _ndim, np.size: _size,
    np.linalg.inv: _linalg("inv"), np.linalg.det: _linalg("det"), np.linalg.solve: _linalg("solve"),
    np.linalg.slogdet: _linalg("slogdet"), np.linalg.eigh: _linalg("eigh"),
    np.linalg.eigvalsh: _linalg("eigvalsh"), np.linalg.pinv: _linalg("pinv"),
    np.linalg.matrix_rank: _linalg("matrix_rank"), np.linalg.matrix_power: _linalg("matrix_power"),
    np.linalg.norm: _norm, np.linalg.svd: _svd, np.linalg.qr: _qr, np.linalg.cholesky: _cholesky,
    np.cross: _cross,
}
for _name in ("around", "astype", "concat", "permute_dims", "matrix_transpose", "unstack",
              "cumulative_sum", "cumulative_prod"):
    _f = getattr(np, _name, None)
    if _f is not None and _f not in FUNCTIONS:
        FUNCTIONS[_f] = {"around": _round, "astype": _astype}.get(_name) or _same(_name)
for _name in ("outer", "vector_norm", "matrix_norm", "svdvals", "trace", "diagonal", "cross",
              "vecdot", "tensordot", "matmul", "matrix_transpose"):
    _f = getattr(np.linalg, _name, None)
    if _f is not None and _f not in FUNCTIONS:
        FUNCTIONS[_f] = _linalg(_name)


def _qualname(func: Any) -> str:
    mod = getattr(func, "__module__", "") or ""
    name = getattr(func, "__name__", repr(func))
    return f"linalg.{name}" if mod.endswith("linalg") or "linalg" in mod else name


def _not_covered(func: Any) -> TypeError:
    name = _qualname(func)
    hint = HINTS.get(name)
    how = (f"write it as {hint}" if hint else
           "write it with the array API namespace of a differentiated argument "
           "(xp = x.__array_namespace__())")
    return TypeError(f"numpy.{name} has no array API counterpart that xpdiff can differentiate "
                     f"on traced arrays; {how}. The NumPy functions that do run on traced arrays are "
                     f"listed in the docs (NumPy code inside transformations)")


def call_function(ns: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """Run the NumPy function ``func`` through the standard functions of ``ns``.

    >>> import numpy as np, array_api_compat.numpy as ns
    >>> float(call_function(ns, np.std, (np.arange(4.0),), {"ddof": 1}))
    1.2909944487358056
    """
    tr = FUNCTIONS.get(func)
    if tr is None:
        raise _not_covered(func)
    return tr(ns, *args, **kwargs)


def call_ufunc(ns: Any, ufunc: Any, method: str, inputs: tuple, kwargs: dict) -> Any:
    """Run ``ufunc.method(*inputs, **kwargs)`` through the standard functions of ``ns``.

    >>> import numpy as np, array_api_compat.numpy as ns
    >>> call_ufunc(ns, np.add, "reduce", (np.arange(4.0),), {}).tolist()
    6.0
    """
    name = ufunc.__name__
    if method == "__call__":
        std = UFUNCS.get(ufunc)
        if std is None:
            raise _not_covered(ufunc)
        kw = dict(kwargs)
        out = kw.pop("out", None)
        if any(o is not None for o in (out if isinstance(out, tuple) else (out,))):
            raise TypeError(f"numpy.{name}: writing into a NumPy array (out=, or an in-place operator "
                            f"such as `a += x` with `a` a NumPy array and `x` traced) would drop the "
                            f"derivative; write `a = a + x` instead")
        if kw.pop("order", "K") not in ("K", "C", "A"):
            raise TypeError(f"numpy.{name}: order= is not supported on traced arrays")
        _unsupported(name, where=kw.pop("where", True), casting=kw.pop("casting", "same_kind"),
                     subok=kw.pop("subok", True))
        dtype = kw.pop("dtype", None)
        kw.pop("signature", None)
        axes = kw.pop("axes", None) if std in ("matmul", "vecdot") else None
        axis = kw.pop("axis", None) if std == "vecdot" else None
        if kw:
            raise TypeError(f"numpy.{name}: the arguments {sorted(kw)} are not supported on traced arrays")
        if axes is not None:
            raise TypeError(f"numpy.{name}: axes= is not supported on traced arrays; "
                            f"move the axes with xp.moveaxis first")
        if dtype is not None:
            inputs = tuple(ns.astype(ns.asarray(x), _dtype(ns, dtype)) for x in inputs)
        fn = getattr(ns, std)
        return fn(*inputs, axis=axis) if axis is not None else fn(*inputs)
    std = UFUNC_METHODS.get((ufunc, method))
    if std is None:
        alt = {"outer": "broadcasting (x[:, None] op y[None, :]) or xp.linalg.outer",
               "at": "x[idx] = ... on the traced array", "reduceat": "xp.sum over slices"}.get(method)
        raise TypeError(f"numpy.{name}.{method} has no array API counterpart that xpdiff can "
                        f"differentiate on traced arrays" + (f"; write it with {alt}" if alt else ""))
    kw = dict(kwargs)
    _unsupported(f"{name}.{method}", out=kw.pop("out", None), where=kw.pop("where", True),
                 initial=kw.pop("initial", _NoValue))
    (x,) = inputs
    x = ns.asarray(x)
    axis = kw.pop("axis", 0)
    dtype = kw.pop("dtype", None)
    extra = {"dtype": _dtype(ns, dtype)} if dtype is not None and std in (
        "sum", "prod", "cumulative_sum", "cumulative_prod") else {}
    if method == "reduce":
        return getattr(ns, std)(x, axis=_axis(axis), keepdims=bool(kw.pop("keepdims", False)), **extra)
    if axis is None:
        x, axis = _flat(ns, x), 0
    return getattr(ns, std)(x, axis=axis, **extra)


__all__ = ["FUNCTIONS", "HINTS", "UFUNCS", "UFUNC_METHODS", "call_function", "call_ufunc"]
