"""Hand-written closed forms of every workload's derivative (the ``numpy-closed`` peer).

What a person would write by hand with the array library alone: the limit of the
backend for each derivative, against which ``xpdiff`` and ``xpdiff-jit`` are read.
Each function takes the workload's raw inputs and returns the derivative in the
layout the other peers return (checked for agreement like any peer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CHAIN_LENGTH = 200  # the overhead workload's chain (workloads.CHAIN_LENGTH)


def _diag_embed(xp: Any, d: Any) -> Any:
    """``(B, N) -> (B, N, N)`` with ``d`` on the diagonals (one write)."""
    B, N = d.shape
    out = xp.zeros((B, N * N), dtype=d.dtype)
    out[:, :: N + 1] = d
    return out.reshape(B, N, N)


def elementwise_jac(xp: Any, x: Any) -> Any:
    e = xp.exp(x)
    return _diag_embed(xp, e * (xp.sin(x) + xp.cos(x)) + 2.0 * x)


def mlp_jac(xp: Any, x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    h = xp.tanh(x @ w1 + b1)
    s = 1.0 - h * h  # (B, H)
    return (w2.T[None, :, :] * s[:, None, :]) @ w1.T  # (B, Nout, Nin)


def bmm_jac(xp: Any, u: Any, v: Any) -> Any:
    D, M, _ = u.shape
    P = v.shape[2]
    N = v.shape[1]
    out = xp.zeros((D, M, P, M, N), dtype=u.dtype)
    vt = xp.swapaxes(v, 1, 2)  # (D, P, N)
    for m in range(M):
        out[:, m, :, m, :] = vt
    return out


def softmax_jac(xp: Any, x: Any) -> Any:
    z = xp.exp(x - x.max(axis=-1, keepdims=True))
    s = z / z.sum(axis=-1, keepdims=True)
    J = -s[:, :, None] * s[:, None, :]
    B, N = s.shape
    flat = J.reshape(B, N * N)
    flat[:, :: N + 1] += s
    return J


def mixing_jac(xp: Any, x: Any, a: Any) -> Any:
    t = xp.tanh(a @ x)
    J = (1.0 - t * t)[:, None] * a
    n = x.shape[0]
    J.reshape(n * n)[:: n + 1] += 1.0
    return J


def logistic_hessian(xp: Any, x: Any, a: Any) -> Any:
    z = a @ x
    p = 1.0 / (1.0 + xp.exp(-z))
    H = a.T @ (a * (p * (1.0 - p))[:, None])
    n = x.shape[0]
    H.reshape(n * n)[:: n + 1] += 1.0
    return H


def mlp_grad(xp: Any, w1: Any, b1: Any, w2: Any, b2: Any, x: Any, y: Any) -> tuple:
    h = xp.tanh(x @ w1 + b1)
    r = h @ w2 + b2 - y
    gw2 = h.T @ r
    gb2 = r.sum(axis=0)
    gz = (r @ w2.T) * (1.0 - h * h)
    return (x.T @ gz, gz.sum(axis=0), gw2, gb2)


def per_sample_grad(xp: Any, x: Any, w: Any) -> Any:
    h = xp.tanh(x @ w)
    g = h * (1.0 - h * h)  # (B, H)
    return xp.einsum("bn,bh->bnh", x, g)


def chain_grad(xp: Any, x: Any) -> Any:
    ys = []
    y = x
    for i in range(CHAIN_LENGTH - 1):
        if i % 3 == 0:
            ys.append(y)
            y = xp.sin(y)
        elif i % 3 == 1:
            y = y * 1.001
        else:
            y = y + 0.1
    g = xp.ones_like(y)
    for i in reversed(range(CHAIN_LENGTH - 1)):
        if i % 3 == 0:
            g = g * xp.cos(ys.pop())
        elif i % 3 == 1:
            g = g * 1.001
    return g


#: workload name -> (closed form, the input names it takes, in order)
CLOSED: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "elementwise-jac": (elementwise_jac, ("x",)),
    "mlp-jac": (mlp_jac, ("x", "w1", "b1", "w2", "b2")),
    "bmm-jac": (bmm_jac, ("u", "v")),
    "softmax-jac": (softmax_jac, ("x",)),
    "full-jac-fwd": (mixing_jac, ("x", "a")),
    "full-jac-rev": (mixing_jac, ("x", "a")),
    "hessian": (logistic_hessian, ("x", "a")),
    "mlp-grad": (mlp_grad, ("w1", "b1", "w2", "b2", "x", "y")),
    "per-sample-grad": (per_sample_grad, ("x", "w")),
    "overhead": (chain_grad, ("x",)),
}


def builder(name: str) -> Callable | None:
    """The ``numpy-closed`` builder of workload ``name`` (``None`` if it has none)."""
    if name not in CLOSED:
        return None
    fn, names = CLOSED[name]

    def build(rt: Any, peer: str, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        xp = rt.get(peer)
        args = [rt.put(peer, inputs[n]) for n in names]
        return lambda: fn(xp, *args)

    return build
