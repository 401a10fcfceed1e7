"""User-defined derivative rules: ``custom_jvp`` and ``custom_vjp`` (JAX's style).

A custom function is applied like a primitive: the top trace among its
arguments processes it.  Forward mode calls the user's JVP rule; reverse mode
records one tape node (its pullback is the user's ``bwd``, or for a
``custom_jvp`` the transpose of the JVP rule, obtained by reverse mode over the
rule, which is linear in the tangents); vmap and the ``batch_ndim`` data view
re-bind the call with the user's functions run under their interpretation, so
the rule survives for the transformations above them.

What the user's rules return is checked where they return it (:class:`_Rules`):
pytree structure, shapes and dtypes against the function's arguments and
outputs, so a wrong rule raises :class:`CustomRuleError` naming the rule, the
argument or output and what was expected, in every mode.

Layer: custom rules and the eager API (above ``xpdiff.transforms``).  May import:
``xpdiff.transforms`` and everything below it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from .core import (
    XpdiffError,
    Zero,
    instantiate,
    namespace_for_values,
    new_main,
    one_level_down,
    raw_namespace,
    top_main,
)
from .core import tree as _tree
from .interpreters.batching import BatchTrace, batch_tracer
from .interpreters.dataview import DataContext, DataTrace, data_tracer
from .interpreters.forward import jvp_tracer
from .interpreters.reverse import vjp_call
from .interpreters.structured import Diag
from .tracer import Tracer


class CustomRuleError(XpdiffError, TypeError):
    """A ``custom_jvp`` / ``custom_vjp`` rule returned something that does not fit its
    function: not the pair or tuple asked for, or a value whose pytree structure,
    shape or dtype differs from the argument or output it stands for (see
    docs/api/custom.md)."""


def _zeros_like(x: Any) -> Any:
    return namespace_for_values([x]).zeros_like(x)


class _Call:
    """A custom function over flat leaves: ``fun(*leaves) -> out leaves``.

    ``jvp(primals, tangents) -> (outs, tangents)``; ``fwd(*leaves) -> (outs, res)``
    and ``bwd(res, cotangents) -> cotangents`` (a ``None`` tangent or cotangent is
    a zero)."""

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
        return [o if t is None or isinstance(t, Zero) else jvp_tracer(trace.main, o, t)
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
            flags.append(trace.datum(a) if mine else False)
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
        if self.batch:
            return [batch_tracer(main, v, True) if f else v for v, f in zip(vals, flags)]
        return [data_tracer(main, v) if f else v for v, f in zip(vals, flags)]

    def _unwrap(self, main: Any, outs: list, keep: list | None = None) -> list:
        """Values one level down, carrying the batch (or data) dims; where ``keep[i]``, a
        value that does not carry them stays as it is (the same for every sample).
        ``None`` (a zero) stays ``None``."""
        res = []
        for i, o in enumerate(outs):
            if isinstance(o, Tracer) and o._main is main:
                if not self.batch or o._batched:
                    res.append(o._a)
                    continue
                o = o._a
            res.append(o if o is None or keep is not None and keep[i] else self._materialise(o))
        return res

    def _carries(self, main: Any, o: Any) -> bool:
        return isinstance(o, Tracer) and o._main is main and (not self.batch or o._batched)

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
            return batch_tracer(main_trace.main, o, True)
        return data_tracer(main_trace.main, o)

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


# --- checking what the user's rules return --------------------------------------------------

_FLOATING: dict = {}  # dtype -> whether it is a real or complex floating dtype


def _spec(x: Any) -> tuple | None:
    """``(shape, dtype, floating, data dims)`` of an array leaf; ``None`` for anything else."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return None
    dt = x.dtype
    floating = _FLOATING.get(dt)
    if floating is None:
        try:
            floating = raw_namespace(x).isdtype(dt, ("real floating", "complex floating"))
        except TypeError:  # not an array of a backend xpdiff knows
            return None
        _FLOATING[dt] = floating
    data = len(x._main.data["B"]) if isinstance(x, Tracer) and isinstance(x._main.trace, DataTrace) else 0
    return tuple(x.shape), dt, floating, data


def _text(spec: tuple) -> str:
    return f"shape {spec[0]} and dtype {spec[1]}"


class _Rules:
    """The user's function and rules over flat leaves, for one call of a custom function:
    remembers the output structure, and checks what each rule returns.

    ``owner`` is the ``custom_jvp`` / ``custom_vjp``; ``specs`` the argument leaves'
    :func:`_spec` (taken only when a ``bwd`` has to be checked against them)."""

    def __init__(self, owner: Any, in_def: Any, specs: list | None):
        self.owner, self.in_def, self.specs = owner, in_def, specs
        self.out_def: Any = None
        self.fun_out: tuple | None = None  # (treedef, leaf specs) of the function's output

    # error text --------------------------------------------------------------------------
    def _error(self, word: str, rule: Callable, what: str, fix: str) -> CustomRuleError:
        o = self.owner
        name = getattr(rule, "__name__", "")
        name = "" if name in ("", "_", "<lambda>") else f" {name}"
        return CustomRuleError(f"{o.kind} {o.__name__}: its {word} rule{name} {what}; {fix}")

    def _arg_names(self) -> list[str]:
        n = self.in_def.num_children
        try:
            params = list(inspect.signature(self.owner.fun).parameters.values())
        except (TypeError, ValueError):
            params = []
        names = [p.name for p in params
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n]
        return names + [f"argument {i}" for i in range(len(names), n)]

    def _leaf_name(self, path: tuple) -> str:
        return self._arg_names()[path[0]] + _tree.path_text(path[1:])

    # the function ------------------------------------------------------------------------
    def fun(self, *leaves: Any) -> list:
        out = self.owner.fun(*_tree.unflatten(self.in_def, list(leaves)))
        ol, self.out_def = _tree.flatten(out)
        self.fun_out = (self.out_def, [_spec(o) for o in ol])
        return ol

    def _outputs(self, word: str, rule: Callable, out: Any, what: str) -> list:
        ol, self.out_def = _tree.flatten(out)
        if self.fun_out is None:  # the function did not run in this call (its rule replaces it)
            return ol
        fdef, fspecs = self.fun_out
        if self.out_def != fdef:
            raise self._error(word, rule, f"returned {what} of structure {self.out_def}, but "
                              f"{self.owner.__name__} returns {fdef}",
                              f"its {what} is {self.owner.__name__}'s output")
        for path, o, fs in zip(fdef.paths(), ol, fspecs):
            s = _spec(o)
            if fs is not None and (s is None or s[:2] != fs[:2]):
                got = _text(s) if s is not None else type(o).__name__
                raise self._error(word, rule, f"returned {what} of {got} at "
                                  f"output{_tree.path_text(path)}, where {self.owner.__name__} "
                                  f"returns {_text(fs)}",
                                  f"its {what} is {self.owner.__name__}'s output")
        return ol

    # custom_jvp --------------------------------------------------------------------------
    def jvp(self, primals: list, tangents: list) -> tuple[list, list]:
        rule = self.owner.rule
        pair = rule(_tree.unflatten(self.in_def, list(primals)),
                    _tree.unflatten(self.in_def, list(tangents)))
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise self._error("jvp", rule, f"returned {_what(pair)}",
                              "return a pair (primal output, tangent output)")
        out, tout = pair
        ol = self._outputs("jvp", rule, out, "a primal output")
        try:
            tl = self.out_def.flatten_up_to(tout)
        except (ValueError, TypeError):
            raise self._error("jvp", rule, f"returned a tangent output of structure "
                              f"{_tree.flatten(tout)[1]} for a primal output of structure "
                              f"{self.out_def}", "the tangent output has the primal output's "
                              "structure") from None
        return ol, [self._tangent(rule, o, t, path)
                    for o, t, path in zip(ol, tl, self.out_def.paths())]

    def _tangent(self, rule: Callable, o: Any, t: Any, path: tuple) -> Any:
        ps = _spec(o)
        if ps is None or t is None:
            return None
        ts = _spec(t)
        where = f"output{_tree.path_text(path)}"
        if ts is None or not _same_shape(ts, ps) or ps[2] and ts[1] != ps[1]:
            got = _text(ts) if ts is not None else _what(t)
            raise self._error("jvp", rule, f"returned a tangent of {got} for the primal {where} of "
                              f"{_text(ps)}", "a tangent has its primal's shape and dtype "
                              "(None for a zero tangent)")
        return t if ps[2] else None  # an integer output has no tangent

    # custom_vjp --------------------------------------------------------------------------
    def fwd(self, *leaves: Any) -> tuple[list, Any]:
        fwd = self.owner.fwd
        pair = fwd(*_tree.unflatten(self.in_def, list(leaves)))
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise self._error("fwd", fwd, f"returned {_what(pair)}",
                              "return a pair (output, residuals for bwd)")
        out, res = pair
        return self._outputs("fwd", fwd, out, "an output"), res

    def bwd(self, res: Any, gs: list) -> list:
        bwd = self.owner.bwd
        cts = bwd(res, _tree.unflatten(self.out_def, list(gs)))
        n = self.in_def.num_children
        if not isinstance(cts, tuple) or len(cts) != n:
            names = self._arg_names()
            fix = (f"return a tuple with one cotangent per positional argument of "
                   f"{self.owner.__name__} ({', '.join(names)}), None for an argument without one")
            if not isinstance(cts, tuple):
                raise self._error("bwd", bwd, f"returned {_what(cts)}",
                                  fix + ", even for one argument: (g,)")
            raise self._error("bwd", bwd, f"returned {len(cts)} cotangent(s) for {n} "
                              f"argument(s)", fix)
        flat: list = []
        for i, (sub, ct) in enumerate(zip(self.in_def.children(), cts)):
            if ct is None:
                flat.extend([None] * sub.num_leaves)
                continue
            try:
                flat.extend(sub.flatten_up_to(ct))
            except (ValueError, TypeError):
                raise self._error("bwd", bwd, f"returned a cotangent of structure "
                                  f"{_tree.flatten(ct)[1]} for {self._arg_names()[i]}, of "
                                  f"structure {sub}", "a cotangent has its argument's structure "
                                  "(None for a zero leaf)") from None
        return [self._cotangent(bwd, c, s, p)
                for c, s, p in zip(flat, self.specs, self.in_def.paths())]

    def _cotangent(self, bwd: Callable, c: Any, spec: tuple | None, path: tuple) -> Any:
        if c is None or spec is None:
            return None  # a zero, or the cotangent of a leaf that is not an array
        cs = _spec(c)
        if cs is None or not _same_shape(cs, spec) or spec[2] and cs[1] != spec[1]:
            got = _text(cs) if cs is not None else _what(c)
            raise self._error("bwd", bwd, f"returned a cotangent of {got} for "
                              f"{self._leaf_name(path)}, which has {_text(spec)}",
                              "a cotangent has its argument's shape and dtype (None for a zero)")
        return c if spec[2] else None  # an integer argument has no cotangent


def _same_shape(got: tuple, want: tuple) -> bool:
    """Shapes as the rule sees them; under ``batch_ndim`` a per-sample value (data dims
    first) also stands for a shared one (each sample's own derivative)."""
    if got[0] == want[0]:
        return True
    k = got[3] - want[3]
    return k > 0 and got[0][k:] == want[0]


def _what(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of length {len(x)}"
    s = _spec(x)
    return f"an array of {_text(s)}" if s is not None else f"a {type(x).__name__}"


class _Custom:
    """What ``custom_jvp`` and ``custom_vjp`` share: the call over flat leaves, checked."""

    kind = ""  # "custom_jvp" / "custom_vjp"
    define = ""  # how to define the rules

    def __init__(self, fun: Callable):
        update_wrapper(self, fun)
        self.fun = fun

    def _defined(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _call(self, rules: _Rules) -> _Call:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, *args: Any) -> Any:
        if not self._defined():
            name = self.fun.__name__
            raise TypeError(f"{self.kind} {name}: no rule; call {name}.{self.define} first")
        leaves, in_def = _tree.flatten(args)
        # a bwd is checked against the arguments: their specs, not the arrays (not kept alive)
        rules = _Rules(self, in_def, [_spec(x) for x in leaves] if self.kind == "custom_vjp"
                       else None)
        outs = self._call(rules).bind(leaves)
        return _tree.unflatten(rules.out_def, list(outs))


class custom_jvp(_Custom):
    """A function with a user-given JVP rule (``f.defjvp(rule)``), as in JAX.

    The rule is ``rule(primals, tangents) -> (out, out_tangent)`` with tuples of
    arguments; it must be linear in the tangents.  The function composes with
    every transformation (reverse mode transposes the rule).  ``out_tangent`` has
    ``out``'s pytree structure, and each tangent the shape and dtype of its output
    (``None`` for a zero); ``out`` is the function's output.  A rule that returns
    anything else raises :class:`CustomRuleError`.

    Complex numbers (docs/complex.md): the rule returns what :func:`xpdiff.jvp`
    computes, the derivative along the tangent as a real direction (``f'(z) * t``
    for a holomorphic ``f``; it may use ``conj(t)``: real-linear is enough), and
    reverse mode transposes it for the real pairing, so ``grad`` and ``jacrev`` of
    the function follow their usual convention.

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

    kind = "custom_jvp"
    define = "defjvp(rule)"

    def __init__(self, fun: Callable):
        super().__init__(fun)
        self.rule: Callable | None = None

    def defjvp(self, rule: Callable) -> Callable:
        """Set the JVP rule ``rule(primals, tangents) -> (out, out_tangent)``."""
        self.rule = rule
        return rule

    def _defined(self) -> bool:
        return self.rule is not None

    def _call(self, rules: _Rules) -> _Call:
        return _Call(rules.fun, jvp=rules.jvp)


class custom_vjp(_Custom):
    """A function with a user-given VJP (``f.defvjp(fwd, bwd)``), as in JAX.

    ``fwd(*args) -> (out, residuals)``; ``bwd(residuals, g) -> tuple`` with one
    cotangent per positional argument, each of its argument's pytree structure,
    shapes and dtypes (``None`` for a zero).  A rule that returns anything else
    raises :class:`CustomRuleError`.  Forward mode differentiates the function
    itself.

    Complex numbers (docs/complex.md): ``bwd`` returns what :func:`xpdiff.vjp`
    computes, the transpose for the real pairing ``real(sum(a * b))`` without
    conjugation, as in JAX: ``g * f'(z)`` for a holomorphic ``f``, not PyTorch's
    ``g * conj(f'(z))``.

    >>> import numpy as np, xpdiff as xd
    >>> @xd.custom_vjp
    ... def clip_grad(x):
    ...     return x
    >>> clip_grad.defvjp(lambda x: (x, None),
    ...                  lambda res, g: (g.__array_namespace__().clip(g, -1.0, 1.0),))
    >>> xd.grad(lambda x: xd.numpy.sum(3 * clip_grad(x)))(np.array([2.0]))
    array([1.])
    """

    kind = "custom_vjp"
    define = "defvjp(fwd, bwd)"

    def __init__(self, fun: Callable):
        super().__init__(fun)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set ``fwd(*args) -> (out, res)`` and ``bwd(res, g) -> cotangents``."""
        self.fwd, self.bwd = fwd, bwd

    def _defined(self) -> bool:
        return self.fwd is not None

    def _call(self, rules: _Rules) -> _Call:
        return _Call(rules.fun, fwd=rules.fwd, bwd=rules.bwd)
