"""Derivative checks generated from the op table (src/xpdiff/testing/optable/), on every backend:
forward mode vs central differences, reverse mode by the inner-product identity,
second order in both modes, vmap vs a loop, and batch_ndim vs per-sample Jacobians."""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd
from conftest import BACKENDS
from xpdiff import core as _core
from xpdiff.core import raw_namespace
from xpdiff.namespaces import namespace_for
from xpdiff.testing import check_grads, check_vmap
from xpdiff.testing.optable import OPS

IDS = [op.name for op in OPS]


def _args(op, backend, dtype, lead=(), seed=0):
    rng = np.random.default_rng(seed)
    return [backend.asarray(a, dtype) for a in op.sample(rng, lead)]


def _fn(op, backend):
    def f(*args):
        return op.fn(namespace_for(raw_namespace(args[0])), *args)

    return f


def _check_device(x, backend):
    if backend.device is not None:
        assert x.device == backend.device


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_first_order(op, backend, dtype):
    args = _args(op, backend, dtype)
    check_grads(_fn(op, backend), args, order=1)


@pytest.mark.parametrize("op", [o for o in OPS if o.order2], ids=[o.name for o in OPS if o.order2])
def test_second_order(op, backend):
    args = _args(op, backend, np.float64, seed=1)
    check_grads(_fn(op, backend), args, order=2)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_vmap_matches_loop(op, backend):
    args = _args(op, backend, np.float64, lead=(3,), seed=2)
    check_vmap(_fn(op, backend), args)
    # one argument mapped, the others shared
    if len(args) > 1:
        shared = [args[0]] + [a[0, ...] for a in args[1:]]
        check_vmap(_fn(op, backend), shared, in_axes=(0,) + (None,) * (len(args) - 1))


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("op", [o for o in OPS if o.batched], ids=[o.name for o in OPS if o.batched])
def test_batch_ndim_matches_per_sample(op, backend, mode):
    f = _fn(op, backend)
    args = _args(op, backend, np.float64, lead=(3,), seed=3)
    nums = tuple(range(len(args)))
    J = xd.jacobian(f, argnums=nums, batch_ndim=1, mode=mode)(*args)
    for j in J:
        _check_device(j, backend)
    for i in range(3):
        Ji = xd.jacobian(f, argnums=nums, mode=mode)(*[a[i, ...] for a in args])
        for a, b in zip(J, Ji):
            np.testing.assert_allclose(backend.to_numpy(a)[i], backend.to_numpy(b), rtol=1e-10,
                                       atol=1e-12)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_structured_bases_match_dense_rules(op, backend, mode):
    """A Jacobian of one argument over the whole basis runs the structured paths
    (identity tangents or cotangents kept symbolic, ``basis_jvp``/``basis_vjp``);
    one basis vector at a time runs the dense rules: they must agree."""
    f = _fn(op, backend)
    args = _args(op, backend, np.float64, seed=4)
    for i in range(len(args)):
        def g(x, i=i):  # the other arguments as constants of the transformation
            ns = x.__array_namespace__()
            return f(*[x if j == i else ns.asarray(a) for j, a in enumerate(args)])

        J = xd.jacobian(g, mode=mode)(args[i])
        Jc = xd.jacobian(g, mode=mode, chunk_size=1)(args[i])
        for a, b in zip(_flat(J), _flat(Jc)):
            _check_device(a, backend)
            np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), rtol=1e-12,
                                       atol=1e-12)


def _flat(tree):
    return tree if isinstance(tree, (list, tuple)) else [tree]


def test_every_primitive_is_covered():
    """Adding a primitive without a table entry fails here."""
    seen = set()
    _core.BIND_HOOK = lambda p: seen.add(p.name)
    try:
        be = BACKENDS[0]
        for op in OPS:
            args = _args(op, be, np.float64)
            xd.jacobian(_fn(op, be), argnums=tuple(range(len(args))))(*args)
    finally:
        _core.BIND_HOOK = None
    internal = {"select"}  # exercised by tests/test_batch_ndim.py (lifting shared arrays)
    missing = set(_core.PRIMITIVES) - seen - internal
    nodiff = {n for n, p in _core.PRIMITIVES.items() if not p.differentiable}
    assert not (missing - nodiff), f"primitives without a table entry: {sorted(missing - nodiff)}"
