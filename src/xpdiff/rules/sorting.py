"""Sorting, searching and set functions: ``argsort``, ``sort``, ``searchsorted``,
``nonzero`` and ``unique_*``.

Only ``sort`` carries a derivative: it is ``take_along_axis(x, argsort(x))``, so
the derivative follows the permutation (each output element's derivative is
that of the input element that landed there; among ties, the one the stable
argsort puts there).  The others return indices, counts or data-dependent sets:
constants to every transformation.  ``nonzero`` and ``unique_*`` have shapes that
depend on the values, so they refuse to run batched (vmap, ``batch_ndim``).
"""

from __future__ import annotations

from collections import namedtuple

from ..core import primitive
from ..tracer import Tracer
from ._families import as_operand, data_axis_param, export, is_arraylike, move_batch_to, norm_axis
from .indexing import MASK_HINT, _tal, data_dependent, op_context, take

# --- argsort / sort -------------------------------------------------------------------------


def _argsort_impl(bk, x, *, axis, descending, stable):
    return bk.argsort(x, axis=axis, descending=descending, stable=stable)


_argsort = primitive(
    "argsort", _argsort_impl, differentiable=False,
    batch=lambda xp, v, b, n, *, axis, **kw: (_argsort.bind(v[0], axis=axis + 1, **kw), True),
    data=data_axis_param())


@export
def argsort(x, /, *, axis=-1, descending=False, stable=True):
    """Indices that sort ``x`` along ``axis`` (no derivative).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.argsort(np.array([3.0, 1.0, 2.0]))
    array([1, 2, 0])
    """
    return _argsort.bind(x, axis=norm_axis(axis, x.ndim), descending=bool(descending),
                         stable=bool(stable))


# the backend's sort, for arrays that carry no derivative information; traced arrays are
# sorted as take_along_axis(x, argsort(x)) so that the tape keeps the permutation and the
# VJP needs one more sort only (its inverse)
_sort = primitive(
    "sort", lambda bk, x, *, axis, descending, stable: bk.sort(x, axis=axis, descending=descending,
                                                                stable=stable),
    differentiable=False)


@export
def sort(x, /, *, axis=-1, descending=False, stable=True):
    """Sort ``x`` along ``axis``.  The derivative follows the sorting permutation
    (``sort(x) == take_along_axis(x, argsort(x))``); tied elements are not
    differentiable points, and xpdiff gives each output position the derivative of
    the input element the stable argsort puts there.

    >>> import numpy as np, xpdiff as xd
    >>> xd.grad(lambda x: xd.numpy.sort(x)[0] * 10.0)(np.array([3.0, 1.0, 2.0]))
    array([ 0., 10.,  0.])
    """
    axis = norm_axis(axis, x.ndim)
    if not isinstance(x, Tracer):
        return _sort.bind(x, axis=axis, descending=bool(descending), stable=bool(stable))
    with op_context("sort"):
        i = _argsort.bind(x, axis=axis, descending=bool(descending), stable=True)
        return _tal.bind(x, i, axis=axis, perm=True)


# --- searchsorted ---------------------------------------------------------------------------

def _ss_batch(xp, vals, batched, n, *, side):
    x1, x2 = vals
    if not batched[0]:
        return _ss.bind(x1, x2, side=side), True
    # a sorted array per example: the standard's searchsorted takes one 1-d array, so rank
    # each value among [x1 row, values] with one stable sort (values first for 'left', so
    # they precede equal x1 entries; after them for 'right') and subtract its rank among
    # the values alone
    x2 = move_batch_to(x2, batched[1], n, xp)
    shape = tuple(x2.shape)
    v = xp.reshape(x2, (n, -1))
    m, k = v.shape[1], x1.shape[1]
    dt = xp.result_type(x1, v)
    a, v = xp.astype(x1, dt), xp.astype(v, dt)
    z = xp.concat([v, a] if side == "left" else [a, v], axis=1)
    pos = xp.argsort(xp.argsort(z, axis=1, stable=True), axis=1, stable=True)
    pos = pos[:, :m] if side == "left" else pos[:, k:]
    rank = xp.argsort(xp.argsort(v, axis=1, stable=True), axis=1, stable=True)
    return xp.reshape(xp.subtract(pos, rank), shape), True


def _ss_data(ctx, ops, has, *, side):
    if has[0]:
        raise ctx.mixing("searches a sorted array x1 that carries data dims (x1 must be a shared "
                         "1-d array)")
    return ops, {"side": side}


_ss = primitive("searchsorted", lambda bk, x1, x2, *, side: bk.searchsorted(x1, x2, side=side),
                differentiable=False, batch=_ss_batch, data=_ss_data)


@export
def searchsorted(x1, x2, /, *, side="left", sorter=None):
    """Insertion indices of ``x2`` into the sorted 1-d ``x1`` (no derivative).

    ``side="left"`` gives the first suitable position, ``"right"`` the last.
    ``sorter`` (indices that sort ``x1``) is applied first.  Under vmap ``x1`` may
    differ per batch element.

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.searchsorted(np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.5]), side="right")
    array([3, 3])
    """
    if x1.ndim != 1:
        raise ValueError(f"searchsorted: x1 must be 1-d, got {x1.ndim} dims")
    if side not in ("left", "right"):
        raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    if sorter is not None:
        x1 = take(x1, sorter)
    if not is_arraylike(x2):
        x2 = as_operand(x2, x1)
    return _ss.bind(x1, x2, side=side)


# --- nonzero ---------------------------------------------------------------------------------

_nz_batch, _nz_data = data_dependent("nonzero (also behind boolean-mask reads x[mask])", MASK_HINT)
_nonzero = primitive("nonzero", lambda bk, x: tuple(bk.nonzero(x)), differentiable=False,
                     multiple_results=True, batch=_nz_batch, data=_nz_data)


@export
def nonzero(x, /):
    """Indices of the nonzero elements of ``x``, one 1-d array per dim (no derivative;
    a data-dependent shape: not under vmap or ``batch_ndim``).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.nonzero(np.array([0.0, 2.0, 0.0, 1.0]))
    (array([1, 3]),)
    """
    if x.ndim == 0:
        raise ValueError("nonzero: x must have at least one dim; use xp.where or a comparison")
    return tuple(_nonzero.bind(x))


# --- unique_* --------------------------------------------------------------------------------

UniqueAllResult = namedtuple("UniqueAllResult", ["values", "indices", "inverse_indices", "counts"])
UniqueCountsResult = namedtuple("UniqueCountsResult", ["values", "counts"])
UniqueInverseResult = namedtuple("UniqueInverseResult", ["values", "inverse_indices"])

_UNIQUE_HINT = ("compute the unique values outside the transformation (they are constants), or "
                "use a fixed-size formulation (sort, then compare neighbours)")


def _unique(name, result):
    batch, data = data_dependent(name, _UNIQUE_HINT)
    if result is None:
        return primitive(name, lambda bk, x: getattr(bk, name)(x), differentiable=False,
                         batch=batch, data=data)
    return primitive(name, lambda bk, x: tuple(getattr(bk, name)(x)), differentiable=False,
                     multiple_results=True, batch=batch, data=data)


_unique_all = _unique("unique_all", UniqueAllResult)
_unique_counts = _unique("unique_counts", UniqueCountsResult)
_unique_inverse = _unique("unique_inverse", UniqueInverseResult)
_unique_values = _unique("unique_values", None)


@export
def unique_all(x, /):
    """Unique values of ``x`` with first indices, inverse indices and counts (a
    namedtuple; no derivative; not under vmap or ``batch_ndim``).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.unique_all(np.array([2.0, 1.0, 2.0])).counts
    array([1, 2])
    """
    return UniqueAllResult(*_unique_all.bind(x))


@export
def unique_counts(x, /):
    """Unique values of ``x`` and their counts (a namedtuple; no derivative)."""
    return UniqueCountsResult(*_unique_counts.bind(x))


@export
def unique_inverse(x, /):
    """Unique values of ``x`` and the inverse indices that rebuild ``x`` (a namedtuple;
    no derivative)."""
    return UniqueInverseResult(*_unique_inverse.bind(x))


@export
def unique_values(x, /):
    """Unique values of ``x`` (a constant: no derivative flows through it).

    >>> import numpy as np, xpdiff as xd
    >>> xd.numpy.unique_values(np.array([2.0, 1.0, 2.0]))
    array([1., 2.])
    """
    return _unique_values.bind(x)
