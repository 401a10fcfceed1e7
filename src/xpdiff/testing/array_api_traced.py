"""xpdiff's namespace over NumPy whose arrays are all *traced*: a test harness module.

The first array it creates enters one forward-mode (JVP) transformation that stays
active for the life of the process.  Every array its creation functions return
(``asarray``, ``zeros``, ``arange``, ``full``, ...) is a tracer of that
transformation carrying a non-zero tangent (ones) when its dtype is floating, so
every function applied to it runs its JVP rule, and every operator runs through
the traced array object.  It exists to run the array API conformance suite on
traced arrays::

    ARRAY_API_TESTS_MODULE=xpdiff.testing.array_api_traced ci/conformance.sh <suite>

The suite then checks the *primal* values and the array object of xpdiff's traced
arrays.  Two liberties make that possible, and make this module unfit for programs:

* its arrays convert to Python scalars and NumPy (``float()``, ``bool()``,
  ``int()``, ``__index__``, ``format()``, ``__array__``, ``__dlpack__``) by reading
  the primal value, because the suite inspects values that way (xpdiff's own traced arrays
  refuse these conversions: they would drop the derivative); a NumPy function that
  xpdiff's NumPy dispatch does not cover runs on the primal values, as it runs on any
  array NumPy converts (test code such as SciPy's calls ``np.corrcoef`` on results);
* the transformation is never closed, so xpdiff's trace stack is never empty.

>>> import xpdiff.testing.array_api_traced as xpt        # doctest: +SKIP
>>> type(xpt.ones(2)).__name__                     # doctest: +SKIP
'ConformanceTracer'
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

from ..backend.numpy_dispatch import FUNCTIONS
from ..core import Zero, new_main
from ..interpreters.forward import JVPTrace, jvp_tracer
from ..namespaces import namespace as _namespace
from ..rules.creation import backend_creation
from ..tracer import Tracer


class ConformanceTracer(Tracer):
    """A traced array of forward mode whose value can be read back as a Python scalar or a NumPy array.

    (The module's globals become the namespace below, whose ``bool`` is a dtype:
    the builtins are spelled ``builtins.bool`` here.)
    """

    __slots__ = ()

    def _primal(self) -> Any:
        v: Any = self
        while isinstance(v, Tracer):
            v = v._a
        return v

    def __float__(self) -> float:
        return builtins.float(self._primal())

    def __int__(self) -> int:
        return builtins.int(self._primal())

    def __complex__(self) -> complex:
        return builtins.complex(self._primal())

    def __bool__(self) -> bool:
        return builtins.bool(self._primal())

    def __index__(self) -> int:
        return operator.index(self._primal())

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        if func in FUNCTIONS:
            return super().__array_function__(func, types, args, kwargs)
        return func(*_primals(args), **_primals(kwargs))

    def __format__(self, spec: str) -> str:
        return format(self._primal(), spec)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        return np.asarray(self._primal(), dtype=dtype)

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: Any = None) -> Any:
        kw = {k: v for k, v in [("stream", stream), ("max_version", max_version),
                                ("dl_device", dl_device), ("copy", copy)] if v is not None}
        return self._primal().__dlpack__(**kw)

    def __repr__(self) -> str:
        return f"traced({self._primal()!r})"


def _primals(obj: Any) -> Any:
    """``obj`` (a value, or a list/tuple/dict of them) with each traced array's primal."""
    if isinstance(obj, ConformanceTracer):
        return obj._primal()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_primals(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _primals(v) for k, v in obj.items()}
    return obj


class ConformanceTrace(JVPTrace):
    """Forward mode whose tracers are :class:`ConformanceTracer`."""

    __slots__ = ()
    array_type = ConformanceTracer


_ns = _namespace("numpy")
_bk = _ns._backend
_MAIN: list = []


def _main() -> Any:
    """The long-lived transformation, entered on first use (so that importing this
    module, e.g. to collect doctests, leaves xpdiff's trace stack alone) and never
    exited."""
    if not _MAIN:
        context = new_main(ConformanceTrace)  # kept referenced: collecting it would exit it
        _MAIN.extend([context.__enter__(), context])
    return _MAIN[0]


def _traced(value: Any) -> Any:
    """``value`` (a raw array, or a list/tuple of them) as tracers of the long-lived
    transformation, with tangent ones for floating dtypes."""
    if isinstance(value, (list, tuple)):
        return type(value)(_traced(v) for v in value)
    if isinstance(value, Tracer):
        return value
    if _bk.isdtype(value.dtype, ("real floating", "complex floating")):
        return jvp_tracer(_main(), value, _bk.ones_like(value), ConformanceTracer)
    return jvp_tracer(_main(), value, Zero(value), ConformanceTracer)


globals().update({n: v for n, v in vars(_ns).items()
                  if not n.startswith("_") or n in ("__array_api_version__",
                                                    "__array_namespace_info__")})
globals().update(backend_creation(_bk, _traced, _ns.result_type))
__all__ = sorted(n for n in vars(_ns) if not n.startswith("_"))
