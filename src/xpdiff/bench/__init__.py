"""Benchmark suite: xpdiff against JAX, torch.func and HIPS autograd.

Run it from the repository root with the OpenBLAS tuning variables unset, so
that NumPy's OpenBLAS runs the kernel it detects for this CPU::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m xpdiff.bench --size all --out docs/benchmarks

(or ``xpdiff bench ...`` once the CLI entry is wired).  The report header
states whether either variable was set.  Options:

``--size small|large|all|gpu``
    problem sizes (default all).  ``gpu``: sizes that fill the device, the
    largest array of each workload about ``--result-bytes`` (default 1/64 of the
    GPU's memory; see :mod:`xpdiff.bench.gpu`), in float32 and float64.
``--dtype float32|float64|both``
    run every workload in this dtype (default: float64 for small, float32 for
    large, both for gpu).
``--result-bytes N``
    the size of the largest array of each workload at ``--size gpu``.
``--peak-memory``
    also measure the peak memory of one call of every peer (CuPy pool hook,
    ``torch.cuda.max_memory_allocated``, JAX ``memory_stats``; tracemalloc on
    NumPy).
``--deadline SECONDS``
    start no workload after this many seconds (the rest is reported as not run).
``--name NAME``
    file names of the report (default ``cpu``, or ``gpu`` with ``--backend cupy``).
    The report (markdown and JSON) is rewritten after every workload, so a run
    stopped early keeps what it measured.
``--peers xpdiff-jit,jax,jax-jit,torch,autograd``
    which peers to compare against (default all; missing ones are skipped;
    ``xpdiff-jit`` is "not available" while xpdiff has no ``jit``).
``--out DIR``
    where ``cpu.md``, ``cpu.png`` and ``cpu.json`` go (``gpu.*`` with
    ``--backend cupy``); default a per-user cache folder
    (``~/.cache/xpdiff/bench``), never the source tree; the project's own figures
    are refreshed with ``--out docs/benchmarks``.
``--quick``
    fewer repeats and shorter measurements (a smoke run).
``--backend numpy|cupy``
    ``cupy`` feeds xpdiff CuPy arrays and runs JAX / torch on their GPU.
``--workloads NAME,...``
    a subset of the workloads (see :data:`WORKLOAD_NAMES`).
``--threads N``
    limit every library to N CPU threads (BLAS/OpenMP via threadpoolctl,
    ``torch.set_num_threads``, single-threaded XLA for 1) and pin the process to
    N CPUs for the run (XLA's CPU runtime otherwise uses more).  Use ``1`` on a
    machine where other work runs: multi-threaded BLAS calls then wait on
    busy cores and their timings become meaningless.
``--repeat N`` / ``--no-progress``
    timed repeats per case (median reported) / no progress output.

The report also records the load average before the run and flags a busy
machine.

Peers are imported lazily: neither importing this package nor running it
requires JAX, torch, autograd, matplotlib or tqdm.  The xpdiff column is
skipped (and reported as such) while the xpdiff core is not importable.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .gpu import DEFAULT_FRACTION, device_total_memory, peak_bytes, release_memory
from .peers import (
    PEER_ORDER,
    SELECTABLE_PEERS,
    PeerUnavailable,
    Runtime,
    expand_peers,
    to_numpy,
)
from .report import (
    OPENBLAS_VARS,
    format_time,
    load_average,
    machine_info,
    markdown,
    plot,
)
from .timing import QUICK, Timer, TimingConfig, agreement, keep_freed_memory, write_floor
from .workloads import SIZES, WORKLOAD_NAMES, Workload, gpu_workloads, workloads

__all__ = ["WORKLOAD_NAMES", "main", "run", "run_workload"]

#: Agreement ties are broken in favour of the established libraries.
_PREFERENCE = ("jax", "torch", "autograd", "jax-jit", "torch-backward", "xpdiff", "xpdiff-jit")
_FASTEST_EXCLUDES = ("xpdiff", "xpdiff-jit", "numpy-fwd")
#: ``--result-bytes`` on the CPU when not given (``--size gpu`` with NumPy: a rehearsal)
_CPU_RESULT_BYTES = 1 << 20
_SEED = 20240601


class _BenchProgress:
    """tqdm when installed, plain prints otherwise (or nothing)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        self._done = 0
        self._total = total
        self._enabled = enabled
        if enabled:
            if not sys.stderr.isatty():  # a log file: plain lines
                return
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc="xpdiff bench", unit="case", dynamic_ncols=True)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(label)

    def done(self, label: str, result: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self._enabled:
            print(f"[{self._done}/{self._total}] {label}: {result}", flush=True)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        elif self._enabled:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_workload(
    workload: Workload,
    runtime: Runtime,
    peers: Sequence[str],
    config: TimingConfig,
    progress: _BenchProgress | None = None,
    peak_memory: bool = False,
) -> dict[str, Any]:
    """Time one workload for every peer and return its result row (with
    ``peak_memory``, also the peak bytes of one call of every peer: ``row["memory"]``)."""
    inputs = workload.make_inputs(np.random.default_rng(_SEED))
    row: dict[str, Any] = {
        "workload": workload.name,
        "size": workload.size,
        "dtype": workload.dtype,
        "shapes": workload.shapes,
        "description": workload.description,
        "primitives": workload.primitives,
        "times": {},
        "samples": {},
        "errors": {},
        "skipped": [],
        "unavailable": {},
        "notes": {},
        "agree": {},
        "result_shapes": {},
        "memory": {},
        "memory_notes": {},
    }
    results: dict[str, list[np.ndarray]] = {}
    timers: dict[str, Timer] = {}
    outcomes: dict[str, str] = {}

    def failed(peer: str, exc: Exception) -> None:
        if isinstance(exc, PeerUnavailable):
            row["unavailable"][peer] = str(exc)
            outcomes[peer] = "unavailable"
        else:  # a failing peer must not stop the suite
            row["errors"][peer] = f"{type(exc).__name__}: {exc}"[:300]
            outcomes[peer] = "error"
        timers.pop(peer, None)

    # 1. build, warm up and calibrate every peer
    for peer in peers:
        builder = workload.builders.get(peer)
        reason = runtime.availability(peer)
        if reason is not None:
            row["unavailable"][peer] = reason
            outcomes[peer] = "unavailable"
        elif builder is None:
            if peer in ("xpdiff", *SELECTABLE_PEERS):
                row["skipped"].append(peer)
            outcomes[peer] = "n/a"
        else:
            gc.collect()
            try:
                call = builder(runtime, peer, inputs)
                sync = lambda o, p=peer: runtime.sync(p, o)  # noqa: E731
                timers[peer] = Timer(call, sync, config)
                if peak_memory:  # one more call, warm, watched
                    lib = runtime.library(peer)
                    handle = runtime.get(peer) if lib in ("jax", "torch") else None
                    peak, why = peak_bytes(lib, runtime.backend, call, sync, handle)
                    row["memory"][peer] = peak
                    if why:
                        row["memory_notes"][peer] = why
            except Exception as exc:  # noqa: BLE001
                failed(peer, exc)
    # 2. measure in rounds: one measurement of every peer per round
    while any(not t.done for t in timers.values()):
        for peer, timer in list(timers.items()):
            if not timer.done:
                try:
                    timer.step()
                except Exception as exc:  # noqa: BLE001
                    failed(peer, exc)
    # 3. results
    for peer in peers:
        label = f"{workload.key} {peer}"
        if progress is not None:
            progress.start(label)
        timer = timers.get(peer)
        if timer is not None:
            try:
                arrays = to_numpy(timer.out)
            except Exception as exc:  # noqa: BLE001
                failed(peer, exc)
            else:
                median = timer.median
                row["times"][peer] = median
                row["samples"][peer] = timer.times
                row["result_shapes"][peer] = [list(a.shape) for a in arrays]
                if peer != "numpy-fwd":
                    results[peer] = arrays
                note = workload.notes.get(peer)
                if runtime.backend != "numpy" and peer == "autograd":
                    note = "; ".join(filter(None, [note, "runs on the CPU (NumPy only)"]))
                if note:
                    row["notes"][peer] = note
                outcomes[peer] = format_time(median)
        if progress is not None and outcomes.get(peer) != "unavailable":  # said once, up front
            progress.done(label, outcomes.get(peer, "n/a"))
    timers.clear()

    row["agree"] = agreement(results, _PREFERENCE)
    reference = next((results[p] for p, ok in row["agree"].items() if ok is not False), None)
    if reference is None and results:
        reference = next(iter(results.values()))
    row["floor_s"] = None
    if reference is not None:
        xp = np
        if runtime.backend == "cupy":
            try:
                xp = runtime.get("numpy-fwd")
            except PeerUnavailable:
                xp = np
        row["floor_s"] = write_floor(reference, config, xp)
    if progress is not None:
        progress.done(f"{workload.key} floor", format_time(row["floor_s"]))

    t_xd = row["times"].get("xpdiff")
    candidates = {
        p: t
        for p, t in row["times"].items()
        if p not in _FASTEST_EXCLUDES and row["agree"].get(p) is not False
    }
    fastest = min(candidates, key=candidates.__getitem__) if candidates else None
    row["fastest_peer"] = fastest
    row["ratio_fastest"] = t_xd / candidates[fastest] if t_xd and fastest else None
    t_jit = row["times"].get("jax-jit")
    row["ratio_jax_jit"] = t_xd / t_jit if t_xd and t_jit else None
    row["ratio_floor"] = t_xd / row["floor_s"] if t_xd and row["floor_s"] else None
    return row


# how to install the library behind each peer (from a checkout, and the package itself)
_PEER_INSTALL = {"jax": "jax", "torch": "torch==2.13.0", "autograd": "autograd", "cupy": "cupy-cuda12x"}


def missing_peer_lines(runtime: Runtime, peers: Sequence[str]) -> list[str]:
    """One line per selected peer that cannot run here, with the command that installs it.

    >>> from xpdiff.bench.peers import Runtime
    >>> missing_peer_lines(Runtime(), ["xpdiff"])
    []
    """
    by_reason: dict[str, list[str]] = {}  # jax and jax-jit share one line
    for peer in peers:
        reason = runtime.availability(peer)
        if reason is None:
            continue
        pkg = _PEER_INSTALL.get(runtime.library(peer))
        if pkg and "No module" in reason:
            reason += (f"; install it with `pip install -e \".[bench]\"` in a checkout of xpdiff, "
                       f"or `pip install {pkg}`")
        by_reason.setdefault(reason, []).append(peer)
    lines = [f"skipped {', '.join(names)}: {reason}" for reason, names in by_reason.items()]
    return lines


def default_out_dir() -> Path:
    """Where reports go unless ``--out`` says otherwise: a per-user cache folder
    (``$XDG_CACHE_HOME/xpdiff/bench``, else ``~/.cache/xpdiff/bench``), never the
    source tree."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xpdiff" / "bench"


def _env_warning() -> str | None:
    set_vars = [f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ]
    if not set_vars:
        return None
    return (
        "warning: " + ", ".join(set_vars) + " is set; rerun with "
        "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for representative BLAS timings"
    )


def run(
    sizes: Sequence[str] = ("small", "large"),
    peers: Sequence[str] | None = None,
    repeat: int = 7,
    out_dir: str | os.PathLike[str] | None = "default",
    progress: bool = True,
    *,
    backend: str = "numpy",
    quick: bool = False,
    workload_names: Sequence[str] | None = None,
    command: str | None = None,
    threads: int | None = None,
    malloc: str = "keep",
    dtypes: Sequence[str] | None = None,
    result_bytes: int | None = None,
    peak_memory: bool = False,
    deadline: float | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Run the benchmark suite and return one result row per workload and size.

    Parameters
    ----------
    sizes:
        any of ``"small"``, ``"large"``, ``"gpu"`` (sizes from ``result_bytes``).
    peers:
        subset of ``("xpdiff-jit", "jax", "jax-jit", "torch", "autograd")``;
        ``None`` for all.  xpdiff always runs when importable; ``torch`` adds plain
        ``.backward()`` and NumPy forward-only timings on the overhead workload.
    repeat:
        timed measurements per peer and workload (the median is reported).
    out_dir:
        directory for ``cpu.md`` / ``cpu.png`` / ``cpu.json`` (``gpu.*`` for the
        cupy backend, ``<name>.*`` with ``name``); ``"default"`` is
        :func:`default_out_dir`; ``None`` writes nothing.  The
        markdown and JSON are rewritten after every workload.
    progress:
        show a progress bar (tqdm on a terminal) or progress lines.
    backend:
        ``"numpy"`` or ``"cupy"``.
    quick:
        shorter measurements (``repeat`` is capped at 3).
    workload_names:
        only these workloads (default: all of :data:`WORKLOAD_NAMES`).
    command:
        the command line recorded in the report header.
    threads:
        limit CPU threads of every peer (NumPy's BLAS and OpenMP pools via
        threadpoolctl, ``torch.set_num_threads``, single-threaded XLA when 1) and
        pin the process to that many CPUs while it runs; ``None`` keeps the
        libraries' defaults.
    malloc:
        ``"keep"`` (default): glibc's malloc keeps freed memory for the rest of
        the process, for every peer alike (:func:`~xpdiff.bench.timing.keep_freed_memory`),
        so repeated calls do not page-fault fresh memory; ``"default"`` leaves the
        allocator alone.
    dtypes:
        run every workload in each of these dtypes (``None``: float64 for small,
        float32 for large, both for gpu).
    result_bytes:
        ``sizes=("gpu",)``: bytes of each workload's largest array (default 1/64 of
        the GPU's memory; 1 MiB on the CPU).
    peak_memory:
        also record the peak memory of one call of every peer (``row["memory"]``).
    deadline:
        seconds after which no further workload starts; the ones left are listed
        in the report as not run.
    name:
        file names of the report.

    Returns
    -------
    list of dict
        keys include ``workload, size, dtype, times`` (peer -> median seconds),
        ``floor_s, agree, errors, ratio_fastest, ratio_jax_jit, ratio_floor, memory``.
    """
    start = time.monotonic()
    if out_dir == "default":
        out_dir = default_out_dir()
    config = QUICK if quick else TimingConfig()
    config = TimingConfig(
        repeat=max(1, min(repeat, config.repeat) if quick else repeat),
        warmup=config.warmup,
        min_time=config.min_time,
        budget=config.budget,
    )
    runtime = Runtime(backend=backend, threads=threads)
    peer_list = expand_peers(peers)
    for line in missing_peer_lines(runtime, peer_list):  # once, not once per workload
        print(line, file=sys.stderr)
    cases = _cases(sizes, workload_names, dtypes, result_bytes, runtime)

    allocator = keep_freed_memory() if malloc == "keep" else None
    load = load_average()
    warning = _env_warning()
    if warning and progress:
        print(warning, file=sys.stderr)
    if load is not None and load[0] > 0.5 and progress:
        print(
            f"warning: load average {load[0]} before the run: timings will be noisy",
            file=sys.stderr,
        )
    command = command or _call_text(sizes, peers, backend)
    rows: list[dict[str, Any]] = []
    not_run: list[str] = []

    def write(final: bool) -> None:
        if out_dir is not None:  # inside the thread limits: the report lists them
            write_outputs(rows, runtime, Path(out_dir), command, load, allocator, name=name,
                          pending=[f"{c.key} {c.dtype}" for c in cases[len(rows):]],
                          not_run=not_run, final=final)

    with _thread_limits(threads):
        bar = _BenchProgress(sum(len(peer_list) + 1 for _ in cases), progress)
        try:
            for i, case in enumerate(cases):
                if deadline is not None and time.monotonic() - start > deadline:
                    not_run.extend(f"{c.key} {c.dtype}" for c in cases[i:])
                    bar.note(f"time budget of {deadline:g}s spent: {len(cases) - i} workload(s) "
                             "not run")
                    break
                bar.note(f"workload {i + 1}/{len(cases)}: {case.key} {case.dtype} ({case.shapes})")
                rows.append(run_workload(case, runtime, peer_list, config, bar, peak_memory))
                release_memory(backend)
                write(final=False)
        finally:
            bar.close()
            write(final=True)
    return rows


def _cases(sizes: Sequence[str], names: Sequence[str] | None, dtypes: Sequence[str] | None,
           result_bytes: int | None, runtime: Runtime) -> list[Workload]:
    out: list[Workload] = []
    fixed = [s for s in sizes if s != "gpu"]
    if fixed:
        base = workloads(tuple(fixed), names)
        if dtypes is None:
            out += base
        else:
            from .workloads import make_workload

            out += [make_workload(w.name, w.size, dt) for dt in dtypes for w in base]
    if "gpu" in sizes:
        if result_bytes is None:
            total = device_total_memory(runtime.backend)
            result_bytes = int(total * DEFAULT_FRACTION) if total else _CPU_RESULT_BYTES
        out += gpu_workloads(result_bytes, dtypes or ("float32", "float64"), names)
    return out


@contextlib.contextmanager
def _pinned(threads: int) -> Iterator[None]:
    """The process pinned to ``threads`` of its CPUs for the run (where the OS can), the
    previous set restored after.  A thread count alone does not bind every library:
    XLA's CPU runtime kept about 1.7 cores busy under ``intra_op_parallelism_threads=1``
    on a 2-core machine, so "one thread per library" is made true by the CPUs."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield
        return
    before = getter(0)
    if len(before) <= threads:
        yield
        return
    setter(0, sorted(before)[-threads:])
    try:
        yield
    finally:
        setter(0, before)


def _thread_limits(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """threadpoolctl limits for the BLAS / OpenMP pools loaded so far, and the process
    pinned to that many CPUs (:func:`_pinned`)."""
    if threads is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(_pinned(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return stack
    stack.enter_context(threadpool_limits(limits=threads))
    return stack


def _call_text(sizes: Sequence[str], peers: Sequence[str] | None, backend: str) -> str:
    args = f"sizes={tuple(sizes)!r}, peers={peers!r}, backend={backend!r}"
    return f"xpdiff.bench.run({args})"


def write_outputs(
    rows: Sequence[dict[str, Any]],
    runtime: Runtime,
    out_dir: Path,
    command: str,
    load: tuple[float, float, float] | None = None,
    allocator: str | None = None,
    *,
    name: str | None = None,
    pending: Sequence[str] = (),
    not_run: Sequence[str] = (),
    final: bool = True,
) -> dict[str, Path]:
    """Write the markdown report and raw JSON (and, when ``final``, the plot);
    return their paths.  ``pending``: workloads still to run (a report written
    during the run says so); ``not_run``: workloads left out by the deadline."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = name or ("cpu" if runtime.backend == "numpy" else "gpu")
    info = machine_info(runtime.versions(), runtime.backend, load)
    info["threads"] = runtime.threads
    info["allocator"] = allocator or "the C library's default malloc settings"
    info["device"] = _device_text(runtime)
    paths = {"markdown": out_dir / f"{prefix}.md", "json": out_dir / f"{prefix}.json"}
    text = markdown(rows, info, command)
    if pending and not final:
        text += f"\n## Still to run\n\n{len(pending)} workload(s): " + ", ".join(pending) + "\n"
    if not_run:
        text += "\n## Not run (time budget spent)\n\n" + ", ".join(not_run) + "\n"
    _write_atomic(paths["markdown"], text + "\n")
    status = {"complete": final and not not_run, "pending": list(pending) if not final else [],
              "not_run": list(not_run)}
    _write_atomic(paths["json"], json.dumps({"machine": info, "status": status, "rows": list(rows)},
                                            indent=1, default=str) + "\n")
    if final:
        png = out_dir / f"{prefix}.png"
        title = f"xpdiff benchmarks ({'CPU' if runtime.backend == 'numpy' else 'GPU'})"
        if rows and plot(rows, png, title):
            paths["plot"] = png
    return paths


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step (a run killed while writing keeps the last report)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _device_text(runtime: Runtime) -> str | None:
    if runtime.backend != "cupy" or "cupy" not in sys.modules:
        return None
    cupy = sys.modules["cupy"]
    try:
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return f"{name} (device {dev.id}, {dev.mem_info[1] / 2**30:.1f} GiB)"
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpdiff bench",
        description="Benchmark xpdiff against JAX, torch.func and HIPS autograd, each peer "
        "measured in interleaved rounds; writes a markdown report, a JSON file and a plot.",
    )
    parser.add_argument("--size", choices=(*SIZES, "all", "gpu"), default="all",
                        help="problem sizes: small, large, all, or gpu (sizes that fill the card)")
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default=None,
                        help="dtype of every workload (default: per size; both for gpu)")
    parser.add_argument("--result-bytes", type=float, default=None,
                        help="--size gpu: bytes of each workload's largest array "
                             "(default: 1/64 of the GPU's memory)")
    parser.add_argument("--peak-memory", action="store_true",
                        help="also measure the peak memory of one call of every peer")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which no further workload starts")
    parser.add_argument("--name", default=None, help="report file names (default cpu / gpu)")
    parser.add_argument(
        "--peers",
        default=",".join(SELECTABLE_PEERS),
        help=f"comma-separated subset of {','.join(SELECTABLE_PEERS)} (default: all)",
    )
    parser.add_argument("--out", default=str(default_out_dir()),
                        help="output directory (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="short run (at most 3 timed repeats; under a minute without peers)")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                        help="array library of the workloads (default: numpy)")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats (median)")
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated subset of {','.join(WORKLOAD_NAMES)}",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit every peer to this many CPU threads (default: library defaults)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: glibc malloc keeps freed memory for reuse, for every peer "
                             "(no page faults on repeated calls); default: leave it alone")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory of the per-sample Jacobians, default and with "
                             "max_memory = 2 x (result + inputs) (writes <out>/memory.md)")
    parser.add_argument("--modes", action="store_true",
                        help="only time xpdiff's jacfwd against jacrev and report the mode "
                             "jacobian(mode='auto') picks (writes <out>/modes.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry (``xpdiff bench`` / ``python -m xpdiff.bench``)."""
    args = _parser().parse_args(argv)
    sizes = SIZES if args.size == "all" else (args.size,)
    dtypes = {None: None, "both": ("float32", "float64")}.get(args.dtype, (args.dtype,))
    if (args.memory or args.modes) and args.malloc == "keep":
        keep_freed_memory()  # as for the peer comparison
    if args.memory:
        from .memory import run_memory
        from .memory import write as write_memory

        path = write_memory(run_memory(repeat=args.repeat), args.out)
        print(path.read_text(encoding="utf-8"))
        return 0
    if args.modes:
        from .modes import run_modes, write

        path = write(run_modes(tuple(sizes), repeat=args.repeat), args.out)
        print(path.read_text(encoding="utf-8"))
        return 0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    names = None
    if args.workloads:
        names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python -m xpdiff.bench {argv_text}".strip()
    rows = run(
        sizes=sizes,
        peers=peers,
        repeat=args.repeat,
        out_dir=args.out,
        progress=not args.no_progress,
        backend=args.backend,
        quick=args.quick,
        workload_names=names,
        command=command,
        threads=args.threads,
        malloc=args.malloc,
        dtypes=dtypes,
        result_bytes=None if args.result_bytes is None else int(args.result_bytes),
        peak_memory=args.peak_memory,
        deadline=args.deadline,
        name=args.name,
    )
    _print_summary(rows)
    if args.out:
        prefix = args.name or ("cpu" if args.backend == "numpy" else "gpu")
        print(f"wrote {Path(args.out) / (prefix + '.md')}")
    return 0


def _print_summary(rows: Sequence[dict[str, Any]]) -> None:
    peers = [p for p in PEER_ORDER if any(p in r["times"] for r in rows)]
    header = f"{'workload':<18}{'size':<7}" + "".join(f"{p:>16}" for p in peers) + f"{'floor':>12}"
    print(header)
    for r in rows:
        cells = ""
        for p in peers:
            text = format_time(r["times"].get(p))
            if r["agree"].get(p) is False:
                text += " !"
            elif p in r["errors"]:
                text = "error"
            cells += f"{text:>16}"
        print(f"{r['workload']:<18}{r['size']:<7}{cells}{format_time(r['floor_s']):>12}  {r['dtype']}")
    warning = _env_warning()
    if warning:
        print(warning)
