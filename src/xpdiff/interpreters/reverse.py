"""Reverse mode: a tape of primitive applications, walked once in reverse.

Nodes are numbered in creation order, which is a topological order of the
graph, so one backward sweep over the numbers (no recursion) visits every
node after all of its consumers: cost linear in the graph size, shared
subexpressions visited once.  The tape can be swept many times (new
cotangents, basis of cotangents under vmap, higher orders).

Layer: interpreters.  May import: ``xpdiff.core``, ``xpdiff.tracer``,
``xpdiff.interpreters.structured``, ``.masked`` and ``.forward`` (forward mode
replays a tape).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core import Primitive, RuleError, Trace, Zero, bind, namespace_for_values, new_main
from ..tracer import Tracer, new_tracer, unbox
from . import structured
from .forward import replay
from .masked import Masked, both, either, guard_partials, reduce_mask, unmask, unmask_all, where_masks, wrap
from .structured import Diag, densify


def reverse_tracer(main: Any, primal: Any, node_id: Any, cls: type = Tracer) -> Any:
    """A traced array of reverse mode's ``main``: ``_a`` the primal, ``_node_id`` the id of
    the node that made it (``None`` for a constant)."""
    return new_tracer(cls, main, primal, "_node_id", node_id)


class Node:
    __slots__ = ("prim", "params", "primals", "in_ids", "out", "out_ids", "custom")

    def __init__(self, prim, params, primals, in_ids, out, out_ids, custom=None):
        self.prim = prim
        self.params = params
        self.primals = primals
        self.in_ids = in_ids
        self.out = out
        self.out_ids = out_ids
        self.custom = custom


class ReverseTrace(Trace):
    __slots__ = ("tape", "n_ids")
    datum_slot = "_node_id"

    def __init__(self, main: Any):
        super().__init__(main)
        self.tape: list[Node] = []
        self.n_ids = 0

    def new_id(self) -> int:
        self.n_ids += 1
        return self.n_ids - 1

    def lift(self, x: Any) -> Tracer:
        return reverse_tracer(self.main, x, None)

    def constant_value(self, t: Any) -> Any:
        return t._a if t._node_id is None else None

    def datum(self, t: Any) -> Any:
        return t._node_id

    def _split(self, args: tuple) -> tuple[list, list]:
        main = self.main
        primals, ids = [], []
        for a in args:
            if isinstance(a, Tracer) and a._main is main:
                primals.append(a._a)
                ids.append(a._node_id)
            else:
                primals.append(a)
                ids.append(None)
        return primals, ids

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        main = self.main
        primals, ids, any_id = [], [], False
        for a in args:
            if isinstance(a, Tracer) and a._main is main:
                primals.append(a._a)
                i = a._node_id
                ids.append(i)
                any_id = any_id or i is not None
            else:
                primals.append(a)
                ids.append(None)
        out = bind(prim, primals, params)
        if not prim.differentiable or not any_id:
            if prim.multiple_results:
                return tuple(reverse_tracer(main, o, None) for o in out)
            return new_tracer(Tracer, main, out, "_node_id", None)
        if prim.vjp is None:
            raise RuleError(
                f"Differentiation rule for '{prim.name}' not implemented (reverse mode / vjp); "
                f"wrap the computation in xpdiff.custom_vjp to give it a rule"
            )
        if not prim.multiple_results:  # the common case, inlined
            oid = self.n_ids
            self.n_ids = oid + 1
            self.tape.append(Node(prim, params, primals, ids, out, (oid,), None))
            return new_tracer(Tracer, main, out, "_node_id", oid)
        return self.record(prim, params, primals, ids, out)

    def record(self, prim, params, primals, ids, out, custom=None) -> Any:
        if custom is None and not prim.multiple_results:  # the common case
            oid = self.n_ids
            self.n_ids = oid + 1
            self.tape.append(Node(prim, params, primals, ids, out, (oid,), None))
            return reverse_tracer(self.main, out, oid)
        if prim is not None and prim.multiple_results or custom is not None and isinstance(out, tuple):
            out_ids = [self.new_id() for _ in out]
            node = Node(prim, params, primals, ids, out, out_ids, custom)
            self.tape.append(node)
            return tuple(reverse_tracer(self.main, o, i) for o, i in zip(out, out_ids))
        oid = self.new_id()
        self.tape.append(Node(prim, params, primals, ids, out, [oid], custom))
        return reverse_tracer(self.main, out, oid)

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.process_vjp(self, args)


def backward(nodes: Iterable[Node], out_ids: list, cts: list, in_ids: list, likes: list) -> list:
    """Sweep the recorded ``nodes``, given last first (``reversed(tape)``), once from the
    outputs; return the cotangents of ``in_ids`` (``likes``: the inputs, for zeros).

    An output cotangent may be a structured identity basis
    (:class:`.structured.Diag`, from ``jacrev``): nodes that can keep the structure
    do (:func:`.structured.pull`), the others get it densified.  ``where`` nodes and
    masked cotangents go to :func:`_pull_masked` (docs/where.md)."""
    acc: dict[int, Any] = {}
    xp = namespace_for_values([*likes, *cts])  # one backend per tape (mixing backends is refused)
    is_structured = any(type(c) is Diag for c in cts)
    if is_structured:
        def plus(a: Any, b: Any) -> Any:
            return structured.add(xp, a, b)
    else:
        plus = xp.add

    for i, c in zip(out_ids, cts):
        if i is not None and c is not None and type(c) is not Zero:
            prev = acc.get(i)
            acc[i] = c if prev is None else plus(prev, c)
    pop = acc.pop
    get = acc.get
    for node in nodes:
        oids = node.out_ids
        if len(oids) == 1:
            g = pop(oids[0], None)
            if g is None:
                continue
            gs = None
        else:
            gs = [pop(i, None) for i in oids]
            if all(g is None for g in gs):
                continue
        node_ids = node.in_ids
        needs = [i is not None for i in node_ids]
        prim = node.prim
        if gs is None and (type(g) is Masked or prim is not None and prim.select):
            in_cts = _pull_masked(node, g, needs)
            if in_cts is None:  # a rule that does not keep masks: the plain value
                g = unmask(g)
            else:
                for i, c in zip(node_ids, in_cts):
                    if i is not None and c is not None and type(c) is not Zero:
                        prev = get(i)
                        acc[i] = c if prev is None else (
                            plus(prev, c) if type(prev) is not Masked and type(c) is not Masked
                            else _add(prev, c, plus))
                continue
        elif gs is not None:
            gs = unmask_all(gs)
        if is_structured:
            if gs is None and type(g) is Diag and node.custom is None:
                in_cts = structured.pull(node.prim, g, node.out, node.primals, needs, node.params)
                if in_cts is not None:
                    for i, c in zip(node_ids, in_cts):
                        if i is not None and c is not None and type(c) is not Zero:
                            prev = get(i)
                            acc[i] = c if prev is None else (
                                plus(prev, c) if type(prev) is not Masked and type(c) is not Masked
                                else _add(prev, c, plus))
                    continue
            if gs is None:
                g = densify([g])[0]
            else:
                gs = densify(gs)
        if node.custom is not None:
            in_cts = node.custom([g] if gs is None else gs, node)
        else:
            if node.prim.multiple_results:
                g = [Zero(o) if gi is None else gi for gi, o in zip([g] if gs is None else gs, node.out)]
            in_cts = node.prim.vjp(xp, g, node.out, node.primals, needs, **node.params)
        for i, c in zip(node_ids, in_cts):
            if i is not None and c is not None and type(c) is not Zero:
                prev = get(i)
                acc[i] = c if prev is None else (
                    plus(prev, c) if type(prev) is not Masked and type(c) is not Masked
                    else _add(prev, c, plus))
    return [unmask(acc.get(i, Zero(like))) if i is not None else Zero(like)
            for i, like in zip(in_ids, likes)]


def _add(a: Any, b: Any, plus: Any) -> Any:
    """``a + b`` of two cotangents: masked where both are (an unmasked one unmasks)."""
    if type(a) is not Masked and type(b) is not Masked:
        return plus(a, b)
    if type(a) is Masked and type(b) is Masked:
        m = both(namespace_for_values([a.mask]), a.mask, b.mask)
        return wrap(plus(a.value, b.value), m)
    return plus(unmask(a), unmask(b))


def _pull_masked(node: Node, g: Any, needs: list) -> list | None:
    """Operand cotangents of a ``where`` node, or of any node for a masked cotangent
    ``g`` (docs/where.md); ``None`` where the rule does not keep masks (the caller
    runs it on the plain value)."""
    prim = node.prim
    gv, gm = (g.value, g.mask) if type(g) is Masked else (g, None)
    primals, out = node.primals, node.out
    if node.custom is None and prim.written is not None:  # a write: masked where it wrote
        xp = namespace_for_values(primals)
        cts = list(prim.vjp(xp, densify([gv])[0], out, primals, needs, **node.params))
        if cts[0] is not None:
            cts[0] = wrap(cts[0], either(xp, prim.written(xp, primals, node.params), gm))
        return cts
    if node.custom is not None or prim.partials is None or node.params:
        return None
    xp = namespace_for_values(primals)
    if prim.select:
        cts = structured.pull(prim, gv, out, primals, needs, node.params) \
            if type(gv) is Diag else None
        if cts is None:
            cts = prim.vjp(xp, densify([gv])[0], out, primals, needs)
        ma, mb = where_masks(xp, primals[0], gm)
        return [None, wrap(cts[1], reduce_mask(xp, ma, out.shape, primals[1].shape)),
                wrap(cts[2], reduce_mask(xp, mb, out.shape, primals[2].shape))]
    partials = guard_partials(prim.partials, [gm] * len(primals))
    cts = structured.pull(prim, gv, out, primals, needs, node.params, partials) \
        if type(gv) is Diag else None
    if cts is None:
        cts = prim.vjp(xp, densify([gv])[0], out, primals, needs, partials=partials)
    return [None if c is None else wrap(c, reduce_mask(xp, gm, out.shape, x.shape))
            for c, x in zip(cts, primals)]


class Pullback:
    """The pullback of a recorded evaluation: call it with output cotangents.

    It also pushes tangents *forward* through the same tape (:meth:`forward`), so a
    caller that recorded the function once (``jacobian(mode="auto")``, ``jacfwd``)
    can run forward mode without evaluating it again.
    """

    __slots__ = ("trace", "out_ids", "in_ids", "primals", "outs")

    def __init__(self, trace: ReverseTrace, out_ids: list, in_ids: list, primals: list,
                 outs: list):
        self.trace, self.out_ids, self.in_ids = trace, out_ids, in_ids
        self.primals, self.outs = primals, outs

    def __call__(self, cts: list) -> list:
        return backward(reversed(self.trace.tape), self.out_ids, cts, self.in_ids, self.primals)

    @property
    def replayable(self) -> bool:
        """Whether :meth:`forward` applies (no custom-rule nodes on the tape)."""
        return all(node.custom is None for node in self.trace.tape)

    def forward(self, tangents: list) -> list:
        """The output tangents for input ``tangents`` (forward mode over the tape)."""
        return replay(self.trace.tape, self.in_ids, tangents, self.out_ids, self.outs)


def vjp_call(fun: Any, primals: list) -> tuple[list, Pullback]:
    """Run ``fun(*flat_primals)`` recording a tape; return outputs and a pullback."""
    with new_main(ReverseTrace) as main:
        trace: ReverseTrace = main.trace
        in_ids = [trace.new_id() for _ in primals]  # (fun may rebind its inputs: x[i] = v)
        res, out_ids = unbox(main, fun(*[reverse_tracer(main, p, i) for p, i in zip(primals, in_ids)]))
    return res, Pullback(trace, out_ids, in_ids, primals, res)
