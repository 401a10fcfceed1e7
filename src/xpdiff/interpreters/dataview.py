"""The data view behind ``batch_ndim``: batched code, per-sample derivatives.

With ``batch_ndim=k`` the user's function is ordinary batched code: it sees
arrays of shape ``B + X``.  xpdiff runs it as a *per-sample* function under
``vmap`` over the (flattened) data dims, so derivative passes never form
cross-sample blocks and derivatives with respect to shared arguments come out
per sample in both modes.  This interpreter sits on top and translates each
batched-code call into its per-sample call (``Primitive.data``): an axis
argument loses the ``k`` data dims, and an op that would touch a data dim (a sum
over it, a reshape merging it, a matmul contracting it, ...) raises
:class:`MixingError` naming the op.  A shared array whose leading dims line up
with the data dims by broadcasting is *lifted*: each sample reads its own row
(the ``select`` primitive defined here).

Layer: interpreters.  May import: ``xpdiff.core`` and ``xpdiff.tracer``.
"""

from __future__ import annotations

import math
from typing import Any

from ..core import USER_OP, MixingError, Primitive, Trace, namespace_for_values, primitive
from ..tracer import Tracer, new_tracer


def data_tracer(main: Any, value: Any) -> Any:
    """A traced array of the data view ``main`` (of its trace's ``array_type``): ``_a``
    the per-sample value; its apparent shape is ``B + _a.shape``."""
    return new_tracer(main.trace.array_type, main, value)


class DataContext:
    """What a ``data`` rule may use: ``k``, ``B``, ``lift``, ``mixing`` and ``outranked``."""

    __slots__ = ("k", "B", "index", "where", "op", "_hint", "_computed_hint", "unmatched",
                 "suggested")

    def __init__(self, k: int, B: tuple, index: Any, where: str, op: str, hint: Any = "",
                 unmatched: Any = None, computed_hint: Any = None,
                 suggested: frozenset = frozenset()):
        self.k, self.B, self.index, self.where, self.op = k, B, index, where, op
        # which arguments were taken as data, and data_argnums= (or ""); a string, or a
        # function that makes it (only an error needs it)
        self._hint = hint
        # the same without data_argnums=, for an array computed in the function: taking other
        # arguments as data would not give it the data's leading dims
        self._computed_hint = hint if computed_hint is None else computed_hint
        # unmatched(x, op): the error text when x is an argument not taken as data whose
        # leading dims are other sizes than the data's (two batches of different sizes), or None
        self.unmatched = unmatched
        # the ids of the argument leaves the hint's data_argnums= names: a higher-rank array
        # that is one of them may be the data (see outranked)
        self.suggested = suggested

    @property
    def hint(self) -> str:
        h = self._hint
        return h() if callable(h) else h

    @property
    def computed_hint(self) -> str:
        h = self._computed_hint
        return h() if callable(h) else h

    def mixing(self, what: str) -> MixingError:
        return MixingError(
            f"{self.where}: '{self.op}' {what}, which mixes samples (the first {self.k} "
            f"dim(s), {self.B}, are data dims). Write the function per sample and use "
            f"xpdiff.vmap, or use batch_ndim=0 for the full Jacobian{self.hint}"
        )

    def outranked(self, o: Any, ops: list, has: list, core: int = 0) -> MixingError:
        """The error of a broadcasting op whose data operand ``o`` has a lower (apparent)
        rank than another operand, so that its data dims would line up with non-data dims.
        The ways out it names fit the shapes (``core`` trailing matrix dims aside):
        a higher-rank operand whose extra leading dims are all 1 loses them; the function
        written per sample under vmap, if one sample's shapes broadcast; batch_ndim=0, if
        the batched shapes do (the code is valid without batch_ndim); ``data_argnums=``
        only when the higher-rank operand is an argument the hint names whose leading dims
        are not all 1 and whose shape broadcasts against the data (then it can be the data,
        and the call works with the data taken from it)."""
        k, B = self.k, self.B
        arrays = [(x, h) for x, h in zip(ops, has) if hasattr(x, "shape")]
        full = [B + tuple(x.shape) if h else tuple(x.shape) for x, h in arrays]
        R = max(len(s) for s in full)
        # the operand that sets the rank, a shared one first
        top, top_has, S = min(((x, h, s) for (x, h), s in zip(arrays, full) if len(s) == R),
                              key=lambda xhs: xhs[1])
        D = B + tuple(o.shape)
        batched = _broadcasts([s[:len(s) - core] for s in full])
        per_sample = _broadcasts([tuple(x.shape)[:x.ndim - core] for x, _ in arrays])
        shared = not top_has
        e = R - len(D)  # the extra leading dims of the higher-rank operand
        text = (f"{self.where}: '{self.op}' broadcasts an operand of shape {D} against one of "
                f"rank {R}, so its data dims would line up with non-data dims, which mixes "
                f"samples (the first {k} dim(s), {B}, are data dims)")
        if not batched:
            text += (f"; the shapes {' and '.join(map(str, full))} do not even broadcast (f "
                     f"would fail on them without batch_ndim too)")
        ways = []
        if shared and batched and all(n == 1 for n in S[:e]):
            ways.append(f"give the operand of shape {S} the data's rank by dropping its first "
                        f"{e} dim(s) of size 1 (shape {S[e:]})")
        if per_sample:
            ways.append("write the function per sample and use xpdiff.vmap")
        if batched:
            ways.append("use batch_ndim=0 for the full Jacobian")
        if ways:
            way = ", or ".join(ways)
            text += ". " + way[0].upper() + way[1:]
        else:
            text += (f". One sample's shapes, {' and '.join(str(tuple(x.shape)) for x, _ in arrays)}"
                     f", do not broadcast either: check the shapes f computes with")
        data_here = (shared and batched and id(top) in self.suggested
                     and not all(n == 1 for n in S[:k]))
        return MixingError(text + (self.hint if data_here else self.computed_hint))

    def axes(self, ndim: int, axis: Any) -> Any:
        """Translate an axis (int, tuple or None) of an apparent ``ndim``-d data array."""
        if axis is None:
            raise self.mixing("reduces over all dims (axis=None)")
        single = isinstance(axis, int)
        out = []
        for a in (axis,) if single else axis:
            a = a + ndim if a < 0 else a
            if a < self.k:
                raise self.mixing(f"acts along axis {a}")
            out.append(a - self.k)
        return out[0] if single else tuple(out)

    def lift(self, x: Any, lead: int | None = None) -> Any:
        """Per-sample value of a shared array whose first ``lead`` dims align with the
        last ``lead`` data dims (size 1 or the data size); default ``lead = k``."""
        k = self.k if lead is None else lead
        shape = tuple(x.shape)
        head, rest = shape[:k], shape[k:]
        want = self.B[self.k - k:]
        if any(h not in (1, b) for h, b in zip(head, want)):
            text = self.unmatched(x, self.op) if self.unmatched is not None else None
            if text is None:  # an array computed inside the function, not an argument
                text = (
                    f"'{self.op}' combines the data, whose leading dims are {want}, with an array "
                    f"of shape {shape} whose leading dims are {head}: the data (batch) sizes differ "
                    f"({_sizes(want)} and {_sizes(head)}). That array carries no data dims (it was "
                    f"computed in the function from arguments not taken as data, or created "
                    f"there), so it is the same for every sample. If it holds one entry per sample, "
                    f"give it the data's leading dims {want}, not {head}: make it before the call "
                    f"and pass it as a data argument (it is then indexed per sample), or compute "
                    f"it from the data; if it is shared, give it a shape that broadcasts against "
                    f"one sample{self.computed_hint}")
            raise ValueError(f"{self.where}: {text}")
        xp = namespace_for_values([x])
        if all(h == 1 for h in head):
            return xp.reshape(x, rest)
        full = xp.broadcast_to(x, self.B + rest)
        flat = xp.reshape(full, (math.prod(self.B),) + rest)
        return _select.bind(flat, self.index)


def _broadcasts(shapes: list) -> bool:
    """Whether ``shapes`` broadcast together (an unknown size broadcasts)."""
    n = max((len(s) for s in shapes), default=0)
    for i in range(1, n + 1):
        sizes = {s[-i] for s in shapes if len(s) >= i and isinstance(s[-i], int) and s[-i] != 1}
        if len(sizes) > 1:
            return False
    return True


def _sizes(dims: tuple) -> str:
    return str(dims[0]) if len(dims) == 1 else str(dims)


class DataTrace(Trace):
    __slots__ = ()
    lifts_constants = False  # a constant is the same for every sample: the trace below lifts it
    array_type: type = Tracer  # the class of its traced arrays

    def shape_of(self, t: Any) -> tuple[int, ...]:
        return t._main.data["B"] + tuple(t._a.shape)

    def datum(self, t: Any) -> bool:
        return True  # a per-sample value: it carries the data dims

    def constant_datum(self, v: Any) -> bool:
        return False

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        main = self.main
        d = main.data
        ops, has = [], []
        for a in args:
            if isinstance(a, Tracer) and a._main is main:
                ops.append(a._a)
                has.append(True)
            else:
                ops.append(a)
                has.append(False)
        op = USER_OP.get() or prim.name
        if prim.data is None:
            raise MixingError(
                f"{d['where']}: '{op}' has no rule for batch_ndim (data dims); "
                f"use xpdiff.vmap over a per-sample function instead"
            )
        ctx = DataContext(d["k"], d["B"], d["index"], d["where"], op, d.get("hint", ""),
                          d.get("unmatched"), d.get("computed_hint"), d.get("suggested", frozenset()))
        ops, params = prim.data(ctx, ops, has, **params)
        out = prim.bind(*ops, **params)
        if prim.multiple_results:
            return tuple(data_tracer(main, o) for o in out)
        return data_tracer(main, out)

    def lift(self, x: Any) -> Tracer:
        d = self.main.data
        ctx = DataContext(d["k"], d["B"], d["index"], d["where"], "setitem", d.get("hint", ""),
                          d.get("unmatched"), d.get("computed_hint"), d.get("suggested", frozenset()))
        return data_tracer(self.main, ctx.lift(x))

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_passthrough(self, args)


# --- select: per-sample row of a shared array (lifting under batch_ndim) -------------------

def _select_impl(bk, x, i):
    return bk.reshape(bk.take(x, bk.reshape(i, (1,)), axis=0), x.shape[1:])


def _select_vjp(xp, g, out, p, needs, **kw):
    x, i = p
    m = x.shape[0]
    onehot = xp.astype(xp.equal(xp.arange(m, device=g.device), i), g.dtype)
    return [xp.multiply(xp.reshape(onehot, (m,) + (1,) * g.ndim), g), None]


def _select_batch(xp, vals, batched, n, **kw):
    x, i = vals
    bx, bi = batched
    if bi and not bx:
        return xp.take(x, i, axis=0), True
    if bx and not bi:
        return xp.take(x, xp.reshape(i, (1,)), axis=1)[:, 0, ...], True
    m = x.shape[1]
    flat = xp.reshape(x, (n * m,) + tuple(x.shape[2:]))
    return xp.take(flat, xp.add(xp.multiply(xp.arange(n, device=i.device), m), i), axis=0), True


_select = primitive(
    "select", _select_impl,
    jvp=lambda xp, p, t: (_select.bind(p[0], p[1]), _select.bind(t[0], p[1])),
    vjp=_select_vjp, batch=_select_batch)
