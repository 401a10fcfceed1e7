"""The eager API: ``DiffArray`` (a tracked array) and ``y.to(x)`` (its derivatives).

Built from the ordinary interpreters on *persistent* mains (not on the trace
stack; ``bind`` finds them through the tracers' ``_main``):

* ``E``, one eager reverse trace at the lowest level: a graph of ``interpreters.reverse.Node``
  whose ids are references to the producing node (freed with the arrays), swept
  by ``interpreters.reverse.backward``.  Nodes keep the *tracked* operands, so the backward
  pass is recorded on ``E`` too and derivatives are differentiable again.
* for data dims ``B`` (``batch_ndim=k``): ``V_B`` (vmap over the flattened data
  dims) and ``D_B`` (the data view) above ``E``, so batched code is checked and
  translated by the data rules, executed by the batching rules, and recorded by
  ``E`` as the real batched operations.

See docs/eager.md for the design.

Layer: custom rules and the eager API (above ``xpdiff.transforms``).  May import:
``xpdiff.transforms`` and everything below it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from .backend import device_key, is_array, is_lazy
from .core import (
    _STACK,
    MainTrace,
    MixingError,
    Primitive,
    RuleError,
    Zero,
    check_same_backend,
    namespace_for_values,
    raw_namespace,
)
from .interpreters.batching import BatchTrace, batch_tracer, vmap_call
from .interpreters.dataview import DataTrace, data_tracer
from .interpreters.reverse import Node, ReverseTrace, backward, reverse_tracer, vjp_call
from .rules.creation import CREATION
from .tracer import Tracer
from .transforms import chunking as _chunking
from .transforms.args import _as_array, _cotangent_dtype_fix, _dtype_name

_LEVEL_E, _LEVEL_V, _LEVEL_D = -3_000_000, -2_000_000, -1_000_000
_COUNT = itertools.count()


class _NodeRef:
    """The id of one tracked value: the node that made it (``None`` for a leaf)."""

    __slots__ = ("node", "__weakref__")

    def __init__(self, node: Any):
        self.node = node


class _Node(Node):
    """A recorded application; ``n`` is its creation number (a topological order)."""

    __slots__ = ("n",)


def _data_array(D: MainTrace, per_sample: Any) -> DiffArray:
    """A ``DiffArray`` of a data view ``D_B``: ``_a`` the per-sample value (a ``V_B`` array)."""
    return data_tracer(D, per_sample)


def _is_flat(v: Any) -> bool:
    return isinstance(v, DiffArray) and type(v._main.trace) is EagerTrace


def _is_data(v: Any) -> bool:
    return isinstance(v, DiffArray) and type(v._main.trace) is EagerDataTrace


def _is_float(bk: Any, dtype: Any) -> bool:
    return bk.isdtype(dtype, ("real floating", "complex floating"))


# --- the public array ---------------------------------------------------------------------

class DiffArray(Tracer):
    """A tracked array: array-API code on it returns tracked arrays, ``y.to(x)`` differentiates.

    Args:
        value: a floating-point array of any array-API backend (NumPy, CuPy,
            array-api-strict, ...); it stays on its device.
        batch_ndim: number of leading *data* dims ``B``: the code on ``x`` is
            batched code whose first ``k`` dims index independent samples, and
            derivatives are per sample (an operation mixing samples raises
            :class:`xpdiff.MixingError`).

    ``y.to(x)`` is the gradient of ``sum(y)`` with respect to ``x`` (``x``-shaped),
    ``y.to(x, cotangent=g)`` the vector-Jacobian product, and
    ``y.to(x, jacobian=True)`` the Jacobian, ``B + Y + X`` (one block per sample).
    Results are ``DiffArray`` s again, so ``y.to(x).to(x, jacobian=True)`` is the
    Hessian of ``sum(y)``.  ``.value`` is the plain array.

    Complex numbers (docs/complex.md): ``value`` may be complex.  ``y.to(x)``
    follows :func:`xpdiff.grad` (``df/da - i df/db`` for ``x = a + ib``) and
    ``jacobian=True`` follows :func:`xpdiff.jacrev`, so both need a real ``y`` (a
    complex ``y`` raises ``TypeError``); ``y.to(x, cotangent=g)`` is
    :func:`xpdiff.vjp`'s product for any ``y``.

    >>> import numpy as np, xpdiff as xd
    >>> x = xd.DiffArray(np.array([1.0, 2.0]))
    >>> y = x ** 3
    >>> y.to(x).value
    array([ 3., 12.])
    >>> y.to(x).to(x, jacobian=True).value
    array([[ 6.,  0.],
           [ 0., 12.]])
    >>> xb = xd.DiffArray(np.ones((5, 3)), batch_ndim=1)
    >>> (xb * xb).to(xb, jacobian=True).shape
    (5, 3, 3)
    """

    __slots__ = ()
    _escape_fix = "read the plain array with .value (float(E.value) for a scalar)"

    def __new__(cls, value: Any, /, *, batch_ndim: int = 0) -> DiffArray:
        return _leaf(value, batch_ndim)

    def __init__(self, value: Any, /, *, batch_ndim: int = 0):
        pass  # built by __new__; internal arrays are made by the traces

    @property
    def batch_ndim(self) -> int:
        """The number of leading data dims."""
        return self._main.data["k"] if _is_data(self) else 0

    @property
    def value(self) -> Any:
        """The plain backend array (no derivative information), of shape ``self.shape``."""
        if _is_data(self):
            flat = _raw(_flat(self, record=False))
            return raw_namespace(flat).reshape(flat, self.shape)
        return _raw(self)

    def __array_namespace__(self, /, *, api_version: str | None = None) -> Any:
        """xpdiff's namespace, whose creation functions return (constant) ``DiffArray`` s.

        Array-API code creates constants with ``xp.zeros``, ``xp.asarray``, ... and
        combines them with its inputs (``out = xp.zeros(n); out[1:] = x``); inside a
        transformation the namespace lifts them onto it, and for eager arrays this
        variant lifts them onto the eager trace.
        """
        return _eager_namespace(super().__array_namespace__(api_version=api_version))

    def _check_write(self) -> None:
        """``x[i] = v`` / ``x += y`` (also through a view of ``x``): refused on a leaf, as
        PyTorch does (it would silently change what ``y.to(x)`` differentiates with
        respect to)."""
        e = self._a._a if _is_data(self) and isinstance(self._a, Tracer) else self
        if _is_flat(e) and e._node_id is not None and e._node_id.node is None:
            raise TypeError(
                "DiffArray: in-place update (x[...] = v, x += y, or a library writing into its "
                "input) of a DiffArray made by xd.DiffArray(...) would change what y.to(x) "
                "differentiates with respect to; update a copy instead, e.g. "
                "z = xp.asarray(x, copy=True) (or pass copy=True to the library)")

    def __repr__(self) -> str:
        k = self.batch_ndim
        return f"DiffArray({self.value!r}" + (f", batch_ndim={k})" if k else ")")

    def to(self, x: DiffArray, /, *, cotangent: Any = None, jacobian: bool = False) -> DiffArray:
        """Derivatives of this array with respect to the tracked array ``x``.

        Args:
            x: a :class:`DiffArray` this array was (or was not) computed from.
            cotangent: ``g`` of this array's shape and dtype, or a Python number when
                it is 0-d (as :func:`xpdiff.vjp`: no broadcasting, no casting; another
                shape or dtype raises ``ValueError``, a list ``TypeError``): returns
                ``g^T dy/dx`` (``x``-shaped); default all ones, i.e. the gradient of
                ``sum(y)``.
            jacobian: return the Jacobian ``dy/dx`` instead: shape ``Y + X``, or
                ``B + Y + X`` with data dims (one vectorised backward pass).

        Returns:
            A :class:`DiffArray` (differentiable again); zeros when this array does
            not depend on ``x``.
        """
        return _to(self, x, cotangent, jacobian)


# --- the traces ---------------------------------------------------------------------------

class EagerTrace(ReverseTrace):
    """The eager reverse trace: records nodes that keep tracked operands (see module doc)."""

    __slots__ = ("in_fwd",)

    def __init__(self, main: Any):
        super().__init__(main)
        self.in_fwd = 0

    def lift(self, x: Any) -> DiffArray:
        return reverse_tracer(self.main, x, None, DiffArray)

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        primals, ids = self._split(args)
        out = prim.bind(*primals, **params)
        if not prim.differentiable or all(i is None for i in ids):
            return tuple(self.lift(o) for o in out) if prim.multiple_results else self.lift(out)
        return self.record(prim, params, self._kept(primals, ids), ids, out)

    def _kept(self, primals: list, ids: list) -> list:
        """The operands a node keeps: *fresh* tracked arrays for the tracked ones (the
        user's objects may be rebound later by ``x[i] = v`` / ``x *= y``)."""
        return [p if i is None else reverse_tracer(self.main, p, i, DiffArray) for p, i in zip(primals, ids)]

    def record(self, prim, params, primals, ids, out, custom=None) -> Any:
        multi = isinstance(out, tuple) if prim is None else prim.multiple_results
        node = _Node(prim, params, primals, ids, out, None, custom)
        node.n = next(_COUNT)
        node.out_ids = [_NodeRef(node) for _ in (out if multi else (out,))]
        tracers = [reverse_tracer(self.main, o, r, DiffArray)
                   for o, r in zip(out if multi else (out,), node.out_ids)]
        return tuple(tracers) if multi else tracers[0]

    def process_custom(self, call: Any, args: tuple) -> Any:
        primals, ids = self._split(args)
        if self.in_fwd or all(i is None for i in ids):
            # inside a custom fwd run on tracked arrays, nested custom functions are
            # differentiated through their own code (as forward mode does)
            if all(i is None for i in ids):
                return [self.lift(o) for o in call.fun(*primals)]
            return list(call.fun(*args))
        kept = self._kept(primals, ids)
        self.in_fwd += 1
        try:  # a fwd runs on tracked arrays, so the residuals are tracked (higher order)
            outs, res = call.forward(primals, kept)
        finally:
            self.in_fwd -= 1
        return list(self.record(None, {}, kept, ids, tuple(_raw(o) for o in outs),
                                custom=call.backward(res)))


class EagerDataTrace(DataTrace):
    """The data view of eager arrays with data shape ``B``; its arrays are ``DiffArray`` s."""

    __slots__ = ()
    array_type = DiffArray

    def process(self, prim: Primitive, args: tuple, params: dict) -> Any:
        for a in args:
            if _is_data(a) and a._main is not self.main:
                B, B2 = self.main.data["B"], a._main.data["B"]
                raise MixingError(
                    f"{self.main.data['where']}: '{prim.name}' combines DiffArrays with different "
                    f"data dims ({B} and {B2}); samples only line up between DiffArrays created "
                    f"with the same leading data shape")
        return super().process(prim, args, params)


_E: list[MainTrace] = []
_VIEWS: dict[tuple, tuple[MainTrace, MainTrace]] = {}


def _eager_main() -> MainTrace:
    if not _E:
        _E.append(MainTrace(_LEVEL_E, EagerTrace, {}))
    return _E[0]


def _view(B: tuple, bk: Any, device: Any) -> tuple[MainTrace, MainTrace]:
    """The persistent vmap and data-view mains shared by all arrays with data shape ``B``."""
    key = (B, id(bk), device_key(device))
    if key not in _VIEWS:
        i = len(_VIEWS)
        nB = math.prod(B)
        V = MainTrace(_LEVEL_V + i, BatchTrace, {"size": nB})
        index = batch_tracer(V, bk.arange(nB, device=device), True)
        D = MainTrace(_LEVEL_D + i, EagerDataTrace,
                      {"k": len(B), "B": B, "index": index, "V": V,
                       "where": f"DiffArray(batch_ndim={len(B)})"})
        _VIEWS[key] = (V, D)
    return _VIEWS[key]


_EAGER_NS: dict[int, Any] = {}


def _eager_namespace(plain: Any) -> Any:
    """``plain`` (a namespace) whose creation functions return eager constants when no
    transformation is active (inside one, they are lifted onto it as usual)."""
    ns = _EAGER_NS.get(id(plain))
    if ns is None:
        ns = type(plain)(**vars(plain))
        for name in CREATION:
            if hasattr(plain, name):
                setattr(ns, name, _lifting(getattr(plain, name)))
        _EAGER_NS[id(plain)] = ns
    return ns


def _lifting(f: Any) -> Any:
    def create(*args: Any, **kwargs: Any) -> Any:
        out = f(*args, **kwargs)
        if _STACK:
            return out
        if isinstance(out, (list, tuple)):
            return type(out)(_as_flat(o) for o in out)
        return _as_flat(out)

    create.__name__ = create.__qualname__ = f.__name__
    create.__doc__ = f.__doc__
    return create


# --- construction -------------------------------------------------------------------------

def _leaf(value: Any, k: Any) -> DiffArray:
    if isinstance(value, Tracer):
        what = "already a DiffArray; use it directly" if isinstance(value, DiffArray) else (
            "a traced array of an active transformation (xd.grad, xd.vmap, ...); create "
            "DiffArrays from concrete arrays, outside transformations")
        raise TypeError(f"DiffArray: value is {what}")
    if is_lazy(value):
        raise TypeError(
            "DiffArray: value is a Dask array; a DiffArray records every operation on concrete "
            "data as it runs, which a lazy graph does not have. Write the computation as a "
            "function and use the transforms, which map over the chunks: "
            "xd.jacobian(f, batch_ndim=1)(x), xd.scaleout.grad(per_sample_loss)(w, x), "
            "xd.jvp / xd.vjp; or build DiffArrays inside x.map_blocks(...)")
    if not is_array(value):
        raise TypeError(f"DiffArray: value must be an array of an array-API backend, got "
                        f"{type(value).__name__}; convert it first, e.g. "
                        f"xd.namespace('numpy').asarray(value, dtype=float64)")
    bk = raw_namespace(value)
    if not _is_float(bk, value.dtype):
        raise TypeError(f"DiffArray: value has dtype {value.dtype}; only floating-point arrays can "
                        f"be differentiated. Cast it first, e.g. xp.astype(value, xp.float64)")
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= value.ndim:
        raise ValueError(f"DiffArray: batch_ndim must be an int between 0 and value.ndim="
                         f"{value.ndim}, got {k!r}")
    E = _eager_main()
    if k == 0:
        return reverse_tracer(E, value, _NodeRef(None), DiffArray)
    B = tuple(value.shape[:k])
    V, D = _view(B, bk, value.device)
    flat = bk.reshape(value, (math.prod(B),) + tuple(value.shape[k:]))
    return _data_array(D, batch_tracer(V, reverse_tracer(E, flat, _NodeRef(None), DiffArray), True))


# --- helpers between the levels -----------------------------------------------------------

def _raw(v: Any) -> Any:
    """The backend array under an ``E`` tracer (E is the lowest level)."""
    return v._a if _is_flat(v) else v


def _flat(d: DiffArray, record: bool = True) -> Any:
    """The ``E``-level value, shape ``(prod(B),) + per-sample shape``, of a data-view ``DiffArray``."""
    V = d._main.data["V"]
    v = d._a
    if isinstance(v, Tracer) and v._main is V:
        if v._batched:
            return v._a
        v = v._a
    shape = (V.data["size"],) + tuple(v.shape)
    return namespace_for_values([v]).broadcast_to(v if record else _raw(v), shape)


def _unflat(e: Any, D: MainTrace) -> DiffArray:
    """Present an ``E``-level (or raw) value of shape ``(prod(B),) + S`` as ``B + S``."""
    if not isinstance(e, Tracer):
        e = _eager_main().trace.lift(e)
    return _data_array(D, batch_tracer(D.data["V"], e, True))


def _as_flat(v: Any) -> Any:
    """A plain ``E`` value (raw arrays lifted to constants) as a ``DiffArray``."""
    return v if isinstance(v, Tracer) else _eager_main().trace.lift(v)


def _tracked_nodes(nodes: list, main: MainTrace, visiting: list) -> Iterator[Node]:
    """The nodes of one sweep, last first, each with its outputs as tracked arrays (so
    the rules' work is recorded on ``E`` too: higher orders); ``visiting[0]`` is the
    node being swept (for the error messages)."""
    for nd in reversed(nodes):
        visiting[0] = nd
        multi = isinstance(nd.out, tuple)
        outs = [reverse_tracer(main, o, r, DiffArray)
                for o, r in zip(nd.out if multi else (nd.out,), nd.out_ids)]
        yield Node(nd.prim, nd.params, nd.primals, nd.in_ids, tuple(outs) if multi else outs[0],
                   nd.out_ids, nd.custom)


def _nodes_between(out_ref: _NodeRef, target: _NodeRef) -> list:
    """Nodes reachable from ``out_ref`` that depend on ``target``, in creation order."""
    seen: dict[int, _Node] = {}
    stack = [out_ref.node] if out_ref.node is not None else []
    while stack:
        nd = stack.pop()
        if id(nd) in seen:
            continue
        seen[id(nd)] = nd
        stack.extend(r.node for r in nd.in_ids
                     if r is not None and r.node is not None and id(r.node) not in seen)
    live, keep = {target}, []
    for nd in sorted(seen.values(), key=lambda nd: nd.n):
        if any(r in live for r in nd.in_ids):
            keep.append(nd)
            live.update(nd.out_ids)
    return keep


def _pullback(ye: Any, xe: Any, where: str):
    """``ct -> ct^T d ye / d xe`` over the eager graph (raw zeros where independent)."""
    y_ref = ye._node_id if _is_flat(ye) else None
    x_ref = xe._node_id if _is_flat(xe) else None
    x_raw = _raw(xe)
    nodes = _nodes_between(y_ref, x_ref) if y_ref is not None and x_ref is not None else []
    main = _eager_main()

    def pull(ct: Any) -> Any:
        if not nodes and y_ref is not x_ref:
            return raw_namespace(x_raw).zeros_like(x_raw)
        visiting: list = [None]
        try:
            (c,) = backward(_tracked_nodes(nodes, main, visiting), [y_ref], [ct], [x_ref], [x_raw])
        except Exception as e:
            nd = visiting[0]
            if nd is not None and nd.custom is None and nd.prim.vjp is None:
                raise RuleError(f"{where}: differentiation rule for '{nd.prim.name}' not "
                                f"implemented (reverse mode / vjp); wrap the computation in "
                                f"xpdiff.custom_vjp to give it a rule") from None
            if nd is not None:
                name = "a custom_jvp/custom_vjp function" if nd.custom else f"'{nd.prim.name}'"
                note = getattr(e, "add_note", None)  # Python >= 3.11
                if note is not None:
                    note(f"{where}: raised by the reverse-mode rule of {name}")
            raise
        return raw_namespace(x_raw).zeros_like(x_raw) if isinstance(c, Zero) else c

    return pull


def _eye(like: Any, n: int, shape: tuple) -> Any:
    bk = raw_namespace(like)
    return bk.reshape(bk.eye(n, dtype=like.dtype, device=like.device), (n,) + shape)


def _vmapped(fn: Any, basis: Any, n: int) -> Any:
    (v,), (b,) = vmap_call(lambda c: [fn(c)], [basis], [True], n)
    return v if b else namespace_for_values([v]).broadcast_to(v, (n,) + tuple(v.shape))


# --- y.to(x) ------------------------------------------------------------------------------

def _to(y: Any, x: Any, cotangent: Any, jacobian: bool) -> DiffArray:
    where = "DiffArray.to"
    if not isinstance(x, DiffArray):
        raise TypeError(f"{where}: x must be a DiffArray (the array to differentiate with respect "
                        f"to), got {type(x).__name__}")
    if jacobian and cotangent is not None:
        raise ValueError(f"{where}: pass either cotangent= or jacobian=True, not both")
    if not _is_float(raw_namespace(y), y.dtype):
        raise TypeError(f"{where}: y has dtype {y.dtype}; only floating-point arrays can be "
                        f"differentiated (integer and boolean results carry no derivative)")
    Dy = y._main if _is_data(y) else None
    Dx = x._main if _is_data(x) else None
    if Dy is not None and Dx is not None and Dy is not Dx:
        raise MixingError(f"{where}: y has data dims {Dy.data['B']} but x has data dims "
                          f"{Dx.data['B']}; they belong to different batches")
    D = Dy or Dx
    ye = _flat(y) if Dy is not None else y
    if Dx is not None:
        V = Dx.data["V"]
        if not (isinstance(x._a, Tracer) and x._a._main is V and x._a._batched):
            raise ValueError(f"{where}: x was computed without its data (it is the same for every "
                             f"sample); differentiate with respect to the arrays it was made from")
        xe = x._a._a
    else:
        xe = x
    _check_complex(y, x, cotangent, jacobian, Dy is not None and Dx is None, where)
    pull = _pullback(ye, xe, where)
    ye_raw = _raw(ye)
    if jacobian:
        nB = D.data["V"].data["size"] if D is not None else None
        _check_jacobian_fits(y, x, ye_raw, nB if Dy is not None and Dx is not None else 1,
                             D is not None, where)
        if Dy is not None and Dx is None:
            J = _jac_shared(pull, ye_raw, _raw(xe), nB)
        else:
            Y = tuple(ye_raw.shape[1:]) if Dy is not None else tuple(ye_raw.shape)
            nY = math.prod(Y)
            basis = _eye(ye_raw, nY, Y)
            if Dy is not None:  # the same one-hot row for every sample: (nY, nB) + Y, a view
                bk = raw_namespace(basis)
                basis = bk.broadcast_to(bk.reshape(basis, (nY, 1) + Y), (nY, nB) + Y)
            J = _vmapped(pull, basis, nY)
            if Dx is not None:  # (nY, nB) + X -> (nB,) + Y + X
                ns = namespace_for_values([J])
                X = tuple(J.shape[2:])
                J = ns.reshape(ns.moveaxis(J, 0, 1), (nB,) + Y + X)
            else:
                J = namespace_for_values([J]).reshape(J, Y + tuple(J.shape[1:]))
        return _unflat(J, D) if D is not None else _as_flat(J)
    ct = _cotangent(y, ye_raw, cotangent, where)
    g = pull(ct)
    return _unflat(g, Dx) if Dx is not None else _as_flat(g)


def _check_complex(y: Any, x: Any, cotangent: Any, jacobian: bool, shared: bool, where: str) -> None:
    """The complex convention of ``y.to(x)`` (docs/complex.md): the gradient and the
    Jacobian are those of ``grad`` and ``jacrev``, so ``y`` must be real; an explicit
    ``cotangent=`` is a vector-Jacobian product, as ``xpdiff.vjp``."""
    bk = raw_namespace(y)
    if bk.isdtype(y.dtype, "complex floating") and cotangent is None:
        what = "jacobian=True" if jacobian else "the gradient of sum(y)"
        raise TypeError(f"{where}: y is complex ({y.dtype}); {what} needs a real y (as grad and "
                        f"jacrev do; taking the real part silently would be wrong). Differentiate "
                        f"a real function of it (xp.real(y), xp.abs(y) ** 2), pass cotangent= for a "
                        f"vector-Jacobian product, or use xd.jacrev(f, holomorphic=True) for a "
                        f"holomorphic f")
    if jacobian and shared and bk.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"{where}: jacobian=True of a batched y with respect to a complex x without "
                        f"data dims is not supported; use xd.jacrev(f, batch_ndim=k) on a function "
                        f"of x")


def _check_jacobian_fits(y: Any, x: Any, ye_raw: Any, shared_samples: int, batched: bool,
                         where: str) -> None:
    """``jacobian=True`` refuses, before allocating, a result larger than half the free
    memory of the device (the automatic budget of the transforms)."""
    size = math.prod(y.shape) * math.prod(x.shape) // shared_samples
    budget = _chunking.budget(ye_raw, None)
    if budget is not None and size * _chunking.itemsize(ye_raw) > budget:
        raise _chunking.ChunkMemoryError(
            f"{where}(jacobian=True): the Jacobian {tuple(y.shape)} by {tuple(x.shape)} needs "
            f"{_chunking._fmt(size * _chunking.itemsize(ye_raw))}, more than the memory budget of "
            f"{_chunking._fmt(budget)} (half the free memory); "
            + ("differentiate a smaller batch, " if batched else
               "use batch_ndim so only per-sample blocks are formed, ")
            + "or ask for vector-Jacobian products with cotangent=")


def _cotangent(y: Any, ye_raw: Any, g: Any, where: str) -> Any:
    bk = raw_namespace(ye_raw)
    if g is None:
        return bk.ones(ye_raw.shape, dtype=ye_raw.dtype, device=ye_raw.device)
    if not (isinstance(g, Tracer) or hasattr(g, "shape")):
        # as vjp's pullback: a Python number stands for a 0-d array of y's dtype
        number = isinstance(g, (float, int)) and not isinstance(g, bool)
        if number and y.ndim == 0:
            return _as_array(g, where, "cotangent", ye_raw)
        shape, dt = tuple(y.shape), _dtype_name(y.dtype)
        if number:
            fix = f"; for g everywhere, pass xp.full({shape}, g, dtype=xp.{dt})"
        elif isinstance(g, (list, tuple)):
            fix = f"; convert it with y's namespace: xp.asarray(g, dtype=xp.{dt})"
        else:
            fix = ""
        raise TypeError(f"{where}: cotangent must be an array of y's shape {shape} and dtype {dt}"
                        + (" (or a Python number: y is 0-d)" if y.ndim == 0 else "")
                        + f", got {type(g).__name__}{fix}")
    if tuple(g.shape) != tuple(y.shape):
        raise ValueError(f"{where}: cotangent must have the shape of y, {tuple(y.shape)}, got "
                         f"{tuple(getattr(g, 'shape', ()))!r} ({type(g).__name__})")
    check_same_backend([("y", y), ("the cotangent", g)], where)
    if g.dtype != y.dtype:  # a dtype, not a value: no device sync
        raise ValueError(f"{where}: the cotangent has dtype {g.dtype}, but y has dtype {y.dtype}; "
                         f"a cotangent has y's shape and dtype: {_cotangent_dtype_fix(y, g)}")
    if _is_data(g):
        if g._main is not y._main:
            raise MixingError(f"{where}: the cotangent has different data dims than y")
        return _flat(g)
    if _is_data(y):
        return namespace_for_values([g]).reshape(g, tuple(ye_raw.shape))
    return g


def _jac_shared(pull: Any, ye_raw: Any, x_raw: Any, nB: int) -> Any:
    """Per-sample blocks ``(nB,) + Y + X`` of a batched ``y`` w.r.t. a shared ``x``.

    Forward mode by transposition: ``pull`` is linear in the cotangent, so reverse
    mode over it gives ``v -> J v``, vectorised over a basis of ``x``.
    """
    bk = raw_namespace(ye_raw)
    u0 = bk.zeros(ye_raw.shape, dtype=ye_raw.dtype, device=ye_raw.device)
    _, pull2 = vjp_call(lambda u: [pull(u)], [u0])
    X = tuple(x_raw.shape)
    nX = math.prod(X)

    def jv(v: Any) -> Any:
        (c,) = pull2([v])
        return bk.zeros(ye_raw.shape, dtype=ye_raw.dtype, device=ye_raw.device) \
            if isinstance(c, Zero) else c

    J = _vmapped(jv, _eye(x_raw, nX, X), nX)  # (nX, nB) + Y
    ns = namespace_for_values([J])
    return ns.reshape(ns.moveaxis(J, 0, -1), tuple(ye_raw.shape) + X)


__all__ = ["DiffArray", "EagerDataTrace", "EagerTrace"]
