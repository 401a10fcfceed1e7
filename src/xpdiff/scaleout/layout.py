"""What the Dask front end (:mod:`xpdiff.scaleout`) and its Dask implementation
(:mod:`xpdiff.scaleout.dask`) share: which leaves carry data dims, the per-sample checks
and the total of a per-sample loss.

Layer: scale-out (beside the custom rules and the eager API).  May import the
transforms and everything below them; never imports Dask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..core import tree as _tree
from ..transforms import api as _api
from ..transforms import args as _args

INSTALL_HINT = 'pip install "xpdiff[dask]"'


class RechunkWarning(UserWarning):
    """Differentiation dims of a Dask argument were split over several chunks and
    had to be merged (a rechunk); issued once per array layout."""


class Layout:
    """Which leaves of ``args`` carry the ``k`` leading data dims (the in-memory engine's rule,
    applied to the whole arrays), and the ``data_argnums`` that gives every block the same
    answer: explicit when each argument's array leaves are all data or all shared; otherwise
    None, and :meth:`check_block` verifies each block."""

    def __init__(self, args: tuple, k: int, data_argnums: Any, nums: tuple, fname: str):
        self.k, self.fname, self.nums = k, fname, nums
        self.B, flags, per_arg = _args._data_split(args, k, data_argnums, nums, fname)
        self.n_samples = math.prod(self.B)
        self.leaves, self.treedef = _tree.flatten(args)
        self.is_data = [d for fl in flags for d in fl]
        if data_argnums is not None:
            self.block_dn = data_argnums
            return
        dn: list | None = []
        for i, ((leaves, _), fl) in enumerate(zip(per_arg, flags)):
            arrays = [d for x, d in zip(leaves, fl) if hasattr(x, "shape")]
            if any(arrays) and not all(arrays):
                dn = None
                break
            if any(arrays):
                dn.append(i)
        self.block_dn = None if dn is None else tuple(dn)

    def check_block(self, block_args: tuple) -> None:
        """Raise if the engine would classify a block's leaves differently from the whole's."""
        if self.block_dn is None:
            check_block(block_args, self.k, self.nums, self.fname, tuple(self.is_data))

    def first_sample(self) -> tuple:
        """``args`` with every data leaf cut to its first sample (in-memory leaves only)."""
        cut = (slice(0, 1),) * self.k
        return _tree.unflatten(self.treedef, [x[cut] if d else x
                                              for x, d in zip(self.leaves, self.is_data)])


def check_block(block_args: tuple, k: int, nums: tuple, fname: str, is_data: tuple) -> None:
    """Raise unless the engine's default rule marks the same leaves of ``block_args`` as data."""
    _, flags, _ = _args._data_split(block_args, k, None, nums, fname)
    if tuple(d for fl in flags for d in fl) != is_data:
        raise ValueError(f"{fname}: in a block of the data, a shared argument's leading dims equal the "
                         f"block's data dims, so it would be taken for data; pass data_argnums, or "
                         f"rechunk the data dims")


def total_loss(f: Callable, has_aux: bool, reduce: str, k: int, n: int) -> Callable:
    """``sum(f(...))``, or the sum divided by the total sample count ``n`` for a mean."""

    def total(*args: Any) -> Any:
        out = f(*args)
        if has_aux:
            out, aux = out
        if getattr(out, "ndim", None) != k:
            raise ValueError(f"scaleout.value_and_grad: f must return one loss per sample (an array of "
                             f"the {k} data dims), got shape {tuple(getattr(out, 'shape', ()))}")
        xp = out.__array_namespace__()
        s = xp.sum(out)
        if reduce == "mean":
            s = s / n
        return (s, aux) if has_aux else s

    return total


def check_per_sample(f: Callable, sample_args: tuple, argnums: Any, has_aux: bool, lay: Layout,
                     fname: str) -> None:
    """Run ``f`` on one sample under the data view (``jacrev(batch_ndim=k)``): an operation that
    mixes samples raises ``MixingError`` here, before any real work."""
    lay.check_block(sample_args)
    _api.jacrev(f, argnums, has_aux, batch_ndim=lay.k, data_argnums=lay.block_dn)(*sample_args)
