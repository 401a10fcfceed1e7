"""Public transformations, written as compositions of the interpreters:
``jacfwd = vmap(jvp)``, ``jacrev = vmap(vjp)``, ``hessian = jacfwd(jacrev)``, and
``batch_ndim=k`` = vmap over the data dims of the per-sample derivative, with
the user's batched code seen through the data view.  The Jacobians are computed by
the engine (:mod:`.engine`); each transform here is a short composition.

Layer: transforms (the top of ``xpdiff.transforms``).  May import: ``.engine``,
``.args``, ``.chunking``, ``xpdiff.namespaces`` and everything below it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from ..core import Zero, check_same_backend, instantiate, namespace_for_values
from ..core import tree as _tree
from ..interpreters.batching import vmap_call
from ..interpreters.forward import jvp_call
from ..interpreters.reverse import vjp_call
from . import chunking as _chunking
from . import engine
from .args import (
    ArgNums,
    _argnums,
    _as_array,
    _check_complex_inputs,
    _check_complex_outputs,
    _check_cotangents,
    _check_float,
    _constants,
    _device_scope,
    _FlatFun,
    _is_complex,
    _labelled,
)
from .engine import _concat0

# --- lazy arrays: a registration slot filled by the scale-out layer ------------------------

# Handlers for lazy, chunked arrays (Dask), registered at import by xpdiff.scaleout (the
# transforms never import it).  Each is called as ``handler(fname, f, options, args)`` before a
# transform runs and returns NotImplemented unless an argument is one of its arrays.
LAZY_HANDLERS: list[Callable] = []


def _lazy(fname: str, f: Callable, options: dict, args: tuple) -> Any:
    """The lazy result of ``fname`` when an argument is a lazy array, else NotImplemented."""
    for handler in LAZY_HANDLERS:
        out = handler(fname, f, options, args)
        if out is not NotImplemented:
            return out
    return NotImplemented


def _lazy_aware(fname: str, f: Callable, options: dict, run: Callable) -> Callable:
    @wraps(f)
    def call(*args: Any) -> Any:
        out = _lazy(fname, f, options, args)
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

    Complex numbers (docs/complex.md): any dtypes, no ``holomorphic=``.  A complex
    primal takes a complex tangent ``dz``, and ``out_tangent`` is the derivative
    along ``dz`` as a real direction, ``lim (f(z + h dz) - f(z)) / h`` for real
    ``h``: ``f'(z) dz`` for a holomorphic ``f``, ``du + i dv`` for a complex output
    ``u + iv`` of real inputs.

    >>> import numpy as np, xpdiff as xd
    >>> xd.jvp(lambda x: x * x, (np.array([3.0]),), (np.array([1.0]),))
    (array([9.]), array([6.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (or lists) of arguments")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: got {len(primals)} primals but {len(tangents)} tangents; pass one "
                         f"tangent per primal")
    out = _lazy("jvp", f, {}, (tuple(primals), tuple(tangents)))
    if out is not NotImplemented:
        return out
    flat = _FlatFun(f, tuple(primals), tuple(range(len(primals))), False, "jvp")
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

    The cotangent has ``out``'s pytree structure, and each leaf its output's shape
    and dtype, as in JAX: no broadcasting, no casting (a ``float32`` cotangent of a
    ``float64`` output raises too; a complex one of a real output would lose its
    imaginary part); a Python number stands for a 0-d array of its output's dtype,
    and the cotangent of an integer or boolean output is not used (any dtype).
    Anything else raises ``ValueError`` naming the output (``out['b'][1]``), what
    was given and what was expected; another backend or device raises as for the
    arguments.  Only shapes and dtypes are compared: no device sync.

    Complex numbers (docs/complex.md): any dtypes, no ``holomorphic=``.
    ``vjp_fn`` is the transpose of :func:`jvp` for the real pairing
    ``<a, b> = real(sum(a * b))``, without conjugation, as in JAX: ``g * f'(z)``
    for a holomorphic ``f``, a real cotangent for a real primal, and for a real
    scalar output with ``g = 1`` the gradient ``df/dx - i df/dy`` of :func:`grad`.

    >>> import numpy as np, xpdiff as xd
    >>> out, f_vjp = xd.vjp(lambda x: x * x, np.array([3.0]))
    >>> f_vjp(np.array([1.0]))
    (array([6.]),)
    >>> f_vjp(np.array([1.0 + 1.0j]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: vjp: the cotangent of out has shape (1,) and dtype complex128, but out ...
    """
    out = _lazy("vjp", f, {"has_aux": has_aux}, primals)
    if out is not NotImplemented:
        return out
    flat = _FlatFun(f, primals, tuple(range(len(primals))), has_aux, "vjp")
    with _device_scope(primals):
        res, pullback = vjp_call(flat, flat.flat_in)
    outs, aux = flat.split(res)
    n_out = flat.n_out

    def vjp_fn(cotangent: Any) -> tuple:
        c_leaves = _check_cotangents("vjp", flat.out_def, outs, cotangent)
        with _device_scope(primals):
            cts = pullback(list(c_leaves) + [None] * (len(res) - n_out))
        cts = [instantiate(namespace_for_values([x]), c) for x, c in zip(flat.flat_in, cts)]
        return tuple(flat.pack_in(cts, single=False))

    out = _tree.unflatten(flat.out_def, outs)
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# --- grad ----------------------------------------------------------------------------------

def value_and_grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
                   holomorphic: bool = False) -> Callable:
    """``f``'s value and its gradient with respect to ``argnums`` (scalar output only).

    Same arguments as :func:`grad`.  Complex numbers (docs/complex.md): as
    :func:`grad`.

    >>> import numpy as np, xpdiff as xd
    >>> xd.value_and_grad(lambda x: xd.numpy.sum(x ** 2))(np.array([1.0, 2.0]))
    (array(5.), array([2., 4.]))
    """
    return _value_and_grad(f, argnums, has_aux, "value_and_grad", holomorphic)


def _value_and_grad(f: Callable, argnums: ArgNums, has_aux: bool, fname: str,
                    holomorphic: bool) -> Callable:
    @wraps(f)
    def vg(*args: Any) -> Any:
        nums, single = _argnums(argnums, len(args), fname)
        flat = _FlatFun(f, args, nums, has_aux, fname)
        _check_complex_inputs(fname, flat.in_labels, flat.flat_in, holomorphic=holomorphic,
                             real=False)
        res, pullback = vjp_call(flat, flat.flat_in)
        outs, aux = flat.split(res)
        if len(outs) != 1 or tuple(outs[0].shape) != ():
            shape = tuple(outs[0].shape) if len(outs) == 1 else f"a pytree of {len(outs)} arrays"
            raise TypeError(f"{fname}: f must return a scalar (an array of shape ()), got {shape}; "
                            f"for non-scalar outputs use jacrev, or jacobian(f, batch_ndim=k) for "
                            f"per-sample derivatives")
        out = outs[0]
        _check_float(out, fname, "the output of f")
        xp = namespace_for_values([out])
        if holomorphic:
            _check_complex_outputs(fname, [out], holomorphic=True, real=False)
        elif _is_complex(out):
            raise TypeError(f"{fname}: f returned a complex scalar ({out.dtype}); {fname} requires a "
                            f"real-valued output (taking its real part silently would be wrong for "
                            f"most uses). If f is holomorphic (complex-differentiable, like z * z), "
                            f"pass holomorphic=True for f'(z); otherwise differentiate a real "
                            f"function of it, e.g. xp.real(y) or xp.abs(y) ** 2, or use xpdiff.vjp "
                            f"directly")
        cts = pullback([xp.ones_like(out)] + [None] * (len(res) - 1))
        cts = [instantiate(namespace_for_values([x]), c) for x, c in zip(flat.flat_in, cts)]
        g = flat.pack_in(cts, single)
        return ((out, aux), g) if has_aux else (out, g)

    return _lazy_aware(fname, f, dict(argnums=argnums, has_aux=has_aux, holomorphic=holomorphic), vg)


def grad(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
         holomorphic: bool = False) -> Callable:
    """The gradient of a scalar-valued ``f`` with respect to ``argnums``.

    Args:
        f: a function returning a real scalar (an array of shape ``()``).
        argnums: int or tuple of ints, the arguments to differentiate.
        has_aux: ``f`` returns ``(out, aux)``; then ``(gradient, aux)`` is returned.
        holomorphic: ``f`` is holomorphic (complex-differentiable): its inputs and
            its output are complex, and the result is ``f'(z)``.

    Complex numbers (docs/complex.md), JAX's convention: for a real ``f`` of a
    complex ``z = x + iy`` the gradient is ``df/dx - i df/dy``, the conjugate of
    the steepest-ascent direction (step with ``z - lr * conj(g)``). A complex
    output is refused unless ``holomorphic=True``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sum(x ** 3))(np.array([1.0, 2.0]))
    array([ 3., 12.])
    >>> xd.grad(lambda z: xd.numpy.abs(z) ** 2)(np.asarray(3.0 + 4.0j))  # 2 conj(z)
    array(6.-8.j)
    >>> xd.grad(lambda z: z ** 2, holomorphic=True)(np.asarray(3.0 + 4.0j))  # 2 z
    array(6.+8.j)
    """
    vg = _value_and_grad(f, argnums, has_aux, "grad", holomorphic)

    @wraps(f)
    def g(*args: Any) -> Any:
        (_, aux), gr = vg(*args) if has_aux else ((None, None), vg(*args)[1])
        return (gr, aux) if has_aux else gr

    return g


# --- Jacobians: the engine (transforms.engine) behind short compositions ---------------------

def _jacobian_transform(f: Callable, mode: str, fname: str, argnums: ArgNums, has_aux: bool,
                        **kw: Any) -> Callable:
    if not isinstance(kw["holomorphic"], bool):
        raise TypeError(f"{fname}: holomorphic must be True or False, got {kw['holomorphic']!r}")
    run = engine.transform(f, argnums, has_aux, mode=mode, fname=fname, **kw)
    options = dict(argnums=argnums, **kw)  # what the lazy-array handler passes on
    if fname != "hessian":
        options["has_aux"] = has_aux
    if fname == "jacobian":
        options["mode"] = mode
    return _lazy_aware(fname, f, options, lambda *args: run(*args).value)


def _jac_api(mode: str, fname: str) -> Callable:
    def transform(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
                  batch_ndim: int = 0, chunk_size: int | None = None,
                  max_memory: int | None = None,
                  data_argnums: int | Sequence[int] | None = None,
                  holomorphic: bool = False) -> Callable:
        return _jacobian_transform(f, mode, fname, argnums, has_aux, batch_ndim=batch_ndim,
                                   chunk_size=chunk_size, max_memory=max_memory,
                                   data_argnums=data_argnums, holomorphic=holomorphic)

    return transform


jacfwd = _jac_api("fwd", "jacfwd")
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
    holomorphic: ``f`` is holomorphic (complex-differentiable): every input and
        output is complex, and the result is the complex Jacobian ``df/dz``.

Returns:
    The Jacobian (``Y + X`` without data dims), as a pytree like ``f``'s output.

Complex numbers (docs/complex.md): the inputs must be real (a real ``f`` of
real inputs, or a complex output ``u + iv`` of real inputs, whose Jacobian is
``du/dx + i dv/dx``) unless ``holomorphic=True``; complex inputs raise
``TypeError``.

>>> import numpy as np, xpdiff as xd
>>> xd.jacfwd(lambda x: x ** 2, batch_ndim=1)(np.ones((2, 3))).shape
(2, 3, 3)
>>> xd.jacfwd(lambda z: z ** 2, holomorphic=True)(np.array([1.0 + 2.0j]))
array([[2.+4.j]])
"""
jacrev = _jac_api("rev", "jacrev")
jacrev.__name__ = jacrev.__qualname__ = "jacrev"
jacrev.__doc__ = """Jacobian of ``f`` by reverse mode: one forward pass, one vectorised
backward pass over a cotangent basis.  Same arguments and layout as :func:`jacfwd`.

Complex numbers (docs/complex.md): the outputs must be real unless
``holomorphic=True``; a complex input ``z = x + iy`` gives
``df_k/dx - i df_k/dy`` for each output element ``f_k`` (the convention of
:func:`grad`).

>>> import numpy as np, xpdiff as xd
>>> xd.jacrev(lambda x: x ** 2)(np.array([1.0, 2.0]))
array([[2., 0.],
       [0., 4.]])
"""


def jacobian(f: Callable, argnums: ArgNums = 0, has_aux: bool = False, *, batch_ndim: int = 0,
             mode: str = "auto", chunk_size: int | None = None, max_memory: int | None = None,
             data_argnums: int | Sequence[int] | None = None,
             holomorphic: bool = False) -> Callable:
    """Jacobian of ``f``: forward or reverse mode (``mode="fwd"|"rev"|"auto"``).

    ``"auto"`` runs the reverse-mode forward pass first (it gives the output size),
    then runs forward mode when the per-sample input is no larger than the
    per-sample output (a forward pass per input element against a backward sweep
    per output element; forward mode also keeps elementwise structure symbolic),
    else sweeps the recorded tape.  See
    :func:`jacfwd` for the arguments and the layout.

    Complex numbers (docs/complex.md): the mode never changes the answer.  With
    ``holomorphic=True`` inputs and outputs are complex and both modes give
    ``df/dz``; otherwise ``"auto"`` takes reverse mode for complex inputs (real
    outputs: :func:`jacrev`'s convention) and forward mode for complex outputs
    (real inputs: :func:`jacfwd`'s), and refuses complex inputs and outputs together.

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
              data_argnums=data_argnums, holomorphic=holomorphic)
    if mode == "fwd":
        return jacfwd(f, argnums, has_aux, **kw)
    if mode == "rev":
        return jacrev(f, argnums, has_aux, **kw)

    return _jacobian_transform(f, "auto", "jacobian", argnums, has_aux, **kw)


def auto_mode(f: Callable, args: tuple, argnums: ArgNums = 0, has_aux: bool = False,
              batch_ndim: int = 0, data_argnums: Any = None) -> str:
    """The mode (``"fwd"`` or ``"rev"``) ``jacobian(mode="auto")`` takes for ``f`` at
    ``args`` (it computes the Jacobian once and returns the mode that computed it)."""
    return engine.transform(f, argnums, has_aux, mode="auto", fname="jacobian",
                            batch_ndim=batch_ndim, data_argnums=data_argnums)(*args).mode


def hessian(f: Callable, argnums: ArgNums = 0, *, batch_ndim: int = 0,
            chunk_size: int | None = None, max_memory: int | None = None,
            data_argnums: int | Sequence[int] | None = None,
            holomorphic: bool = False) -> Callable:
    """Hessian of a scalar-valued ``f`` (forward-over-reverse).

    With ``batch_ndim=k``, ``f`` returns shape ``B`` (one scalar per sample) and the
    result has shape ``B + X + X``.

    Complex numbers (docs/complex.md): inputs and output must be real unless
    ``holomorphic=True`` (then both are complex and the result is ``f''(z)``), as
    for ``jacfwd(jacrev(f))``.

    >>> import numpy as np, xpdiff as xd
    >>> xd.hessian(lambda x: xd.numpy.sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    return _jacobian_transform(f, "hessian", "hessian", argnums, False, batch_ndim=batch_ndim,
                               chunk_size=chunk_size, max_memory=max_memory,
                               data_argnums=data_argnums, holomorphic=holomorphic)


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

    Complex numbers (docs/complex.md): complex arrays are mapped like real ones;
    vmap adds no convention of its own, so ``vmap(grad(f))`` follows :func:`grad`
    (and raises where :func:`grad` raises) for every example.

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
        labels = [label for label, _ in _labelled(args)]
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
                size, first = n, (labels[j], ax)
            elif n != size:
                raise ValueError(f"vmap: {first[0]} has size {size} along its mapped axis "
                                 f"{first[1]}, but {labels[j]} has size {n} along axis {ax}; every "
                                 f"mapped argument must have the same size there (one entry per "
                                 f"example). Pass arrays with the same number of examples, or "
                                 f"in_axes=None for an argument shared by every example")
            vals.append(x if ax == 0 else namespace_for_values([x]).moveaxis(x, ax, 0))
            batched.append(True)
        if size is None:
            raise ValueError("vmap: in_axes maps no argument; at least one must be mapped")
        out_def = []

        def flat_f(*xs):
            return _tree.flatten_into(f(*_tree.unflatten(tdef, [_constants(x) for x in xs])), out_def)

        def run(s, e):
            v = [x[s:e, ...] if b and (s, e) != (0, size) else x for x, b in zip(vals, batched)]
            outs, ob = vmap_call(flat_f, v, batched, e - s)
            return [o if b else namespace_for_values([o]).broadcast_to(o, (e - s,) + tuple(o.shape))
                    for o, b in zip(outs, ob)]

        like = next(x for x, b in zip(vals, batched) if b)
        budget = None if max_memory is None else _chunking.budget(like, max_memory)
        parts = _chunking.run_chunks(size, run, chunk_size, budget, 0)
        outs = [_concat0([p[j] for p in parts]) for j in range(len(parts[0]))]
        od = out_def[-1]
        oax = _tree.broadcast_prefix(out_axes, _tree.unflatten(od, outs), "vmap(out_axes)")
        res = []
        for o, ax in zip(outs, oax):
            if ax is None:
                raise ValueError("vmap: out_axes=None is only valid for outputs that are not "
                                 "mapped; xpdiff always maps outputs, use an int")
            if not -o.ndim <= ax < o.ndim:
                raise ValueError(f"vmap: out_axes={ax} is out of range for an output of rank "
                                 f"{o.ndim} (the mapped axis included, shape {tuple(o.shape)}); pass "
                                 f"an axis between {-o.ndim} and {o.ndim - 1}")
            if ax % o.ndim != 0:
                o = namespace_for_values([o]).moveaxis(o, 0, ax)
            res.append(o)
        return _tree.unflatten(od, res)

    return _lazy_aware("vmap", f, dict(in_axes=in_axes, out_axes=out_axes, chunk_size=chunk_size,
                                       max_memory=max_memory), vf)


__all__ = ["grad", "hessian", "jacfwd", "jacobian", "jacrev", "jvp", "value_and_grad", "vjp",
           "vmap"]
