"""xpdiff's array-API namespace, bound to a backend.

The functions are backend-agnostic (they dispatch on their arguments through
``bind``); a :class:`Namespace` adds what needs a backend: creation functions,
dtypes, constants and the inspection API.  ``x.__array_namespace__()`` of a
traced array returns the namespace of its backend, so array-API code asks its
arrays for their namespace and runs unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from . import _core
from ._array import Tracer
from ._backend import backend_namespace, is_array, namespace_of
from .rules import EXPORTS
from .rules.creation import CREATION
from .rules.indexing import _getitem_fn as _getitem
from .rules.indexing import _setitem_fn as _setitem
from .rules.indexing import select as _select
from .rules.manipulation import stop_gradient

globals().update({n: f for n, f in EXPORTS.items() if "." not in n})

_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64", "complex64", "complex128"]
_CONSTANTS = ["e", "inf", "nan", "newaxis", "pi"]
_INSPECT = ["can_cast", "finfo", "iinfo", "isdtype", "__array_namespace_info__"]


def _lift_constant(value: Any, like: Tracer | None = None) -> Any:
    """Make a freshly created constant a tracer of the innermost active transformation
    (of ``like``'s transformation when given), so in-place updates on it can be traced."""
    from ._dataview import DataTrace

    if like is not None:
        return like._main.trace.lift(value)
    for main in reversed(_core._STACK):
        if not isinstance(main.trace, DataTrace):
            return main.trace.lift(value)
    return value


def _creation(bk: Any, name: str):
    raw = getattr(bk, name)

    def fn(*args: Any, **kwargs: Any) -> Any:
        if name == "asarray" and args and isinstance(args[0], Tracer):
            x = args[0]
            dtype = kwargs.get("dtype")
            return x if dtype is None or dtype == x.dtype else EXPORTS["astype"](x, dtype)
        out = raw(*args, **kwargs)
        if not _core._STACK:
            return out
        if isinstance(out, (list, tuple)):
            return type(out)(_lift_constant(o) for o in out)
        return _lift_constant(out)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}`` of the backend (a constant: no derivative flows from it)."
    return fn


def _result_type(bk: Any):
    def result_type(*arrays_and_dtypes: Any) -> Any:
        return bk.result_type(*[a.dtype if isinstance(a, Tracer) else a for a in arrays_and_dtypes])

    return result_type


class Namespace(SimpleNamespace):
    """The array-API namespace of xpdiff over one backend (see :func:`xpdiff.namespace`)."""

    def __repr__(self) -> str:
        return f"<xpdiff namespace over {self._backend.__name__}>"


_CACHE: dict[tuple[int, str | None], Namespace] = {}


def namespace_for(bk: Any, api_version: str | None = None) -> Namespace:
    """xpdiff's namespace over the raw backend namespace ``bk``."""
    key = (id(bk), api_version)
    ns = _CACHE.get(key)
    if ns is None:
        ns = Namespace(**{n: f for n, f in EXPORTS.items() if "." not in n and not n.startswith("_")})
        for dotted, f in EXPORTS.items():  # extension submodules: linalg, fft, special
            if "." in dotted:
                sub, fname = dotted.split(".", 1)
                if not hasattr(ns, sub):
                    setattr(ns, sub, SimpleNamespace())
                setattr(getattr(ns, sub), fname, f)
        ns._backend = bk
        ns.__array_api_version__ = api_version or "2024.12"
        for n in CREATION:
            if hasattr(bk, n):
                setattr(ns, n, _creation(bk, n))
        for n in _DTYPES + _CONSTANTS + _INSPECT:
            if hasattr(bk, n):
                setattr(ns, n, getattr(bk, n))
        ns.result_type = _result_type(bk)
        ns.stop_gradient = stop_gradient
        _CACHE[key] = ns
    return ns


def namespace_for_values(vals: Any) -> Namespace:
    """The namespace for rules applied to ``vals`` (the backend of the first array)."""
    for v in vals:
        if isinstance(v, Tracer):
            return namespace_for(v._backend())
        if is_array(v):
            return namespace_for(namespace_of(v))
    raise TypeError("no array among the operands")


def namespace(backend: str | None = None) -> Namespace:
    """xpdiff's namespace for creating arrays on a backend.

    Args:
        backend: ``"numpy"``, ``"cupy"``, ``"array_api_strict"``, ``"torch"`` or
            ``"jax"``; ``None`` reads ``$XPDIFF_BACKEND`` (default ``"numpy"``).

    Returns:
        The namespace; its functions also accept traced arrays.

    >>> import xpdiff as xd
    >>> xp = xd.namespace("numpy")
    >>> xp.sin(xp.zeros(2))
    array([0., 0.])
    """
    return namespace_for(backend_namespace(backend))


__all__ = ["Namespace", "namespace", "namespace_for", "namespace_for_values", "stop_gradient",
           "_getitem", "_setitem", "_select"]
