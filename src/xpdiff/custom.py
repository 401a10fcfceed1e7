"""User-defined derivative rules: ``custom_jvp`` and ``custom_vjp`` (JAX's style).

A custom function is applied like a primitive: the top trace among its
arguments processes it.  Forward mode calls the user's JVP rule; reverse mode
records one tape node (its pullback is the user's ``bwd``, or for a
``custom_jvp`` the transpose of the JVP rule, obtained by reverse mode over the
rule, which is linear in the tangents); vmap and the ``batch_ndim`` data view
re-bind the call with the user's functions run under their interpretation, so
the rule survives for the transformations above them.

Layer: custom rules and the eager API (above ``xpdiff.transforms``).  May import:
``xpdiff.transforms`` and everything below it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from .core import Zero, instantiate, namespace_for_values, new_main, one_level_down, top_main
from .core import tree as _tree
from .interpreters.batching import BatchTrace, BatchTracer
from .interpreters.dataview import DataContext, DataTracer
from .interpreters.forward import JVPTracer
from .interpreters.reverse import vjp_call
from .interpreters.structured import Diag
from .tracer import Tracer


def _zeros_like(x: Any) -> Any:
    return namespace_for_values([x]).zeros_like(x)


class _Call:
    """A custom function over flat leaves: ``fun(*leaves) -> out leaves``."""

    def __init__(self, fun: Callable, jvp: Callable | None = None, fwd: Callable | None = None,
                 bwd: Callable | None = None):
        self.fun, self.jvp, self.fwd, self.bwd = fun, jvp, fwd, bwd

    def bind(self, leaves: list) -> list:
        top = top_main(tuple(leaves))
        if top is None:
            return self.fun(*leaves)
        return top.trace.process_custom(self, tuple(leaves))

    # forward mode -------------------------------------------------------------------------
    def process_jvp(self, trace: Any, leaves: tuple) -> Any:
        primals, tangents = trace._split(leaves)
        if self.jvp is None:  # custom_vjp under forward mode: differentiate fun itself
            return self.fun(*leaves)
        tangents = [instantiate_like(p, t) for p, t in zip(primals, tangents)]
        with one_level_down(trace.main):
            outs, touts = self.jvp(primals, tangents)
        return [o if isinstance(t, Zero) else JVPTracer(trace.main, o, t)
                for o, t in zip(outs, touts)]

    # reverse mode (here and in the eager trace) -------------------------------------------
    def forward(self, primals: list, tracked: list) -> tuple[list, Any]:
        """The outputs and what :meth:`backward` needs: ``fwd`` run on ``tracked`` (the
        primals as the caller wants the residuals kept), or the function itself on
        ``primals`` (a ``custom_jvp``: its backward pass transposes the rule)."""
        if self.fwd is not None:
            return self.fwd(*tracked)
        return self.bind(primals), None

    def backward(self, res: Any) -> Callable:
        """The tape node's pullback ``(cotangents, node) -> operand cotangents``: ``bwd``
        on the residuals, or reverse mode over the JVP rule at the node's primals."""
        if self.fwd is not None:
            bwd = self.bwd

            def pull(gs: list, node: Any) -> list:
                return list(bwd(res, [_zeros_like(o) if g is None else g
                                      for g, o in zip(gs, node.out)]))
        else:
            rule = self.jvp

            def pull(gs: list, node: Any) -> list:
                prim = node.primals
                _, pullback = vjp_call(lambda *ts: list(rule(prim, list(ts))[1]),
                                       [_zeros_like(p) for p in prim])
                return pullback(list(gs))
        return pull

    def process_vjp(self, trace: Any, leaves: tuple) -> Any:
        primals, ids = trace._split(leaves)
        if all(i is None for i in ids):
            return self.bind(primals)
        with one_level_down(trace.main):
            outs, res = self.forward(primals, primals)
        return list(trace.record(None, {}, list(primals), ids, tuple(outs),
                                 custom=self.backward(res)))

    # vmap and the data view: re-bind with the user's functions run under this trace ---------
    def process_passthrough(self, trace: Any, leaves: tuple) -> Any:
        main = trace.main
        vals, flags = [], []
        for a in leaves:
            mine = isinstance(a, Tracer) and a._main is main
            vals.append(a._a if mine else a)
            flags.append(bool(a._b) if mine else False)
        wrap = _Wrapper(trace, flags)
        new = _Call(wrap.fn(self.fun),
                    jvp=wrap.rule(self.jvp) if self.jvp else None,
                    fwd=wrap.fwd(self.fwd) if self.fwd else None,
                    bwd=wrap.bwd(self.bwd) if self.bwd else None)
        outs = new.bind(vals)
        return [wrap.box(trace, o) for o in outs]


def instantiate_like(p: Any, t: Any) -> Any:
    if type(t) is Diag:
        return t.dense()
    return instantiate(namespace_for_values([p]), t) if isinstance(t, Zero) else t


class _Wrapper:
    """Run the user's functions under a batching-like interpretation (vmap or the
    data view), one level down from ``trace``.

    Each call opens a fresh main of the same kind and data, so a function called
    later (a pullback swept after ``trace`` has ended) still nests correctly.
    """

    def __init__(self, trace: Any, flags: list):
        self.kind = type(trace)
        self.data = dict(trace.main.data)
        self.flags = flags
        self.batch = isinstance(trace, BatchTrace)
        self.res_def: Any = None
        self.res_flags: list = []

    def _wrap(self, main: Any, vals: list, flags: list) -> list:
        cls = BatchTracer if self.batch else DataTracer
        return [cls(main, v, True) if f else v for v, f in zip(vals, flags)]

    def _unwrap(self, main: Any, outs: list, keep: list | None = None) -> list:
        """Values one level down, carrying the batch (or data) dims; where ``keep[i]``, a
        value that does not carry them stays as it is (the same for every sample).
        ``None`` (a zero) stays ``None``."""
        res = []
        for i, o in enumerate(outs):
            if isinstance(o, Tracer) and o._main is main:
                if not self.batch or o._b:
                    res.append(o._a)
                    continue
                o = o._a
            res.append(o if o is None or keep is not None and keep[i] else self._materialise(o))
        return res

    def _carries(self, main: Any, o: Any) -> bool:
        return isinstance(o, Tracer) and o._main is main and (not self.batch or bool(o._b))

    def _materialise(self, o: Any) -> Any:
        d = self.data
        if self.batch:
            return namespace_for_values([o]).broadcast_to(o, (d["size"],) + tuple(o.shape))
        return DataContext(d["k"], d["B"], d["index"], d["where"], "custom").lift(o)

    def call(self, fn: Callable, groups: list[tuple[list, list]]) -> Any:
        """``fn(*wrapped groups)`` under a fresh main; returns what ``fn`` returns."""
        with new_main(self.kind, **self.data) as main:
            out = fn(main, *[self._wrap(main, v, f) for v, f in groups])
        return out

    def box(self, main_trace: Any, o: Any) -> Any:
        if self.batch:
            return BatchTracer(main_trace.main, o, True)
        return DataTracer(main_trace.main, o, True)

    def fn(self, fun: Callable) -> Callable:
        return lambda *vals: self.call(
            lambda m, v: self._unwrap(m, list(fun(*v))), [(list(vals), self.flags)])

    def rule(self, jvp: Callable) -> Callable:
        def r(primals, tangents):
            def run(m, p, t):
                outs, touts = jvp(p, t)
                return self._unwrap(m, list(outs)), self._unwrap(m, list(touts))

            return self.call(run, [(list(primals), self.flags), (list(tangents), self.flags)])

        return r

    def fwd(self, fwd: Callable) -> Callable:
        def f(*vals):
            def run(m, v):
                outs, res = fwd(*v)
                rl, self.res_def = _tree.flatten(res)
                self.res_flags = [self._carries(m, r) for r in rl]  # shared residuals stay shared
                return self._unwrap(m, list(outs)), self._unwrap(m, rl, [True] * len(rl))

            return self.call(run, [(list(vals), self.flags)])

        return f

    def bwd(self, bwd: Callable) -> Callable:
        # under vmap an unbatched argument's cotangent is summed over the batch below; under
        # the data view a shared one is given per sample (or the same for every sample)
        keep = None if self.batch else [not f for f in self.flags]

        def b(res, gs):
            def run(m, r, g):
                cts = bwd(_tree.unflatten(self.res_def, r), g)
                return self._unwrap(m, list(cts), keep)

            out = self.call(run, [(list(res), self.res_flags), (list(gs), [True] * len(gs))])
            if self.batch:
                out = [c if f or c is None else namespace_for_values([c]).sum(c, axis=0)
                       for c, f in zip(out, self.flags)]
            return out

        return b


class custom_jvp:
    """A function with a user-given JVP rule (``f.defjvp(rule)``), as in JAX.

    The rule is ``rule(primals, tangents) -> (out, out_tangent)`` with tuples of
    arguments; it must be linear in the tangents.  The function composes with
    every transformation (reverse mode transposes the rule).

    >>> import numpy as np, xpdiff as xd
    >>> @xd.custom_jvp
    ... def log1pexp(x):
    ...     xp = x.__array_namespace__()
    ...     return xp.log1p(xp.exp(x))
    >>> @log1pexp.defjvp
    ... def _(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     xp = x.__array_namespace__()
    ...     return log1pexp(x), t / (1 + xp.exp(-x))
    >>> xd.grad(lambda x: xd.numpy.sum(log1pexp(x)))(np.array([50.0]))
    array([1.])
    """

    def __init__(self, fun: Callable):
        update_wrapper(self, fun)
        self.fun = fun
        self.rule: Callable | None = None

    def defjvp(self, rule: Callable) -> Callable:
        """Set the JVP rule ``rule(primals, tangents) -> (out, out_tangent)``."""
        self.rule = rule
        return rule

    def __call__(self, *args: Any) -> Any:
        if self.rule is None:
            raise TypeError(f"custom_jvp {self.fun.__name__}: no rule; call "
                            f"{self.fun.__name__}.defjvp(rule) first")
        leaves, in_def = _tree.flatten(args)
        out_def: list = []

        def fun(*ls):
            out = self.fun(*_tree.unflatten(in_def, list(ls)))
            ol, od = _tree.flatten(out)
            out_def.append(od)
            return ol

        def jvp(primals, tangents):
            out, tout = self.rule(_tree.unflatten(in_def, list(primals)),
                                  _tree.unflatten(in_def, list(tangents)))
            ol, od = _tree.flatten(out)
            out_def.append(od)
            return ol, _tree.flatten(tout)[0]

        outs = _Call(fun, jvp=jvp).bind(leaves)
        return _tree.unflatten(out_def[-1], list(outs))


class custom_vjp:
    """A function with a user-given VJP (``f.defvjp(fwd, bwd)``), as in JAX.

    ``fwd(*args) -> (out, residuals)``; ``bwd(residuals, g) -> tuple`` with one
    cotangent per argument.  Forward mode differentiates the function itself.

    >>> import numpy as np, xpdiff as xd
    >>> @xd.custom_vjp
    ... def clip_grad(x):
    ...     return x
    >>> clip_grad.defvjp(lambda x: (x, None),
    ...                  lambda res, g: (g.__array_namespace__().clip(g, -1.0, 1.0),))
    >>> xd.grad(lambda x: xd.numpy.sum(3 * clip_grad(x)))(np.array([2.0]))
    array([1.])
    """

    def __init__(self, fun: Callable):
        update_wrapper(self, fun)
        self.fun = fun
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set ``fwd(*args) -> (out, res)`` and ``bwd(res, g) -> cotangents``."""
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any) -> Any:
        if self.fwd is None:
            raise TypeError(f"custom_vjp {self.fun.__name__}: no rule; call "
                            f"{self.fun.__name__}.defvjp(fwd, bwd) first")
        leaves, in_def = _tree.flatten(args)
        out_def: list = []

        def fun(*ls):
            out = self.fun(*_tree.unflatten(in_def, list(ls)))
            ol, od = _tree.flatten(out)
            out_def.append(od)
            return ol

        def fwd(*ls):
            out, res = self.fwd(*_tree.unflatten(in_def, list(ls)))
            ol, od = _tree.flatten(out)
            out_def.append(od)
            return ol, res

        def bwd(res, gs):
            g = _tree.unflatten(out_def[-1], list(gs))
            cts = self.bwd(res, g)
            if not isinstance(cts, tuple):
                raise TypeError(f"custom_vjp {self.fun.__name__}: bwd must return a tuple with one "
                                f"cotangent per argument")
            return _tree.flatten(cts)[0]

        outs = _Call(fun, fwd=fwd, bwd=bwd).bind(leaves)
        return _tree.unflatten(out_def[-1], list(outs))
