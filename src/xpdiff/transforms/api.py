"""Public transformations, written as compositions of the interpreters:
``jacfwd = vmap(jvp)``, ``jacrev = vmap(vjp)``, ``hessian = jacfwd(jacrev)``, and
``batch_ndim=k`` = vmap over the data dims of the per-sample derivative, with
the user's batched code seen through the data view.
"""

from __future__ import annotations

import contextlib
import math
import threading
import traceback
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from ..backend import (
    backend_namespace,
    default_float_dtype,
    device_scope,
    device_scope_needed,
    is_array,
    update,
)
from ..core import (
    XpdiffError,
    Zero,
    check_same_backend,
    instantiate,
    lift_constant,
    namespace_for_values,
    new_main,
    raw_namespace,
)
from ..core import tree as _tree
from ..interpreters.batching import BatchTrace, BatchTracer, vmap_call
from ..interpreters.dataview import DataContext, DataTrace, DataTracer
from ..interpreters.forward import jvp_call
from ..interpreters.reverse import vjp_call
from ..interpreters.structured import Diag
from ..rules.structure import diag_block, lowrank_diag
from ..tracer import Tracer
from . import chunking as _chunking

ArgNums = int | Sequence[int]


# --- argument helpers ----------------------------------------------------------------------

def _as_array(x: Any, fname: str, what: str, like: Any = None) -> Any:
    """``x`` as an array; a Python number becomes a 0-d array of ``like``'s backend and
    device (created there, no host copy), with ``like``'s dtype when it is floating (else
    the backend's default floating dtype); without ``like``, a float64 NumPy (default
    backend) array."""
    if isinstance(x, Tracer) or is_array(x):
        return x
    if isinstance(x, (float, int)) and not isinstance(x, bool):
        if like is None:
            return backend_namespace().asarray(float(x))
        bk, dev = raw_namespace(like), like.device
        dt = like.dtype if _is_floating(like) else default_float_dtype(bk, dev)
        return bk.full((), float(x), dtype=dt, device=dev)
    raise TypeError(f"{fname}: {what} must be an array (or a pytree of arrays), got "
                    f"{type(x).__name__}")


_FLOAT_DTYPES: set = set()  # (dtype type, dtype) pairs known to be floating point


def _check_float(x: Any, fname: str, what: str) -> None:
    dt = x.dtype
    key = (type(dt), dt)  # dtypes of two libraries never compare
    try:
        if key in _FLOAT_DTYPES:
            return
    except TypeError:  # an unhashable dtype: no caching
        key = None
    bk = raw_namespace(x)
    if bk.isdtype(dt, ("real floating", "complex floating")):
        if key is not None:
            _FLOAT_DTYPES.add(key)
        return
    raise TypeError(f"{fname}: {what} has dtype {x.dtype}; only floating-point arrays can be "
                    f"differentiated. Cast it first, e.g. x.astype(float64) / "
                    f"xp.astype(x, xp.float64)")


def _first_array(args: Sequence) -> Any:
    for a in args:
        for x in _tree.flatten(a)[0]:
            if isinstance(x, Tracer) or is_array(x):
                return x
    return None


def _is_floating(x: Any) -> bool:
    try:
        _check_float(x, "", "")
    except TypeError:
        return False
    return True


def _device_scope(args: Sequence) -> Any:
    """The inputs' device made current for the whole transformation (CuPy, torch CUDA);
    nothing to do unless such a backend is loaded."""
    if not device_scope_needed():
        return _NO_SCOPE
    x = _first_array(args)
    return _NO_SCOPE if x is None else device_scope(raw_namespace(x), x.device)


_NO_SCOPE = contextlib.nullcontext()


def _argnums(argnums: ArgNums, nargs: int, fname: str) -> tuple[tuple[int, ...], bool]:
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise ValueError(f"{fname}: argnums must not be empty")
    out = []
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise ValueError(f"{fname}: argnums={argnums!r} is out of range for a function called "
                             f"with {nargs} positional argument(s); pass argnums between 0 and "
                             f"{nargs - 1}")
        out.append(a % nargs)
    return tuple(out), single


def _labelled(args: Sequence, what: str = "argument") -> list:
    """``(label, leaf)`` for every leaf of ``args``, for the one-backend-one-device check."""
    out = []
    for i, a in enumerate(args):
        leaves, _ = _tree.flatten(a)
        one = len(leaves) == 1
        out.extend((f"{what} {i}" if one else f"{what} {i} (leaf {j})", x)
                   for j, x in enumerate(leaves))
    return out


def _constants(arg: Any) -> Any:
    """``arg`` with its raw backend arrays made constants of the innermost transformation
    (no tape node, no tangent); traced values and non-arrays are left as they are."""
    leaves, tdef = _tree.flatten(arg)
    if not any(is_array(x) and not isinstance(x, Tracer) for x in leaves):
        return arg
    return _tree.unflatten(tdef, [lift_constant(x) if is_array(x) and not isinstance(x, Tracer)
                                  else x for x in leaves])


class _Flat:
    """``f`` over flat leaves of the differentiated arguments (others held fixed)."""

    def __init__(self, f: Callable, args: tuple, nums: tuple, has_aux: bool, fname: str):
        self.f, self.args, self.nums, self.has_aux, self.fname = f, args, nums, has_aux, fname
        self.in_leaves, self.in_defs = [], []
        like = _first_array(args)  # Python numbers among the arguments are created like it
        for i in nums:
            leaves, tdef = _tree.flatten(args[i])
            leaves = [_as_array(x, fname, f"argument {i}", like) for x in leaves]
            for x in leaves:
                _check_float(x, fname, f"argument {i}")
            self.in_leaves.append(leaves)
            self.in_defs.append(tdef)
        self.sizes = [len(ls) for ls in self.in_leaves]
        self.flat_in = [x for ls in self.in_leaves for x in ls]
        check_same_backend(_labelled(args), fname)
        self.out_def = None
        self.n_out = 0
        self.aux_def = None

    def rebuild(self, flat: Sequence) -> list:
        """The arguments inside the transformation: the differentiated ones from ``flat``,
        the others with their arrays as constants of it (so every array argument answers
        with xpdiff's namespace: ``array_namespace(X, w)`` works)."""
        args = [_constants(a) for a in self.args]
        pos = 0
        for i, tdef, n in zip(self.nums, self.in_defs, self.sizes):
            args[i] = _tree.unflatten(tdef, list(flat[pos:pos + n]))
            pos += n
        return args

    def __call__(self, *flat: Any) -> list:
        out = self.f(*self.rebuild(flat))
        aux_leaves: list = []
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"{self.fname}(has_aux=True): f must return a pair (output, aux)")
            out, aux = out
            aux_leaves, self.aux_def = _tree.flatten(aux)
        leaves, self.out_def = _tree.flatten(out)
        for y in leaves:
            if not (isinstance(y, Tracer) or is_array(y)):
                raise TypeError(f"{self.fname}: f must return arrays (or pytrees of arrays), got "
                                f"{type(y).__name__}")
        self.n_out = len(leaves)
        return list(leaves) + list(aux_leaves)

    def split(self, res: list) -> tuple[list, Any]:
        outs, aux = res[:self.n_out], res[self.n_out:]
        return outs, (_tree.unflatten(self.aux_def, aux) if self.has_aux else None)

    def pack_in(self, flat: Sequence, single: bool) -> Any:
        """Per-argument pytrees, as a tuple unless argnums was an int."""
        trees, pos = [], 0
        for tdef, n in zip(self.in_defs, self.sizes):
            trees.append(_tree.unflatten(tdef, list(flat[pos:pos + n])))
            pos += n
        return trees[0] if single else tuple(trees)


# --- lazy arrays: a registration slot filled by the scale-out layer ------------------------

# Handlers for lazy, chunked arrays (Dask), registered at import by xpdiff.scaleout (the
# transforms never import it).  Each is called as ``handler(fname, f, options, args)`` before a
# transform runs and returns NotImplemented unless an argument is one of its arrays.
LAZY_HANDLERS: list[Callable] = []


def _lazy_aware(fname: str, f: Callable, options: dict, run: Callable) -> Callable:
    @wraps(f)
    def call(*args: Any) -> Any:
        for handler in LAZY_HANDLERS:
            out = handler(fname, f, options, args)
            if out is not NotImplemented:
                return out
        with _device_scope(args):
            return run(*args)

    return call


# --- jvp / vjp -----------------------------------------------------------------------------

def jvp(f: Callable, primals: Sequence, tangents: Sequence) -> tuple[Any, Any]:
    """Forward mode: evaluate ``f(*primals)`` and its directional derivative.

    Args:
        f: a function of arrays (or pytrees of arrays).
        primals: the arguments, a tuple or list.
        tangents: one tangent per primal, same structure, shapes and dtypes.

    Returns:
        ``(out, out_tangent)``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.jvp(lambda x: x * x, (np.array([3.0]),), (np.array([1.0]),))
    (array([9.]), array([6.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists) of arguments")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: got {len(primals)} primals but {len(tangents)} tangents; pass one "
                         f"tangent per primal")
    flat = _Flat(f, tuple(primals), tuple(range(len(primals))), False, "jvp")
    check_same_backend(_labelled(primals, "primal") + _labelled(tangents, "tangent"), "jvp")
    t_leaves, t_def = _tree.flatten(tuple(tangents))
    if len(t_leaves) != len(flat.flat_in):
        raise ValueError("jvp: tangents must have the same pytree structure as primals")
    ts = []
    for i, (p, t) in enumerate(zip(flat.flat_in, t_leaves)):
        t = _as_array(t, "jvp", "a tangent", p)
        if tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype:
            raise ValueError(f"jvp: tangent {i} has shape {tuple(t.shape)} and dtype {t.dtype}, but "
                             f"its primal has shape {tuple(p.shape)} and dtype {p.dtype}; pass a "
                             f"tangent of the same shape and dtype")
        ts.append(t)
    with _device_scope(primals):
        outs, touts = jvp_call(flat, flat.flat_in, ts)
    xp = namespace_for_values(outs)
    touts = [xp.zeros_like(o) if isinstance(t, Zero) else t for o, t in zip(outs, touts)]
    return _tree.unflatten(flat.out_def, outs), _tree.unflatten(flat.out_def, touts)


def vjp(f: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """Reverse mode: evaluate ``f(*primals)`` and return a pullback.

    Returns:
        ``(out, vjp_fn)`` or ``(out, vjp_fn, aux)``; ``vjp_fn(cotangent)`` returns a
        tuple with one cotangent per primal and may be called many times.

    >>> import numpy as np, xpdiff as xd
    >>> out, f_vjp = xd.vjp(lambda x: x * x, np.array([3.0]))
    >>> f_vjp(np.array([1.0]))
    (array([6.]),)
    """
    flat = _Flat(f, primals, tuple(range(len(primals))), has_aux, "vjp")
    with _device_scope(primals):
        res, pullback = vjp_call(flat, flat.flat_in)
    outs, aux = flat.split(res)
    n_out = flat.n_out

    def vjp_fn(cotangent: Any) -> tuple:
        c_leaves, c_def = _tree.flatten(cotangent)
        if len(c_leaves) != n_out:
            raise ValueError("vjp_fn: the cotangent must have the structure of f's output")
        for i, (o, c) in enumerate(zip(outs, c_leaves)):
            if tuple(c.shape) != tuple(o.shape):
                raise ValueError(f"vjp_fn: cotangent {i} has shape {tuple(c.shape)}, but the output "
                                 f"has shape {tuple(o.shape)}")
        with _device_scope(primals):
            cts = pullback(list(c_leaves) + [None] * (len(res) - n_out))
        cts = [instantiate(namespace_for_values([x]), c) for x, c in zip(flat.flat_in, cts)]
        return tuple(flat.pack_in(cts, single=False))

    out = _tree.unflatten(flat.out_def, outs)
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# --- grad ----------------------------------------------------------------------------------

def value_and_grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False) -> Callable:
    """``f``'s value and its gradient with respect to ``argnums`` (scalar output only).

    >>> import numpy as np, xpdiff as xd
    >>> xd.value_and_grad(lambda x: xd.numpy.sum(x ** 2))(np.array([1.0, 2.0]))
    (array(5.), array([2., 4.]))
    """
    @wraps(f)
    def vg(*args: Any) -> Any:
        nums, single = _argnums(argnums, len(args), "grad")
        flat = _Flat(f, args, nums, has_aux, "grad")
        res, pullback = vjp_call(flat, flat.flat_in)
        outs, aux = flat.split(res)
        if len(outs) != 1 or tuple(outs[0].shape) != ():
            shape = tuple(outs[0].shape) if len(outs) == 1 else f"a pytree of {len(outs)} arrays"
            raise TypeError(f"grad: f must return a scalar (an array of shape ()), got {shape}; "
                            f"for non-scalar outputs use jacrev, or jacobian(f, batch_ndim=k) for "
                            f"per-sample derivatives")
        out = outs[0]
        _check_float(out, "grad", "the output of f")
        xp = namespace_for_values([out])
        cts = pullback([xp.ones_like(out)] + [None] * (len(res) - 1))
        cts = [instantiate(namespace_for_values([x]), c) for x, c in zip(flat.flat_in, cts)]
        g = flat.pack_in(cts, single)
        return ((out, aux), g) if has_aux else (out, g)

    return _lazy_aware("value_and_grad", f, dict(argnums=argnums, has_aux=has_aux), vg)


def grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar-valued ``f`` with respect to ``argnums``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(x ** 3))(np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    vg = value_and_grad(f, argnums, has_aux)

    @wraps(f)
    def g(*args: Any) -> Any:
        (_, aux), gr = vg(*args) if has_aux else ((None, None), vg(*args)[1])
        return (gr, aux) if has_aux else gr

    return g


# --- Jacobians ------------------------------------------------------------------------------

def _eye_block(like: Any, n: int, start: int, stop: int, offset: int, shape: tuple) -> Any:
    """Rows ``start:stop`` of the basis block of one leaf: ``(stop-start,) + shape``."""
    xp = namespace_for_values([like])
    size = math.prod(shape)
    e = xp.eye(stop - start, size, k=start - offset, dtype=like.dtype, device=like.device)
    return xp.reshape(e, (stop - start,) + tuple(shape))


def _concat0(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    return namespace_for_values([parts[0]]).concat(parts, axis=0)


def _basis_main_values(t: Any, bmain: Any, count: int) -> Any:
    """A basis-batched tangent as an array with the basis axis first."""
    if type(t) is Diag:
        t = t.dense()
    if isinstance(t, BatchTracer) and t._main is bmain:
        return t._a if t._b else namespace_for_values([t._a]).broadcast_to(t._a, (count,) + tuple(t._a.shape))
    return namespace_for_values([t]).broadcast_to(t, (count,) + tuple(t.shape))


def _jacfwd0(f, argnums, has_aux, chunk_size, fname="jacfwd", max_memory=None, mult=1):
    """Forward-mode Jacobian: one vectorised JVP over (chunks of) an identity basis.

    With a single input leaf the basis is structured (``interpreters.structured.Diag``): elementwise
    operations keep it symbolic and an elementwise Jacobian is written once, at the
    size of the result; an op that mixes positions materialises it.
    """
    def jac(*args, _recorded=None):
        nums, single = _argnums(argnums, len(args), fname)
        if _recorded is None:
            flat = _Flat(f, args, nums, has_aux, fname)
            res0 = pull = None
        else:  # jacobian(mode="auto") has recorded f once already
            flat, res0, pull = _recorded
        ins = flat.flat_in
        n = sum(math.prod(x.shape) for x in ins)
        offs = [0]
        for x in ins:
            offs.append(offs[-1] + math.prod(x.shape))
        like = ins[0]
        budget = _chunking.budget(like, max_memory)
        state: dict = {}
        chunk = chunk_size
        if chunk is None and budget is not None:
            # output sizes decide whether one pass may not fit: f is recorded once
            # (the forward pass below then replays the tape instead of evaluating again)
            if pull is None:
                res0, pull = vjp_call(flat, ins)
            n_out = sum(math.prod(getattr(o, "shape", ())) for o in res0[:flat.n_out])
            item = _chunking.itemsize(like)
            rb = mult * n * n_out * item
            _chunking.check_result_fits(fname, rb, budget, "Jacobian")
            if not _chunking.needs_chunking(n, n + n_out, mult, item, rb, budget):
                budget = None  # one pass

        def run(s, e):
            count = e - s
            with new_main(BatchTrace, size=count) as bmain:
                if len(ins) == 1:
                    ts = [Diag(None, bmain, tuple(ins[0].shape), ins[0], s, count)]
                else:
                    ts = [BatchTracer(bmain, _eye_block(x, n, s, e, offs[i], tuple(x.shape)), True)
                          for i, x in enumerate(ins)]
                if pull is not None and pull.replayable:
                    res, touts = res0, pull.forward(ts)
                else:
                    res, touts = jvp_call(flat, ins, ts)
                res = [_unbatch(r, bmain) for r in res]
                outs = res[:flat.n_out]
                if "outs" not in state:
                    state["outs"], state["aux"] = flat.split(res)
                    rb = mult * sum(_chunking.nbytes(tuple(o.shape) + tuple(x.shape), o)
                                    for o in outs for x in ins)
                    _chunking.check_result_fits(fname, rb, budget, "Jacobian")
                    state["result_bytes"] = rb
                piece = []
                for o, t in zip(outs, touts[:flat.n_out]):
                    xp = namespace_for_values([o])
                    full = count == n and len(ins) == 1
                    if full and type(t) is Diag and t.shape == tuple(o.shape):
                        piece.append(("J", _diag_jacobian(t, bmain, o, ins[0])))
                    elif isinstance(t, Zero):
                        piece.append(("rows", xp.zeros((count,) + tuple(o.shape), dtype=o.dtype,
                                                       device=o.device)))
                    else:
                        piece.append(("rows", _basis_main_values(t, bmain, count)))
            return piece

        pieces = _chunking.run_chunks(n, run, chunk, budget, lambda: state["result_bytes"], like)
        outs, aux = state["outs"], state["aux"]
        Js = []
        for j, o in enumerate(outs):
            if pieces[0][j][0] == "J":
                Js.append(flat.pack_in([pieces[0][j][1]], single))
                continue
            rows = _concat0([p[j][1] for p in pieces])  # (n,) + Y
            blocks = [rows[offs[i]:offs[i + 1], ...] for i in range(len(ins))]
            Js.append(_assemble_one(blocks, o, ins, flat, single, rows_are_out=False))
        J = _tree.unflatten(flat.out_def, Js)
        return (J, aux) if has_aux else J

    return jac


def _diag_jacobian(t: Diag, bmain: Any, o: Any, x: Any) -> Any:
    """The Jacobian ``Y + X`` (Y == X) of a structured tangent over the full basis:
    ``diag(scale) + sum_r w_r c_r^T``, written once."""
    xp = namespace_for_values([o])
    shape = tuple(x.shape)
    n = math.prod(shape)
    if not t.terms:
        if not t.diag:  # a structured zero
            return xp.zeros(shape + shape, dtype=o.dtype, device=o.device)
        if t.scale is None:
            return xp.reshape(xp.eye(n, dtype=o.dtype, device=o.device), shape + shape)
        return diag_block(t.scale, shape)
    if any(math.prod(tuple(c.shape[1:])) != 1 for c, _ in t.terms):
        rows = xp.reshape(t.value(), (n, n))  # (basis, out): transpose to out + in
        return xp.reshape(xp.matrix_transpose(rows), shape + shape)
    ones = xp.ones(shape, dtype=o.dtype, device=o.device)

    def weight(w: Any) -> Any:  # None: 1; a Python scalar (e.g. -1 of a subtraction); an array
        if w is None:
            return ones
        if isinstance(w, (int, float)):
            return xp.full(shape, w, dtype=o.dtype, device=o.device)
        return xp.broadcast_to(w, shape)

    W = xp.stack([xp.reshape(weight(w), (n,)) for _, w in t.terms], axis=-1)  # (n, R)
    C = xp.stack([xp.reshape(c, (n,)) for c, _ in t.terms], axis=0)  # (R, n)
    s = None
    if t.diag:
        s = ones if t.scale is None else xp.broadcast_to(t.scale, shape)
        s = xp.reshape(s, (n,))
    return xp.reshape(lowrank_diag(s, W, C), shape + shape)


def _unbatch(v: Any, main: Any) -> Any:
    """A value of the basis trace that does not depend on the basis, one level down."""
    if isinstance(v, BatchTracer) and v._main is main:
        if v._b:
            raise XpdiffError("internal: a primal output depends on the tangent basis")
        return v._a
    return v


def _assemble_one(blocks: list, o: Any, ins: list, flat: _Flat, single: bool, rows_are_out: bool):
    """Jacobian blocks of one output leaf (one block per input leaf) into ``Y + X``."""
    per_in = []
    for blk, x in zip(blocks, ins):
        xp = namespace_for_values([blk])
        if rows_are_out:
            per_in.append(xp.reshape(blk, tuple(o.shape) + tuple(x.shape)))
        else:
            nx = math.prod(x.shape)
            b = xp.reshape(blk, (nx, math.prod(o.shape)))
            per_in.append(xp.reshape(xp.matrix_transpose(b), tuple(o.shape) + tuple(x.shape)))
    return flat.pack_in(per_in, single)


def _jacrev0(f, argnums, has_aux, chunk_size, fname="jacrev", max_memory=None, mult=1):
    """Reverse-mode Jacobian: one forward pass, one vectorised backward sweep over
    (chunks of) a cotangent basis."""
    def jac(*args):
        nums, single = _argnums(argnums, len(args), fname)
        flat = _Flat(f, args, nums, has_aux, fname)
        res, pullback = vjp_call(flat, flat.flat_in)
        return _sweep(flat, single, res, pullback, has_aux, chunk_size, fname, max_memory, mult)

    return jac


def _jacauto0(f, argnums, has_aux, chunk_size, fname="jacobian", max_memory=None, mult=1):
    """``jacobian(mode="auto")``: the reverse-mode forward pass runs first (it gives the
    output size); with a per-sample input no larger than the output, forward mode
    takes over (the tape is dropped), else the tape is swept: no extra evaluation."""
    def jac(*args):
        nums, single = _argnums(argnums, len(args), fname)
        flat = _Flat(f, args, nums, has_aux, fname)
        res, pullback = vjp_call(flat, flat.flat_in)
        n_in = sum(math.prod(x.shape) for x in flat.flat_in)
        n_out = sum(math.prod(getattr(o, "shape", ())) for o in res[:flat.n_out])
        mode = _pick_mode(n_in, n_out, pullback, flat.n_out)
        _AUTO.mode = mode
        if mode == "fwd":  # forward mode over the recorded tape
            fwd = _jacfwd0(f, argnums, has_aux, chunk_size, fname, max_memory, mult)
            return fwd(*args, _recorded=(flat, res, pullback))
        return _sweep(flat, single, res, pullback, has_aux, chunk_size, fname, max_memory, mult)

    return jac


def _sweep(flat, single, res, pullback, has_aux, chunk_size, fname, max_memory, mult):
    """The vectorised backward sweep of a recorded tape over a cotangent basis."""
    ins = flat.flat_in
    outs, aux = flat.split(res)
    for o in outs:
        _check_float(o, fname, "an output of f")
    m = sum(math.prod(o.shape) for o in outs)
    offs = [0]
    for o in outs:
        offs.append(offs[-1] + math.prod(o.shape))
    n_aux = len(res) - flat.n_out
    budget = _chunking.budget(outs[0], max_memory)
    rb = mult * sum(_chunking.nbytes(tuple(o.shape) + tuple(x.shape), o) for o in outs for x in ins)
    _chunking.check_result_fits(fname, rb, budget, "Jacobian")
    n_in = sum(math.prod(x.shape) for x in ins)
    if chunk_size is None and not _chunking.needs_chunking(
            m, m + n_in, mult, _chunking.itemsize(outs[0]), rb, budget):
        budget = None  # one pass

    if len(outs) == 1 and m == 1:  # a scalar output (per sample): one plain pullback
        o = outs[0]
        xp = namespace_for_values([o])
        cts = pullback([xp.ones_like(o)] + [None] * n_aux)
        Js = [xp.reshape(instantiate(xp, c), tuple(o.shape) + tuple(x.shape))
              for x, c in zip(ins, cts)]
        J = _tree.unflatten(flat.out_def, [flat.pack_in(Js, single)])
        return (J, aux) if has_aux else J
    if len(outs) == 1 and (budget is None or chunk_size is not None and chunk_size >= m):
        # one pass over the whole basis of one output: a structured cotangent basis
        o = outs[0]
        xp = namespace_for_values([o])
        with new_main(BatchTrace, size=m) as bmain:
            cts = pullback([Diag(None, bmain, tuple(o.shape), o)] + [None] * n_aux)
            Js = []
            for x, c in zip(ins, cts):
                if type(c) is Diag and c.shape == tuple(x.shape):
                    Js.append(_diag_jacobian(c, bmain, o, x))
                    continue
                if isinstance(c, Zero):
                    rows = xp.zeros((m,) + tuple(x.shape), dtype=x.dtype, device=x.device)
                else:
                    rows = _basis_main_values(c, bmain, m)
                Js.append(xp.reshape(rows, tuple(o.shape) + tuple(x.shape)))
        J = _tree.unflatten(flat.out_def, [flat.pack_in(Js, single)])
        return (J, aux) if has_aux else J

    def run(s, e):
        basis = [_eye_block(o, m, s, e, offs[j], tuple(o.shape)) for j, o in enumerate(outs)]

        def pull(*cs):
            cts = pullback(list(cs) + [None] * n_aux)
            return [instantiate(namespace_for_values([x]), c) for x, c in zip(ins, cts)]

        vals, batched = vmap_call(pull, basis, [True] * len(outs), e - s)
        return [v if b else namespace_for_values([v]).broadcast_to(v, (e - s,) + tuple(v.shape))
                for v, b in zip(vals, batched)]

    parts = _chunking.run_chunks(m, run, chunk_size, budget, rb, outs[0])
    cts = [_concat0([p[i] for p in parts]) for i in range(len(ins))]
    Js = [_assemble_one([c[offs[j]:offs[j + 1], ...] for c in cts], o, ins, flat, single, True)
          for j, o in enumerate(outs)]
    J = _tree.unflatten(flat.out_def, Js)
    return (J, aux) if has_aux else J


# --- batch_ndim: per-sample derivatives of batched code ----------------------------------

def _data_split(args: tuple, k: int, data_argnums: Any, nums: tuple, fname: str):
    """Which argument leaves carry the ``k`` leading data dims, and the data shape ``B``."""
    leaves_per_arg = [_tree.flatten(a) for a in args]
    if data_argnums is None:
        first = None
        for i in range(len(args)):
            arr = [x for x in leaves_per_arg[i][0] if hasattr(x, "shape")]
            if arr:
                first = arr[0]
                break
        if first is None or first.ndim < k:
            is_data = [[False] * len(ls) for ls, _ in leaves_per_arg]
            cands = _data_candidates(leaves_per_arg, is_data, k)
            fix = (f"if the data are argument(s) {', '.join(map(str, cands))}, say so with "
                   f"data_argnums={_tuple_text(cands)}" if cands else
                   "batch_ndim must not exceed the inputs' ndim")
            raise ValueError(f"{fname}: batch_ndim={k} takes the data dims from the first array "
                             f"argument, which has {0 if first is None else first.ndim} dims; {fix}")
        B = tuple(first.shape[:k])
        is_data = [[hasattr(x, "shape") and x.ndim >= k and tuple(x.shape[:k]) == B for x in ls]
                   for ls, _ in leaves_per_arg]
    else:
        dn = (data_argnums,) if isinstance(data_argnums, int) else tuple(data_argnums)
        dn = tuple(_argnums(dn, len(args), fname + " (data_argnums)")[0])
        B = None
        is_data = []
        for i, (ls, _) in enumerate(leaves_per_arg):
            flags = []
            for x in ls:
                d = i in dn and hasattr(x, "shape")
                if d:
                    if x.ndim < k:
                        raise ValueError(f"{fname}: argument {i} has {x.ndim} dims, fewer than "
                                         f"batch_ndim={k}")
                    if B is None:
                        B = tuple(x.shape[:k])
                    elif tuple(x.shape[:k]) != B:
                        raise ValueError(f"{fname}: data shapes disagree: argument {i} has leading "
                                         f"dims {tuple(x.shape[:k])}, expected {B} (batch_ndim={k})")
                flags.append(d)
            is_data.append(flags)
        if B is None:
            raise ValueError(f"{fname}: data_argnums={data_argnums!r} selects no array argument")
    for i in nums:
        if not any(is_data[i]) and not leaves_per_arg[i][0]:
            raise ValueError(f"{fname}: argument {i} has no arrays")
    return B, is_data, leaves_per_arg


def _tuple_text(nums: Sequence[int]) -> str:
    return f"({nums[0]},)" if len(nums) == 1 else f"({', '.join(map(str, nums))})"


def _data_candidates(leaves_per_arg: list, is_data: list, k: int) -> list[int]:
    """Arguments not taken as data whose array leaves could be data (at least ``k`` dims,
    the same leading dims): what ``data_argnums=`` probably should say."""
    lead: dict[tuple, list[int]] = {}
    for i, ((ls, _), flags) in enumerate(zip(leaves_per_arg, is_data)):
        arrs = [x for x, d in zip(ls, flags) if hasattr(x, "shape") and not d]
        if arrs and not any(flags) and all(x.ndim >= k for x in arrs):
            heads = {tuple(x.shape[:k]) for x in arrs}
            if len(heads) == 1:
                lead.setdefault(heads.pop(), []).append(i)
    return max(lead.values(), key=len) if lead else []


def _data_hint(leaves_per_arg: list, is_data: list, k: int, B: tuple, data_argnums: Any) -> str:
    """The sentence errors about data dims end with: which arguments were taken as data
    and, when they were inferred, how to say otherwise."""
    if sum(any(hasattr(x, "shape") for x in ls) for ls, _ in leaves_per_arg) < 2:
        return ""  # one array argument: nothing to choose
    taken = [i for i, flags in enumerate(is_data) if any(flags)]
    text = (f". batch_ndim={k} took argument(s) {', '.join(map(str, taken))} as data (leading "
            f"dims {B})")
    if data_argnums is not None:
        return text + f", as data_argnums={data_argnums!r} says"
    cands = _data_candidates(leaves_per_arg, is_data, k)
    text += ", the arguments whose leading dims match the first array argument's"
    if cands:
        text += (f"; if the data are argument(s) {', '.join(map(str, cands))}, say so with "
                 f"data_argnums={_tuple_text(cands)}")
    return text


def _with_batch(inner: Callable, f: Callable, argnums: ArgNums, has_aux: bool, k: int,
                data_argnums: Any, fname: str, max_memory: Any = None) -> Callable:
    """``inner(per_sample_f, argnums, has_aux, n_samples)`` computed per sample under
    ``vmap``; when a single pass might not fit ``max_memory`` (or the automatic
    budget), the samples are chunked (:func:`_sample_chunks`)."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"{fname}: batch_ndim must be a non-negative int, got {k!r}")

    def run(*args):
        nums, single = _argnums(argnums, len(args), fname)
        B, is_data, per_arg = _data_split(args, k, data_argnums, nums, fname)
        nB = math.prod(B)
        where = f"{fname}(batch_ndim={k})"
        hint = _data_hint(per_arg, is_data, k, B, data_argnums)
        arg_leaves = []  # per argument: (leaves with the data dims flattened, treedef)
        for (leaves, tdef), flags in zip(per_arg, is_data):
            new = []
            for x, d in zip(leaves, flags):
                if d:
                    xp = namespace_for_values([x])
                    new.append(xp.reshape(x, (nB,) + tuple(x.shape[k:])))
                else:
                    new.append(x)
            arg_leaves.append((new, tdef))

        def per_sample(*a):
            *a, index = a
            with new_main(DataTrace, k=k, B=B, index=index, where=where, hint=hint) as main:
                viewed = []
                for arg, flags in zip(a, is_data):
                    leaves, tdef = _tree.flatten(arg)
                    viewed.append(_tree.unflatten(tdef, [DataTracer(main, x, True) if d else x
                                                         for x, d in zip(leaves, flags)]))
                out = f(*viewed)
                if has_aux:
                    out, aux = out
                leaves, tdef = _tree.flatten(out)
                unviewed = [_unview(y, main, B, where) for y in leaves]
                out = _tree.unflatten(tdef, unviewed)
                if has_aux:
                    al, ad = _tree.flatten(aux)
                    out = (out, _tree.unflatten(ad, [_unview(y, main, B, where) for y in al]))
            return out

        some = next(x for (ls, _), fl in zip(per_arg, is_data) for x, d in zip(ls, fl) if d)
        index = namespace_for_values([some]).arange(nB, device=some.device)
        a = nums if not single else nums[0]
        flags_flat = [d for flags in is_data for d in flags] + [True]

        def chunk(s, e):
            """The per-sample Jacobians of samples ``s:e``: leaves (samples first), treedef."""
            whole = (s, e) == (0, nB)
            vals = [x if whole or not d else x[s:e, ...]
                    for (leaves, _), flags in zip(arg_leaves, is_data)
                    for x, d in zip(leaves, flags)]
            vals.append(index if whole else index[s:e])
            jac = inner(per_sample, a, has_aux, e - s)
            out_def: list = []

            def flat_f(*xs):  # vmap's work without its argument checks (done above)
                args, pos = [], 0
                for leaves, td in arg_leaves:
                    args.append(_tree.unflatten(td, list(xs[pos:pos + len(leaves)])))
                    pos += len(leaves)
                ol, od = _tree.flatten(jac(*args, xs[-1]))
                out_def.append(od)
                return ol

            outs, ob = vmap_call(flat_f, vals, flags_flat, e - s)
            return ([o if b else namespace_for_values([o]).broadcast_to(o, (e - s,) + tuple(o.shape))
                     for o, b in zip(outs, ob)], out_def[-1])

        split = False
        try:
            with _chunking.split_mode("samples" if nB > 1 else "basis"):
                leaves, tdef = chunk(0, nB)
        except _chunking.ChunkSamples as e:  # free the aborted pass's tape at once
            traceback.clear_frames(e.__traceback__)
            split = True
        if split:
            leaves, tdef = _sample_chunks(chunk, nB, some, max_memory, fname)
        xp = namespace_for_values(leaves)
        return _tree.unflatten(tdef, [xp.reshape(r, B + tuple(r.shape[1:])) for r in leaves])

    return run


SAMPLE_CHUNK_MARGIN = 1.5  # a chunk's peak per sample may exceed the first chunk's


def _sample_chunks(chunk: Callable, nB: int, like: Any, max_memory: Any, fname: str) -> tuple:
    """A ``batch_ndim`` Jacobian whose single pass might not fit, computed over chunks
    of samples sized from a measured first chunk; at top level each chunk's rows are
    written into the result in place (no concatenation copy)."""
    budget = _chunking.budget(like, max_memory)
    first = min(nB, _chunking.FIRST_CHUNK)
    with _chunking.split_mode("sized"):
        (leaves0, tdef), peak = _chunking.peak_of(like, lambda: chunk(0, first))
    per_result = sum(_chunking.nbytes(tuple(x.shape), x) for x in leaves0) / first
    total = int(per_result * nB)
    _chunking.check_result_fits(fname, total, budget, "Jacobian")
    per = max((peak or 0) / first, per_result)
    room = budget - total
    if room < per:  # not even one sample's pass fits beside the result: chunk the basis
        with _chunking.split_mode("basis"):
            return chunk(0, nB)
    size = max(1, int(room // (SAMPLE_CHUNK_MARGIN * per)))
    in_place = not any(isinstance(x, Tracer) for x in leaves0)
    outs: list = []
    pieces: list = [leaves0]
    if in_place:
        for x in leaves0:
            xp = namespace_for_values([x])
            out = xp.empty((nB,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
            outs.append(update(out, (slice(0, first), Ellipsis), x))
    with _chunking.split_mode("sized"):
        for s in range(first, nB, size):
            e = min(nB, s + size)
            leaves, _ = chunk(s, e)
            if in_place:
                outs = [update(o, (slice(s, e), Ellipsis), x) for o, x in zip(outs, leaves)]
            else:
                pieces.append(leaves)
    if in_place:
        return outs, tdef
    return [_concat0([p[j] for p in pieces]) for j in range(len(leaves0))], tdef


def _unview(y: Any, main: Any, B: tuple, where: str) -> Any:
    if isinstance(y, DataTracer) and y._main is main:
        return y._a
    shape = tuple(getattr(y, "shape", ()))
    if shape[:len(B)] == B:
        return DataContext(len(B), B, main.data["index"], where, "output").lift(y)
    raise ValueError(f"{where}: an output of f has shape {shape}, which does not start with the data "
                     f"dims {B}; with batch_ndim every output must keep the data dims first")


def _jac_api(core: Callable, fname: str) -> Callable:
    def transform(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
                  batch_ndim: int = 0, chunk_size: int | None = None,
                  max_memory: int | None = None,
                  data_argnums: int | Sequence[int] | None = None) -> Callable:
        options = dict(argnums=argnums, has_aux=has_aux, batch_ndim=batch_ndim, chunk_size=chunk_size,
                       max_memory=max_memory, data_argnums=data_argnums)
        if batch_ndim:
            def inner(g, a, h, nB):
                return core(g, a, h, chunk_size, fname, max_memory, nB)

            return _lazy_aware(fname, f, options, _with_batch(inner, f, argnums, has_aux, batch_ndim,
                                                              data_argnums, fname, max_memory))
        return _lazy_aware(fname, f, options, core(f, argnums, has_aux, chunk_size, fname, max_memory))

    return transform


jacfwd = _jac_api(_jacfwd0, "jacfwd")
jacfwd.__name__ = jacfwd.__qualname__ = "jacfwd"
jacfwd.__doc__ = """Jacobian of ``f`` by forward mode: one vectorised pass over a tangent basis.

Args:
    f: the function; with ``batch_ndim=k`` it is ordinary batched code whose
        first ``k`` dims index independent samples.
    argnums: int or tuple of ints, the arguments to differentiate.
    has_aux: ``f`` returns ``(out, aux)``; then ``(jacobian, aux)`` is returned.
    batch_ndim: number of leading data dims ``B``: the result has shape
        ``B + Y + X`` (per-sample blocks; cross-sample blocks are never formed).
    chunk_size: push at most this many basis vectors at a time (memory bound).
    max_memory: memory budget in bytes; by default a fraction of the device's
        free memory (see docs/performance.md).  The basis is chunked to fit, and
        a result that cannot fit raises before anything is allocated.
    data_argnums: which arguments carry the data dims (default: every argument
        whose leading dims equal those of the first array argument).

Returns:
    The Jacobian (``Y + X`` without data dims), as a pytree like ``f``'s output.

>>> import numpy as np, xpdiff as xd
>>> xd.jacfwd(lambda x: x ** 2, batch_ndim=1)(np.ones((2, 3))).shape
(2, 3, 3)
"""
jacrev = _jac_api(_jacrev0, "jacrev")
jacrev.__name__ = jacrev.__qualname__ = "jacrev"
jacrev.__doc__ = """Jacobian of ``f`` by reverse mode: one forward pass, one vectorised
backward pass over a cotangent basis.  Same arguments and layout as :func:`jacfwd`.

>>> import numpy as np, xpdiff as xd
>>> xd.jacrev(lambda x: x ** 2)(np.array([1.0, 2.0]))
array([[2., 0.],
       [0., 4.]])
"""


def jacobian(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *, batch_ndim: int = 0,
             mode: str = "auto", chunk_size: int | None = None, max_memory: int | None = None,
             data_argnums: int | Sequence[int] | None = None) -> Callable:
    """Jacobian of ``f``: forward or reverse mode (``mode="fwd"|"rev"|"auto"``).

    ``"auto"`` runs the reverse-mode forward pass first (it gives the output size),
    then runs forward mode when the per-sample input is no larger than the
    per-sample output (a forward pass per input element against a backward sweep
    per output element; forward mode also keeps elementwise structure symbolic),
    else sweeps the recorded tape.  See
    :func:`jacfwd` for the arguments and the layout.

    >>> import numpy as np, xpdiff as xd
    >>> def f(x):
    ...     xp = x.__array_namespace__()
    ...     return xp.sin(x) * xp.exp(x) + x ** 2
    >>> xd.jacobian(f, batch_ndim=1)(np.zeros((256, 64))).shape
    (256, 64, 64)
    """
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    kw = dict(batch_ndim=batch_ndim, chunk_size=chunk_size, max_memory=max_memory,
              data_argnums=data_argnums)
    if mode == "fwd":
        return jacfwd(f, argnums, has_aux, **kw)
    if mode == "rev":
        return jacrev(f, argnums, has_aux, **kw)

    options = dict(argnums=argnums, has_aux=has_aux, mode=mode, **kw)
    if batch_ndim:
        inner = lambda g, a, h, nB: _jacauto0(g, a, h, chunk_size, "jacobian", max_memory, nB)  # noqa: E731
        return _lazy_aware("jacobian", f, options, _with_batch(inner, f, argnums, has_aux, batch_ndim,
                                                               data_argnums, "jacobian", max_memory))
    return _lazy_aware("jacobian", f, options, _jacauto0(f, argnums, has_aux, chunk_size, "jacobian",
                                                         max_memory))


class _AutoState(threading.local):
    mode: str | None = None


_AUTO = _AutoState()  # the mode the last jacobian(mode="auto") call in this thread took


def auto_mode(f: Callable, args: tuple, argnums: ArgNums = 0, has_aux: bool = False,
              batch_ndim: int = 0, data_argnums: Any = None) -> str:
    """The mode (``"fwd"`` or ``"rev"``) ``jacobian(mode="auto")`` takes for ``f`` at
    ``args`` (it computes the Jacobian once and reports the choice)."""
    _AUTO.mode = None
    jacobian(f, argnums, has_aux, batch_ndim=batch_ndim, data_argnums=data_argnums)(*args)
    return _AUTO.mode


def _pick_mode(n_in: int, n_out: int, pullback: Any = None, n_outputs: int = 1) -> str:
    """The auto rule: a JVP per input element against a VJP sweep per output element.

    Ties go to reverse mode when its sweep keeps the identity basis structured at
    every recorded node (elementwise ops on same-shaped operands, ``matmul``): its
    rows come out in the Jacobian's own layout.  Otherwise ties go forward, whose
    structured tangents also survive reductions (diagonal plus low rank, as in a
    softmax)."""
    if n_in != n_out:
        return "fwd" if n_in < n_out else "rev"
    if pullback is not None and n_outputs == 1 and _reverse_structured(pullback.trace.tape):
        return "rev"
    return "fwd"


def _reverse_structured(tape: list) -> bool:
    """Whether a structured cotangent basis stays structured through every node."""
    for node in tape:
        prim = node.prim
        if node.custom is not None or node.params or prim.multiple_results:
            return False
        if prim.partials is not None:
            shape = tuple(node.out.shape)
            if any(i is not None and tuple(p.shape) != shape
                   for i, p in zip(node.in_ids, node.primals)):
                return False
        elif prim.basis_vjp is None:
            return False
    return True


def hessian(f: Callable, argnums: ArgNums = 0, *, batch_ndim: int = 0,
            chunk_size: int | None = None, max_memory: int | None = None,
            data_argnums: int | Sequence[int] | None = None) -> Callable:
    """Hessian of a scalar-valued ``f`` (forward-over-reverse).

    With ``batch_ndim=k``, ``f`` returns shape ``B`` (one scalar per sample) and the
    result has shape ``B + X + X``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.hessian(lambda x: xd.numpy.sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    def core(g, a, h, nB=1):
        inner = _jacrev0(g, a, h, chunk_size, "hessian", max_memory, nB)
        return _jacfwd0(inner, a, h, chunk_size, "hessian", max_memory, nB)

    options = dict(argnums=argnums, batch_ndim=batch_ndim, chunk_size=chunk_size, max_memory=max_memory,
                   data_argnums=data_argnums)
    if batch_ndim:
        return _lazy_aware("hessian", f, options, _with_batch(core, f, argnums, False, batch_ndim,
                                                              data_argnums, "hessian", max_memory))
    return _lazy_aware("hessian", f, options, core(f, argnums, False))


# --- vmap ----------------------------------------------------------------------------------

def vmap(f: Callable, in_axes: Any = 0, out_axes: Any = 0, *,
         chunk_size: int | None = None, max_memory: int | None = None) -> Callable:
    """Vectorise a per-example ``f`` over an axis of its arguments.

    Args:
        f: a function of arrays (or pytrees of arrays).
        in_axes: an int, ``None`` (not mapped) or a pytree prefix of the arguments.
        out_axes: where the mapped axis goes in each output (int or prefix).
        chunk_size: run at most this many examples at a time.
        max_memory: a memory budget in bytes: the mapped axis is chunked to fit
            (measured on a first small chunk); no automatic budget for vmap.

    >>> import numpy as np, xpdiff as xd
    >>> xd.vmap(lambda x, w: x @ w, in_axes=(0, None))(np.ones((5, 3)), np.ones((3, 2))).shape
    (5, 2)
    """
    @wraps(f)
    def vf(*args: Any) -> Any:
        axes = _tree.broadcast_prefix(in_axes, args, "vmap(in_axes)")
        leaves, tdef = _tree.flatten(args)
        check_same_backend(_labelled(args), "vmap")
        size = None
        vals, batched = [], []
        for j, (x, ax) in enumerate(zip(leaves, axes)):
            if ax is None:
                vals.append(x)
                batched.append(False)
                continue
            if not hasattr(x, "shape"):
                raise ValueError(f"vmap: in_axes maps a non-array argument leaf {j} "
                                 f"({type(x).__name__}); use None for it")
            if not -x.ndim <= ax < x.ndim:
                raise ValueError(f"vmap: in_axes={ax} is out of range for an argument leaf of "
                                 f"shape {tuple(x.shape)}")
            ax %= x.ndim
            n = x.shape[ax]
            if size is None:
                size = n
            elif n != size:
                raise ValueError(f"vmap: mapped axes have different sizes ({size} and {n}); all "
                                 f"mapped arguments must share the mapped size")
            vals.append(x if ax == 0 else namespace_for_values([x]).moveaxis(x, ax, 0))
            batched.append(True)
        if size is None:
            raise ValueError("vmap: in_axes maps no argument; at least one must be mapped")
        out_def = []

        def flat_f(*xs):
            out = f(*_tree.unflatten(tdef, [_constants(x) for x in xs]))
            ol, od = _tree.flatten(out)
            out_def.append(od)
            return ol

        def run(s, e):
            v = [x[s:e, ...] if b and (s, e) != (0, size) else x for x, b in zip(vals, batched)]
            outs, ob = vmap_call(flat_f, v, batched, e - s)
            return [o if b else namespace_for_values([o]).broadcast_to(o, (e - s,) + tuple(o.shape))
                    for o, b in zip(outs, ob)]

        like = next(x for x, b in zip(vals, batched) if b)
        budget = None if max_memory is None else _chunking.budget(like, max_memory)
        parts = _chunking.run_chunks(size, run, chunk_size, budget, 0, like)
        outs = [_concat0([p[j] for p in parts]) for j in range(len(parts[0]))]
        od = out_def[-1]
        oax = _tree.broadcast_prefix(out_axes, _tree.unflatten(od, outs), "vmap(out_axes)")
        res = []
        for o, ax in zip(outs, oax):
            if ax is None:
                raise ValueError("vmap: out_axes=None is only valid for outputs that are not "
                                 "mapped; xpdiff always maps outputs, use an int")
            if ax % o.ndim != 0:
                o = namespace_for_values([o]).moveaxis(o, 0, ax)
            res.append(o)
        return _tree.unflatten(od, res)

    return _lazy_aware("vmap", f, dict(in_axes=in_axes, out_axes=out_axes, chunk_size=chunk_size,
                                       max_memory=max_memory), vf)


__all__ = ["grad", "hessian", "jacfwd", "jacobian", "jacrev", "jvp", "value_and_grad", "vjp",
           "vmap"]
