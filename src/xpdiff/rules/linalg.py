"""Matrix products and friends: matmul (a primitive), tensordot, vecdot, tril/triu."""

from __future__ import annotations

from .._core import Zero, primitive
from ._families import export, norm_axis, pad_batched, unbroadcast


def _matmul_jvp(xp, p, t):
    a, b = p
    ta, tb = t
    out = _matmul.bind(a, b)
    acc = None
    if not isinstance(ta, Zero):
        acc = _matmul.bind(ta, b)
    if not isinstance(tb, Zero):
        term = _matmul.bind(a, tb)
        acc = term if acc is None else xp.add(acc, term)
    if tuple(acc.shape) != tuple(out.shape):
        acc = xp.broadcast_to(acc, out.shape)
    return out, acc


def _matmul_vjp(xp, g, out, p, needs):
    a, b = p
    a2 = xp.reshape(a, (1,) + tuple(a.shape)) if a.ndim == 1 else a
    b2 = xp.reshape(b, tuple(b.shape) + (1,)) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = xp.expand_dims(g2, axis=-2 if b.ndim > 1 else -1)
    if b.ndim == 1:
        g2 = xp.expand_dims(g2, axis=-1)
    ca = cb = None
    if needs[0]:
        ca = unbroadcast(xp, _matmul.bind(g2, xp.matrix_transpose(b2)), a2.shape)
        ca = xp.reshape(ca, a.shape)
    if needs[1]:
        cb = unbroadcast(xp, _matmul.bind(xp.matrix_transpose(a2), g2), b2.shape)
        cb = xp.reshape(cb, b.shape)
    return [ca, cb]


def _matmul_batch(xp, vals, batched, n):
    a, b = vals
    ba, bb = batched
    ra, rb = a.ndim - ba, b.ndim - bb
    sq_a, sq_b = ra == 1, rb == 1
    if sq_a:  # vector on the left: a row matrix
        a = xp.expand_dims(a, axis=-2)
        ra = 2
    if sq_b:  # vector on the right: a column matrix
        b = xp.expand_dims(b, axis=-1)
        rb = 2
    r = max(ra, rb)
    if ba:
        a = pad_batched(xp, a, r)
    if bb:
        b = pad_batched(xp, b, r)
    out = _matmul.bind(a, b)
    if sq_b:
        out = xp.squeeze(out, axis=-1)
    if sq_a:
        out = xp.squeeze(out, axis=-1 if sq_b else -2)
    return out, True


def _matmul_data(ctx, ops, has):
    a, b = ops
    k = ctx.k
    ra = a.ndim + k if has[0] else a.ndim
    rb = b.ndim + k if has[1] else b.ndim
    if has[1] and b.ndim < 2:
        raise ctx.mixing("contracts a data dim (the right operand has no matrix dims besides them)")
    if has[0] and a.ndim == 0:
        raise ctx.mixing("contracts a data dim (the left operand is a stack of scalars)")
    if has[0] and a.ndim == 1:
        # rows of the left operand are samples: fine against a shared matrix or vector
        if has[1] or b.ndim > 2:
            raise ctx.mixing("broadcasts a stack of vectors against a batched matrix stack")
        return ops, {}
    # both sides have matrix dims: data dims must be leading batch dims of the result
    R = max(ra, rb)
    new = []
    for o, h, r in ((a, has[0], ra), (b, has[1], rb)):
        if h:
            if r != R:
                raise ctx.mixing(f"broadcasts operands of ranks {ra} and {rb}, moving the data dims")
            new.append(o)
        elif o.ndim > 2 and o.ndim > R - k:
            new.append(ctx.lift(o, o.ndim - (R - k)))
        else:
            new.append(o)
    return new, {}


_matmul = primitive("matmul", lambda bk, a, b: bk.matmul(a, b), jvp=_matmul_jvp,
                    vjp=_matmul_vjp, batch=_matmul_batch, data=_matmul_data)


@export
def matmul(x1, x2, /):
    """Matrix product with the standard's broadcasting and 1-d rules.

    >>> import numpy as np, xpdiff as xd
    >>> u, v = np.ones((5, 3, 2)), np.ones((5, 2, 4))
    >>> xd.jacobian(lambda u, v: u @ v, batch_ndim=1)(u, v).shape
    (5, 3, 4, 3, 2)
    """
    if x1.ndim == 0 or x2.ndim == 0:
        raise ValueError("matmul: operands must have at least one dim (use multiply for scalars)")
    return _matmul.bind(x1, x2)


@export
def tensordot(x1, x2, /, *, axes=2):
    """Tensor contraction over ``axes`` (an int or a pair of sequences)."""
    from .manipulation import permute_dims, reshape

    if isinstance(axes, int):
        ax1 = tuple(range(x1.ndim - axes, x1.ndim))
        ax2 = tuple(range(axes))
    else:
        ax1 = tuple(norm_axis(a, x1.ndim) for a in axes[0])
        ax2 = tuple(norm_axis(a, x2.ndim) for a in axes[1])
    free1 = [i for i in range(x1.ndim) if i not in ax1]
    free2 = [i for i in range(x2.ndim) if i not in ax2]
    k = 1
    for a in ax1:
        k *= x1.shape[a]
    s1 = tuple(x1.shape[i] for i in free1)
    s2 = tuple(x2.shape[i] for i in free2)
    m = 1
    for s in s1:
        m *= s
    n = 1
    for s in s2:
        n *= s
    a = reshape(permute_dims(x1, tuple(free1) + ax1), (m, k))
    b = reshape(permute_dims(x2, ax2 + tuple(free2)), (k, n))
    return reshape(_matmul.bind(a, b), s1 + s2)


@export
def vecdot(x1, x2, /, *, axis=-1):
    """Dot product of vectors along ``axis`` (broadcasting the other dims)."""
    from .elementwise import PRIMS
    from .reductions import sum as _sum

    nd = max(x1.ndim, x2.ndim)
    axis = norm_axis(axis, nd) - nd
    return _sum(PRIMS["multiply"].bind(PRIMS["conj"].bind(x1), x2), axis=axis)


def _tri(name):
    def impl(bk, x, *, k=0):
        return getattr(bk, name)(x, k=k)

    def data(ctx, ops, has, **kw):
        if ops[0].ndim < 2:
            raise ctx.mixing("acts on a data dim (needs two matrix dims besides the data dims)")
        return ops, kw

    p = primitive(name, impl, data=data)
    p.jvp = lambda xp, pr, t, **kw: (p.bind(pr[0], **kw), p.bind(t[0], **kw))
    p.vjp = lambda xp, g, out, pr, needs, **kw: [p.bind(g, **kw)]
    p.batch = lambda xp, v, b, n, **kw: (p.bind(v[0], **kw), True)
    return p


_tril, _triu = _tri("tril"), _tri("triu")


@export
def tril(x, /, *, k=0):
    """Lower triangle of (a stack of) matrices."""
    return _tril.bind(x, k=k)


@export
def triu(x, /, *, k=0):
    """Upper triangle of (a stack of) matrices."""
    return _triu.bind(x, k=k)
