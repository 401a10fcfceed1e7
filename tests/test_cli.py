"""The command line: ``xpdiff info | demo | check | bench``."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

import xpdiff
import xpdiff.testing.optable
from xpdiff.__main__ import main
from xpdiff.testing import check as _check
from xpdiff.testing.optable import OPS, Op


def test_info_lists_version_backends_devices_and_default(capsys, monkeypatch):
    monkeypatch.delenv("XPDIFF_BACKEND", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"xpdiff {xpdiff.__version__}" in out
    assert "default backend: numpy (set $XPDIFF_BACKEND to change it)" in out
    found = next(line for line in out.splitlines() if line.startswith("backends found:"))
    assert "numpy" in found and "array_api_strict" in found
    assert any(line.strip().startswith("numpy") and "devices cpu" in line for line in out.splitlines())
    strict = next(line for line in out.splitlines() if line.strip().startswith("array_api_strict"))
    assert "CPU_DEVICE" in strict and "device1" in strict


def test_info_reports_the_environment_default(capsys, monkeypatch):
    monkeypatch.setenv("XPDIFF_BACKEND", "strict")
    assert main(["info"]) == 0
    assert "default backend: array_api_strict (from $XPDIFF_BACKEND=strict)" in capsys.readouterr().out
    monkeypatch.setenv("XPDIFF_BACKEND", "nope")
    assert main(["info"]) == 0
    assert "default backend: invalid ($XPDIFF_BACKEND: unknown backend 'nope'" in \
        capsys.readouterr().out


def test_check_passes_on_strict_device1(capsys):
    rc = main(["check", "--backend", "array_api_strict", "--device", "device1", "--no-progress",
               "--select", "matmul,tanh,setitem"])
    out = capsys.readouterr().out
    n = sum(1 for op in OPS if any(s in op.name for s in ("matmul", "tanh", "setitem")))
    assert rc == 0, out
    assert f"backend array_api_strict, device device1, dtype float64: {n} of {n} op-table " \
           f"entries pass, 0 fail" in out
    assert out.rstrip().endswith("OK")


def _wrong_rule_op() -> Op:
    """An entry whose derivative is wrong (a custom JVP rule off by a factor 2)."""
    @xpdiff.custom_jvp
    def cube(x):
        return x * x * x

    @cube.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return cube(x), 6.0 * x * x * t  # should be 3 x^2 t

    return Op("wrong_cube", lambda xp, x: cube(x), ((3,),))


def test_check_fails_and_exits_nonzero_on_a_wrong_derivative(capsys, monkeypatch):
    monkeypatch.setattr(xpdiff.testing.optable, "OPS", [OPS[0], _wrong_rule_op()])
    rc = main(["check", "--no-progress", "--first-order"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 of 2 op-table entries pass, 1 fail" in out
    assert "FAIL wrong_cube [grad order 1]: AssertionError: " in out
    assert out.rstrip().endswith("FAILED")


def test_check_rejects_unknown_backend_and_device(capsys):
    assert main(["check", "--backend", "tensorflow"]) == 2
    assert "unknown backend 'tensorflow'" in capsys.readouterr().err
    assert main(["check", "--backend", "numpy", "--device", "cuda:0"]) == 2
    assert "backend 'numpy' has no device 'cuda:0'; its devices here: cpu" in capsys.readouterr().err


def test_check_with_nothing_selected_fails(capsys):
    assert main(["check", "--no-progress", "--select", "no-such-entry"]) == 1
    assert "no op-table entry matches" in capsys.readouterr().err


def test_plain_progress_bar_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    stream = io.StringIO()
    bar = _check._CheckProgress(3, True, stream, "check")
    for name, ok in (("a", True), ("b", False), ("c", True)):
        bar.update(name, ok)
    bar.close()
    assert stream.getvalue() == ".F.\n"


def test_tqdm_progress_bar_when_installed(capsys):
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    report = _check.run_checks("numpy", select=["matmul_stack"], stream=stream)
    assert report.ok
    assert "check numpy" in stream.getvalue() and "1/1" in stream.getvalue()


def test_demo_on_strict(capsys):
    assert main(["demo", "--backend", "array_api_strict", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    assert "per-sample Jacobian dy/dx: shape (16, 8, 16)" in out
    assert out.rstrip().endswith("OK")


def test_bench_is_handed_its_own_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    assert "usage: xpdiff bench" in capsys.readouterr().out


def test_python_dash_m_xpdiff_check():
    res = subprocess.run([sys.executable, "-m", "xpdiff", "check", "--backend", "numpy",
                          "--select", "matmul_stack", "--no-progress"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1 of 1 op-table entries pass, 0 fail" in res.stdout


def test_demo_with_an_unknown_or_missing_backend_prints_one_line(capsys):
    assert main(["demo", "--backend", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xpdiff demo: ") and "unknown backend 'nosuch'" in err and "\n" not in err


def _missing_backend():
    import importlib.util

    for name in ("torch", "jax", "cupy"):
        if importlib.util.find_spec(name) is None:
            return name
    pytest.skip("every optional backend is installed here")


def test_info_flags_a_default_backend_that_is_not_installed(capsys, monkeypatch):
    name = _missing_backend()
    monkeypatch.setenv("XPDIFF_BACKEND", name)
    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("default backend"))
    assert f"default backend: {name}" in line and "NOT INSTALLED" in line


_FAKE_CUPY = '''
class _Runtime:
    @staticmethod
    def getDeviceCount():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
class cuda:
    runtime = _Runtime
'''


def test_cupy_without_a_usable_gpu_is_one_line(tmp_path):
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(_FAKE_CUPY)
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{__import__('os').pathsep.join(sys.path)}"}
    r = subprocess.run([sys.executable, "-m", "xpdiff", "demo", "--backend", "cupy"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "CuPy is installed but no usable CUDA device or driver was found" in lines[0]
    code = ("import xpdiff as xd\ntry:\n    xd.namespace('cupy')\nexcept ImportError as e:\n"
            "    print(type(e).__name__, e)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "BackendUnavailableError" in r.stdout and "cudaErrorInsufficientDriver" in r.stdout


def _parsers():
    import argparse

    from xpdiff import bench

    top = argparse.ArgumentParser()
    captured = {}
    real = argparse.ArgumentParser.parse_args

    def grab(self, *a, **k):
        captured[self.prog] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            main(["info"])
    finally:
        argparse.ArgumentParser.parse_args = real
    del top
    (p,) = captured.values()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return [p, *subs.choices.values(), bench._parser()]


def test_cli_help_is_plain_text_and_every_option_has_help():
    for parser in _parsers():
        text = parser.format_help()
        assert "``" not in text and "`" not in text, (parser.prog, text)
        assert "OPENBLAS" not in text, parser.prog  # no machine-specific advice
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{parser.prog} {action.option_strings} has no help"


def test_check_both_dtypes(capsys):
    rc = main(["check", "--backend", "array_api_strict", "--device", "device1", "--no-progress",
               "--select", "tanh", "--dtype", "both"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "dtype float32: " in out and "dtype float64: " in out
    assert out.index("dtype float32") < out.index("dtype float64")


# --- xpdiff check --fuzz -------------------------------------------------------------------------

def test_fuzz_short_run_passes(capsys):
    """A short run in the suite (the long one: ``xpdiff check --fuzz 10000``)."""
    rc = main(["check", "--fuzz", "8", "--seed", "100", "--no-progress", "--fuzz-all"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fuzz: 8 programs from seed 100" in out and "0 fail" in out
    assert out.rstrip().endswith("OK")


def test_fuzz_finds_a_wrong_rule_and_prints_a_replayable_seed(capsys, monkeypatch):
    monkeypatch.setattr(xpdiff.testing.optable, "OPS", [op for op in OPS if op.name in ("sin", "matmul")]
                        + [_wrong_rule_op()])
    rc = main(["check", "--fuzz", "6", "--seed", "7", "--dtype", "float64", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "wrong_cube" in out and "FAIL [fd]" in out
    seed = next(line.split("--seed ")[1] for line in out.splitlines() if "replay:" in line)
    assert main(["check", "--fuzz", "1", "--seed", seed, "--dtype", "float64", "--no-progress"]) == 1
    again = capsys.readouterr().out
    assert f"seed {seed} (float64" in again and "wrong_cube" in again


def test_fuzz_programs_are_reproducible():
    from xpdiff.testing.fuzz import make_program

    a, b = make_program(42, OPS), make_program(42, OPS)
    assert a.describe() == b.describe()
    assert make_program(43, OPS).describe() != a.describe()
    assert main(["check", "--fuzz", "0"]) == 2


def test_bench_reports_name_no_local_paths():
    """The benchmark's machine facts name each BLAS library by its file name only."""
    pytest.importorskip("threadpoolctl")
    import numpy as np  # noqa: F401  (loads NumPy's BLAS)

    from xpdiff.bench.report import blas_info

    infos = blas_info()
    assert infos and all("/" not in str(e.get("filepath", "")) for e in infos)
