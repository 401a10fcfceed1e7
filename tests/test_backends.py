"""Backends and devices: which libraries get imported, backend names and the default
backend, devices, mixing backends or devices, residency of every transform's results,
host transfers, and the peer libraries (torch, JAX) through array-api-compat."""

from __future__ import annotations

import subprocess
import sys
import warnings

import array_api_strict as xps
import numpy as np
import pytest

import xpdiff as xd
from xpdiff import backend as _backend
from xpdiff import core as _core
from xpdiff.testing.check import check_op
from xpdiff.testing.optable import OPS

D1 = xps.Device("device1")
StrictArray = type(xps.ones(1))
XS = xd.namespace("array_api_strict")  # xpdiff's namespace: takes traced arrays too
CPU = xps.Device("CPU_DEVICE")


# --- imports -----------------------------------------------------------------------------------

_IMPORTS = r"""
import sys
import numpy as np
import xpdiff as xd

def f(x):
    xp = x.__array_namespace__()
    return xp.sin(x) * x

J = xd.jacobian(f, batch_ndim=1)(np.ones((4, 3)))
H = xd.hessian(lambda x: xd.numpy.sum(x ** 3))(np.ones(3))
g = xd.grad(lambda x: xd.numpy.sum(xd.vmap(f)(x)))(np.ones((2, 3)))
assert J.shape == (4, 3, 3) and H.shape == (3, 3) and g.shape == (2, 3)
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_numpy_jacobian_imports_no_other_backend():
    """`import xpdiff` and NumPy transforms import neither CuPy nor torch nor JAX."""
    res = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    assert "xpdiff" in loaded and "numpy" in loaded
    assert not loaded & {"cupy", "cupyx", "torch", "jax", "jaxlib", "array_api_strict", "tqdm"}


# --- names, the default backend, devices ----------------------------------------------------------

def test_backend_names_and_aliases():
    assert _backend.canonical_name("strict") == "array_api_strict"
    assert _backend.canonical_name("array-api-strict") == "array_api_strict"
    assert _backend.canonical_name("numpy") == "numpy"
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow'.*'numpy'"):
        _backend.canonical_name("tensorflow")
    assert _backend.backend_name(np.ones(2)) == "numpy"
    assert _backend.backend_name(xps.ones(2)) == "array_api_strict"
    assert _backend.backend_name(xps) == "array_api_strict"


def test_default_backend_from_environment(monkeypatch):
    monkeypatch.delenv("XPDIFF_BACKEND", raising=False)
    assert _backend.default_backend() == "numpy"
    assert xd.namespace()._backend is _backend.backend_namespace("numpy")
    monkeypatch.setenv("XPDIFF_BACKEND", "array_api_strict")
    assert _backend.default_backend() == "array_api_strict"
    xp = xd.namespace()
    assert xp._backend is xps
    assert isinstance(xp.zeros(2), StrictArray)
    monkeypatch.setenv("XPDIFF_BACKEND", "strict")
    assert xd.namespace()._backend is xps
    monkeypatch.setenv("XPDIFF_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match=r"\$XPDIFF_BACKEND: unknown backend 'tensorflow'"):
        xd.namespace()


def test_named_backend_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(_backend._BACKENDS, "cupy", "xpdiff_no_such_module_for_test")
    with pytest.raises(ImportError, match=r"backend 'cupy' is not installed.*pip install -e \"\.\[cupy\]\""):
        _backend.backend_namespace("cupy")


def test_available_backends_and_devices():
    found = _backend.available_backends()
    assert {"numpy", "array_api_strict"} <= set(found)
    assert set(found) <= set(_backend.BACKENDS)
    assert [_backend.device_label(d) for d in _backend.devices("numpy")] == ["cpu"]
    labels = [_backend.device_label(d) for d in _backend.devices("strict")]
    assert {"CPU_DEVICE", "device1"} <= set(labels)
    assert _backend.default_device("array_api_strict") == CPU


def test_parse_device():
    assert _backend.parse_device("strict", "device1") == D1
    assert _backend.parse_device("array_api_strict", "array_api_strict.Device('device1')") == D1
    assert _backend.parse_device("strict", D1) is D1
    assert _backend.parse_device("numpy", "cpu") == "cpu"
    assert _backend.parse_device("numpy", None) is None
    with pytest.raises(ValueError, match=r"backend 'array_api_strict' has no device 'gpu'.*device1"):
        _backend.parse_device("strict", "gpu")
    with pytest.raises(ValueError, match=r"backend 'numpy' has no device 'cuda:0'.*cpu"):
        _backend.parse_device("numpy", "cuda:0")


# --- mixing backends or devices -----------------------------------------------------------------

def test_check_same_backend_names_both_backends():
    with pytest.raises(TypeError, match=r"f: argument 1 is an array of backend array_api_strict but "
                                        r"argument 0 is an array of backend numpy"):
        _core.check_same_backend([("argument 0", np.ones(2)), ("argument 1", xps.ones(2))], "f")


def test_check_same_backend_names_both_devices():
    with pytest.raises(ValueError, match=r"g: y is on device CPU_DEVICE but x is on device device1"):
        _core.check_same_backend([("x", xps.ones(2, device=D1)), ("y", xps.ones(2))], "g")


def test_check_same_backend_accepts_one_backend_scalars_and_tracers():
    _core.check_same_backend([("a", xps.ones(2, device=D1)), ("s", 2.0), ("n", None),
                                 ("b", xps.zeros(3, device=D1))], "f")
    seen = []

    def f(x):
        y = xps.ones(3, device=D1)
        _core.check_same_backend([("x", x), ("y", y)], "inner")  # x is traced here
        seen.append(type(x).__name__)
        with pytest.raises(ValueError, match="inner: z is on device CPU_DEVICE but x is on device "
                                             "device1"):
            _core.check_same_backend([("x", x), ("z", xps.ones(3))], "inner")
        return x * y

    xd.jacfwd(f)(xps.ones(3, device=D1))
    assert any(n != "Array" for n in seen)  # it ran on a traced x


def test_jacobian_refuses_numpy_with_strict():
    f = lambda x, y: x * y
    try:
        with warnings.catch_warnings():  # the silent path warns about comparing dtypes
            warnings.simplefilter("ignore")
            xd.jacobian(f, argnums=(0, 1))(np.ones(3), xps.ones(3))
    except TypeError as e:
        assert "numpy" in str(e) and "array_api_strict" in str(e)
        return
    raise AssertionError("a NumPy array and an array-api-strict array were combined silently")


@pytest.mark.parametrize("transform", ["jacfwd", "jacrev", "hessian", "vmap"])
def test_transforms_refuse_two_devices(transform):
    """Two devices in one call raise an error naming both (never a silent transfer)."""
    x1, x0 = xps.ones(3, device=D1), xps.ones(3, device=CPU)
    f = lambda x, y: XS.sum(x * y) if transform == "hessian" else x * y
    tr = getattr(xd, transform)
    call = tr(f) if transform == "vmap" else tr(f, argnums=(0, 1))
    for a, b in ((x1, x0), (x0, x1)):
        with pytest.raises(ValueError) as info:
            call(a, b)
        assert "device1" in str(info.value) and "CPU_DEVICE" in str(info.value)


# --- residency: every result on the inputs' device ------------------------------------------------

def _ns(x):
    """xpdiff's namespace for ``x``'s backend (it takes traced and raw arrays alike; torch
    tensors have no ``__array_namespace__`` of their own)."""
    from xpdiff.namespaces import namespace_for

    return namespace_for(_backend.namespace_of(x))


def _calls(be):
    """Transform calls on ``be``'s arrays, by name (each returns a pytree of results)."""
    rng = np.random.default_rng(0)
    x, W, v = (be.asarray(rng.standard_normal(s)) for s in ((5, 3), (3, 4), (3,)))
    xp = _ns(x)

    def _mlp(x, W):
        # namespace functions, not operators: a raw strict array on the left of `@` does
        # not defer to a traced right operand (grad with respect to W)
        return xp.multiply(xp.tanh(xp.matmul(x, W)), x[..., :1])

    def _loss(x, W):
        return xp.sum(xp.square(_mlp(x, W)), axis=-1)

    x0 = x[0, ...]
    both = (0, 1)
    return {
        "jacfwd": lambda: xd.jacfwd(_mlp, argnums=both)(x0, W),
        "jacrev": lambda: xd.jacrev(_mlp, argnums=both)(x0, W),
        "jacobian-auto": lambda: xd.jacobian(_mlp)(x0, W),
        "jacfwd-chunk": lambda: xd.jacfwd(_mlp, argnums=both, chunk_size=2)(x0, W),
        "jacrev-chunk": lambda: xd.jacrev(_mlp, argnums=both, chunk_size=3)(x0, W),
        "jacfwd-batch": lambda: xd.jacfwd(_mlp, argnums=both, batch_ndim=1)(x, W),
        "jacrev-batch": lambda: xd.jacrev(_mlp, argnums=both, batch_ndim=1)(x, W),
        "jacrev-batch-chunk": lambda: xd.jacrev(_mlp, batch_ndim=1, chunk_size=2)(x, W),
        "hessian": lambda: xd.hessian(lambda x: _loss(x, W))(x0),
        "hessian-chunk": lambda: xd.hessian(lambda x: _loss(x, W), chunk_size=2)(x0),
        "hessian-batch": lambda: xd.hessian(_loss, argnums=both, batch_ndim=1)(x, W),
        "grad": lambda: xd.grad(lambda W: xp.sum(_loss(x, W)))(W),
        "grad-pytree": lambda: xd.grad(lambda p: xp.sum(_loss(p["x"], p["W"])))({"x": x, "W": W}),
        "value_and_grad": lambda: xd.value_and_grad(lambda x: _loss(x, W), argnums=0)(x0),
        "grad-of-grad": lambda: xd.grad(lambda x: xp.sum(xd.grad(lambda y: _loss(y, W))(x) ** 2))(x0),
        "vmap": lambda: xd.vmap(_mlp, in_axes=(0, None))(x, W),
        "vmap-chunk": lambda: xd.vmap(_mlp, in_axes=(0, None), chunk_size=2)(x, W),
        "vmap-out-axes": lambda: xd.vmap(_mlp, in_axes=(0, None), out_axes=1)(x, W),
        "vmap-of-grad": lambda: xd.vmap(xd.grad(lambda x: _loss(x, W)))(x),
        "jvp": lambda: xd.jvp(lambda x: _mlp(x, W), (x0,), (v,)),
        "jvp-zero-tangent-output": lambda: xd.jvp(lambda x: (_mlp(x, W), W), (x0,), (v,)),
        "vjp": lambda: (lambda out_pull: out_pull[1](out_pull[0]))(xd.vjp(_mlp, x0, W)),
    }


CALLS = ["jacfwd", "jacrev", "jacobian-auto", "jacfwd-chunk", "jacrev-chunk", "jacfwd-batch",
         "jacrev-batch", "jacrev-batch-chunk", "hessian", "hessian-chunk", "hessian-batch", "grad",
         "grad-pytree", "value_and_grad", "grad-of-grad", "vmap", "vmap-chunk", "vmap-out-axes",
         "vmap-of-grad", "jvp", "jvp-zero-tangent-output", "vjp"]


def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _leaves(t)]
    if isinstance(tree, dict):
        return [leaf for t in tree.values() for leaf in _leaves(t)]
    return [tree]


@pytest.mark.parametrize("name", CALLS)
def test_results_stay_on_the_inputs_device(name, backend):
    """Every transform, chunked and batched variants included, returns arrays of the
    inputs' backend on the inputs' device (array-api-strict's device1 also raises on
    any device mix or host conversion on the way; torch-cuda runs under sync debug
    mode "error")."""
    calls = _calls(backend)
    home = backend.asarray([0.0])
    out = calls[name]()
    leaves = _leaves(out)
    assert leaves
    for leaf in leaves:
        assert _backend.backend_name(leaf) == _backend.backend_name(home), \
            f"{name} returned a {type(leaf).__name__}"
        assert leaf.device == home.device, f"{name} returned an array on {leaf.device}"


def test_residency_covers_every_call():
    from conftest import _make

    assert sorted(_calls(_make("numpy"))) == sorted(CALLS)


def test_residency_results_are_right():
    """The device1 results equal NumPy's (so the residency tests check real results)."""
    from conftest import _make

    strict = _calls(_make("strict-device1"))
    got_J, got_H = strict["jacfwd-batch"](), strict["hessian-chunk"]()
    host = _calls(_make("numpy"))
    for a, b in zip(host["jacrev-batch"](), got_J):
        np.testing.assert_allclose(a, _backend.to_host(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host["hessian"](), _backend.to_host(got_H), rtol=1e-12, atol=1e-12)


# --- host transfers and functional updates -----------------------------------------------------

def _peer_arrays():
    out = [np.arange(3.0), xps.asarray([0.0, 1.0, 2.0], device=D1)]
    try:
        import torch

        out.append(torch.arange(3.0, dtype=torch.float64))
    except ImportError:
        pass
    try:
        import jax.numpy as jnp

        out.append(jnp.arange(3.0))
    except ImportError:
        pass
    return out


def test_host_round_trip_keeps_backend_dtype_and_device():
    for x in _peer_arrays():
        h = _backend.to_host(x)
        assert isinstance(h, np.ndarray)
        np.testing.assert_array_equal(h, [0.0, 1.0, 2.0])
        y = _backend.from_host(h * 2, x)
        assert _backend.backend_name(y) == _backend.backend_name(x)
        assert y.dtype == x.dtype and y.device == x.device
        np.testing.assert_array_equal(_backend.to_host(y), [0.0, 2.0, 4.0])


def test_set_at_and_update_on_every_backend():
    for x in _peer_arrays():
        bk = _backend.namespace_of(x)
        y = _backend.set_at(bk, x, (slice(1, None),), 7.0)
        np.testing.assert_array_equal(_backend.to_host(y), [0.0, 7.0, 7.0])
        np.testing.assert_array_equal(_backend.to_host(x), [0.0, 1.0, 2.0])  # x untouched
        assert y.device == x.device
        z = _backend.update(y, (slice(None, None, 2),), 5.0)  # in place where allowed
        np.testing.assert_array_equal(_backend.to_host(z), [5.0, 7.0, 5.0])
        assert z.device == x.device


# --- peer libraries through array-api-compat -------------------------------------------------------

def _peer(name):
    if name == "torch":
        torch = pytest.importorskip("torch")
        import array_api_compat.torch as bk

        return bk, torch.device("cpu")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as bk

    return bk, jax.devices("cpu")[0]


SMOKE = ["matmul", "tanh", "sum", "reshape", "take", "where"]


@pytest.mark.parametrize("op", [o for o in OPS if o.name in SMOKE], ids=lambda o: o.name)
def test_torch_smoke(op):
    """A few op-table entries on torch CPU tensors in the default run (the whole table on
    torch and JAX is the `peers` group)."""
    bk, dev = _peer("torch")
    fails = check_op(op, bk, dev, bk.float64)
    assert not fails, "\n".join(f"{f.check}: {f.error}" for f in fails)


def test_jax_smoke():
    """One batched Jacobian on JAX CPU arrays in the default run (JAX dispatches op by op
    slowly: the table is in the `peers` group)."""
    bk, dev = _peer("jax")
    x = bk.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    W = bk.asarray(np.random.default_rng(1).standard_normal((3, 2)))
    xp = xd.namespace("jax")
    f = lambda x, W: xp.matmul(x, W)
    J = xd.jacrev(f, argnums=1, batch_ndim=1)(x, W)
    assert _backend.backend_name(J) == "jax" and J.device == dev and J.shape == (4, 2, 3, 2)
    np.testing.assert_allclose(_backend.to_host(J)[1, 0, :, 0], _backend.to_host(x)[1])


KNOWN_PEER_FAILURES = {
    # torch: basic slicing has no negative steps (x[::-1]); the table's getitem uses one
    "torch": ("step must be greater than zero",),
    # JAX arrays are immutable: rule impls that copy then assign (set_at, diag_embed) fail
    "jax": ("JAX arrays are immutable",),
}


@pytest.mark.peers
@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_peer_op_table(peer, op):
    """The whole op table (derivatives, vmap, residency) on torch / JAX CPU arrays.
    Failures with a known cause (docs/backends.md) are reported as xfail."""
    bk, dev = _peer(peer)
    fails = check_op(op, bk, dev, bk.float64)
    if fails and all(any(k in f.error for k in KNOWN_PEER_FAILURES[peer]) for f in fails):
        pytest.xfail(fails[0].error)
    assert not fails, "\n".join(f"{f.check}: {f.error}" for f in fails)


@pytest.mark.parametrize("shape,offset,layout", [
    ((3, 5), 1, "C"), ((3, 5), 2, "F"), ((5, 5), 0, "F"), ((2, 3, 5), 1, "C"),
    ((2, 3, 5), 2, "F"), ((4, 3, 5), 0, "strided"), ((0, 5), 0, "C")])
def test_add_diagonal_in_every_layout(shape, offset, layout):
    """backend.add_diagonal adds d[..., j] at [..., j, offset + j] whatever the layout (a
    flat strided view for row- and column-major blocks, integer indices otherwise),
    copying unless told the array is its own, and keeps the layout."""
    from xpdiff.backend import add_diagonal

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    x = {"C": x, "F": np.asfortranarray(x), "strided": x[::2]}[layout]
    C = x.shape[-2]
    d = rng.standard_normal(x.shape[:-2] + (C,))
    ref = x.copy()
    j = np.arange(C)
    ref[..., j, j + offset] += d
    before = x.copy()
    out = add_diagonal(np, x, d, offset)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(x, before)  # a copy
    assert out.flags.f_contiguous == x.flags.f_contiguous or out.ndim != 2
    own = x.copy(order="K")
    assert add_diagonal(np, own, d, offset, inplace=True) is own
    np.testing.assert_array_equal(own, ref)
    xs = xps.asarray(x.copy())  # the standard's way elsewhere: a diagonal matrix added
    np.testing.assert_array_equal(np.asarray(add_diagonal(xps, xs, xps.asarray(d), offset)), ref)


@pytest.mark.parametrize("lead,m", [((), 0), ((), 3), ((4,), 1), ((2, 3), 4)])
def test_eye_kron_blocks(lead, m):
    """backend.eye_kron writes B on the m diagonal blocks (both layouts), in one strided
    write on NumPy and block by block with the standard's indexing elsewhere."""
    from xpdiff.backend import eye_kron
    from xpdiff.core import raw_namespace

    B = np.random.default_rng(0).standard_normal(lead + (2, 5))
    for right, ref in ((False, np.einsum("ij,...rq->...irjq", np.eye(m), B)),
                       (True, np.einsum("...rq,ij->...qirj", B, np.eye(m)))):
        np.testing.assert_array_equal(eye_kron(raw_namespace(B), B, m, right), ref)
        np.testing.assert_array_equal(np.asarray(eye_kron(xps, xps.asarray(B), m, right)), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128, np.int64])
@pytest.mark.parametrize("shape", [((4, 8, 1), (4, 1, 8)), ((64, 32, 1), (64, 1, 32)),
                                   ((32, 1), (1, 300)), ((8, 64, 1), (1, 64))])
def test_outer_product_is_the_broadcast_product(shape, dtype):
    """NumPy's outer products of stacks (a matrix product with a unit inner dim) run as a
    BLAS product padded with zeros from 8192 result elements: the values are the
    broadcast product's, infinities and NaNs included (a zero may lose its sign)."""
    g = np.random.default_rng(0)
    a = (g.standard_normal(shape[0]) * 3).astype(dtype)
    b = (g.standard_normal(shape[1]) * 3).astype(dtype)
    if dtype != np.int64:
        a.reshape(-1)[::7] = np.inf
        b.reshape(-1)[1::9] = np.nan
        b.reshape(-1)[2::5] = 0.0
    with np.errstate(invalid="ignore"):
        got = _backend.outer_product(np, a, b)
        want = a * b
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
