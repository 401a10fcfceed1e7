"""xpdiff's array-API namespace, bound to a backend.

The functions are backend-agnostic (they dispatch on their arguments through
``bind``); a :class:`Namespace` adds what needs a backend: creation functions,
dtypes, constants and the inspection API.  ``x.__array_namespace__()`` of a
traced array returns the namespace of its backend, so array-API code asks its
arrays for their namespace and runs unchanged.

A namespace is built per backend and per API version (``"2023.12"``,
``"2024.12"`` (the default) or ``"2025.12"``): it holds exactly the standard's
names for that version (names newer than the version are left out), the
extension submodules ``linalg`` and ``fft``, xpdiff's ``special`` submodule and
one extra public name, ``stop_gradient``.  See docs/namespace.md.

Layer: namespaces (above ``xpdiff.rules``).  May import: ``xpdiff.rules`` and
everything below it.  At import it fills the slots of the layers below: the
namespace rules receive (``xpdiff.core.register_rules_namespace``) and the
operators of traced arrays (``xpdiff.tracer.install``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from .. import tracer
from ..backend import backend_namespace, canonical_name, default_backend, is_array, parse_device
from ..core import broadcast_shapes, lift_constant, register_rules_namespace
from ..rules import EXPORTS
from ..rules.creation import backend_creation
from ..rules.indexing import _getitem_fn, _setitem_fn
from ..rules.manipulation import stop_gradient
from ..tracer import Tracer

SUPPORTED_VERSIONS = ("2023.12", "2024.12", "2025.12")
DEFAULT_VERSION = "2024.12"

# names of the standard that are newer than 2023.12, with the version adding them
# (extension functions dotted)
INTRODUCED = {
    "count_nonzero": "2024.12", "cumulative_prod": "2024.12", "diff": "2024.12",
    "nextafter": "2024.12", "reciprocal": "2024.12", "take_along_axis": "2024.12",
    "broadcast_shapes": "2025.12", "isin": "2025.12",
    "linalg.eig": "2025.12", "linalg.eigvals": "2025.12",
}
EXTENSIONS = ("linalg", "fft", "special")
EXTRAS = ("stop_gradient",)  # xpdiff's own public names beside the standard's

_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64", "complex64", "complex128"]
_CONSTANTS = ["e", "inf", "nan", "newaxis", "pi"]


def _dtype_of(x: Any) -> Any:
    """The dtype of an array (traced or raw); anything else is returned as is."""
    if isinstance(x, Tracer) or (not isinstance(x, type) and is_array(x)):
        return x.dtype
    return x


# --- data type functions -------------------------------------------------------------------

@dataclass(frozen=True)
class finfo_object:
    """Machine limits of a floating-point dtype (the standard's ``finfo`` object).

    ``dtype`` is the real floating dtype (``float32`` for ``complex64``).
    """

    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: Any


@dataclass(frozen=True)
class iinfo_object:
    """Machine limits of an integer dtype (the standard's ``iinfo`` object)."""

    bits: int
    max: int
    min: int
    dtype: Any


def _dtype_functions(bk: Any) -> dict[str, Any]:
    info = bk.__array_namespace_info__() if hasattr(bk, "__array_namespace_info__") else None

    def _default(kind: str, device: Any) -> Any:
        if info is not None:
            return info.default_dtypes(device=device)[kind]
        return {"integral": bk.int64, "real floating": bk.float64,
                "complex floating": bk.complex128}[kind]

    def can_cast(from_, to, /):
        """Whether ``from_`` (a dtype or an array, traced or not) can be cast to ``to``
        by the standard's type promotion rules."""
        return bool(bk.can_cast(_dtype_of(from_), to))

    def finfo(type, /):
        """Machine limits of a floating-point dtype or of an array's dtype.

        >>> import xpdiff as xd
        >>> xp = xd.namespace("numpy")
        >>> xp.finfo(xp.float32).bits
        32
        """
        f = bk.finfo(_dtype_of(type))
        return finfo_object(int(f.bits), float(f.eps), float(f.max), float(f.min),
                            float(f.smallest_normal), f.dtype)

    def iinfo(type, /):
        """Machine limits of an integer dtype or of an array's dtype."""
        i = bk.iinfo(_dtype_of(type))
        return iinfo_object(int(i.bits), int(i.max), int(i.min), i.dtype)

    def isdtype(dtype, kind):
        """Whether ``dtype`` is of ``kind`` (a dtype, a kind name or a tuple of them)."""
        return bool(bk.isdtype(dtype, kind))

    def result_type(*arrays_and_dtypes):
        """The dtype the standard's promotion rules give for arrays (traced or not),
        dtypes and Python scalars (scalars are weak: they take the arrays' dtype when
        their kind allows it, else the default dtype of their kind).

        >>> import xpdiff as xd
        >>> xp = xd.namespace("numpy")
        >>> xp.result_type(xp.float32, 1.0, xp.ones(2, dtype=xp.float32))
        dtype('float32')
        """
        dtypes, scalars, device = [], [], None
        for a in arrays_and_dtypes:
            if isinstance(a, (bool, int, float, complex)):
                scalars.append(a)
            else:
                dt = _dtype_of(a)
                if device is None and dt is not a:
                    device = a.device
                dtypes.append(dt)
        if not dtypes:
            raise ValueError("result_type: at least one argument must be an array or a dtype "
                             "(Python scalars alone have no dtype)")
        dt = bk.result_type(*dtypes)
        for s in scalars:
            if isinstance(s, bool):
                continue
            if isinstance(s, int):
                if bk.isdtype(dt, "bool"):
                    dt = _default("integral", device)
            elif isinstance(s, float):
                if bk.isdtype(dt, ("bool", "integral")):
                    dt = _default("real floating", device)
            elif bk.isdtype(dt, ("bool", "integral")):
                dt = _default("complex floating", device)
            elif bk.isdtype(dt, "real floating"):
                dt = bk.complex64 if dt == bk.float32 else bk.complex128
        return dt

    fns = [can_cast, finfo, iinfo, isdtype, result_type]
    return {f.__name__: f for f in fns}


# --- inspection ------------------------------------------------------------------------------

class Info:
    """The inspection namespace (``xp.__array_namespace_info__()``): the backend's,
    with the standard's signatures and container types."""

    def __init__(self, bk: Any, version: str):
        self._info = bk.__array_namespace_info__()
        self._version = version

    def __repr__(self) -> str:
        return f"<xpdiff inspection namespace over {self._info!r}>"

    def capabilities(self):
        """The backend's capabilities (boolean indexing, data-dependent shapes, max dims)."""
        return dict(self._info.capabilities())

    def default_device(self):
        """The backend's default device."""
        return self._info.default_device()

    def default_dtypes(self, *, device=None):
        """Default dtypes by kind (``"real floating"``, ``"complex floating"``,
        ``"integral"``, ``"indexing"``)."""
        return dict(self._info.default_dtypes(device=device))

    def devices(self):
        """The devices of the backend (a list; a tuple from API version 2025.12)."""
        d = self._info.devices()
        return tuple(d) if self._version >= "2025.12" else list(d)

    def dtypes(self, *, device=None, kind=None):
        """The supported dtypes by name (optionally of one ``kind``)."""
        return dict(self._info.dtypes(device=device, kind=kind))


# --- the namespace ---------------------------------------------------------------------------

class Namespace(SimpleNamespace):
    """The array-API namespace of xpdiff over one backend (see :func:`xpdiff.namespace`).

    Namespaces are cached (one per backend and API version) and compare by identity,
    so they are hashable (array-api-compat and SciPy collect namespaces in sets).
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<xpdiff namespace over {self._backend.__name__}, API {self.__array_api_version__}>"


class Extension(SimpleNamespace):
    """An extension submodule of a namespace (``linalg``, ``fft``, ``special``)."""

    def __repr__(self) -> str:
        return f"<xpdiff extension {self._name!r}>"


def _in_version(name: str, version: str) -> bool:
    return INTRODUCED.get(name, "0") <= version


def _sequence_type(fn: Any, version: str) -> Any:
    """``fn`` returning a list (before 2025.12) or a tuple (from 2025.12) of arrays."""
    kind = tuple if version >= "2025.12" else list

    def wrapped(*arrays, **kw):
        return kind(fn(*arrays, **kw))

    wrapped.__name__ = wrapped.__qualname__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    wrapped.__wrapped__ = fn
    return wrapped


_CACHE: dict[tuple[int, str, bool], Namespace] = {}


def _build(bk: Any, version: str, lift: bool = True) -> Namespace:
    ns = Namespace(**{n: f for n, f in EXPORTS.items()
                      if "." not in n and not n.startswith("_") and _in_version(n, version)})
    for sub in EXTENSIONS:
        setattr(ns, sub, Extension(_name=sub))
    for dotted, f in EXPORTS.items():
        if "." in dotted and _in_version(dotted, version):
            sub, fname = dotted.split(".", 1)
            if sub not in EXTENSIONS:
                raise ValueError(f"export {dotted!r}: unknown extension {sub!r}")
            setattr(getattr(ns, sub), fname, f)
    ns._backend = bk
    ns.__name__ = "xpdiff." + bk.__name__.removeprefix("array_api_compat.")
    ns.__array_api_version__ = version
    dtype_fns = _dtype_functions(bk)
    for n, f in dtype_fns.items():
        setattr(ns, n, f)
    # user code gets constants lifted onto the innermost transformation (so that
    # `out = xp.zeros(...); out[i] = traced` works); rules get raw constants (a rule
    # runs one level down, where lifting onto the innermost trace would be wrong)
    const = lift_constant if lift else (lambda v: v)
    for n, f in backend_creation(bk, const, dtype_fns["result_type"]).items():
        setattr(ns, n, f)
    for n in _DTYPES + _CONSTANTS:
        if hasattr(bk, n):
            setattr(ns, n, getattr(bk, n))
    if hasattr(bk, "__array_namespace_info__"):
        def __array_namespace_info__():
            return Info(bk, version)

        __array_namespace_info__.__doc__ = "The inspection namespace (devices, dtypes, capabilities)."
        ns.__array_namespace_info__ = __array_namespace_info__
    for n in ("meshgrid", "broadcast_arrays"):
        if hasattr(ns, n):
            setattr(ns, n, _sequence_type(getattr(ns, n), version))
    if _in_version("broadcast_shapes", version):
        ns.broadcast_shapes = broadcast_shapes
    ns.stop_gradient = stop_gradient
    return ns


def namespace_for(bk: Any, api_version: str | None = None, *, rules: bool = False) -> Namespace:
    """xpdiff's namespace over the raw backend namespace ``bk`` for ``api_version``
    (default ``"2024.12"``); ``rules=True`` gives the variant rules receive, whose
    creation functions return raw constants."""
    version = DEFAULT_VERSION if api_version is None else api_version
    key = (id(bk), version, rules)
    ns = _CACHE.get(key)
    if ns is None:
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"__array_namespace__: api_version={api_version!r} is not supported; "
                             f"choose one of {SUPPORTED_VERSIONS} (or None for {DEFAULT_VERSION})")
        ns = _CACHE[key] = _build(bk, version, lift=not rules)
    return ns


register_rules_namespace(lambda bk: namespace_for(bk, rules=True))
tracer.install({**{n: f for n, f in EXPORTS.items() if "." not in n},
                "getitem": _getitem_fn, "setitem": _setitem_fn, "lift_constant": lift_constant,
                "namespace_for": namespace_for})


_DEVICE_CREATION = ("arange", "asarray", "empty", "eye", "full", "linspace", "ones", "zeros")
_DEVICE_CACHE: dict[tuple, Namespace] = {}


def namespace(backend: str | None = None, *, device: Any = None,
              api_version: str | None = None) -> Namespace:
    """xpdiff's namespace for creating arrays on a backend and device.

    Args:
        backend: ``"numpy"``, ``"cupy"``, ``"array_api_strict"`` (alias ``"strict"``),
            ``"torch"`` or ``"jax"``; ``None`` reads ``$XPDIFF_BACKEND`` (default
            ``"numpy"``).
        device: the device its creation functions use when given no ``device=``
            (a device object, or a name such as ``"cuda:0"``, ``"device1"``,
            ``"cpu"``); ``None``: the backend's default device.
        api_version: the array API version (``"2023.12"``, ``"2024.12"``,
            ``"2025.12"``); ``None`` means ``"2024.12"``.

    Returns:
        The namespace; its functions also accept traced arrays.

    >>> import xpdiff as xd
    >>> xp = xd.namespace("numpy")
    >>> xp.sin(xp.zeros(2))
    array([0., 0.])
    >>> xd.namespace("array_api_strict", device="device1").zeros(2).device
    array_api_strict.Device('device1')
    """
    name = canonical_name(backend) if backend is not None else default_backend()
    base = namespace_for(backend_namespace(name), api_version)
    if device is None:
        return base
    dev = parse_device(name, device)
    key = (id(base), repr(dev))
    ns = _DEVICE_CACHE.get(key)
    if ns is None:
        ns = Namespace(**vars(base))
        for n in _DEVICE_CREATION:
            f = getattr(base, n, None)
            if f is not None:
                setattr(ns, n, _on_device(f, dev))
        ns._device = dev
        _DEVICE_CACHE[key] = ns
    return ns


def _on_device(fn: Any, dev: Any) -> Any:
    def created(*args: Any, device: Any = None, **kwargs: Any) -> Any:
        return fn(*args, device=dev if device is None else device, **kwargs)

    created.__name__ = created.__qualname__ = fn.__name__
    created.__doc__ = fn.__doc__
    created.__wrapped__ = fn
    return created


__all__ = ["DEFAULT_VERSION", "EXTENSIONS", "EXTRAS", "INTRODUCED", "Info", "Namespace",
           "SUPPORTED_VERSIONS", "namespace", "namespace_for"]
