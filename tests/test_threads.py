"""Transformations in several threads at once give the serial results, and repeated
transformations (also ones that fail) leak neither memory nor traced arrays.

The leak checks make ``XPDIFF_TEST_CALLS`` calls of each transformation (default
100; the long run sets 10000) and watch the memory Python tracks over the last
calls (tracemalloc, in this test only: library code never touches it) and the
traced arrays alive after a collection."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import xpdiff as xd
from xpdiff.tracer import Tracer

xp = xd.numpy
RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 4)) / 2
N_THREADS = 8
CALLS = int(os.environ.get("XPDIFF_TEST_CALLS", "100"))


def scalar(x):
    y = xp.tanh(x @ W) * x
    v = y[..., 1:]  # a view written through: the view machinery runs in every thread
    v += xp.sin(x[..., :-1])
    return xp.sum(y * y, axis=-1)


def vector(x):
    return xp.tanh(x @ W) * xp.exp(-x * x)


TRANSFORMS = {
    "grad": (xd.grad(scalar), (4,)),
    "jacfwd": (xd.jacfwd(vector), (4,)),
    "jacrev": (xd.jacrev(vector), (4,)),
    "jacobian(batch_ndim=1)": (xd.jacobian(vector, batch_ndim=1), (3, 4)),
    "jacobian(batch_ndim=1, chunk_size=2)": (xd.jacobian(vector, batch_ndim=1, chunk_size=2), (3, 4)),
    "hessian": (xd.hessian(scalar), (4,)),
    "hessian(batch_ndim=1)": (xd.hessian(scalar, batch_ndim=1), (3, 4)),
    "vmap(grad)": (xd.vmap(xd.grad(scalar)), (3, 4)),
    "vmap(jacrev)": (xd.vmap(xd.jacrev(vector)), (3, 4)),
    "jvp": (lambda x: xd.jvp(vector, (x,), (x,))[1], (4,)),
    "vjp": (lambda x: xd.vjp(vector, x)[1](x)[0], (4,)),
    "jit(grad)": (xd.jit(xd.grad(scalar)), (4,)),
    "jit(jacobian(batch_ndim=1))": (xd.jit(xd.jacobian(vector, batch_ndim=1)), (3, 4)),
}
# the chunk planner probes memory with a process-wide allocator watch, which races
# between threads; it is being replaced by a plan from the traced shapes
W16 = RNG.standard_normal((16, 16)) / 4


def wide(x):
    return xp.tanh(x @ W16) * xp.exp(-x * x)


# a budget above the result (64 * 16 * 16 * 8 bytes) that makes the planner chunk the samples
MAX_MEMORY = {"jacobian(batch_ndim=1, max_memory)":
              (xd.jacobian(wide, batch_ndim=1, max_memory=200_000), (64, 16))}


def _inputs(shape, n):
    r = np.random.default_rng(1)
    return [r.standard_normal(shape) for _ in range(n)]


def _run_threads(cases, rounds=6):
    serial = {name: [np.asarray(fn(x)) for x in _inputs(shape, N_THREADS)]
              for name, (fn, shape) in cases.items()}
    start = threading.Barrier(N_THREADS)
    errors, mismatches = [], []

    def work(i):
        try:
            start.wait()
            for _ in range(rounds):
                for name, (fn, shape) in cases.items():
                    got = np.asarray(fn(_inputs(shape, N_THREADS)[i]))
                    if not np.array_equal(got, serial[name][i]):
                        mismatches.append((name, i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not mismatches, sorted(set(mismatches))


def test_threads_give_the_serial_results():
    _run_threads(TRANSFORMS)


def test_threads_max_memory_chunking():
    """In a subprocess (a crash would end the interpreter): samples chunked under
    ``max_memory`` in several threads, planned from sizes (no allocator probe)."""
    proc = subprocess.run([sys.executable, __file__, "max_memory"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"exit status {proc.returncode}: {proc.stderr[-2000:]}"


def _live_tracers():
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), Tracer))


def _fails_inside(x):
    y = xp.sin(x) * x
    y[1:] += y[:-1]
    raise KeyError("user error after some traced work")


def _mixing(x):
    return xp.sum(x * x)  # reduces over the data axis under batch_ndim: MixingError


FAILING = {
    "grad of a raising function": (xd.grad(lambda x: xp.sum(_fails_inside(x))), (4,), KeyError),
    "jacrev of a raising function": (xd.jacrev(_fails_inside), (4,), KeyError),
    "hessian of a raising function": (xd.hessian(lambda x: xp.sum(_fails_inside(x))), (4,), KeyError),
    "jacobian(batch_ndim=1) mixing samples": (xd.jacobian(_mixing, batch_ndim=1), (3, 4), xd.MixingError),
    "vmap of a raising function": (xd.vmap(_fails_inside), (3, 4), KeyError),
}


def _growth(call, n):
    """Tracked bytes still allocated after the last ``min(n, 1000)`` of ``n`` calls, beyond
    a warm state (tracing the window only keeps a long run affordable: a per-call leak
    shows in any window)."""
    for _ in range(20):  # warm caches (namespaces, scalar constants)
        call()
    window = min(n, 1000)
    for _ in range(n - window):
        call()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(window // 10):
            call()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(window - window // 10):
            call()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


LEAK_LIMIT = 4 * 1024  # bytes: one leaked small array (>= 50 B) per call exceeds it


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_no_leak_over_repeated_calls(name):
    fn, shape = TRANSFORMS[name]
    x = _inputs(shape, 1)[0]
    live = _live_tracers()
    grew = _growth(lambda: fn(x), CALLS)
    print(f"GROWTH {name}: {grew}")
    assert grew < LEAK_LIMIT, f"{name}: {grew} bytes more after {CALLS} calls"
    assert _live_tracers() <= live


@pytest.mark.parametrize("name", list(FAILING))
def test_no_leak_after_errors(name):
    fn, shape, err = FAILING[name]
    x = _inputs(shape, 1)[0]

    def call():
        try:
            fn(x)
        except err:
            return
        raise AssertionError(f"{name}: no {err.__name__}")

    live = _live_tracers()
    grew = _growth(call, CALLS)
    print(f"GROWTH {name}: {grew}")
    assert grew < LEAK_LIMIT, f"{name}: {grew} bytes more after {CALLS} failing calls"
    assert _live_tracers() <= live


if __name__ == "__main__":  # the subprocess of test_threads_max_memory_chunking
    _run_threads(MAX_MEMORY, rounds=50)
