"""Smoke tests of the benchmark harness (no peer library needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpdiff.bench import main, run
from xpdiff.bench.peers import expand_peers
from xpdiff.bench.timing import agreement, allclose
from xpdiff.bench.workloads import WORKLOAD_NAMES, workloads


def test_import_loads_no_peer() -> None:
    code = (
        "import sys, xpdiff.bench, xpdiff.bench.workloads; "
        "print(sorted(m for m in ('jax', 'torch', 'autograd', 'matplotlib', 'tqdm', 'cupy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_workload_has_both_sizes_but_overhead() -> None:
    small = {w.name for w in workloads(("small",))}
    large = {w.name for w in workloads(("large",))}
    assert small == set(WORKLOAD_NAMES)
    assert large == set(WORKLOAD_NAMES) - {"overhead"}


def test_expand_peers() -> None:
    assert expand_peers([]) == ("xpdiff", "numpy-closed", "numpy-fwd")
    assert "torch-backward" in expand_peers(["torch"])
    with pytest.raises(ValueError, match="unknown peer"):
        expand_peers(["tensorflow"])


def test_agreement_marks_the_odd_one_out() -> None:
    a, b = [np.ones(3)], [np.ones(3) * 2]
    assert allclose(a, [np.ones(3) + 1e-12])
    marks = agreement({"jax": a, "torch": a, "xpdiff": b}, ("jax", "torch", "xpdiff"))
    assert marks == {"jax": True, "torch": True, "xpdiff": False}
    assert agreement({"jax": a}, ("jax",)) == {"jax": None}


def test_run_small_without_peers(tmp_path: Path) -> None:
    rows = run(
        sizes=("small",),
        peers=[],
        out_dir=tmp_path,
        progress=False,
        quick=True,
        workload_names=["elementwise-jac", "per-sample-grad", "overhead"],
        malloc="default",  # (keep the test process's allocator as it is)
    )
    assert [r["workload"] for r in rows] == ["elementwise-jac", "per-sample-grad", "overhead"]
    for row in rows:
        assert not row["errors"], row["errors"]
        assert row["times"]["xpdiff"] > 0
        assert row["floor_s"] > 0
    assert rows[0]["result_shapes"]["xpdiff"] == [[16, 16, 16]]
    assert rows[1]["result_shapes"]["xpdiff"] == [[16, 8, 8]]
    assert rows[2]["times"]["numpy-fwd"] > 0
    text = (tmp_path / "cpu.md").read_text(encoding="utf-8")
    assert "OPENBLAS_CORETYPE" in text and "| elementwise-jac | small |" in text
    assert "- Allocator: the C library's default malloc settings" in text
    assert json.loads((tmp_path / "cpu.json").read_text(encoding="utf-8"))["rows"]


def test_cli_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--size", "small", "--peers", "", "--quick", "--workloads", "hessian",
            "--malloc", "default"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    assert "hessian" in capsys.readouterr().out
    assert (tmp_path / "cpu.md").exists()


def test_memory_report_small(tmp_path: Path) -> None:
    from xpdiff.bench.memory import PER_SAMPLE, run_memory, write

    rows = run_memory("small", repeat=1)
    assert [r["workload"] for r in rows] == list(PER_SAMPLE)
    for r in rows:
        assert r["peak"] >= r["result"] > 0  # the result itself is allocated in the call
        assert r["peak_bounded"] > 0 and r["time_bounded"] > 0
    text = write(rows, tmp_path).read_text(encoding="utf-8")
    assert "| mlp-jac (small) |" in text


def test_keep_freed_memory_in_a_fresh_process() -> None:
    code = ("from xpdiff.bench.timing import keep_freed_memory; print(keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text = out.stdout.strip()
    if text == "None":
        pytest.skip("the C library is not glibc (no mallopt)")
    assert "M_MMAP_MAX=0" in text and "M_TRIM_THRESHOLD" in text


def test_missing_peers_are_reported_once_and_reports_stay_out_of_the_tree(tmp_path, monkeypatch,
                                                                           capsys) -> None:
    from xpdiff.bench import default_out_dir, missing_peer_lines
    from xpdiff.bench.peers import Runtime, expand_peers

    missing = [p for p in ("jax", "jax-jit", "torch", "autograd")
               if Runtime().availability(p) is not None]
    if not missing:
        pytest.skip("every peer is installed here")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_out_dir() == tmp_path / "xpdiff" / "bench"
    assert main(["--quick", "--repeat", "1", "--workloads", "overhead", "--peers", ",".join(missing),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert skipped == missing_peer_lines(Runtime(), expand_peers(missing))
    assert all("pip install" in line for line in skipped)
    assert len(skipped) <= len(missing) and not any("overhead" in line for line in skipped)
    assert (tmp_path / "xpdiff" / "bench" / "cpu.md").exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_one_thread_pins_the_process_to_one_cpu_for_the_run() -> None:
    from xpdiff.bench import _thread_limits

    before = os.sched_getaffinity(0)
    with _thread_limits(1):
        assert len(os.sched_getaffinity(0)) == 1
    assert os.sched_getaffinity(0) == before
