"""xpdiff's array API namespace over NumPy, as an importable module.

Its attributes are those of ``xpdiff.namespace("numpy")`` (API version 2024.12):
every function, dtype, constant and inspection function of the standard, the
``linalg`` and ``fft`` extensions and the ``special`` submodule.  It exists so that
tools which take a module name (the array API conformance suite:
``ARRAY_API_TESTS_MODULE=xpdiff.array_api``) can be pointed at xpdiff.

>>> import xpdiff.array_api as xp
>>> xp.sin(xp.zeros(2))
array([0., 0.])
"""

from __future__ import annotations

from .namespaces import namespace as _namespace

_ns = _namespace("numpy")
globals().update({n: v for n, v in vars(_ns).items()
                  if not n.startswith("_") or n in ("__array_api_version__",
                                                    "__array_namespace_info__")})
__all__ = sorted(n for n in vars(_ns) if not n.startswith("_"))
