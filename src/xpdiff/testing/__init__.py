"""Numerical checks of derivatives, for xpdiff's own rules and for users' rules.

``check_grads`` compares forward mode with central finite differences, checks
reverse mode by the inner-product identity ``<u, J v> == <J^T u, v>``, and
recurses to the requested order (forward-over-forward and reverse-over-reverse).
``check_vmap`` compares ``vmap(f)`` with a loop over slices.  Test helpers may
read values back to the host; transformations themselves never do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import from_host, to_host
from ..transforms.api import jvp, vjp, vmap


def _host(x: Any) -> np.ndarray:
    """A NumPy copy of a backend array (test helper only)."""
    return to_host(x)


def _like(arr: np.ndarray, like: Any) -> Any:
    return from_host(arr, like)


def _vdot(a: Sequence, b: Sequence) -> float:
    return float(sum(np.sum(_host(x) * _host(y)) for x, y in zip(a, b)))


def _tolerances(dtype: np.dtype) -> tuple[float, float, float]:
    if dtype == np.float32:
        return 3e-3, 3e-2, 3e-2
    return 1e-6, 1e-5, 1e-5


def _np_dtype(x: Any) -> np.dtype:
    return _host(x).dtype


def check_grads(f: Callable, args: Sequence, order: int = 2, modes: Sequence[str] = ("fwd", "rev"),
                eps: float | None = None, rtol: float | None = None, atol: float | None = None,
                seed: int = 0) -> None:
    """Check ``f``'s derivatives at ``args`` numerically; raise ``AssertionError`` if wrong.

    Args:
        f: a function of arrays returning one array.
        args: the point (floating-point arrays of any backend).
        order: check derivatives up to this order.
        modes: ``"fwd"`` (JVP vs central differences) and/or ``"rev"`` (VJP by the
            inner-product identity).
        eps: the finite-difference step (default by dtype).
        rtol: relative tolerance (default by dtype).
        atol: absolute tolerance (default by dtype).
        seed: seed of the random directions.

    >>> import numpy as np, xpdiff as xd
    >>> from xpdiff.testing import check_grads
    >>> check_grads(lambda x: xd.numpy.sin(x) * x, (np.array([0.3, 1.2]),))
    """
    args = tuple(args)
    rng = np.random.default_rng(seed)
    e0, r0, a0 = _tolerances(_np_dtype(args[0]))
    eps = e0 if eps is None else eps
    rtol = r0 if rtol is None else rtol
    atol = a0 if atol is None else atol
    v = tuple(_like(rng.standard_normal(np.shape(_host(a))), a) for a in args)

    if "fwd" in modes:
        out, tout = jvp(f, args, v)
        plus = f(*[_like(_host(a) + eps * _host(t), a) for a, t in zip(args, v)])
        minus = f(*[_like(_host(a) - eps * _host(t), a) for a, t in zip(args, v)])
        fd = (_host(plus).astype(np.float64) - _host(minus).astype(np.float64)) / (2 * eps)
        np.testing.assert_allclose(_host(tout), fd, rtol=rtol, atol=atol,
                                   err_msg="JVP does not match central finite differences")
    if "rev" in modes:
        out, pull = vjp(f, *args)
        u = _like(rng.standard_normal(np.shape(_host(out))), out)
        _, tout = jvp(f, args, v)
        ct = pull(u)
        lhs = _vdot([u], [tout])
        rhs = _vdot(ct, v)
        np.testing.assert_allclose(lhs, rhs, rtol=rtol, atol=atol,
                                   err_msg="VJP fails the inner-product identity <u, Jv> = <J^T u, v>")
    if order > 1:
        if "fwd" in modes:
            check_grads(lambda *a: jvp(f, a, v)[1], args, order - 1, ("fwd",), eps, rtol, atol,
                        seed + 1)
        if "rev" in modes:
            out = f(*args)
            u = _like(rng.standard_normal(np.shape(_host(out))), out)
            for i in range(len(args)):
                check_grads(lambda *a, i=i: vjp(f, *a)[1](u)[i], args, order - 1, ("rev",), eps,
                            rtol, atol, seed + 2)


def check_vmap(f: Callable, args: Sequence, in_axes: Any = 0, rtol: float = 1e-6,
               atol: float = 1e-6) -> None:
    """Check ``vmap(f, in_axes)`` against a loop over the mapped slices.

    >>> import numpy as np, xpdiff as xd
    >>> from xpdiff.testing import check_vmap
    >>> check_vmap(lambda x, w: x @ w, (np.ones((3, 2)), np.ones((2, 4))), in_axes=(0, None))
    """
    args = tuple(args)
    axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    n = next(a.shape[ax] for a, ax in zip(args, axes) if ax is not None)
    got = vmap(f, in_axes=tuple(axes))(*args)
    outs = []
    for i in range(n):
        sl = [a if ax is None else a[(slice(None),) * (ax % a.ndim) + (i, ...)]
              for a, ax in zip(args, axes)]
        outs.append(_host(f(*sl)))
    np.testing.assert_allclose(_host(got), np.stack(outs), rtol=rtol, atol=atol,
                               err_msg="vmap(f) does not match a loop over slices")


__all__ = ["check_grads", "check_vmap"]
