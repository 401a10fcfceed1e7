"""The transforms on Dask arrays: one in-memory engine run per data chunk.

Layer: scale-out, above the transforms; imports the public transforms and the
pytree helpers below them.  Loaded only once a Dask array exists (see
:mod:`xpdiff.scaleout`); importing it without Dask raises an ImportError that names
the ``xpdiff[dask]`` extra.

Every call builds a graph at once, without computing real data:

1. The arguments' leaves are sorted into *data* leaves (the first ``k`` dims are
   the data dims ``B``, the in-memory engine's rule applied to the whole arrays)
   and *shared* ones (weights, constants).  Data leaves keep their chunks along
   ``B``; their differentiation dims are merged into one chunk (a
   :class:`RechunkWarning`, once per layout, states the cost).  Shared leaves enter
   the graph once, as a single ``dask.delayed`` value every task depends on.
2. The in-memory transform runs on a stand-in block of one sample built with the
   Dask array's meta namespace (NumPy, CuPy, ...): that gives the output
   shapes and dtypes and raises ``MixingError`` for an operation that mixes
   samples, before any task runs.
3. ``dask.array.blockwise`` maps the same in-memory transform over the data
   chunks: one task per chunk, output chunks equal to the input's along ``B``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from .layout import INSTALL_HINT

try:
    import dask
    import dask.array as da
    from dask.array.utils import meta_from_array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as e:  # only reached when Dask is missing: name the extra
    raise ImportError(f"xpdiff's Dask support needs Dask and distributed: {INSTALL_HINT}") from e

import array_api_compat
import numpy as np

from .. import core as _core
from ..core import MixingError
from ..core import tree as _tree
from ..transforms import api as _api
from ..transforms import args as _args
from .layout import Layout, RechunkWarning, check_block, check_per_sample, total_loss

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WARNED: set = set()
_WARNED_LOCK = threading.Lock()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _merge(x: da.Array, dims: tuple, fname: str, what: str, k: int, kind: str) -> da.Array:
    """``x`` with ``dims`` in one chunk each; warns once per layout, with the cost."""
    split = tuple(d for d in dims if len(x.chunks[d]) > 1)
    if not split:
        return x
    key = (fname, tuple(x.shape), x.chunks, split)
    with _WARNED_LOCK:
        first = key not in _WARNED
        _WARNED.add(key)
    if first:
        item = x.dtype.itemsize
        before = math.prod(max(c) for c in x.chunks) * item
        merged = tuple(x.shape[d] if d in split else max(x.chunks[d]) for d in range(x.ndim))
        after = math.prod(merged) * item
        per = "per data chunk" if k else "in one task"
        warnings.warn(
            f"{fname}: {what} (shape {tuple(x.shape)}) has its {kind} {split} split over "
            f"{math.prod(len(x.chunks[d]) for d in split)} chunks; they are merged into one chunk "
            f"{per} (a rechunk: chunks of up to {_human(after)} instead of {_human(before)}, the "
            f"array moved once). Rechunk it yourself, x.rechunk({{{', '.join(f'{d}: -1' for d in split)}}}), "
            f"to choose where that happens.", RechunkWarning, stacklevel=_user_stacklevel())
    return x.rechunk({d: -1 for d in split})


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside xpdiff (the user's line)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _standin(x: Any, k: int) -> Any:
    """A one-sample block (all of ``x`` when ``k == 0``) of ``x``'s dtype, in its meta's namespace."""
    shape = (1,) * k + tuple(x.shape[k:])
    if not isinstance(x, da.Array):
        return x[(slice(0, 1),) * k] if k else x
    xp = array_api_compat.array_namespace(x._meta)
    if xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return xp.full(shape, 0.5, dtype=x.dtype)
    return xp.ones(shape, dtype=x.dtype)


def _unnest(b: Any) -> Any:
    while isinstance(b, list):
        (b,) = b
    return b


@contextlib.contextmanager
def _on_standin() -> Iterator[None]:
    """A ``MixingError`` of the stand-in run says where it was found (its data dims are 1s)."""
    try:
        yield
    except MixingError as e:
        raise MixingError(f"{e} (found while building the Dask graph, on a stand-in block of one "
                          f"sample; no task has run)") from e


def _block(spec: tuple, packed: tuple, *blocks: Any) -> Any:
    """One task: the leaves of this chunk, the shared leaves, the in-memory transform."""
    is_data, single = spec
    run, shared = packed
    # each data leaf is one chunk along its differentiation dims: blockwise hands it over as
    # nested one-element lists (concatenate=False: no concatenation call on any chunk type)
    blocks = tuple(_unnest(b) for b in blocks)
    it_shared, it_blocks = iter(shared), iter(blocks)
    leaves = [next(it_blocks) if d else next(it_shared) for d in is_data]
    out = _tree.flatten(run(leaves))[0]
    return out[0] if single else tuple(out)


def _call(fname: str, run: Callable, args: tuple, leaves: list, is_data: list, k: int,
          reduced: Callable[[int], bool] = lambda i: False, labels: list | None = None
          ) -> tuple[list, Any]:
    """The lazy outputs (leaves, treedef) of ``run(leaves)`` mapped over the data chunks.

    ``reduced(i)``: output leaf ``i`` has one element per chunk along the data dims
    (a partial sum to be reduced), not the chunk's samples.  ``args`` only names the leaves
    (``labels``, when given, names them instead).
    """
    if labels is None:
        labels = [label for label, _ in _api._labelled(args)]
    if k == 0:
        is_data = [False] * len(leaves)
    data = []
    ref = next((x for x, d in zip(leaves, is_data) if d and isinstance(x, da.Array)), None)
    for j, (x, d) in enumerate(zip(leaves, is_data)):
        if not d:
            continue
        if not isinstance(x, da.Array):  # an in-memory data leaf: chunked like the Dask ones
            chunks = (ref.chunks[:k] if ref is not None else tuple(x.shape[:k])) + tuple(x.shape[k:])
            x = da.from_array(x, chunks=chunks)
        data.append(_merge(x, tuple(range(k, x.ndim)), fname, labels[j], k,
                           "per-example dims" if fname == "vmap" else "differentiation dims"))
    shared = []
    for j, (x, d) in enumerate(zip(leaves, is_data)):
        if d:
            continue
        if isinstance(x, da.Array):
            x = _merge(x, tuple(range(x.ndim)), fname, labels[j], 0, "dims")
        shared.append(x)

    # stand-in run: shapes, dtypes, MixingError -- before any task exists
    with _on_standin():
        out = run([_standin(x, k if d else 0) for x, d in zip(leaves, is_data)])
    out_leaves, out_def = _tree.flatten(out)
    for y in out_leaves:
        if not hasattr(y, "shape") or y.ndim < k:
            raise TypeError(f"{fname}: on Dask arrays every output must be an array keeping the {k} data "
                            f"dims first, got {type(y).__name__}")
    metas = [meta_from_array(y, ndim=y.ndim) for y in out_leaves]

    compile_blocks = _core.BLOCK_COMPILER.get()  # under xd.jit: each task replays a program
    if compile_blocks is not None:
        run = compile_blocks(run)
    packed = dask.delayed((run, shared), pure=False)  # shared arguments: once in the graph
    single = len(out_leaves) == 1
    spec = (tuple(is_data), single)
    token = tokenize(fname, packed.key, *(x.name for x in data))
    name = f"xpdiff-{fname}-{token}"

    if k == 0:  # no data dims: one task on the whole arrays
        d = dask.delayed(_block, pure=True)(spec, packed, dask_key_name=name)
        parts = [d] if single else [d[i] for i in range(len(out_leaves))]
        return [da.from_delayed(p, tuple(y.shape), meta=m) for p, y, m in
                zip(parts, out_leaves, metas)], out_def

    bind = tuple(f"b{i}" for i in range(k))
    pairs: list = []
    for j, x in enumerate(data):
        pairs += [x, bind + tuple(f"x{j}_{m}" for m in range(x.ndim - k))]

    def layout(i: int, y: Any) -> tuple:
        new = tuple(f"y{i}_{m}" for m in range(y.ndim - k))
        adjust = {b: 1 for b in bind} if reduced(i) else None
        return bind + new, dict(zip(new, y.shape[k:])), adjust

    if single:
        ind, new_axes, adjust = layout(0, out_leaves[0])
        res = da.blockwise(_block, ind, spec, None, packed, None, *pairs, new_axes=new_axes,
                           adjust_chunks=adjust, meta=metas[0], name=name, concatenate=False)
        return [res], out_def
    tup = da.blockwise(_block, bind, spec, None, packed, None, *pairs,
                       meta=np.empty((0,) * k, dtype=object), name=name, concatenate=False)
    res = []
    for i, (y, m) in enumerate(zip(out_leaves, metas)):
        ind, new_axes, adjust = layout(i, y)
        res.append(da.blockwise(operator.getitem, ind, tup, bind, i, None, new_axes=new_axes,
                                adjust_chunks=adjust, meta=m, name=f"getitem-{i}-{token}"))
    return res, out_def


# --- the transforms --------------------------------------------------------------------------

def _run_transform(fname: str, f: Callable, options: dict, treedef: Any, check: Any,
                   leaves: list) -> Any:
    args = _tree.unflatten(treedef, leaves)
    if check is not None:
        check(args)
    return getattr(_api, fname)(f, **options)(*args)


def _run_vmap(f: Callable, treedef: Any, mapped: tuple, options: dict, leaves: list) -> Any:
    def flat_f(*xs: Any) -> Any:
        return f(*_tree.unflatten(treedef, list(xs)))

    return _api.vmap(flat_f, in_axes=tuple(0 if m else None for m in mapped), out_axes=0,
                     **options)(*leaves)


def transform(fname: str, f: Callable, options: dict, args: tuple) -> Any:
    """``fname`` (a public transform's name) of ``f`` with ``options`` at ``args``, some of
    which are Dask arrays: the lazy result (see the module's docstring)."""
    if fname in ("grad", "value_and_grad"):
        j = next(i for i, a in enumerate(args) if any(isinstance(x, da.Array)
                                                      for x in _tree.flatten(a)[0]))
        raise TypeError(
            f"grad/value_and_grad: argument {j} is a Dask array, and a loss over it need not split over "
            f"its chunks. Write the loss per sample (one value per sample, batched code) and use "
            f"xd.scaleout.value_and_grad(per_sample_loss, reduce='sum' or 'mean', batch_ndim=k) or "
            f"xd.scaleout.grad(...): each chunk's gradient is one task, added by a tree reduction")
    if fname == "vmap":
        return _vmap(f, options, args)
    if fname == "jvp":
        return _jvp(f, *args)
    if fname == "vjp":
        return _vjp(f, args, options["has_aux"])
    k = options["batch_ndim"]
    nums = _args._argnums(options["argnums"], len(args), fname)[0]
    if k:
        lay = Layout(args, k, options["data_argnums"], nums, fname)
        leaves, treedef, is_data = lay.leaves, lay.treedef, lay.is_data
        check = None if lay.block_dn is not None else partial(check_block, k=k, nums=nums, fname=fname,
                                                              is_data=tuple(is_data))
        options = dict(options, data_argnums=lay.block_dn)
    else:
        leaves, treedef = _tree.flatten(args)
        is_data, check = [False] * len(leaves), None
    run = partial(_run_transform, fname, f, options, treedef, check)
    out, out_def = _call(fname, run, args, leaves, is_data, k)
    return _tree.unflatten(out_def, out)


def _run_jvp(f: Callable, treedef: Any, leaves: list) -> Any:
    primals, tangents = _tree.unflatten(treedef, leaves)
    return _api.jvp(f, primals, tangents)


def _jvp(f: Callable, primals: tuple, tangents: tuple) -> Any:
    """``jvp`` on Dask arguments: one task on the whole arrays (``jvp`` has no data dims)."""
    leaves, treedef = _tree.flatten((primals, tangents))
    labels = [label for label, _ in _api._labelled(primals, "primal") + _api._labelled(tangents, "tangent")]
    out, out_def = _call("jvp", partial(_run_jvp, f, treedef), (), leaves, [False] * len(leaves), 0,
                         labels=labels)
    return _tree.unflatten(out_def, out)


def _run_vjp(f: Callable, treedef: Any, has_aux: bool, leaves: list) -> Any:
    primals, cotangent = _tree.unflatten(treedef, leaves)
    res = _api.vjp(f, *primals, has_aux=has_aux)
    if cotangent is None:  # the forward pass: the outputs (and aux)
        return (res[0], res[2]) if has_aux else res[0]
    return res[1](cotangent)


def _vjp(f: Callable, primals: tuple, has_aux: bool) -> tuple:
    """``vjp`` on Dask arguments: the outputs are one task on the whole arrays, and each call
    of the pullback one more task, which runs the forward pass again (a graph keeps no
    in-memory residuals between computations)."""
    leaves, treedef = _tree.flatten((primals, None))
    res, res_def = _call("vjp", partial(_run_vjp, f, treedef, has_aux), (), leaves,
                         [False] * len(leaves), 0,
                         labels=[label for label, _ in _api._labelled(primals, "primal")])
    res = _tree.unflatten(res_def, res)
    out, aux = res if has_aux else (res, None)
    out_leaves, out_def = _tree.flatten(out)

    def vjp_fn(cotangent: Any) -> tuple:
        c_leaves = _api._check_cotangents("vjp", out_def, out_leaves, cotangent, same_backend=False)
        args = (primals, _tree.unflatten(out_def, c_leaves))
        p_leaves, p_def = _tree.flatten(args)
        labels = [label for label, _ in _api._labelled(primals, "primal")]
        labels += (["the cotangent"] if len(c_leaves) == 1 else
                   [f"the cotangent (leaf {j})" for j in range(len(c_leaves))])
        cts, cts_def = _call("vjp", partial(_run_vjp, f, p_def, has_aux), (), p_leaves,
                             [False] * len(p_leaves), 0, labels=labels)
        return _tree.unflatten(cts_def, cts)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _vmap(f: Callable, options: dict, args: tuple) -> Any:
    axes = _tree.broadcast_prefix(options["in_axes"], args, "vmap(in_axes)")
    leaves, treedef = _tree.flatten(args)
    moved, mapped = [], []
    for x, ax in zip(leaves, axes):
        mapped.append(ax is not None)
        if ax is None:
            moved.append(x)
            continue
        if not hasattr(x, "shape") or not -x.ndim <= ax < x.ndim:
            raise ValueError(f"vmap: in_axes={ax} does not fit an argument leaf "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(x, da.Array):
            x = da.from_array(x, chunks=tuple(x.shape))
        moved.append(da.moveaxis(x, ax, 0))
    sizes = {x.shape[0] for x, m in zip(moved, mapped) if m}
    if len(sizes) != 1:
        raise ValueError("vmap: in_axes maps no argument, or mapped axes of different sizes; all mapped "
                         "arguments must share the mapped size")
    opts = {key: options[key] for key in ("chunk_size", "max_memory")}
    run = partial(_run_vmap, f, treedef, tuple(mapped), opts)
    out, out_def = _call("vmap", run, args, moved, mapped, 1)
    oax = _tree.broadcast_prefix(options["out_axes"], _tree.unflatten(out_def, out), "vmap(out_axes)")
    res = []
    for o, ax in zip(out, oax):
        if ax is None:
            raise ValueError("vmap: out_axes=None is only valid for outputs that are not mapped; "
                             "xpdiff always maps outputs, use an int")
        res.append(o if ax % o.ndim == 0 else da.moveaxis(o, 0, ax))
    return _tree.unflatten(out_def, res)


# --- gradients of sums and means over the data --------------------------------------------

def _run_grad(f: Callable, treedef: Any, argnums: Any, has_aux: bool, reduce: str, k: int, n: int,
              shared_grad: tuple, check: Any, leaves: list) -> Any:
    args = _tree.unflatten(treedef, leaves)
    if check is not None:
        check(args)
    vg = _api.value_and_grad(total_loss(f, has_aux, reduce, k, n), argnums, has_aux)(*args)
    (value, aux), g = vg if has_aux else ((vg[0], None), vg[1])
    xp = array_api_compat.array_namespace(value)
    g_leaves, g_def = _tree.flatten(g)
    g_leaves = [xp.reshape(x, (1,) * k + tuple(x.shape)) if s else x
                for x, s in zip(g_leaves, shared_grad)]
    return xp.reshape(value, (1,) * k), _tree.unflatten(g_def, g_leaves), aux


def _add(*blocks: Any) -> Any:
    return functools.reduce(operator.add, blocks)


def _add_last(shape: tuple, *blocks: Any) -> Any:
    total = _add(*blocks)
    return array_api_compat.array_namespace(total).reshape(total, shape)


def _tree_sum(x: da.Array, k: int, split_every: Any) -> da.Array:
    """The sum over the ``k`` data dims of ``x`` (one element per chunk along them, one
    chunk along the others), by a tree of additions of ``split_every`` blocks each.

    Written on the blocks' own namespace: ``da.sum`` builds NumPy dtypes and metas,
    which fails on chunks of other libraries (array-api-strict, where dtypes are not
    NumPy's).  Each level of the tree is one graph layer ``xpdiff-sum-<level>``.
    """
    if isinstance(split_every, dict):
        split_every = math.prod(split_every.get(d, 1) for d in range(k))
    fan_in = max(int(split_every or dask.config.get("split_every", 4)), 2)
    shape = tuple(x.shape[k:])
    keys = [key for key in _flat_keys(x.__dask_keys__())]
    token = tokenize(x.name, fan_in)
    layers, deps = dict(x.dask.layers), dict(x.dask.dependencies)
    prev, level = x.name, 0
    while True:
        last = len(keys) <= fan_in
        name = f"xpdiff-sum-{level}-{token}"
        layer = {}
        for j in range(0, len(keys), fan_in):
            group = keys[j:j + fan_in]
            if last:
                layer[(name,) + (0,) * len(shape)] = (_add_last, shape, *group)
            else:
                layer[(name, j // fan_in)] = (_add, *group)
        layers[name], deps[name] = layer, {prev}
        if last:
            break
        keys, prev, level = list(layer), name, level + 1
    hlg = HighLevelGraph(layers, deps)
    xp = array_api_compat.array_namespace(x._meta)
    meta = xp.empty((0,) * len(shape), dtype=x.dtype)
    return da.Array(hlg, name, chunks=tuple((n,) for n in shape), meta=meta)


def _flat_keys(keys: Any) -> Iterator[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from _flat_keys(k)
    else:
        yield keys


def value_and_grad(f: Callable, args: tuple, argnums: Any, has_aux: bool, reduce: str, k: int,
                   data_argnums: Any, split_every: int | None) -> Any:
    """:func:`xpdiff.scaleout.value_and_grad` on Dask arguments (lazy results)."""
    fname = "scaleout.value_and_grad"
    nums, single = _args._argnums(argnums, len(args), fname)
    lay = Layout(args, k, data_argnums, nums, fname)
    shared_grad = []
    for i in nums:
        start = sum(len(_tree.flatten(a)[0]) for a in args[:i])
        count = len(_tree.flatten(args[i])[0])
        shared_grad += [not d for d in lay.is_data[start:start + count]]
    check = None if lay.block_dn is not None else partial(check_block, k=k, nums=nums, fname=fname,
                                                          is_data=tuple(lay.is_data))
    # per-sample check on a one-sample stand-in: MixingError before any task runs
    standin = [_standin(x, k if d else 0) for x, d in zip(lay.leaves, lay.is_data)]
    with _on_standin():
        check_per_sample(f, _tree.unflatten(lay.treedef, standin), argnums, has_aux, lay, fname)

    run = partial(_run_grad, f, lay.treedef, argnums, has_aux, reduce, k, lay.n_samples,
                  tuple(shared_grad), check)
    ng = len(shared_grad)
    reduced = lambda i: i == 0 or (1 <= i <= ng and shared_grad[i - 1])  # noqa: E731
    out, out_def = _call(fname, run, args, lay.leaves, lay.is_data, k, reduced)
    out = [_tree_sum(x, k, split_every) if reduced(i) else x for i, x in enumerate(out)]
    value, g, aux = _tree.unflatten(out_def, out)
    return ((value, aux), g) if has_aux else (value, g)
