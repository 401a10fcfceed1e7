"""The structured algebra of identity bases, shared by both modes.

Layer: interpreters (above ``xpdiff.tracer``).  May import: ``xpdiff.core``,
``xpdiff.tracer``, ``xpdiff.interpreters.batching`` and ``.masked``.

``jacfwd`` pushes an identity basis of tangents and ``jacrev`` pulls an identity
basis of cotangents.  Both keep it symbolic as a :class:`Diag` (diagonal plus low
rank) for as long as the primitives allow: :func:`push` is forward mode's rule on
structured tangents, :func:`pull` reverse mode's on structured cotangents; a
primitive that really mixes positions gets the basis materialised once
(:meth:`Diag.dense`).
"""

from __future__ import annotations

import math
from typing import Any

from ..core import PRIMITIVES, Primitive, Zero, namespace_for_values, norm_axes
from ..tracer import Tracer
from .batching import batch_tracer

MAX_TERMS = 4  # low-rank terms kept symbolic before a structured tangent is densified


class Scaling:
    """A low-rank term's weight known in closed form: ``k * v``, where ``v`` is the primal
    value (one level down) whose tangent holds the term and ``k`` a Python number.

    A term's weight is the derivative of the primal along the term's direction.  A
    constant shift of an operand (``x - m``: the weight is the Python number ``-1``)
    becomes a scaling under ``exp``, and a scaling passes products, quotients and
    degree-one reductions (sum, mean, max, min) with its factor ``k`` computed exactly:
    so weights that cancel cancel exactly (``k == 0``) and the term is dropped, as the
    shift ``max(x)`` of a softmax is, whose output does not depend on it.  Elsewhere
    the weight is computed as an array (:func:`_numeric`), as any other weight."""

    __slots__ = ("k", "v")

    def __init__(self, k: float, v: Any):
        self.k, self.v = k, v


def _form(w: Any) -> tuple | None:
    """A weight's closed form for the primitives' ``scaling`` rules: ``("shift", a)`` for
    the constant ``a`` (``None``: 1), ``("scale", k)`` for :class:`Scaling`; else ``None``."""
    if w is None:
        return ("shift", 1)
    if type(w) in (int, float):
        return ("shift", w)
    if type(w) is Scaling:
        return ("scale", w.k)
    return None


def _numeric(xp: Any, w: Any) -> Any:
    """A weight as :func:`_times` takes it: a :class:`Scaling` computed as an array."""
    if type(w) is not Scaling:
        return w
    if w.k == 1:
        return w.v
    return xp.negative(w.v) if w.k == -1 else xp.multiply(w.v, w.k)


def _through(prim: Primitive, i: int, w: Any, out: Any) -> Any:
    """The weight on ``out`` of a term of operand ``i`` with weight ``w``, in closed form
    by the primitive's ``scaling`` rule, or ``None`` (compute it as an array)."""
    rule, form = prim.scaling, _form(w)
    if rule is None or form is None:
        return None
    res = rule(i, form)
    if res is None:
        return None
    kind, k = res
    return k if kind == "shift" else Scaling(k, out)


def _merge(xp: Any, terms: list, like: Any) -> list:
    """``terms`` with the weights of terms on one basis array ``c`` added (closed forms
    exactly), and terms whose weight is exactly zero dropped."""
    index: dict[int, int] = {}
    merged: list = []
    for c, w in terms:
        j = index.get(id(c))
        if j is None:
            index[id(c)] = len(merged)
            merged.append([c, w])
            continue
        v = merged[j][1]
        if type(v) is Scaling and type(w) is Scaling and v.v is w.v:
            merged[j][1] = Scaling(v.k + w.k, v.v)
        elif type(v) in (int, float) and type(w) in (int, float):
            merged[j][1] = v + w
        else:
            merged[j][1] = _plus(xp, _numeric(xp, v), _numeric(xp, w), like)
    return [(c, w) for c, w in merged
            if not (type(w) is Scaling and w.k == 0) and not (type(w) in (int, float) and w == 0)]


class Diag:
    """A structured tangent over a basis: diagonal plus low rank.

    Under ``jacfwd`` the tangent of the input is the identity basis, pushed as a
    vmap axis of ``count`` vectors (rows ``start:start+count`` of the identity).
    For basis vector ``j`` the tangent is

        scale * e_(start+j)  +  sum_r  c_r[j] * w_r

    with ``scale`` and ``w_r`` shaped like the primal (``None`` means ones) and
    ``c_r`` small basis-indexed arrays ``(count,) + R`` (``R`` broadcastable to
    the primal shape).  Elementwise rules multiply ``scale`` and the ``w_r`` by
    their partial derivative; a reduction over the whole per-sample array turns
    it into a small dense tangent; broadcasting a small dense tangent back (as in
    ``x - max(x)`` or ``e / sum(e)``) adds a low-rank term.  So elementwise chains
    and softmax-like patterns never touch the ``count``-sized basis axis; an op
    that really mixes positions materialises the tangent once (:meth:`dense`).

    With a ``base`` (a dense array ``(count,) + shape`` one level down: the image of
    the basis under a linear map, as the columns of ``A`` for ``A @ x``) the first
    part is ``scale * base[j]`` instead of ``scale * e_(start+j)``: elementwise
    rules still multiply only the primal-sized ``scale``, so a chain of them costs
    one pass over the ``count``-sized tangent (when it is materialised), not one
    per primitive.
    """

    __slots__ = ("scale", "main", "shape", "like", "start", "count", "diag", "terms", "base")

    def __init__(self, scale: Any, main: Any, shape: tuple, like: Any, start: int = 0,
                 count: int | None = None, diag: bool = True, terms: tuple = (),
                 base: Any = None):
        self.scale, self.main, self.shape, self.like = scale, main, tuple(shape), like
        self.start = start
        self.count = math.prod(self.shape) if count is None else count
        self.diag = diag  # whether the diagonal (or scaled base) part is present
        self.terms = terms  # ((c, w), ...): c one level down, (count,) + R
        self.base = base  # None: the identity basis; else (count,) + shape, one level down

    def replace(self, scale: Any, diag: bool, terms: tuple, base: Any = ...) -> Diag:
        return Diag(scale, self.main, self.shape, self.like, self.start, self.count, diag, terms,
                    self.base if base is ... else base)

    def value(self) -> Any:
        """The tangent as an array ``(count,) + shape``, one level down."""
        xp = namespace_for_values([self.like])
        n = math.prod(self.shape)
        full = (self.count,) + self.shape
        val = None
        if self.diag and self.base is not None:
            val = self.base if self.scale is None else xp.multiply(self.base, self.scale)
        elif self.diag:
            eye = xp.reshape(xp.eye(self.count, n, k=self.start, dtype=self.like.dtype,
                                    device=self.like.device), full)
            val = eye if self.scale is None else xp.multiply(eye, self.scale)
        for c, w in self.terms:
            rest = tuple(c.shape[1:])
            if math.prod(rest) == 1:  # one number per basis vector: broadcast it
                rest = (1,) * len(self.shape)
            c = xp.reshape(c, (self.count,) + rest)
            w = _numeric(xp, w)
            term = c if w is None else xp.multiply(c, w)
            val = term if val is None else xp.add(val, term)
        if val is None:
            return xp.zeros(full, dtype=self.like.dtype, device=self.like.device)
        return val if tuple(val.shape) == full else xp.broadcast_to(val, full)

    def dense(self) -> Any:
        """The tangent as a basis-batched array (materialised once)."""
        return batch_tracer(self.main, self.value(), True)

    def numeric_terms(self) -> tuple:
        """The low-rank terms with every weight in closed form computed as an array."""
        if not any(type(w) is Scaling for _, w in self.terms):
            return self.terms
        xp = namespace_for_values([self.like])
        return tuple((c, _numeric(xp, w)) for c, w in self.terms)


def densify(tangents: list) -> list:
    """``tangents`` with every :class:`Diag` materialised (for rules that need arrays)."""
    return [t.dense() if type(t) is Diag else t for t in tangents]


def _times(xp: Any, a: Any, b: Any) -> Any:
    """``a * b`` where ``None`` means ones and Python numbers stay numbers."""
    if a is None:
        return b if not (isinstance(b, (int, float)) and b == 1) else None
    if b is None or (isinstance(b, (int, float)) and b == 1):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a * b
    if isinstance(b, (int, float)) and b == -1:
        return xp.negative(a)
    return xp.multiply(a, b)


def _plus(xp: Any, a: Any, b: Any, like: Any) -> Any:
    """``a + b`` where ``None`` means ones."""
    if a is None:
        a = xp.ones_like(like)
    if b is None:
        b = xp.ones_like(like)
    return xp.add(a, b)


def _basis_dense(t: Any, main: Any) -> bool:
    return isinstance(t, Tracer) and t._main is main and t._batched


def push(prim: Primitive, primals: list, tangents: list, params: dict, out: Any = None,
         partials: tuple | None = None) -> Any:
    """Forward mode on structured tangents (at least one a :class:`Diag`):
    ``(out, out_tangent)`` keeping the structure, or ``None`` when ``prim`` cannot
    keep it (the caller then densifies and runs the JVP rule).  ``partials``: the
    primitive's, guarded against masked zeros."""
    if prim.partials is not None:
        return _diag_rule(prim, primals, tangents, params, out, partials)
    if prim.reduce_deriv is not None:
        return _reduce_rule(prim, primals, tangents, params, out)
    if prim.basis_jvp is not None:
        return _basis_rule(prim, primals, tangents, params, out)
    return None


def _diag_rule(prim: Primitive, primals: list, tangents: list, params: dict,
               out: Any = None, partials: tuple | None = None) -> Any:
    """JVP of an elementwise primitive on structured tangents (or ``None`` if the
    structure cannot be kept: then the caller densifies).  ``out``: the primal
    output when already known (tape replay); ``partials``: the primitive's, guarded
    against masked zeros."""
    if params:
        return None
    if prim.select:
        return push_select(primals, tangents, out)
    if out is None:
        out = prim.bind(*primals)
    shape = tuple(out.shape)
    first = next((t for t in tangents if type(t) is Diag and t.shape == shape), None)
    if first is None:
        return None
    main = first.main
    full_dense = any(_basis_dense(t, main) and tuple(t.shape) == shape for t in tangents)
    bases = {id(t.base): t.base for t in tangents if type(t) is Diag and t.diag}
    if len(bases) > 1 or (full_dense and any(b is not None for b in bases.values())):
        # scaled bases that do not combine: materialise them (one pass each, as the
        # dense rule would) and keep the identity part, if any, structured
        keep = [t for t in tangents if type(t) is Diag and not (t.diag and t.base is not None)]
        if not keep:
            return None
        tangents = [t.dense() if type(t) is Diag and t.diag and t.base is not None else t
                    for t in tangents]
        first, full_dense, bases = keep[0], True, {}
    if full_dense:
        return _mixed_rule(prim, primals, tangents, out, partials, first, shape)
    base = next(iter(bases.values()), None)
    for t in tangents:
        if t is None or isinstance(t, Zero):
            continue
        if type(t) is Diag:
            if t.main is not main or t.start != first.start or t.count != first.count:
                return None
            if t.shape != shape and (t.diag or not _broadcasts(t.shape, shape)):
                return None
        elif _basis_dense(t, main):
            if not _broadcasts(tuple(t.shape), shape):
                return None
        else:
            return None

    xp = namespace_for_values(primals)
    scale, has_diag, terms = None, False, []
    for i, (t, d) in enumerate(zip(tangents, prim.partials if partials is None else partials)):
        if t is None or d is None or isinstance(t, Zero):
            continue
        dv = None
        if type(t) is Diag:
            if t.diag:
                dv = d(xp, primals, out)
                s_i = _times(xp, t.scale, dv)
                scale = s_i if not has_diag else _plus(xp, scale, s_i, out)
                has_diag = True
            for c, w in t.terms:  # (a smaller tangent's terms broadcast over the primal)
                w_out = _through(prim, i, w, out)
                if w_out is None:
                    if dv is None:
                        dv = d(xp, primals, out)
                    w_out = _times(xp, _numeric(xp, w), dv)
                terms.append((c, w_out))
        else:  # a small dense tangent broadcast over the primal: a low-rank term
            dv = d(xp, primals, out)
            terms.append((t._a, dv if not (isinstance(dv, (int, float)) and dv == 1) else None))
    terms = _merge(xp, terms, out)
    if not has_diag and not terms:  # no derivative, or the terms cancelled exactly
        return out, Zero(out)
    if len(terms) > MAX_TERMS:
        return None
    if isinstance(scale, (int, float)):
        scale = xp.multiply(xp.ones_like(out), scale)
    elif scale is not None and tuple(scale.shape) != shape:
        scale = xp.broadcast_to(scale, shape)
    return out, first.replace(scale, has_diag, tuple(terms), base)


def _broadcasts(r: tuple, shape: tuple) -> bool:
    """Whether ``r`` (as many dims as ``shape``, fewer elements) broadcasts to ``shape``."""
    return (len(r) == len(shape) and math.prod(r) < math.prod(shape)
            and all(a in (1, b) for a, b in zip(r, shape)))


def _mixed_rule(prim: Primitive, primals: list, tangents: list, out: Any,
                partials: tuple | None, first: Diag, shape: tuple) -> Any:
    """An elementwise primitive whose tangents are diagonal (no low-rank terms) and dense
    over the whole basis (``tanh(A @ x) + x``): the dense tangents' sum, with the
    diagonal part added along its diagonal (:func:`plus_dense`) instead of as a
    materialised identity basis.  ``None`` for other mixes (the caller densifies)."""
    main = first.main
    xp = namespace_for_values(primals)
    scale, has_diag, dense = None, False, None
    for t, d in zip(tangents, prim.partials if partials is None else partials):
        if t is None or d is None or isinstance(t, Zero):
            continue
        if type(t) is Diag:
            if (t.terms or not t.diag or t.base is not None or t.shape != shape
                    or t.main is not main or t.start != first.start or t.count != first.count):
                return None
            s_i = _times(xp, t.scale, d(xp, primals, out))
            scale = s_i if not has_diag else _plus(xp, scale, s_i, out)
            has_diag = True
        elif _basis_dense(t, main) and tuple(t.shape) == shape:
            term = _times(xp, t, d(xp, primals, out))
            dense = term if dense is None else xp.add(dense, term)
        else:
            return None
    if dense is None or not _basis_dense(dense, main) or tuple(dense.shape) != shape:
        return None
    if not has_diag:
        return out, dense
    return out, plus_dense(first.replace(scale, True, (), None), dense, out.dtype)


def plus_dense(t: Diag, dense: Any, dtype: Any) -> Any:
    """``dense + t`` for a diagonal ``t`` (no low-rank terms) and a tangent ``dense``
    batched over the same basis: ``dense``'s value with ``t``'s diagonal added where
    it is nonzero (the ``add_diag`` primitive: one copy and a diagonal write), where
    densifying ``t`` would form an identity basis and add it with a full pass."""
    val = dense._a  # (count,) + shape, one level down
    xp = namespace_for_values([val])
    n = math.prod(t.shape)
    s = t.scale
    if s is None:
        d = xp.ones((t.count,), dtype=dtype, device=t.like.device)
    elif isinstance(s, (int, float)):
        d = xp.full((t.count,), s, dtype=dtype, device=t.like.device)
    else:
        if tuple(s.shape) != t.shape:
            s = xp.broadcast_to(s, t.shape)
        d = xp.reshape(s, (n,))[t.start: t.start + t.count]
        if d.dtype != dtype:
            d = xp.astype(d, dtype)
    flat = xp.reshape(val, (t.count, n))
    summed = PRIMITIVES["add_diag"].bind(flat, d, offset=t.start)
    return batch_tracer(t.main, xp.reshape(summed, (t.count,) + t.shape), True)


def push_select(primals: list, tangents: list, out: Any) -> Any:
    """``where`` on structured tangents without low-rank terms: a select of their
    scales (primal-sized); ``None`` otherwise (the caller densifies)."""
    c, a, b = primals
    _, ta, tb = tangents
    first = ta if type(ta) is Diag else tb
    if out is None:
        out = _where_prim().bind(c, a, b)
    shape = tuple(out.shape)
    for t in (ta, tb):
        if type(t) is Diag:
            if t.shape != shape or t.main is not first.main or t.start != first.start \
                    or t.count != first.count or t.terms:
                return None
        elif not (t is None or isinstance(t, Zero)):
            return None
    if len({id(t.base) for t in (ta, tb) if type(t) is Diag and t.diag}) > 1:
        return None
    xp = namespace_for_values(primals)
    sa, sb = ((t.scale if t.scale is not None else 1.0) if type(t) is Diag and t.diag else 0.0
              for t in (ta, tb))
    if isinstance(sa, float) and isinstance(sb, float):
        if sa == sb == 0.0:
            return out, Zero(out)
        if sa == sb:
            scale = None
        else:
            scale = xp.astype(c if sa else xp.logical_not(c), out.dtype)
    else:
        scale = xp.where(c, sa, sb)
    if scale is not None and tuple(scale.shape) != shape:
        scale = xp.broadcast_to(scale, shape)
    base = next((t.base for t in (ta, tb) if type(t) is Diag and t.diag), None)
    return out, first.replace(scale, True, (), base)


def _where_prim() -> Primitive:
    return PRIMITIVES["where"]


def _reduce_rule(prim: Primitive, primals: list, tangents: list, params: dict,
                 out: Any = None) -> Any:
    """A reduction over the whole (per-sample) array of a structured tangent: a small
    dense tangent ``(count,) + out.shape``; or, when terms have weights in closed form
    that the reduction keeps (the sum of ``k * x`` is ``k * sum(x)``), a small
    :class:`Diag` of ``out``'s shape holding them beside the dense part (a term)."""
    (t,) = tangents
    x = primals[0]
    shape = tuple(x.shape)
    axes = norm_axes(params.get("axis"), len(shape))
    if set(axes) != set(range(len(shape))) or set(params) - {"axis", "keepdims"}:
        return None
    if any(math.prod(tuple(c.shape[1:])) != 1 for c, _ in t.terms):
        return None

    xp = namespace_for_values(primals)
    if out is None:
        out = prim.bind(*primals, **params)
    keep = xp.reshape(out, (1,) * len(shape))
    d = prim.reduce_deriv(xp, x, keep, params.get("axis"))
    n = math.prod(shape)
    acc = None
    if t.diag:
        sd = _times(xp, t.scale, d)
        sd = xp.ones(shape, dtype=x.dtype, device=x.device) if sd is None else sd
        if isinstance(sd, (int, float)):
            sd = xp.multiply(xp.ones(shape, dtype=x.dtype, device=x.device), sd)
        flat = xp.reshape(xp.broadcast_to(sd, shape), (n,))
        if t.base is None:
            acc = flat[t.start:t.start + t.count]
        else:  # sum(sd * base[j]) for every j: one matrix-vector product
            acc = xp.matmul(xp.reshape(t.base, (t.count, n)), flat)
    closed = []
    for c, w in t.terms:
        w_out = _through(prim, 0, w, out) if type(w) is Scaling else None
        if w_out is not None:
            closed.append((c, w_out))
            continue
        wd = _times(xp, _numeric(xp, w), d)
        if wd is None:
            total = float(n)
        elif isinstance(wd, (int, float)):
            total = wd * n
        else:
            total = xp.sum(xp.broadcast_to(wd, shape))
        term = xp.multiply(xp.reshape(c, (t.count,)), total)
        acc = term if acc is None else xp.add(acc, term)
    if closed:
        dense = [] if acc is None else [(xp.reshape(acc, (t.count,) + tuple(out.shape)), None)]
        return out, Diag(None, t.main, tuple(out.shape), out, t.start, t.count, False,
                         tuple(dense + closed))
    if acc is None:
        return out, Zero(out)
    return out, batch_tracer(t.main, xp.reshape(acc, (t.count,) + tuple(out.shape)), True)


def _basis_rule(prim: Primitive, primals: list, tangents: list, params: dict,
                out: Any = None) -> Any:
    """A primitive with a ``basis_jvp`` rule applied to one pure scaled identity
    basis (a :class:`Diag` without low-rank terms, over the full basis) while its
    other operands carry no tangent: the rule writes the dense output tangent
    directly (e.g. ``A @ x`` with ``x``'s basis gives the columns of ``A``)."""
    pos = [i for i, t in enumerate(tangents) if t is not None and not isinstance(t, Zero)]
    if len(pos) != 1:
        return None
    t = tangents[pos[0]]
    if type(t) is not Diag or not _pure(t):
        return None
    xp = namespace_for_values(primals)
    if out is None:
        out = prim.bind(*primals, **params)
    val = prim.basis_jvp(xp, primals, pos[0], t.scale, out, **params)
    if val is None:
        return None
    if tuple(val.shape) != (t.count,) + tuple(out.shape):
        return out, batch_tracer(t.main, val, True)
    # the dense tangent as a scaled base: elementwise rules after it scale only a
    # primal-sized array, and it is materialised once, where a rule needs it
    return out, Diag(None, t.main, tuple(out.shape), out, 0, t.count, True, (), val)


# --- structured cotangents: reverse mode over an identity basis ---------------------------

def _scaled_base(t: Diag) -> bool:
    """A scaled base over the full basis (no low-rank terms)."""
    return t.diag and not t.terms and t.base is not None and t.start == 0


def _pure(t: Diag) -> bool:
    """A scaled identity over the full basis (no low-rank terms, not a chunk)."""
    return (t.diag and not t.terms and t.base is None and t.start == 0
            and t.count == math.prod(t.shape))


def pull(prim: Primitive, g: Diag, out: Any, primals: list, needs: list,
                    params: dict, partials: tuple | None = None) -> list | None:
    """Operand cotangents of one application of ``prim`` for a structured output
    cotangent ``g`` (a scaled identity basis over the output, as ``jacrev`` sweeps
    it), keeping the structure where the primitive allows: an elementwise
    primitive scales it by its partial derivative (operands shaped like the
    output); a primitive with a ``basis_vjp`` rule (``matmul``) writes the
    cotangents from the other operand, kept as a scaled base (``Diag.base``) that the
    nodes before it scale in turn, and that a ``scaled_vjp`` rule may take whole;
    ``where`` selects the scale.  ``partials``:
    the primitive's, guarded against masked zeros.  ``None``: the caller densifies
    ``g``."""
    if params or not (_pure(g) or _scaled_base(g)):
        return None
    xp = namespace_for_values(primals)
    if prim.select:
        c = primals[0]
        res = [None]
        for x, need, picked in zip(primals[1:], needs[1:], (True, False)):
            if not need:
                res.append(None)
                continue
            if tuple(x.shape) != g.shape or x.dtype != out.dtype:
                return None
            if g.scale is None:
                s = xp.astype(c if picked else xp.logical_not(c), out.dtype)
            else:
                s = xp.where(c, g.scale, 0.0) if picked else xp.where(c, 0.0, g.scale)
            if tuple(s.shape) != g.shape:
                s = xp.broadcast_to(s, g.shape)
            res.append(g.replace(s, True, ()))
        return res
    if prim.partials is not None:
        res: list = []
        for x, d, need in zip(primals, prim.partials if partials is None else partials, needs):
            if not need or d is None:
                res.append(None)
                continue
            if tuple(x.shape) != g.shape or x.dtype != out.dtype:
                return None  # broadcast or real-of-complex operands: the dense rule
            s = _times(xp, g.scale, d(xp, primals, out))
            if isinstance(s, (int, float)):
                s = xp.multiply(xp.ones_like(out), s)
            elif s is not None and tuple(s.shape) != g.shape:
                s = xp.broadcast_to(s, g.shape)
            res.append(g.replace(s, True, ()))
        return res
    if g.base is not None:  # a scaled base: the primitive's own rule, if it has one
        if prim.scaled_vjp is None:
            return None
        res = []
        for i, need in enumerate(needs):
            val = prim.scaled_vjp(xp, primals, i, g.base, g.scale, out) if need else None
            if need and val is None:
                return None
            res.append(None if val is None else batch_tracer(g.main, val, True))
        return res
    if prim.basis_vjp is not None:
        res = []
        for i, need in enumerate(needs):
            if not need:
                res.append(None)
                continue
            val = prim.basis_vjp(xp, primals, i, g.scale, out)
            if val is None:
                return None
            x = primals[i]
            if tuple(val.shape) == (g.count,) + tuple(x.shape) and val.dtype == x.dtype:
                # kept as a scaled base: the elementwise nodes before it scale a
                # primal-sized array, and a product may use its own rule (scaled_vjp)
                res.append(Diag(None, g.main, tuple(x.shape), x, 0, g.count, True, (), val))
            else:
                res.append(batch_tracer(g.main, val, True))
        return res
    return None


def add(xp: Any, a: Any, b: Any) -> Any:
    """``a + b`` for cotangents where either may be structured."""
    if type(a) is Diag and type(b) is Diag and a.main is b.main and a.shape == b.shape and (
            (_pure(a) and _pure(b)) or (_scaled_base(a) and _scaled_base(b) and a.base is b.base)):
        return a.replace(_plus(xp, a.scale, b.scale, a.like), True, ())
    if type(a) is Diag and a.base is not None:  # a scaled base that does not combine:
        a = a.dense()  # its array (an identity part of the other stays structured)
    if type(b) is Diag and b.base is not None:
        b = b.dense()
    if type(b) is Diag and type(a) is not Diag:
        a, b = b, a
    if (type(a) is Diag and a.diag and not a.terms and a.base is None and _basis_dense(b, a.main)
            and tuple(b.shape) == a.shape and b.dtype == a.like.dtype):
        return plus_dense(a, b, b.dtype)  # a dense cotangent plus an identity part
    if type(a) is Diag:
        a = a.dense()
    if type(b) is Diag:
        b = b.dense()
    return xp.add(a, b)
