"""Memory-bounded chunking of the basis axis (Jacobians) and of vmapped axes.

A Jacobian pushes a basis of ``n`` tangents (or cotangents) through the function
in one vectorised pass; that pass holds intermediates ``n`` times larger than one
evaluation.  With a memory budget, the basis is split into chunks:

1. the result itself must fit (checked before anything is allocated: an
   impossible request fails at once, with the sizes);
2. a first small chunk runs; the sizes of what it produced give the memory per
   basis vector (``LIVE_FACTOR`` dense intermediates of that size);
3. the remaining chunks use the largest size whose estimate fits in what the
   budget leaves after the result.

The budget is ``max_memory`` (bytes) when given, else ``AUTO_FRACTION`` of the
memory the device reports free (NumPy: available physical memory; CuPy: the
device's free memory plus the pool's cached blocks, from the backend layer); where
neither is known, no automatic chunking happens.  No plan reads the process's
allocator: library code never starts or stops tracing (thread-safe, and a user's
own tracemalloc session is left alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import backend as _backend
from .. import core as _core
from ..core import TRACER_TYPES, namespace_for_values
from ..interpreters.batching import BatchTrace

AUTO_FRACTION = 0.5
FIRST_CHUNK = 8


class ChunkMemoryError(MemoryError):
    """The result of a transformation cannot fit in the memory budget."""


def free_memory(like: Any) -> int | None:
    """Bytes free on ``like``'s device, where the backend reports it
    (:func:`xpdiff.backend.free_memory` of its innermost value)."""
    while type(like) in TRACER_TYPES:
        like = like._a
    return _backend.free_memory(like)


def budget(like: Any, max_memory: int | float | None) -> int | None:
    """The memory budget in bytes: ``max_memory``, else a fraction of free memory."""
    if max_memory is not None:
        if max_memory <= 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory}")
        return int(max_memory)
    free = free_memory(like)
    out = None if free is None else int(free * AUTO_FRACTION)
    rec = _core.active_recorder()
    if rec is not None and out is not None:
        # jit: decisions made from this budget are guarded (guard_plan); the guard
        # asks a tiny array of the same backend and device, made here (not recorded)
        while type(like) in TRACER_TYPES:
            like = like._a
        probe = _backend.namespace_of(like).zeros((), dtype=like.dtype, device=like.device)
        rec.auto_budget = (probe, out)
    return out


def vmap_copies(values: Any) -> int:
    """How many copies of a per-example value the enclosing ``vmap`` s hold: the
    product of the sizes of the ``vmap`` levels any of ``values`` is batched at."""
    sizes: dict = {}
    for v in values:
        while type(v) in TRACER_TYPES:
            if type(v._main.trace) is BatchTrace and v._batched:
                sizes[id(v._main)] = v._main.data["size"]
            v = v._a
    return math.prod(sizes.values())


def check_result_fits(fname: str, result_bytes: int, budget_bytes: int | None, *,
                      samples: int = 1, outer: int = 1, what: str = "Jacobian") -> None:
    """Raise :class:`ChunkMemoryError` when a result of ``result_bytes`` (``samples``
    per-sample blocks, each ``outer`` times for enclosing ``vmap`` s) exceeds the budget,
    with advice that fits the call."""
    if budget_bytes is None or result_bytes <= budget_bytes:
        return
    what = "Hessian" if fname == "hessian" else what
    note, fix = what, "differentiate fewer outputs/inputs at a time, or use batch_ndim so " \
                      "cross-sample blocks are not formed"
    if samples > 1:
        note = f"per-sample {what}s of {samples} samples"
        fix = "or differentiate a smaller batch (fewer samples per call) or fewer outputs/inputs"
    if outer > 1:
        note += f", for each of {outer} examples of an enclosing vmap"
        fix = "or map over fewer examples at a time (the vmap holds every example's result)"
    raise ChunkMemoryError(
        f"{fname}: the result ({note}) needs {_fmt(result_bytes)}, more than the memory "
        f"budget of {_fmt(budget_bytes)}; pass a larger max_memory, {fix}")


LIVE_FACTOR = 4  # dense intermediates assumed alive at once, per basis vector


def pass_bytes(n: int, sizes: int, samples: int, itemsize: int) -> int:
    """Bytes one pass over ``n`` basis vectors is estimated to hold: ``LIVE_FACTOR``
    dense intermediates of ``sizes`` elements (per-sample input plus output size) per
    basis vector and sample.  Below the budget (with the result) the pass runs whole,
    keeping structured tangents; above it the basis or the samples are chunked."""
    return n * LIVE_FACTOR * samples * sizes * itemsize


JIT_HEADROOM = 8  # a plan made with this much room to spare is not re-checked by jit


def guard_plan(need_bytes: int, budget_bytes: int, need: bool) -> None:
    """Under ``jit``, a plan chosen from the free memory at trace time is a guard: a replay
    re-reads the free memory and traces again when the answer changes.  A plan with
    ``JIT_HEADROOM`` times the room it needs is not re-checked (reading the free memory
    costs more than a small replay).  Outside ``jit`` this does nothing."""
    rec = _core.active_recorder()
    if rec is None:
        return
    probe, auto = getattr(rec, "auto_budget", (None, None))
    if auto is None or auto != budget_bytes or (not need and need_bytes * JIT_HEADROOM <= auto):
        return

    def answer() -> bool:
        free = free_memory(probe)
        return free is not None and need_bytes > int(free * AUTO_FRACTION)

    rec.environment(answer, need, "the chunk plan (from the free memory)")


def run_chunks(n: int, run: Callable[[int, int], list], chunk_size: int | None,
               budget_bytes: int | None, result_bytes: int | Callable[[], int]) -> list[list]:
    """Run ``run(start, stop)`` over ``range(n)`` in chunks; return the pieces.

    With a budget and no ``chunk_size``, a first chunk of ``FIRST_CHUNK`` items runs,
    and the rest are sized from what it produced: ``LIVE_FACTOR`` dense intermediates
    the size of its piece per item, beside the result. The plan comes from sizes the
    engine knows, never from the process's allocator (no tracing started or stopped,
    so transformations in several threads and a user's own tracemalloc are safe).
    ``result_bytes`` may be a callable, read after the first chunk (forward mode
    learns the output shapes from it).
    """
    if chunk_size is not None:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        return [run(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]
    if budget_bytes is None or n <= FIRST_CHUNK:
        return [run(0, n)]
    first = min(n, FIRST_CHUNK)
    piece = run(0, first)
    per = LIVE_FACTOR * _piece_bytes(piece) / first
    if per <= 0:
        return [piece] + ([run(first, n)] if first < n else [])
    room = budget_bytes - (result_bytes() if callable(result_bytes) else result_bytes)
    size = max(1, int(room // per)) if room > 0 else 1
    pieces = [piece]
    for s in range(first, n, size):
        pieces.append(run(s, min(n, s + size)))
    return pieces


def _piece_bytes(piece: Any) -> int:
    """Bytes of the arrays in a chunk's piece (nested lists and tuples of arrays)."""
    if isinstance(piece, (list, tuple)):
        return sum(_piece_bytes(p) for p in piece)
    while type(piece) in TRACER_TYPES:  # the stored array: every vmapped copy counts
        piece = piece._a
    shape = getattr(piece, "shape", None)
    if shape is None or not hasattr(piece, "dtype"):
        return 0
    return nbytes(tuple(shape), piece)


def _fmt(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b} B"


_ITEMSIZE: dict = {}


def itemsize(like: Any) -> int:
    """Bytes per element of ``like``'s dtype (cached per dtype)."""
    dt = like.dtype
    key = (type(dt), dt)  # dtypes of different libraries never compare
    try:
        size = _ITEMSIZE.get(key)
    except TypeError:  # an unhashable dtype
        key = (type(dt).__module__, str(dt))
        size = _ITEMSIZE.get(key)
    if size is None:
        xp = namespace_for_values([like])
        try:
            size = xp.finfo(dt).bits // 8
        except (TypeError, ValueError):
            size = xp.iinfo(dt).bits // 8 if not xp.isdtype(dt, "bool") else 1
        _ITEMSIZE[key] = size
    return size


def nbytes(shape: tuple, like: Any) -> int:
    """Bytes of an array of ``shape`` with ``like``'s dtype."""
    return math.prod(shape) * itemsize(like)
