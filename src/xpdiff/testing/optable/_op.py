"""One entry of the operation table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Op:
    """A function to check: ``fn(xp, *args)`` with ``args`` of ``shapes`` drawn
    uniformly from ``[low, high)`` (per argument when tuples).

    ``batched``: ``fn`` is also valid batched code (negative axes), so it is
    checked under ``batch_ndim`` too.  ``order2``: check second derivatives.
    ``sample``: a custom sampler ``(rng, lead) -> list of arrays`` (e.g. for
    well-conditioned matrices).
    """

    name: str
    fn: Callable
    shapes: tuple
    low: float | tuple = -2.0
    high: float | tuple = 2.0
    batched: bool = True
    order2: bool = True
    sampler: Callable | None = None
    tags: tuple = field(default_factory=tuple)

    def sample(self, rng: np.random.Generator, lead: tuple = ()) -> list:
        if self.sampler is not None:
            return self.sampler(rng, lead)
        n = len(self.shapes)
        lows = self.low if isinstance(self.low, tuple) else (self.low,) * n
        highs = self.high if isinstance(self.high, tuple) else (self.high,) * n
        return [rng.uniform(lo, hi, size=lead + s) for s, lo, hi in zip(self.shapes, lows, highs)]
