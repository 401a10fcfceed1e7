"""Lowering a :class:`~xpdiff.jit.program.Program` to something that runs (the backend layer of ``jit``).

* Every backend: the calls become one generated straight-line Python function
  (``v3 = F2(L0, v1, axis=L4)``), constants and functions bound as its globals,
  each intermediate deleted after its last use, the guards checked where they
  were recorded.  A loop interpreter over the call list was measured about 1.4x
  slower than generated code at small sizes; this costs one ``exec`` per traced
  variant.  NumPy and array-api-strict run this plain form (``out=`` buffers were
  not adopted: they need impls lowered to direct backend calls first).
* CuPy: maximal chains of elementwise calls on one shape and dtype become one
  generated ``cupy.ElementwiseKernel`` each (:func:`fuse_elementwise`), and a
  program with no guards is captured as a CUDA graph on its first replay
  (:class:`CudaGraphRunner`).  Written and inspected on the CPU (the generated
  kernel sources are tested), not yet measured on a GPU.

Fusion and graphs are properties of the lowering: rules are written once against
the standard and never see them.

Layer: inside ``xpdiff.jit``.  May import: ``.program`` and ``xpdiff.backend`` (NumPy
lazily).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Any

from ..backend import add_diagonal, native_call
from .program import Call, Program, Var, last_uses


class Retrace(Exception):  # noqa: N818 - a signal, not an error
    """A guard of a program failed: the arguments need a new trace."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


def _feq(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


_CONVERT = {"bool": "bool", "int": "int", "float": "float", "index": "_index"}


@dataclass
class Lowered:
    """A runnable program: ``run(*inputs) -> outputs`` (raises :class:`Retrace`)."""

    run: Any
    source: str
    groups: list  # fused groups: lists of call indices
    kernels: list  # generated kernel sources (CuPy)
    backend: str


def generate(prog: Program, fused: dict[int, Any] | None = None,
             name: str = "program") -> tuple[Any, str]:
    """The program as a generated Python function; ``fused`` maps the index of the
    last call of a fused group to ``(kernel, in_vars, out_vars, skip)``."""
    import operator

    env: dict[str, Any] = {"_R": Retrace, "_feq": _feq, "_index": operator.index}
    lits: dict[int, str] = {}

    def lit(v: Any) -> str:
        if type(v) in (int, bool) or v is None or (type(v) is float and v == v
                                                   and v not in (float("inf"), float("-inf"))):
            return repr(v)
        if type(v) is str:
            return repr(v)
        k = lits.get(id(v))
        if k is None:
            k = lits[id(v)] = f"L{len(lits)}"
            env[k] = v
        return k

    def ref(a: Any) -> str:
        return f"v{a.n}" if type(a) is Var else lit(a)

    for n, v in prog.consts.items():
        env[f"v{n}"] = v
    frees = last_uses(prog)
    ghosts: set[int] = set()  # values inside a fused group: never assigned
    for last, (_, _, outs, inner) in (fused or {}).items():
        made = {o for j in inner | {last} for o in prog.calls[j].outs}
        ghosts |= made - set(outs)
        for j in inner:  # a value last used inside a group is freed after the group
            frees.setdefault(last, []).extend(frees.pop(j, []))
    by_pos: dict[int, list] = {}
    for gi, g in enumerate(prog.guards):
        by_pos.setdefault(g.pos, []).append((gi, g))
    skip: set[int] = set()
    for info in (fused or {}).values():
        skip.update(info[3])
    params = ", ".join(f"v{n}" for n in prog.inputs)
    lines = [f"def {name}({params}):"]

    def guards_at(pos: int) -> None:
        for gi, g in by_pos.get(pos, []):
            if g.kind == "env":
                lines.append(f"    if {lit(g.fn)}() != {lit(g.expected)}: raise _R({gi})")
            elif g.kind == "shape":
                lines.append(f"    if tuple(v{g.var}.shape) != {g.expected!r}: raise _R({gi})")
            elif g.kind == "float":
                lines.append(f"    if not _feq(float(v{g.var}), {lit(g.expected)}): raise _R({gi})")
            else:
                conv = _CONVERT[g.kind]
                lines.append(f"    if {conv}(v{g.var}) != {lit(g.expected)}: raise _R({gi})")

    guards_at(0)
    for i, c in enumerate(prog.calls):
        if i in skip:
            pass
        elif fused and i in fused:
            kern, ins, outs, _ = fused[i]
            k = f"K{i}"
            env[k] = kern
            targets = ", ".join(f"v{o}" for o in outs)
            lines.append(f"    {targets}{',' if len(outs) == 1 else ''} = "
                         f"_tuple({k}({', '.join(f'v{n}' for n in ins)}))")
            env["_tuple"] = _as_tuple
        else:
            f = f"F{i}"
            env[f] = c.fn
            args = [ref(a) for a in c.args] + [f"{k}={ref(v)}" for k, v in c.kw.items()]
            call = f"{f}({', '.join(args)})"
            if c.multi:
                targets = ", ".join(f"v{o}" for o in c.outs)
                if c.fix:
                    env["_fixs"] = _fix_all
                    call = f"_fixs({call})"
                lines.append(f"    {targets}{',' if len(c.outs) == 1 else ''} = {call}")
            else:
                if c.fix:
                    env["_fix"] = _fix
                    call = f"_fix({call})"
                lines.append(f"    v{c.outs[0]} = {call}")
        guards_at(i + 1)
        dead = [n for n in frees.get(i, []) if n not in ghosts]
        if dead:
            lines.append(f"    del {', '.join(f'v{n}' for n in sorted(dead))}")
    outs = []
    for o in prog.outputs:
        if type(o) is Var:
            if o.n in prog.copy_outputs:
                env["_copy"] = _copy
                outs.append(f"_copy(v{o.n})")
            else:
                outs.append(f"v{o.n}")
        else:
            outs.append(lit(o))
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    src = "\n".join(lines) + "\n"
    code = compile(src, f"<xpdiff.jit {name}>", "exec")
    exec(code, env)  # noqa: S102 - our own generated source
    return env[name], src


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _fix(x: Any) -> Any:
    import numpy as np

    return np.asarray(x) if isinstance(x, np.generic) else x


def _fix_all(xs: Any) -> tuple:
    return tuple(_fix(x) for x in xs)


def _copy(x: Any) -> Any:
    ns = x.__array_namespace__()
    return ns.asarray(x, copy=True)


def match_layouts(prog: Program) -> Program:
    """Folded constants (``prog.fresh``, at least 2-D) whose every elementwise use has
    an operand of the same shape that was laid out in Fortran order at trace time
    (``prog.fortran``: a transposed result) are stored in Fortran order too, once.

    An elementwise call on operands of opposite layouts walks one of them across its
    rows: adding a 512x512 identity to a transposed product took 0.32 ms against
    0.03 ms with matching layouts (NumPy, float32).  Values are unchanged; only the
    constant's strides are.  Backends whose arrays have no ``flags`` record no
    Fortran-ordered values, so nothing changes there."""
    if not prog.fortran:
        return prog
    want: dict[int, bool] = {}
    for c in prog.calls:
        ops = [a for a in c.array_args() if type(a) is Var]
        for a in ops:
            if a.n not in prog.consts or a.n not in prog.fresh or len(prog.shapes.get(a.n, ())) < 2:
                continue
            fortran_partner = c.elementwise and any(
                b.n in prog.fortran and prog.shapes.get(b.n) == prog.shapes[a.n] for b in ops)
            want[a.n] = want.get(a.n, True) and fortran_partner
    outputs = {o.n for o in prog.outputs if type(o) is Var}
    consts = dict(prog.consts)
    for n, ok in want.items():
        v = consts[n]
        if ok and n not in outputs and n not in prog.fortran:
            xp = v.__array_namespace__()
            axes = tuple(range(v.ndim - 1, -1, -1))
            t = xp.permute_dims(v, axes)  # a flat reshape copies it in row-major order
            consts[n] = xp.permute_dims(xp.reshape(xp.reshape(t, (-1,)), t.shape), axes)
    return replace(prog, consts=consts)


def _add_diag_in_place(bk: Any, x: Any, d: Any, *, offset: int) -> Any:
    return add_diagonal(bk, x, d, offset, inplace=True)


_add_diag_in_place.in_place = True  # (for inspection and tests)

# calls that may overwrite their first array operand: name -> the implementation that does
IN_PLACE = {"add_diag": _add_diag_in_place}


def donate_buffers(prog: Program) -> Program:
    """A call that can work in place (``add_diag``: a dense Jacobian plus its identity
    part) overwrites its first operand when the program owns it outright: made by an
    earlier call that was not a view, never viewed by another call, not an input, a
    constant or an output, and used for the last time here.  The eager call copies
    it (it cannot know that nothing else holds it); the program saves the copy."""
    frees = last_uses(prog)
    made_fresh = {o for c in prog.calls if not c.view for o in c.outs}
    viewed = {a.n for c in prog.calls if c.view for a in c.array_args() if type(a) is Var}
    keep = set(prog.inputs) | set(prog.consts) | {o.n for o in prog.outputs if type(o) is Var}
    calls = []
    for i, c in enumerate(prog.calls):
        ops = c.array_args()
        if (c.name in IN_PLACE and c.takes_xp and ops and type(ops[0]) is Var
                and ops[0].n in made_fresh and ops[0].n not in viewed and ops[0].n not in keep
                and ops[0].n in frees.get(i, ()) and all(
                    type(a) is not Var or a.n != ops[0].n for a in ops[1:])):
            c = replace(c, fn=IN_PLACE[c.name])
        calls.append(c)
    return replace(prog, calls=calls)


SMALL_DIAGONAL = 1 << 12  # blocks up to this many elements: an add of a folded matrix


def small_diagonals(prog: Program) -> Program:
    """``add_diag(x, d)`` with a folded ``d`` on a small block becomes one elementwise
    add of a folded matrix holding ``d`` on its diagonal and ``-0.0`` elsewhere
    (``x + -0.0`` is ``x`` for every ``x``, signed zeros included): at small sizes one
    ufunc call costs less than a copy and a strided write (0.4 us against 2.5 us on
    16 x 16).  The matrix then takes its partner's layout (:func:`match_layouts`)."""
    calls, consts, fresh = [], dict(prog.consts), set(prog.fresh)
    shapes, dtypes = dict(prog.shapes), dict(prog.dtypes)
    nxt = 1 + max([*shapes, *consts, *(o for c in prog.calls for o in c.outs), *prog.inputs, -1])
    for c in prog.calls:
        ops = c.array_args()
        if (c.name == "add_diag" and c.takes_xp and len(ops) == 2 and all(type(a) is Var for a in ops)
                and ops[1].n in consts and ops[1].n in fresh and ops[0].n in shapes
                and 0 < math.prod(shapes[ops[0].n]) <= SMALL_DIAGONAL
                and dtypes.get(ops[0].n) == consts[ops[1].n].dtype):
            x, d = ops
            xp, dv = c.args[0], consts[d.n]
            m = xp.full(shapes[x.n], -0.0, dtype=dv.dtype, device=dv.device)
            consts[nxt] = add_diagonal(xp, m, dv, c.kw["offset"], inplace=True)
            shapes[nxt], dtypes[nxt] = shapes[x.n], dv.dtype
            fresh.add(nxt)
            calls.append(Call(xp.add, (x, Var(nxt)), {}, c.outs, "add", elementwise=True,
                              shapes=c.shapes, dtypes=c.dtypes))
            nxt += 1
            continue
        calls.append(c)
    return replace(prog, calls=calls, consts=consts, fresh=fresh, shapes=shapes, dtypes=dtypes)


def native_calls(prog: Program) -> Program:
    """NumPy: each call the backend layer knows a faster form of with the same result
    (:func:`xpdiff.backend.native_call`: NumPy's own functions for array-api-compat's
    pass-through wrappers, the ufuncs' ``reduce`` for ``sum``/``max``, the ``reshape``
    method) is replaced by it.  At small sizes these wrappers are a third of a
    program's time; values are unchanged (bitwise)."""
    calls = []
    for c in prog.calls:
        rep = native_call(c.fn, c.args, c.kw, c.takes_xp)
        if rep is not None:
            fn, args, kw = rep
            c = replace(c, fn=fn, args=args, kw=kw)
        calls.append(c)
    return replace(prog, calls=calls)


def lower(prog: Program, backend: str, *, fuse: bool | None = None) -> Lowered:
    """The runnable form of ``prog`` for ``backend`` (``"numpy"``, ``"cupy"``, ...).

    ``fuse`` (default: on for CuPy only) fuses elementwise chains into generated
    kernels; on other backends the plain calls run."""
    fuse = backend == "cupy" if fuse is None else fuse
    prog = donate_buffers(match_layouts(small_diagonals(prog)))
    if backend == "numpy":
        prog = native_calls(prog)
    if not fuse:
        run, src = generate(prog)
        return Lowered(run, src, [], [], backend)
    groups = fusion_groups(prog)
    fused, kernels = {}, []
    for grp in groups:
        src_k, ins, outs = kernel_source(prog, grp)
        kernels.append(src_k)
        kern = _CupyKernel(src_k, len(outs)) if backend == "cupy" else _ReferenceKernel(prog, grp, ins, outs)
        fused[grp[-1]] = (kern, ins, outs, set(grp[:-1]))
    run, src = generate(prog, fused)
    if backend == "cupy" and not prog.guards:
        run = CudaGraphRunner(run)
    return Lowered(run, src, groups, kernels, backend)


# --- elementwise fusion (CuPy) -------------------------------------------------------------

# the scalar expression of each fusable elementwise primitive, on CUDA C operands
C_EXPR = {
    "add": "({0} + {1})", "subtract": "({0} - {1})", "multiply": "({0} * {1})",
    "divide": "({0} / {1})", "negative": "(-{0})", "positive": "({0})",
    "sin": "sin({0})", "cos": "cos({0})", "tan": "tan({0})", "exp": "exp({0})",
    "expm1": "expm1({0})", "log": "log({0})", "log1p": "log1p({0})", "sqrt": "sqrt({0})",
    "tanh": "tanh({0})", "sinh": "sinh({0})", "cosh": "cosh({0})", "abs": "fabs({0})",
    "square": "({0} * {0})", "maximum": "fmax({0}, {1})", "minimum": "fmin({0}, {1})",
    "pow": "pow({0}, {1})", "asin": "asin({0})", "acos": "acos({0})", "atan": "atan({0})",
    "asinh": "asinh({0})", "acosh": "acosh({0})", "atanh": "atanh({0})",
}


def _fusable(prog: Program, c: Call) -> bool:
    """An elementwise call with a C expression whose array operands all have its output's
    dtype (a kernel's parameters are typed) and whose other operands are Python numbers."""
    if not (c.elementwise and c.name in C_EXPR and not c.multi and not c.kw
            and len(c.shapes) == 1 and _c_type(c.dtypes[0]) != "T"):
        return False
    for a in c.array_args():
        if type(a) is Var:
            if prog.dtypes.get(a.n) != c.dtypes[0]:
                return False
        elif type(a) not in (int, float):
            return False
    return True


def fusion_groups(prog: Program) -> list[list[int]]:
    """Maximal runs of consecutive fusable elementwise calls producing one shape and
    dtype, of length two or more (a single call gains nothing from a kernel)."""
    groups, cur = [], []
    cuts = {g.pos for g in prog.guards}  # a guard between two calls ends a group
    for i, c in enumerate(prog.calls):
        if _fusable(prog, c) and i not in cuts and (not cur or (c.shapes == prog.calls[cur[0]].shapes
                                        and c.dtypes == prog.calls[cur[0]].dtypes)):
            cur.append(i)
            continue
        if len(cur) > 1:
            groups.append(cur)
        cur = [i] if _fusable(prog, c) else []  # a call after a guard may start a group
    if len(cur) > 1:
        groups.append(cur)
    return groups


def _c_type(dtype: Any) -> str:
    name = str(dtype)
    return {"float64": "double", "float32": "float"}.get(name, "T")


def kernel_source(prog: Program, grp: list[int]) -> tuple[dict, list[int], list[int]]:
    """The ``ElementwiseKernel`` pieces for one group: inputs (values made outside the
    group), outputs (values of the group used after it or returned) and the body."""
    inside = {o for i in grp for o in prog.calls[i].outs}
    ins: list[int] = []
    for i in grp:
        for n in prog.calls[i].operands():
            if n not in inside and n not in ins:
                ins.append(n)
    used_after = {o.n for o in prog.outputs if type(o) is Var}
    last = grp[-1]
    for j, c in enumerate(prog.calls):
        if j > last or j not in grp:
            used_after.update(c.operands())
    used_after.update(g.var for g in prog.guards)
    outs = [o for i in grp for o in prog.calls[i].outs if o in used_after]
    ctype = _c_type(prog.calls[grp[0]].dtypes[0])
    body = []
    for i in grp:
        c = prog.calls[i]
        ops = [f"v{a.n}" if type(a) is Var else repr(float(a)) for a in c.array_args()]
        expr = C_EXPR[c.name].format(*ops)
        o = c.outs[0]
        body.append(f"{ctype} v{o} = {expr};" if o not in outs else f"v{o} = {expr};")
    in_params = ", ".join(f"{ctype} v{n}" for n in ins)
    out_params = ", ".join(f"{ctype} v{o}" for o in outs)
    return ({"in_params": in_params, "out_params": out_params, "operation": "\n".join(body),
             "name": f"xpdiff_fused_{grp[0]}_{grp[-1]}"}, ins, outs)


class _CupyKernel:
    """A generated ``cupy.ElementwiseKernel``, compiled on first use."""

    def __init__(self, src: dict, n_out: int):
        self.src, self.n_out, self.kernel = src, n_out, None

    def __call__(self, *args: Any) -> Any:
        if self.kernel is None:
            import cupy

            self.kernel = cupy.ElementwiseKernel(self.src["in_params"], self.src["out_params"],
                                                 self.src["operation"], self.src["name"])
        return self.kernel(*args)


class _ReferenceKernel:
    """A fused group run call by call: what a kernel computes, for testing the fusion
    plan on backends without kernels."""

    def __init__(self, prog: Program, grp: list[int], ins: list[int], outs: list[int]):
        self.calls = [prog.calls[i] for i in grp]
        self.ins, self.outs = ins, outs

    def __call__(self, *args: Any) -> tuple:
        env = dict(zip(self.ins, args))
        for c in self.calls:
            a = [env[x.n] if type(x) is Var else x for x in c.args]
            env[c.outs[0]] = c.fn(*a)
        return tuple(env[o] for o in self.outs)


class CudaGraphRunner:
    """Replays a guard-free CuPy program as one CUDA graph.

    The first call runs the program normally (compiling kernels, warming the memory
    pool); the second copies its inputs into static buffers and captures a run into a
    graph; later calls copy inputs into those buffers, launch the graph and return
    copies of the static outputs.  Not yet measured on a GPU."""

    def __init__(self, run: Any):
        self.run = run
        self.calls = 0
        self.graph = None
        self.static_in: tuple = ()
        self.static_out: tuple = ()
        self.lock = threading.Lock()  # the static buffers are shared: one replay at a time

    def __call__(self, *inputs: Any) -> tuple:
        with self.lock:
            return self._call(inputs)

    def _call(self, inputs: tuple) -> tuple:
        self.calls += 1
        if self.calls == 1:
            return self.run(*inputs)
        import cupy

        if self.graph is None:
            self.static_in = tuple(cupy.array(x, copy=True) for x in inputs)
            stream = cupy.cuda.Stream(non_blocking=True)
            with stream:
                stream.begin_capture()
                self.static_out = self.run(*self.static_in)
                self.graph = stream.end_capture()
        for buf, x in zip(self.static_in, inputs):
            buf[...] = x
        self.graph.launch()
        return tuple(cupy.array(o, copy=True) for o in self.static_out)
