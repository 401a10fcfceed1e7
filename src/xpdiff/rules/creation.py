"""Creation functions: constants, made through the backend on the requested device.

They are bound to a backend by :class:`xpdiff._namespace.Namespace`.  Created
inside a transformation, an array is a constant of that transformation (lifted
onto it), so ``out = xp.zeros(...); out[1:] = traced`` works.
"""

from __future__ import annotations

CREATION = ["arange", "asarray", "empty", "eye", "from_dlpack", "full", "linspace", "meshgrid",
            "ones", "zeros"]
