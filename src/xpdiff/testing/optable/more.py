"""Entries for advanced indexing, manipulation, statistics, sorting and searching.

Index arrays and masks are constants made inside ``fn`` (on the argument's device),
so every entry is also checked under vmap; entries written with negative axes and
``...`` are valid batched code and run under ``batch_ndim`` too.

``fn`` is also evaluated on raw arrays (finite differences, loops), where
array-api-strict refuses NumPy-style keys (arrays mixed with slices, array writes):
entries therefore index through ``_get`` / ``_set``, which on a traced array are
exactly ``x[key]`` / ``x[key] = v`` and on a raw array run xpdiff's own advanced
indexing (the same code).  Domains avoid
ties (sort, max) and zeros (cumulative_prod; the zero cases are in
tests/test_indexing.py).
"""

from __future__ import annotations

import math

import numpy as np

from ...core import raw_namespace
from ...namespaces import namespace_for
from ...rules.indexing import _getitem_fn, _setitem_fn
from ...tracer import Tracer
from ._op import Op

S = (3, 4)


def _i(x, vals):
    """An index array on ``x``'s device (``x`` raw or traced, of any backend)."""
    return namespace_for(raw_namespace(x)).asarray(vals, device=x.device)


def _away_from_zero(rng, lead):
    """Two arrays: values, and a sign source bounded away from 0 (its mask never flips)."""
    mag = rng.uniform(0.5, 2.0, size=lead + S)
    return [rng.uniform(-2.0, 2.0, size=lead + S), mag * rng.choice([-1.0, 1.0], size=lead + S)]


def _get(x, key):
    """``x[key]``."""
    return x[key] if isinstance(x, Tracer) else _getitem_fn(x, key)


def _set(x, key, v):
    """``x[key] = v``, returning ``x``."""
    if isinstance(x, Tracer):
        x[key] = v
        return x
    return _setitem_fn(x, key, v)


def _separated(*shapes):
    """A sampler of well-separated values (no near-ties, none near 0): sort, argsort and
    comparisons do not flip under the finite-difference steps."""

    def sample(rng, lead):
        out = []
        for s in shapes:
            n = math.prod(lead + s)
            vals = np.linspace(-2.0, 2.0, n) + rng.uniform(-0.02, 0.02, n)
            out.append(rng.permutation(vals).reshape(lead + s))
        return out

    return sample


def _between_knots(rng, lead):
    """Query points strictly inside the cells of the grid of ``_interp``, and values."""
    q = (rng.integers(0, 5, size=lead + (5,)) + rng.uniform(0.1, 0.9, size=lead + (5,))) / 5.0
    return [q, rng.uniform(-2.0, 2.0, size=lead + (6,))]


# --- advanced reads ---------------------------------------------------------------------------

def _get_repeated(xp, x):
    return _get(x, (..., _i(x, [2, 0, 2, -1]))) * _get(x, (..., _i(x, [1, 1, 3, 3])))


def _get_two_arrays(xp, x):  # broadcast (2, 1) with (3,): a (2, 3) grid of picks
    return _get(x, (..., _i(x, [[2], [0]]), _i(x, [0, 3, 0]))) ** 2


def _get_array_slice(xp, x):  # adjacent: the index dims stay in place
    return _get(x, (_i(x, [1, 0, 1]), slice(1, 3))) * 2.0


def _get_int_and_array(xp, x):  # int and array separated by a slice: index dims go first
    return _get(x, (1, slice(None), _i(x, [1, 0, 1]))) * _get(x, (0, slice(None), _i(x, [0, 0, 1])))


def _get_mask(xp, x):
    return _get(x, (..., _i(x, [True, False, True, True]))) ** 2


def _get_mask_2d(xp, x):  # data-dependent length (a constant mask here, so vmap works)
    m = _i(x, [[True, False, True, False], [False, False, True, True], [True, True, False, False]])
    return xp.sin(_get(x, m))


# --- advanced writes --------------------------------------------------------------------------

def _set_repeated(xp, x, v):  # repeated indices: the last write wins
    y = _set(x * 1.0, (..., _i(x, [0, 2, 0, 3])), v * v)
    return y * x


def _set_gather(xp, x):  # y = zeros_like(x); y[idx] = x[idx2]
    y = xp.zeros_like(x)
    return _set(y, (..., _i(x, [3, 0, 1])), _get(x, (..., _i(x, [0, 0, 2]))) ** 2)


def _set_two_arrays(xp, x, v):
    return _set(x * 1.0, (_i(x, [0, 2, 0]), _i(x, [1, 1, 1])), v[0, :3])


def _set_mask_scalar(xp, x):
    y = _set(xp.exp(x), (..., _i(x, [False, True, True, False])), 0.5)
    return y * x


def _set_mask_data(xp, x, s):  # a mask from the data (where path), then a constant one
    y = _set(x * 1.0, s > 0, 3.0)
    m = _i(x, [True, False, True, True])
    y = _set(y, (..., m), _get(y, (..., m)) * 2.0)
    return y * s


def _set_mask_values(xp, x, v):  # one value per selected element (nonzero path)
    m = _i(x, [[True, False, False, True], [False, True, False, False], [True, False, True, False]])
    return _set(x * 1.0, m, _get(v, m) ** 2)


def _set_mask_row(xp, x, v):  # a value broadcast along the selected dims (where path)
    return _set(x * 1.0, (..., _i(x, [True, False, True]), slice(None)), v[..., 0:1, :])


def _inplace_patterns(xp, x):
    out = x * 1.0
    out[..., 1:-1] = (x[..., 2:] - x[..., :-2]) / 2.0
    out -= xp.mean(out, axis=-1, keepdims=True)
    out **= 2
    return out


def _interp(xp, q, f):
    """Piecewise-linear interpolation of values ``f`` on a fixed grid at ``q``."""
    grid = _i(q, np.linspace(0.0, 1.0, 6))
    j = xp.clip(xp.searchsorted(grid, q, side="right"), 1, 5)
    lo, hi = xp.take(grid, j - 1), xp.take(grid, j)
    t = (q - lo) / (hi - lo)
    return xp.take(f, j - 1) * (1.0 - t) + xp.take(f, j) * t


# --- entries --------------------------------------------------------------------------------

OPS: list[Op] = [
    Op("getitem_int_array_repeated", _get_repeated, (S,)),
    Op("getitem_two_arrays", _get_two_arrays, (S,)),
    Op("getitem_array_slice", _get_array_slice, (S,), batched=False),
    Op("getitem_int_and_array", _get_int_and_array, ((2, 3, 2),), batched=False),
    Op("getitem_mask_last_dim", _get_mask, (S,)),
    Op("getitem_mask_2d", _get_mask_2d, (S,), batched=False),
    Op("setitem_int_array_repeated", _set_repeated, (S, S)),
    Op("setitem_gather_into_zeros", _set_gather, (S,)),
    Op("setitem_two_arrays", _set_two_arrays, (S, S), batched=False),
    Op("setitem_mask_scalar", _set_mask_scalar, (S,)),
    Op("setitem_mask_data", _set_mask_data, (S, S), sampler=_away_from_zero),
    Op("setitem_mask_values", _set_mask_values, (S, S), batched=False),
    Op("setitem_mask_row", _set_mask_row, (S, S)),
    Op("inplace_patterns", _inplace_patterns, (S,)),
    Op("take_along_axis", lambda xp, x: xp.take_along_axis(
        x, xp.broadcast_to(_i(x, [[2, 0, 2], [1, 1, 3], [3, 0, 0]]), tuple(x.shape[:-1]) + (3,)),
        axis=-1) ** 2, (S,)),
    Op("take_along_axis_broadcast", lambda xp, x: xp.take_along_axis(
        x, _i(x, [[2, 0, 2, 1]]), axis=0) * x[:3, :], (S,), batched=False),
    Op("sort", lambda xp, x: xp.sort(x, axis=-1) * _i(x, [1.0, 2.0, 3.0, 4.0]), (S,),
       sampler=_separated(S)),
    Op("sort_axis0", lambda xp, x: xp.sort(x, axis=-2) ** 2, (S,),
       sampler=_separated(S)),
    Op("sort_median", lambda xp, x: xp.sort(x, axis=-1)[..., 1:3] * x[..., :2], (S,),
       sampler=_separated(S)),
    Op("roll", lambda xp, x: xp.roll(x, (1, -2), axis=(-1, -2)) * x, (S,)),
    Op("roll_flat", lambda xp, x: xp.roll(x, 5) * x, (S,), batched=False),
    Op("tile", lambda xp, x: xp.tile(x, (2, 3)) ** 2, (S,)),
    Op("tile_new_dims", lambda xp, x: xp.tile(x, (2, 1, 2)), (S,), batched=False),
    Op("repeat_int", lambda xp, x: xp.repeat(x, 3, axis=-1) ** 2, (S,)),
    Op("repeat_array", lambda xp, x: xp.repeat(x, _i(x, [1, 0, 2, 1]), axis=-1) ** 2, (S,)),
    Op("repeat_flat", lambda xp, x: xp.repeat(x, 2) * 3.0, (S,), batched=False),
    Op("diff", lambda xp, x: xp.diff(x, axis=-1, n=2) ** 2, (S,)),
    Op("diff_prepend_append", lambda xp, x, y: xp.diff(x, axis=-1, prepend=y[..., :1] ** 2,
                                                         append=xp.ones_like(x[..., :2])), (S, S)),
    Op("diff_axis0", lambda xp, x: xp.diff(x, axis=0, prepend=x[-1:, :]), (S,), batched=False),
    Op("cumulative_prod", lambda xp, x: xp.cumulative_prod(x, axis=-1), (S,), low=0.5),
    Op("cumulative_prod_signed", lambda xp, x: xp.cumulative_prod(x * 1.5, axis=-2,
                                                                  include_initial=True), (S,)),
    Op("prod_all_axes", lambda xp, x: xp.prod(x, axis=(-1, -2)), ((2, 3, 2),)),
    Op("sum_prod_dtype", lambda xp, x: xp.sum(x, axis=-1, dtype=xp.float64)
       + xp.prod(x, axis=-1, dtype=xp.float64) + xp.cumulative_sum(x, axis=-1, dtype=xp.float64)[..., 0],
       (S,)),
    Op("var_keepdims", lambda xp, x: xp.var(x, axis=-1, correction=1, keepdims=True), (S,)),
    Op("std_keepdims", lambda xp, x: xp.std(x, axis=(-1, -2), keepdims=True), ((2, 3, 4),)),
    Op("interp_searchsorted", _interp, ((5,), (6,)), sampler=_between_knots, batched=False),
    Op("count_nonzero_argsort", lambda xp, x: x * xp.astype(
        xp.count_nonzero(x > 0, axis=-1, keepdims=True) + xp.argsort(x, axis=-1), x.dtype), (S,),
       sampler=_separated(S)),
]
