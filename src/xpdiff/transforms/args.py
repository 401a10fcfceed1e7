"""Arguments of the transformations: which are differentiated, their leaves, checks.

Layer: transforms (the bottom of ``xpdiff.transforms``).  May import:
``xpdiff.namespaces`` and everything below it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from ..backend import backend_namespace, default_float_dtype, device_scope, device_scope_needed, is_array
from ..core import check_same_backend, lift_constant, raw_namespace
from ..core import tree as _tree
from ..tracer import Tracer

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


# --- complex numbers: which transform accepts what (docs/complex.md) ------------------------

_COMPLEX_DTYPES: dict = {}  # (type of dtype, dtype) -> whether complex (asked on every call)


def _is_complex(x: Any) -> bool:
    dt = x.dtype
    key = (type(dt), dt)  # dtypes of two libraries never compare
    try:
        return _COMPLEX_DTYPES[key]
    except KeyError:
        out = _COMPLEX_DTYPES[key] = bool(raw_namespace(x).isdtype(dt, "complex floating"))
        return out
    except TypeError:  # an unhashable dtype: no caching
        return raw_namespace(x).isdtype(dt, "complex floating")


def _out_label(j: int, n: int) -> str:
    return "the output of f" if n == 1 else f"output {j} of f"


def _check_complex_inputs(fname: str, labels: Sequence[str], xs: Sequence, *,
                         holomorphic: bool, real: bool) -> None:
    """The complex convention at the inputs of a derivative transform: with
    ``holomorphic`` every input is complex; else, with ``real``, none is (forward
    mode and ``hessian``: a derivative along real directions only would be wrong
    for complex inputs)."""
    for label, x in zip(labels, xs):
        cx = _is_complex(x)
        if holomorphic and not cx:
            raise TypeError(
                f"{fname}(holomorphic=True): {label} has dtype {x.dtype}, but holomorphic=True "
                f"differentiates complex inputs and outputs only (f maps complex to complex). "
                f"Pass it as complex, e.g. xp.astype(x, xp.complex128), or drop holomorphic=True")
        if real and not holomorphic and cx:
            other = ("use jacrev (for a real output it gives grad's convention, df/dx - i df/dy "
                     "per output element), "
                     if fname in ("jacfwd", "jacobian") else "")
            raise TypeError(
                f"{fname}: {label} is complex ({x.dtype}); {fname} differentiates real inputs "
                f"unless told holomorphic=True (for a function that is not holomorphic, "
                f"forward and reverse mode disagree on complex inputs). If f is holomorphic "
                f"(complex-differentiable, like z * z or exp(z)), pass holomorphic=True; "
                f"otherwise {other}pass the real and imaginary parts as separate real "
                f"arguments, or use xpdiff.jvp directly")


def _check_complex_outputs(fname: str, outs: Sequence, *, holomorphic: bool, real: bool) -> None:
    """The complex convention at the outputs: with ``holomorphic`` every output is
    complex; else, with ``real``, none is (reverse mode and ``hessian``)."""
    for j, y in enumerate(outs):
        cx = _is_complex(y)
        label = _out_label(j, len(outs))
        if holomorphic and not cx:
            raise TypeError(
                f"{fname}(holomorphic=True): {label} has dtype {y.dtype}, but holomorphic=True "
                f"differentiates complex inputs and outputs only (f maps complex to complex). "
                f"Return a complex value, or drop holomorphic=True")
        if real and not holomorphic and cx:
            other = "use jacfwd (for real inputs), " if fname in ("jacrev", "jacobian") else ""
            raise TypeError(
                f"{fname}: {label} is complex ({y.dtype}); {fname} differentiates real outputs "
                f"unless told holomorphic=True (taking the real part silently would be wrong, "
                f"and for a function that is not holomorphic forward and reverse mode disagree). "
                f"If f is holomorphic (complex-differentiable, like z * z or exp(z)), pass "
                f"holomorphic=True; otherwise {other}differentiate a real function of the "
                f"output (xp.real(y), xp.abs(y) ** 2), or use xpdiff.vjp directly")


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


def _dtype_name(dt: Any) -> str:
    return str(dt).rsplit(".", 1)[-1]  # torch.float64 -> float64


def _cotangent_dtype_fix(y: Any, c: Any) -> str:
    """How to give the cotangent ``c`` the dtype of the floating output ``y``."""
    want = _dtype_name(y.dtype)
    if not _is_complex(y) and _is_floating(c) and _is_complex(c):
        return (f"a real output has a real cotangent (an imaginary part would be dropped "
                f"silently): pass the real cotangent you mean, of dtype {want}")
    return f"cast it with xp.astype(g, xp.{want})"


def _check_cotangents(fname: str, out_def: Any, outs: Sequence, cotangent: Any, *,
                      same_backend: bool = True) -> list:
    """The leaves of the ``cotangent`` given to ``fname``'s pullback, checked against the
    outputs ``outs`` (of pytree structure ``out_def``): the same structure, the outputs'
    backend and device (unless ``same_backend`` is False), and for every leaf the output's
    shape and, for a floating output, its dtype (JAX's rule: a ``float32`` cotangent of a
    ``float64`` output raises too; a complex cotangent of a real output would lose its
    imaginary part silently).  The cotangent of an integer or boolean output is not used:
    its dtype is free.  Shapes and dtypes only, so no device sync; a Python number stands
    for a 0-d array of its output's dtype."""
    leaves, c_def = _tree.flatten(cotangent)
    if c_def != out_def:
        raise ValueError(f"{fname}: the cotangent has pytree structure {c_def}, but f's output "
                         f"out has structure {out_def}; vjp_fn takes a cotangent of out's "
                         f"structure (the same containers and dict keys, one array per array "
                         f"of out)")
    names = ["out" + _tree.path_text(p) for p in out_def.paths()]
    cts = [_as_array(c, fname, f"the cotangent of {name}", o) for name, o, c in zip(names, outs, leaves)]
    if same_backend:
        check_same_backend(list(zip(names, outs)) + [(f"the cotangent of {name}", c)
                                                     for name, c in zip(names, cts)], fname)
    for name, o, c in zip(names, outs, cts):
        same_shape = tuple(c.shape) == tuple(o.shape) or not all(
            isinstance(n, int) for n in tuple(c.shape) + tuple(o.shape))  # unknown (Dask) sizes
        floating = _is_floating(o)
        if same_shape and (c.dtype == o.dtype or not floating):
            continue
        fixes = [] if same_shape else [f"pass a cotangent of shape {tuple(o.shape)} (it is not "
                                       f"broadcast)"]
        if floating and c.dtype != o.dtype:
            fixes.append(_cotangent_dtype_fix(o, c))
        raise ValueError(f"{fname}: the cotangent of {name} has shape {tuple(c.shape)} and dtype "
                         f"{c.dtype}, but {name} has shape {tuple(o.shape)} and dtype {o.dtype}; "
                         f"vjp_fn takes a cotangent of each output's shape and dtype: "
                         + ", and ".join(fixes))
    return cts


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
        if not isinstance(a, int) or isinstance(a, bool):
            raise TypeError(f"{fname}: argnums must be an int or a sequence of ints, got "
                            f"{argnums!r} ({type(a).__name__}); e.g. argnums=0 or argnums=(0, 1)")
        if not -nargs <= a < nargs:
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


class _FlatFun:
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
        self.in_labels = [f"argument {i}" if len(ls) == 1 else f"argument {i} (leaf {j})"
                          for i, ls in zip(nums, self.in_leaves) for j in range(len(ls))]
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
                        B, first = tuple(x.shape[:k]), i
                    elif tuple(x.shape[:k]) != B:
                        raise ValueError(f"{fname}: data shapes disagree: argument {i} has leading "
                                         f"dims {tuple(x.shape[:k])}, expected {B} (batch_ndim={k}) "
                                         f"like argument {first}; the arguments in data_argnums "
                                         f"have the same data dims (one entry per sample): pass "
                                         f"arrays with the same leading dims, or leave argument {i} "
                                         f"out of data_argnums if it is shared by every sample")
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


def _data_hint(leaves_per_arg: list, is_data: list, k: int, B: tuple, data_argnums: Any, *,
               suggest: bool = True) -> str:
    """The sentence errors about data dims end with: which arguments were taken as data
    and, when they were inferred and ``suggest``, how to say otherwise (not for an array
    computed in the function: naming other arguments as data would not fix it)."""
    if sum(any(hasattr(x, "shape") for x in ls) for ls, _ in leaves_per_arg) < 2:
        return ""  # one array argument: nothing to choose
    taken = [i for i, flags in enumerate(is_data) if any(flags)]
    text = (f". batch_ndim={k} took argument(s) {', '.join(map(str, taken))} as data (leading "
            f"dims {B})")
    if data_argnums is not None:
        return text + f", as data_argnums={data_argnums!r} says"
    cands = _data_candidates(leaves_per_arg, is_data, k)
    text += ", the arguments whose leading dims match the first array argument's"
    if cands and suggest:
        text += (f"; if the data are argument(s) {', '.join(map(str, cands))}, say so with "
                 f"data_argnums={_tuple_text(cands)}")
    return text


def _suggested(leaves_per_arg: list, is_data: list, k: int, data_argnums: Any) -> Any:
    """``bind(leaves per argument)``: the ids of the array leaves of the arguments that
    the hint's ``data_argnums=`` names (none when ``data_argnums`` was given), for one
    call of the function with those leaves: an error about such an array may suggest
    taking them as data, one about another array may not."""
    cands = [] if data_argnums is not None else _data_candidates(leaves_per_arg, is_data, k)

    def bind(leaves: list) -> frozenset:
        return frozenset(id(x) for i in cands for x in leaves[i] if hasattr(x, "shape"))

    return bind


def _unmatched(leaves_per_arg: list, is_data: list, k: int, B: tuple, data_argnums: Any) -> Any:
    """``bind(leaves per argument)``: the ``unmatched(x, op)`` hook of the data trace for
    one call of the function with those leaves, the error text when ``x`` is an argument
    leaf not taken as data whose leading dims do not broadcast against the data dims ``B``
    (two batches of different sizes, or a shared argument of the wrong shape); ``None``
    for any other array (one computed in the function: the data view words that itself)."""
    labels: dict = {}  # (argument, leaf) -> how the message names it
    for i, ((ls, _), flags) in enumerate(zip(leaves_per_arg, is_data)):
        for j, (x, d) in enumerate(zip(ls, flags)):
            if d or not hasattr(x, "shape") or x.ndim < k:
                continue
            if any(h not in (1, b) for h, b in zip(tuple(x.shape[:k]), B)):
                labels[i, j] = f"argument {i}" if len(ls) == 1 else f"argument {i} (leaf {j})"
    taken = [i for i, flags in enumerate(is_data) if any(flags)]
    data = (f"argument {taken[0]}" if len(taken) == 1 else
            f"arguments {', '.join(map(str, taken))}")
    how = ("as data_argnums says" if data_argnums is not None else
           "the arguments whose leading dims match the first array argument's")

    def bind(leaves: list) -> Any:
        by_id = {id(leaves[i][j]): label for (i, j), label in labels.items()}

        def unmatched(x: Any, op: str) -> str | None:
            label = by_id.get(id(x))
            if label is None:
                return None
            shape = tuple(x.shape)
            head = shape[:k]
            sizes = (f"{B[0]} and {head[0]}" if k == 1 else f"{B} and {head}")
            return (f"'{op}' combines the data ({data}: {how}), whose leading dims are {B}, with "
                    f"{label} of shape {shape}, whose leading dims are {head}: the data (batch) "
                    f"sizes differ ({sizes}). With batch_ndim={k} {label} was taken as shared by "
                    f"every sample, and its shape does not broadcast against one sample. If "
                    f"{label} is data too, pass arrays with the same leading dims {B}; if it is "
                    f"shared (a weight), give it a shape that broadcasts against one sample; "
                    f"data_argnums= says which arguments carry the data dims")

        return unmatched

    return bind
