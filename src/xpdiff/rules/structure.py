"""Internal primitives that materialise structured derivatives at the cost of one write."""

from __future__ import annotations

import math

from ..backend import add_diagonal, outer_product, update
from ..backend import eye_kron as backend_eye_kron
from ..core import Zero, instantiate, primitive
from ._families import move_batch_to, unbroadcast
from .manipulation import reshape, zeros_like


def _diag_embed_impl(bk, s):
    n = s.shape[-1]
    lead = tuple(s.shape[:-1])
    out = bk.zeros(lead + (n * n,), dtype=s.dtype, device=s.device)
    out = update(out, (Ellipsis, slice(None, None, n + 1)), s)  # our own fresh array
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
    n = math.prod(shape)
    return reshape(diag_embed(reshape(s, (n,))), tuple(shape) + tuple(shape))


# --- diagonal plus low rank: the Jacobian of a softmax-like map, written once ----------

def _lowrank_impl(bk, s, W, C, *, has_diag):
    # (..., n, n): one pass, a fresh array owned here; rank one is an outer product (a
    # batched matrix product with a unit inner dim is many times slower on NumPy)
    out = outer_product(bk, W, C) if W.shape[-1] == 1 else bk.matmul(W, C)
    if not has_diag:
        return out
    n = out.shape[-1]
    lead = tuple(out.shape[:-2])
    flat = bk.reshape(out, lead + (n * n,))
    key = (Ellipsis, slice(None, None, n + 1))
    flat = update(flat, key, flat[key] + s)
    return bk.reshape(flat, lead + (n, n))


def _lowrank_jvp(xp, p, t, *, has_diag):
    s, W, C = p
    ts, tW, tC = t
    out = _lowrank.bind(s, W, C, has_diag=has_diag)
    acc = None
    if has_diag and not isinstance(ts, Zero) or not isinstance(tW, Zero):
        acc = _lowrank.bind(instantiate(xp, ts), instantiate(xp, tW), C, has_diag=has_diag)
    if not isinstance(tC, Zero):
        term = _lowrank.bind(s, W, tC, has_diag=False)
        acc = term if acc is None else xp.add(acc, term)
    if acc is None:
        return out, Zero(out)
    return out, acc


def _lowrank_vjp(xp, g, out, p, needs, *, has_diag):
    s, W, C = p
    n = g.shape[-1]
    cs = None
    if needs[0] and has_diag:
        cs = xp.reshape(g, tuple(g.shape[:-2]) + (n * n,))[..., :: n + 1]
    cW = xp.matmul(g, xp.matrix_transpose(C)) if needs[1] else None
    cC = xp.matmul(xp.matrix_transpose(W), g) if needs[2] else None
    return [None if c is None else unbroadcast(xp, c, x.shape) for c, x in zip((cs, cW, cC), p)]


def _lowrank_batch(xp, vals, batched, size, *, has_diag):
    s, W, C = vals
    bs, bW, bC = batched
    if bs and not (bW or bC):  # the product must carry the batch axis the diagonal has
        W = move_batch_to(W, False, size, xp)
    return _lowrank.bind(s, W, C, has_diag=has_diag), True


_lowrank = primitive("lowrank_diag", _lowrank_impl, jvp=_lowrank_jvp, vjp=_lowrank_vjp,
                     batch=_lowrank_batch)


def lowrank_diag(s, W, C):
    """``W @ C`` plus ``s`` on the diagonal (``s=None``: no diagonal), in one pass."""
    if s is None:
        zero = zeros_like(W[..., 0])
        return _lowrank.bind(zero, W, C, has_diag=False)
    return _lowrank.bind(s, W, C, has_diag=True)


# --- identity (x) block: the Jacobian of a matrix product, written once ------------------

def _eye_kron_vjp(xp, g, out, p, needs, *, m, right):
    # the sum of the m diagonal blocks: the (i, i) pairs of a flat (m * m) axis are every
    # (m + 1)-th entry
    nl = g.ndim - 4
    lead = tuple(g.shape[:nl])
    if right:  # g (..., Q, m, R, m) -> (..., R, Q, m, m)
        R, Q = g.shape[nl + 2], g.shape[nl]
        axes = tuple(range(nl)) + (nl + 2, nl, nl + 1, nl + 3)
    else:  # g (..., m, R, m, Q) -> (..., R, Q, m, m)
        R, Q = g.shape[nl + 1], g.shape[nl + 3]
        axes = tuple(range(nl)) + (nl + 1, nl + 3, nl, nl + 2)
    flat = xp.reshape(xp.permute_dims(g, axes), lead + (R, Q, m * m))
    return [xp.sum(flat[..., :: m + 1], axis=-1)]


def _eye_kron_data(ctx, ops, has, **params):
    if ops[0].ndim < 2:
        raise ctx.mixing("embeds a data dim in an identity block")
    return ops, params


_eye_kron = primitive(
    "eye_kron", lambda bk, B, *, m, right: backend_eye_kron(bk, B, m, right),
    jvp=lambda xp, p, t, **kw: (_eye_kron.bind(p[0], **kw), _eye_kron.bind(t[0], **kw)),
    vjp=_eye_kron_vjp,
    batch=lambda xp, v, b, n, **kw: (_eye_kron.bind(v[0], **kw), True),
    data=_eye_kron_data)


def eye_kron(B, m, right=False):
    """The identity of size ``m`` times ``B`` (``(..., R, Q)``), laid out as a matrix
    product's Jacobian needs it: ``out[..., i, r, i, q] = B[..., r, q]`` (``(..., m, R, m,
    Q)``), or with ``right=True`` ``out[..., q, i, r, i] = B[..., r, q]`` (``(..., Q, m, R,
    m)``); zeros elsewhere, written once (:func:`xpdiff.backend.eye_kron`)."""
    return _eye_kron.bind(B, m=m, right=right)


# --- a dense matrix plus a diagonal: an identity part added where it is nonzero ------------

def _add_diag_vjp(xp, g, out, p, needs, *, offset):
    C, N = g.shape[-2], g.shape[-1]
    cd = None
    if needs[1]:  # (j, offset + j) is every (N + 1)-th entry of the flat (C * N) axis
        flat = xp.reshape(g, tuple(g.shape[:-2]) + (C * N,))
        diag = flat[..., offset: offset + (C - 1) * (N + 1) + 1: N + 1] if C else flat[..., 0:0]
        cd = unbroadcast(xp, diag, p[1].shape)
    return [unbroadcast(xp, g, p[0].shape) if needs[0] else None, cd]


def _add_diag_jvp(xp, p, t, *, offset):
    x, d = p
    out = _add_diag.bind(x, d, offset=offset)
    tx, td = t
    if isinstance(tx, Zero) and isinstance(td, Zero):
        return out, Zero(out)
    return out, _add_diag.bind(instantiate(xp, tx), instantiate(xp, td), offset=offset)


def _add_diag_batch(xp, vals, batched, size, *, offset):
    x, d = vals
    bx, bd = batched
    if bd and not bx:  # the result carries the batch axis the diagonal has
        x = move_batch_to(x, False, size, xp)
    return _add_diag.bind(x, d, offset=offset), True


def _add_diag_data(ctx, ops, has, **params):
    if ops[0].ndim < 2 or ops[1].ndim < 1:
        raise ctx.mixing("adds along a diagonal over a data dim")
    return ops, params


_add_diag = primitive(
    "add_diag", lambda bk, x, d, *, offset: add_diagonal(bk, x, d, offset),
    jvp=_add_diag_jvp, vjp=_add_diag_vjp, batch=_add_diag_batch, data=_add_diag_data)


def add_diag(x, d, offset=0):
    """``x`` (``(..., C, N)``) with ``d[..., j]`` added at ``[..., j, offset + j]``, in one
    copy of ``x`` and a write along the diagonal (no identity matrix is formed)."""
    return _add_diag.bind(x, d, offset=offset)
