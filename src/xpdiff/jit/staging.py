"""Staging: the recorder that ``jit`` puts at the bottom of the interpreter stack.

Two parts, both active only while a jitted function traces:

* :class:`StageTrace`, the lowest transformation: the function's array arguments
  enter as :class:`StageTracer` s, so every value derived from them is a tracer and
  every operation on one goes through ``bind``.  The engine's code paths that
  touch raw arrays directly (row slices, in-place writes of sample chunks, direct
  backend products of raw operands) never see an input-derived value: capture is
  complete by construction.  Its ``process`` evaluates the primitive on the raw
  values (one level down is the backend).
* :class:`Recorder`, installed in the core's recording slot (``xpdiff.core.recording``):
  every backend call of this thread (``eval_raw`` of any primitive, ``create`` of any
  creation function) runs through it and is appended to the program with its
  operands as value numbers.  Raw arrays that no recorded call produced are
  constants read by reference at each run (closed-over arrays, cached scalars).

A value that leaves the array world (``bool``/``int``/``float``/``__index__`` of a
traced value, a data-dependent output shape) is recorded as a guard, with the
user's line that asked for it.

Layer: inside ``xpdiff.jit`` (an interpreter).  May import: ``xpdiff.core``,
``xpdiff.tracer``, ``xpdiff.backend`` and ``.program``.
"""

from __future__ import annotations

import operator
import os
import sys
import weakref
from typing import Any

from .. import core as _core
from ..backend import fix_result, is_array, namespace_of
from ..core import Primitive, Trace, XpdiffError
from ..tracer import Tracer, new_tracer
from .program import FOLD_MAX_ELEMENTS, SHAPE_ONLY, Call, Guard, Program, Var, _size

# primitives whose output shape depends on the data: their shapes are guarded
DATA_DEPENDENT_SHAPES = frozenset({"nonzero", "unique_all", "unique_counts", "unique_inverse",
                                   "unique_values"})

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/xpdiff


def user_line() -> str:
    """``file:line`` of the innermost frame outside xpdiff (the user's code)."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_PACKAGE_DIR + os.sep) and "contextlib" not in fn:
            return f"{f.f_code.co_filename}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


class StageTracer(Tracer):
    """An array staged by ``jit``: ``_a`` is the raw backend array (see :class:`StageTrace`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"StageTracer(shape={self.shape}, dtype={self.dtype})"


def stage_tracer(main: Any, x: Any) -> StageTracer:
    """A staged array of ``main`` holding the raw backend array ``x``."""
    return new_tracer(StageTracer, main, x)


class _Concrete:
    """A traced value about to leave the array world: each conversion is a guard."""

    __slots__ = ("rec", "x")

    def __init__(self, rec: Recorder, x: Any):
        self.rec, self.x = rec, x

    def _guard(self, kind: str, value: Any) -> Any:
        self.rec.guard(self.x, kind, value)
        return value

    def __bool__(self) -> bool:
        return self._guard("bool", bool(self.x))

    def __int__(self) -> int:
        return self._guard("int", int(self.x))

    def __float__(self) -> float:
        return self._guard("float", float(self.x))

    def __index__(self) -> int:
        return self._guard("index", operator.index(self.x))


class StageTrace(Trace):
    __slots__ = ()

    def lift(self, x: Any) -> StageTracer:
        return stage_tracer(self.main, x)

    def shape_of(self, t: Any) -> tuple[int, ...]:
        return tuple(t._a.shape)

    def constant_value(self, t: Any) -> Any:
        # no derivative here: the value itself, behind a guard that records what a
        # conversion to a Python scalar gave
        return _Concrete(t._main.data["recorder"], t._a)

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        main = self.main
        vals = tuple(a._a if isinstance(a, Tracer) and a._main is main else a for a in args)
        out = _core.eval_raw(prim, vals, params)  # recorded by the recorder's slot
        if prim.multiple_results:
            return tuple(stage_tracer(main, o) for o in out)
        return stage_tracer(main, out)

    def process_custom(self, call: Any, args: tuple) -> Any:
        return call.fun(*args)  # no derivative at this level: run the primal function


def _is_view(out: Any, x: Any) -> bool:
    """Whether ``out`` shares ``x``'s memory (NumPy's ``base``; ``False`` where unknown)."""
    ob = getattr(out, "base", None)
    if ob is None or isinstance(out, tuple):
        return False
    xb = getattr(x, "base", None)
    return ob is (x if xb is None else xb)


class _ValueRef:
    """What the recorder knows about one raw array: its value number, and a weak (or,
    for objects without weak references, strong) reference proving it is the same
    object as the one seen (ids of dead objects are reused)."""

    __slots__ = ("n", "ref", "strong")

    def __init__(self, n: int, x: Any):
        self.n = n
        try:
            self.ref, self.strong = weakref.ref(x), None
        except TypeError:
            self.ref, self.strong = None, x

    def alive_is(self, x: Any) -> bool:
        return (self.strong if self.ref is None else self.ref()) is x


class Recorder:
    """Records every backend call of its thread into a :class:`Program`."""

    def __init__(self) -> None:
        self.refs: dict[int, _ValueRef] = {}
        self.count = 0
        self.inputs: list[int] = []
        self.consts: dict[int, Any] = {}
        self.calls: list[Call] = []
        self.guards: list[Guard] = []
        self.fresh: set[int] = set()  # values made during tracing from constants only
        self.values: dict[int, Any] = {}  # traced values of fresh values (for folding)
        self.shapes: dict[int, tuple] = {}  # value number -> shape at trace time
        self.dtypes: dict[int, Any] = {}  # value number -> dtype at trace time
        self.fortran: set[int] = set()  # values in Fortran order only at trace time
        self.auto_budget: tuple = (None, None)  # (backend kind, bytes): the free-memory budget

    # --- value numbers ---------------------------------------------------------------
    def _new(self, x: Any) -> int:
        n = self.count
        self.count += 1
        self.refs[id(x)] = _ValueRef(n, x)
        shape = getattr(x, "shape", None)
        if shape is not None:
            self.shapes[n] = tuple(shape)
            self.dtypes[n] = x.dtype
            flags = getattr(x, "flags", None)  # NumPy and CuPy arrays: their memory layout
            if flags is not None and len(shape) >= 2 and flags.f_contiguous and not flags.c_contiguous:
                self.fortran.add(n)
        return n

    def input(self, x: Any) -> int:
        n = self._new(x)
        self.inputs.append(n)
        return n

    def var_of(self, x: Any) -> int:
        r = self.refs.get(id(x))
        if r is not None and r.alive_is(x):
            return r.n
        self._check_not_a_view(x)
        n = self._new(x)
        self.consts[n] = x  # read by reference at each run
        hit = _core.IMMUTABLE.get(id(x))
        if hit is not None and hit[0] is x:  # a constant by contract: foldable
            self.fresh.add(n)
            self.values[n] = x
        return n

    def _check_not_a_view(self, x: Any) -> None:
        """A constant that is a NumPy view of a value computed by the program (not one
        made from constants only) was taken outside any recorded call: a replay would
        read the first call's data."""
        base = getattr(x, "base", None)
        while base is not None:
            r = self.refs.get(id(base))
            if (r is not None and r.alive_is(base) and r.n not in self.consts
                    and r.n not in self.inputs and r.n not in self.fresh):
                raise XpdiffError(
                    "jit: an array derived from a traced value reached the backend without a "
                    "recorded call (a view taken on a raw array outside xpdiff's operations); "
                    "this is a bug in xpdiff: please report it with xd.jit(f).lower(*args)")
            base = getattr(base, "base", None)

    def _operand(self, a: Any) -> Any:
        if not isinstance(a, type) and is_array(a):  # (NumPy's scalar types pass is_array)
            return Var(self.var_of(a))
        if type(a) in (list, tuple) and any(is_array(x) for x in a):
            raise XpdiffError("jit: a sequence of arrays as one operand of a backend call is "
                              "not supported; this is a bug in xpdiff, please report it")
        return a

    # --- the slot's interface --------------------------------------------------------
    def call(self, prim: Primitive, args: tuple, params: dict) -> Any:
        """``eval_raw(prim, args, params)``, recorded."""
        a0 = args[0]
        xp = _core._NS_OF_TYPE.get(type(a0)) or namespace_of(a0)
        ops = (xp,) + tuple(self._operand(a) for a in args)
        kw = {k: self._operand(v) for k, v in params.items()}
        out = prim.impl(xp, *args, **params)
        if prim.multiple_results:
            fixed = tuple(fix_result(o) for o in out)
            fix = any(f is not o for f, o in zip(fixed, out))
        else:
            fixed = fix_result(out)
            fix = fixed is not out
        fn = prim.impl
        direct = getattr(fn, "direct", None)
        if direct is None and hasattr(fn, "direct_if"):  # direct for these operands' dtypes
            name, holds = fn.direct_if
            direct = name if holds(xp, *args) else None
        if direct is not None:  # impl(xp, *a, **k) is xp.<direct>(*a, **k): call it directly
            fn, ops = getattr(xp, direct), ops[1:]
        self._append(fn, ops, kw, fixed, prim.name, prim.multiple_results, fix,
                     prim.partials is not None, prim.name in DATA_DEPENDENT_SHAPES,
                     takes_xp=direct is None, view=_is_view(fixed, a0))
        return fixed

    def create(self, fn: Any, args: tuple, kw: dict) -> Any:
        """``fn(*args, **kw)`` of a creation function, recorded."""
        ops = tuple(self._operand(a) for a in args)
        kws = {k: self._operand(v) for k, v in kw.items()}
        out = fn(*args, **kw)
        self._append(fn, ops, kws, out, getattr(fn, "__name__", "create"), False, False, False,
                     False)
        return out

    def _append(self, fn: Any, ops: tuple, kw: dict, out: Any, name: str, multi: bool,
                fix: bool, elementwise: bool, check_shape: bool, takes_xp: bool = False,
                view: bool = False) -> None:
        outs_raw = out if multi else (out,)
        operands = [a.n for a in ops if type(a) is Var] + [a.n for a in kw.values() if type(a) is Var]
        # a value made from constants only, or one that reads only its operand's shape and
        # dtype (``full_like`` with a literal fill): the shapes of a variant are fixed (its
        # key, and guards on data-dependent shapes), so it depends on no input either
        fresh = all(n in self.fresh for n in operands) or (
            name in SHAPE_ONLY and not any(type(v) is Var for v in kw.values()))
        outs = []
        for o in outs_raw:
            n = self._new(o)
            outs.append(n)
            if fresh:
                self.fresh.add(n)
                if _size(o) <= FOLD_MAX_ELEMENTS:
                    self.values[n] = o
        call = Call(fn, ops, kw, tuple(outs), name, multi=multi, fix=fix, elementwise=elementwise,
                    shapes=tuple(tuple(getattr(o, "shape", ())) for o in outs_raw),
                    dtypes=tuple(getattr(o, "dtype", None) for o in outs_raw),
                    check_shape=check_shape, takes_xp=takes_xp, view=view)
        self.calls.append(call)
        if check_shape:
            for n, o in zip(outs, outs_raw):
                self.guards.append(Guard(len(self.calls), n, "shape", tuple(o.shape), user_line()))

    def guard(self, x: Any, kind: str, value: Any) -> None:
        """``kind(x)`` gave ``value`` while tracing: check it at this point of a replay."""
        self.guards.append(Guard(len(self.calls), self.var_of(x), kind, value, user_line()))

    def environment(self, fn: Any, value: Any, what: str) -> None:
        """A plan made from the environment (``fn()`` gave ``value``): re-checked at the
        start of each replay."""
        self.guards.append(Guard(0, -1, "env", value, what, fn))

    def program(self, outputs: list) -> Program:
        outs = [Var(self.var_of(o)) if not isinstance(o, type) and is_array(o) else o
                for o in outputs]
        return Program(list(self.inputs), dict(self.consts), list(self.calls), list(self.guards),
                       outs, fresh=set(self.fresh), shapes=dict(self.shapes), fortran=set(self.fortran),
                       dtypes=dict(self.dtypes))
