"""The costs of ``xpdiff.jit`` itself: replay overhead and peak memory.

Run from the repository root (OpenBLAS tuning variables unset, as for the suite)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m xpdiff.bench.jit

For every workload of :mod:`xpdiff.bench.workloads` that has an ``xpdiff-jit``
builder, at the small size: the replayed program's number of backend calls, the
time of one call of the jitted function, of the lowered program alone (so the fixed
cost of a call, the key and the cache look-up, is the difference) and per backend
call.  Then the peak memory (tracemalloc) of one per-sample Jacobian, eager against
replayed.  Writes ``docs/benchmarks/jit.md`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from ..jit import Jitted, jit
from ..namespaces import namespace
from .peers import Runtime
from .workloads import make_workload


def _best_times(fns: list[Callable[[], Any]], min_time: float = 0.05, repeat: int = 15) -> list[float]:
    """The best (minimum) time per call of each function, measured in interleaved rounds
    (the minimum: on a shared machine other work only ever adds time)."""
    loops = []
    for fn in fns:
        fn()
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - t0 >= min_time / repeat or n >= 1 << 20:
                break
            n *= 2
        loops.append(n)
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (fn, n) in enumerate(zip(fns, loops)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / n)
    return best


def overhead_rows(size: str = "small") -> list[dict]:
    """One row per workload: calls, time per call, fixed and per-call costs."""
    rt = Runtime("numpy")
    rows = []
    names = ("elementwise-jac", "mlp-jac", "bmm-jac", "softmax-jac", "full-jac-fwd",
             "full-jac-rev", "hessian", "mlp-grad", "per-sample-grad", "overhead")
    for name in names:
        w = make_workload(name, size)
        inputs = w.make_inputs(np.random.default_rng(0))
        thunk = w.builders["xpdiff-jit"](rt, "xpdiff-jit", inputs)
        thunk()
        eager = w.builders["xpdiff"](rt, "xpdiff", inputs)
        closed = w.builders["numpy-closed"](rt, "numpy-closed", inputs)
        jitted, _ = _jitted_of(thunk)
        variant = next(iter(jitted._cache.values()))[0]
        run = variant.lowered.run
        arrays = _arrays_of(jitted, thunk)
        t_call, t_run, t_eager, t_closed = _best_times([thunk, lambda: run(*arrays), eager, closed])
        rows.append({
            "workload": f"{name}/{size}", "calls": len(variant.program.calls),
            "t_call": t_call, "t_run": t_run, "fixed": t_call - t_run,
            "per_call": t_run / max(1, len(variant.program.calls)),
            "eager": t_eager, "closed": t_closed,
        })
    return rows


def _jitted_of(thunk: Callable[[], Any]) -> tuple[Any, None]:
    seen = []
    stack = [thunk]
    while stack:
        f = stack.pop()
        for c in getattr(f, "__closure__", None) or ():
            v = c.cell_contents
            if isinstance(v, Jitted):
                return v, None
            if callable(v) and v not in seen:
                seen.append(v)
                stack.append(v)
    raise RuntimeError("no jitted function in the thunk")


def _arrays_of(jitted: Any, thunk: Callable[[], Any]) -> list:
    """The arrays the thunk passes (recorded by wrapping the jitted function once)."""
    got: list = []
    real = jitted._split

    def spy(args: tuple, kwargs: dict) -> Any:
        out = real(args, kwargs)
        got.append(out[1])
        return out

    jitted._split = spy
    try:
        thunk()
    finally:
        del jitted._split
    return got[-1]


def fixed_rows() -> list[dict]:
    """The fixed cost of a call: a jitted function whose program makes no backend call
    (it returns its argument) and one making a single call."""
    xnp = namespace("numpy")
    x = np.ones(8)
    rows = []
    for label, fn in (("identity (0 calls)", lambda x: x), ("sin (1 call)", xnp.sin)):
        j = jit(fn)
        j(x)
        t_jit, t_direct = _best_times([lambda: j(x), lambda: np.sin(x)])
        rows.append({"what": label, "t": t_jit, "numpy_sin": t_direct})
    return rows


def memory_rows() -> list[dict]:
    """Peak memory of one per-sample Jacobian (large sizes): eager against a replay."""
    rt = Runtime("numpy")
    rows = []
    for name in ("elementwise-jac", "mlp-jac", "softmax-jac", "per-sample-grad"):
        w = make_workload(name, "large")
        inputs = w.make_inputs(np.random.default_rng(0))
        eager = w.builders["xpdiff"](rt, "xpdiff", inputs)
        jit = w.builders["xpdiff-jit"](rt, "xpdiff-jit", inputs)
        jit()  # trace
        peaks = {}
        for label, fn in (("eager", eager), ("jit", jit)):
            fn()
            gc.collect()
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base, _ = tracemalloc.get_traced_memory()
                out = fn()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            del out
            peaks[label] = peak - base
        rows.append({"workload": f"{name}/large", **peaks})
    return rows


def _us(t: float) -> str:
    return f"{t * 1e6:.1f} µs"


def report(over: list[dict], mem: list[dict], fixed: list[dict]) -> str:
    import threadpoolctl  # optional (the bench extra)

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads)" for i in threadpoolctl.threadpool_info()
            if i.get("user_api") == "blas"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# xpdiff.jit: replay overhead and peak memory", "",
             f"BLAS: {', '.join(blas) or 'unknown'}; load average at the start "
             f"{load:.1f} on {os.cpu_count()} CPUs.", "",
             "Generated by `python -m xpdiff.bench.jit`; each time is the best of 15 interleaved "
             "rounds (one thread). *calls*: backend calls of the replayed "
             "program; *jit call*: one call of the jitted function; *program*: the lowered "
             "program alone; *fixed*: their difference (the key and the cache look-up); "
             "*per call*: program time / calls (NumPy's own work included).", "",
             "| workload | calls | eager | jit call | program | fixed | per call | closed form | "
             "jit / closed | eager / jit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in over:
        lines.append(f"| {r['workload']} | {r['calls']} | {_us(r['eager'])} | {_us(r['t_call'])} | "
                     f"{_us(r['t_run'])} | {_us(r['fixed'])} | {_us(r['per_call'])} | "
                     f"{_us(r['closed'])} | {r['t_call'] / r['closed']:.2f}x | "
                     f"{r['eager'] / r['t_call']:.1f}x |")
    lines += ["", "Fixed cost of a call (a one-array argument; `np.sin` of the same array for scale):",
              "", "| jitted function | time per call | np.sin(x) |", "|---|---:|---:|"]
    for r in fixed:
        lines.append(f"| {r['what']} | {_us(r['t'])} | {_us(r['numpy_sin'])} |")
    lines += ["", "Peak memory of one call (tracemalloc, bytes allocated above the start):", "",
              "| workload | eager | jit replay | jit / eager |", "|---|---:|---:|---:|"]
    for r in mem:
        lines.append(f"| {r['workload']} | {r['eager'] / 2**20:.2f} MiB | {r['jit'] / 2**20:.2f} MiB "
                     f"| {r['jit'] / max(1, r['eager']):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the report (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m xpdiff.bench.jit")
    ap.add_argument("--out", default=os.path.join("docs", "benchmarks"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import threadpoolctl  # optional (the bench extra)

    with threadpoolctl.threadpool_limits(a.threads):
        text = report(overhead_rows(), memory_rows(), fixed_rows())
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "jit.md")
    with open(path, "w") as fh:
        fh.write(text)
    print(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
