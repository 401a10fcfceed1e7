"""A recorded program of backend calls and the passes over it (the backend layer of ``jit``).

A :class:`Program` is a flat list of :class:`Call` s on numbered values: the inputs,
constants (arrays read by reference at each run, or values folded at trace time)
and the outputs of earlier calls.  :class:`Guard` s sit between the calls: a value
that left the array world while tracing (``bool(x)``, ``int(x)``, a data-dependent
shape) is recomputed there and compared with what it gave.  Nothing here knows
tracers: a program holds raw arrays and plain Python values only.

Passes (each a function ``Program -> Program`` or an analysis):

* :func:`fold_constants`: calls whose operands are all trace-time constants made
  during tracing (an identity basis, an index array) run once, at trace time;
* :func:`eliminate_identities`: a product with (or a quotient by) a folded constant
  of ones that changes neither the other operand's shape nor its real dtype is that
  operand (``x * 1`` is ``x`` bit for bit in real arithmetic);
* :func:`eliminate_selects`: ``where`` on a condition known at build time to be
  uniform (a folded boolean, or ``logical_and``/``logical_or`` absorbed by one) is
  the operand it selects;
* :func:`simplify_permutes` and :func:`simplify_reshapes`: chains of views (a
  permute of a permute, a permute that moves only unit dims, a reshape of a reshape)
  become one view or none;
* :func:`eliminate_common` (CSE): a call equal to an earlier one (same function,
  same operands, same parameters) reuses its result;
* :func:`eliminate_dead` (DCE): calls no output or guard needs are dropped;
* :func:`last_uses` (liveness): where each value is used for the last time, so a
  lowering frees it there and peak memory stays at most the eager call's.

Layer: inside ``xpdiff.jit``.  May import: the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any


class Var:
    """A reference to value number ``n`` of a program (an operand of a call)."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __repr__(self) -> str:
        return f"v{self.n}"

    def __eq__(self, other: object) -> bool:
        return type(other) is Var and other.n == self.n

    def __hash__(self) -> int:
        return hash(("Var", self.n))


@dataclass
class Call:
    """``outs = fn(*args, **kw)``; ``args`` hold :class:`Var` s and literal Python values.

    ``name`` names the primitive (or the creation function) for printing and for the
    lowerings; ``elementwise`` marks primitives of the elementwise families (fusable);
    ``multi``: ``fn`` returns a tuple; ``fix``: the result is a NumPy scalar that the
    eager path turns into a 0-d array (the lowering does the same)."""

    fn: Any
    args: tuple
    kw: dict
    outs: tuple[int, ...]
    name: str
    multi: bool = False
    fix: bool = False
    elementwise: bool = False
    shapes: tuple = ()  # the outputs' shapes and dtypes at trace time, for printing
    dtypes: tuple = ()
    check_shape: bool = False  # a data-dependent output shape: guarded at replay
    takes_xp: bool = False  # args[0] is the backend namespace (a primitive's impl)
    view: bool = False  # the output was seen to share its first operand's memory (NumPy)

    def array_args(self) -> tuple:
        """The operands after the namespace argument, if any."""
        return self.args[1:] if self.takes_xp else self.args

    def operands(self) -> list[int]:
        return [a.n for a in self.args if type(a) is Var] + \
            [a.n for a in self.kw.values() if type(a) is Var]


@dataclass
class Guard:
    """After ``calls[:pos]`` have run, ``kind(value v)`` must equal ``expected``.

    ``kind`` is ``"bool"``, ``"int"``, ``"float"``, ``"index"`` or ``"shape"``;
    ``where`` is the user's line that asked for the value (for the warning when a
    function keeps retracing)."""

    pos: int
    var: int  # -1 for an environment guard (``fn()`` is recomputed instead)
    kind: str
    expected: Any
    where: str = ""
    fn: Any = None


@dataclass
class Program:
    """Inputs, constants, calls, guards and outputs of one traced variant."""

    inputs: list[int]
    consts: dict[int, Any]
    calls: list[Call]
    guards: list[Guard]
    outputs: list[Any]  # a Var, or a literal value returned as is
    copy_outputs: set[int] = field(default_factory=set)  # folded constants: copied on return
    fresh: set[int] = field(default_factory=set)  # constants made during tracing (foldable)
    shapes: dict[int, tuple] = field(default_factory=dict)  # value number -> traced shape
    dtypes: dict[int, Any] = field(default_factory=dict)  # value number -> traced dtype
    fortran: set[int] = field(default_factory=set)  # values laid out in Fortran order only, traced

    def n_calls(self) -> int:
        return len(self.calls)


# --- passes --------------------------------------------------------------------------------

NO_FOLD = frozenset({"empty", "empty_like"})  # uninitialised memory: never shared or folded
# primitives whose result depends only on their array operand's shape and dtype (fixed in a
# variant), not on its values: with literal parameters, their results are trace-time constants
SHAPE_ONLY = frozenset({"full_like"})
FOLD_MAX_ELEMENTS = 1 << 18  # larger folded values are recomputed (a program holds its folds)


def _size(x: Any) -> int:
    try:
        return math.prod(x.shape)
    except (AttributeError, TypeError):
        return FOLD_MAX_ELEMENTS + 1


def fold_constants(prog: Program, values: dict[int, Any]) -> Program:
    """Calls whose operands are all constants made during tracing (``prog.fresh``)
    become constants holding their traced values (``values``: value number -> the
    traced array, kept by the recorder for such values only).  Arrays read by
    reference (closed-over arrays) are not ``fresh``: calls on them run at each call,
    so in-place updates are seen.  Guards on folded values always hold: dropped."""
    folded = set(prog.fresh)
    consts = dict(prog.consts)
    calls = []
    for c in prog.calls:
        if (c.name not in NO_FOLD and all(n in folded for n in c.operands())
                and all(o in values and _size(values[o]) <= FOLD_MAX_ELEMENTS for o in c.outs)):
            for o in c.outs:
                consts[o] = values[o]
                folded.add(o)
            continue
        calls.append(c)
    guards = [g for g in _remap_guards(prog.calls, calls, prog.guards) if g.var not in folded]
    out_folded = {o.n for o in prog.outputs if type(o) is Var and o.n in folded}
    return replace(prog, consts=consts, calls=calls, guards=guards,
                   copy_outputs=prog.copy_outputs | out_folded, fresh=folded)


def _freeze(v: Any) -> Any:
    """A hashable key for a literal (its type included: ``1``, ``1.0`` and ``True``
    differ); raises ``TypeError`` for values without one."""
    t = type(v)
    if t is Var:
        return ("var", v.n)
    if t in (tuple, list):
        return (t.__name__,) + tuple(_freeze(x) for x in v)
    if t is dict:
        return ("dict",) + tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if t is slice:
        return ("slice", _freeze(v.start), _freeze(v.stop), _freeze(v.step))
    if t is float and v != v:
        return ("nan",)
    hash(v)
    return (t, v)


def _rewrite(prog: Program, visit: Any) -> Program:
    """The skeleton of a renaming pass: each call, its operands renamed, goes to
    ``visit(call, rename)``, which returns the call to keep (possibly another) or
    ``None`` after setting ``rename[out]`` to the value that stands for each output."""
    rename: dict[int, int] = {}

    def sub(a: Any) -> Any:
        return Var(rename.get(a.n, a.n)) if type(a) is Var else a

    calls = []
    for c in prog.calls:
        args = tuple(sub(a) for a in c.args)
        kw = {k: sub(v) for k, v in c.kw.items()}
        if args != c.args or kw != c.kw:
            c = _with_operands(c, args, kw)
        kept = visit(c, rename)
        if kept is not None:
            calls.append(kept)
    guards = _remap_guards(prog.calls, calls, prog.guards, rename)
    outputs = [sub(o) for o in prog.outputs]
    copy = {rename.get(n, n) for n in prog.copy_outputs}
    return replace(prog, calls=calls, guards=guards, outputs=outputs, copy_outputs=copy)


def _with_operands(c: Call, args: tuple, kw: dict) -> Call:
    return Call(c.fn, args, kw, c.outs, c.name, c.multi, c.fix, c.elementwise, c.shapes,
                c.dtypes, c.check_shape, c.takes_xp, c.view)


def eliminate_common(prog: Program) -> Program:
    """Common-subexpression elimination: a call with the same function, operands and
    parameters as an earlier one reuses the earlier outputs."""
    seen: dict[Any, tuple[int, ...]] = {}

    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        if c.name in NO_FOLD:
            return c
        try:
            key = (id(c.fn), _freeze(c.args), _freeze(c.kw))
        except TypeError:
            return c
        if key in seen:
            rename.update(zip(c.outs, seen[key]))
            return None
        seen[key] = c.outs
        return c

    return _rewrite(prog, visit)


def _remap_guards(old: list[Call], kept: list[Call], guards: list[Guard],
                  rename: dict[int, int] | None = None) -> list[Guard]:
    """Guard positions (counts of calls before them) translated from ``old`` to ``kept``."""
    ids = {id(c) for c in kept}
    pos, count = [], 0
    for c in old:
        pos.append(count)
        if id(c) in ids:
            count += 1
    pos.append(count)
    rename = rename or {}
    return [Guard(pos[g.pos], rename.get(g.var, g.var), g.kind, g.expected, g.where, g.fn)
            for g in guards]


def eliminate_dead(prog: Program) -> Program:
    """Dead-code elimination: keep the calls the outputs and the guards need."""
    need = {o.n for o in prog.outputs if type(o) is Var} | {g.var for g in prog.guards}
    keep = []
    for c in reversed(prog.calls):
        if any(o in need for o in c.outs):
            keep.append(c)
            need.update(c.operands())
    keep.reverse()
    guards = _remap_guards(prog.calls, keep, prog.guards)
    consts = {n: v for n, v in prog.consts.items() if n in need}
    return replace(prog, consts=consts, calls=keep, guards=guards)


def last_uses(prog: Program) -> dict[int, list[int]]:
    """Liveness: ``{step: [values used for the last time at step]}``, where step ``i``
    is call ``i`` (guards at position ``p`` count as uses at step ``p - 1``).  Outputs
    and constants are never released."""
    last: dict[int, int] = {}
    for i, c in enumerate(prog.calls):
        for n in c.operands():
            last[n] = i
    for g in prog.guards:
        if g.var >= 0:
            last[g.var] = max(last.get(g.var, -1), g.pos - 1)
    keep = {o.n for o in prog.outputs if type(o) is Var} | set(prog.consts)
    out: dict[int, list[int]] = {}
    for n, i in last.items():
        if n not in keep:
            out.setdefault(i, []).append(n)
    return out


RESHAPE = "reshape"


def simplify_reshapes(prog: Program) -> Program:
    """A reshape of a reshape that was a view reads the first one's operand; a reshape
    to its operand's own shape through views only is that operand (arrays of a program
    are never written, so a view and its base are interchangeable).  A reshape that
    copied (a non-contiguous operand) stays: its contiguous result can save a copy
    later (a matmul operand).  The reshapes left unused go with dead code."""
    source: dict[int, int] = {}  # value made by a reshape -> the value it reshaped

    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        if (c.name == RESHAPE and c.view and not c.takes_xp and len(c.args) == 1
                and type(c.args[0]) is Var):
            root = source.get(c.args[0].n, c.args[0].n)
            target = c.kw.get("shape")
            if isinstance(target, tuple) and prog.shapes.get(root) == target:
                rename[c.outs[0]] = root
                return None
            source[c.outs[0]] = root
            if root != c.args[0].n:
                return _with_operands(c, (Var(root),), c.kw)
        return c

    return _rewrite(prog, visit)


PERMUTE = "permute_dims"


def simplify_permutes(prog: Program) -> Program:
    """A ``permute_dims`` of a ``permute_dims`` is one (none when they cancel), and one
    that only moves unit dims is a reshape, which :func:`simplify_reshapes` then joins
    to its neighbours (both are views; arrays of a program are never written)."""
    source: dict[int, tuple[int, tuple]] = {}  # value made by a permute -> (operand, axes)

    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        ops = c.array_args()
        axes = c.kw.get("axes")
        if (c.name != PERMUTE or not c.takes_xp or len(ops) != 1 or type(ops[0]) is not Var
                or not isinstance(axes, tuple) or len(c.outs) != 1):
            return c
        x = ops[0].n
        if x in source:
            x, first = source[x]
            axes = tuple(first[i] for i in axes)
        if axes == tuple(range(len(axes))):
            rename[c.outs[0]] = x
            return None
        shape = prog.shapes.get(x)
        if shape is not None and len(shape) == len(axes):
            moved = [a for a in axes if shape[a] != 1]
            if moved == sorted(moved):  # only unit dims move: the same memory order
                out_shape = tuple(shape[a] for a in axes)
                return Call(c.args[0].reshape, (Var(x),), {"shape": out_shape}, c.outs, RESHAPE,
                            shapes=c.shapes, dtypes=c.dtypes, view=True)
        source[c.outs[0]] = (x, axes)
        if x != ops[0].n:
            return _with_operands(c, (c.args[0], Var(x)), {"axes": axes})
        return c

    return _rewrite(prog, visit)


IDENTITY_OPERAND = {"multiply": (0, 1), "divide": (0,)}  # operand positions kept when the other is 1


def _all_ones(c: Any) -> bool:
    """Whether the trace-time constant ``c`` is real (not complex) and every element is 1
    (checked once, while the program is built)."""
    ns = getattr(c, "__array_namespace__", None)
    if ns is None:
        return False
    xp = ns()
    if not xp.isdtype(c.dtype, ("real floating", "integral")):
        return False
    return bool(xp.all(c == 1))


def eliminate_identities(prog: Program) -> Program:
    """``multiply(x, ones)``, ``multiply(ones, x)`` and ``divide(x, ones)`` are ``x`` when
    ``ones`` is a folded constant (``prog.fresh``) of real ones and the result has ``x``'s
    shape and a real dtype equal to ``x``'s: ``x * 1`` and ``x / 1`` are exactly ``x``
    for every real value, signed zeros, infinities and NaNs included (not in complex
    arithmetic, where ``(inf + 0j) * 1`` has a NaN part).  Seeds of ones (a gradient's
    cotangent) and unit scalings of the rules are what this removes."""
    ones: dict[int, bool] = {}

    def is_ones(n: int) -> bool:
        if n not in ones:
            ones[n] = n in prog.fresh and n in prog.consts and _all_ones(prog.consts[n])
        return ones[n]

    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        keep = IDENTITY_OPERAND.get(c.name)
        ops = c.array_args()
        if keep is None or c.kw or len(ops) != 2 or c.multi:
            return c
        out = c.outs[0]
        for i in keep:
            x, one = ops[i], ops[1 - i]
            if (type(x) is Var and type(one) is Var and is_ones(one.n)
                    and prog.shapes.get(x.n) == prog.shapes.get(out)
                    and x.n in prog.dtypes and prog.dtypes.get(x.n) == prog.dtypes.get(out)
                    and prog.dtypes.get(one.n) == prog.dtypes.get(out)):
                rename[out] = x.n
                return None
        return c

    return _rewrite(prog, visit)


def _uniform_bool(c: Any) -> bool | None:
    """``True`` or ``False`` when the trace-time constant ``c`` is a boolean array with
    every element equal to it; ``None`` otherwise (checked once, at build time)."""
    ns = getattr(c, "__array_namespace__", None)
    if ns is None:
        return None
    xp = ns()
    if not xp.isdtype(c.dtype, "bool"):
        return None
    if bool(xp.all(c)):
        return True
    return False if not bool(xp.any(c)) else None


def eliminate_selects(prog: Program) -> Program:
    """``where(cond, a, b)`` is ``b`` when ``cond`` is known to be False everywhere
    (``a`` when True everywhere) and the chosen operand has the result's shape and
    dtype.  Known conditions: folded boolean constants, and ``logical_and`` with a known
    False (``logical_or`` with a known True) operand, ``logical_not`` of a known one.
    The rules' guards for poles and special points whose trigger is decided by a
    constant (``x ** 2`` has no pole at 0: its exponent says so) go with it."""
    known: dict[int, bool | None] = {}

    def value(a: Any) -> bool | None:
        if type(a) is not Var:
            return None
        n = a.n
        if n not in known:
            known[n] = (_uniform_bool(prog.consts[n]) if n in prog.fresh and n in prog.consts
                        else None)
        return known[n]

    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        ops = c.array_args()
        out = c.outs[0] if len(c.outs) == 1 else None
        if c.name in ("logical_and", "logical_or") and len(ops) == 2:
            absorbing = c.name == "logical_or"  # False absorbs in and, True in or
            if any(value(a) is absorbing for a in ops):
                known[out] = absorbing
        elif c.name == "logical_not" and len(ops) == 1 and value(ops[0]) is not None:
            known[out] = not value(ops[0])
        elif c.name == "where" and len(ops) == 3 and not c.kw:
            cond = value(ops[0])
            if cond is not None:
                pick = ops[1] if cond else ops[2]
                if (type(pick) is Var and prog.shapes.get(pick.n) == prog.shapes.get(out)
                        and pick.n in prog.dtypes and prog.dtypes.get(pick.n) == prog.dtypes.get(out)):
                    rename[out] = pick.n
                    return None
        return c

    return _rewrite(prog, visit)


FRESH_RESULT = frozenset({"matmul", "eye_kron", "take", "concat", "stack", "sum", "prod",
                          "lowrank_diag", "diag_embed", "add_diag"})  # never a view of an operand


def _reaches_output(prog: Program, n: int) -> bool:
    """Whether value ``n``, or a value that may share its memory (made from it by a call
    that is not elementwise nor in :data:`FRESH_RESULT`), is an output of ``prog``."""
    outs = {o.n for o in prog.outputs if type(o) is Var}
    seen, todo = {n}, [n]
    while todo:
        m = todo.pop()
        if m in outs:
            return True
        for c in prog.calls:
            if c.elementwise or c.name in FRESH_RESULT or m not in c.operands():
                continue
            for o in c.outs:
                if o not in seen:
                    seen.add(o)
                    todo.append(o)
    return False


def _is_arange(c: Any, n: int) -> bool:
    """Whether the trace-time constant ``c`` is ``arange(n)`` of an integer dtype (checked
    once, while the program is built)."""
    ns = getattr(c, "__array_namespace__", None)
    if ns is None or tuple(c.shape) != (n,):
        return False
    xp = ns()
    if not xp.isdtype(c.dtype, "integral"):
        return False
    return bool(xp.all(c == xp.arange(n, dtype=c.dtype, device=c.device)))


def eliminate_full_takes(prog: Program) -> Program:
    """``take(x, arange(n), axis=a)`` with ``n == x.shape[a]`` (a folded index) is ``x``:
    the data view's row selection of a shared array when the samples are the whole
    batch.  The eager call copies; the program reads ``x`` itself unless ``x``, or a
    value that may be a view of it, would be returned (the caller gets fresh arrays
    as from the eager call)."""
    def visit(c: Call, rename: dict[int, int]) -> Call | None:
        ops = c.array_args()
        if c.name != "take" or len(ops) != 2 or set(c.kw) - {"axis"} or len(c.outs) != 1:
            return c
        x, idx = ops
        out = c.outs[0]
        if type(x) is not Var or type(idx) is not Var or idx.n not in prog.fresh \
                or idx.n not in prog.consts:
            return c
        shape = prog.shapes.get(x.n)
        axis = c.kw.get("axis")
        if shape is None or axis is None or shape != prog.shapes.get(out) \
                or prog.dtypes.get(x.n) != prog.dtypes.get(out) or not -len(shape) <= axis < len(shape):
            return c
        if not _is_arange(prog.consts[idx.n], shape[axis]) or _reaches_output(prog, out):
            return c
        rename[out] = x.n
        return None

    return _rewrite(prog, visit)


def optimize(prog: Program, values: dict[int, Any]) -> Program:
    """The passes in order: fold, unit factors, known selects, full takes, permute and
    reshape chains, CSE, DCE."""
    return eliminate_dead(eliminate_common(simplify_reshapes(simplify_permutes(
        eliminate_full_takes(eliminate_selects(eliminate_identities(
            fold_constants(prog, values))))))))


def describe(prog: Program, groups: list | None = None) -> str:
    """The program as text: one line per call (with shapes), the guards where they
    are checked, the fused groups of the lowering if any."""
    lines = [f"program: {len(prog.inputs)} inputs, {len(prog.consts)} constants, "
             f"{len(prog.calls)} backend calls, {len(prog.guards)} guards"]
    ins = ", ".join(f"v{n}" for n in prog.inputs)
    lines.append(f"  inputs: {ins}")
    for n, v in sorted(prog.consts.items()):
        shape = tuple(getattr(v, "shape", ()))
        lines.append(f"  const v{n}: {type(v).__name__} shape={shape}")
    by_pos: dict[int, list[Guard]] = {}
    for g in prog.guards:
        by_pos.setdefault(g.pos, []).append(g)
    group_of = {}
    for k, grp in enumerate(groups or []):
        for i in grp:
            group_of[i] = k

    def guard_lines(pos: int) -> None:
        for g in by_pos.get(pos, []):
            where = f"  # {g.where}" if g.where else ""
            what = f"{g.kind}(v{g.var})" if g.var >= 0 else g.kind
            lines.append(f"  guard {what} == {g.expected!r}{where}")

    guard_lines(0)
    for i, c in enumerate(prog.calls):
        outs = ", ".join(f"v{o}" for o in c.outs)
        args = [repr(a) if type(a) is Var else _short(a) for a in c.args]
        args += [f"{k}={_short(v)}" for k, v in c.kw.items()]
        shapes = ", ".join(f"{tuple(s)}:{_dtype_name(d)}" for s, d in zip(c.shapes, c.dtypes))
        tag = f" [fused {group_of[i]}]" if i in group_of else ""
        lines.append(f"  {outs} = {c.name}({', '.join(args)})  -> {shapes}{tag}")
        guard_lines(i + 1)
    outs = ", ".join(repr(o) if type(o) is Var else _short(o) for o in prog.outputs)
    lines.append(f"  return {outs}")
    return "\n".join(lines)


def _dtype_name(d: Any) -> str:
    return str(d).removeprefix("dtype(").removesuffix(")").strip("'")


def _short(v: Any) -> str:
    if hasattr(v, "__name__") and type(v).__name__ == "module":
        return v.__name__.removeprefix("array_api_compat.")
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."
