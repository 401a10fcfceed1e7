"""GPU benchmark support: problem sizes that fill a card, and peak-memory figures.

Sizes (``--size gpu``)
    Every workload has one *scaled* dimension (the batch ``B``/``D``, or ``n`` for
    the dense Jacobians and the Hessian); it is chosen so that the workload's
    largest array (its result, or the larger intermediate where one dominates)
    takes about ``result_bytes``.  The default is 1/64 of the device's total
    memory: the peers of a workload are measured in interleaved rounds and each
    keeps its last result, and each call's working set is a few times its
    result, so at 1/64 the peers together fill a good part of the card without
    running it out of memory.  On the CPU (NumPy) the same code runs at whatever
    ``result_bytes`` is given, which is how it is tested.

Memory (``peak_bytes``)
    The peak of one call above what was in use before it: on CuPy a memory hook
    that follows every allocation from and release to the memory pool (cached
    blocks do not count, so a warm pool gives the same figure as a cold one);
    torch's ``max_memory_allocated`` after ``reset_peak_memory_stats``; JAX's
    ``peak_bytes_in_use`` of the device's ``memory_stats()`` (a process-wide
    high-water mark that cannot be reset: when a call stays under an earlier peak
    the figure is reported as unknown); on NumPy ``tracemalloc`` (NumPy reports its
    allocations to it), only while the benchmark is not already tracing.
"""

from __future__ import annotations

import math
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

#: Workload -> (fixed parameters, scaled parameter, elements of the largest array
#: per unit of the scaled parameter as a function of the fixed ones, exponent of the
#: scaled parameter in that array's size (1: a batch, 2: an n x n matrix), cap of the
#: scaled parameter (compute time of the O(n^3) cases)).
GPU_SHAPES: dict[str, tuple[dict[str, int], str, Callable[[dict[str, int]], int], int, int]] = {
    "elementwise-jac": ({"N": 256}, "B", lambda p: p["N"] * p["N"], 1, 1 << 20),
    "mlp-jac": ({"Nin": 256, "H": 1024, "Nout": 64}, "B",
                lambda p: max(p["Nout"] * p["Nin"], p["Nout"] * p["H"]), 1, 1 << 20),
    "bmm-jac": ({"M": 16, "N": 16, "P": 16}, "D", lambda p: p["M"] * p["P"] * p["M"] * p["N"], 1,
                1 << 20),
    "softmax-jac": ({"N": 512}, "B", lambda p: p["N"] * p["N"], 1, 1 << 20),
    "full-jac-fwd": ({}, "n", lambda p: 1, 2, 16384),
    "full-jac-rev": ({}, "n", lambda p: 1, 2, 16384),
    # m = 4 n: the largest arrays are the n x m intermediates of the Hessian's passes
    "hessian": ({}, "n", lambda p: 4, 2, 8192),
    "mlp-grad": ({"Nin": 512, "H": 2048, "Nout": 128}, "B", lambda p: 2 * p["H"] + p["Nin"], 1,
                 1 << 18),
    "per-sample-grad": ({"N": 256, "H": 256}, "B", lambda p: p["N"] * p["H"], 1, 1 << 20),
    "overhead": ({"N": 8}, "", lambda p: 0, 0, 0),  # dispatch overhead: stays tiny
}

#: The fraction of the device's total memory the largest array of a workload takes.
DEFAULT_FRACTION = 1 / 64


def gpu_params(name: str, result_bytes: int, itemsize: int) -> dict[str, int]:
    """The parameters of workload ``name`` whose largest array takes about ``result_bytes``.

    >>> gpu_params("elementwise-jac", 256 * 256 * 4 * 10, 4)
    {'B': 10, 'N': 256}
    >>> gpu_params("full-jac-rev", 100 * 100 * 8, 8)
    {'n': 100}
    """
    fixed, key, per_unit, power, cap = GPU_SHAPES[name]
    params = dict(fixed)
    if not key:
        return params
    units = max(1.0, result_bytes / (itemsize * per_unit(fixed)))
    value = int(units if power == 1 else math.isqrt(int(units)))
    params = {key: max(1, min(cap, value)), **fixed}
    if name == "hessian":
        params["m"] = 4 * params["n"]
    return params


def device_total_memory(backend: str) -> int | None:
    """Total memory of the current GPU for ``backend="cupy"`` (``None`` otherwise)."""
    if backend != "cupy":
        return None
    cupy = sys.modules.get("cupy")
    if cupy is None:
        import cupy
    return int(cupy.cuda.Device().mem_info[1])


class PoolPeak:
    """A CuPy memory hook (its ``malloc_postprocess`` / ``free_postprocess``) that
    follows the bytes handed out by the memory pool and keeps their high-water mark.

    ``malloc`` counts a block taken from the pool (new or cached), ``free`` one given
    back to it; blocks the pool keeps cached are not in use and do not count.

    >>> h = PoolPeak()
    >>> h.malloc_postprocess(device_id=0, size=100, mem_size=512, mem_ptr=1, pmem_id=7)
    >>> h.free_postprocess(device_id=0, mem_size=512, mem_ptr=1, pmem_id=7)
    >>> h.malloc_postprocess(device_id=0, size=10, mem_size=512, mem_ptr=2, pmem_id=8)
    >>> h.peak, h.live
    (512, 512)
    """

    name = "xpdiff-bench-peak"

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def malloc_postprocess(self, **kw: Any) -> None:
        self.live += int(kw["mem_size"])
        self.peak = max(self.peak, self.live)

    def free_postprocess(self, **kw: Any) -> None:
        self.live -= int(kw["mem_size"])

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.endswith(("_preprocess", "_postprocess")):  # the hook's other four callbacks
            return lambda **kw: None
        raise AttributeError(name)


def _cupy_hook(cupy: Any) -> Any:
    """A registered-able ``cupy.cuda.MemoryHook`` wrapping a :class:`PoolPeak`."""

    class _Hook(cupy.cuda.MemoryHook):
        name = PoolPeak.name

        def __init__(self) -> None:
            super().__init__()
            self.counter = PoolPeak()

        def malloc_postprocess(self, **kw: Any) -> None:
            self.counter.malloc_postprocess(**kw)

        def free_postprocess(self, **kw: Any) -> None:
            self.counter.free_postprocess(**kw)

    return _Hook()


def peak_bytes(lib: str, backend: str, call: Callable[[], Any], sync: Callable[[Any], None],
               handle: Any = None) -> tuple[int | None, str | None]:
    """Run ``call`` once (and ``sync``) and return ``(peak bytes above the start, note)``.

    ``lib`` is the peer's library (``xpdiff``, ``numpy``, ``jax``, ``torch``,
    ``autograd``); ``handle`` its loaded handle (the dict of
    :class:`~xpdiff.bench.peers.Runtime` for JAX and torch). ``None`` with a note
    where the library gives no figure.
    """
    on_gpu = backend == "cupy"
    if lib in ("xpdiff", "numpy") and on_gpu:
        hook = _cupy_hook(sys.modules["cupy"])
        with hook:
            sync(call())
        return hook.counter.peak, None
    if lib == "torch" and handle is not None and handle["device"].type == "cuda":
        torch, dev = handle["torch"], handle["device"]
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        sync(call())
        return int(torch.cuda.max_memory_allocated(dev) - before), None
    if lib == "jax" and handle is not None:
        stats = handle["device"].memory_stats
        first = stats() if callable(stats) else None
        if not first or "peak_bytes_in_use" not in first:
            return None, "the JAX device reports no memory statistics"
        sync(call())
        after = stats()
        if after["peak_bytes_in_use"] <= first["peak_bytes_in_use"]:
            return None, "under an earlier JAX high-water mark (JAX's peak cannot be reset)"
        return int(after["peak_bytes_in_use"] - first["bytes_in_use"]), None
    if lib in ("xpdiff", "numpy", "autograd") and not on_gpu:
        if tracemalloc.is_tracing():
            return None, "tracemalloc was already tracing"
        tracemalloc.start()
        try:
            sync(call())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return int(peak), None
    return None, f"no memory figure for {lib} on this device"


def release_memory(backend: str) -> None:
    """Give cached device memory back between workloads (CuPy's pools, torch's cache),
    so the next workload's peers start from an empty card; JAX's allocator keeps what
    it grew to (``XLA_PYTHON_CLIENT_PREALLOCATE=false`` only stops it from taking
    most of the card at start)."""
    if backend != "cupy":
        return
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
