"""The Jacobian engine: mode choice, structured sweeps, sample and basis chunking, and
the assembly of ``B + Y + X``.

Every Jacobian (``jacfwd``, ``jacrev``, ``jacobian``, ``hessian``, with or without
``batch_ndim``) is one call of :func:`jacobian_fn`, with keyword parameters:

* ``mode``: ``"fwd"`` (a vectorised JVP over an identity basis of the inputs),
  ``"rev"`` (one recorded forward pass, a vectorised backward sweep over a basis of
  the outputs) or ``"auto"`` (record once, then :func:`pick_mode`);
* ``samples`` and ``split_samples``: under ``batch_ndim`` the function runs per
  sample under ``vmap`` (:func:`per_sample`); the pass covers ``samples`` samples,
  and with ``split_samples`` a pass that might not fit the memory budget is not run:
  the function returns a :class:`SampleChunks` plan instead, which
  :func:`per_sample` follows (chunks of samples, each written in place).

The result is a :class:`JacResult`: the Jacobian and the mode that computed it.

Layer: transforms.  May import: ``xpdiff.transforms.args``, ``.chunking``,
``xpdiff.namespaces`` and everything below it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ..backend import update
from ..core import XpdiffError, Zero, instantiate, namespace_for_values, new_main
from ..core import tree as _tree
from ..interpreters.batching import BatchTrace, batch_tracer, vmap_call
from ..interpreters.dataview import DataContext, DataTrace, data_tracer
from ..interpreters.forward import jvp_call
from ..interpreters.reverse import vjp_call
from ..interpreters.structured import Diag
from ..rules.structure import diag_block, lowrank_diag
from ..tracer import Tracer
from . import chunking as _chunking
from .args import (
    ArgNums,
    _argnums,
    _check_complex_inputs,
    _check_complex_outputs,
    _check_float,
    _data_hint,
    _data_split,
    _FlatFun,
    _is_complex,
    _suggested,
    _unmatched,
)


class JacResult(NamedTuple):
    """A Jacobian (a pytree like ``f``'s output, or ``(jacobian, aux)``) and the mode
    (``"fwd"`` or ``"rev"``) that computed it."""

    value: Any
    mode: str


class SampleChunks(NamedTuple):
    """The plan of a ``batch_ndim`` Jacobian whose single pass over all samples might
    not fit the memory budget: run the samples in chunks.  The sizes are per sample:
    the bytes of its Jacobian blocks and the bytes its pass is estimated to need."""

    result_bytes: int
    pass_bytes: int


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
    if isinstance(t, Tracer) and t._main is bmain:
        if t._batched:
            return t._a
        t = t._a
    return namespace_for_values([t]).broadcast_to(t, (count,) + tuple(t.shape))


def jacobian_fn(f: Callable, argnums: ArgNums, has_aux: bool, *, mode: str, fname: str,
                chunk_size: int | None = None, max_memory: int | None = None, samples: int = 1,
                split_samples: bool = False, holomorphic: bool = False,
                outer: int | None = None) -> Callable[..., JacResult | SampleChunks]:
    """``jac(*args)``: the Jacobian of ``f`` at ``args`` (a :class:`JacResult`), or a
    :class:`SampleChunks` plan (only with ``split_samples``; see the module doc).

    Complex numbers (docs/complex.md): with ``holomorphic`` every input and output
    is complex; otherwise forward mode takes real inputs, reverse mode real outputs,
    and ``"auto"`` takes the one mode that applies (refusing complex inputs and
    outputs together), so the mode never changes the answer.

    Memory: the budget covers every copy of the result, ``samples`` of them times
    ``outer``, the examples of enclosing ``vmap`` s (by default read from the
    arguments: the sizes of the ``vmap`` levels they are batched at)."""
    def jac(*args: Any) -> JacResult | SampleChunks:
        nums, single = _argnums(argnums, len(args), fname)
        flat = _FlatFun(f, args, nums, has_aux, fname)
        ins = flat.flat_in
        _check_complex_inputs(fname, flat.in_labels, ins, holomorphic=holomorphic,
                             real=mode == "fwd")
        budget = _chunking.budget(ins[0], max_memory)
        copies = _chunking.vmap_copies(ins) if outer is None else outer
        rec = None
        if mode != "fwd" or (chunk_size is None and budget is not None):
            # recorded once: reverse mode sweeps the tape, forward mode replays it (and the
            # output sizes it gives decide the mode and whether one pass may not fit)
            rec = vjp_call(flat, ins)
        chosen = mode
        if mode == "auto":
            res, pullback = rec
            outs = res[:flat.n_out]
            chosen = None if holomorphic else _complex_mode(fname, flat, outs)
            if chosen is None:
                n_in = sum(math.prod(x.shape) for x in ins)
                n_out = sum(math.prod(getattr(o, "shape", ())) for o in outs)
                chosen = pick_mode(n_in, n_out, pullback, flat.n_out)
        if rec is not None:
            _check_complex_outputs(fname, rec[0][:flat.n_out], holomorphic=holomorphic,
                                  real=chosen == "rev")
        if rec is not None and outer is None:  # outputs batched by a closure, too
            copies = max(copies, _chunking.vmap_copies(list(ins) + list(rec[0][:flat.n_out])))
        kw = dict(fname=fname, chunk_size=chunk_size, budget=budget, samples=samples,
                  split_samples=split_samples, holomorphic=holomorphic, outer=copies)
        if chosen == "fwd":
            out = _forward(flat, single, rec, **kw)
        else:
            out = _sweep(flat, single, *rec, **kw)
        return out if isinstance(out, SampleChunks) else JacResult(out, chosen)

    return jac


def _complex_mode(fname: str, flat: _FlatFun, outs: list) -> str | None:
    """The mode ``"auto"`` must take for the complex convention (without
    ``holomorphic``): ``"rev"`` for complex inputs (real outputs: grad's convention),
    ``"fwd"`` for complex outputs (real inputs); ``None`` when both modes agree."""
    cin = next((lab for lab, x in zip(flat.in_labels, flat.flat_in) if _is_complex(x)), None)
    cout = any(_is_complex(o) for o in outs)
    if cin is not None and cout:
        raise TypeError(
            f"{fname}: {cin} and the output of f are complex; for a function that is not "
            f"holomorphic, forward and reverse mode give different Jacobians of a complex "
            f"function of complex inputs, so {fname} refuses it. If f is holomorphic "
            f"(complex-differentiable, like z * z or exp(z)), pass holomorphic=True; otherwise "
            f"differentiate a real function of the output (xp.real(y), xp.abs(y) ** 2), pass "
            f"the real and imaginary parts of the input as separate real arguments, or use "
            f"xpdiff.jvp / xpdiff.vjp directly")
    if cin is not None:
        return "rev"
    return "fwd" if cout else None


def _one_pass(n: int, sizes: int, result_bytes: int, *, chunk_size: int | None, budget: int | None,
              samples: int, outer: int, itemsize: int,
              split_samples: bool) -> tuple[int | None, SampleChunks | None]:
    """The plan of one Jacobian pass over ``n`` basis vectors: ``(budget, None)`` where
    ``budget`` is ``None`` for one pass (else the basis is chunked to fit it), or
    ``(None, plan)`` with a :class:`SampleChunks` plan when the samples should be split."""
    if chunk_size is not None:
        return budget, None
    if budget is None:
        return None, None
    need = _chunking.pass_bytes(n, sizes, samples * outer, itemsize)
    fits = need + result_bytes <= budget
    _chunking.guard_plan(need + result_bytes, budget, not fits)  # jit re-checks it at replay
    if fits:
        return None, None
    if split_samples:
        return None, SampleChunks(result_bytes // samples, need // samples)
    return budget, None


def _forward(flat: _FlatFun, single: bool, rec: tuple | None, *, fname: str, chunk_size: int | None,
             budget: int | None, samples: int, split_samples: bool, holomorphic: bool,
             outer: int) -> Any:
    """Forward-mode Jacobian: one vectorised JVP over (chunks of) an identity basis;
    ``rec``: the recorded ``(outputs, pullback)`` of ``f`` when there is one (its tape is
    replayed instead of evaluating ``f`` again).

    With a single input leaf the basis is structured (``interpreters.structured.Diag``):
    elementwise operations keep it symbolic and an elementwise Jacobian is written
    once, at the size of the result; an op that mixes positions materialises it.
    """
    has_aux = flat.has_aux
    res0, pull = rec if rec is not None else (None, None)
    ins = flat.flat_in
    n = sum(math.prod(x.shape) for x in ins)
    offs = [0]
    for x in ins:
        offs.append(offs[-1] + math.prod(x.shape))
    like = ins[0]
    state: dict = {}
    chunk = chunk_size
    if chunk is None and budget is not None:
        n_out = sum(math.prod(getattr(o, "shape", ())) for o in res0[:flat.n_out])
        item = _chunking.itemsize(like)
        rb = samples * outer * n * n_out * item
        _chunking.check_result_fits(fname, rb, budget, samples=samples, outer=outer)
        budget, plan = _one_pass(n, n + n_out, rb, chunk_size=chunk, budget=budget,
                                 samples=samples, outer=outer, itemsize=item,
                                 split_samples=split_samples)
        if plan is not None:
            return plan

    def run(s, e):
        count = e - s
        with new_main(BatchTrace, size=count) as bmain:
            if len(ins) == 1:
                ts = [Diag(None, bmain, tuple(ins[0].shape), ins[0], s, count)]
            else:
                ts = [batch_tracer(bmain, _eye_block(x, n, s, e, offs[i], tuple(x.shape)), True)
                      for i, x in enumerate(ins)]
            if pull is not None and pull.replayable:
                res, touts = res0, pull.forward(ts)
            else:
                res, touts = jvp_call(flat, ins, ts)
            res = [_unbatch(r, bmain) for r in res]
            outs = res[:flat.n_out]
            if "outs" not in state:
                state["outs"], state["aux"] = flat.split(res)
                if rec is None:
                    _check_complex_outputs(fname, outs, holomorphic=holomorphic, real=False)
                rb = samples * outer * sum(_chunking.nbytes(tuple(o.shape) + tuple(x.shape), o)
                                           for o in outs for x in ins)
                _chunking.check_result_fits(fname, rb, budget, samples=samples, outer=outer)
                state["result_bytes"] = rb
            piece = []
            for o, t in zip(outs, touts[:flat.n_out]):
                xp = namespace_for_values([o])
                full = count == n and len(ins) == 1
                if (full and type(t) is Diag and t.base is None and t.shape == tuple(o.shape)
                        and t.shape == tuple(ins[0].shape)):
                    piece.append(("J", _diag_jacobian(t, bmain, o, ins[0])))
                elif isinstance(t, Zero):
                    piece.append(("rows", xp.zeros((count,) + tuple(o.shape), dtype=o.dtype,
                                                   device=o.device)))
                else:
                    piece.append(("rows", _basis_main_values(t, bmain, count)))
        return piece

    pieces = _chunking.run_chunks(n, run, chunk, budget, lambda: state["result_bytes"])
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


def _diag_jacobian(t: Diag, bmain: Any, o: Any, x: Any) -> Any:
    """The Jacobian ``Y + X`` (Y == X) of a structured tangent over the full basis:
    ``diag(scale) + sum_r w_r c_r^T``, written once.

    The scale and weights do not depend on the basis, but they may be constants of the
    basis trace (created by a custom rule run one level down, below the transformation
    that called it): those are read one level down, like the primal outputs."""
    t = t.replace(_unbatch(t.scale, bmain), t.diag,
                  tuple((c, _unbatch(w, bmain)) for c, w in t.numeric_terms()))
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
    if isinstance(v, Tracer) and v._main is main:
        if v._batched:
            raise XpdiffError("internal: a primal output depends on the tangent basis")
        return v._a
    return v


def _assemble_one(blocks: list, o: Any, ins: list, flat: _FlatFun, single: bool, rows_are_out: bool):
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


def _sweep(flat: _FlatFun, single: bool, res: list, pullback: Any, *, fname: str,
           chunk_size: int | None, budget: int | None, samples: int, split_samples: bool,
           holomorphic: bool, outer: int) -> Any:
    """Reverse-mode Jacobian: the vectorised backward sweep of a recorded tape over
    (chunks of) a cotangent basis."""
    has_aux = flat.has_aux
    ins = flat.flat_in
    outs, aux = flat.split(res)
    for o in outs:
        _check_float(o, fname, "an output of f")
    m = sum(math.prod(o.shape) for o in outs)
    offs = [0]
    for o in outs:
        offs.append(offs[-1] + math.prod(o.shape))
    n_aux = len(res) - flat.n_out
    rb = samples * outer * sum(_chunking.nbytes(tuple(o.shape) + tuple(x.shape), o)
                               for o in outs for x in ins)
    _chunking.check_result_fits(fname, rb, budget, samples=samples, outer=outer)
    n_in = sum(math.prod(x.shape) for x in ins)
    budget, plan = _one_pass(m, m + n_in, rb, chunk_size=chunk_size, budget=budget, samples=samples,
                             outer=outer, itemsize=_chunking.itemsize(outs[0]),
                             split_samples=split_samples)
    if plan is not None:
        return plan

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
                if type(c) is Diag and c.base is None and c.shape == tuple(x.shape):
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

    parts = _chunking.run_chunks(m, run, chunk_size, budget, rb)
    cts = [_concat0([p[i] for p in parts]) for i in range(len(ins))]
    Js = [_assemble_one([c[offs[j]:offs[j + 1], ...] for c in cts], o, ins, flat, single, True)
          for j, o in enumerate(outs)]
    J = _tree.unflatten(flat.out_def, Js)
    return (J, aux) if has_aux else J


def per_sample(core: Callable, f: Callable, argnums: ArgNums, has_aux: bool, *, k: int,
               data_argnums: Any, fname: str, max_memory: Any = None) -> Callable[..., JacResult]:
    """``core(per_sample_f, argnums, has_aux, samples=, split_samples=)`` (a
    :func:`jacobian_fn`) computed per sample under ``vmap``; when it returns a
    :class:`SampleChunks` plan, the samples are chunked (:func:`_sample_chunks`)."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"{fname}: batch_ndim must be a non-negative int, got {k!r}")

    def run(*args):
        nums, single = _argnums(argnums, len(args), fname)
        B, is_data, per_arg = _data_split(args, k, data_argnums, nums, fname)
        nB = math.prod(B)
        outer = _chunking.vmap_copies([x for leaves, _ in per_arg for x in leaves])
        where = f"{fname}(batch_ndim={k})"
        # the error messages' hints, made only when an error needs them
        def hint() -> str:
            return _data_hint(per_arg, is_data, k, B, data_argnums)

        def computed_hint() -> str:
            return _data_hint(per_arg, is_data, k, B, data_argnums, suggest=False)

        bind_unmatched = _unmatched(per_arg, is_data, k, B, data_argnums)
        bind_suggested = _suggested(per_arg, is_data, k, data_argnums)
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

        def per_sample_f(*a):
            *a, index = a
            flat = [_tree.flatten(arg) for arg in a]
            with new_main(DataTrace, k=k, B=B, index=index, where=where, hint=hint,
                          computed_hint=computed_hint,
                          unmatched=bind_unmatched([leaves for leaves, _ in flat]),
                          suggested=bind_suggested([leaves for leaves, _ in flat])) as main:
                viewed = []
                for (leaves, tdef), flags in zip(flat, is_data):
                    viewed.append(_tree.unflatten(tdef, [data_tracer(main, x) if d else x
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

        def chunk(s: int, e: int, split: bool = False) -> tuple | SampleChunks:
            """The per-sample Jacobians of samples ``s:e``: ``(leaves (samples first),
            treedef, mode)``, or with ``split`` a :class:`SampleChunks` plan when one
            pass over them might not fit."""
            whole = (s, e) == (0, nB)
            vals = [x if whole or not d else x[s:e, ...]
                    for (leaves, _), flags in zip(arg_leaves, is_data)
                    for x, d in zip(leaves, flags)]
            vals.append(index if whole else index[s:e])
            jac = core(per_sample_f, a, has_aux, samples=e - s, split_samples=split, outer=outer)
            got: list = []  # what the vmapped pass returned besides its leaves

            def flat_f(*xs):  # vmap's work without its argument checks (done above)
                args, pos = [], 0
                for leaves, td in arg_leaves:
                    args.append(_tree.unflatten(td, list(xs[pos:pos + len(leaves)])))
                    pos += len(leaves)
                r = jac(*args, xs[-1])
                got.append(r)
                if isinstance(r, SampleChunks):
                    return []  # nothing computed: the caller follows the plan
                return _tree.flatten_into(r.value, got)

            outs, ob = vmap_call(flat_f, vals, flags_flat, e - s)
            if isinstance(got[0], SampleChunks):
                return got[0]
            xp = namespace_for_values(outs)
            return ([o if b else xp.broadcast_to(o, (e - s,) + tuple(o.shape))
                     for o, b in zip(outs, ob)], got[1], got[0].mode)

        res = chunk(0, nB, split=nB > 1)
        if isinstance(res, SampleChunks):
            res = _sample_chunks(chunk, nB, some, max_memory, fname, res, outer)
        leaves, tdef, mode = res
        xp = namespace_for_values(leaves)
        return JacResult(_tree.unflatten(tdef, [xp.reshape(r, B + tuple(r.shape[1:])) for r in leaves]),
                         mode)

    return run


def _sample_chunks(chunk: Callable, nB: int, like: Any, max_memory: Any, fname: str,
                   plan: SampleChunks, outer: int) -> tuple:
    """A ``batch_ndim`` Jacobian whose single pass might not fit, computed over chunks
    of samples sized from the per-sample sizes of ``plan``; at top level each chunk's
    rows are written into the result in place (no concatenation copy)."""
    budget = _chunking.budget(like, max_memory)
    total = plan.result_bytes * nB
    _chunking.check_result_fits(fname, total, budget, samples=nB, outer=outer)
    per = max(plan.pass_bytes, plan.result_bytes)
    room = budget - total
    if room < per:  # not even one sample's pass fits beside the result: chunk the basis
        return chunk(0, nB)
    size = max(1, int(room // per))
    first = min(nB, size)
    leaves0, tdef, mode = chunk(0, first)
    in_place = not any(isinstance(x, Tracer) for x in leaves0)
    outs: list = []
    pieces: list = [leaves0]
    if in_place:
        for x in leaves0:
            xp = namespace_for_values([x])
            out = xp.empty((nB,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
            outs.append(update(out, (slice(0, first), Ellipsis), x))
    for s in range(first, nB, size):
        e = min(nB, s + size)
        leaves, _, _ = chunk(s, e)
        if in_place:
            outs = [update(o, (slice(s, e), Ellipsis), x) for o, x in zip(outs, leaves)]
        else:
            pieces.append(leaves)
    if in_place:
        return outs, tdef, mode
    return [_concat0([p[j] for p in pieces]) for j in range(len(leaves0))], tdef, mode


def _unview(y: Any, main: Any, B: tuple, where: str) -> Any:
    if isinstance(y, Tracer) and y._main is main:
        return y._a
    shape = tuple(getattr(y, "shape", ()))
    if shape[:len(B)] == B:
        return DataContext(len(B), B, main.data["index"], where, "output").lift(y)
    raise ValueError(f"{where}: an output of f has shape {shape}, which does not start with the data "
                     f"dims {B}; with batch_ndim every output must keep the data dims first")




def pick_mode(n_in: int, n_out: int, pullback: Any = None, n_outputs: int = 1) -> str:
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


def transform(f: Callable, argnums: ArgNums, has_aux: bool, *, mode: str, fname: str,
              batch_ndim: int = 0, chunk_size: int | None = None, max_memory: int | None = None,
              data_argnums: Any = None, holomorphic: bool = False) -> Callable[..., JacResult]:
    """The Jacobian of ``f`` in ``mode`` (``"fwd"``, ``"rev"``, ``"auto"`` or
    ``"hessian"``: forward over reverse), per sample with ``batch_ndim``."""
    def core(g: Callable, a: ArgNums, h: bool, *, samples: int = 1, split_samples: bool = False,
             outer: int | None = None) -> Callable[..., JacResult | SampleChunks]:
        kw = dict(fname=fname, chunk_size=chunk_size, max_memory=max_memory, samples=samples,
                  holomorphic=holomorphic, outer=outer)
        if mode != "hessian":
            return jacobian_fn(g, a, h, mode=mode, split_samples=split_samples, **kw)
        inner = jacobian_fn(g, a, h, mode="rev", **kw)
        return jacobian_fn(lambda *xs: inner(*xs).value, a, h, mode="fwd",
                           split_samples=split_samples, **kw)

    if batch_ndim:
        return per_sample(core, f, argnums, has_aux, k=batch_ndim, data_argnums=data_argnums,
                          fname=fname, max_memory=max_memory)
    return core(f, argnums, has_aux)
