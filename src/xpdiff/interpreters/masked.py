"""Masked zeros: the (co)tangents that ``where`` did not select (docs/where.md).

A :class:`Masked` (co)tangent carries a boolean ``mask`` of the positions where it
is a *strong* zero: zero whatever partial derivative multiplies it there, ``inf``
and ``nan`` included.  ``where`` creates masks; the interpreters honour them in
elementwise rules by selecting ``0`` in place of the partial derivative at masked
positions (:func:`guard_partials`), so ``where(x > 0, sqrt(x), 0)`` has the
derivative of the branch it selected.  Any other rule receives the plain value.

Layer: interpreters.  May import: ``xpdiff.core``.
"""

from __future__ import annotations

import math
from typing import Any

from ..core import Zero

ALL = True  # the mask of a symbolic zero: every position


class Masked:
    """A (co)tangent ``value`` that is a strong zero where ``mask`` is true.

    ``value`` is a dense (co)tangent or a structured one (``Diag``), never a ``Zero``;
    it holds ``0`` at the masked positions.  ``mask`` is a boolean array one level
    down (like the primal), broadcastable to the primal's shape.
    """

    __slots__ = ("value", "mask")

    def __init__(self, value: Any, mask: Any):
        self.value, self.mask = value, mask

    def __repr__(self) -> str:
        return f"Masked({self.value!r}, mask={self.mask!r})"


def wrap(value: Any, mask: Any) -> Any:
    """``value`` annotated with ``mask`` (``None``: no mask; a ``Zero`` stays one)."""
    if mask is None or value is None or type(value) is Zero:
        return value
    if type(value) is Masked:
        value = value.value
    return Masked(value, mask)


def split(ts: list) -> tuple[list, list]:
    """Values and masks of (co)tangents: ``ALL`` for a symbolic zero, ``None`` unmasked."""
    vals, masks = [], []
    for t in ts:
        if type(t) is Masked:
            vals.append(t.value)
            masks.append(t.mask)
        else:
            vals.append(t)
            masks.append(ALL if t is None or type(t) is Zero else None)
    return vals, masks


def unmask(t: Any) -> Any:
    return t.value if type(t) is Masked else t


def unmask_all(ts: Any) -> Any:
    return [t.value if type(t) is Masked else t for t in ts]


def _guard(d: Any, m: Any) -> Any:
    def guarded(xp: Any, primals: list, out: Any) -> Any:
        v = d(xp, primals, out)
        if isinstance(v, (int, float)):
            if math.isfinite(v):  # 0 times a finite number is 0: no select
                return v
            v = xp.multiply(xp.ones_like(out), v)
        return xp.where(m, 0.0, v)

    return guarded


def guard_partials(partials: tuple, masks: list) -> tuple:
    """The partial derivatives with ``0`` selected where the (co)tangent they multiply
    is masked: one ``where`` per masked operand (none for constant partials)."""
    return tuple(d if d is None or m is None or m is ALL else _guard(d, m)
                 for d, m in zip(partials, masks))


def both(xp: Any, a: Any, b: Any) -> Any:
    """Positions masked in ``a`` and in ``b`` (``None``: none; ``ALL``: all)."""
    if a is None or b is None:
        return None
    if a is ALL:
        return b
    if b is ALL or a is b:
        return a
    return xp.logical_and(a, b)


def either(xp: Any, a: Any, b: Any) -> Any:
    """Positions masked in ``a`` or in ``b``."""
    if a is None:
        return b
    if b is None or a is b:
        return a
    if a is ALL or b is ALL:
        return ALL
    return xp.logical_or(a, b)


def select(xp: Any, c: Any, a: Any, b: Any) -> Any:
    """``where(c, a, b)`` of two masks (``ALL``/``None`` as true/false everywhere)."""
    if a is None and b is None:
        return None
    if a is ALL and b is ALL:
        return ALL
    if a is None:
        return xp.logical_not(c) if b is ALL else xp.logical_and(xp.logical_not(c), b)
    if b is None:
        return c if a is ALL else xp.logical_and(c, a)
    if a is ALL:
        return xp.logical_or(c, b)
    if b is ALL:
        return xp.logical_or(xp.logical_not(c), a)
    return xp.where(c, a, b)


def elementwise_mask(xp: Any, partials: tuple, masks: list) -> Any:
    """The mask of an elementwise rule's output tangent: where every contributing
    tangent is masked (operands without tangent or partial contribute nothing)."""
    out = ALL
    for d, m in zip(partials, masks):
        if d is None or m is ALL:
            continue
        out = both(xp, out, m)
        if out is None:
            return None
    return None if out is ALL else out


def reduce_mask(xp: Any, m: Any, out_shape: tuple, shape: tuple) -> Any:
    """The mask of a cotangent summed from ``out_shape`` down to ``shape`` (undoing
    broadcasting): masked where every summed position is masked."""
    if m is None or m is ALL:
        return m
    shape, out_shape = tuple(shape), tuple(out_shape)
    ms = tuple(m.shape)
    if ms == shape:
        return m
    if len(ms) <= len(shape) and all(
            a in (1, b) for a, b in zip(ms[::-1], shape[::-1])):
        return m  # already broadcastable to the operand: nothing was summed over it
    if ms != out_shape:
        m = xp.broadcast_to(m, out_shape)
    lead = len(out_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and out_shape[lead + i] != 1)
    if axes:
        m = xp.all(m, axis=axes)
    return xp.reshape(m, shape)


def where_masks(xp: Any, c: Any, g_mask: Any) -> tuple[Any, Any]:
    """Reverse mode: the masks of the cotangents ``where(c, ., .)`` sends to its two
    branches, given the mask of its output cotangent."""
    return either(xp, xp.logical_not(c), g_mask), either(xp, c, g_mask)
