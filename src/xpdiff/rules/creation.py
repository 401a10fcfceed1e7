"""Creation functions: constants, made through the backend on the requested device.

The functions that need a backend (``arange``, ``asarray``, ``empty``, ``eye``,
``from_dlpack``, ``full``, ``linspace``, ``ones``, ``zeros``) are bound to one by
:func:`backend_creation`, which :mod:`xpdiff.namespaces` calls per namespace.
Created inside a transformation, an array is a constant of that transformation
(lifted onto it by ``const``), so ``out = xp.zeros(...); out[1:] = traced`` works.

``meshgrid`` works on its input arrays (traced or not) and is an ordinary
namespace function; ``*_like``, ``tril`` and ``triu`` are registered with the
chapters that own their primitives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import create, raw_namespace
from ..tracer import Tracer
from ._families import export
from .manipulation import astype, broadcast_to, reshape, stack

CREATION = ["arange", "asarray", "empty", "eye", "from_dlpack", "full", "linspace", "ones",
            "zeros"]


def _has_tracer(obj: Any) -> bool:
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_has_tracer(o) for o in obj)
    return False


def _leaves(obj: Any) -> list:
    if isinstance(obj, (list, tuple)):
        return [leaf for o in obj for leaf in _leaves(o)]
    return [obj]


def backend_creation(bk: Any, const: Callable[[Any], Any],
                     result_type: Callable[..., Any]) -> dict[str, Callable]:
    """The creation functions of the standard bound to the raw backend namespace ``bk``.

    Args:
        bk: the raw array-API namespace the arrays are created with.
        const: lifts a freshly created array onto the innermost active transformation.
        result_type: the namespace's ``result_type`` (for ``asarray`` of sequences
            holding traced arrays).

    Returns:
        A dict name -> function with the standard's signature.
    """

    def _dev(kw: dict, device: Any) -> dict:
        if device is not None:
            kw["device"] = device
        return kw

    def arange(start, /, stop=None, step=1, *, dtype=None, device=None):
        """Evenly spaced values in ``[start, stop)`` (a constant: no derivative flows from it).

        >>> import xpdiff as xd
        >>> xd.namespace("numpy").arange(3)
        array([0, 1, 2])
        """
        return const(create(bk.arange, start, stop, step, **_dev({"dtype": dtype}, device)))

    def asarray(obj, /, *, dtype=None, device=None, copy=None):
        """Convert ``obj`` to an array.

        A traced array is returned as is (a new traced array for ``copy=True`` or a
        changed ``dtype``; the derivative flows through the cast).  A nested sequence
        holding traced arrays is stacked (differentiable).  Anything else goes to the
        backend's ``asarray`` and is a constant; a dtype outside the standard (strings,
        objects: NumPy makes them) is refused with a ``TypeError``, as array-api-strict
        refuses it.

        >>> import xpdiff as xd
        >>> xd.namespace("numpy").asarray([1.0, 2.0])
        array([1., 2.])
        """
        if isinstance(obj, Tracer):
            return _asarray_traced(obj, dtype, device, copy)
        if _has_tracer(obj):
            if copy is False:
                raise ValueError("asarray: copy=False cannot be honoured for a sequence of "
                                 "arrays (stacking copies); pass copy=None")
            return _stack_nested(obj, dtype, device)
        kw = _dev({"dtype": dtype}, device)
        if copy is not None:
            kw["copy"] = copy
        out = create(bk.asarray, obj, **kw)
        if not bk.isdtype(out.dtype, ("bool", "numeric")):  # strings, objects, dates
            raise TypeError(f"asarray: Unsupported dtype {out.dtype}: the array API standard "
                            f"has booleans and numbers only; convert the values first")
        return const(out)

    def _asarray_traced(x, dtype, device, copy):
        if device is not None and device != x.device:
            x = x.to_device(device)  # raises with the way out
        if dtype is not None and dtype != x.dtype:
            if copy is False:
                raise ValueError(f"asarray: copy=False but converting {x.dtype} to {dtype} "
                                 f"needs a copy; pass copy=None")
            return astype(x, dtype)
        if copy:
            return astype(x, x.dtype, copy=True)
        return x

    def _stack_nested(obj, dtype, device):
        leaves = _leaves(obj)
        like = next(leaf for leaf in leaves if isinstance(leaf, Tracer))
        dt = dtype if dtype is not None else result_type(*leaves)
        dev = device if device is not None else like.device

        def conv(o):
            if isinstance(o, (list, tuple)):
                if not o:
                    raise ValueError("asarray: an empty sequence next to traced arrays has no shape")
                return stack([conv(e) for e in o], axis=0)
            if isinstance(o, Tracer):
                return _asarray_traced(o, dt, dev, None)
            return const(create(bk.asarray, o, dtype=dt, device=dev))

        return conv(obj)

    def empty(shape, *, dtype=None, device=None):
        """An uninitialised array of ``shape`` (a constant)."""
        return const(create(bk.empty, shape, **_dev({"dtype": dtype}, device)))

    def eye(n_rows, n_cols=None, /, *, k=0, dtype=None, device=None):
        """A 2-d array with ones on the ``k``-th diagonal (a constant)."""
        return const(create(bk.eye, n_rows, n_cols, **_dev({"k": k, "dtype": dtype}, device)))

    def from_dlpack(x, /, *, device=None, copy=None):
        """An array from an object supporting DLPack (a constant).

        A traced array refuses to export its data (it would lose its derivative);
        use it directly or ``xpdiff.stop_gradient`` it first.
        """
        kw = _dev({}, device)
        if copy is not None:
            kw["copy"] = copy
        return const(create(bk.from_dlpack, x, **kw))

    def full(shape, fill_value, *, dtype=None, device=None):
        """An array of ``shape`` filled with ``fill_value`` (a constant).

        A traced 0-d ``fill_value`` (an extension of the standard) is broadcast and
        copied, so the derivative flows to it and the result is a new writable array
        (as ``numpy.full`` gives), not a read-only view of ``fill_value``.
        """
        if isinstance(fill_value, Tracer):
            v = _asarray_traced(fill_value, dtype, device, None)
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            return astype(broadcast_to(v, shape), v.dtype, copy=True)
        return const(create(bk.full, shape, fill_value, **_dev({"dtype": dtype}, device)))

    def linspace(start, stop, /, num, *, dtype=None, device=None, endpoint=True):
        """``num`` evenly spaced numbers over ``[start, stop]`` (a constant)."""
        return const(create(bk.linspace, start, stop, num,
                                 **_dev({"dtype": dtype, "endpoint": endpoint}, device)))

    def ones(shape, *, dtype=None, device=None):
        """An array of ones (a constant)."""
        return const(create(bk.ones, shape, **_dev({"dtype": dtype}, device)))

    def zeros(shape, *, dtype=None, device=None):
        """An array of zeros (a constant)."""
        return const(create(bk.zeros, shape, **_dev({"dtype": dtype}, device)))

    fns = [arange, asarray, empty, eye, from_dlpack, full, linspace, ones, zeros]
    return {f.__name__: f for f in fns}


@export
def meshgrid(*arrays, indexing="xy"):
    """Coordinate matrices from one-dimensional coordinate arrays (differentiable).

    Args:
        *arrays: one-dimensional arrays of one dtype.
        indexing: ``"xy"`` (Cartesian: the first two output dims swapped) or ``"ij"``.

    Returns:
        A list of ``len(arrays)`` arrays of rank ``len(arrays)`` (a tuple in the
        namespace of API version 2025.12).

    >>> import numpy as np, xpdiff as xd
    >>> X, Y = xd.numpy.meshgrid(np.arange(3), np.arange(2))
    >>> X.shape
    (2, 3)
    """
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise ValueError(f"meshgrid: argument {i} has {a.ndim} dims; pass 1-d arrays")
    if not any(isinstance(a, Tracer) for a in arrays):
        if not arrays:
            return []
        return list(raw_namespace(arrays[0]).meshgrid(*arrays, indexing=indexing))
    n = len(arrays)
    shape = [a.shape[0] for a in arrays]
    pos = list(range(n))
    if indexing == "xy" and n > 1:
        shape[0], shape[1] = shape[1], shape[0]
        pos[0], pos[1] = 1, 0
    out = []
    for a, p in zip(arrays, pos):
        s = [1] * n
        s[p] = a.shape[0]
        out.append(broadcast_to(reshape(a, tuple(s)), tuple(shape)))
    return out


__all__ = ["CREATION", "backend_creation", "meshgrid"]
