"""Transforms on Dask arrays: equal to the in-memory engine, one task per chunk,
shared arguments once in the graph, errors before any task runs.

The threaded scheduler runs every case; a ``LocalCluster(processes=True,
n_workers=2)`` started once for the module runs them again (its workers import
this module, so everything that starts processes lives in fixtures).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import cloudpickle
import numpy as np
import pytest

import xpdiff as xd

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

xp = xd.numpy
RNG = np.random.default_rng(0)
XN = RNG.standard_normal((24, 5))
W1 = RNG.standard_normal((5, 4)) / 2
W2 = RNG.standard_normal((4, 3)) / 2
X = da.from_array(XN, chunks=(6, 5))  # 4 data chunks


def elementwise(x):
    ns = x.__array_namespace__()
    return ns.sin(x) * ns.exp(x) + x ** 2


def mlp(x, W1, W2):
    return xp.matmul(xp.tanh(xp.matmul(x, W1)), W2)


def sample_energy(x):  # one scalar per sample: a Hessian of B + X + X
    return xp.sum(xp.sin(x) * x ** 2, axis=-1)


def per_sample_loss(W1, x, W2):
    return xp.sum((mlp(x, W1, W2) - 0.5) ** 2, axis=-1)


def with_aux(x):
    return elementwise(x), {"sq": x * x, "cube": x ** 3}


# name -> (transform of f, in-memory args, their Dask counterparts)
CASES = {
    "jacobian": (lambda: xd.jacobian(elementwise, batch_ndim=1), (XN,), (X,)),
    "jacfwd-mlp": (lambda: xd.jacfwd(mlp, batch_ndim=1, data_argnums=0), (XN, W1, W2), (X, W1, W2)),
    "jacrev-mlp": (lambda: xd.jacrev(mlp, batch_ndim=1, data_argnums=0), (XN, W1, W2), (X, W1, W2)),
    "per-sample-dW": (lambda: xd.jacobian(mlp, argnums=(1, 2), batch_ndim=1, data_argnums=0),
                      (XN, W1, W2), (X, W1, W2)),
    "jacrev-dW-mode": (lambda: xd.jacobian(mlp, argnums=1, batch_ndim=1, mode="rev", data_argnums=0),
                       (XN, W1, W2), (X, W1, W2)),
    "has_aux-pytree": (lambda: xd.jacobian(with_aux, has_aux=True, batch_ndim=1), (XN,), (X,)),
    "hessian": (lambda: xd.hessian(sample_energy, batch_ndim=1), (XN,), (X,)),
    "two-data-dims": (lambda: xd.jacobian(elementwise, batch_ndim=2), (XN.reshape(4, 6, 5),),
                      (da.from_array(XN.reshape(4, 6, 5), chunks=(2, 3, 5)),)),
    "vmap": (lambda: xd.vmap(mlp, in_axes=(0, None, None)), (XN, W1, W2), (X, W1, W2)),
    "vmap-axes": (lambda: xd.vmap(lambda x, w: x * w, in_axes=(1, None), out_axes=1),
                  (XN.T, W1[:, 0]), (X.T, W1[:, 0])),
    "no-data-dims": (lambda: xd.jacobian(elementwise), (XN[:3],), (X[:3],)),
}
GRADS = {
    "grad-sum": (lambda: xd.scaleout.grad(per_sample_loss, reduce="sum", data_argnums=1),
                 lambda: xd.grad(lambda W1, x, W2: xp.sum(per_sample_loss(W1, x, W2)))),
    "grad-mean-two-args": (
        lambda: xd.scaleout.grad(per_sample_loss, argnums=(0, 2), reduce="mean", data_argnums=1),
        lambda: xd.grad(lambda W1, x, W2: xp.mean(per_sample_loss(W1, x, W2)), argnums=(0, 2))),
    "value_and_grad-mean": (
        lambda: xd.scaleout.value_and_grad(per_sample_loss, reduce="mean", data_argnums=1, split_every=2),
        lambda: xd.value_and_grad(lambda W1, x, W2: xp.mean(per_sample_loss(W1, x, W2)))),
    "grad-data-arg": (lambda: xd.scaleout.grad(per_sample_loss, argnums=(0, 1), reduce="mean",
                                               data_argnums=1),
                      lambda: xd.grad(lambda W1, x, W2: xp.mean(per_sample_loss(W1, x, W2)),
                                      argnums=(0, 1))),
}


def _leaves(tree):
    from xpdiff.core import tree as _tree

    return _tree.flatten(tree)[0]


def _check(lazy, expected, compute, dask_arrays=True):
    got, want = _leaves(lazy), _leaves(expected)
    assert len(got) == len(want)
    assert all(isinstance(g, da.Array) == dask_arrays for g in got)
    values = compute(*got)
    for g, v, w in zip(got, values, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(v, w, rtol=1e-12, atol=1e-13)


def _threaded(*arrays):
    import dask

    return dask.compute(*arrays, scheduler="threads")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


@pytest.mark.parametrize("case", sorted(CASES))
def test_transforms_equal_in_memory_threaded(case):
    make, args, dargs = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xd.scaleout.RechunkWarning)
        lazy = make()(*dargs)
    _check(lazy, make()(*args), _threaded)


@pytest.mark.parametrize("case", sorted(GRADS))
def test_gradients_of_sums_and_means_threaded(case):
    make, reference = GRADS[case]
    lazy = make()(W1, X, W2)
    _check(lazy, reference()(W1, XN, W2), _threaded)
    _check(make()(W1, XN, W2), reference()(W1, XN, W2), lambda *a: a, False)  # same call in memory


def test_on_a_local_cluster(client):
    """Every case on two worker processes (functions travel by cloudpickle: lambdas, closures)."""
    scale = 1.5
    lazy, expected = [], []
    for make, args, dargs in CASES.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", xd.scaleout.RechunkWarning)
            lazy.append(make()(*dargs))
        expected.append(make()(*args))
    for make, reference in GRADS.values():
        lazy.append(make()(W1, X, W2))
        expected.append(reference()(W1, XN, W2))
    closure = xd.jacobian(lambda x: elementwise(x) * scale, batch_ndim=1)
    lazy.append(closure(X))
    expected.append(closure(XN))
    jitted = xd.jit(xd.jacobian(sample_energy, batch_ndim=1))  # travels without its cache and lock
    lazy.append(jitted(X))
    expected.append(xd.jacobian(sample_energy, batch_ndim=1)(XN))
    _check(lazy, expected, lambda *a: client.compute(list(a), sync=True))


def test_demo_on_the_cluster(client, tmp_path):
    from xpdiff.scaleout import demo

    lines = []
    out = tmp_path / "new" / "dir"  # --out need not exist yet
    assert demo.run(size_gb=0.0005, chunk=64, out=str(out), echo=lines.append, client=client) == 0
    text = "\n".join(lines)
    assert "samples/s" in text and "peak RSS" in text and "worker process" in text, text
    assert "max abs difference 0.0e+00" in text
    assert not list(out.iterdir())  # the Zarr store is deleted
    assert demo.run(size_gb=1e9, echo=lines.append) == 2 and "disk" in lines[-1]


def test_process_scheduler():
    J = xd.jacobian(lambda x: elementwise(x) * 2.0, batch_ndim=1)(X)
    (got,) = J.compute(scheduler="processes", num_workers=2),
    np.testing.assert_allclose(got, xd.jacobian(lambda x: elementwise(x) * 2.0, batch_ndim=1)(XN))


# --- the graph ------------------------------------------------------------------------------

def _derivative_tasks(arr, fname):
    graph = dict(arr.__dask_graph__())
    return [k for k in graph if isinstance(k, tuple) and k[0].startswith(f"xpdiff-{fname}-")]


def test_one_derivative_task_per_chunk():
    x = da.from_array(RNG.standard_normal((40, 3, 2)), chunks=(5, 3, 2))  # 8 chunks
    J = xd.jacobian(elementwise, batch_ndim=1)(x)
    assert len(_derivative_tasks(J, "jacobian")) == x.npartitions == 8
    assert J.chunks == (x.chunks[0], (3,), (2,), (3,), (2,))
    Jw = xd.jacobian(mlp, argnums=(1, 2), batch_ndim=1, data_argnums=0)(X, W1, W2)
    assert all(len(_derivative_tasks(j, "jacobian")) == X.npartitions for j in Jw)
    # the data's chunks, one derivative task each, and the shared part (f and the weights) once
    assert len(dict(J.__dask_graph__())) == 2 * x.npartitions + 1


def test_gradient_is_one_task_per_chunk_and_a_tree_reduction():
    x = da.ones((64, 3), chunks=(8, 3))  # 8 chunks
    g = xd.scaleout.grad(lambda w, x: xp.sum(x * w, axis=1), data_argnums=1, split_every=2)(np.ones(3), x)
    assert len(_derivative_tasks(g, "scaleout.value_and_grad")) == 8
    levels = [name for name in g.dask.layers if name.startswith("xpdiff-sum-")]
    assert len(levels) == 3  # 8 -> 4 -> 2 -> 1
    np.testing.assert_allclose(g.compute(scheduler="sync"), np.full(3, 64.0))


def test_shared_weight_once_in_the_graph():
    big = RNG.standard_normal((5, 300))  # 12 kB: the only task whose pickle is that large holds it
    Jw = xd.jacobian(lambda x, w: xp.tanh(xp.matmul(x, w)), argnums=1, batch_ndim=1,
                     data_argnums=0)(X, big)
    graph = dict(Jw.__dask_graph__())
    holders = [k for k, task in graph.items() if len(cloudpickle.dumps(task)) >= big.nbytes]
    assert len(holders) == 1, holders
    assert len(_derivative_tasks(Jw, "jacobian")) == X.npartitions


def test_output_meta_without_computing_data():
    def boom(block):
        raise AssertionError("a real block was computed while building the graph")

    x = X.map_blocks(boom, dtype=X.dtype, meta=np.empty((0, 0)))
    J = xd.jacobian(elementwise, batch_ndim=1)(x)
    H = xd.hessian(sample_energy, batch_ndim=1)(x.astype(np.float32))
    assert (J.shape, J.dtype, type(J._meta)) == ((24, 5, 5), np.float64, np.ndarray)
    assert (H.shape, H.dtype) == ((24, 5, 5), np.float32)


def test_chunks_of_another_array_library():
    """Chunks that are not NumPy arrays (array-api-strict here, CuPy on a GPU): the stand-in block
    is made in the meta's namespace and every task works on that library's arrays."""
    import dask

    xps = pytest.importorskip("array_api_strict")
    xs = X.map_blocks(xps.asarray, meta=xps.asarray(np.empty((0, 0))))
    J = xd.jacobian(elementwise, batch_ndim=1)(xs)
    Jw = xd.jacobian(lambda x, w: xd.namespace("array_api_strict").matmul(x, w), argnums=1, batch_ndim=1,
                     data_argnums=0)(xs, xps.asarray(W1))
    assert type(J._meta) is type(Jw._meta) is type(xs._meta)
    for lazy, want in ((J, xd.jacobian(elementwise, batch_ndim=1)(XN)),
                       (Jw, np.broadcast_to(np.eye(4)[None, :, None, :] * XN[:, None, :, None],
                                            (24, 4, 5, 4)))):
        blocks = dask.compute(*lazy.to_delayed().ravel(), scheduler="sync")
        assert all(type(b) is type(xs._meta) for b in blocks)
        np.testing.assert_allclose(np.concatenate([np.asarray(b) for b in blocks]), want, atol=1e-15)


def test_gradient_over_chunks_of_another_array_library():
    """The tree reduction adds blocks in their own namespace (Dask's own sum needs NumPy dtypes)."""
    import dask

    xps = pytest.importorskip("array_api_strict")
    xs = X.map_blocks(xps.asarray, meta=xps.asarray(np.empty((0, 0))))
    w = RNG.standard_normal(5)

    def loss(w, x):
        return xd.namespace("array_api_strict").sum(x * w, axis=1) ** 2

    v, g = xd.scaleout.value_and_grad(loss, reduce="mean", data_argnums=1, split_every=3)(xps.asarray(w), xs)
    v, g = dask.compute(v, g, scheduler="sync")
    assert type(g) is type(xs._meta) and g.shape == (5,) and v.shape == ()
    s = XN @ w
    np.testing.assert_allclose(np.asarray(g), 2 * (s[:, None] * XN).mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(float(v), (s ** 2).mean(), rtol=1e-13)


def test_shared_argument_shaped_like_a_block_is_not_data():
    """A weight whose leading dim equals the chunk size stays shared (not taken for data)."""
    w = RNG.standard_normal((6, 5))  # 6 == the data chunk size of X

    def f(x, w):
        return x * xp.sum(w, axis=0)

    got = xd.jacobian(f, batch_ndim=1)(X, w).compute(scheduler="sync")
    np.testing.assert_allclose(got, xd.jacobian(f, batch_ndim=1)(XN, w))


# --- errors and warnings --------------------------------------------------------------------

def test_mixing_raises_before_any_task():
    with pytest.raises(xd.MixingError, match="mixes samples.*no task has run"):
        xd.jacobian(lambda x: x - xp.mean(x, axis=0, keepdims=True), batch_ndim=1)(X)
    with pytest.raises(xd.MixingError, match="mixes samples.*no task has run"):
        xd.scaleout.grad(lambda w, x: xp.sum(x * w, axis=1) - xp.mean(x), data_argnums=1)(W1[:, 0], X)


def test_split_differentiation_dims_merged_with_one_warning():
    x = da.from_array(XN, chunks=(6, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        J = xd.jacobian(elementwise, batch_ndim=1)(x)
        xd.jacobian(elementwise, batch_ndim=1)(x)  # the same layout again: no second warning
    ours = [w for w in caught if issubclass(w.category, xd.scaleout.RechunkWarning)]
    msgs = [str(w.message) for w in ours]
    assert len(msgs) == 1 and "differentiation dims (1,) split over 3 chunks" in msgs[0], msgs
    assert ours[0].filename == __file__  # points at the caller's line
    assert "rechunk" in msgs[0]
    assert J.chunks[0] == x.chunks[0]  # data dims never merged
    np.testing.assert_allclose(J.compute(scheduler="sync"), xd.jacobian(elementwise, batch_ndim=1)(XN))


def test_plain_grad_of_a_dask_loss_points_to_scaleout():
    with pytest.raises(TypeError, match=r"xd\.scaleout\.value_and_grad\(per_sample_loss, reduce="):
        xd.grad(lambda x: xp.sum(x))(X)


def test_per_sample_loss_must_have_data_shape():
    with pytest.raises(ValueError, match="one loss per sample"):
        xd.scaleout.grad(lambda w, x: x * w, data_argnums=1)(W1[:, 0], XN)
    with pytest.raises(ValueError, match="reduce must be 'sum' or 'mean'"):
        xd.scaleout.grad(per_sample_loss, reduce="max")


_NO_DASK = """
import sys
import xpdiff as xd
import numpy as np
xd.jacobian(lambda x: x * x, batch_ndim=1)(np.ones((3, 2)))
xd.scaleout.grad(lambda w, x: xd.numpy.sum(x * w, axis=1), data_argnums=1)(np.ones(2), np.ones((3, 2)))
assert not [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")], "dask imported"
sys.modules["dask"] = None  # as if Dask were not installed
try:
    import xpdiff.scaleout.dask
except ImportError as e:
    print(e)
"""


def test_import_never_loads_dask_and_missing_dask_names_the_extra():
    res = subprocess.run([sys.executable, "-c", _NO_DASK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'pip install "xpdiff[dask]"' in res.stdout


@pytest.mark.filterwarnings("ignore::xpdiff.scaleout.RechunkWarning")  # no data dims: one chunk
def test_jvp_and_vjp_on_dask_arguments_are_lazy_and_equal_the_in_memory_ones():
    t = da.ones_like(X)
    out, tout = xd.jvp(sample_energy, (X,), (t,))
    want, twant = xd.jvp(sample_energy, (XN,), (np.ones_like(XN),))
    assert isinstance(out, da.Array) and isinstance(tout, da.Array)
    np.testing.assert_allclose(tout.compute(scheduler="sync"), twant, rtol=1e-13)
    np.testing.assert_allclose(out.compute(scheduler="sync"), want, rtol=1e-13)

    out, pull, aux = xd.vjp(lambda x: (elementwise(x), 2 * x), X, has_aux=True)
    _, pull_np = xd.vjp(elementwise, XN)
    ct = RNG.standard_normal(XN.shape)
    (g,) = pull(da.from_array(ct, chunks=(12, 5)))
    assert isinstance(g, da.Array) and isinstance(aux, da.Array)
    np.testing.assert_allclose(g.compute(scheduler="sync"), pull_np(ct)[0], rtol=1e-13)
    np.testing.assert_allclose(aux.compute(scheduler="sync"), 2 * XN)
    with pytest.raises(ValueError, match="vjp: the cotangent has pytree structure"):
        pull((ct, ct))
    with pytest.raises(ValueError, match=r"vjp: the cotangent of out has shape \(24, 5\) and dtype "
                                         r"complex128, but out has shape \(24, 5\) and dtype float64"):
        pull(da.from_array(ct * 1j, chunks=(12, 5)))  # checked before any task runs


def test_jit_on_dask_arguments_compiles_each_task():
    """Each task replays a compiled program: f's Python body runs at trace time only (once for
    the stand-in block, once for the first real block: X's 4 chunks have one shape)."""
    calls = []

    def f(x):
        calls.append(x.shape)
        return xp.sin(x) * xp.sum(x * x, axis=-1, keepdims=True)

    J = xd.jit(xd.jacobian(f, batch_ndim=1))(X)
    assert isinstance(J, da.Array) and J.chunks[0] == X.chunks[0]
    got = J.compute(scheduler="sync")
    assert len(calls) == 2
    np.testing.assert_allclose(got, xd.jacobian(f, batch_ndim=1)(XN), rtol=1e-13)
    assert len(calls) == 3  # the eager call above


def test_diffarray_of_a_dask_array_says_what_to_use():
    with pytest.raises(TypeError, match=r"DiffArray: value is a Dask array.*batch_ndim=1"):
        xd.DiffArray(X)
