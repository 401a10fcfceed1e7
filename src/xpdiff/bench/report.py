"""Machine description, markdown report and bar plot for benchmark results."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .peers import PEER_ORDER

#: Environment variables that change which OpenBLAS kernel runs.  Benchmarks
#: must run with them unset so the auto-detected kernel is measured.
OPENBLAS_VARS: tuple[str, ...] = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


_METHOD = (
    "Each cell is the median wall time of one call (`time.perf_counter`) after "
    "warm-up calls (which include JIT compilation for `jax-jit`); calls faster than "
    "a few milliseconds are looped and averaged per measurement. The peers of a "
    "workload are measured in interleaved rounds (one measurement of each per round), "
    "so a slow spell of the machine affects all of them alike. JAX results are "
    "waited for with `block_until_ready()`. Input conversion and building the "
    "transformed functions are not timed. All peers get the same NumPy inputs "
    "(small sizes float64, large sizes float32), and all results are converted to "
    "NumPy and compared against each other: `≠` marks a result that disagrees "
    "with the consensus (float64: rtol 1e-7, float32: rtol 2e-3, atol relative to "
    "the result's magnitude). *floor* is the memory-write floor: allocating and "
    "writing once arrays of the result's size and dtype. `n/a`: the peer has no "
    "implementation of that workload; `error`: it raised (see Errors)."
)


_SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_name() -> str:
    """Return the CPU model, family/model numbers and SIMD extensions when known."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    name = fields.get("model name") or platform.machine() or "unknown"
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']}, model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    simd = [f.upper() for f in _SIMD_FLAGS if f in flags]
    if simd:
        details.append(", ".join(simd))
    return f"{name} ({'; '.join(details)})" if details else name


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load averages (``None`` where the OS has none)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's ``threadpool_info()`` (empty when threadpoolctl is missing), each
    library's ``filepath`` reduced to its file name (a report names no local paths)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: Path(str(v)).name if k == "filepath" else v for k, v in entry.items()}
            for entry in threadpool_info()]


def machine_info(
    versions: dict[str, str],
    backend: str,
    load: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """Everything the report header states about the run's environment.

    ``load`` is the load average sampled before the run started.
    """
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "backend": backend,
        "versions": versions,
        "blas": blas_info(),
        "env": {var: os.environ.get(var) for var in OPENBLAS_VARS},
        "load": load,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def format_time(seconds: float | None) -> str:
    """Seconds as a short human string (µs / ms / s)."""
    if seconds is None or not np.isfinite(seconds):
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    if n < 2**30:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**30:.2f} GiB"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _cell(row: dict[str, Any], peer: str) -> str:
    if peer in row["errors"]:
        return "error"
    if peer in row["unavailable"] and peer not in row["times"]:
        return "not available"
    if peer in row["skipped"]:
        return "n/a"
    text = format_time(row["times"].get(peer))
    agree = row["agree"].get(peer)
    if agree is False:
        text += " ≠"
    return text


def peers_in(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Peers that appear (timed, errored, not available) in any row, in standard order."""
    seen = {p for r in rows for p in (*r["times"], *r["errors"], *r["unavailable"])}
    return [p for p in PEER_ORDER if p in seen]


def markdown(rows: Sequence[dict[str, Any]], info: dict[str, Any], command: str) -> str:
    """The full markdown report."""
    lines: list[str] = []
    title = "CPU" if info["backend"] == "numpy" else f"GPU ({info['backend']})"
    lines += [f"# xpdiff benchmarks — {title}", ""]
    lines += [f"Generated {info['date']} with `{command}`.", ""]

    lines += ["## Machine", ""]
    if info.get("device"):
        lines += [f"- GPU: {info['device']}"]
    lines += [f"- CPU: {info['cpu']}; {info['cores']} logical cores"]
    lines += [f"- Platform: {info['platform']}"]
    if info.get("allocator"):
        lines += [f"- Allocator: {info['allocator']}"]
    threads = info.get("threads")
    if threads is None:
        lines += ["- Threads: each library's default"]
    else:
        cpus = info.get("cpus")
        pinned = ""
        if cpus and len(cpus) <= threads:
            pinned = f"; the process pinned to CPU {', '.join(map(str, cpus))}"
        lines += [
            f"- Threads: limited to {threads} (threadpoolctl for BLAS/OpenMP, "
            "`torch.set_num_threads`" + (", single-threaded XLA" if threads == 1 else "; XLA unrestricted")
            + pinned + ")"
        ]
    if info.get("load") is not None:
        busy = info["load"][0] > 0.5
        note = " (**other work was running: timings are noisy**)" if busy else ""
        lines += [f"- Load average before the run (1/5/15 min): {info['load']}{note}"]
    for var, value in info["env"].items():
        state = "unset" if value is None else f"**set to `{value}`** (results not representative)"
        lines += [f"- `{var}`: {state}"]
    lines += [
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
    ]
    if info["blas"]:
        lines += ["Thread pools and BLAS kernels loaded (threadpoolctl):", ""]
        cols = ("library", "user_api", "internal_api", "version")
        cols += ("architecture / coretype", "threading", "num_threads")
        lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        for e in info["blas"]:
            cells = [
                f"{e.get('prefix', '')} (`{Path(str(e.get('filepath', ''))).name}`)",
                str(e.get("user_api") or ""),
                str(e.get("internal_api") or ""),
                str(e.get("version") or ""),
                str(e.get("architecture") or ""),
                str(e.get("threading_layer") or ""),
                str(e.get("num_threads") or ""),
            ]
            lines += ["| " + " | ".join(cells) + " |"]
        lines += [""]

    lines += ["## Method", "", _METHOD, ""]

    peers = [p for p in peers_in(rows) if p not in ("torch-backward", "numpy-fwd")]
    main_rows = [r for r in rows if r["primitives"] is None]
    if main_rows:
        lines += ["## Results", ""]
        head = ["workload", "size", "dtype", *peers, "floor"]
        head += ["xpdiff / fastest peer", "xpdiff / jax-jit", "xpdiff / floor"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in main_rows:
            cells = [r["workload"], r["size"], r["dtype"]]
            cells += [_cell(r, p) for p in peers]
            cells += [format_time(r["floor_s"])]
            fastest = _ratio(r["ratio_fastest"])
            if r["fastest_peer"]:
                fastest += f" ({r['fastest_peer']})"
            cells += [fastest, _ratio(r["ratio_jax_jit"]), _ratio(r["ratio_floor"])]
            lines += ["| " + " | ".join(cells) + " |"]
        lines += [""]
        lines += ["Workloads:", ""]
        seen: set[str] = set()
        for r in main_rows:
            if r["workload"] in seen:
                continue
            seen.add(r["workload"])
            sizes = "; ".join(
                f"{q['size']} {q['dtype']}: {q['shapes']}"
                for q in main_rows if q["workload"] == r["workload"]
            )
            lines += [f"- **{r['workload']}** — {r['description']} ({sizes})"]
        lines += [""]

    over_rows = [r for r in rows if r["primitives"] is not None]
    if over_rows:
        lines += ["## Per-primitive overhead", ""]
        all_peers = peers_in(over_rows)
        head = ["workload", *all_peers]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in over_rows:
            cells = [f"{r['workload']} ({r['primitives']} primitives, {r['shapes']})"]
            for p in all_peers:
                t = r["times"].get(p)
                if t is None:
                    cells.append(_cell(r, p))
                else:
                    mark = " ≠" if r["agree"].get(p) is False else ""
                    cells.append(f"{t / r['primitives'] * 1e6:.2f} µs/prim{mark}")
            lines += ["| " + " | ".join(cells) + " |"]
        lines += [""]
        lines += [f"- **{r['workload']}** — {r['description']}" for r in over_rows[:1]]
        lines += [""]

    mem_rows = [r for r in rows if r.get("memory")]
    if mem_rows:
        mem_peers = [p for p in PEER_ORDER if any(p in r["memory"] for r in mem_rows)]
        lines += ["## Peak memory of one call", "",
                  "Bytes in use at the peak of one warm call above what was in use before it "
                  "(CuPy: a pool memory hook; torch: `max_memory_allocated`; JAX: "
                  "`memory_stats()['peak_bytes_in_use']`; NumPy: tracemalloc). `?`: no figure "
                  "(see the notes below the table).", ""]
        head = ["workload", "size", "dtype", *mem_peers]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in mem_rows:
            cells = [r["workload"], r["size"], r["dtype"]]
            cells += [_bytes(r["memory"].get(p)) if p in r["memory"] else "—" for p in mem_peers]
            lines += ["| " + " | ".join(cells) + " |"]
        why = sorted({f"- {p}: {n}" for r in mem_rows for p, n in r.get("memory_notes", {}).items()})
        lines += ["", *why, ""] if why else [""]

    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for peer, note in r["notes"].items():
            names = grouped.setdefault((peer, note), [])
            if r["workload"] not in names:
                names.append(r["workload"])
    notes = [f"- {peer} on {', '.join(names)}: {note}" for (peer, note), names in grouped.items()]
    errors = [f"- {r['workload']}/{r['size']} {p}: `{msg}`" for r in rows for p, msg in r["errors"].items()]
    unavailable = sorted({f"- {p}: {msg}" for r in rows for p, msg in r["unavailable"].items()})
    if notes:
        lines += ["## Notes", "", *notes, ""]
    if errors:
        lines += ["## Errors", "", *errors, ""]
    if unavailable:
        lines += ["## Peers not run", "", *unavailable, ""]
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Log-scale grouped bar chart of median times; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    sizes = [s for s in ("small", "large") if any(r["size"] == s for r in rows)]
    if not sizes:
        return False
    peers = peers_in(rows)
    fig, axes = plt.subplots(len(sizes), 1, figsize=(13, 4.2 * len(sizes)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        sub = [r for r in rows if r["size"] == size]
        local = [p for p in peers if any(p in r["times"] for r in sub)]
        width = 0.8 / max(1, len(local))
        xs = np.arange(len(sub))
        for j, peer in enumerate(local):
            vals = [r["times"].get(peer) or np.nan for r in sub]
            bars = ax.bar(
                xs + (j - (len(local) - 1) / 2) * width,
                vals,
                width,
                label=peer,
                color=cmap(peers.index(peer)),
            )
            for bar, r in zip(bars, sub, strict=True):
                if r["agree"].get(peer) is False:  # result disagrees with the consensus
                    bar.set_hatch("xx")
        floors = [r["floor_s"] or np.nan for r in sub]
        ax.scatter(xs, floors, marker="_", s=600, color="black", label="write floor", zorder=3)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([r["workload"] for r in sub], rotation=20, ha="right")
        ax.set_ylabel("median time per call [s]")
        ax.set_title(f"{title} — {size}")
        ax.grid(axis="y", which="both", alpha=0.3)
    legend: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = sorted(legend, key=lambda p: peers.index(p) if p in peers else -1)
    handles = [legend[label] for label in labels]
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False)
    fig.text(0.99, 0.005, "hatched: result disagrees with the other peers", ha="right", fontsize=7)
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
