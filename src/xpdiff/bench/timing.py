"""Timing, memory-write floor and cross-peer agreement checks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TimingConfig:
    """How hard to measure.

    Attributes
    ----------
    repeat:
        number of timed measurements; the median is reported.
    warmup:
        untimed calls first (JIT compilation, caches, allocator).
    min_time:
        each measurement loops the call until at least this many seconds
        passed, and reports the mean per call (so microsecond calls are not
        dominated by timer resolution).
    budget:
        rough cap in seconds on the time spent measuring one peer on one
        workload; slow peers get fewer repeats (never fewer than one).
    """

    repeat: int = 7
    warmup: int = 2
    min_time: float = 0.005
    budget: float = 20.0


QUICK = TimingConfig(repeat=3, warmup=1, min_time=0.001, budget=4.0)


class Timer:
    """Interleavable timing of one call: warm-up and loop calibration at creation,
    then one measurement per :meth:`step`.

    The benchmark steps the timers of all peers of a workload in turns (round
    robin), so a slow spell of the machine hits every peer alike instead of
    whichever happened to run then.
    """

    def __init__(self, call: Callable[[], Any], sync: Callable[[Any], None],
                 config: TimingConfig) -> None:
        self.call, self.sync = call, sync
        for _ in range(max(1, config.warmup)):
            sync(call())
        t0 = time.perf_counter()  # calibrate the inner loop count from one timed call
        out = call()
        sync(out)
        single = time.perf_counter() - t0
        self.number = 1
        if single < config.min_time:
            self.number = int(min(1_000_000, max(1, config.min_time / max(single, 1e-9))))
        self.repeat = config.repeat
        per_measurement = max(single, 1e-9) * self.number
        if per_measurement * self.repeat > config.budget:
            self.repeat = max(1, int(config.budget / per_measurement))
        self.times: list[float] = [] if self.number > 1 else [single]
        self.out = out

    @property
    def done(self) -> bool:
        return len(self.times) >= self.repeat

    def step(self) -> None:
        """One measurement (the mean over ``number`` calls)."""
        call, sync = self.call, self.sync
        t0 = time.perf_counter()
        for _ in range(self.number):
            out = call()
            sync(out)
        self.times.append((time.perf_counter() - t0) / self.number)
        self.out = out

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def measure(
    call: Callable[[], Any], sync: Callable[[Any], None], config: TimingConfig
) -> tuple[float, list[float], Any]:
    """Time ``call`` (followed by ``sync`` of its result).

    Returns ``(median seconds per call, per-measurement seconds, last result)``.
    """
    timer = Timer(call, sync, config)
    while not timer.done:
        timer.step()
    return timer.median, timer.times, timer.out


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` single calls of ``fn`` after one warm-up call
    (xpdiff-only reports: ``--modes``, ``--memory``)."""
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(statistics.median(ts))


def write_floor(arrays: Sequence[np.ndarray], config: TimingConfig, xp: Any = np) -> float:
    """Median time to allocate and write once an array of each result's size.

    This is the "memory-write floor": no derivative can be returned faster
    than its result can be written (``out = empty(shape); out[...] = 1``).
    """
    specs = [(a.shape, a.dtype) for a in arrays]

    def call() -> list:
        outs = []
        for shape, dtype in specs:
            out = xp.empty(shape, dtype=dtype)
            out[...] = 1.0
            outs.append(out)
        return outs

    def sync(_: Any) -> None:
        if xp is not np:
            xp.cuda.get_current_stream().synchronize()

    median, _, _ = measure(call, sync, config)
    return median


def tolerances(dtype: np.dtype) -> tuple[float, float]:
    """``(rtol, atol relative to max |ref|)`` for comparing results of ``dtype``."""
    if np.dtype(dtype).itemsize >= 8:
        return 1e-7, 1e-9
    return 2e-3, 2e-4


def allclose(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    """Whether two flattened results agree (same count, shapes, close values)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return False
        low = x.dtype if x.dtype.itemsize <= y.dtype.itemsize else y.dtype
        rtol, atol = tolerances(low)
        scale = float(np.max(np.abs(y))) if y.size else 1.0
        if not np.allclose(x, y, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=False):
            return False
    return True


def agreement(results: dict[str, list[np.ndarray]], preference: Sequence[str]) -> dict[str, bool | None]:
    """Mark which peers agree with the consensus.

    The consensus is the largest group of peers whose results all agree with
    one member (ties go to the earliest peer in ``preference``).  A lone
    result is unchecked (``None``); when no two peers agree all are ``False``.
    """
    peers = [p for p in preference if p in results] + [p for p in results if p not in preference]
    if len(peers) < 2:
        return {p: None for p in peers}
    groups = {p: {q for q in peers if q == p or allclose(results[q], results[p])} for p in peers}
    best = max(peers, key=lambda p: (len(groups[p]), -peers.index(p)))
    if len(groups[best]) == 1:
        return {p: False for p in peers}
    return {p: p in groups[best] for p in peers}


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> str | None:
    """Make glibc's malloc keep freed memory in the process for the rest of the run.

    By default glibc returns large freed blocks to the operating system (``mmap``
    for blocks over a threshold that adapts to the process's history, heap
    trimming), so every call of an eager library page-faults fresh memory again:
    on the benchmark machine that doubled the MLP gradient's time, and made
    timings depend on what ran before.  ``mallopt(M_MMAP_MAX, 0)`` and a huge
    ``M_TRIM_THRESHOLD`` keep freed memory for reuse, for every peer in the
    process alike (the environment variables ``MALLOC_MMAP_MAX_=0`` and
    ``MALLOC_TRIM_THRESHOLD_=...`` do the same for a whole program).  Returns a
    description for the report, or ``None`` where glibc is not the allocator.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    if not (mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(_M_MMAP_MAX, 0)):
        return None
    return "glibc malloc keeps freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)"
