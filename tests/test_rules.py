"""Derivative checks generated from the op table (src/xpdiff/testing/optable/), on every backend:
forward mode vs central differences, reverse mode by the inner-product identity,
second order in both modes, vmap vs a loop, and batch_ndim vs per-sample Jacobians."""

from __future__ import annotations

import warnings

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
    internal = {"select",  # exercised by tests/test_batch_ndim.py (lifting shared arrays)
                # polygamma with an array order runs on native kernels only (the table's
                # array-api-strict backends have none): tests/test_device_paths.py
                "polygamma_n"}
    missing = set(_core.PRIMITIVES) - seen - internal
    nodiff = {n for n, p in _core.PRIMITIVES.items() if not p.differentiable}
    assert not (missing - nodiff), f"primitives without a table entry: {sorted(missing - nodiff)}"


def _derivatives(f, args, backend):
    """Forward- and reverse-mode derivatives of ``f`` at ``args`` (all arguments), and
    the Hessian of ``sum(f)`` in the first one, as NumPy arrays."""
    nums = tuple(range(len(args)))
    fwd = xd.jacobian(f, argnums=nums, mode="fwd")(*args)
    rev = xd.jacobian(f, argnums=nums, mode="rev")(*args)
    hess = xd.hessian(lambda *a: a[0].__array_namespace__().sum(f(*a)))(*args)
    return [backend.to_numpy(j) for j in fwd], [backend.to_numpy(j) for j in rev], hess


def test_hypot_at_the_origin_has_a_subgradient(backend):
    # hypot(x, y) = |(x, y)|: at (0, 0) any vector of norm <= 1 is a subgradient; xpdiff
    # gives 0 (as abs has sign(0) = 0), in both modes and under a second derivative
    xp = namespace_for(raw_namespace(backend.asarray(0.0)))
    f = lambda a, b: xp.hypot(a, b)  # noqa: E731
    zero = backend.asarray([0.0, 3.0])
    other = backend.asarray([0.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fwd, rev, hess = _derivatives(f, (zero, other), backend)
    for J in (fwd, rev):
        np.testing.assert_allclose(J[0], np.diag([0.0, 0.6]))
        np.testing.assert_allclose(J[1], np.diag([0.0, 0.8]))
    # d2/da2 hypot = b^2 / h^3 away from the origin; finite (0) at it
    np.testing.assert_allclose(backend.to_numpy(hess), np.diag([0.0, 16 / 125]))
    # traced as the conformance harness runs it (forward mode, tangents ones)
    y, t = xd.jvp(f, (zero, other), (backend.asarray([1.0, 1.0]), backend.asarray([1.0, 1.0])))
    np.testing.assert_allclose(backend.to_numpy(t), [0.0, 1.4])


# inputs the primal accepts without a floating-point warning, where a derivative rule
# used to form 0/0, x/0, log(0) or inf - inf
NO_WARNING_CASES = [
    ("hypot", lambda xp, a, b: xp.hypot(a, b), ([0.0, -0.0, np.inf], [0.0, 0.0, 1.0])),
    ("atan2", lambda xp, a, b: xp.atan2(a, b), ([0.0, -0.0, np.inf, np.inf, 1e-200],
                                                [0.0, 0.0, 1.0, np.inf, 0.0])),
    ("max-nan", lambda xp, a: xp.max(a, axis=-1), ([[1.0, np.nan, 2.0, np.nan]],)),
    ("min-nan", lambda xp, a: xp.min(a, axis=-1), ([[np.nan, 1.0]],)),
    ("pow", lambda xp, a, b: xp.pow(a, b), ([-8.0, 2.0, 0.0], [3.0, 2.0, 2.0])),
    ("pow-root", lambda xp, a: xp.pow(a, 0.5), ([0.0, 4.0],)),
    ("sqrt", lambda xp, a: xp.sqrt(a), ([0.0, 4.0],)),
    ("asin", lambda xp, a: xp.asin(a), ([1.0, -1.0, 0.5],)),
    ("acos", lambda xp, a: xp.acos(a), ([1.0, -1.0, 0.5],)),
    ("acosh", lambda xp, a: xp.acosh(a), ([1.0, 2.0],)),
    ("logaddexp", lambda xp, a, b: xp.logaddexp(a, b), ([np.inf, -np.inf, 0.0],
                                                        [np.inf, -np.inf, np.inf])),
]


@pytest.mark.parametrize("case", NO_WARNING_CASES, ids=[c[0] for c in NO_WARNING_CASES])
def test_rules_do_not_warn_where_the_primal_does_not(case, backend):
    _, fn, raw = case
    args = [backend.asarray(a) for a in raw]
    xp = namespace_for(raw_namespace(args[0]))
    f = lambda *a: fn(xp, *a)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(*args)  # the primal accepts these inputs silently
        for mode in ("fwd", "rev"):
            J = xd.jacobian(f, argnums=tuple(range(len(args))), mode=mode)(*args)
            for j in J:
                _check_device(j, backend)
        # traced as the conformance harness runs it (tangents ones)
        ones = tuple(backend.asarray(np.ones_like(np.asarray(a, dtype=float))) for a in raw)
        xd.jvp(f, tuple(args), ones)


@pytest.mark.parametrize("n", [1, 2, 3, 2.5, 1.0, 4.0])
def test_pow_with_a_python_exponent_of_at_least_one(n, backend, monkeypatch):
    """x ** n with a Python n >= 1 has the derivative n * x**(n-1) as is (no pole and no
    0**0 to guard): exact at 0 and -0, through jacfwd (structured), jacrev and the
    second derivative, with no select."""
    raw = [0.0, -0.0, 0.5, 2.0, 3.0] if n != int(n) else [0.0, -0.0, -1.5, 2.0, 3.0]
    x = backend.asarray(raw)
    xp = namespace_for(raw_namespace(x))
    f = lambda v: v ** n  # noqa: E731
    xs = np.asarray(raw)
    want = n * xs ** (n - 1)
    want2 = n * (n - 1) * xs ** (n - 2) if n >= 2 else np.zeros(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("fwd", "rev"):
            J = backend.to_numpy(xd.jacobian(f, mode=mode)(x))
            np.testing.assert_allclose(J, np.diag(want), rtol=1e-14)
        d2 = backend.to_numpy(xd.vmap(xd.grad(xd.grad(lambda s: xp.sum(s ** n))))(x))
        np.testing.assert_allclose(d2, want2, rtol=1e-14)
    from xpdiff.rules import elementwise as _elementwise

    selects = []
    impl = _elementwise._where.impl
    monkeypatch.setattr(_elementwise._where, "impl", lambda *a: selects.append(1) or impl(*a))
    xd.grad(lambda s: xp.sum(s ** n))(x)
    assert not selects
