"""Forward mode: the JVP interpreter (tracers carry a primal and a tangent)."""

from __future__ import annotations

import math
from typing import Any

from ._array import Tracer
from ._core import Primitive, RuleError, Trace, Zero, new_main


class JVPTracer(Tracer):
    """``_a`` is the primal (one level down), ``_b`` its tangent (or ``Zero``)."""

    __slots__ = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape


class Diag:
    """A structured tangent over a basis: ``scale * I``.

    Under ``jacfwd`` the tangent of the input is the identity basis, pushed as a
    vmap axis.  While only elementwise operations act on it, the tangent for
    basis vector ``j`` is ``scale * e_j`` with ``scale`` shaped like the primal:
    each elementwise rule multiplies ``scale`` by its partial derivative and the
    ``n``-sized basis axis is never touched.  Any other operation (one that mixes
    positions) materialises it once (:meth:`dense`).  ``scale=None`` means ones.
    """

    __slots__ = ("scale", "main", "shape", "like", "start", "count")

    def __init__(self, scale: Any, main: Any, shape: tuple, like: Any, start: int = 0,
                 count: int | None = None):
        self.scale, self.main, self.shape, self.like = scale, main, tuple(shape), like
        self.start = start  # the basis is rows start:start+count of the identity (chunking)
        self.count = math.prod(self.shape) if count is None else count

    def with_scale(self, scale: Any) -> Diag:
        return Diag(scale, self.main, self.shape, self.like, self.start, self.count)

    def dense(self) -> Any:
        """The tangent as a basis-batched array: identity rows times ``scale``."""
        from ._batching import BatchTracer
        from ._namespace import namespace_for_values

        xp = namespace_for_values([self.like])
        n = math.prod(self.shape)
        eye = xp.reshape(xp.eye(self.count, n, k=self.start, dtype=self.like.dtype,
                                device=self.like.device), (self.count,) + self.shape)
        val = eye if self.scale is None else xp.multiply(eye, self.scale)
        return BatchTracer(self.main, val, True)


def _densify(tangents: list) -> list:
    return [t.dense() if type(t) is Diag else t for t in tangents]


def _diag_rule(prim: Primitive, primals: list, tangents: list, params: dict) -> Any:
    """JVP of an elementwise primitive on ``Diag`` tangents: stays ``Diag`` when every
    structured operand already has the output's shape (no broadcasting)."""
    if params or any(t is not None and not isinstance(t, (Zero, Diag)) for t in tangents):
        return None
    out = prim.bind(*primals)
    shape = tuple(out.shape)
    main = None
    for t in tangents:
        if type(t) is Diag:
            if t.shape != shape or (main is not None and t.main is not main):
                return None
            main = t.main
    from ._namespace import namespace_for_values
    from .rules._families import scaled

    xp = namespace_for_values(primals)
    acc = None
    for t, d in zip(tangents, prim.partials):
        if type(t) is not Diag or d is None:
            continue
        dv = d(xp, primals, out)
        if t.scale is None:
            term = dv if not isinstance(dv, (int, float)) else (
                None if dv == 1 else xp.multiply(xp.ones_like(out), dv))
        else:
            term = scaled(xp, t.scale, dv)
        if term is None:
            term = xp.ones_like(out)
        acc = term if acc is None else xp.add(acc, term)
    first = next(t for t in tangents if type(t) is Diag)
    if acc is not None and tuple(acc.shape) != shape:
        acc = xp.broadcast_to(acc, shape)
    return out, first.with_scale(acc)


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
        if any(type(t) is Diag for t in tangents):
            res = _diag_rule(prim, primals, tangents, params) if prim.partials else None
            if res is not None:
                return JVPTracer(self.main, res[0], res[1])
            tangents = _densify(tangents)
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
