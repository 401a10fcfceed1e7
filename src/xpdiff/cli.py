"""Command line: xpdiff info | demo | check | bench (also python -m xpdiff).

Layer: top.  May import every layer of xpdiff (the benchmarks only when asked for).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence

import array_api_compat
import numpy as np

import xpdiff
import xpdiff as xd

from . import backend as _backend
from .backend import to_host as _host
from .scaleout import demo as _dask_demo
from .testing.check import run_checks
from .testing.fuzz import run_fuzz


def _demo(args: argparse.Namespace) -> int:
    if args.dask:
        return _dask_demo.run(size_gb=args.size_gb, chunk=args.chunk, workers=args.workers, out=args.out,
                              keep=args.keep)
    try:
        xp = xd.namespace(args.backend)
        xp.asarray(0.0)  # a backend that imports but cannot make arrays fails here, in one line
    except (ValueError, ImportError, RuntimeError) as e:
        print(f"xpdiff demo: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    B, n_in, n_hid, n_out = args.batch, 16, 32, 8
    W1 = xp.asarray(rng.standard_normal((n_in, n_hid)) / 4)
    W2 = xp.asarray(rng.standard_normal((n_hid, n_out)) / 4)
    x = xp.asarray(rng.standard_normal((B, n_in)))

    def mlp(x, W1, W2):
        # torch tensors have no __array_namespace__ of their own
        xp = x.__array_namespace__() if hasattr(x, "__array_namespace__") else \
            array_api_compat.array_namespace(x)
        return xp.tanh(x @ W1) @ W2

    print(f"backend: {xp._backend.__name__}, device: {x.device}")
    print(f"MLP {n_in} -> {n_hid} -> {n_out}, batch {B}")
    jac = xd.jacobian(mlp, batch_ndim=1, data_argnums=0)  # W1, W2 are shared
    jac(x, W1, W2)
    t0 = time.perf_counter()
    J = jac(x, W1, W2)
    dt = time.perf_counter() - t0
    print(f"per-sample Jacobian dy/dx: shape {tuple(J.shape)} in {dt * 1e3:.2f} ms")
    # check one sample against central finite differences (step and tolerance by dtype:
    # JAX computes in float32 unless jax_enable_x64 is set)
    Jh, xh = _host(J), _host(x)
    single = Jh.dtype == np.float32
    eps, tol = (1e-2, 2e-3) if single else (1e-6, 1e-6)
    fd = np.empty((n_out, n_in))
    for j in range(n_in):
        e = np.zeros(n_in)
        e[j] = eps
        hi = _host(mlp(xp.asarray(xh[:1] + e), W1, W2)).astype(np.float64)[0]
        lo = _host(mlp(xp.asarray(xh[:1] - e), W1, W2)).astype(np.float64)[0]
        fd[:, j] = (hi - lo) / (2 * eps)
    err = float(np.max(np.abs(fd - Jh[0])))
    print(f"sample 0 vs finite differences: max abs error {err:.2e} ({Jh.dtype})")
    Jw = xd.jacobian(mlp, argnums=1, batch_ndim=1, data_argnums=0)(x, W1, W2)
    print(f"per-sample Jacobian dy/dW1 (shared weight): shape {tuple(Jw.shape)}")
    ok = err < tol
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


def _info(args: argparse.Namespace) -> int:
    print(f"xpdiff {xpdiff.__version__}")
    try:
        default = _backend.default_backend()
    except ValueError as e:
        default = f"invalid ({e})"
    env = os.environ.get(_backend.ENV_VAR)
    source = f"from ${_backend.ENV_VAR}={env}" if env else f"set ${_backend.ENV_VAR} to change it"
    found = _backend.available_backends()
    flag = ""
    if default in _backend.BACKENDS and default not in found:
        flag = (f" -- NOT INSTALLED: transformations will fail; install it or set "
                f"${_backend.ENV_VAR} to one of {', '.join(found)}")
    print(f"default backend: {default} ({source}){flag}")
    print(f"backends found: {', '.join(found) or 'none'}")
    missing = [b for b in _backend.BACKENDS if b not in found]
    if missing:
        print(f"backends not installed: {', '.join(missing)}")
    for name in found:
        try:
            devs = _backend.devices(name)
            text = ", ".join(_backend.device_label(d) for d in devs) or "none usable (no GPU/driver?)"
            ver = _version(name)
        except Exception as e:  # a broken install is reported, not fatal
            text, ver = f"unavailable ({type(e).__name__}: {e})", "?"
        print(f"  {name} {ver}: devices {text}")
    return 0


def _version(name: str) -> str:
    mod = importlib.import_module({"array_api_strict": "array_api_strict"}.get(name, name))
    return getattr(mod, "__version__", "?")


def _check(args: argparse.Namespace) -> int:
    select = [s for s in (args.select or "").split(",") if s]
    if args.fuzz is not None:
        return _fuzz(args, select)
    dtype = args.dtype or "float64"
    dtypes = ("float32", "float64") if dtype == "both" else (dtype,)
    ok = True
    for dtype in dtypes:
        try:
            report = run_checks(args.backend, args.device, dtype=dtype, select=select or None,
                                order2=not args.first_order, progress=not args.no_progress)
        except (ValueError, ImportError) as e:
            print(f"xpdiff check: {e}", file=sys.stderr)
            return 2
        print(report.summary())
        if report.n_ops == 0:
            print(f"xpdiff check: no op-table entry matches --select {args.select!r}",
                  file=sys.stderr)
        ok = ok and report.ok
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def _fuzz(args: argparse.Namespace, select: list[str]) -> int:
    if args.fuzz < 1:
        print(f"xpdiff check: --fuzz takes a positive number of programs, got {args.fuzz}",
              file=sys.stderr)
        return 2
    try:
        report = run_fuzz(args.fuzz, args.seed, backend=args.backend, device=args.device,
                          dtype=None if args.dtype == "both" else args.dtype,
                          select=select or None, everything=args.fuzz_all,
                          progress=not args.no_progress)
    except (ValueError, ImportError) as e:
        print(f"xpdiff check: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    print("OK" if report.passed else "FAILED")
    return 0 if report.passed else 1


def _bench(argv: list[str]) -> int:
    try:
        from xpdiff import bench
    except ImportError as e:
        print(f"xpdiff bench: the benchmark package is not available here ({e})", file=sys.stderr)
        return 2
    return bench.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xpdiff`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser (xpdiff.bench) owns the options
        return _bench(argv[1:])
    p = argparse.ArgumentParser(
        prog="xpdiff", description="xpdiff: batched derivatives (per-sample Jacobians, Hessians) of "
        "array API code on NumPy, CuPy and other array API backends.")
    sub = p.add_subparsers(dest="cmd", required=True)
    backends = "numpy (default: $XPDIFF_BACKEND or numpy), cupy, array_api_strict, torch, jax"
    d = sub.add_parser("demo", help="batched Jacobian of a small MLP, checked against finite differences")
    d.add_argument("--backend", default=None, help=backends)
    d.add_argument("--batch", type=int, default=256, help="number of samples (default: 256)")
    d.add_argument("--dask", action="store_true", help="per-sample Jacobians larger than memory on a Dask "
                   "LocalCluster, written to Zarr (docs/scaleout.md); needs xpdiff[dask]")
    d.add_argument("--size-gb", type=float, default=None,
                   help="--dask: the Jacobian's uncompressed size in GB (default: twice the RAM)")
    d.add_argument("--chunk", type=int, default=4096, help="--dask: samples per chunk (one task each)")
    d.add_argument("--workers", type=int, default=2, help="--dask: worker processes")
    d.add_argument("--out", default=None, help="--dask: directory for the temporary Zarr store")
    d.add_argument("--keep", action="store_true", help="--dask: keep the Zarr store")
    d.set_defaults(run=_demo)
    i = sub.add_parser("info", help="version, backends and their devices, the default backend")
    i.set_defaults(run=_info)
    c = sub.add_parser("check", help="op-table derivative checks on one backend and device")
    c.add_argument("--backend", default=None, help=backends)
    c.add_argument("--device", default=None,
                   help="a device of the backend as xpdiff info lists it (cpu, device1, cuda:0, ...)")
    c.add_argument("--dtype", default=None, choices=("float64", "float32", "both"),
                   help="dtype of the checked inputs (default: float64; both: float32, then "
                        "float64; with --fuzz the default, both, draws it per program)")
    c.add_argument("--select", default=None, help="comma-separated substrings of op-table names")
    c.add_argument("--first-order", action="store_true", help="skip second-derivative checks")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--fuzz", type=int, default=None, metavar="N",
                   help="check N random programs over the op table instead (nested transforms, "
                        "vmap, batch_ndim, chunked, structured and dense paths, finite differences)")
    c.add_argument("--seed", type=int, default=0, help="seed of the first --fuzz program "
                   "(program i has seed S + i: --fuzz 1 --seed S+i replays it)")
    c.add_argument("--fuzz-all", action="store_true",
                   help="run every check on every --fuzz program (default: one costly check each)")
    c.set_defaults(run=_check)
    sub.add_parser("bench", help="benchmarks against JAX, torch.func and autograd "
                   "(options: xpdiff bench --help)")
    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
