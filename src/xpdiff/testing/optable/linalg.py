"""Entries for the ``linalg`` extension.

Inputs come from well-conditioned samplers (diagonally dominant matrices for
``inv``/``solve``/``det``, symmetric matrices with separated eigenvalues for
``cholesky``/``eigh``, separated singular values for ``svd``), so that finite
differences are accurate.  Factors defined up to sign (eigenvectors, singular
vectors, ``Q``/``R``) are checked through sign-invariant functions of them
(``v * v``, ``u @ diag(s) @ vh``, ...).  Symmetric-input functions are applied to
``(x + x^T) / 2`` so that every perturbation direction is admissible.
"""

from __future__ import annotations

import math

import numpy as np

from ._op import Op


def _dominant(n, m=None):
    """Square ``n x n`` matrices, diagonally dominant (and a second ``n x m`` operand)."""

    def sample(rng, lead):
        a = rng.uniform(-1.0, 1.0, lead + (n, n)) + n * np.eye(n)
        if m is None:
            return [a]
        return [a, rng.uniform(-1.0, 1.0, lead + (n, m))]

    return sample


def _orthogonal(rng, lead, n, k=None):
    q, r = np.linalg.qr(rng.standard_normal(lead + (n, n)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    return q if k is None else q[..., :k]


def _spectrum(n, low=1.0, gap=1.0):
    """Symmetric ``n x n`` matrices with eigenvalues ``low, low + gap, ...`` (jittered)."""

    def sample(rng, lead):
        q = _orthogonal(rng, lead, n)
        w = low + gap * np.arange(n) + rng.uniform(0.0, 0.2 * gap, lead + (n,))
        return [(q * w[..., None, :]) @ np.swapaxes(q, -1, -2)]

    return sample


def _singular(m, n):
    """``m x n`` matrices with singular values 1, 2, ... (jittered)."""

    def sample(rng, lead):
        k = min(m, n)
        u = _orthogonal(rng, lead, m, k)
        v = _orthogonal(rng, lead, n, k)
        s = 1.0 + np.arange(k)[::-1] + rng.uniform(0.0, 0.2, lead + (k,))
        return [(u * s[..., None, :]) @ np.swapaxes(v, -1, -2)]

    return sample


def _sym(xp, x):
    return (x + xp.matrix_transpose(x)) * 0.5


def _eigh(xp, x):
    w, v = xp.linalg.eigh(_sym(xp, x))
    return xp.concat([v * v, w[..., None, :]], axis=-2)


def _eigh_matrix_function(xp, x):
    # v diag(exp(w / 4)) v^T: a matrix function, invariant to the eigenvectors' signs
    w, v = xp.linalg.eigh(_sym(xp, x))
    return (v * xp.exp(w * 0.25)[..., None, :]) @ xp.matrix_transpose(v)


def _svd_tall(xp, x):
    u, s, vh = xp.linalg.svd(x, full_matrices=False)
    return xp.concat([u * u, vh * vh, s[..., None, :]], axis=-2)


def _svd_wide(xp, x):
    u, s, vh = xp.linalg.svd(x, full_matrices=False)
    return xp.concat([u * u, vh * vh, s[..., :, None]], axis=-1)


def _svd_rebuild(xp, x):
    u, s, vh = xp.linalg.svd(x, full_matrices=False)
    return xp.sin((u * s[..., None, :]) @ vh)


def _qr_tall(xp, x):
    q, r = xp.linalg.qr(x)
    return xp.concat([q * q, r * r], axis=-2)


def _qr_wide(xp, x):
    q, r = xp.linalg.qr(x)
    return xp.concat([q * q, r * r], axis=-1)


def _slogdet(xp, x):
    sign, logabs = xp.linalg.slogdet(x)
    return sign * logabs


def _matrix_norms_svd(xp, x):
    n = xp.linalg.matrix_norm
    return n(x, ord="nuc") + 2.0 * n(x, ord=2) + 3.0 * n(x, ord=-2, keepdims=True)[..., 0, 0]


def _matrix_norms_entries(xp, x):
    n = xp.linalg.matrix_norm
    return (n(x) + 2.0 * n(x, ord=1) + 3.0 * n(x, ord=-1) + 5.0 * n(x, ord=math.inf)
            + 7.0 * n(x, ord=-math.inf, keepdims=True)[..., 0, 0])


def _vector_norms(xp, x):
    n = xp.linalg.vector_norm
    return (n(x, axis=-1) + 2.0 * n(x, ord=1, axis=-1) + 3.0 * n(x, ord=math.inf, axis=-1)
            + 5.0 * n(x, ord=-math.inf, axis=-1) + 7.0 * n(x, ord=3, axis=-1)
            + 11.0 * n(x, ord=-1, axis=-1) + n(x, ord=0, axis=-1) * n(x, ord=0.5, axis=-1))


def _matrix_power(xp, x):
    p = xp.linalg.matrix_power
    return p(x, 3) + p(x, -2) + p(x, 0) + p(x, 1)


def _aliases(xp, x, y):
    la = xp.linalg
    return (la.matmul(x, la.matrix_transpose(y)) + la.tensordot(x, y, axes=((-1,), (-1,)))
            + la.vecdot(x, y)[..., None])


S3 = (3, 3)
OPS: list[Op] = [
    Op("linalg.inv", lambda xp, x: xp.linalg.inv(x), (S3,), sampler=_dominant(3)),
    Op("linalg.det", lambda xp, x: xp.linalg.det(x), (S3,), sampler=_dominant(3)),
    Op("linalg.slogdet", _slogdet, (S3,), sampler=_dominant(3)),
    Op("linalg.solve", lambda xp, a, b: xp.linalg.solve(a, b), (S3, (3, 2)),
       sampler=_dominant(3, 2)),
    Op("linalg.solve_vector", lambda xp, a, b: xp.linalg.solve(a, b[..., 0]), (S3, (3, 1)),
       sampler=_dominant(3, 1), batched=False),
    Op("linalg.solve_broadcast", lambda xp, a, b: xp.linalg.solve(xp.stack([a, a * 0.5 + a.mT]), b),
       (S3, (3, 2)), sampler=_dominant(3, 2), batched=False),
    Op("linalg.cholesky", lambda xp, x: xp.linalg.cholesky(_sym(xp, x)), (S3,),
       sampler=_spectrum(3)),
    Op("linalg.cholesky_upper", lambda xp, x: xp.linalg.cholesky(_sym(xp, x), upper=True), (S3,),
       sampler=_spectrum(3)),
    Op("linalg.qr_tall", _qr_tall, ((4, 3),), sampler=_singular(4, 3)),
    Op("linalg.qr_wide", _qr_wide, ((3, 4),), sampler=_singular(3, 4)),
    Op("linalg.eigh", _eigh, (S3,), sampler=_spectrum(3, low=-1.0)),
    Op("linalg.eigh_function", _eigh_matrix_function, (S3,), sampler=_spectrum(3, low=-1.0)),
    Op("linalg.eigvalsh", lambda xp, x: xp.linalg.eigvalsh(_sym(xp, x)), (S3,),
       sampler=_spectrum(3, low=-1.0)),
    Op("linalg.svd_tall", _svd_tall, ((4, 3),), sampler=_singular(4, 3)),
    Op("linalg.svd_wide", _svd_wide, ((3, 4),), sampler=_singular(3, 4)),
    Op("linalg.svd_rebuild", _svd_rebuild, ((4, 3),), sampler=_singular(4, 3)),
    Op("linalg.svdvals", lambda xp, x: xp.linalg.svdvals(x), ((3, 4),), sampler=_singular(3, 4)),
    Op("linalg.pinv", lambda xp, x: xp.linalg.pinv(x), ((4, 3),), sampler=_singular(4, 3)),
    Op("linalg.matrix_norm_svd", _matrix_norms_svd, ((4, 3),), sampler=_singular(4, 3)),
    Op("linalg.matrix_norm", _matrix_norms_entries, ((3, 4),)),
    Op("linalg.vector_norm", _vector_norms, ((3, 4),), low=0.2, high=2.0),
    Op("linalg.vector_norm_axes", lambda xp, x: xp.linalg.vector_norm(x, axis=(-2, -1),
                                                                       keepdims=True) * x,
       ((3, 4),)),
    Op("linalg.matrix_power", _matrix_power, (S3,), sampler=_dominant(3)),
    Op("linalg.matrix_rank", lambda xp, x: x * xp.astype(xp.linalg.matrix_rank(x), x.dtype)[
        ..., None, None], ((3, 4),)),
    Op("linalg.cross", lambda xp, x, y: xp.linalg.cross(x, y), ((2, 3), (2, 3))),
    Op("linalg.cross_axis", lambda xp, x, y: xp.linalg.cross(x, y, axis=-2), ((3, 2), (3, 2))),
    Op("linalg.outer", lambda xp, x, y: xp.linalg.outer(x, y), ((3,), (4,)), batched=False),
    Op("linalg.trace", lambda xp, x: xp.linalg.trace(x, offset=1) * xp.linalg.trace(x, offset=-1),
       ((3, 4),)),
    Op("linalg.diagonal", lambda xp, x: xp.linalg.diagonal(x, offset=1) + xp.linalg.diagonal(
        x, offset=-1)[..., :2] * xp.linalg.diagonal(x)[..., 1:], ((3, 3),)),
    Op("linalg.aliases", _aliases, ((3, 4), (3, 4)), batched=False),  # tensordot contracts all
]
