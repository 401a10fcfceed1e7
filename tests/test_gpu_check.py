"""The GPU check's logic on a CPU: ci/gpu-check.sh without a GPU, the benchmark's GPU sizes,
memory figures, the xpdiff-jit column and its reports written as it goes.

(The whole script path runs in CI as ``ci/gpu-check.sh --dry-run``.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpdiff
from xpdiff.bench import run
from xpdiff.bench.gpu import GPU_SHAPES, PoolPeak, gpu_params, peak_bytes
from xpdiff.bench.workloads import WORKLOAD_NAMES, gpu_workloads

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci" / "gpu-check.sh"


def _script(tmp_path: Path, fake_cupy: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    site = tmp_path / "site"
    site.mkdir()
    if fake_cupy is not None:
        (site / "cupy").mkdir()
        (site / "cupy" / "__init__.py").write_text(fake_cupy)
    else:  # hide a real CuPy, if any: a module that fails to import
        (site / "cupy.py").write_text("raise ImportError('No module named cupy')\n")
    env["PYTHONPATH"] = str(site)
    env["PYTHON"] = sys.executable
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils")
def test_gpu_check_stops_without_cupy(tmp_path: Path) -> None:
    r = _script(tmp_path, None)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "CuPy is not installed" in r.stdout
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| gpu | failed |" in summary and "| install |" not in summary  # nothing installed


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils")
def test_gpu_check_fails_without_a_usable_gpu(tmp_path: Path) -> None:
    fake = ("__version__ = '0.0-stand-in'\n"
            "class _Runtime:\n"
            "    @staticmethod\n"
            "    def getDeviceCount():\n"
            "        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
            "class cuda:\n"
            "    runtime = _Runtime\n")
    r = _script(tmp_path, fake)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no usable GPU" in r.stdout and "cudaErrorNoDevice" in r.stdout
    parts = [json.loads(line) for line in (tmp_path / "out" / "parts.jsonl").read_text().splitlines()]
    assert [(p["part"], p["status"]) for p in parts] == [("gpu", "failed")]


def test_gpu_sizes_fill_the_budget() -> None:
    for name in WORKLOAD_NAMES:
        fixed, key, per_unit, power, cap = GPU_SHAPES[name]
        if not key:
            continue
        for itemsize in (4, 8):
            budget = 1 << 30
            p = gpu_params(name, budget, itemsize)
            units = p[key] ** power * per_unit(fixed) * itemsize
            assert units <= budget  # never over
            if p[key] < cap:  # and within one step of it
                assert (p[key] + 1) ** power * per_unit(fixed) * itemsize > budget
    assert gpu_params("hessian", 1 << 40, 8) == {"n": 8192, "m": 32768}  # capped (n^3 work)
    assert gpu_params("elementwise-jac", 1, 4)["B"] == 1  # at least one sample


def test_gpu_workloads_in_both_dtypes() -> None:
    cases = gpu_workloads(1 << 16, ("float32", "float64"), ["elementwise-jac", "overhead"])
    assert [(c.name, c.dtype) for c in cases] == [
        ("elementwise-jac", "float32"), ("overhead", "float32"),
        ("elementwise-jac", "float64"), ("overhead", "float64")]
    x = cases[0].make_inputs(np.random.default_rng(0))["x"]
    assert x.dtype == np.float32 and x.shape == (1, 256)


def test_pool_peak_follows_cupy_pool_semantics() -> None:
    """Simulated CuPy pool: malloc hands a block out (new or cached), free gives it back to
    the pool (which keeps it cached): only blocks handed out count, so a warm pool (all
    blocks cached from an earlier call) gives the same peak as a cold one."""

    class Pool:
        def __init__(self, hook: PoolPeak):
            self.cached: list[int] = []
            self.hook = hook

        def malloc(self, size: int) -> int:
            mem = -(-size // 512) * 512  # CuPy rounds up to 512-byte units
            if mem in self.cached:
                self.cached.remove(mem)
            self.hook.malloc_postprocess(device_id=0, size=size, mem_size=mem, mem_ptr=id(mem),
                                         pmem_id=0)
            return mem

        def free(self, mem: int) -> None:
            self.hook.free_postprocess(device_id=0, mem_size=mem, mem_ptr=0, pmem_id=0)
            self.cached.append(mem)

    def workload(pool: Pool) -> None:
        a = pool.malloc(1000)
        b = pool.malloc(3000)
        pool.free(a)
        c = pool.malloc(100)
        pool.free(b)
        pool.free(c)

    peaks = []
    pool = Pool(PoolPeak())
    for _ in range(2):  # cold, then warm (every block cached)
        pool.hook = PoolPeak()
        workload(pool)
        peaks.append(pool.hook.peak)
    assert peaks == [1024 + 3072, 1024 + 3072] and pool.hook.live == 0
    assert pool.cached  # the pool kept its blocks: a total-bytes probe would count them


def test_peak_bytes_numpy() -> None:
    peak, note = peak_bytes("xpdiff", "numpy", lambda: np.ones(1 << 17), lambda o: None)
    assert note is None and peak >= 8 << 17
    assert peak_bytes("torch", "numpy", lambda: None, lambda o: None)[0] is None


def test_gpu_bench_reports_as_it_goes(tmp_path: Path, monkeypatch) -> None:
    """Rewritten after every workload; the deadline leaves the rest listed as not run;
    the xpdiff-jit column says "not available" while xpdiff has no jit."""
    monkeypatch.delattr(xpdiff, "jit", raising=False)
    seen: list[dict] = []
    import xpdiff.bench as bench

    real = bench.write_outputs

    def spy(rows, *args, **kw):
        out = real(rows, *args, **kw)
        seen.append(json.loads(out["json"].read_text()))
        return out

    monkeypatch.setattr(bench, "write_outputs", spy)
    rows = run(sizes=("gpu",), peers=["xpdiff-jit"], out_dir=tmp_path, progress=False,
               quick=True, repeat=1, workload_names=["elementwise-jac", "softmax-jac", "overhead"],
               malloc="default", dtypes=("float32",), result_bytes=1 << 16, peak_memory=True,
               deadline=0.0, name="gpu-float32")
    assert rows == []  # deadline 0: nothing starts
    assert seen[-1]["status"]["not_run"] == ["elementwise-jac/gpu float32", "softmax-jac/gpu float32",
                                             "overhead/gpu float32"]
    seen.clear()
    rows = run(sizes=("gpu",), peers=["xpdiff-jit"], out_dir=tmp_path, progress=False,
               quick=True, repeat=1, workload_names=["elementwise-jac", "overhead"],
               malloc="default", dtypes=("float32",), result_bytes=1 << 16, peak_memory=True,
               name="gpu-float32")
    assert [s["status"]["pending"] for s in seen] == [["overhead/gpu float32"], [], []]
    assert seen[-1]["status"]["complete"]
    assert rows[0]["dtype"] == "float32" and rows[0]["memory"]["xpdiff"] > 0
    assert "xpdiff-jit" in rows[0]["unavailable"]
    md = (tmp_path / "gpu-float32.md").read_text()
    assert "not available" in md and "## Peak memory of one call" in md


def test_xpdiff_jit_column_when_jit_exists(tmp_path: Path, monkeypatch) -> None:
    staged = []

    def jit(fn):
        staged.append(fn)
        return fn

    monkeypatch.setattr(xpdiff, "jit", jit, raising=False)
    rows = run(sizes=("gpu",), peers=["xpdiff-jit"], out_dir=None, progress=False, quick=True,
               repeat=1, workload_names=["elementwise-jac"], malloc="default",
               dtypes=("float64",), result_bytes=1 << 16)
    assert staged and "xpdiff-jit" in rows[0]["times"] and rows[0]["agree"]["xpdiff-jit"]
