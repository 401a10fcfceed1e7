"""Forward mode: the JVP interpreter (tracers carry a primal and a tangent).

Layer: interpreters.  May import: ``xpdiff.core``, ``xpdiff.tracer``,
``xpdiff.interpreters.structured`` (structured tangents of identity bases) and
``.masked`` (the zeros ``where`` did not select).
"""

from __future__ import annotations

from typing import Any

from ..core import (
    _ARRAY_TYPES,
    _NS_OF_TYPE,
    Primitive,
    RuleError,
    Trace,
    Zero,
    fix_result,
    namespace_for_values,
    new_main,
)
from ..tracer import Tracer, new_tracer, unbox
from . import structured
from .masked import ALL, Masked, elementwise_mask, guard_partials, select, split, unmask, wrap
from .structured import Diag, densify


def jvp_tracer(main: Any, primal: Any, tangent: Any, cls: type = Tracer) -> Any:
    """A traced array of forward mode's ``main``: ``_a`` the primal, ``_tangent`` its tangent."""
    return new_tracer(cls, main, primal, "_tangent", tangent)


def scaled(xp: Any, t: Any, d: Any) -> Any:
    """``t * d``, skipping the multiplication for the constants 1 and -1.

    Two raw arrays of one library (the innermost level, e.g. a first-order
    gradient) multiply through the backend's ``multiply`` directly: what ``bind``
    would reach anyway, without the dispatch."""
    if isinstance(d, (int, float)):
        if d == 1:
            return t
        if d == -1:
            return xp.negative(t)
    tt = type(t)
    if tt is type(d) and tt in _ARRAY_TYPES:
        return fix_result(_NS_OF_TYPE[tt].multiply(t, d))
    return xp.multiply(t, d)


def partials_tangent(xp: Any, partials: tuple, primals: list, tangents: list, out: Any) -> Any:
    """The output tangent of an elementwise primitive from its partial derivatives:
    ``sum_i t_i * d_i`` (only the partials of non-zero tangents are computed)."""
    acc = None
    for t, d in zip(tangents, partials):
        if t is None or d is None or isinstance(t, Zero):
            continue
        term = scaled(xp, t, d(xp, primals, out))
        acc = term if acc is None else xp.add(acc, term)
    if acc is None:
        return Zero(out)
    if tuple(acc.shape) != tuple(out.shape):
        acc = xp.broadcast_to(acc, out.shape)
    return acc


def push(prim: Primitive, primals: list, tangents: list, params: dict, out: Any = None) -> tuple:
    """Push tangents through one application of ``prim``: ``(out, out_tangent)``.

    The one place forward mode applies a rule: structured tangents (:class:`Diag`)
    keep their structure where the primitive allows it, else they are densified
    and the primitive's JVP rule runs.  ``out`` is the primal output when it is
    already known (replaying a recorded tape): elementwise and reduction rules
    then do not recompute it.  Masked tangents and ``where`` go to :func:`_push_masked`.
    """
    if prim.select:
        return _push_masked(prim, primals, tangents, params, out)
    has_diag = False
    for t in tangents:
        tt = type(t)
        if tt is Masked:
            return _push_masked(prim, primals, tangents, params, out)
        if tt is Diag:
            has_diag = True
    if has_diag:
        res = structured.push(prim, primals, tangents, params, out)
        if res is not None:
            return res
        tangents = densify(tangents)

    xp = namespace_for_values(primals)
    if out is not None and prim.partials is not None and not params:
        return out, partials_tangent(xp, prim.partials, primals, tangents, out)
    return prim.jvp(xp, primals, tangents, **params)


def _push_masked(prim: Primitive, primals: list, tangents: list, params: dict,
                 out: Any = None) -> tuple:
    """:func:`push` for ``where`` and for masked tangents (docs/where.md): ``where``
    selects and masks what it did not select; an elementwise rule guards its partial
    derivatives with the masks (one select per masked operand); any other rule gets
    the plain values."""
    vals, masks = split(tangents)
    xp = namespace_for_values(primals)
    if prim.written is not None:  # a write: masked where it writes a zero tangent
        o, t = prim.jvp(xp, primals, densify(vals), **params)
        mv = ALL if masks[1] is ALL else None
        if mv is None and masks[0] is None:
            return o, t
        m = select(xp, prim.written(xp, primals, params), mv, masks[0])
        return o, (Zero(o) if m is ALL else wrap(t, m))
    if prim.select:
        res = None
        if any(type(t) is Diag for t in vals):
            res = structured.push_select(primals, vals, out)
            if res is None:
                vals = densify(vals)
        if res is None:
            res = prim.jvp(xp, primals, vals, **params)
        o, t = res
        m = select(xp, primals[0], masks[1], masks[2])
        return o, (Zero(o) if m is ALL else wrap(t, m))
    if prim.partials is None or params:
        return push(prim, primals, vals, params, out)
    m_out = elementwise_mask(xp, prim.partials, masks)
    if m_out is not None and not any(type(t) is Diag for t in vals) and \
            sum(d is not None and m is not ALL for d, m in zip(prim.partials, masks)) > 1 and \
            all(m is ALL or m is m_out or d is None for d, m in zip(prim.partials, masks)):
        # several tangents with one mask: one select, on the output
        if out is None:
            out = prim.bind(*primals)
        t = partials_tangent(xp, prim.partials, primals, vals, out)
        return out, wrap(xp.where(m_out, 0.0, t), m_out)
    partials = guard_partials(prim.partials, masks)  # one select per masked operand
    res = None
    if any(type(t) is Diag for t in vals):
        res = structured.push(prim, primals, vals, params, out, partials)
        if res is None:
            vals = densify(vals)
    if res is None:
        if out is None:
            out = prim.bind(*primals)
        res = out, partials_tangent(xp, partials, primals, vals, out)
    o, t = res
    return o, wrap(t, m_out)


class JVPTrace(Trace):
    __slots__ = ()
    datum_slot = "_tangent"
    array_type: type = Tracer  # the class of its traced arrays

    def lift(self, x: Any) -> Tracer:
        return jvp_tracer(self.main, x, Zero(x), self.array_type)

    def constant_value(self, t: Any) -> Any:
        return t._a if type(t._tangent) is Zero else None

    def datum(self, t: Any) -> Any:
        return unmask(t._tangent)

    def constant_datum(self, v: Any) -> Any:
        return Zero(v)

    def _split(self, args: tuple) -> tuple[list, list]:
        main = self.main
        primals, tangents = [], []
        for a in args:
            if isinstance(a, Tracer) and a._main is main:
                primals.append(a._a)
                tangents.append(a._tangent)
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
        out, tout = push(prim, primals, tangents, params)
        if prim.multiple_results:
            return tuple(self._box(o, t) for o, t in zip(out, tout))
        return self._box(out, tout)

    def _box(self, out: Any, tout: Any) -> Any:
        return new_tracer(self.array_type, self.main, out, "_tangent", Zero(out) if tout is None else tout)

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_jvp(self, args)


def jvp_call(fun: Any, primals: list, tangents: list) -> tuple[Any, Any]:
    """Run ``fun(*flat_primals)`` (flat list in, flat list out) under forward mode."""
    with new_main(JVPTrace) as main:
        outs = fun(*[jvp_tracer(main, p, t) for p, t in zip(primals, tangents)])
        return unbox(main, outs)


def replay(tape: list, in_ids: list, in_tangents: list, out_ids: list, outs: list) -> list:
    """Forward mode over a recorded reverse-mode tape: the output tangents.

    The tape (:mod:`._reverse`) holds every primitive application that depends on
    the inputs, with its primal operands and outputs, in creation order.  Pushing
    tangents through it node by node gives the JVP without evaluating the function
    again (elementwise and reduction rules reuse the recorded outputs).  A tangent
    is dropped after its last use, so a basis of tangents is not kept alive for
    the whole tape.  Tapes with custom-rule nodes are not replayable (see
    :func:`._reverse.replayable`).
    """
    tan: dict = {i: t for i, t in zip(in_ids, in_tangents)
                 if i is not None and t is not None and type(t) is not Zero}
    keep = set(out_ids)
    last: dict = {}
    for k, node in enumerate(tape):
        for i in node.in_ids:
            if i is not None:
                last[i] = k
    for k, node in enumerate(tape):
        ids = node.in_ids
        ts = [None if i is None else tan.get(i) for i in ids]
        for i in ids:
            if i is not None and last.get(i) == k and i not in keep:
                tan.pop(i, None)
        if all(t is None for t in ts):
            continue
        prim, primals = node.prim, node.primals
        tangents = [(Zero(p) if hasattr(p, "shape") else None) if t is None else t
                    for t, p in zip(ts, primals)]
        _, tout = push(prim, primals, tangents, node.params, node.out)
        if prim.multiple_results:
            for i, t in zip(node.out_ids, tout):
                if t is not None and type(t) is not Zero and (i in last or i in keep):
                    tan[i] = t
        else:
            i = node.out_ids[0]
            if tout is not None and type(tout) is not Zero and (i in last or i in keep):
                tan[i] = tout
    return [unmask(tan.get(i, Zero(o))) if i is not None else Zero(o) for i, o in zip(out_ids, outs)]


