"""The operation table every derivative check is generated from.

Each module in this package defines ``OPS``, a list of :class:`Op` entries (one
function of the namespace, or a usage pattern of it): ``fn(xp, *args)`` on
per-sample arrays, the argument shapes and the input domain.  The test suite
(``tests/test_rules.py``) and ``xpdiff check`` run every entry: forward mode vs
finite differences, reverse mode by the inner-product identity, second order,
vmap vs a loop, and ``batch_ndim`` vs per-sample Jacobians.  Adding a module
here is enough for all of them to pick it up.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._op import Op

OPS: list[Op] = []
for _m in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    OPS.extend(importlib.import_module(f"{__name__}.{_m}").OPS)

__all__ = ["OPS", "Op"]
