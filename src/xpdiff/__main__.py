"""Command line: ``xpdiff info | demo | check | bench`` (also ``python -m xpdiff``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    import xpdiff as xd
    from xpdiff.testing import _host

    xp = xd.namespace(args.backend)
    rng = np.random.default_rng(0)
    B, n_in, n_hid, n_out = args.batch, 16, 32, 8
    W1 = xp.asarray(rng.standard_normal((n_in, n_hid)) / 4)
    W2 = xp.asarray(rng.standard_normal((n_hid, n_out)) / 4)
    x = xp.asarray(rng.standard_normal((B, n_in)))

    def mlp(x, W1, W2):
        xp = x.__array_namespace__()
        return xp.tanh(x @ W1) @ W2

    print(f"backend: {xp._backend.__name__}, device: {x.device}")
    print(f"MLP {n_in} -> {n_hid} -> {n_out}, batch {B}")
    jac = xd.jacobian(mlp, batch_ndim=1)
    jac(x, W1, W2)
    t0 = time.perf_counter()
    J = jac(x, W1, W2)
    dt = time.perf_counter() - t0
    print(f"per-sample Jacobian dy/dx: shape {tuple(J.shape)} in {dt * 1e3:.2f} ms")
    # check one sample against central finite differences
    Jh, xh = _host(J), _host(x)
    eps = 1e-6
    fd = np.empty((n_out, n_in))
    for j in range(n_in):
        e = np.zeros(n_in)
        e[j] = eps
        hi = _host(mlp(xp.asarray(xh[:1] + e), W1, W2))[0]
        lo = _host(mlp(xp.asarray(xh[:1] - e), W1, W2))[0]
        fd[:, j] = (hi - lo) / (2 * eps)
    err = float(np.max(np.abs(fd - Jh[0])))
    print(f"sample 0 vs finite differences: max abs error {err:.2e}")
    Jw = xd.jacobian(mlp, argnums=1, batch_ndim=1)(x, W1, W2)
    print(f"per-sample Jacobian dy/dW1 (shared weight): shape {tuple(Jw.shape)}")
    ok = err < 1e-6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


def _info(args: argparse.Namespace) -> int:
    import os

    import xpdiff
    from xpdiff._backend import available_backends

    print(f"xpdiff {xpdiff.__version__}")
    print(f"default backend: {os.environ.get('XPDIFF_BACKEND', 'numpy')} (set XPDIFF_BACKEND)")
    print(f"backends found: {', '.join(available_backends())}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xpdiff`` command."""
    p = argparse.ArgumentParser(prog="xpdiff", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="batched Jacobian of a small MLP, checked against finite differences")
    d.add_argument("--backend", default=None, help="numpy (default), cupy, array_api_strict, torch")
    d.add_argument("--batch", type=int, default=256)
    d.set_defaults(run=_demo)
    i = sub.add_parser("info", help="version, backends and the default backend")
    i.set_defaults(run=_info)
    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
