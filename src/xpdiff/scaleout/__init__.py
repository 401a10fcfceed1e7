"""Scale-out: the transforms on Dask arrays, one in-memory engine run per chunk.

Layer: above the transforms (beside the custom rules and the eager API); it may
import the transforms and everything below them, and nothing above.  Importing
it never imports Dask: it registers a handler in the transforms' slot for lazy
arrays, which looks for ``dask.array`` in ``sys.modules`` (no Dask array can
exist before Dask is imported) and only then loads :mod:`xpdiff.scaleout.dask`.

* ``xd.jacobian(f, batch_ndim=k)(x)`` (and ``jacfwd``, ``jacrev``, ``hessian``,
  ``vmap``) with a Dask array ``x`` returns a lazy Dask array chunked like ``x``
  along its data dims: one task per chunk, each running the in-memory engine.
* :func:`value_and_grad` and :func:`grad` here take a per-sample loss and say how
  the samples' losses add up (``reduce="sum"`` or ``"mean"``); on Dask arrays the
  per-chunk gradients are combined by a tree reduction.  ``xd.grad`` itself
  cannot know that a loss over a Dask array splits over chunks and says so.

See docs/scaleout.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from ..core import tree as _tree
from ..transforms import api as _api
from ..transforms import args as _args
from .layout import INSTALL_HINT, Layout, RechunkWarning, check_per_sample, total_loss


def _dask_array_type() -> Any:
    mod = sys.modules.get("dask.array")
    return None if mod is None else getattr(mod, "Array", None)


def _has_dask(args: Any) -> bool:
    array = _dask_array_type()
    return array is not None and any(isinstance(x, array) for x in _tree.flatten(args)[0])


def _impl() -> Any:
    try:
        from . import dask as impl  # loads Dask: only reached once a Dask array exists
    except ImportError as e:
        raise ImportError(f"xpdiff's Dask support needs Dask and distributed: {INSTALL_HINT} "
                          f"({e})") from e
    return impl


def _handler(fname: str, f: Callable, options: dict, args: tuple) -> Any:
    if not _has_dask(args):
        return NotImplemented
    return _impl().transform(fname, f, options, args)


_api.LAZY_HANDLERS.append(_handler)


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False, *,
                   reduce: str = "sum", batch_ndim: int = 1,
                   data_argnums: int | Sequence[int] | None = None,
                   split_every: int | None = None) -> Callable:
    """The total of a per-sample loss and its gradient, on NumPy/CuPy or Dask arrays.

    ``f`` is batched code returning one loss per sample (shape ``B``, the first
    ``batch_ndim`` dims of the data arguments, as for ``hessian(batch_ndim=k)``);
    it must not mix samples (checked: ``MixingError``).  The loss differentiated is
    ``sum(f(...))`` (``reduce="sum"``) or ``mean(f(...))`` (``reduce="mean"``).
    On Dask arrays each data chunk's gradient is one task and the chunks' gradients
    of shared arguments are added by Dask's tree reduction (``split_every`` as in
    ``dask.array.sum``); gradients with respect to data arguments stay chunked like
    them.  Results are lazy Dask arrays then, in-memory arrays otherwise.

    Args:
        f: the per-sample loss (``(loss, aux)`` with ``has_aux``; ``aux`` keeps the data dims).
        argnums: the arguments to differentiate.
        has_aux: ``f`` returns ``(per_sample_loss, aux)``.
        reduce: ``"sum"`` or ``"mean"`` over all samples.
        batch_ndim: number of leading data dims.
        data_argnums: which arguments carry the data dims (default as in ``xd.jacobian``).
        split_every: fan-in of the tree reduction (Dask's default when None).

    Returns:
        ``(total, gradient)``, or ``((total, aux), gradient)`` with ``has_aux``.

    >>> import numpy as np, xpdiff as xd
    >>> def loss(w, x):                       # one squared error per sample
    ...     return (x @ w - 1.0) ** 2
    >>> w, x = np.array([1.0, 2.0]), np.ones((4, 2))
    >>> xd.scaleout.value_and_grad(loss, reduce="mean", data_argnums=1)(w, x)
    (array(4.), array([4., 4.]))
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"scaleout.value_and_grad: reduce must be 'sum' or 'mean', got {reduce!r}")
    if not isinstance(batch_ndim, int) or batch_ndim < 1:
        raise ValueError(f"scaleout.value_and_grad: batch_ndim must be a positive int (the data dims "
                         f"the loss is summed over), got {batch_ndim!r}")

    @wraps(f)
    def vg(*args: Any) -> Any:
        if _has_dask(args):
            return _impl().value_and_grad(f, args, argnums, has_aux, reduce, batch_ndim, data_argnums,
                                          split_every)
        fname = "scaleout.value_and_grad"
        nums = _args._argnums(argnums, len(args), fname)[0]
        lay = Layout(args, batch_ndim, data_argnums, nums, fname)
        check_per_sample(f, lay.first_sample(), argnums, has_aux, lay, fname)
        return _api.value_and_grad(total_loss(f, has_aux, reduce, batch_ndim, lay.n_samples), argnums,
                                   has_aux)(*args)

    return vg


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False, *, reduce: str = "sum",
         batch_ndim: int = 1, data_argnums: int | Sequence[int] | None = None,
         split_every: int | None = None) -> Callable:
    """The gradient of the total of a per-sample loss: :func:`value_and_grad` without the value.

    >>> import numpy as np, xpdiff as xd
    >>> xd.scaleout.grad(lambda w, x: (x @ w) ** 2, data_argnums=1)(np.array([1.0]), np.ones((3, 1)))
    array([6.])
    """
    vg = value_and_grad(f, argnums, has_aux, reduce=reduce, batch_ndim=batch_ndim,
                        data_argnums=data_argnums, split_every=split_every)

    @wraps(f)
    def g(*args: Any) -> Any:
        (_, aux), gr = vg(*args) if has_aux else ((None, None), vg(*args)[1])
        return (gr, aux) if has_aux else gr

    return g


__all__ = ["INSTALL_HINT", "RechunkWarning", "grad", "value_and_grad"]
