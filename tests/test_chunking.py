"""Memory-bounded chunking: same results, budgets respected, impossible requests refused."""

from __future__ import annotations

import numpy as np
import pytest

import xpdiff as xd
from xpdiff import _chunking

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


@pytest.mark.parametrize("jac", [xd.jacfwd, xd.jacrev])
def test_max_memory_chunks_and_matches(jac, spy):
    x = np.random.default_rng(0).standard_normal((16, 40))
    full = jac(_mixing, batch_ndim=1, max_memory=10**12)(x)
    result_bytes = full.size * 8
    budget = result_bytes + 200_000  # room for a few basis vectors of intermediates only
    spy.clear()
    J = jac(_mixing, batch_ndim=1, max_memory=budget)(x)
    np.testing.assert_allclose(J, full, rtol=1e-12, atol=1e-12)
    sizes = spy[0]  # the basis (the data vmap's own run comes last)
    assert len(sizes) > 1 and sum(sizes) == 40, spy


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
