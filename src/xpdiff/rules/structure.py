"""Internal primitives that materialise structured derivatives at the cost of one write."""

from __future__ import annotations

import math

from .._core import primitive


def _diag_embed_impl(bk, s):
    n = s.shape[-1]
    lead = tuple(s.shape[:-1])
    out = bk.zeros(lead + (n * n,), dtype=s.dtype, device=s.device)
    out[..., :: n + 1] = s
    return bk.reshape(out, lead + (n, n))


def _diag_embed_vjp(xp, g, out, p, needs):
    n = g.shape[-1]
    flat = xp.reshape(g, tuple(g.shape[:-2]) + (n * n,))
    return [flat[..., :: n + 1]]


def _diag_embed_data(ctx, ops, has):
    if ops[0].ndim < 1:
        raise ctx.mixing("embeds a data dim on a diagonal")
    return ops, {}


_diag_embed = primitive(
    "diag_embed", _diag_embed_impl,
    jvp=lambda xp, p, t: (_diag_embed.bind(p[0]), _diag_embed.bind(t[0])),
    vjp=_diag_embed_vjp,
    batch=lambda xp, v, b, n: (_diag_embed.bind(v[0]), True),
    data=_diag_embed_data)


def diag_embed(s):
    """``s[..., i] -> out[..., i, i]`` (zeros elsewhere): one write of the result."""
    return _diag_embed.bind(s)


def diag_block(s, shape):
    """The Jacobian block ``shape + shape`` of an elementwise map with derivative ``s``."""
    from ._families import EXPORTS

    n = math.prod(shape)
    return EXPORTS["reshape"](diag_embed(EXPORTS["reshape"](s, (n,))), tuple(shape) + tuple(shape))
