"""Peak memory of per-sample Jacobians (``xpdiff bench --memory``).

For each per-sample workload of the benchmark (large size, NumPy, float32) this
measures the peak bytes NumPy allocates during one ``jacobian(f, batch_ndim=1)``
call after a first, unmeasured one (whose lazy imports would count), with
``tracemalloc`` (NumPy reports its allocations to it), as a multiple of the
result's size plus the inputs', once with the default budget (half of the free
memory: one pass) and once with ``max_memory`` set to twice the result plus the
inputs, which makes xpdiff run the samples in chunks (and the basis, if one
sample does not fit).  Times are medians of untraced calls; both results are
checked equal.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .modes import case_function
from .timing import median_time

PER_SAMPLE = ("elementwise-jac", "mlp-jac", "bmm-jac", "softmax-jac", "per-sample-grad")


def peak_of(like: Any, fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """Run ``fn`` and return its result and the peak bytes it allocated (if known)."""
    kind = type(like).__module__.split(".")[0]
    if kind == "cupy":
        pool = sys.modules["cupy"].get_default_memory_pool()
        before = pool.used_bytes()
        out = fn()
        return out, max(0, pool.total_bytes() - before)
    if kind in ("numpy", "array_api_strict"):  # the benchmark process traces itself
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            out = fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            if started:
                tracemalloc.stop()
        return out, max(0, peak - base)
    return fn(), None


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    out, peak = peak_of(np.empty(0), fn)  # (a NumPy array: tracemalloc watches the allocator)
    return out, int(peak or 0)


def run_memory(size: str = "large", repeat: int = 5) -> list[dict]:
    """Peak memory and time of each per-sample Jacobian, default and bounded."""
    import xpdiff as xd

    rows = []
    for name in PER_SAMPLE:
        f, args, argnums, k, inputs = case_function(name, size)
        in_bytes = sum(v.nbytes for v in inputs.values())
        default = xd.jacobian(f, argnums=argnums, batch_ndim=k)
        default(*args)  # once untraced: the first call's lazy imports are not the call's
        ref, peak = _peak(lambda: default(*args))
        res_bytes = ref.nbytes
        budget = 2 * (res_bytes + in_bytes)
        bounded = xd.jacobian(f, argnums=argnums, batch_ndim=k, max_memory=budget)
        bounded(*args)
        out, peak_b = _peak(lambda: bounded(*args))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6 * float(np.max(np.abs(ref))))
        rows.append({
            "workload": name, "size": size, "result": res_bytes, "inputs": in_bytes,
            "peak": peak, "time": median_time(lambda: default(*args), repeat),
            "budget": budget, "peak_bounded": peak_b,
            "time_bounded": median_time(lambda: bounded(*args), repeat),
        })
    return rows


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB"


def markdown(rows: list[dict]) -> str:
    from .report import format_time

    lines = ["# Peak memory of per-sample Jacobians", "",
             "Peak bytes allocated by NumPy during one `jacobian(f, batch_ndim=1)` call "
             "(tracemalloc), over the result's size plus the inputs'; *bounded*: the same "
             "call with `max_memory` = 2 × (result + inputs), which makes xpdiff run the "
             "samples in chunks. "
             "Times are medians of untraced calls in the same run; the two results agree.",
             "", "| workload | result | inputs | peak (default) | ratio | time | "
             "peak (bounded) | ratio | time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = r["result"] + r["inputs"]
        lines.append(
            f"| {r['workload']} ({r['size']}) | {_mib(r['result'])} | {_mib(r['inputs'])} | "
            f"{_mib(r['peak'])} | {r['peak'] / base:.2f}× | {format_time(r['time'])} | "
            f"{_mib(r['peak_bounded'])} | {r['peak_bounded'] / base:.2f}× | "
            f"{format_time(r['time_bounded'])} |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict], out_dir: str | Path) -> Path:
    path = Path(out_dir) / "memory.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(rows), encoding="utf-8")
    return path
