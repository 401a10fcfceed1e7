"""``jit``: trace a function once per key, replay the recorded backend program after.

The first call for a key (the arguments' tree structure, shapes, dtypes, backend
and device, and the static arguments) runs the function eagerly on the real inputs
with the staging level at the bottom of the interpreter stack (``.staging``); every
backend call is recorded.  The program is optimised (``.program``) and lowered for
the backend (``.lowering``); later calls with the key run the lowered program.
Guards recorded while tracing are checked during a replay; when one fails the
function is traced again and the variant cached beside the others (up to
``cache_size`` per key; past that it runs eagerly, with one warning).

Layer: transforms (a sibling of ``xpdiff.transforms``).  May import:
``xpdiff.namespaces`` and everything below it, and its own modules ``program`` <
``lowering``, ``staging``.
"""

from __future__ import annotations

import collections
import threading
import warnings
from collections.abc import Callable, Sequence
from functools import partial, update_wrapper
from typing import Any

from .. import core as _core
from ..backend import backend_name, device_of, is_array, is_lazy
from ..core import TRACER_TYPES, XpdiffError, new_main
from ..core import tree as _tree
from ..tracer import Tracer
from .lowering import Lowered, Retrace, _copy, lower
from .program import Program, Var, describe, optimize
from .staging import Recorder, StageTrace, stage_tracer

MAX_KEYS = 64  # argument signatures kept per jitted function (least recently used dropped)


class JitWarning(UserWarning):
    """A jitted function stopped being compiled (its guards kept failing)."""


class _Variant:
    __slots__ = ("program", "lowered", "out_def", "failures")

    def __init__(self, program: Program, lowered: Lowered, out_def: Any):
        self.program, self.lowered, self.out_def = program, lowered, out_def
        self.failures: collections.Counter = collections.Counter()


class Compiled:
    """What :meth:`Jitted.lower` returns: one traced variant, printable.

    ``str()`` lists the backend calls with their output shapes, the guards where
    they are checked and the fused groups; ``.source`` is the generated code,
    ``.n_calls`` the number of backend calls, ``.guards`` the guards,
    ``.kernels`` the generated fused kernels (CuPy)."""

    def __init__(self, variant: _Variant):
        self.program = variant.program
        self.source = variant.lowered.source
        self.groups = variant.lowered.groups
        self.kernels = variant.lowered.kernels
        self.backend = variant.lowered.backend
        self.n_calls = len(self.program.calls)
        self.guards = list(self.program.guards)

    def __str__(self) -> str:
        head = f"xpdiff.jit program for backend {self.backend}"
        return head + "\n" + describe(self.program, self.groups)

    __repr__ = __str__


_LAZY = object()  # _split's answer for a call with a lazy (Dask) argument


class Jitted:
    """A jitted function (see :func:`jit`)."""

    def __init__(self, fun: Callable, static_argnums: tuple[int, ...],
                 static_argnames: tuple[str, ...], cache_size: int):
        self.fun = fun
        self.static_argnums = static_argnums
        self.static_argnames = static_argnames
        self.cache_size = cache_size
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self._warned = False
        update_wrapper(self, fun)

    # --- the key ---------------------------------------------------------------------
    def _split(self, args: tuple, kwargs: dict) -> tuple[Any, list, Any, tuple] | None:
        """``(key, arrays, treedef, leaves)``; ``None`` when the call must run through
        (an argument is traced by an enclosing transformation, or one is active)."""
        if not kwargs and not self.static_argnums:
            # the common case: positional arrays only (a cheaper key, same for every path)
            spec = []
            for x in args:
                t = type(x)
                if t not in _ARRAY_TYPES:
                    break
                spec.append((t, x.shape, x.dtype, x.device))
            else:
                return tuple(spec), list(args), None, list(args)
        n = len(args)
        static = []
        for i in self.static_argnums:
            j = i if i >= 0 else i + n
            if not 0 <= j < n:
                raise ValueError(f"jit({_name(self.fun)}): static_argnums={self.static_argnums} "
                                 f"is out of range for a call with {n} positional argument(s); "
                                 f"pass indices between {-n} and {n - 1}")
            static.append((j, _static_value(args[j], f"positional argument {j}", self.fun)))
        snums = {j for j, _ in static}
        for k in self.static_argnames:
            if k in kwargs:
                static.append((k, _static_value(kwargs[k], f"argument {k!r}", self.fun)))
        dyn_args = tuple(None if i in snums else a for i, a in enumerate(args))
        dyn_kw = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        leaves, treedef = _tree.flatten((dyn_args, dyn_kw))
        spec = []
        arrays = []
        for x in leaves:
            t = type(x)
            if t in TRACER_TYPES:
                return None
            if is_lazy(x):
                return _LAZY
            if is_array(x):
                spec.append((t, tuple(x.shape), x.dtype, _device(x)))
                arrays.append(x)
            else:
                try:
                    hash(x)
                except TypeError:
                    raise TypeError(f"jit({_name(self.fun)}): an argument leaf of type "
                                    f"{t.__name__} is neither an array nor hashable; pass arrays, "
                                    f"or mark the argument static (static_argnums / "
                                    f"static_argnames) with a hashable value") from None
                spec.append((t, x))
        if (not kwargs and not static and len(leaves) == len(args) == len(arrays)
                and all(a is x for a, x in zip(args, leaves))):  # each argument an array itself
            return tuple(spec), arrays, None, leaves  # the key of the common case
        return (treedef, tuple(spec), tuple(static)), arrays, treedef, leaves

    # --- calling ---------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _core._STACK or _core.active_recorder() is not None:
            self._check_static(args, kwargs)
            return self.fun(*args, **kwargs)  # inside a transformation or a trace: inline
        split = self._split(args, kwargs)
        if split is None:
            return self.fun(*args, **kwargs)
        if split is _LAZY:
            return self._call_lazy(args, kwargs)
        key, arrays, treedef, leaves = split
        entry = self._cache.get(key)
        if entry is not None:
            for v in entry:
                try:
                    outs = v.lowered.run(*arrays)
                except Retrace as r:
                    v.failures[r.index] += 1
                    continue
                return _tree.unflatten(v.out_def, list(outs))
            if len(entry) >= self.cache_size:
                self._warn(entry)
                return self.fun(*args, **kwargs)
        out, variant = self._trace(args, kwargs, treedef, leaves)
        with self._lock:
            entry = self._cache.get(key)
            entry = [] if entry is None else list(entry)
            entry.append(variant)
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_KEYS:
                self._cache.popitem(last=False)
        return out

    def _call_lazy(self, args: tuple, kwargs: dict) -> Any:
        """Lazy (Dask) arguments: ``fun`` builds the graph as is, and every transform in it
        maps a compiled per-chunk run over the chunks (each task replays a program)."""
        token = _core.BLOCK_COMPILER.set(partial(jit, cache_size=self.cache_size))
        try:
            return self.fun(*args, **kwargs)
        finally:
            _core.BLOCK_COMPILER.reset(token)

    def __reduce__(self) -> tuple:
        # sent to other processes (Dask workers) without its cache and lock: a fresh one there
        return (Jitted, (self.fun, self.static_argnums, self.static_argnames, self.cache_size))

    def _trace(self, args: tuple, kwargs: dict, treedef: Any, leaves: list) -> tuple[Any, _Variant]:
        rec = Recorder()
        bk = None
        with new_main(StageTrace, recorder=rec) as main, _core.recording(rec):
            staged = []
            for x in leaves:
                if is_array(x):
                    if bk is None:
                        bk = backend_name(x)
                    rec.input(x)
                    staged.append(stage_tracer(main, x))
                else:
                    staged.append(x)
            if treedef is None:
                dyn_args, dyn_kw = tuple(staged), {}
            else:
                dyn_args, dyn_kw = _tree.unflatten(treedef, staged)
            call_args = [a if i not in self._static_positions(len(args)) else args[i]
                         for i, a in enumerate(dyn_args)]
            call_kw = dict(dyn_kw)
            call_kw.update({k: kwargs[k] for k in self.static_argnames if k in kwargs})
            out = self.fun(*call_args, **call_kw)
            out_leaves, out_def = _tree.flatten(out)
            raws = []
            for o in out_leaves:
                if isinstance(o, Tracer) and o._main is main:
                    raws.append(o._a)
                elif isinstance(o, Tracer):
                    raise XpdiffError(f"jit({_name(self.fun)}): the function returned a value "
                                      f"traced by a transformation that ended inside it")
                else:
                    raws.append(o)
            prog = rec.program(raws)
        prog = optimize(prog, rec.values)
        lowered = lower(prog, bk or "numpy")
        # a folded output is held by the program: the caller gets a copy (as on replays)
        raws = [_copy(r) if type(o) is Var and o.n in prog.copy_outputs else r
                for r, o in zip(raws, prog.outputs)]
        return _tree.unflatten(out_def, raws), _Variant(prog, lowered, out_def)

    def _check_static(self, args: tuple, kwargs: dict) -> None:
        for i in self.static_argnums:
            if -len(args) <= i < len(args):
                _static_value(args[i], f"positional argument {i % len(args)}", self.fun)
        for k in self.static_argnames:
            if k in kwargs:
                _static_value(kwargs[k], f"argument {k!r}", self.fun)

    def _static_positions(self, n: int) -> set[int]:
        return {i if i >= 0 else i + n for i in self.static_argnums}

    def _warn(self, entry: list) -> None:
        if self._warned:
            return
        self._warned = True
        counts: collections.Counter = collections.Counter()
        for v in entry:
            for gi, c in v.failures.items():
                counts[v.program.guards[gi].where] += c
        where = counts.most_common(1)[0][0] if counts else "<unknown>"
        warnings.warn(f"jit({_name(self.fun)}): {self.cache_size} traced variants and the guards "
                      f"still fail; running eagerly from now on. The value that keeps changing "
                      f"is read at {where}; pass it as a static argument or avoid the Python "
                      f"branch on array values", JitWarning, stacklevel=3)

    def lower(self, *args: Any, **kwargs: Any) -> Compiled:
        """The program that runs for these arguments (traced now if not cached).

        >>> import numpy as np, xpdiff as xd
        >>> f = xd.jit(lambda x: x.__array_namespace__().sin(x) * 2.0)
        >>> print(f.lower(np.ones(3)))  # doctest: +ELLIPSIS
        xpdiff.jit program for backend numpy
        program: 1 inputs, ... backend calls, 0 guards
        ...
        """
        if _core._STACK or _core.active_recorder() is not None:
            raise XpdiffError(f"jit({_name(self.fun)}).lower: call it outside transformations")
        split = self._split(args, kwargs)
        if split is None:
            raise XpdiffError(f"jit({_name(self.fun)}).lower: the arguments are traced values; "
                              f"pass plain arrays")
        key, arrays, treedef, leaves = split
        for v in self._cache.get(key, ()):
            try:
                v.lowered.run(*arrays)
            except Retrace:
                continue
            return Compiled(v)
        self(*args, **kwargs)
        return Compiled(self._cache[key][-1])


_ARRAY_TYPES: set = set()  # raw array types whose ``.device`` is the device (seen so far)


def _device(x: Any) -> Any:
    d = getattr(x, "device", None)
    if d is None or callable(d):
        return device_of(x)
    _ARRAY_TYPES.add(type(x))
    return d


def _name(f: Any) -> str:
    return getattr(f, "__name__", type(f).__name__)


def _static_value(v: Any, what: str, fun: Any) -> Any:
    if isinstance(v, Tracer):
        raise TypeError(f"jit({_name(fun)}): {what} is static but got a traced value; a static "
                        f"argument must be a hashable Python value (drop it from "
                        f"static_argnums/static_argnames to trace it)")
    try:
        hash(v)
    except TypeError:
        raise TypeError(f"jit({_name(fun)}): {what} is static (static_argnums/static_argnames) "
                        f"but its value of type {type(v).__name__} is not hashable; pass a "
                        f"hashable value (a tuple instead of a list), or do not mark it static"
                        ) from None
    return (type(v), v)


def jit(fun: Callable, *, static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (), cache_size: int = 8) -> Jitted:
    """Compile ``fun``: trace it once per argument signature, replay the backend calls.

    The first call for a key (the arguments' tree structure, shapes, dtypes, backend
    and device, and the static arguments' values) runs ``fun`` eagerly, under all its
    transformations, while every backend call is recorded; that call's result is the
    eager result.  Later calls with the same key run only the recorded program
    (optimised: constants folded, common subexpressions and dead code removed, each
    intermediate freed after its last use).

    Python decisions on array values are guarded: ``bool``/``int``/``float``/
    ``__index__`` of a traced value and data-dependent shapes (``nonzero``,
    ``unique_*``, boolean masks) are recomputed during a replay; when one differs the
    function is traced again and the variant cached.  After ``cache_size`` variants
    for one key the function runs eagerly, with one warning naming the line whose
    value kept changing.

    Arrays the function closes over are read by reference at each call (in-place
    updates are seen); rebinding a closed-over name is not seen (pass the array as an
    argument instead).  Python side effects happen while tracing only.  Inside another
    transformation (``xd.grad(xd.jit(f))``) or another ``jit`` the function runs as is.
    Complex numbers (docs/complex.md): complex arrays are traced like real ones,
    and ``jit`` keeps the convention of the transforms it compiles, refusals included.

    Args:
        fun: a function of arrays (pytrees of arrays), e.g. ``xd.jacobian(f, batch_ndim=1)``.
        static_argnums: positional arguments that are part of the key by value
            (hashable) instead of traced.
        static_argnames: keyword arguments treated the same way.
        cache_size: traced variants kept per key before falling back to eager calls.

    Returns:
        A callable with ``fun``'s signature; ``.lower(*args)`` returns the program.

    >>> import numpy as np, xpdiff as xd
    >>> def f(x):
    ...     xp = x.__array_namespace__()
    ...     return xp.sin(x) * xp.exp(x) + x ** 2
    >>> jac = xd.jit(xd.jacobian(f, batch_ndim=1))
    >>> jac(np.ones((8, 4))).shape     # traced: the eager result
    (8, 4, 4)
    >>> float(jac(np.zeros((8, 4)))[0, 0, 0])  # replayed
    1.0
    """
    if not callable(fun):
        raise TypeError(f"jit: fun must be callable, got {type(fun).__name__}")
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    for i in nums:
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"jit: static_argnums must be ints, got {i!r}")
    for k in names:
        if not isinstance(k, str):
            raise TypeError(f"jit: static_argnames must be strings, got {k!r}")
    if not isinstance(cache_size, int) or cache_size < 1:
        raise ValueError(f"jit: cache_size must be a positive int, got {cache_size!r}")
    return Jitted(fun, nums, names, cache_size)
