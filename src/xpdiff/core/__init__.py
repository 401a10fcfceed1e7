"""Primitives, the trace stack and ``bind``: the heart of xpdiff.

Layer: core (above ``xpdiff.backend``).  May import: the standard library and
``xpdiff.backend``.  What only a higher layer can build is registered into a slot
owned here, at that layer's import time: the traced array types (``TRACER_TYPES``,
filled by ``xpdiff.tracer``) and the namespace rules receive
(:func:`register_rules_namespace`, called by ``xpdiff.namespaces``).

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..backend import _NS_CACHE as _NS_OF_TYPE  # raw array type -> its namespace
from ..backend import backend_name, device_label, fix_result, is_array, namespace_of, same_device


class XpdiffError(Exception):
    """Base class of xpdiff's own errors."""


class MixingError(XpdiffError, ValueError):
    """An operation mixes samples under ``batch_ndim`` (see docs/concepts.md)."""


class AliasingError(XpdiffError, ValueError):
    """An in-place write would reach arrays whose sharing of memory xpdiff does not
    model (a ``reshape`` result and its base while both are alive), or a read-only
    view (``broadcast_to``); see docs/namespace-functions.md."""


# The operation the user called, while a composite (mean, var, sort, tile, ...) binds the
# primitives it is built from: errors about those primitives name it instead.
USER_OP: ContextVar[str | None] = ContextVar("xpdiff_user_op", default=None)


# Set by ``xd.jit`` while it calls its function on lazy (Dask) arguments: the function that
# compiles the per-chunk run of a transform (the scale-out layer reads it when it builds the
# graph, so each task replays a compiled program instead of tracing its block anew).
BLOCK_COMPILER: ContextVar[Callable[[Callable], Callable] | None] = ContextVar(
    "xpdiff_block_compiler", default=None)


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
                 "scaled_vjp", "scaling", "select", "written")

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
        # scaled_vjp(xp, primals, i, base, scale, out): operand i's cotangents for output
        # cotangents ``scale * base[j]`` (a scaled base), or None (they are materialised)
        self.scaled_vjp = None
        # scaling(i, form): how a structured tangent's low-rank weight in closed form on
        # operand i passes (("shift", a): the constant a; ("scale", k): k times the
        # operand), as the same kind of form on the output, or None (computed as an array)
        self.scaling = None
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
        # levels [lo, hi) that constants are not lifted onto: user code run one level
        # below them (a custom rule's fwd or jvp); see :func:`one_level_down`
        self.unlifted: tuple[int, int] | None = None

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


class new_main:  # noqa: N801 - used as a function: ``with new_main(T) as main``
    """Push a transformation with a fresh level; always popped, even on error.  (A class,
    not a generator context manager: every transformation call enters several.)"""

    __slots__ = ("main",)

    def __init__(self, trace_type: type, **data: Any):
        self.main = MainTrace(len(_STACK), trace_type, data)

    def __enter__(self) -> MainTrace:
        _STACK.append(self.main)
        return self.main

    def __exit__(self, *exc: Any) -> None:
        main = self.main
        main.alive = False
        _STACK.pop()
        # break the main <-> trace cycle, so what the trace holds (a reverse tape and
        # its intermediates) is freed by reference counting as soon as nothing else
        # needs it, not at the next cyclic garbage collection
        main.trace.main = _DEAD


_DEAD = MainTrace(-1, lambda main: None, {})  # what a finished trace points to
_DEAD.alive = False


class Trace:
    """Base of the interpreters; ``process`` applies a primitive to tracers, and
    ``shape_of`` / ``constant_value`` answer for them (their class is the same in
    every interpreter).

    ``lift(value)`` makes a raw value a constant of this trace; constants created
    by user code while transformations are active are lifted onto the innermost
    trace whose ``lifts_constants`` is true (see :func:`lift_constant`).
    """

    __slots__ = ("main",)
    lifts_constants = True
    datum_slot: str | None = None  # the slot of its traced arrays that holds its datum

    def __init__(self, main: MainTrace):
        self.main = main

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:  # pragma: no cover
        raise NotImplementedError

    def shape_of(self, t: Any) -> tuple[int, ...]:
        """The apparent shape of ``t``, a traced array of this trace's transformation."""
        return t._a.shape

    def constant_value(self, t: Any) -> Any:
        """``t``'s value one level down if ``t`` is a constant of this transformation
        holding one value (no derivative, not a batch of values), else ``None``."""
        return None

    def mapped_size(self, t: Any) -> int:
        """How many values of the level below ``t`` stands for (a ``vmap`` maps a batch)."""
        return 1

    def datum(self, t: Any) -> Any:
        """What this interpreter keeps for its traced array ``t`` (a tangent, a node id,
        whether it is batched), as a transformation returns it (:func:`tracer.unbox`)."""
        return None

    def constant_datum(self, v: Any) -> Any:
        """The same for a value ``v`` that is a constant of this transformation."""
        return None

    def process_custom(self, call: Any, args: tuple) -> Any:  # pragma: no cover
        raise NotImplementedError


def lift_constant(value: Any, like: Any = None) -> Any:
    """Make a freshly created constant a tracer of the innermost active transformation
    that lifts constants (of ``like``'s transformation when given), so in-place updates
    on it (``out = xp.zeros(n); out[1:] = traced``) can be traced.  Outside any
    transformation the value is returned as is."""
    if like is not None:
        return like._main.trace.lift(value)
    skip = _STACK.unlifted
    for main in reversed(_STACK.items):
        if main.trace.lifts_constants and (skip is None or not skip[0] <= main.level < skip[1]):
            return main.trace.lift(value)
    return value


@contextmanager
def one_level_down(main: MainTrace) -> Iterator[None]:
    """Run user code for ``main``'s transformation on the values one level down (a
    ``custom_vjp``'s ``fwd``, a ``custom_jvp``'s rule): constants it creates are not
    lifted onto ``main`` or the transformations above it that are active now (they
    would come back as tracers of ``main``), but still onto transformations the code
    itself starts."""
    prev = _STACK.unlifted
    _STACK.unlifted = (main.level, len(_STACK))
    try:
        yield
    finally:
        _STACK.unlifted = prev


TRACER_TYPES: set = set()  # filled by xpdiff.tracer: every Tracer subclass registers itself


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


# --- the two ways to a namespace ------------------------------------------------------------

def raw_namespace(*values: Any) -> Any:
    """The raw backend namespace of the first array among ``values`` (traced arrays
    answer for their innermost value): the one way above the backend layer."""
    for v in values:
        while type(v) in TRACER_TYPES:
            v = v._a
        ns = _NS_OF_TYPE.get(type(v))
        if ns is not None:
            return ns
        if is_array(v):
            return namespace_of(v)
    raise TypeError("no array among the operands")


def mapped_size(v: Any) -> int:
    """How many values ``v`` stands for under the ``vmap`` s that map it: the product of
    their sizes (1 for an array no ``vmap`` maps).  Structure only, no data is read:
    rules use it to choose between equal computations by cost.

    >>> import numpy as np, xpdiff as xd
    >>> sizes = []
    >>> _ = xd.vmap(xd.vmap(lambda x: sizes.append(mapped_size(x)) or x))(np.ones((3, 4)))
    >>> sizes, mapped_size(np.ones(3))
    ([12], 1)
    """
    n = 1
    while type(v) in TRACER_TYPES:
        n *= v._main.trace.mapped_size(v)
        v = v._a
    return n


_BUILD_RULES_NS: list[Callable[[Any], Any]] = []  # filled by xpdiff.namespaces
_RULES_NS: dict[type, Any] = {}  # raw array type -> the namespace rules receive


def register_rules_namespace(build: Callable[[Any], Any]) -> None:
    """Slot for the namespace layer: ``build(raw_namespace)`` gives the namespace that
    rules receive (xpdiff's functions, dispatching on traced arrays; raw constants)."""
    _BUILD_RULES_NS[:] = [build]
    _RULES_NS.clear()


def namespace_for_values(vals: Sequence[Any]) -> Any:
    """xpdiff's namespace for ``vals`` (the backend of the first array): the one way to
    it inside the package.  Rules receive it as ``xp``; cached per raw array type."""
    for v in vals:
        t = type(v)
        x = v
        while t in TRACER_TYPES:
            x = x._a
            t = type(x)
        ns = _RULES_NS.get(t)
        if ns is not None:
            return ns
        if is_array(x):
            ns = _RULES_NS[t] = _BUILD_RULES_NS[0](namespace_of(x))
            return ns
    raise TypeError("no array among the operands")


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
# recorder may fold computations on them at trace time, and rules may read the Python
# scalar each was made from.  id -> (the array, the scalar).
IMMUTABLE: dict[int, tuple[Any, Any]] = {}


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
    xp = _NS_OF_TYPE.get(type(a0)) or namespace_of(a0)
    out = prim.impl(xp, *args, **params)
    if prim.multiple_results:
        return tuple(fix_result(o) for o in out)
    if type(out) in _ARRAY_TYPES:
        return out
    fixed = fix_result(out)
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


# --- argument checks shared by the layers above ------------------------------------------------

def broadcast_shapes(*shapes):
    """The shape that broadcasting ``shapes`` against each other gives (API 2025.12).

    >>> import xpdiff as xd
    >>> xd.namespace("numpy", api_version="2025.12").broadcast_shapes((2, 1), (3,))
    (2, 3)
    """
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        dims = {s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0}
        sizes = dims - {1}
        if len(sizes) > 1:
            raise ValueError(f"broadcast_shapes: shapes {shapes} cannot be broadcast together "
                             f"(dim {i - nd} has sizes {sorted(sizes, key=str)})")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def norm_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not -ndim <= axis < max(ndim, 1):
        # NumPy's wording (its AxisError), which code written for NumPy matches
        raise ValueError(f"{name}: axis {axis} is out of bounds for array of dimension {ndim}")
    return axis % ndim if ndim else 0


def norm_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(norm_axis(a, ndim) for a in axis)


def check_same_backend(arrays: Sequence[tuple[str, Any]], where: str) -> None:
    """Raise if the arrays do not all share one backend and one device.

    Args:
        arrays: ``(label, array)`` pairs, raw or traced, e.g. ``("argument 1", x)``;
            entries that are not arrays (Python scalars, ``None``) are skipped.
        where: the calling function, for the message.

    Raises:
        TypeError: two backends (e.g. a NumPy array and an array-api-strict array).
        ValueError: two devices of one backend.

    xpdiff never moves data between backends or devices by itself: the fix is on the
    caller's side, and the message names both arrays.

    >>> import numpy as np
    >>> check_same_backend([("x", np.ones(2)), ("y", np.zeros(3))], "jacobian")
    """
    first_label = first_ns = first_dev = None
    for label, x in arrays:
        ns = _NS_OF_TYPE.get(type(x))
        if ns is None:
            if type(x) in TRACER_TYPES or is_array(x):
                ns = raw_namespace(x)
            else:
                continue
        dev = x.device
        if first_ns is None:
            first_label, first_ns, first_dev = label, ns, dev
            continue
        if ns is not first_ns and backend_name(ns) != backend_name(first_ns):
            raise TypeError(
                f"{where}: {label} is an array of backend {backend_name(ns)} but {first_label} "
                f"is an array of backend {backend_name(first_ns)}; xpdiff never converts between "
                f"backends: create both with one namespace "
                f"(xpdiff.namespace({backend_name(first_ns)!r}).asarray(...)) or convert one "
                f"explicitly")
        if dev is not first_dev and not same_device(dev, first_dev):
            raise ValueError(
                f"{where}: {label} is on device {device_label(dev)} but {first_label} is on "
                f"device {device_label(first_dev)}; xpdiff never moves data between devices: "
                f"move one explicitly, e.g. array_api_compat.to_device(x, other.device)")
