"""Memory-bounded chunking: same results, budgets respected, impossible requests refused."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xpdiff as xd
from xpdiff.transforms import chunking as _chunking
from xpdiff.transforms import engine as _engine

xp = xd.numpy


def _mixing(x):
    A = np.linspace(-1, 1, x.shape[-1] ** 2).reshape(x.shape[-1], x.shape[-1])
    return xp.tanh(x @ A) * xp.sum(x * x, axis=-1, keepdims=True)


@pytest.fixture
def spy(monkeypatch):
    calls = []
    orig = _chunking.run_chunks

    def wrapped(n, run, *a, **k):
        sizes = []

        def counted(s, e):
            sizes.append(e - s)
            return run(s, e)

        out = orig(n, counted, *a, **k)
        calls.append(sizes)
        return out

    monkeypatch.setattr(_chunking, "run_chunks", wrapped)
    return calls


@pytest.fixture
def sample_spy(monkeypatch):
    """The (start, stop) of every chunk of samples a batch_ndim Jacobian runs."""
    calls = []
    orig = _engine._sample_chunks

    def wrapped(chunk, *a, **k):
        def counted(s, e, **kw):
            calls.append((s, e))
            return chunk(s, e, **kw)

        return orig(counted, *a, **k)

    monkeypatch.setattr(_engine, "_sample_chunks", wrapped)
    return calls


def _peak(fn):
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("jac", [xd.jacfwd, xd.jacrev, xd.jacobian])
def test_max_memory_chunks_samples_in_place_and_matches(jac, sample_spy):
    x = np.random.default_rng(0).standard_normal((64, 40))
    full = jac(_mixing, batch_ndim=1, max_memory=10**12)(x)
    assert sample_spy == []  # one pass when it fits
    budget = 2 * full.nbytes
    J, peak = _peak(lambda: jac(_mixing, batch_ndim=1, max_memory=budget)(x))
    np.testing.assert_allclose(J, full, rtol=1e-12, atol=1e-12)
    starts = [s for s, _ in sample_spy]
    assert len(sample_spy) > 2 and starts == sorted(starts), sample_spy
    assert sum(e - s for s, e in sample_spy) == 64 and sample_spy[-1][1] == 64
    assert peak <= 1.1 * budget, (peak, budget)  # the rows are written in place


def test_basis_chunked_when_one_sample_does_not_fit(spy, sample_spy):
    x = np.random.default_rng(0).standard_normal((2, 300))
    full = xd.jacfwd(_mixing, batch_ndim=1, max_memory=10**12)(x)
    spy.clear()
    J = xd.jacfwd(_mixing, batch_ndim=1, max_memory=full.nbytes + 400_000)(x)
    np.testing.assert_allclose(J, full, rtol=1e-12, atol=1e-12)
    basis = [sizes for sizes in spy if sum(sizes) == 300]
    assert any(len(sizes) > 1 for sizes in basis), spy


def test_sample_chunks_under_an_outer_transformation_concatenate():
    x = np.random.default_rng(2).standard_normal((16, 10))

    def total(s):
        J = xd.jacfwd(_mixing, batch_ndim=1, max_memory=2 * 16 * 10 * 10 * 8)(x * s)
        return xp.sum(J)

    s0 = np.asarray(1.3)
    g = xd.grad(total)(s0)
    eps = 1e-6
    fd = (float(total(s0 + eps)) - float(total(s0 - eps))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_auto_budget_runs_one_pass_when_it_fits(spy):
    x = np.random.default_rng(0).standard_normal((4, 6))
    xd.jacfwd(_mixing, batch_ndim=1)(x)
    assert spy[0] == [6], spy


@pytest.mark.parametrize("jac", [xd.jacfwd, xd.jacrev, xd.hessian])
def test_impossible_request_fails_before_allocating(jac):
    x = np.ones((8, 100))
    f = (lambda x: xp.sum(x * x, axis=-1)) if jac is xd.hessian else _mixing
    with pytest.raises(MemoryError, match="needs .*budget"):
        jac(f, batch_ndim=1, max_memory=1000)(x)


def test_vmap_max_memory_matches(spy):
    x = np.random.default_rng(1).standard_normal((50, 30))
    got = xd.vmap(lambda v: xp.sum(xp.sin(v[:, None] * v[None, :]), axis=0), max_memory=50_000)(x)
    np.testing.assert_allclose(got, np.sum(np.sin(x[:, :, None] * x[:, None, :]), axis=1), rtol=1e-12)
    assert len(spy[-1]) > 1


def test_bad_budget_and_chunk_size():
    with pytest.raises(ValueError, match="max_memory"):
        xd.jacfwd(_mixing, max_memory=-1)(np.ones(3))
    with pytest.raises(ValueError, match="chunk_size"):
        xd.jacfwd(_mixing, chunk_size=0)(np.ones(3))


def test_sample_chunks_stay_on_the_device(backend, sample_spy):
    x = backend.asarray(np.random.default_rng(3).standard_normal((32, 12)))

    def f(x):
        ns = x.__array_namespace__()
        return ns.tanh(x) * ns.sum(x * x, axis=-1, keepdims=True)

    full = xd.jacrev(f, batch_ndim=1, max_memory=10**12)(x)
    J = xd.jacrev(f, batch_ndim=1, max_memory=2 * 32 * 12 * 12 * 8)(x)
    assert len(sample_spy) > 1
    if backend.device is not None:
        assert J.device == backend.device
    np.testing.assert_allclose(backend.to_numpy(J), backend.to_numpy(full), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("jac", [xd.jacfwd, xd.jacrev])
def test_dense_tangents_are_freed_along_a_long_chain(jac):
    """Forward mode replays the tape dropping each tangent after its last use, and
    the reverse sweep pops cotangents: peak memory does not grow with the length."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((200, 200)) / 15
    x = rng.standard_normal(200)

    def chain(k):
        def f(x):
            for _ in range(k):
                x = xp.tanh(A @ x) + 0.1 * x[::-1]
            return x

        return f

    peaks = {}
    for k in (2, 32):
        jac(chain(k))(x)
        _, peaks[k] = _peak(lambda k=k: jac(chain(k))(x))
    tangent = 200 * 200 * 8  # one dense basis-batched tangent
    assert peaks[32] - peaks[2] < 3 * tangent, peaks


def test_chunk_plans_never_touch_the_process_allocator_tracing(monkeypatch):
    # basis chunking (no batch_ndim) and vmap with a budget: planned from sizes, not probed
    calls = []
    for name in ("start", "stop", "reset_peak"):
        real = getattr(tracemalloc, name)
        monkeypatch.setattr(tracemalloc, name,
                            lambda *a, _n=name, _r=real, **k: (calls.append(_n), _r(*a, **k))[1])
    x = np.linspace(0.1, 1.0, 64)
    f = lambda v: xp.tanh(xp.cumulative_sum(v, axis=-1))  # noqa: E731 - dense Jacobian
    J = xd.jacfwd(f, max_memory=40_000)(x)
    np.testing.assert_allclose(J, xd.jacfwd(f)(x), rtol=1e-12)
    J = xd.jacrev(f, max_memory=40_000)(x)
    np.testing.assert_allclose(J, xd.jacfwd(f)(x), rtol=1e-12)
    V = xd.vmap(f, max_memory=20_000)(np.ones((32, 64)))
    np.testing.assert_allclose(V, f(np.ones((32, 64))), rtol=1e-12)
    assert calls == []


@pytest.mark.parametrize("jac", [xd.jacfwd, xd.jacrev, xd.jacobian, xd.hessian])
def test_a_vmap_of_a_jacobian_counts_every_example_against_the_budget(jac):
    x = np.random.default_rng(3).standard_normal((50, 10))
    f = (lambda v: xp.sum(v ** 3)) if jac is xd.hessian else (lambda v: xp.sin(v) * v)
    per = 10 * 10 * 8  # one example's Jacobian fits, fifty do not
    with pytest.raises(_chunking.ChunkMemoryError,
                       match=rf"^{jac.__name__}: the result \(\w+, for each of 50 examples of an "
                             rf"enclosing vmap\) needs 39.1 KiB, .* or map over fewer examples"):
        xd.vmap(jac(f, max_memory=10 * per))(x)
    want = jac(f, batch_ndim=1)(x) if jac is not xd.hessian else \
        xd.hessian(lambda v: xp.sum(v ** 3, axis=-1), batch_ndim=1)(x)
    np.testing.assert_allclose(xd.vmap(jac(f, max_memory=100 * per))(x), want, rtol=1e-12)


def test_a_vmap_of_a_jacobian_under_the_automatic_budget(monkeypatch):
    monkeypatch.setattr(_chunking, "free_memory", lambda like: 20_000)  # a budget of 10,000 B
    x, w = np.ones((40, 10)), np.ones((40, 10))
    with pytest.raises(_chunking.ChunkMemoryError, match="40 examples of an enclosing vmap"):
        xd.vmap(xd.jacfwd(lambda v: v * 2.0))(x)
    # batched through a closure: the inputs of jacfwd are not, its outputs are
    with pytest.raises(_chunking.ChunkMemoryError, match="40 examples of an enclosing vmap"):
        xd.vmap(lambda wi: xd.jacrev(lambda v: v * wi)(np.ones(10)))(w)
    assert xd.vmap(xd.jacfwd(lambda v: v * 2.0))(x[:8]).shape == (8, 10, 10)


def test_the_memory_advice_fits_the_call():
    with pytest.raises(_chunking.ChunkMemoryError,
                       match=r"^jacobian: the result \(per-sample Jacobians of 8 samples\) needs "
                             r"625.0 KiB, .*; pass a larger max_memory, or differentiate a smaller "
                             r"batch \(fewer samples per call\) or fewer outputs/inputs$"):
        xd.jacobian(lambda x: x, batch_ndim=1, max_memory=1000)(np.ones((8, 100)))
    with pytest.raises(_chunking.ChunkMemoryError, match=r"^hessian: the result \(per-sample Hessians"):
        xd.hessian(lambda x: xp.sum(x ** 3, axis=-1), batch_ndim=1, max_memory=1000)(np.ones((8, 100)))
    with pytest.raises(_chunking.ChunkMemoryError, match=r"or use batch_ndim so cross-sample"):
        xd.jacobian(lambda x: x, max_memory=1000)(np.ones(100))


def test_diffarray_jacobian_too_large_refuses_before_allocating():
    import time

    x = xd.DiffArray(np.ones(10**6))
    t = time.perf_counter()
    with pytest.raises(_chunking.ChunkMemoryError,
                       match=r"^DiffArray.to\(jacobian=True\): the Jacobian \(1000000,\) by "
                             r"\(1000000,\) needs 7.3 TiB, more than the memory budget .* use "
                             r"batch_ndim so only per-sample blocks are formed"):
        (x * 2.0).to(x, jacobian=True)
    assert time.perf_counter() - t < 5
    xb = xd.DiffArray(np.ones((10, 10**6)), batch_ndim=1)
    with pytest.raises(_chunking.ChunkMemoryError, match=r"differentiate a smaller batch"):
        (xb * 2.0).to(xb, jacobian=True)
