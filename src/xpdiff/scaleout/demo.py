"""``xpdiff demo --dask``: per-sample Jacobians larger than this machine's memory,
computed chunk by chunk on a ``LocalCluster`` and written to Zarr.

Layer: scale-out (beside :mod:`xpdiff.scaleout.dask`); Dask, distributed, Zarr and
psutil are imported when the demo runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..transforms import api as _api
from .layout import INSTALL_HINT

D_IN, D_HIDDEN, D_OUT = 64, 128, 64


def mlp(x: Any, W1: Any, W2: Any) -> Any:
    """The demo's function: a tanh MLP, batched over the leading dims of ``x``."""
    xp = x.__array_namespace__()
    return xp.matmul(xp.tanh(xp.matmul(x, W1)), W2)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


class PeakRSS:
    """Peak resident memory of this process and all its descendants, sampled with psutil
    (and, on Linux, the kernel's own high-water mark ``VmHWM`` of each process still alive)."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.psutil, self.interval = psutil, interval
        self.root = psutil.Process()
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _procs(self) -> list:
        try:
            return [self.root] + self.root.children(recursive=True)
        except self.psutil.Error:
            return [self.root]

    def sample(self) -> None:
        for p in self._procs():
            try:
                rss = p.memory_info().rss
                if p.pid not in self.names:
                    self.names[p.pid] = self._name(p)
                hwm = self._hwm(p.pid)
            except self.psutil.Error:
                continue
            self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss, hwm)

    def _name(self, p: Any) -> str:
        if p.pid == self.root.pid:
            return "main (client, scheduler)"
        cmd = " ".join(p.cmdline())
        if "resource_tracker" in cmd:
            return "resource tracker"
        if "spawn_main" in cmd or "forkserver" in cmd:
            return "worker process"
        return p.name()

    @staticmethod
    def _hwm(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakRSS:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> list[str]:
        rows = sorted(self.peak.items(), key=lambda kv: (kv[0] != self.root.pid, kv[0]))
        return [f"  pid {pid:>7}  {self.names.get(pid, '?'):<26} peak RSS {peak / 2**30:6.2f} GiB"
                for pid, peak in rows]


@contextlib.contextmanager
def _client(client: Any, workers: int) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def run(size_gb: float | None = None, chunk: int = 4096, workers: int = 2, out: str | None = None,
        keep: bool = False, echo: Callable[[str], None] = print, client: Any = None) -> int:
    """Run the demo; ``size_gb``: the Jacobian's uncompressed size (default twice the RAM);
    ``client``: a ``distributed.Client`` to use instead of starting a ``LocalCluster``.
    Returns the exit status (0: the result read back matches the in-memory engine)."""
    try:
        import dask.array as da
        import numpy as np
        import psutil
        import zarr  # noqa: F401  (to_zarr needs it)
        from distributed import progress
    except ImportError as e:
        echo(f"xpdiff demo --dask needs Dask, distributed, Zarr and psutil: {INSTALL_HINT} ({e})")
        return 2

    ram = psutil.virtual_memory().total
    per_sample = D_OUT * D_IN * 8
    target = size_gb * 1e9 if size_gb is not None else 2 * ram
    n = max(chunk, int(target // per_sample) // chunk * chunk)
    size = n * per_sample
    base = out or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    free = shutil.disk_usage(base).free
    if size * 1.05 > free:
        echo(f"xpdiff demo --dask: the result needs up to {_gb(size)} of disk, {base} has {_gb(free)} free; "
             f"choose a smaller --size-gb or another --out")
        return 2
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((D_IN, D_HIDDEN)) / math.sqrt(D_IN)
    W2 = rng.standard_normal((D_HIDDEN, D_OUT)) / math.sqrt(D_HIDDEN)
    echo(f"per-sample Jacobians dy/dx of a tanh MLP {D_IN} -> {D_HIDDEN} -> {D_OUT}, float64")
    echo(f"samples: {n:,} in chunks of {chunk} ({n // chunk} tasks); result {n:,} x {D_OUT} x {D_IN}: "
         f"{_gb(size)} uncompressed; this machine: {ram / 2**30:.1f} GiB RAM "
         f"(result / RAM = {size / ram:.2f})")

    # the in-memory engine on one chunk, in this process
    jac = _api.jacobian(mlp, batch_ndim=1, data_argnums=0)
    x0 = rng.standard_normal((chunk, D_IN))
    jac(x0, W1, W2)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        jac(x0, W1, W2)
        times.append(time.perf_counter() - t0)
    mem_rate = chunk / min(times)
    echo(f"in-memory engine, one chunk of {chunk} samples (this process): {mem_rate:,.0f} samples/s "
         f"({mem_rate * per_sample / 2**20:,.0f} MiB/s of Jacobian)")

    tmp = tempfile.mkdtemp(prefix="xpdiff-dask-demo-", dir=out)
    path = os.path.join(tmp, "jacobians.zarr")
    try:
        with PeakRSS() as rss, _client(client, workers) as client:
            x = da.random.default_rng(0).standard_normal((n, D_IN), chunks=(chunk, D_IN))
            J = jac(x, W1, W2)  # lazy: one task per chunk of x
            nw = len(client.scheduler_info(n_workers=-1)["workers"])
            echo(f"Dask cluster: {nw} worker processes; Zarr store in a temporary directory ({path})")
            t0 = time.perf_counter()
            fut = client.compute(da.to_zarr(J, path, compute=False, overwrite=True))
            progress(fut)
            fut.result()
            dt = time.perf_counter() - t0
            echo("")
            rss.sample()
            # check: the first chunk read back from Zarr against the in-memory engine
            back = da.from_zarr(path)
            first = np.asarray(back[:chunk])
            err = float(np.max(np.abs(first - jac(x[:chunk].compute(), W1, W2))))
        disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        echo(f"written in {dt:,.1f} s: {n / dt:,.0f} samples/s ({size / dt / 2**20:,.0f} MiB/s of Jacobian, "
             f"{nw} workers, compute + compression + disk)")
        echo(f"Zarr on disk: {_gb(disk)} for {_gb(size)} uncompressed (ratio {size / max(disk, 1):.2f})")
        echo(f"chunk 0 read back vs the in-memory engine: max abs difference {err:.1e}")
        echo("peak resident memory of every process:")
        for line in rss.report():
            echo(line)
        echo(f"  largest single process: {max(rss.peak.values()) / 2**30:.2f} GiB; "
             f"result: {size / 2**30:.1f} GiB")
        ok = err <= 1e-12
        echo("OK" if ok else "MISMATCH")
        return 0 if ok else 1
    finally:
        if keep:
            echo(f"kept {path}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
