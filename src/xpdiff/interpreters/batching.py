"""vmap: the batching interpreter.

A batched value keeps its batch axis first (``_b`` is ``True``); an unbatched
value (``_b`` is ``False``) is shared by every slice.  Batching rules therefore
only ever see the batch axis at position 0.

Layer: interpreters.  May import: ``xpdiff.core`` and ``xpdiff.tracer``.
"""

from __future__ import annotations

from typing import Any

from ..core import Primitive, RuleError, Trace, namespace_for_values, new_main
from ..tracer import Tracer


class BatchTracer(Tracer):
    """``_a`` is the value (batch axis first when ``_b``), ``_b`` whether it is batched."""

    __slots__ = ()

    @property
    def shape(self) -> tuple[int, ...]:
        s = self._a.shape
        return s[1:] if self._b else s

    def _constant_value(self) -> Any:
        return None if self._b else self._a


class BatchTrace(Trace):
    __slots__ = ()

    def lift(self, x: Any) -> BatchTracer:
        return BatchTracer(self.main, x, False)

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        main = self.main
        vals, batched = [], []
        anyb = False
        for a in args:
            if type(a) is BatchTracer and a._main is main:
                vals.append(a._a)
                batched.append(a._b)
                anyb = anyb or a._b
            else:
                vals.append(a)
                batched.append(False)
        if not anyb:
            out = prim.bind(*vals, **params)
            if prim.multiple_results:
                return tuple(BatchTracer(main, o, False) for o in out)
            return BatchTracer(main, out, False)
        if prim.batch is None:
            raise RuleError(f"Batching rule for '{prim.name}' not implemented (vmap / batch_ndim)")
        xp = namespace_for_values(vals)
        out, out_b = prim.batch(xp, vals, batched, main.data["size"], **params)
        if prim.multiple_results:
            if isinstance(out_b, bool):
                out_b = [out_b] * len(out)
            return tuple(BatchTracer(main, o, bool(b)) for o, b in zip(out, out_b))
        return BatchTracer(main, out, bool(out_b))

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_passthrough(self, args)


def vmap_call(fun: Any, vals: list, batched: list, size: int) -> tuple[list, list]:
    """Run ``fun`` on values whose batch axis is first; return values and batched flags."""
    with new_main(BatchTrace, size=size) as main:
        ins = [BatchTracer(main, v, True) if b else v for v, b in zip(vals, batched)]
        outs = fun(*ins)
        res, res_b = [], []
        for o in outs:
            if isinstance(o, BatchTracer) and o._main is main:
                res.append(o._a)
                res_b.append(o._b)
            else:
                res.append(o)
                res_b.append(False)
    return res, res_b
