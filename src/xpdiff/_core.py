"""Primitives, the trace stack and ``bind``: the heart of xpdiff.

A *primitive* is one operation registered once with its implementation and its
rules (JVP, VJP, batching, data-view).  A *transformation* (forward mode, the
reverse tape, vmap, the ``batch_ndim`` data view) pushes a ``MainTrace`` with a
fresh level onto a stack; its values are ``Tracer`` objects tagged with that
main.  ``bind`` hands a primitive application to the highest-level trace among
its arguments; values of lower levels are constants to it.  That is how nested
transformations never confuse their perturbations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from . import _backend


class XpdiffError(Exception):
    """Base class of xpdiff's own errors."""


class MixingError(XpdiffError, ValueError):
    """An operation mixes samples under ``batch_ndim`` (see docs/concepts.md)."""


# The operation the user called, while a composite (mean, var, sort, tile, ...) binds the
# primitives it is built from: errors about those primitives name it instead.
USER_OP: ContextVar[str | None] = ContextVar("xpdiff_user_op", default=None)


@contextmanager
def op_context(name: str) -> Iterator[None]:
    """Errors raised by the primitives bound inside name the composite ``name`` (what the
    user called); the outermost composite wins."""
    if USER_OP.get() is not None:
        yield
        return
    token = USER_OP.set(name)
    try:
        yield
    finally:
        USER_OP.reset(token)


class RuleError(XpdiffError, NotImplementedError):
    """A primitive has no rule for the transformation asked of it."""


class Primitive:
    """One operation and its rules.

    Attributes:
        name: the name used in error messages.
        impl: ``impl(xp, *args, **params)`` on raw backend arrays.
        jvp: ``jvp(xp, primals, tangents, **params) -> (out, out_tangent)``.
        vjp: ``vjp(xp, g, out, primals, needs, **params) -> list of cotangents``.
        batch: ``batch(xp, vals, batched, size, **params) -> (out, out_batched)``,
            batched operands carry the batch axis first.
        data: ``data(ctx, operands, has_data, **params) -> (operands, params)``,
            translating a batched-code call into its per-sample call.
        multiple_results: the primitive returns a tuple.
        differentiable: ``False`` for ops whose outputs carry no derivative.
    """

    __slots__ = ("name", "impl", "jvp", "vjp", "batch", "data", "multiple_results",
                 "differentiable", "partials", "reduce_deriv", "basis_jvp", "basis_vjp",
                 "select", "written")

    def __init__(self, name: str, impl: Callable, *, jvp=None, vjp=None, batch=None,
                 data=None, multiple_results: bool = False, differentiable: bool = True):
        self.name = name
        self.impl = impl
        self.jvp = jvp
        self.vjp = vjp
        self.batch = batch
        self.data = data
        self.multiple_results = multiple_results
        self.differentiable = differentiable
        self.partials = None  # elementwise families: per-operand derivatives (see _jvp.Diag)
        # reductions: derivative d(xp, x, out_keepdims, axis) of the reduced value (1 = linear)
        self.reduce_deriv = None
        # linear maps of a structured identity basis (see _jvp.push): the dense output
        # tangent written directly (no materialised basis, no product with it), or None
        self.basis_jvp = None
        self.basis_vjp = None  # the same for an identity basis of output cotangents
        # ``where``: its rules pick (co)tangents rather than scale them, and the
        # interpreters mark what it did not pick as masked zeros (docs/where.md)
        self.select = False
        # writes (``set_at``, ``scatter_set``): ``written(xp, primals, params)``, a boolean
        # array shaped like operand 0, true where the primitive overwrites it (its
        # cotangent there is a masked zero); such primitives also have ``select`` set
        self.written = None

    def __repr__(self) -> str:
        return f"Primitive({self.name})"

    def bind(self, *args: Any, **params: Any) -> Any:
        return _bind(self, args, params)


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, impl: Callable, **rules: Any) -> Primitive:
    """Create and register a primitive (one registration per operation)."""
    if name in PRIMITIVES:
        raise ValueError(f"primitive {name!r} registered twice")
    p = Primitive(name, impl, **rules)
    PRIMITIVES[name] = p
    return p


class MainTrace:
    """One active transformation: its level, its trace and its global data."""

    __slots__ = ("level", "trace", "data", "alive")

    def __init__(self, level: int, trace_type: type, data: dict):
        self.level = level
        self.data = data
        self.alive = True
        self.trace = trace_type(self)


class _ThreadStack(threading.local):
    """The stack of active transformations, one per thread (so transformations in
    different threads never see each other's traces)."""

    def __init__(self) -> None:
        self.items: list[MainTrace] = []

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Iterator[MainTrace]:
        return iter(self.items)

    def __reversed__(self) -> Iterator[MainTrace]:
        return reversed(self.items)

    def append(self, main: MainTrace) -> None:
        self.items.append(main)

    def pop(self) -> MainTrace:
        return self.items.pop()


_STACK = _ThreadStack()


@contextmanager
def new_main(trace_type: type, **data: Any) -> Iterator[MainTrace]:
    """Push a transformation with a fresh level; always popped, even on error."""
    main = MainTrace(len(_STACK), trace_type, data)
    _STACK.append(main)
    try:
        yield main
    finally:
        main.alive = False
        _STACK.pop()
        # break the main <-> trace cycle, so what the trace holds (a reverse tape and
        # its intermediates) is freed by reference counting as soon as nothing else
        # needs it, not at the next cyclic garbage collection
        main.trace.main = _DEAD


_DEAD = MainTrace(-1, lambda main: None, {})  # what a finished trace points to
_DEAD.alive = False


class Trace:
    """Base of the interpreters; ``process`` applies a primitive to tracers."""

    __slots__ = ("main",)

    def __init__(self, main: MainTrace):
        self.main = main

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:  # pragma: no cover
        raise NotImplementedError

    def process_custom(self, call: Any, args: tuple) -> Any:  # pragma: no cover
        raise NotImplementedError


TRACER_TYPES: set = set()  # filled by _array: every Tracer subclass registers itself


def top_main(args: tuple) -> MainTrace | None:
    """The highest-level transformation among ``args``' tracers, if any."""
    top = None
    for a in args:
        if type(a) in TRACER_TYPES:
            m = a._main
            if top is None or m.level > top.level:
                top = m
    return top


BIND_HOOK: Callable[[Primitive], None] | None = None  # tests record coverage here


def bind(prim: Primitive, args: tuple, params: dict) -> Any:
    """Apply ``prim``: at the top trace among the arguments, or on raw arrays."""
    if BIND_HOOK is not None:
        BIND_HOOK(prim)
    top = None  # top_main, inlined: this is the hottest path
    for a in args:
        if type(a) in TRACER_TYPES:
            m = a._main
            if top is None or m.level > top.level:
                top = m
    if top is None:
        return eval_raw(prim, args, params)
    if not top.alive:
        raise XpdiffError(
            f"{prim.name}: a traced value escaped the transformation that made it "
            f"(e.g. stored in a global or closure); return it from the function instead"
        )
    return top.trace.process(prim, args, params)


_bind = bind


_RULES_NS: dict[type, Any] = {}  # raw array type -> the namespace rules receive


def namespace_for_values(vals: Any) -> Any:
    """The namespace for rules applied to ``vals`` (the backend of the first array),
    cached per raw array type: this runs once per rule application."""
    for v in vals:
        t = type(v)
        x = v
        while t in TRACER_TYPES:
            x = x._a
            t = type(x)
        ns = _RULES_NS.get(t)
        if ns is not None:
            return ns
        if _backend.is_array(x):
            from ._namespace import namespace_for

            ns = _RULES_NS[t] = namespace_for(_backend.namespace_of(x), rules=True)
            return ns
    raise TypeError("no array among the operands")


_NS_OF_TYPE = _backend._NS_CACHE
_ARRAY_TYPES: set = set()  # result types that need no fixing (filled as seen)


# --- the recording slot (xpdiff.jit) --------------------------------------------------------
# A recorder (see _staging.Recorder) owns every backend call made in its thread while it is
# active.  ``RECORDING`` counts active recorders in all threads, so with none active the only
# cost on the eager path is one global read in ``eval_raw`` and ``create``.

RECORDING = 0


class _RecordingSlot(threading.local):
    recorder: Any = None


_RECORDER = _RecordingSlot()
_RECORDING_LOCK = threading.Lock()


@contextmanager
def recording(recorder: Any) -> Iterator[Any]:
    """Route this thread's backend calls (``eval_raw``, ``create``) to ``recorder``."""
    global RECORDING
    prev = _RECORDER.recorder
    _RECORDER.recorder = recorder
    with _RECORDING_LOCK:
        RECORDING += 1
    try:
        yield recorder
    finally:
        with _RECORDING_LOCK:
            RECORDING -= 1
        _RECORDER.recorder = prev


def active_recorder() -> Any:
    """The recorder active in this thread, or ``None``."""
    return _RECORDER.recorder if RECORDING else None


# raw arrays that are constants by contract (cached scalar operands, never written): a
# recorder may fold computations on them at trace time.  id -> the array.
IMMUTABLE: dict[int, Any] = {}


def create(fn: Callable, *args: Any, **kw: Any) -> Any:
    """A creation call of the backend (``bk.eye(3)``): recorded while ``jit`` traces."""
    if RECORDING:
        rec = _RECORDER.recorder
        if rec is not None:
            return rec.create(fn, args, kw)
    return fn(*args, **kw)


def eval_raw(prim: Primitive, args: tuple, params: dict) -> Any:
    if RECORDING:
        rec = _RECORDER.recorder
        if rec is not None:
            return rec.call(prim, args, params)
    a0 = args[0]
    xp = _NS_OF_TYPE.get(type(a0)) or _backend.namespace_of(a0)
    out = prim.impl(xp, *args, **params)
    if prim.multiple_results:
        return tuple(_backend.fix_result(o) for o in out)
    if type(out) in _ARRAY_TYPES:
        return out
    fixed = _backend.fix_result(out)
    if fixed is out and type(out) in _NS_OF_TYPE:
        _ARRAY_TYPES.add(type(out))
    return fixed


class Zero:
    """A symbolic zero tangent or cotangent: knows its shape, dtype and device only."""

    __slots__ = ("shape", "dtype", "device", "like")

    def __init__(self, like: Any):
        self.like = like
        self.shape = like.shape
        self.dtype = like.dtype
        self.device = like.device

    def __repr__(self) -> str:
        return f"Zero(shape={self.shape}, dtype={self.dtype})"


def instantiate(xp: Any, t: Any) -> Any:
    """A dense array for ``t`` (zeros for a symbolic ``Zero``)."""
    if isinstance(t, Zero):
        return xp.zeros_like(t.like)
    return t
