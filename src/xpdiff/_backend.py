"""The backend layer: the only module that knows concrete array libraries.

Everything else in xpdiff sees a backend as an array-API namespace obtained here.
Type checks go through ``array_api_compat`` (which looks in ``sys.modules``), so
CuPy is never imported unless CuPy arrays are in use.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import array_api_compat

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


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of a supported backend (not a Python scalar)."""
    if type(x) in _NS_CACHE:
        return True
    if isinstance(x, (bool, int, float, complex)) or x is None:
        return False
    return array_api_compat.is_array_api_obj(x)


def fix_result(x: Any) -> Any:
    """Turn NumPy scalars (returned by some NumPy reductions) into 0-d arrays."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.generic):
        return np.asarray(x)
    return x


def device_of(x: Any) -> Any:
    """The device of a raw backend array."""
    return array_api_compat.device(x)


_BACKENDS = {
    "numpy": "array_api_compat.numpy",
    "cupy": "array_api_compat.cupy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "jax": "jax.numpy",
}


def backend_namespace(name: str | None = None) -> Any:
    """The raw namespace of a backend by name; ``None`` means ``$XPDIFF_BACKEND`` or numpy."""
    if name is None:
        name = os.environ.get("XPDIFF_BACKEND", "numpy")
    mod = _BACKENDS.get(name)
    if mod is None:
        raise ValueError(
            f"xpdiff.namespace: unknown backend {name!r}; choose one of {sorted(_BACKENDS)}"
        )
    import importlib

    try:
        return importlib.import_module(mod)
    except ImportError as e:
        raise ImportError(
            f"xpdiff.namespace: backend {name!r} is not installed ({e}); "
            f"install it, e.g. `pip install xpdiff[{name}]`"
        ) from None


def available_backends() -> list[str]:
    """Names of the backends that can be imported here (imports each candidate)."""
    import importlib.util

    found = []
    for name, mod in _BACKENDS.items():
        top = mod.split(".")[0] if name != "cupy" else "cupy"
        if name in ("torch", "jax"):
            top = name
        if importlib.util.find_spec(top) is not None:
            found.append(name)
    return found
