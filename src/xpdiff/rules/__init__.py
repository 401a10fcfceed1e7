"""Primitive registrations, one module per chapter of the standard.

Each module registers its primitives (implementation + JVP, VJP, batching and
data-view rules side by side) and defines the namespace functions that bind
them.  ``EXPORTS`` collects the public namespace functions of every chapter.
"""

from . import (  # noqa: F401
    _families,  # noqa: F401  (defines EXPORTS)
    creation,
    elementwise,
    fft,
    indexing,
    linalg,
    manipulation,
    reductions,
    sorting,
    special,
    structure,
)
from ._families import EXPORTS

__all__ = ["EXPORTS"]
