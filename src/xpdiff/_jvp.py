"""Forward mode: the JVP interpreter (tracers carry a primal and a tangent)."""

from __future__ import annotations

from typing import Any

from ._array import Tracer
from ._core import Primitive, RuleError, Trace, Zero, new_main


class JVPTracer(Tracer):
    """``_a`` is the primal (one level down), ``_b`` its tangent (or ``Zero``)."""

    __slots__ = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape


class JVPTrace(Trace):
    __slots__ = ()

    def lift(self, x: Any) -> JVPTracer:
        return JVPTracer(self.main, x, Zero(x))

    def _split(self, args: tuple) -> tuple[list, list]:
        primals, tangents = [], []
        for a in args:
            if isinstance(a, JVPTracer) and a._main is self.main:
                primals.append(a._a)
                tangents.append(a._b)
            else:
                primals.append(a)
                tangents.append(Zero(a) if hasattr(a, "shape") else None)
        return primals, tangents

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        primals, tangents = self._split(args)
        if not prim.differentiable or all(t is None or isinstance(t, Zero) for t in tangents):
            # a constant of this trace (so raw arrays never meet tracers in user code)
            out = prim.bind(*primals, **params)
            if prim.multiple_results:
                return tuple(self.lift(o) for o in out)
            return self.lift(out)
        if prim.jvp is None:
            raise RuleError(
                f"Differentiation rule for '{prim.name}' not implemented (forward mode / jvp); "
                f"wrap the computation in xpdiff.custom_jvp to give it a rule"
            )
        from ._namespace import namespace_for_values

        xp = namespace_for_values(primals)
        out, tout = prim.jvp(xp, primals, tangents, **params)
        if prim.multiple_results:
            return tuple(self._box(o, t) for o, t in zip(out, tout))
        return self._box(out, tout)

    def _box(self, out: Any, tout: Any) -> Any:
        return JVPTracer(self.main, out, Zero(out) if tout is None else tout)

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_jvp(self, args)


def jvp_call(fun: Any, primals: list, tangents: list) -> tuple[Any, Any]:
    """Run ``fun(*flat_primals)`` (flat list in, flat list out) under forward mode."""
    with new_main(JVPTrace) as main:
        ins = [JVPTracer(main, p, t) for p, t in zip(primals, tangents)]
        outs = fun(*ins)
        res_p, res_t = [], []
        for o in outs:
            if isinstance(o, JVPTracer) and o._main is main:
                res_p.append(o._a)
                res_t.append(o._b)
            else:
                res_p.append(o)
                res_t.append(Zero(o))
    return res_p, res_t
