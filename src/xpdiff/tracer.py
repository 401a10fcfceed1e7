"""The traced array: a thin slotted wrapper implementing the array API's array object.

Layer: the traced array (above ``xpdiff.core``).  May import: ``xpdiff.core`` and
``xpdiff.backend``.  Its operators and ``__array_namespace__`` delegate to xpdiff's
namespace, which is built two layers up: ``xpdiff.namespaces`` installs them at
its import time through :func:`install` (the slot this module owns).

A traced array's class says what it is to the user: :class:`Tracer` inside the
transformations (the eager API's ``DiffArray`` and the conformance harness's array
subclass it); which transformation it belongs to is its ``_main``, whose trace
answers what depends on the interpreter (its apparent shape, whether it is a
constant).  So code written against the standard runs unchanged on it, and an
object never changes class.
In-place updates (``x[idx] = v``, ``x += y``) compute the new value functionally
and rebind the traced array to it (:func:`_take`: its transformation, its value
one level down and the datum its interpreter keeps; the new value may belong to a
higher transformation than the old one); a traced array made by a view-producing
operation (basic indexing, ``permute_dims``, ...) is linked to its base (a
:class:`ViewLink`), so a write through it reaches the base and every other live
view, as NumPy's views do (see docs/namespace-functions.md, "Views and in-place
writes").
"""

from __future__ import annotations

import math
import operator
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .backend.numpy_dispatch import call_function, call_ufunc
from .core import TRACER_TYPES, AliasingError, op_context, raw_namespace

_LOST = "{what} on an array that carries derivative information would drop the derivative; {fix}"

# array methods of NumPy/torch that the standard has as functions: x.sum() -> xp.sum(x)
_METHOD_FIXES = {
    "flatten": "xp.reshape(x, (-1,))", "ravel": "xp.reshape(x, (-1,))", "dot": "x @ y (xp.matmul)",
    "transpose": "xp.permute_dims(x, axes), or x.mT / x.T", "cumsum": "xp.cumulative_sum(x, axis=...)",
    "cumprod": "xp.cumulative_prod(x, axis=...)", "copy": "xp.asarray(x, copy=True)",
    "conjugate": "xp.conj(x)", "swapaxes": "xp.permute_dims(x, axes)", "view": "xp.reshape(x, shape)",
    "squeeze": "xp.squeeze(x, axis=...)", "fill": "x[...] = value", "numel": "x.size",
    "dim": "x.ndim", "unsqueeze": "xp.expand_dims(x, axis=...)",
    "amax": "xp.max(x)", "amin": "xp.min(x)", "sort": "xp.sort(x)", "nonzero": "xp.nonzero(x)",
}
_ESCAPES = ("item", "tolist", "numpy", "tobytes", "get", "cpu", "detach")


class Tracer:
    """A traced array: ``_main`` is its transformation, ``_a`` its value one level down
    (with this array's dtype and device: the primal, the batched value or the
    per-sample value).  What an interpreter keeps per value has its own slot, set by
    that interpreter only: ``_tangent`` (forward mode: the tangent, or ``Zero``),
    ``_node_id`` (reverse mode: the id of the node that made it, ``None`` for a
    constant), ``_batched`` (vmap: whether ``_a`` carries the batch axis first).
    ``_view`` is the :class:`ViewLink` of a view or a base of views, else ``None``.

    Interpreters make their arrays with :func:`new_tracer`."""

    __slots__ = ("_main", "_a", "_tangent", "_node_id", "_batched", "_view", "__weakref__")
    __array_priority__ = 1000
    # how to read a value without its derivative (the eager DiffArray says `.value`)
    _escape_fix = "use xpdiff.stop_gradient(x) first, or read the value outside the transformation"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        TRACER_TYPES.add(cls)

    # --- what the interpreter answers ---------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._main.trace.shape_of(self)

    # --- array attributes ----------------------------------------------------------
    @property
    def dtype(self) -> Any:
        return self._a.dtype  # (the value one level down has this tracer's dtype)

    @property
    def device(self) -> Any:
        return self._a.device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def mT(self) -> Any:
        return _OPS["matrix_transpose"](self)

    @property
    def T(self) -> Any:
        if self.ndim != 2:
            raise ValueError(f"x.T requires a 2-d array, got {self.ndim} dims; use x.mT or permute_dims")
        return _OPS["permute_dims"](self, (1, 0))

    def __array_namespace__(self, /, *, api_version: str | None = None) -> Any:
        return _OPS["namespace_for"](raw_namespace(self), api_version)

    # --- NumPy's dispatch protocols: plain NumPy code runs through the standard -------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return call_ufunc(self.__array_namespace__(), ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        return call_function(self.__array_namespace__(), func, args, kwargs)

    def to_device(self, device: Any, /, *, stream: Any = None) -> Any:
        if device == self.device:
            return self
        raise ValueError(
            f"to_device: moving a traced array from {self.device} to {device} inside a "
            f"transformation is not supported; move the inputs before transforming"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, level={self._main.level})"

    # --- escapes: refuse to silently drop derivatives ------------------------------
    def __array__(self, *a: Any, **k: Any) -> Any:
        raise TypeError(_lost(self, "Converting to a NumPy array (__array__)")
                        + "; if a NumPy array is being indexed with a traced index (W[idx]), "
                          "write xp.asarray(W)[idx] or xp.take(W, idx, axis=0)")

    def __dlpack__(self, /, *, stream: Any = None, max_version: Any = None,
                   dl_device: Any = None, copy: bool | None = None) -> Any:
        raise TypeError(_lost(self, "__dlpack__"))

    def __dlpack_device__(self) -> Any:
        return self._a.__dlpack_device__()

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes the array object does not have (x.sum(), x.item())
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in _ESCAPES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}: "
                                 + _lost(self, f"x.{name}()"))
        fix = _METHOD_FIXES.get(name)
        if fix is None and hasattr(_OPS["namespace_for"](raw_namespace(self), None), name):
            fix = f"xp.{name}(x, ...)"
        hint = (f": the array API standard has it as a function, not an array method; write {fix} "
                f"with xp = x.__array_namespace__()") if fix else ""
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{hint}")

    def _constant_value(self) -> Any:
        """The value one level down if this tracer is a constant of its transformation
        holding one value (no derivative, not a batch of values), else ``None``."""
        return self._main.trace.constant_value(self)

    def _concrete(self) -> Any:
        """The backend value of a tracer that is a constant at every level, else ``None``:
        converting it to a Python scalar drops no derivative."""
        v = self
        while isinstance(v, Tracer):
            v = v._constant_value()
        return v

    def __float__(self) -> float:
        v = self._concrete()
        if v is None:
            raise TypeError(_lost(self, "float()"))
        return float(v)

    def __int__(self) -> int:
        v = self._concrete()
        if v is None:
            raise TypeError(_lost(self, "int()"))
        return int(v)

    def __complex__(self) -> complex:
        raise TypeError(_lost(self, "complex()"))

    def __index__(self) -> int:
        v = self._concrete()
        if v is None:
            raise TypeError(_lost(self, "__index__"))
        return operator.index(v)

    def __bool__(self) -> bool:
        v = self._concrete()
        if v is None:
            raise TypeError(_lost(self, "bool() (e.g. `if x:` on a traced array)"))
        return bool(v)

    def __iter__(self) -> Any:
        """Iteration over the first axis: ``x[0], x[1], ...``, each keeping its derivative
        (``for a in x``, ``a, b = x``); a 0-d array is not iterable (as in NumPy)."""
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return self._items(self.shape[0])

    def _items(self, n: int) -> Iterator[Any]:
        for i in range(n):
            with op_context("iteration (for a in x)"):
                item = self[i]
            yield item

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    # --- indexing and in-place updates ---------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        return _OPS["getitem"](self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._rebind(_OPS["setitem"](self, key, value))

    def _rebind(self, new: Any) -> Any:
        """Make this tracer object stand for ``new`` (an in-place update computed
        functionally): through a view, the base and every other live view of it
        are updated too."""
        if not isinstance(new, Tracer):
            new = _OPS["lift_constant"](new, self)
        if self._view is None:
            self._check_write()
            _take(self, new)
            return self
        return _write_through(self, new)

    def _check_write(self) -> None:
        """Raise if this array may not be updated in place (the eager API's leaves)."""

    def __copy__(self) -> Any:
        """``copy.copy(x)``: a new array holding the same value, a view of nothing."""
        new = object.__new__(type(self))
        new._main = self._main
        new._a = self._a
        new._view = None
        slot = self._main.trace.datum_slot
        if slot is not None:
            setattr(new, slot, getattr(self, slot))
        return new


def new_tracer(cls: type, main: Any, value: Any, slot: str | None = None, datum: Any = None) -> Any:
    """A traced array of class ``cls`` (``Tracer`` or a subclass) of the transformation
    ``main``: ``value`` one level down and, in the slot its interpreter keeps
    (``main.trace.datum_slot``), ``datum``.  The one way interpreters make arrays (no
    ``__init__``: ``DiffArray``'s constructor is the user's)."""
    t = _new(cls)
    t._main = main
    t._a = value
    t._view = None
    if slot is not None:
        setattr(t, slot, datum)
    return t


_new = object.__new__


def _take(x: Tracer, new: Tracer) -> None:
    """``x`` stands for ``new`` from now on (its class and its view links stay): it
    takes ``new``'s transformation, value and interpreter datum, and drops its own."""
    drop, keep = x._main.trace.datum_slot, new._main.trace.datum_slot
    x._main = new._main
    x._a = new._a
    if keep is not None:
        setattr(x, keep, getattr(new, keep))
    if drop is not None and drop != keep:
        delattr(x, drop)


def unbox(main: Any, values: Iterable[Any]) -> tuple[list, list]:
    """What the transformation ``main`` returns of its function's ``values``: each
    value one level down, and the datum its interpreter keeps for it
    (``main.trace.datum``; ``constant_datum`` for the values that are constants to it)."""
    trace = main.trace
    out, data = [], []
    for v in values:
        if isinstance(v, Tracer) and v._main is main:
            out.append(v._a)
            data.append(trace.datum(v))
        else:
            out.append(v)
            data.append(trace.constant_datum(v))
    return out, data


# --- views ---------------------------------------------------------------------------------------

_TRACKED, _READONLY, _ALIAS = 1, 2, 3


class ViewLink:
    """How a traced array relates to the arrays it shares memory with.

    ``kind`` is ``None`` for a base (an array that only has views), ``_TRACKED`` for
    a view whose value is ``derive(parent)`` and whose writes go back to the parent as
    ``write(parent, value)``, ``_READONLY`` for a view that cannot be written
    (``broadcast_to``), ``_ALIAS`` for a result that may or may not share memory with
    its base depending on the backend's layout (``reshape``): ``parent`` is then a
    weak reference to the base, and a write is refused while both are alive.
    ``children`` holds weak references to the views taken of this array."""

    __slots__ = ("kind", "parent", "derive", "write", "name", "children", "limit")

    def __init__(self, kind: int | None, parent: Any, derive: Callable | None,
                 write: Callable | None, name: str):
        self.kind, self.parent, self.derive, self.write, self.name = kind, parent, derive, write, name
        self.children: list | None = None
        self.limit = 16

    def add(self, child: Tracer) -> None:
        ch = self.children
        if ch is None:
            ch = self.children = []
        ch.append(weakref.ref(child))
        if len(ch) > self.limit:  # drop dead views (amortised: the limit doubles)
            ch[:] = [r for r in ch if r() is not None]
            self.limit = max(16, 2 * len(ch))


def _link(x: Tracer) -> ViewLink:
    info = x._view
    if info is None:
        info = x._view = ViewLink(None, None, None, None, "")
    return info


def _root(x: Tracer) -> Tracer:
    """The array owning the memory ``x`` may share (through tracked views and live aliases)."""
    while True:
        info = x._view
        if info is None or info.kind is None:
            return x
        if info.kind == _ALIAS:
            p = info.parent()
            if p is None:
                return x
            x = p
        else:
            x = info.parent


def make_view(x: Any, out: Any, name: str, derive: Callable, write: Callable | None) -> Any:
    """Link the traced array ``out`` (computed as ``derive(x)``) to ``x`` as a view:
    writes through ``out`` reach ``x`` as ``x = write(x, out)`` and writes to ``x``
    re-derive ``out``; ``write=None`` makes a read-only view.  Returns ``out``."""
    if not (isinstance(x, Tracer) and isinstance(out, Tracer)) or out is x:
        return out
    _link(x).add(out)
    out._view = ViewLink(_TRACKED if write is not None else _READONLY, x, derive, write, name)
    return out


def make_alias(x: Any, out: Any, name: str) -> Any:
    """Mark the traced array ``out`` as possibly sharing memory with ``x`` (whether it
    does is layout-dependent in NumPy): an in-place write to either, while both are
    alive, raises :class:`AliasingError`.  Returns ``out``."""
    if not (isinstance(x, Tracer) and isinstance(out, Tracer)) or out is x:
        return out
    root = _root(x)
    _link(root).add(out)
    out._view = ViewLink(_ALIAS, weakref.ref(root), None, None, name)
    return out


def _live_children(x: Tracer) -> list:
    info = x._view
    if info is None or not info.children:
        return []
    out = [c for c in (r() for r in info.children) if c is not None]
    if len(out) < len(info.children):
        info.children[:] = [weakref.ref(c) for c in out]
    return out


def _alias_error(name: str) -> AliasingError:
    return AliasingError(
        f"in-place write to an array that may share memory with another through {name}: "
        f"whether {name} returns a view depends on the memory layout (NumPy copies when it "
        f"cannot make a view), so xpdiff does not guess which of the two should see the "
        f"write; make the copy explicit (xp.{name}(x, shape, copy=True)), ask for a view "
        f"(xp.{name}(x, shape, copy=False): the write then reaches both), or drop the other "
        f"array before writing")


def _check_group(x: Tracer) -> None:
    stack = [x]
    while stack:
        for c in _live_children(stack.pop()):
            if c._view.kind == _ALIAS:
                raise _alias_error(c._view.name)
            stack.append(c)


def _write_through(x: Tracer, new: Tracer) -> Tracer:
    path = [x]
    node = x
    while True:
        info = node._view
        if info.kind is None:
            break
        if info.kind == _ALIAS:
            if info.parent() is not None:
                raise _alias_error(info.name)
            break
        if info.kind == _READONLY:
            raise AliasingError(
                f"in-place write to a read-only view made by {info.name} (NumPy refuses it "
                f"too: its elements share memory); write to a copy, xp.asarray(y, copy=True)")
        node = info.parent
        if node._view is None:  # pragma: no cover - a parent always has its link
            break
        path.append(node)
    _check_group(node)
    for n in path:
        n._check_write()
    news = [new]
    for child, parent in zip(path, path[1:]):
        v = news[-1]
        if v.dtype != parent.dtype:
            v = _OPS["astype"](v, parent.dtype)
        news.append(child._view.write(parent, v))
    for n, v in zip(path, news):
        _take(n, v if isinstance(v, Tracer) else _lift(v, n))
    _rederive(node, {id(n) for n in path})
    return x


def _lift(v: Any, like: Tracer) -> Tracer:
    return _OPS["lift_constant"](v, like)


def _rederive(x: Tracer, done: set) -> None:
    """Recompute every live view below ``x`` from its parent (parents first; the ones
    in ``done`` already hold their new value)."""
    stack = [x]
    while stack:
        p = stack.pop()
        for c in _live_children(p):
            if id(c) not in done:
                v = c._view.derive(p)
                _take(c, v if isinstance(v, Tracer) else _lift(v, c))
            stack.append(c)


def _lost(x: Tracer, what: str) -> str:
    msg = _LOST.format(what=what, fix=type(x)._escape_fix)
    if what.startswith("Converting to a NumPy array") and "scipy" in sys.modules \
            and os.environ.get("SCIPY_ARRAY_API") != "1":
        msg += ("; inside SciPy or scikit-learn this happens when their array API support is off: "
                "set the environment variable SCIPY_ARRAY_API=1 before importing them (and "
                "sklearn.set_config(array_api_dispatch=True) for scikit-learn)")
    return msg


_OPS: dict[str, Any] = {}  # the slot: namespace functions, filled by :func:`install`


def install(functions: dict[str, Any]) -> None:
    """Give traced arrays their operators (called once by ``xpdiff.namespaces``).

    ``functions`` maps the standard's names used by the dunders (``add``, ``less``,
    ``negative``, ``matrix_transpose``, ...) to xpdiff's namespace functions, plus
    ``getitem``, ``setitem``, ``lift_constant(value, like)`` and
    ``namespace_for(raw_namespace, api_version)``.
    """
    _OPS.update(functions)
    for dunder, name, symbol in _BINARY:
        fn = functions[name]
        setattr(Tracer, f"__{dunder}__", _binop(fn, dunder))
        setattr(Tracer, f"__r{dunder}__", _rbinop(fn, dunder))
        setattr(Tracer, f"__i{dunder}__", _iop(fn, dunder, symbol))
    for dunder, name in _COMPARISONS:
        setattr(Tracer, f"__{dunder}__", _binop(functions[name], dunder))
    for dunder, name in _UNARY:
        setattr(Tracer, f"__{dunder}__", _unop(functions[name], dunder))


def _binop(fn: Any, dunder: str):
    def op(self: Tracer, other: Any) -> Any:
        return fn(self, other)

    op.__name__ = f"__{dunder}__"
    return op


_KIND_ORDER = ("bool", "integral", "real floating", "complex floating")


def _kind(bk: Any, dtype: Any) -> int:
    return next(i for i, k in enumerate(_KIND_ORDER) if bk.isdtype(dtype, k))


def _rbinop(fn: Any, dunder: str):
    def op(self: Tracer, other: Any) -> Any:
        return fn(other, self)

    op.__name__ = f"__r{dunder}__"
    return op


def _iop(fn: Any, dunder: str, symbol: str):
    def op(self: Tracer, other: Any) -> Any:
        new = fn(self, other)
        if new.dtype != self.dtype or tuple(new.shape) != tuple(self.shape):
            new = _inplace_result(self, other, new, symbol)
        return self._rebind(new)

    op.__name__ = f"__i{dunder}__"
    return op


def _inplace_result(x: Tracer, other: Any, new: Any, symbol: str) -> Any:
    """The value an in-place ``x op= other`` stores: never of another shape, and never of
    another kind of dtype (``i += 1.5`` on integers is refused, as NumPy and the standard
    do); a result of the same kind is cast back to ``x``'s dtype, as NumPy does."""
    if tuple(new.shape) != tuple(x.shape):
        raise ValueError(
            f"x {symbol}= y: the result has shape {tuple(new.shape)} but an in-place "
            f"operation cannot change the shape of x {tuple(x.shape)}; write x = x {symbol} y")
    bk = raw_namespace(x)
    if _kind(bk, new.dtype) != _kind(bk, x.dtype):
        theirs = type(other).__name__ if isinstance(other, (bool, int, float, complex)) else other.dtype
        raise TypeError(
            f"x {symbol}= y: x has dtype {x.dtype} and y is {theirs}, so the result has dtype "
            f"{new.dtype}, which an in-place operation cannot store in x (NumPy and the array "
            f"API standard refuse it); write x = x {symbol} y for a new array, or cast y first")
    return _OPS["astype"](new, x.dtype)


def _unop(fn: Any, dunder: str):
    def op(self: Tracer) -> Any:
        return fn(self)

    op.__name__ = f"__{dunder}__"
    return op


_BINARY = [("add", "add", "+"), ("sub", "subtract", "-"), ("mul", "multiply", "*"),
           ("truediv", "divide", "/"), ("floordiv", "floor_divide", "//"), ("mod", "remainder", "%"),
           ("pow", "pow", "**"), ("matmul", "matmul", "@"), ("and", "bitwise_and", "&"),
           ("or", "bitwise_or", "|"), ("xor", "bitwise_xor", "^"),
           ("lshift", "bitwise_left_shift", "<<"), ("rshift", "bitwise_right_shift", ">>")]
_COMPARISONS = [("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
                ("ge", "greater_equal"), ("eq", "equal"), ("ne", "not_equal")]
_UNARY = [("neg", "negative"), ("pos", "positive"), ("abs", "abs"), ("invert", "bitwise_invert")]

Tracer.__hash__ = None  # type: ignore[assignment]
TRACER_TYPES.add(Tracer)  # (its subclasses register themselves)
