"""Linear algebra: matmul, tensordot, vecdot, tril/triu (top level) and the ``linalg``
extension of the standard.

Primitives are kept to the operations that need their own derivative (``inv``,
``det``, ``slogdet``, ``solve``, ``cholesky``, ``qr``, ``eigh``, ``svd``,
``diagonal``); everything else (``trace``, ``outer``, ``cross``, ``pinv``, the norms,
``matrix_power``, ...) is written with namespace functions and needs no rules.
Every ``linalg`` primitive acts on the last two dims and broadcasts over the
leading ones, so its batching rule calls it again on the batched value (batch axis
first) and its data rule only checks that no data dim is a matrix dim.

Derivatives follow the usual matrix-calculus formulas; the conventions at
degenerate spectra, zero singular values and other non-differentiable points are
in docs/linalg-fft.md.  Rules that are not holomorphic (``cholesky``, ``qr``,
``eigh``, ``svd``, ``slogdet``) take complex matrices in forward mode only.  Where a
derivative does not exist (a factor that is not unique, ``log|det|`` at a singular
matrix) the tangent is NaN, made by selection: rules never divide by zero or warn.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..backend import outer_product
from ..core import Zero, instantiate, mapped_size, namespace_for_values, op_context, primitive
from ._families import align_data, export, norm_axis, pad_batched, unbroadcast
from .elementwise import PRIMS
from .fft import conj_, fit_axis, is_complex
from .indexing import _getitem_fn
from .manipulation import astype, permute_dims, reshape
from .manipulation import matrix_transpose as _matrix_transpose
from .reductions import sum as _sum
from .structure import eye_kron

# --- matmul --------------------------------------------------------------------------------


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
    if a.ndim == 1 and b.ndim == 2 and not needs[1]:
        # x @ B: the cotangent of x is g @ B^T, one product (a batch of them under vmap
        # is one matrix product of the stacked rows)
        return [_matmul.bind(g, xp.matrix_transpose(b)), None]
    if a.ndim == 2 and b.ndim == 1 and not needs[0]:
        return [None, _matmul.bind(xp.matrix_transpose(a), g)]  # A @ x: A^T @ g
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
    if ba and not bb and ra == 1 and rb == 2:
        # a batch of vectors times one matrix: the batch is the rows of one product
        return _matmul.bind(a, b), True
    if bb and not ba and rb == 1 and ra == 2:
        # one matrix times a batch of vectors: the rows of (B, K) @ A^T
        return _matmul.bind(b, xp.matrix_transpose(a)), True
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
    return align_data(ctx, ops, has, core=2), {}


def _matmul_impl(bk, a, b):
    if a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == 1 and b.shape[-2] == 1:
        # an outer product (contracted size 1): much faster as a broadcast product
        # than as a batched matmul with a unit inner dim
        return outer_product(bk, a, b)
    if a.ndim > 2 and b.ndim == 2:
        # a stack of matrices times one matrix is one large matrix product (vmap
        # turns vectors into stacks of 1-row matrices: thousands of tiny products)
        lead = tuple(a.shape[:-1])
        out = bk.matmul(bk.reshape(a, (math.prod(lead), a.shape[-1])), b)
        return bk.reshape(out, lead + (b.shape[-1],))
    if a.ndim == 2 and b.ndim > 2 and a.shape[-1] == b.shape[-2]:
        # one matrix times a stack (vmap makes stacks of 1-column matrices of vectors):
        # A @ [B_1 ... B_L] as one product, (M, K) @ (K, L*N)
        K, N = b.shape[-2], b.shape[-1]
        lead = tuple(b.shape[:-2])
        L = math.prod(lead)
        if N == 1:  # stacked vectors: (L, K) @ A^T gives the products as rows, no copies
            out = bk.matmul(bk.reshape(b, (L, K)), bk.matrix_transpose(a))
            return bk.reshape(out, lead + (a.shape[0], 1))
        cols = bk.reshape(bk.permute_dims(bk.reshape(b, (L, K, N)), (1, 0, 2)), (K, L * N))
        out = bk.reshape(bk.matmul(a, cols), (a.shape[0], L, N))
        return bk.reshape(bk.permute_dims(out, (1, 0, 2)), lead + (a.shape[0], N))
    return bk.matmul(a, b)


_matmul = primitive("matmul", _matmul_impl, jvp=_matmul_jvp,
                    vjp=_matmul_vjp, batch=_matmul_batch, data=_matmul_data)


def _scaled_rows(xp, val, scale, n):
    """``val`` as ``(n, ...)`` rows, row ``j`` times ``scale`` (flattened) ``[j]``."""
    val = xp.reshape(val, (n,) + tuple(val.shape[2:]))
    if scale is None:
        return val
    return xp.multiply(val, xp.reshape(scale, (n,) + (1,) * (val.ndim - 1)))


def _matmul_basis_jvp(xp, p, i, scale, out):
    """Output tangents of ``a @ b`` for the full identity basis of operand ``i``
    (scaled by ``scale``, ``None`` = ones), the other operand constant:
    ``(n,) + out.shape``, written once from the other operand (no basis is formed
    and no product with it is computed)."""
    a, b = p
    x, other = (a, b) if i == 0 else (b, a)
    if x.ndim > 2 or other.ndim != 2:
        return None
    if x.ndim == 1:  # tangent j of a @ b is row j of b; of A @ x it is column j of A
        rows = other if i == 0 else xp.matrix_transpose(other)
        return rows if scale is None else xp.multiply(rows, xp.expand_dims(scale, axis=-1))
    if i == 0:  # a (M, K): tangent (m', k) is e_m' (x) b[k, :]
        return _scaled_rows(xp, eye_kron(b, a.shape[0]), scale, math.prod(a.shape))
    # b (K, P): tangent (k', p') is a[:, k'] (x) e_p'
    return _scaled_rows(xp, eye_kron(a, b.shape[1], right=True), scale, math.prod(b.shape))


_matmul.basis_jvp = _matmul_basis_jvp


def _matmul_basis_vjp(xp, p, i, scale, out):
    """Cotangents of operand ``i`` of ``a @ b`` for the identity basis of output
    cotangents (scaled by ``scale``): ``(n_out,) + operand.shape``, written once
    from the other operand (row ``m`` of ``A @ x``'s Jacobian is ``A[m, :]``)."""
    a, b = p
    if a.ndim > 2 or b.ndim > 2 or (a.ndim == 1 and b.ndim == 1):
        return None
    s = scale
    if a.ndim == 1:  # out (P,) = x @ B
        K, P = b.shape
        if i == 0:  # basis p: B[:, p], as a row-major copy (NumPy lays the results of
            # broadcasting against a transposed view out transposed too, and the
            # products downstream would then copy whole per-sample stacks)
            val = xp.reshape(xp.reshape(xp.matrix_transpose(b), (K * P,)), (P, K))
            return val if s is None else xp.multiply(val, xp.reshape(s, (P, 1)))
        eye = xp.reshape(xp.eye(P, dtype=out.dtype, device=out.device), (P, 1, P))
        val = xp.multiply(xp.reshape(a, (1, K, 1)), eye)  # basis p: x (x) e_p
        return val if s is None else xp.multiply(val, xp.reshape(s, (P, 1, 1)))
    if b.ndim == 1:  # out (M,) = A @ x
        M, K = a.shape
        if i == 1:  # basis m: A[m, :]
            return a if s is None else xp.multiply(a, xp.reshape(s, (M, 1)))
        eye = xp.reshape(xp.eye(M, dtype=out.dtype, device=out.device), (M, M, 1))
        val = xp.multiply(eye, xp.reshape(b, (1, 1, K)))  # basis m: e_m (x) x
        return val if s is None else xp.multiply(val, xp.reshape(s, (M, 1, 1)))
    n = math.prod(out.shape)  # out (M, P) = A @ B
    if i == 0:  # basis (m, p): e_m (x) B[:, p]
        return _scaled_rows(xp, eye_kron(xp.matrix_transpose(b), a.shape[0]), s, n)
    # basis (m, p): A[m, :] (x) e_p
    return _scaled_rows(xp, eye_kron(xp.matrix_transpose(a), b.shape[1], right=True), s, n)


_matmul.basis_vjp = _matmul_basis_vjp


def _matmul_scaled_vjp(xp, p, i, base, scale, out):
    """Cotangents of the vector operand ``i`` of ``x @ B`` or ``A @ x`` for output
    cotangents ``scale * base[j]`` (``base`` ``(n,) + out.shape``, constant), when
    ``scale`` is mapped by ``vmap`` s over more values than the vector has entries
    (per-sample Jacobians of a layer).  Row ``j`` is ``sum_m scale[m] base[j, m]
    M[m, :]`` (``M`` = ``B^T`` or ``A``): ``scale @ K`` with ``K[m, (j, k)] = base[j, m]
    M[m, k]``, formed once (it does not depend on the mapped values), so every mapped
    value costs one row of one large product instead of scaling ``base`` and a small
    product of its own (``K`` is a stack of outer products: the backend's fastest form of
    a product with a unit inner dim).  ``None`` otherwise: the cotangents are
    materialised."""
    a, b = p
    if scale is None or a.ndim + b.ndim != 3 or (a.ndim == 1) != (i == 0):
        return None
    M = xp.matrix_transpose(b) if i == 0 else a  # (m, k): out[m] = sum_k M[m, k] x[k]
    m, k = M.shape
    n = base.shape[0]
    if mapped_size(scale) <= k or tuple(base.shape) != (n, m) or base.dtype != out.dtype:
        return None  # forming K (n * m * k) would cost more than the rows it saves
    K = xp.matmul(xp.reshape(xp.matrix_transpose(base), (m, n, 1)), xp.reshape(M, (m, 1, k)))
    return xp.reshape(xp.matmul(scale, xp.reshape(K, (m, n * k))), (n, k))


_matmul.scaled_vjp = _matmul_scaled_vjp


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
    """Tensor contraction over ``axes`` (an int or a pair of sequences).

    Written as one ``matmul`` of ``x1`` with its free dims kept (its contracted dims
    merged into one trailing dim) by ``x2`` as a ``(k, n)`` matrix, so leading dims of
    ``x1`` that are not contracted stay leading dims: under ``batch_ndim`` the data
    dims of ``x1`` stay data dims, as in ``v @ W``.

    >>> import numpy as np, xpdiff as xd
    >>> v, W = np.ones((5, 2, 3)), np.ones((3, 4))
    >>> xd.jacobian(lambda v: xd.numpy.tensordot(v, W, axes=1), batch_ndim=1)(v).shape
    (5, 2, 4, 2, 3)
    """
    if isinstance(axes, int):
        ax1 = tuple(range(x1.ndim - axes, x1.ndim))
        ax2 = tuple(range(axes))
    else:
        ax1 = tuple(norm_axis(a, x1.ndim) for a in axes[0])
        ax2 = tuple(norm_axis(a, x2.ndim) for a in axes[1])
    if len(ax1) != len(ax2) or any(x1.shape[a] != x2.shape[b] for a, b in zip(ax1, ax2)):
        raise ValueError(f"tensordot: the contracted dims must match in number and size, got "
                         f"{[x1.shape[a] for a in ax1]} and {[x2.shape[b] for b in ax2]} for "
                         f"axes={axes!r}")
    free1 = tuple(i for i in range(x1.ndim) if i not in ax1)
    free2 = tuple(i for i in range(x2.ndim) if i not in ax2)
    k = math.prod(x1.shape[a] for a in ax1)
    s1 = tuple(x1.shape[i] for i in free1)
    s2 = tuple(x2.shape[i] for i in free2)
    with op_context("tensordot"):
        if not s1:  # x1 contracted whole: x2's free dims stay leading (x2 @ x1 as a vector)
            b = _moved(x2, free2 + ax2)
            return _matmul.bind(reshape(b, s2 + (k,)), reshape(_moved(x1, ax1), (k,)))
        a = reshape(_moved(x1, free1 + ax1), s1 + (k,))
        b = reshape(_moved(x2, ax2 + free2), (k, math.prod(s2)))
        return reshape(_matmul.bind(a, b), s1 + s2)


def _moved(x, order):
    return x if order == tuple(range(x.ndim)) else permute_dims(x, order)


@export
def vecdot(x1, x2, /, *, axis=-1):
    """Dot product of vectors along ``axis`` (broadcasting the other dims); the first
    operand is conjugated when complex."""

    nd = max(x1.ndim, x2.ndim)
    axis = norm_axis(axis, nd) - nd
    if axis < -min(x1.ndim, x2.ndim) or x1.shape[axis] != x2.shape[axis]:
        raise ValueError(f"vecdot: axis {axis} must exist in both operands with the same size "
                         f"(it is not broadcast), got shapes {tuple(x1.shape)} and {tuple(x2.shape)}")
    if is_complex(x1):
        x1 = conj_(x1)
    prod = PRIMS["multiply"].bind(x1, x2)
    out = _sum(prod, axis=axis)
    if out.dtype != prod.dtype:  # backends widen small integer sums

        out = astype(out, prod.dtype)
    return out


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


# --- the linalg extension: helpers -----------------------------------------------------------

def _mT(xp, x):
    return xp.matrix_transpose(x)


def _mH(xp, x):
    """The conjugate transpose (the transpose of a real matrix)."""
    return _mT(xp, conj_(x) if is_complex(x) else x)


def _sym(xp, x):
    """The Hermitian (symmetric) part ``(x + x^H) / 2``."""
    return xp.multiply(xp.add(x, _mH(xp, x)), 0.5)


def _nan_where(xp, bad, x):
    """``x`` with NaN where ``bad`` (broadcast): a derivative that does not exist there
    (selected, so no arithmetic on the NaN: no warning, no NaN elsewhere)."""
    return xp.where(bad, xp.nan, x)


def _safe_divide(xp, x, d):
    """``x / d``, NaN where ``d == 0`` (without a division by zero)."""
    zero = xp.equal(d, 0.0)
    return _nan_where(xp, zero, xp.divide(x, xp.where(zero, 1.0, d)))


def _matrices_where(xp, ok, a, b):
    """Per matrix of a stack: ``a`` where ``ok`` (one flag per matrix), else ``b``."""
    return xp.where(xp.expand_dims(ok, axis=(-2, -1)), a, b)


def _square(name, x):
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"linalg.{name}: x must be a (stack of) square matrices, got shape "
                         f"{tuple(x.shape)}")


def _matrix(name, x):
    if x.ndim < 2:
        raise ValueError(f"linalg.{name}: x must have at least 2 dims (a stack of matrices), got "
                         f"shape {tuple(x.shape)}")


def _real_only(name, x):
    if is_complex(x):
        raise TypeError(f"linalg.{name}: reverse-mode derivatives of complex matrices are not "
                        f"supported (the rule is written for real input); use forward mode "
                        f"(jvp), differentiate the real and imaginary parts of an "
                        f"equivalent real problem, or use xpdiff.custom_vjp")


def _eye(xp, n, like, m=None, k=0):
    return xp.eye(n, m, k=k, dtype=like.dtype, device=like.device)


def _diag_matrix(xp, v):
    """``v[..., i] -> out[..., i, i]``."""
    return xp.multiply(xp.expand_dims(v, axis=-1), _eye(xp, v.shape[-1], v))


def _trace(xp, m):
    return xp.sum(_diagonal.bind(m, offset=0), axis=-1)


def _rdiv(xp, x, r):
    """``x @ inv(r)`` (through ``solve``: the standard has no triangular solve)."""
    return _mT(xp, _solve.bind(_mT(xp, r), _mT(xp, x)))


def _rdiv_t(xp, x, r):
    """``x @ inv(r)^T``."""
    return _mT(xp, _solve.bind(r, _mT(xp, x)))


def _gap_inverse(xp, w):
    """``F[..., i, j] = 1 / (w_j - w_i)`` off the diagonal, and 0 on it and wherever
    ``|w_j - w_i|`` is at rounding level (``n * eps * max|w|``): degenerate pairs
    contribute nothing (see docs/linalg-fft.md)."""
    n = w.shape[-1]
    d = xp.subtract(xp.expand_dims(w, axis=-2), xp.expand_dims(w, axis=-1))
    ws = xp.stop_gradient(w)
    scale = xp.expand_dims(xp.max(xp.abs(ws), axis=-1, keepdims=True), axis=-1)
    tol = xp.multiply(scale, float(n * xp.finfo(w.dtype).eps))
    small = xp.less_equal(xp.abs(xp.stop_gradient(d)), tol)
    return xp.where(small, 0.0, xp.divide(1.0, xp.where(small, 1.0, d)))


def _data_matrix(ctx, ops, has, **params):
    """Data rule of an op on the last two dims: the data dims must lead."""
    if ops[0].ndim < 2:
        raise ctx.mixing("acts on a data dim (needs two matrix dims besides the data dims)")
    return ops, params


def _matrix_prim(name, impl, jvp, vjp, *, multiple=False):
    """A primitive acting on the last two dims of one operand (broadcast over the rest)."""
    p = primitive(name, impl, jvp=jvp, vjp=vjp, multiple_results=multiple, data=_data_matrix)
    p.batch = lambda xp, v, b, n, **kw: (p.bind(v[0], **kw), True)
    return p


# --- inv, det, slogdet -------------------------------------------------------------------------

def _inv_jvp(xp, p, t):
    out = _inv.bind(p[0])
    return out, xp.negative(xp.matmul(xp.matmul(out, t[0]), out))


def _inv_vjp(xp, g, out, p, needs):
    ot = _mT(xp, out)
    return [xp.negative(xp.matmul(xp.matmul(ot, g), ot))]


_inv = _matrix_prim("linalg.inv", lambda bk, x: bk.linalg.inv(x), _inv_jvp, _inv_vjp)


def _adjugate_impl(bk, a):
    """``adj(a) = det(a) inv(a)`` for every matrix of the stack, singular ones included:
    ``det * inv`` where ``det != 0``, through the SVD ``a = U S Vh`` elsewhere,
    ``adj(a) = det(U) det(Vh) Vh^H diag(prod_{j != i} s_j) U^H`` (both computed for
    the whole stack on matrices masked to the identity: no branch on data)."""
    n = a.shape[-1]
    eye = bk.eye(n, dtype=a.dtype, device=a.device)
    d = bk.linalg.det(a)
    def mat(x):  # one flag or number per matrix, against the matrices
        return bk.reshape(x, tuple(x.shape) + (1, 1))

    ok = mat(d != 0)
    regular = mat(d) * bk.linalg.inv(bk.where(ok, a, eye))
    u, s, vh = bk.linalg.svd(bk.where(ok, eye, a))
    cplx = bk.isdtype(a.dtype, "complex floating")
    uh = bk.matrix_transpose(bk.conj(u) if cplx else u)
    v = bk.matrix_transpose(bk.conj(vh) if cplx else vh)
    row = bk.expand_dims(s, axis=-2)
    others = bk.where(bk.eye(n, dtype=bk.bool, device=a.device), bk.ones_like(row), row)
    p = bk.prod(others, axis=-1)  # prod_{j != i} s_j, without a division
    if cplx:
        p = bk.astype(p, a.dtype)
    phase = bk.linalg.det(u) * bk.linalg.det(vh)
    singular = mat(phase) * bk.matmul(v * bk.expand_dims(p, axis=-2), uh)
    return bk.where(ok, regular, singular)


def _adjugate_jvp(xp, p, t):
    """``d adj(A) = adj(A) tr(inv(A) dA) - inv(A) dA adj(A)`` where ``A`` is invertible.
    At an exactly singular ``A`` this (second-order) derivative of ``det`` is not
    computed: NaN (docs/linalg-fft.md)."""
    a = p[0]
    adj = _adjugate.bind(a)
    ok = xp.not_equal(_det.bind(a), 0.0)
    safe = _matrices_where(xp, ok, a, _eye(xp, a.shape[-1], a))
    w = _solve.bind(safe, t[0])
    term = xp.subtract(xp.multiply(adj, xp.expand_dims(_trace(xp, w), axis=(-2, -1))),
                       xp.matmul(w, adj))
    return adj, _nan_where(xp, xp.expand_dims(xp.logical_not(ok), axis=(-2, -1)), term)


def _adjugate_vjp(xp, g, out, p, needs):
    a = p[0]
    ok = xp.not_equal(_det.bind(a), 0.0)
    safe = _matrices_where(xp, ok, a, _eye(xp, a.shape[-1], a))
    # the transpose of dA -> adj tr(inv dA) - inv dA adj for the pairing sum(g * .)
    inv_t = _mT(xp, _inv.bind(safe))
    c = xp.subtract(xp.multiply(xp.expand_dims(xp.sum(xp.multiply(g, out), axis=(-2, -1)),
                                               axis=(-2, -1)), inv_t),
                    xp.matmul(xp.matmul(inv_t, g), _mT(xp, out)))
    return [_nan_where(xp, xp.expand_dims(xp.logical_not(ok), axis=(-2, -1)), c)]


_adjugate = _matrix_prim("linalg.adjugate", _adjugate_impl, _adjugate_jvp, _adjugate_vjp)


def _det_jvp(xp, p, t):
    """``d det = tr(adj(A) dA)``: exact at singular ``A`` too (det is a polynomial)."""
    a = p[0]
    out = _det.bind(a)
    return out, xp.sum(xp.multiply(_mT(xp, _adjugate.bind(a)), t[0]), axis=(-2, -1))


def _det_vjp(xp, g, out, p, needs):
    return [xp.multiply(xp.expand_dims(g, axis=(-2, -1)), _mT(xp, _adjugate.bind(p[0])))]


_det = _matrix_prim("linalg.det", lambda bk, x: bk.linalg.det(x), _det_jvp, _det_vjp)


def _slogdet_jvp(xp, p, t):
    """``d logabsdet = real(tr(inv(A) dA))``, ``d sign = sign i imag(tr(inv(A) dA))``
    (complex); NaN at a singular ``A``, where ``logabsdet = -inf`` has no derivative."""
    a = p[0]
    sign, logabs = _slogdet.bind(a)
    ok = xp.not_equal(sign, 0.0)
    safe = _matrices_where(xp, ok, a, _eye(xp, a.shape[-1], a))
    tr = _trace(xp, _solve.bind(safe, t[0]))
    bad = xp.logical_not(ok)
    if not is_complex(a):
        return (sign, logabs), (Zero(sign), _nan_where(xp, bad, tr))
    dlog = _nan_where(xp, bad, xp.real(tr))
    dsign = xp.multiply(sign, xp.multiply(1j, xp.astype(xp.imag(tr), sign.dtype)))
    return (sign, logabs), (_nan_where(xp, bad, dsign), dlog)


def _slogdet_vjp(xp, g, out, p, needs):
    _real_only("slogdet", p[0])
    gl = g[1]  # the sign is locally constant: its cotangent carries nothing
    if isinstance(gl, Zero):
        return [None]
    a = p[0]
    ok = xp.not_equal(out[0], 0.0)
    safe = _matrices_where(xp, ok, a, _eye(xp, a.shape[-1], a))
    c = xp.multiply(xp.expand_dims(gl, axis=(-2, -1)), _mT(xp, _inv.bind(safe)))
    return [_nan_where(xp, xp.expand_dims(xp.logical_not(ok), axis=(-2, -1)), c)]


_slogdet = _matrix_prim("linalg.slogdet", lambda bk, x: tuple(bk.linalg.slogdet(x)),
                        _slogdet_jvp, _slogdet_vjp, multiple=True)


# --- solve ----------------------------------------------------------------------------------

def _solve_impl(bk, a, b):
    # broadcast the stacks explicitly: some backends (CuPy) do not broadcast them or read
    # an operand with one dim less as a stack of vectors
    lead = _broadcast_lead(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    a = bk.broadcast_to(a, lead + tuple(a.shape[-2:]))
    b = bk.broadcast_to(b, lead + tuple(b.shape[-2:]))
    return bk.linalg.solve(a, b)


def _broadcast_lead(s1, s2):
    nd = max(len(s1), len(s2))
    s1 = (1,) * (nd - len(s1)) + s1
    s2 = (1,) * (nd - len(s2)) + s2
    out = []
    for d1, d2 in zip(s1, s2):
        if d1 != d2 and 1 not in (d1, d2):
            raise ValueError(f"linalg.solve: the stack shapes {s1} and {s2} do not broadcast")
        out.append(d2 if d1 == 1 else d1)
    return tuple(out)


def _solve_jvp(xp, p, t):
    a, b = p
    ta, tb = t
    out = _solve.bind(a, b)
    rhs = None if isinstance(tb, Zero) else tb
    if not isinstance(ta, Zero):
        term = xp.matmul(ta, out)
        rhs = xp.negative(term) if rhs is None else xp.subtract(rhs, term)
    tout = _solve.bind(a, rhs)
    if tuple(tout.shape) != tuple(out.shape):
        tout = xp.broadcast_to(tout, out.shape)
    return out, tout


def _solve_vjp(xp, g, out, p, needs):
    a, b = p
    gb = _solve.bind(_mT(xp, a), g)
    ca = unbroadcast(xp, xp.negative(xp.matmul(gb, _mT(xp, out))), a.shape) if needs[0] else None
    cb = unbroadcast(xp, gb, b.shape) if needs[1] else None
    return [ca, cb]


def _solve_batch(xp, vals, batched, n):
    r = max(v.ndim - int(b) for v, b in zip(vals, batched))
    new = [pad_batched(xp, v, r) if b else v for v, b in zip(vals, batched)]
    return _solve.bind(*new), True


def _solve_data(ctx, ops, has):
    """Both operands are stacks of matrices: data dims must lead the broadcast stack."""
    for o, h in zip(ops, has):
        if h and o.ndim < 2:
            raise ctx.mixing("acts on a data dim (needs two matrix dims besides the data dims)")
    return align_data(ctx, ops, has, core=2), {}


_solve = primitive("linalg.solve", _solve_impl, jvp=_solve_jvp, vjp=_solve_vjp,
                   batch=_solve_batch, data=_solve_data)


# --- cholesky -------------------------------------------------------------------------------

def _phi(xp, m):
    """Lower triangle with the diagonal halved."""
    return xp.multiply(xp.add(xp.tril(m), xp.tril(m, k=-1)), 0.5)


def _chol_jvp(xp, p, t):
    a = p[0]
    low = _chol.bind(a)
    li = _inv.bind(low)
    m = xp.matmul(xp.matmul(li, _sym(xp, t[0])), _mH(xp, li))
    return low, xp.matmul(low, _phi(xp, m))


def _chol_vjp(xp, g, out, p, needs):
    _real_only("cholesky", p[0])
    li = _inv.bind(out)
    m = _phi(xp, xp.matmul(_mT(xp, out), g))
    return [_sym(xp, xp.matmul(xp.matmul(_mT(xp, li), m), li))]


_chol = _matrix_prim("linalg.cholesky", lambda bk, x: bk.linalg.cholesky(x), _chol_jvp, _chol_vjp)


# --- qr -------------------------------------------------------------------------------------

def _qr_tall_jvp(xp, q, r, da):
    """m >= n: dA = dQ R + Q dR with Q^H dQ anti-Hermitian and dR upper triangular with a
    real diagonal (as R's)."""
    w = _rdiv(xp, da, r)
    c = xp.matmul(_mH(xp, q), w)
    if is_complex(c):
        diag = _diag_matrix(xp, xp.astype(xp.real(_diagonal.bind(c, offset=0)), c.dtype))
        s = xp.add(xp.add(xp.triu(c, k=1), _mH(xp, xp.tril(c, k=-1))), diag)
    else:
        s = xp.add(xp.triu(c), _mT(xp, xp.tril(c, k=-1)))
    return xp.subtract(w, xp.matmul(q, s)), xp.matmul(s, r)


def _full_rank(xp, r):
    """Per matrix: whether the square triangular factor ``r`` has a non-zero diagonal,
    and ``r`` with the others replaced by the identity (safe to solve with)."""
    ok = xp.all(xp.not_equal(_diagonal.bind(r, offset=0), 0.0), axis=-1)
    return ok, _matrices_where(xp, ok, r, _eye(xp, r.shape[-1], r))


def _qr_tall_vjp(xp, q, r, gq, gr):
    nn = None
    if not isinstance(gr, Zero):
        nn = xp.matmul(gr, _mT(xp, r))
    if not isinstance(gq, Zero):
        term = xp.matmul(_mT(xp, q), gq)
        nn = xp.negative(term) if nn is None else xp.subtract(nn, term)
    k = xp.add(xp.triu(nn), _mT(xp, xp.triu(nn, k=1)))
    acc = xp.matmul(q, k)
    if not isinstance(gq, Zero):
        acc = xp.add(acc, gq)
    return _rdiv_t(xp, acc, r)


def _split_cols(x, m):
    return _getitem_fn(x, (Ellipsis, slice(None, m))), _getitem_fn(x, (Ellipsis, slice(m, None)))


def _qr_jvp(xp, p, t, *, mode):
    """At a rank-deficient ``A`` (a zero on ``R``'s diagonal) ``Q`` is not unique and has
    no derivative: the tangents of that matrix are NaN."""
    a = p[0]
    q_out, r_out = _qr.bind(a, mode=mode)
    q, r = q_out, r_out
    m, n = a.shape[-2:]
    if m > n and mode == "complete":  # the extra columns of Q are not unique (NaN); R's
        q = _getitem_fn(q_out, (Ellipsis, slice(None, n)))  # extra rows are zeros
        r = _getitem_fn(r_out, (Ellipsis, slice(None, n), slice(None)))
    if m >= n:
        ok, r_safe = _full_rank(xp, r)
        dq, dr = _qr_tall_jvp(xp, q, r_safe, t[0])
        if m > n and mode == "complete":
            dq = xp.concat([dq, xp.full_like(_getitem_fn(q_out, (Ellipsis, slice(n, None))),
                                             xp.nan)], axis=-1)
            dr = xp.concat([dr, xp.zeros_like(_getitem_fn(r_out, (Ellipsis, slice(n, None),
                                                                   slice(None))))], axis=-2)
    else:
        # wide: A = [X | Y], X = Q U square, R = [U | Q^H Y]
        dx, dy = _split_cols(t[0], m)
        u, _ = _split_cols(r, m)
        _, y = _split_cols(a, m)
        ok, u_safe = _full_rank(xp, u)
        dq, du = _qr_tall_jvp(xp, q, u_safe, dx)
        dv = xp.add(xp.matmul(_mH(xp, dq), y), xp.matmul(_mH(xp, q), dy))
        dr = xp.concat([du, dv], axis=-1)
    bad = xp.expand_dims(xp.logical_not(ok), axis=(-2, -1))
    return (q_out, r_out), (_nan_where(xp, bad, dq), _nan_where(xp, bad, dr))


def _qr_vjp(xp, g, out, p, needs, *, mode):
    a = p[0]
    _real_only("qr", a)
    q, r = out
    gq, gr = g
    if isinstance(gq, Zero) and isinstance(gr, Zero):
        return [None]
    m, n = a.shape[-2:]
    stray = None  # mode="complete", tall: a non-zero cotangent of Q's extra columns
    if m > n and mode == "complete":
        q = _getitem_fn(q, (Ellipsis, slice(None, n)))
        r = _getitem_fn(r, (Ellipsis, slice(None, n), slice(None)))
        if not isinstance(gq, Zero):
            stray = xp.any(xp.not_equal(_getitem_fn(gq, (Ellipsis, slice(n, None))), 0.0),
                           axis=(-2, -1))
            gq = _getitem_fn(gq, (Ellipsis, slice(None, n)))
        if not isinstance(gr, Zero):  # R's extra rows are zeros whatever A is
            gr = _getitem_fn(gr, (Ellipsis, slice(None, n), slice(None)))
    if m >= n:
        ok, r_safe = _full_rank(xp, r)
        ga = _qr_tall_vjp(xp, q, r_safe, gq, gr)
    else:
        u, _ = _split_cols(r, m)
        _, y = _split_cols(a, m)
        ok, u_safe = _full_rank(xp, u)
        gr = instantiate(xp, gr)
        gu, gv = _split_cols(gr, m)
        gq2 = xp.matmul(y, _mT(xp, gv))
        if not isinstance(gq, Zero):
            gq2 = xp.add(gq2, gq)
        gx = _qr_tall_vjp(xp, q, u_safe, gq2, gu)
        ga = xp.concat([gx, xp.matmul(q, gv)], axis=-1)
    bad = xp.logical_not(ok) if stray is None else xp.logical_or(xp.logical_not(ok), stray)
    return [_nan_where(xp, xp.expand_dims(bad, axis=(-2, -1)), ga)]


_qr = _matrix_prim("linalg.qr", lambda bk, x, *, mode: tuple(bk.linalg.qr(x, mode=mode)),
                   _qr_jvp, _qr_vjp, multiple=True)


# --- eigh -----------------------------------------------------------------------------------

def _eigh_jvp(xp, p, t):
    a = p[0]
    w, v = _eigh.bind(a)
    m = xp.matmul(xp.matmul(_mH(xp, v), _sym(xp, t[0])), v)
    dw = _diagonal.bind(m, offset=0)
    f = _gap_inverse(xp, w)
    if is_complex(a):  # the eigenvalues are real; the eigenvectors' phases kept fixed
        dw, f = xp.real(dw), xp.astype(f, a.dtype)
    dv = xp.matmul(v, xp.multiply(f, m))
    return (w, v), (dw, dv)


def _eigh_vjp(xp, g, out, p, needs):
    _real_only("eigh", p[0])
    w, v = out
    gw, gv = g
    inner = None
    if not isinstance(gw, Zero):
        inner = _diag_matrix(xp, gw)
    if not isinstance(gv, Zero):
        term = xp.multiply(_gap_inverse(xp, w), xp.matmul(_mT(xp, v), gv))
        inner = term if inner is None else xp.add(inner, term)
    if inner is None:
        return [None]
    return [_sym(xp, xp.matmul(xp.matmul(v, inner), _mT(xp, v)))]


_eigh = _matrix_prim("linalg.eigh", lambda bk, x: tuple(bk.linalg.eigh(x)), _eigh_jvp, _eigh_vjp,
                     multiple=True)


# --- svd ------------------------------------------------------------------------------------

def _svd_reduced(xp, a, u, vh, full_matrices):
    """The first ``k = min(m, n)`` columns of ``U`` and rows of ``Vh``."""
    m, n = a.shape[-2:]
    k = min(m, n)
    if not full_matrices or m == n:
        return u, vh
    return (_getitem_fn(u, (Ellipsis, slice(None, k))),
            _getitem_fn(vh, (Ellipsis, slice(None, k), slice(None))))


def _svd_jvp(xp, p, t, *, full_matrices):
    """The extra columns of ``U`` (rows of ``Vh``) of ``full_matrices=True`` for a
    non-square matrix are not unique: their tangents are NaN; so are those of
    singular vectors whose derivative divides by a zero singular value."""
    a = p[0]
    u_full, s, vh_full = _svd.bind(a, full_matrices=full_matrices)
    u, vh = _svd_reduced(xp, a, u_full, vh_full, full_matrices)
    da = t[0]
    m, n = a.shape[-2:]
    k = min(m, n)
    cplx = is_complex(a)
    v = _mH(xp, vh)
    dav = xp.matmul(da, v)
    dp = xp.matmul(_mH(xp, u), dav)
    dpt = _mH(xp, dp)
    ds = _diagonal.bind(dp, offset=0)
    f = _gap_inverse(xp, xp.multiply(s, s))
    srow, scol = xp.expand_dims(s, axis=-2), xp.expand_dims(s, axis=-1)
    if cplx:
        ds = xp.real(ds)
        f, srow_c, scol_c = (xp.astype(z, a.dtype) for z in (f, srow, scol))
    else:
        srow_c, scol_c = srow, scol
    inner = xp.multiply(f, xp.add(xp.multiply(dp, srow_c), xp.multiply(scol_c, dpt)))
    if cplx:  # the phase of u_i relative to v_i: i imag(dp_ii) / s_i
        phase = xp.multiply(1j, xp.astype(xp.imag(_diagonal.bind(dp, offset=0)), a.dtype))
        inner = xp.add(inner, _diag_matrix(xp, _safe_divide(xp, phase, xp.astype(s, a.dtype))))
    du = xp.matmul(u, inner)
    if m > k:
        du = xp.add(du, _safe_divide(xp, xp.subtract(dav, xp.matmul(u, dp)), srow_c))
    dv = xp.matmul(v, xp.multiply(f, xp.add(xp.multiply(scol_c, dp), xp.multiply(dpt, srow_c))))
    if n > k:
        proj = xp.subtract(xp.matmul(_mH(xp, da), u), xp.matmul(v, dpt))
        dv = xp.add(dv, _safe_divide(xp, proj, srow_c))
    dvh = _mH(xp, dv)
    if full_matrices and m > k:
        extra = xp.full_like(_getitem_fn(u_full, (Ellipsis, slice(k, None))), xp.nan)
        du = xp.concat([du, extra], axis=-1)
    if full_matrices and n > k:
        extra = xp.full_like(_getitem_fn(vh_full, (Ellipsis, slice(k, None), slice(None))), xp.nan)
        dvh = xp.concat([dvh, extra], axis=-2)
    return (u_full, s, vh_full), (du, ds, dvh)


def _svd_vjp(xp, g, out, p, needs, *, full_matrices):
    """A non-zero cotangent of the extra (not unique) columns of ``U`` or rows of ``Vh``
    of ``full_matrices=True`` gives NaN."""
    a = p[0]
    _real_only("svd", a)
    u, s, vh = out
    gu, gs, gvh = g
    m, n = a.shape[-2:]
    k = min(m, n)
    u, vh = _svd_reduced(xp, a, u, vh, full_matrices)
    stray = None  # per matrix: a non-zero cotangent of the extra columns
    if full_matrices and m > k and not isinstance(gu, Zero):
        stray = xp.any(xp.not_equal(_getitem_fn(gu, (Ellipsis, slice(k, None))), 0.0),
                       axis=(-2, -1))
        gu = _getitem_fn(gu, (Ellipsis, slice(None, k)))
    if full_matrices and n > k and not isinstance(gvh, Zero):
        stray = xp.any(xp.not_equal(_getitem_fn(gvh, (Ellipsis, slice(k, None), slice(None))),
                                    0.0), axis=(-2, -1))
        gvh = _getitem_fn(gvh, (Ellipsis, slice(None, k), slice(None)))
    v = _mT(xp, vh)
    f = _gap_inverse(xp, xp.multiply(s, s))
    srow, scol = xp.expand_dims(s, axis=-2), xp.expand_dims(s, axis=-1)
    inner = None
    extra = []
    if not isinstance(gs, Zero):
        inner = _diag_matrix(xp, gs)
    if not isinstance(gu, Zero):
        utg = xp.matmul(_mT(xp, u), gu)
        term = xp.multiply(xp.multiply(f, xp.subtract(utg, _mT(xp, utg))), srow)
        inner = term if inner is None else xp.add(inner, term)
        if m > k:
            extra.append(xp.matmul(_safe_divide(xp, xp.subtract(gu, xp.matmul(u, utg)), srow), vh))
    if not isinstance(gvh, Zero):
        gv = _mT(xp, gvh)
        vtg = xp.matmul(vh, gv)
        term = xp.multiply(scol, xp.multiply(f, xp.subtract(vtg, _mT(xp, vtg))))
        inner = term if inner is None else xp.add(inner, term)
        if n > k:
            proj = _safe_divide(xp, xp.subtract(gv, xp.matmul(v, vtg)), srow)
            extra.append(xp.matmul(u, _mT(xp, proj)))
    if inner is None:
        return [None]
    acc = xp.matmul(xp.matmul(u, inner), vh)
    for e in extra:
        acc = xp.add(acc, e)
    if stray is not None:
        acc = _nan_where(xp, xp.expand_dims(stray, axis=(-2, -1)), acc)
    return [acc]


_svd = _matrix_prim(
    "linalg.svd", lambda bk, x, *, full_matrices: tuple(bk.linalg.svd(x, full_matrices=full_matrices)),
    _svd_jvp, _svd_vjp, multiple=True)


# --- diagonal -------------------------------------------------------------------------------

def _diagonal_vjp(xp, g, out, p, needs, *, offset):
    m, n = p[0].shape[-2:]
    eye = _eye(xp, m, g, n, k=offset)
    if offset >= 0:  # entry i sits in row i
        return [xp.multiply(xp.expand_dims(fit_axis(g, g.ndim - 1, m), axis=-1), eye)]
    return [xp.multiply(xp.expand_dims(fit_axis(g, g.ndim - 1, n), axis=-2), eye)]


_diagonal = _matrix_prim(
    "linalg.diagonal", lambda bk, x, *, offset: bk.linalg.diagonal(x, offset=offset),
    lambda xp, p, t, *, offset: (_diagonal.bind(p[0], offset=offset),
                                 _diagonal.bind(t[0], offset=offset)),
    _diagonal_vjp)


# --- public functions of the extension ---------------------------------------------------------

class SlogdetResult(NamedTuple):
    """``linalg.slogdet``'s result."""

    sign: Any
    logabsdet: Any


class EighResult(NamedTuple):
    """``linalg.eigh``'s result."""

    eigenvalues: Any
    eigenvectors: Any


class QRResult(NamedTuple):
    """``linalg.qr``'s result."""

    Q: Any
    R: Any


class SVDResult(NamedTuple):
    """``linalg.svd``'s result."""

    U: Any
    S: Any
    Vh: Any


export(matmul, name="linalg.matmul")
export(tensordot, name="linalg.tensordot")
export(vecdot, name="linalg.vecdot")
export(_matrix_transpose, name="linalg.matrix_transpose")


@export(name="linalg.inv")
def inv(x, /):
    """Inverse of (a stack of) square matrices; ``d inv = -inv dA inv``.

    >>> import numpy as np, xpdiff as xd
    >>> a = np.array([[2.0, 0.0], [0.0, 4.0]])
    >>> xd.grad(lambda a: xd.numpy.sum(xd.numpy.linalg.inv(a)))(a)
    array([[-0.25  , -0.125 ],
           [-0.125 , -0.0625]])
    """
    _square("inv", x)
    return _inv.bind(x)


@export(name="linalg.det")
def det(x, /):
    """Determinant; ``d det = trace(adj(A) dA)``, exact at singular matrices too.

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(xd.numpy.linalg.det)(np.array([[1.0, 2.0], [2.0, 4.0]]))  # adj(A)^T
    array([[ 4., -2.],
           [-2.,  1.]])
    """
    _square("det", x)
    return _det.bind(x)


@export(name="linalg.slogdet")
def slogdet(x, /):
    """``(sign, logabsdet)`` of the determinant; derivatives flow through
    ``logabsdet`` (``d logabsdet = trace(inv(A) dA)``), the sign is locally constant."""
    _square("slogdet", x)
    return SlogdetResult(*_slogdet.bind(x))


@export(name="linalg.solve")
def solve(x1, x2, /):
    """Solution ``X`` of ``x1 @ X = x2``; ``x2`` of shape ``(M,)`` is one vector,
    otherwise a stack of ``(M, K)`` matrices (stacks broadcast).

    >>> import numpy as np, xpdiff as xd
    >>> a, b = np.array([[2.0, 0.0], [0.0, 4.0]]), np.array([1.0, 1.0])
    >>> xd.grad(lambda b: xd.numpy.sum(xd.numpy.linalg.solve(a, b)))(b)
    array([0.5 , 0.25])
    """
    _square("solve", x1)
    if x2.ndim == 1:
        out = _solve.bind(x1, reshape(x2, (x2.shape[0], 1)))
        return reshape(out, tuple(out.shape[:-1]))
    if x2.ndim < 2:
        raise ValueError("linalg.solve: x2 must have shape (M,) or (..., M, K)")
    return _solve.bind(x1, x2)


@export(name="linalg.cholesky")
def cholesky(x, /, *, upper=False):
    """Cholesky factor of (a stack of) symmetric positive-definite matrices.

    The derivative is that of the factor as a function of a symmetric matrix: a
    perturbation ``dA`` acts through its symmetric part ``(dA + dA^T) / 2``, so
    gradients come out symmetric (see docs/linalg-fft.md).
    """
    _square("cholesky", x)
    low = _chol.bind(x)
    if not upper:
        return low
    xp = namespace_for_values([x])
    return _mT(xp, conj_(low) if is_complex(low) else low)


@export(name="linalg.qr")
def qr(x, /, *, mode="reduced"):
    """QR factorisation ``(Q, R)``.

    Derivatives exist where ``R`` has a non-zero diagonal (NaN tangents elsewhere),
    except for the extra columns of ``Q`` of ``mode="complete"`` with ``M > N`` (not
    unique: NaN).  ``Q`` and ``R`` are unique
    up to the signs of the columns of ``Q`` (rows of ``R``): the derivative is that of
    the backend's factorisation, which keeps its signs under small perturbations.
    """
    _matrix("qr", x)
    if mode not in ("reduced", "complete"):
        raise ValueError(f"linalg.qr: mode must be 'reduced' or 'complete', got {mode!r}")
    return QRResult(*_qr.bind(x, mode=mode))


@export(name="linalg.eigh")
def eigh(x, /):
    """Eigenvalues (ascending) and eigenvectors of (a stack of) symmetric matrices.

    Derivatives act through the symmetric part of a perturbation.  Eigenvector
    derivatives use ``F_ij = 1 / (l_j - l_i)``; pairs of eigenvalues equal to
    rounding level contribute nothing (docs/linalg-fft.md).  Eigenvectors are
    defined up to sign: differentiate sign-invariant functions of them.
    """
    _square("eigh", x)
    return EighResult(*_eigh.bind(x))


@export(name="linalg.eigvalsh")
def eigvalsh(x, /):
    """Eigenvalues (ascending) of (a stack of) symmetric matrices (through ``eigh``)."""
    return eigh(x)[0]


@export(name="linalg.svd")
def svd(x, /, *, full_matrices=True):
    """Singular value decomposition ``(U, S, Vh)``.

    With ``full_matrices=True`` for non-square input the extra columns of ``U`` (rows
    of ``Vh``) are not unique and have NaN tangents.  The derivatives of ``U`` and
    ``Vh`` need distinct singular values (equal ones contribute nothing) and non-zero
    ones for the part of ``U`` or ``Vh`` outside the square block.  Singular vectors are defined up to a joint
    sign: differentiate sign-invariant functions (``S``, ``U @ diag(S) @ Vh``, ...).
    """
    _matrix("svd", x)
    return SVDResult(*_svd.bind(x, full_matrices=full_matrices))


@export(name="linalg.svdvals")
def svdvals(x, /):
    """Singular values (descending), differentiable where they are distinct."""
    _matrix("svdvals", x)
    return _svd.bind(x, full_matrices=False)[1]


@export(name="linalg.diagonal")
def diagonal(x, /, *, offset=0):
    """The ``offset`` diagonal of (a stack of) matrices."""
    _matrix("diagonal", x)
    return _diagonal.bind(x, offset=offset)


@export(name="linalg.trace")
def trace(x, /, *, offset=0, dtype=None):
    """Sum of the ``offset`` diagonal of (a stack of) matrices."""
    return namespace_for_values([x]).sum(diagonal(x, offset=offset), axis=-1, dtype=dtype)


@export(name="linalg.outer")
def outer(x1, x2, /):
    """Outer product of two vectors."""
    if x1.ndim != 1 or x2.ndim != 1:
        raise ValueError(f"linalg.outer: x1 and x2 must be 1-d, got shapes {tuple(x1.shape)} and "
                         f"{tuple(x2.shape)}")
    xp = namespace_for_values([x1])
    return xp.multiply(xp.expand_dims(x1, axis=-1), x2)


@export(name="linalg.cross")
def cross(x1, x2, /, *, axis=-1):
    """Cross product of 3-element vectors along ``axis`` (other dims broadcast)."""
    xp = namespace_for_values([x1])
    nd = max(x1.ndim, x2.ndim)
    if not -min(x1.ndim, x2.ndim) <= axis < 0:
        axis = norm_axis(axis, nd) - nd
    if x1.shape[axis] != 3 or x2.shape[axis] != 3:
        raise ValueError(f"linalg.cross: the axis {axis} must have size 3 in both operands, got "
                         f"shapes {tuple(x1.shape)} and {tuple(x2.shape)}")
    a = xp.moveaxis(x1, axis, -1) if axis != -1 else x1
    b = xp.moveaxis(x2, axis, -1) if axis != -1 else x2
    a0, a1, a2 = (_getitem_fn(a, (Ellipsis, i)) for i in range(3))
    b0, b1, b2 = (_getitem_fn(b, (Ellipsis, i)) for i in range(3))
    c = xp.stack([xp.subtract(xp.multiply(a1, b2), xp.multiply(a2, b1)),
                  xp.subtract(xp.multiply(a2, b0), xp.multiply(a0, b2)),
                  xp.subtract(xp.multiply(a0, b1), xp.multiply(a1, b0))], axis=-1)
    return xp.moveaxis(c, -1, axis) if axis != -1 else c


@export(name="linalg.matrix_power")
def matrix_power(x, n, /):
    """``x`` multiplied by itself ``n`` times (``n < 0``: powers of ``inv(x)``; ``n = 0``:
    the identity, a constant)."""
    _square("matrix_power", x)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"linalg.matrix_power: n must be a Python int, got {type(n).__name__}")
    xp = namespace_for_values([x])
    if n == 0:
        return xp.add(xp.zeros_like(x), _eye(xp, x.shape[-1], x))
    if n < 0:
        x, n = inv(x), -n
    out = None
    base = x
    while True:  # binary powering: about log2(n) products
        if n & 1:
            out = base if out is None else xp.matmul(out, base)
        n >>= 1
        if not n:
            return out
        base = xp.matmul(base, base)


@export(name="linalg.pinv")
def pinv(x, /, *, rtol=None):
    """Moore-Penrose pseudo-inverse through the SVD; singular values at most
    ``rtol * max(S)`` (default ``rtol = max(M, N) * eps``) are treated as zero.

    Differentiable where the rank is locally constant and the kept singular values
    are distinct from each other (the SVD's conditions)."""
    _matrix("pinv", x)
    xp = namespace_for_values([x])
    u, s, vh = svd(x, full_matrices=False)
    keep = xp.greater(s, _cutoff(xp, x, s, rtol))
    sinv = xp.where(keep, xp.divide(1.0, xp.where(keep, s, 1.0)), 0.0)
    if is_complex(x):
        u, vh = conj_(u), conj_(vh)
    return xp.matmul(xp.multiply(_mT(xp, vh), xp.expand_dims(sinv, axis=-2)), _mT(xp, u))


def _cutoff(xp, x, s, rtol):
    if rtol is None:
        rtol = max(x.shape[-2:]) * xp.finfo(s.dtype).eps
    smax = xp.max(xp.stop_gradient(s), axis=-1, keepdims=True)
    if isinstance(rtol, (int, float)):
        return xp.multiply(smax, float(rtol))
    return xp.multiply(smax, xp.expand_dims(xp.astype(rtol, s.dtype), axis=-1))


@export(name="linalg.matrix_rank")
def matrix_rank(x, /, *, rtol=None):
    """Number of singular values above ``rtol * max(S)`` (an integer: no derivative)."""
    _matrix("matrix_rank", x)
    xp = namespace_for_values([x])
    s = svdvals(xp.stop_gradient(x))
    big = xp.greater(s, _cutoff(xp, x, s, rtol))
    idt = xp.__array_namespace_info__().default_dtypes(device=x.device)["integral"]
    return xp.sum(xp.astype(big, idt), axis=-1)


_INF = math.inf


@export(name="linalg.vector_norm")
def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    """Vector norm over ``axis`` (all dims for ``None``).

    Derivative conventions at non-differentiable points: where the whole vector is
    zero the 2-norm (and every p-norm with p > 1) has derivative 0; ``ord=1`` uses
    ``sign(0) = 0``; ``inf``/``-inf`` split the derivative evenly between tied
    entries; ``ord=0`` (a count) has none; norms with ``p < 1`` are not
    differentiable at zero entries (infinite derivative).

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.linalg.vector_norm(x))(np.zeros(3))
    array([0., 0., 0.])
    """
    xp = namespace_for_values([x])
    cplx = is_complex(x)
    if ord == 2:
        sq = xp.real(xp.multiply(x, conj_(x))) if cplx else xp.multiply(x, x)
        return _safe_root(xp, xp.sum(sq, axis=axis, keepdims=keepdims), 0.5)
    a = xp.abs(x)
    if ord == 1:
        return xp.sum(a, axis=axis, keepdims=keepdims)
    if ord == _INF:
        return xp.max(a, axis=axis, keepdims=keepdims)
    if ord == -_INF:
        return xp.min(a, axis=axis, keepdims=keepdims)
    if ord == 0:
        return xp.sum(xp.astype(xp.not_equal(x, 0), a.dtype), axis=axis, keepdims=keepdims)
    if isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise ValueError(f"linalg.vector_norm: ord must be a number, inf or -inf, got {ord!r}")
    p = float(ord)
    s = xp.sum(xp.pow(a, p), axis=axis, keepdims=keepdims)
    if p > 0:
        return _safe_root(xp, s, 1.0 / p)
    return xp.pow(s, 1.0 / p)


def _safe_root(xp, s, e):
    """``s ** e`` with derivative 0 (not nan) where ``s == 0``."""
    zero = xp.equal(s, 0.0)
    return xp.where(zero, 0.0, xp.pow(xp.where(zero, 1.0, s), e))


@export(name="linalg.matrix_norm")
def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    """Matrix norm of (a stack of) matrices: ``"fro"``, ``"nuc"``, ``1``, ``-1``, ``2``,
    ``-2``, ``inf``, ``-inf``.  ``2``, ``-2`` and ``"nuc"`` go through the singular
    values (differentiable where the ones involved are distinct); the others are
    sums and maxima of ``abs`` (ties split evenly, ``sign(0) = 0``)."""
    _matrix("matrix_norm", x)
    xp = namespace_for_values([x])
    if ord == "fro":
        return vector_norm(x, axis=(-2, -1), keepdims=keepdims)
    if ord in ("nuc", 2, -2):
        s = svdvals(x)
        red = {"nuc": xp.sum, 2: xp.max, -2: xp.min}[ord]
        out = red(s, axis=-1)
        return xp.expand_dims(out, axis=(-2, -1)) if keepdims else out
    if ord in (1, -1, _INF, -_INF):
        a = xp.abs(x)
        first, second = (-2, -1) if ord in (1, -1) else (-1, -2)
        red = xp.max if ord in (1, _INF) else xp.min
        out = red(xp.sum(a, axis=first, keepdims=True), axis=second, keepdims=True)
        return out if keepdims else xp.reshape(out, tuple(out.shape[:-2]))
    raise ValueError(f"linalg.matrix_norm: ord must be one of 'fro', 'nuc', 1, -1, 2, -2, inf, "
                     f"-inf, got {ord!r}")


__all__ = ["EighResult", "QRResult", "SVDResult", "SlogdetResult"]
