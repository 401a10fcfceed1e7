"""vmap: the batching interpreter.

A batched value keeps its batch axis first (``_batched`` is ``True``); an
unbatched value (``_batched`` is ``False``) is shared by every slice.  Batching rules therefore
only ever see the batch axis at position 0.

Layer: interpreters.  May import: ``xpdiff.core`` and ``xpdiff.tracer``.
"""

from __future__ import annotations

from typing import Any

from ..core import Primitive, RuleError, Trace, namespace_for_values, new_main
from ..tracer import Tracer, new_tracer, unbox


def batch_tracer(main: Any, value: Any, batched: bool) -> Tracer:
    """A traced array of vmap's ``main``: ``_a`` the value (batch axis first when
    ``_batched``), ``_batched`` whether it is batched."""
    return new_tracer(Tracer, main, value, "_batched", batched)


class BatchTrace(Trace):
    __slots__ = ()
    datum_slot = "_batched"

    def lift(self, x: Any) -> Tracer:
        return batch_tracer(self.main, x, False)

    def shape_of(self, t: Any) -> tuple[int, ...]:
        s = t._a.shape
        return s[1:] if t._batched else s

    def constant_value(self, t: Any) -> Any:
        return None if t._batched else t._a

    def mapped_size(self, t: Any) -> int:
        return self.main.data["size"] if t._batched else 1

    def datum(self, t: Any) -> bool:
        return t._batched

    def constant_datum(self, v: Any) -> bool:
        return False

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        main = self.main
        vals, batched = [], []
        anyb = False
        for a in args:
            if isinstance(a, Tracer) and a._main is main:
                vals.append(a._a)
                b = a._batched
                batched.append(b)
                anyb = anyb or b
            else:
                vals.append(a)
                batched.append(False)
        if not anyb:
            out = prim.bind(*vals, **params)
            if prim.multiple_results:
                return tuple(new_tracer(Tracer, main, o, "_batched", False) for o in out)
            return new_tracer(Tracer, main, out, "_batched", False)
        if prim.batch is None:
            raise RuleError(f"Batching rule for '{prim.name}' not implemented (vmap / batch_ndim)")
        xp = namespace_for_values(vals)
        out, out_b = prim.batch(xp, vals, batched, main.data["size"], **params)
        if prim.multiple_results:
            if isinstance(out_b, bool):
                out_b = [out_b] * len(out)
            return tuple(batch_tracer(main, o, bool(b)) for o, b in zip(out, out_b))
        return new_tracer(Tracer, main, out, "_batched", bool(out_b))

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_passthrough(self, args)


def vmap_call(fun: Any, vals: list, batched: list, size: int) -> tuple[list, list]:
    """Run ``fun`` on values whose batch axis is first; return values and batched flags."""
    with new_main(BatchTrace, size=size) as main:
        outs = fun(*[batch_tracer(main, v, True) if b else v for v, b in zip(vals, batched)])
        return unbox(main, outs)
