"""The backend layer: the only module that knows concrete array libraries.

Layer: bottom (``xpdiff.backend``).  May import: the standard library,
``array_api_compat`` and the backends themselves (optional ones lazily, inside
functions); nothing of xpdiff.  It knows nothing of traced arrays: every function
here takes raw backend arrays or namespaces.

Everything else in xpdiff sees a backend as an array-API namespace obtained here
(above the core, through ``xpdiff.core.raw_namespace``).
Type checks go through ``array_api_compat`` (its ``is_*_array`` helpers look in
``sys.modules`` first), so CuPy, PyTorch and JAX are never imported unless their
arrays are in use or their backend is asked for by name.

Backends by name: ``numpy`` (default), ``cupy``, ``array_api_strict`` (alias
``strict``), ``torch`` and ``jax``.  ``$XPDIFF_BACKEND`` names the default one.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as _np  # the default backend (a dependency); only for NumPy quirks

ENV_VAR = "XPDIFF_BACKEND"
DEFAULT_BACKEND = "numpy"

_NS_CACHE: dict[type, Any] = {}


def namespace_of(x: Any) -> Any:
    """The array-API namespace of a raw backend array (cached per array type)."""
    t = type(x)
    ns = _NS_CACHE.get(t)
    if ns is None:
        try:
            ns = array_api_compat.array_namespace(x)
        except TypeError:
            raise TypeError(
                f"xpdiff: expected an array of a supported backend (NumPy, CuPy, "
                f"array-api-strict, ...), got {t.__name__}; convert it with "
                f"xpdiff.namespace(...).asarray(...)"
            ) from None
        _NS_CACHE[t] = ns
    return ns


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is a lazy, chunked array (a Dask array): it holds a graph, not data,
    and the transforms hand it to :mod:`xpdiff.scaleout` instead of tracing through it."""
    return array_api_compat.is_dask_array(x)


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of a supported backend (not a Python scalar)."""
    if type(x) in _NS_CACHE:
        return True
    if isinstance(x, (bool, int, float, complex)) or x is None:
        return False
    return array_api_compat.is_array_api_obj(x)


def fix_result(x: Any) -> Any:
    """Turn NumPy scalars (returned by some NumPy reductions) into 0-d arrays."""
    if isinstance(x, _np.generic):
        return _np.asarray(x)
    return x


OUTER_BLAS_MIN = 1 << 13  # result elements from which NumPy's BLAS product beats multiply
_BLAS_TYPES = frozenset("fdFD")  # float32, float64, complex64, complex128


def outer_product(bk: Any, a: Any, b: Any) -> Any:
    """``a @ b`` for stacks with a contracted size of 1, ``(..., M, 1) @ (..., 1, N)``.

    NumPy's broadcast multiply (and ``einsum``) runs inner loops only ``N`` long, and its
    ``matmul`` with a unit inner dim is slower still; a BLAS product with the inner dim
    padded to 2 with zeros writes the same values 2x to 3.5x faster from about 8192
    result elements (float32 ``(128, 64, 1) @ (128, 1, 64)``: 36 us against 122 us for
    ``einsum``, 126 us for multiply).  Below that, and on other libraries, a broadcast
    multiply.  (A product that is exactly zero comes out as ``+0.0``, as from any BLAS
    product.)"""
    if (type(a) is _np.ndarray and type(b) is _np.ndarray and a.dtype.char in _BLAS_TYPES
            and b.dtype.char in _BLAS_TYPES
            and max(a.size * b.shape[-1], b.size * a.shape[-2]) >= OUTER_BLAS_MIN):
        a2 = _np.concatenate((a, _np.zeros(a.shape, a.dtype)), axis=-1)
        b2 = _np.concatenate((b, _np.zeros(b.shape, b.dtype)), axis=-2)
        return _np.matmul(a2, b2)
    return bk.multiply(a, b)


def device_of(x: Any) -> Any:
    """The device of a raw backend array."""
    return array_api_compat.device(x)


def device_key(dev: Any) -> Any:
    """A hashable key for a device, for caches keyed by device: the device itself when it
    is hashable, else its type and spelling (CuPy's ``cupy.cuda.Device`` is unhashable;
    two CuPy devices with one id are one device).

    >>> device_key("cpu")
    'cpu'
    >>> class Unhashable:
    ...     __hash__ = None
    ...     def __repr__(self): return "<Device 1>"
    >>> device_key(Unhashable())[1]
    '<Device 1>'
    """
    try:
        hash(dev)
    except TypeError:
        ident = getattr(dev, "id", None)
        return (type(dev), ident if isinstance(ident, int) else repr(dev))
    return dev


# --- backends by name ---------------------------------------------------------------------

_BACKENDS = {
    "numpy": "array_api_compat.numpy",
    "cupy": "array_api_compat.cupy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "jax": "jax.numpy",
}
_ALIASES = {"strict": "array_api_strict", "array-api-strict": "array_api_strict"}
# the distribution that provides each backend (what `xpdiff info` looks for, what to install)
_PROVIDER = {"numpy": "numpy", "cupy": "cupy", "array_api_strict": "array_api_strict",
             "torch": "torch", "jax": "jax"}
_INSTALL = {"numpy": "`pip install numpy`",
            "cupy": '`pip install -e ".[cupy]"` in a checkout of xpdiff (CuPy for CUDA 12; '
                    '".[cupy13]" for CUDA 13)',
            "array_api_strict": "`pip install array-api-strict`", "torch": "`pip install torch`",
            "jax": "`pip install jax`"}

BACKENDS = tuple(_BACKENDS)


def canonical_name(name: str, where: str = "xpdiff.namespace") -> str:
    """The canonical backend name for ``name`` (accepts the aliases ``strict``,
    ``array-api-strict``); raises ``ValueError`` naming the choices otherwise."""
    name = _ALIASES.get(name, name)
    if name not in _BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; choose one of {sorted(_BACKENDS)} "
                         f"(or the alias 'strict')")
    return name


def default_backend() -> str:
    """The default backend's name: ``$XPDIFF_BACKEND`` if set, else ``"numpy"``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if not env:
        return DEFAULT_BACKEND
    return canonical_name(env, f"${ENV_VAR}")


def backend_namespace(name: str | None = None) -> Any:
    """The raw namespace of a backend by name; ``None`` means ``$XPDIFF_BACKEND`` or numpy."""
    name = default_backend() if name is None else canonical_name(name)
    try:
        if name == "cupy" and name not in _USABLE:  # CuPy imports without a GPU: check first
            _require_cuda_device(importlib.import_module("cupy"))
            _USABLE.add(name)
        return importlib.import_module(_BACKENDS[name])
    except BackendUnavailableError:
        raise
    except ImportError as e:
        raise BackendUnavailableError(
            f"xpdiff.namespace: backend {name!r} is not installed ({e}); "
            f"install it, e.g. {_INSTALL[name]}"
        ) from None


class BackendUnavailableError(ImportError):
    """A backend that is not installed, or installed without what it needs to run
    (public as ``xpdiff.BackendUnavailableError``)."""

    __module__ = "xpdiff"


_USABLE: set = set()  # backends whose runtime check passed


def _require_cuda_device(cupy: Any) -> None:
    """CuPy imports without a GPU; its first array then fails with a raw CUDA error.
    Say so once, in one line, when the backend is asked for."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        why = "no CUDA device" if count == 0 else ""
    except Exception as e:  # CUDARuntimeError, a missing driver library, ...
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if why:
        raise BackendUnavailableError(
            f"xpdiff.namespace: CuPy is installed but no usable CUDA device or driver was found "
            f"({why}); use another backend (numpy) or run on a machine with an NVIDIA GPU")


def backend_name(obj: Any) -> str:
    """The backend name of a raw namespace or of a raw array (``"numpy"``, ``"cupy"``, ...).

    Namespaces that xpdiff does not know by name are named by their module.
    """
    ns = namespace_of(obj) if is_array(obj) else obj
    c = array_api_compat
    for name, test in (("numpy", c.is_numpy_namespace), ("cupy", c.is_cupy_namespace),
                       ("torch", c.is_torch_namespace), ("jax", c.is_jax_namespace),
                       ("array_api_strict", c.is_array_api_strict_namespace)):
        if test(ns):
            return name
    return getattr(ns, "__name__", type(ns).__name__)


def available_backends() -> list[str]:
    """Names of the backends installed here (found without importing them)."""
    return [name for name in _BACKENDS if importlib.util.find_spec(_PROVIDER[name]) is not None]


def devices(name: str) -> list[Any]:
    """The devices of an installed backend (imports it); ``[]`` when it has none usable.

    NumPy: ``["cpu"]``; array-api-strict: its simulated devices (``CPU_DEVICE``,
    ``device1``, ...); CuPy: one ``cupy.cuda.Device`` per GPU; torch: ``cpu`` and
    ``cuda:i`` per GPU; JAX: ``jax.devices()``.
    """
    name = canonical_name(name, "xpdiff.devices")
    if name == "cupy":
        try:
            import cupy

            return [cupy.cuda.Device(i) for i in range(cupy.cuda.runtime.getDeviceCount())]
        except Exception:  # no driver, no GPU: the backend is installed but unusable
            return []
    if name == "torch":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.device("cpu")] + [torch.device("cuda", i) for i in range(n)]
    if name == "jax":
        import jax

        return list(jax.devices())
    info = backend_namespace(name).__array_namespace_info__()
    return list(info.devices())


def default_device(name: str) -> Any:
    """The device arrays of backend ``name`` are created on by default."""
    bk = backend_namespace(name)
    return bk.__array_namespace_info__().default_device() if hasattr(
        bk, "__array_namespace_info__") else None


def parse_device(name: str, spec: Any) -> Any:
    """A device object of backend ``name`` from a user's spelling of it.

    ``spec`` may be a device object, or a string matching one of :func:`devices`
    (``"cpu"``, ``"device1"``, ``"CPU_DEVICE"``, ``"cuda:0"``, ``"0"`` for the first
    GPU of CuPy, ``"cuda"`` for torch's current GPU, ...). ``None`` gives ``None``
    (the backend's default device).
    """
    name = canonical_name(name, "xpdiff: device")
    if spec is None or not isinstance(spec, (str, int)):
        return spec
    s = str(spec).strip()
    found = devices(name)
    for d in found:
        if s in (str(d), repr(d)) or s == _short(d):
            return d
    for d in found:  # "cpu" for JAX's "cpu:0", "cuda" for the first GPU
        if _short(d).startswith(s + ":"):
            return d
    if name == "torch":
        import torch

        try:
            d = torch.device(s)
        except RuntimeError:
            d = None
        if d is not None and (d.type == "cpu" or (d.type == "cuda" and torch.cuda.is_available())):
            return d
    if name == "cupy" and s.removeprefix("cuda:").removeprefix("gpu:").isdigit():
        i = int(s.removeprefix("cuda:").removeprefix("gpu:"))
        if i < len(found):
            return found[i]
    choices = ", ".join(_short(d) for d in found) or "none found"
    raise ValueError(f"xpdiff: backend {name!r} has no device {spec!r}; its devices here: {choices}")


def _short(d: Any) -> str:
    """A device's short spelling: ``device1``, ``cpu``, ``cuda:0``, ``TFRT_CPU_0``..."""
    if type(d).__module__.startswith("array_api_strict"):
        return repr(d).split("'")[1]
    if type(d).__module__.startswith("cupy"):
        return f"cuda:{d.id}"
    return str(d)


def device_label(d: Any) -> str:
    """A short, readable name of a device object, for messages and ``xpdiff info``."""
    return _short(d)


def same_device(a: Any, b: Any) -> bool:
    """Whether two device objects of one backend are the same device."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # exotic device objects without equality: compare their spelling
        return str(a) == str(b)


# --- native kernels ---------------------------------------------------------------------------

def _polygamma(mod: Any) -> Callable:
    def kernel(x: Any, *, n: int) -> Any:
        out = mod.psi(x) if n == 0 else mod.polygamma(n, x)
        return out if out.dtype == x.dtype else out.astype(x.dtype)  # SciPy's is float64

    return kernel


def _polygamma_n(mod: Any) -> Callable:
    def kernel(n: Any, x: Any) -> Any:  # an array of orders, broadcast against x
        out = mod.polygamma(n, x)
        return out if out.dtype == x.dtype else out.astype(x.dtype)

    return kernel


def _gammaln(mod: Any) -> Callable:
    def kernel(x: Any) -> Any:
        # SciPy's (and CuPy's) gammaln give inf for subnormal x, where log|Gamma(x)| = -log|x|
        # (to rounding), and -inf at -inf, where it has no limit; the composite gives -log|x|
        # and inf: the same values on every backend
        out = mod.gammaln(x)
        xp = array_api_compat.array_namespace(x)
        small = (xp.abs(x) < xp.finfo(x.dtype).smallest_normal) & (x != 0)
        out = xp.where(small, -xp.log(xp.abs(xp.where(small, x, 1.0))), out)
        return xp.where(xp.isinf(x), xp.abs(x), out)

    return kernel


#: Primitive name -> backend name -> ``(module, attribute)`` of a native kernel with the
#: primitive's calling convention (raw arrays, then the primitive's keyword parameters), or a
#: ``module -> kernel`` factory.  A primitive whose impl asks :func:`native_kernel` runs it
#: where the backend has one (one kernel instead of a composite of standard functions: the
#: special functions' composites make 150 to 280 backend calls each); its derivative rule is
#: written once, on top, either way.  Backends without an entry use the composite.
NATIVE_KERNELS: dict[str, dict[str, tuple[str, Any]]] = {
    name: {"numpy": ("scipy.special", attr), "cupy": ("cupyx.scipy.special", attr)}
    for name, attr in [("erf", "erf"), ("erfc", "erfc"), ("ndtr", "ndtr"),
                       ("log_ndtr", "log_ndtr"), ("expit", "expit"), ("logit", "logit"),
                       ("gammaln", _gammaln), ("polygamma", _polygamma),
                       ("polygamma_n", _polygamma_n)]
}
_NATIVE: dict[tuple[str, int], Any] = {}


def native_kernel(name: str, bk: Any) -> Callable | None:
    """The native kernel of primitive ``name`` for raw namespace ``bk`` (see
    :data:`NATIVE_KERNELS`), or ``None`` (no entry, or its library is not installed);
    looked up once per primitive and namespace.

    >>> import array_api_strict
    >>> native_kernel("gammaln", array_api_strict) is None
    True
    """
    key = (name, id(bk))
    if key in _NATIVE:
        return _NATIVE[key]
    kernel = None
    entry = NATIVE_KERNELS.get(name, {}).get(backend_name(bk))
    if entry is not None:
        try:
            mod = importlib.import_module(entry[0])
        except ImportError:
            mod = None
        if mod is not None:
            kernel = entry[1](mod) if callable(entry[1]) else getattr(mod, entry[1], None)
    _NATIVE[key] = kernel
    return kernel


def with_native(name: str, composite: Callable) -> Callable:
    """A primitive impl ``(bk, *arrays, **params)`` that runs the native kernel of ``name``
    for ``bk`` where there is one, else ``composite``."""
    def impl(bk: Any, *args: Any, **params: Any) -> Any:
        kernel = _NATIVE.get((name, id(bk)), _UNSET)
        if kernel is _UNSET:
            kernel = native_kernel(name, bk)
        if kernel is None:
            return composite(bk, *args, **params)
        return kernel(*args, **params)

    impl.__name__ = impl.__qualname__ = f"{name}_impl"
    return impl


_UNSET = object()


# --- the device a transformation runs under ---------------------------------------------------

def _cupy_scope(dev: Any) -> Any:
    return dev  # a cupy.cuda.Device is itself the context that makes it current


def _torch_scope(dev: Any) -> Any:
    if getattr(dev, "type", None) != "cuda":
        return contextlib.nullcontext()
    return sys.modules["torch"].cuda.device(dev)


#: Backend name -> ``device -> context manager`` that makes ``device`` the current one for
#: the library (where new arrays and kernels go by default). Backends without an entry (NumPy,
#: array-api-strict, JAX: every call names its device or follows its operands) need none.
DEVICE_SCOPES: dict[str, Callable[[Any], Any]] = {"cupy": _cupy_scope, "torch": _torch_scope}
#: The module each entry needs loaded (no array of it can exist otherwise).
_SCOPE_MODULES = {"cupy": "cupy", "torch": "torch", "array_api_strict": "array_api_strict"}


def device_scope_needed() -> bool:
    """Whether any backend with a :data:`DEVICE_SCOPES` entry is loaded (cheap: lets callers
    skip looking for the inputs' device when none could need it)."""
    mods = sys.modules
    return any(_SCOPE_MODULES.get(name, name) in mods for name in DEVICE_SCOPES)


def device_scope(bk: Any, device: Any) -> Any:
    """The context a transformation of arrays of raw namespace ``bk`` on ``device`` runs
    under: the device made current (``with device:`` for CuPy, ``torch.cuda.device`` for
    torch CUDA tensors), so what the backend creates without a ``device=`` lands there
    too; a no-op context for other backends.

    >>> import array_api_compat.numpy as cnp
    >>> with device_scope(cnp, "cpu"):
    ...     pass
    """
    make = DEVICE_SCOPES.get(backend_name(bk))
    return contextlib.nullcontext() if make is None else make(device)


def default_float_dtype(bk: Any, device: Any = None) -> Any:
    """The default real floating dtype of raw namespace ``bk`` on ``device`` (float64 for
    NumPy and CuPy, float32 for torch and JAX without x64).

    >>> import array_api_compat.numpy as cnp
    >>> default_float_dtype(cnp)
    dtype('float64')
    """
    info = getattr(bk, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device)["real floating"]
        except Exception:  # an info object without default_dtypes
            pass
    return bk.float64


# --- free memory ------------------------------------------------------------------------------

HOST_MEMORY_TTL = 0.2  # seconds a reading of the host's available memory is reused
_host_reading: tuple[float, int | None] = (-math.inf, None)  # (monotonic time, bytes)


def _host_available() -> int | None:
    """The host's available memory, read at most once per ``HOST_MEMORY_TTL``: psutil's
    reading parses ``/proc/meminfo`` (about 25 us, more than a small transformation's
    arithmetic), and a memory budget does not need a fresher figure."""
    global _host_reading
    now = time.monotonic()
    stamp, value = _host_reading
    if now - stamp < HOST_MEMORY_TTL:
        return value
    value = _read_host_available()
    _host_reading = (now, value)
    return value


def _read_host_available() -> int | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cupy_free(cupy: Any, dev: Any) -> int:
    # memGetInfo and the pool's methods answer for the *current* device: make x's current
    with dev:
        free = int(cupy.cuda.runtime.memGetInfo()[0])
        pool = cupy.get_default_memory_pool()
        if cupy.cuda.get_allocator() == pool.malloc:  # its cached blocks serve new arrays
            free += int(pool.free_bytes())
    return free


def _torch_free(torch: Any, dev: Any) -> int | None:
    if dev.type != "cuda":
        return _host_available() if dev.type == "cpu" else None
    free = int(torch.cuda.mem_get_info(dev)[0])
    # the caching allocator's reserved but unallocated blocks serve new tensors too
    return free + int(torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))


def _jax_free(dev: Any) -> int | None:
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return _host_available() if getattr(dev, "platform", None) == "cpu" else None


def free_memory(x: Any) -> int | None:
    """Bytes free for new arrays on the device of raw array ``x``, or ``None`` where the
    backend does not say.

    NumPy and array-api-strict: the host's available memory (psutil, else ``sysconf``),
    read at most once per ``HOST_MEMORY_TTL`` seconds.
    CuPy: on ``x``'s device (not the current one), the device's free memory plus the free
    blocks the memory pool has cached (when that pool is the allocator). torch: on a CUDA
    device the free memory plus the caching allocator's reserved but unallocated bytes; on
    the CPU the host's. JAX: the device's ``bytes_limit - bytes_in_use``; the host's on CPU.

    >>> import numpy as np
    >>> free_memory(np.ones(2)) > 0
    True
    """
    kind = type(x).__module__.split(".")[0]
    if kind in ("numpy", "array_api_strict"):
        return _host_available()
    if kind == "cupy":
        return _cupy_free(sys.modules["cupy"], x.device)
    if kind == "torch":
        return _torch_free(sys.modules["torch"], x.device)
    if kind in ("jax", "jaxlib"):
        devs = x.devices() if hasattr(x, "devices") else {x.device}
        return min((f for f in map(_jax_free, devs) if f is not None), default=None)
    return None


# --- host transfers (test helpers and the CLI only; transformations never call these) ---------

@contextlib.contextmanager
def allow_sync() -> Iterator[None]:
    """Let an explicit host transfer run while ``torch.cuda.set_sync_debug_mode("error")``
    is on (a no-op for every other backend, and when torch is not imported)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        yield
        return
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)


def to_host(x: Any) -> _np.ndarray:
    """A NumPy copy of a raw backend array on any device (for tests and the CLI)."""
    c = array_api_compat
    if isinstance(x, _np.ndarray):
        return x
    if c.is_cupy_array(x):
        return x.get()
    if c.is_torch_array(x):
        with allow_sync():
            return x.detach().cpu().numpy()
    if c.is_array_api_strict_namespace(namespace_of(x)):
        import array_api_strict

        return _np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return _np.asarray(x)


def from_host(a: Any, like: Any) -> Any:
    """``a`` (NumPy or nested lists) as an array of ``like``'s backend, dtype and device."""
    return on_device(namespace_of(like), a, like.device, like.dtype)


def on_device(bk: Any, a: Any, device: Any = None, dtype: Any = None) -> Any:
    """``a`` (NumPy or nested lists) as an array of raw namespace ``bk`` on ``device``."""
    kw = {} if device is None else {"device": device}
    if dtype is not None:
        kw["dtype"] = dtype
    a = _np.asarray(a)
    if not a.flags.c_contiguous:  # torch refuses negative strides
        a = a.copy(order="C")
    with allow_sync():
        return bk.asarray(a, **kw)


# --- functional update (immutable backends) -----------------------------------------------------

def set_at(bk: Any, x: Any, key: Any, value: Any) -> Any:
    """A copy of raw array ``x`` with ``x[key] = value`` (JAX arrays are immutable:
    they are updated with ``x.at[key].set(value)``; other backends copy then assign)."""
    if array_api_compat.is_jax_array(x):
        return x.at[key].set(value)
    y = bk.asarray(x, copy=True)
    y[key] = value
    return y


def add_diagonal(bk: Any, x: Any, d: Any, offset: int, inplace: bool = False) -> Any:
    """A copy of ``x`` (``(..., C, N)``) with ``d[..., j]`` added at ``[..., j, offset + j]``
    for ``j < C``: the identity part of a Jacobian added where it is nonzero, without a
    pass over an identity matrix.  NumPy and CuPy copy ``x`` in its own memory layout
    (a transposed tangent stays transposed: no transposing copy) and add along the
    diagonal with integer indices; JAX adds functionally; other backends add a
    diagonal matrix (the standard has no strided diagonal write).  ``inplace``: ``x``
    is the caller's to overwrite (a compiled program's value at its last use, not a
    view of anything), so NumPy and CuPy skip the copy."""
    C = x.shape[-2]
    kind = type(x).__module__.split(".")[0]
    if kind in ("numpy", "cupy"):
        lib = sys.modules[kind]
        out = x if inplace and getattr(x.flags, "writeable", True) else lib.array(x, copy=True, order="K")
        if C == 0:
            return out
        N = x.shape[-1]
        if out.flags.c_contiguous:  # (j, offset + j) is every (N + 1)-th entry of a flat view
            flat = out.reshape(tuple(out.shape[:-2]) + (C * N,))
            flat[..., offset: offset + (C - 1) * (N + 1) + 1: N + 1] += d
        elif out.ndim == 2 and out.flags.f_contiguous:  # the same, in the transpose's order
            flat = out.T.reshape(C * N)
            flat[offset * C: offset * C + (C - 1) * (C + 1) + 1: C + 1] += d
        else:
            j = lib.arange(C)
            out[..., j, j + offset] += d
        return out
    if array_api_compat.is_jax_array(x):
        j = sys.modules["jax.numpy"].arange(C)
        return x.at[..., j, j + offset].add(d)
    N = x.shape[-1]
    eye = bk.eye(C, N, k=offset, dtype=x.dtype, device=x.device)
    return bk.add(x, bk.multiply(eye, bk.expand_dims(d, axis=-1)))


def _strided_view(kind: str, out: Any, shape: tuple, strides: tuple) -> Any:
    """A view of the fresh C-contiguous ``out`` with ``shape`` and ``strides`` (bytes).
    NumPy builds it with the array constructor over ``out``'s buffer (about half the
    cost of ``as_strided``, which goes through ``__array_interface__``)."""
    if kind == "numpy":
        return sys.modules["numpy"].ndarray(shape, out.dtype, out, 0, strides)
    return sys.modules[kind].lib.stride_tricks.as_strided(out, shape, strides)


def eye_kron(bk: Any, B: Any, m: int, right: bool) -> Any:
    """The identity of size ``m`` times ``B`` (``(..., R, Q)``), a matrix product's
    Jacobian: ``out[..., i, r, i, q] = B[..., r, q]`` (``(..., m, R, m, Q)``), or with
    ``right`` ``out[..., q, i, r, i] = B[..., r, q]`` (``(..., Q, m, R, m)``); zeros
    elsewhere.  NumPy and CuPy write ``B`` once, through a strided view of the ``m``
    diagonal blocks (the pairs ``i == i'`` are one stride, the sum of the two); other
    backends write the ``m`` blocks one by one."""
    lead, (R, Q) = tuple(B.shape[:-2]), tuple(B.shape[-2:])
    shape = lead + ((Q, m, R, m) if right else (m, R, m, Q))
    out = bk.zeros(shape, dtype=B.dtype, device=B.device)
    kind = type(out).__module__.split(".")[0]
    if kind in ("numpy", "cupy"):
        s = tuple(out.strides)
        if right:  # the (..., Q, m, R) view of out[..., q, i, r, i]
            view = _strided_view(kind, out, lead + (Q, m, R),
                                 s[:-4] + (s[-4], s[-3] + s[-1], s[-2]))
            view[...] = bk.matrix_transpose(B)[..., :, None, :]
        else:  # the (..., m, R, Q) view of out[..., i, r, i, q]
            view = _strided_view(kind, out, lead + (m, R, Q),
                                 s[:-4] + (s[-4] + s[-2], s[-3], s[-1]))
            view[...] = B[..., None, :, :]
        return out
    Bt = bk.matrix_transpose(B) if right else B
    every = slice(None)
    for i in range(m):
        out = update(out, (Ellipsis, every, i, every, i) if right else (Ellipsis, i, every, i, every), Bt)
    return out


def update(x: Any, key: Any, value: Any) -> Any:
    """``x[key] = value`` on a raw array the caller owns (fresh from a creation function or
    a computation); returns the updated array: ``x`` itself, written in place, except for
    JAX arrays (immutable), which are updated functionally with ``x.at[key].set(value)``."""
    if array_api_compat.is_jax_array(x):
        return x.at[key].set(value)
    x[key] = value
    return x


# --- NumPy's own calls for a replayed program ------------------------------------------------

class _NativeNamespace:
    """array-api-compat's NumPy namespace with its pass-through wrappers (which check
    arguments and then call NumPy) replaced by NumPy's own functions (NumPy 2.1 on).  A
    replayed program runs impls that were traced with the compat namespace, with the
    same operands: the checks passed then, and the results are the same objects NumPy
    returns (the wrappers cost 1 to 2 us per call at small sizes)."""

    def __init__(self, ns: Any, native: dict[str, Any]):
        self.__dict__.update(native)
        self._ns = ns

    def __getattr__(self, name: str) -> Any:  # (once per name: then found in the instance)
        value = getattr(self._ns, name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"<native {self._ns.__name__}>"


def _astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    return x.astype(dtype, copy=copy)


def _reshape_std(x: Any, /, shape: tuple, *, copy: bool | None = None) -> Any:
    return x.reshape(shape) if copy is None else x.reshape(shape, copy=copy)


_NATIVE_CALLS: dict[str, Any] = {}


def _native_tables() -> dict[str, Any]:
    """``{"ns": native namespace, "calls": {compat or NumPy function: replacement}}``;
    empty before NumPy 2.1 (whose own functions are not yet the standard's, and whose
    ``reshape`` method takes no ``copy``)."""
    if _NATIVE_CALLS or tuple(int(p) for p in _np.__version__.split(".")[:2]) < (2, 1):
        return _NATIVE_CALLS
    import array_api_compat.numpy as cnp

    native = {"matmul": _np.matmul, "permute_dims": _np.permute_dims,
              "matrix_transpose": _np.matrix_transpose, "astype": _astype,
              "reshape": _reshape_std}
    calls = {getattr(cnp, k): v for k, v in native.items()}
    # NumPy's reduction functions are Python wrappers of the ufuncs' reduce methods
    calls.update({_np.sum: _np.add.reduce, _np.prod: _np.multiply.reduce,
                  _np.max: _np.maximum.reduce, _np.min: _np.minimum.reduce})
    _NATIVE_CALLS.update(ns=_NativeNamespace(cnp, native), compat=cnp, calls=calls)
    return _NATIVE_CALLS


def native_call(fn: Any, args: tuple, kw: dict, takes_xp: bool) -> tuple | None:
    """A faster call with the same result for a recorded NumPy call ``fn(*args, **kw)``
    (``args[0]`` the namespace when ``takes_xp``): ``(fn, args, kw)``, or ``None``.

    * an impl traced with array-api-compat's NumPy namespace gets the native one;
    * compat's pass-through wrappers become NumPy's functions; ``sum``, ``prod``,
      ``max`` and ``min`` the ufuncs' ``reduce`` (the functions' own implementation,
      about 1 us less per call);
    * ``reshape(x, shape=s)`` becomes the method ``x.reshape(s)`` (0.13 us against
      0.6 us for the function, which looks the method up and calls it).

    >>> import numpy as np
    >>> native_call(np.sum, ("x",), {"axis": 1}, False)[0] == np.add.reduce
    True
    """
    t = _native_tables()
    if not t:
        return None
    if takes_xp:
        return (fn, (t["ns"],) + tuple(args[1:]), kw) if args and args[0] is t["compat"] else None
    if fn is _np.reshape and len(args) == 1 and set(kw) == {"shape"}:
        return _reshape_std, (args[0], kw["shape"]), {}
    try:
        rep = t["calls"].get(fn)
    except TypeError:  # an unhashable callable
        return None
    return None if rep is None else (rep, args, kw)
