"""Device paths a GPU depends on, checked on the CPU: no host-to-device copies inside
transformations, Python numbers created like the array arguments, the inputs' device made
current, float32 kept float32, native kernels, and the free-memory query."""

from __future__ import annotations

import contextlib
import types

import array_api_strict as xps
import numpy as np
import pytest

import xpdiff as xd
from xpdiff import backend as _backend

DEV1 = xps.Device("device1")


def _strict(a, dtype=np.float64):
    return xps.asarray(np.asarray(a, dtype=dtype), device=DEV1)


@contextlib.contextmanager
def _no_host_copies(monkeypatch, module=xps):
    """Fail on any ``asarray`` of host data (Python numbers, lists) by the backend ``module``
    while active: on a GPU each is a host-to-device copy (and on torch CUDA a synchronisation)."""
    real = module.asarray
    copies: list = []

    def spy(obj, /, *args, **kwargs):
        if not hasattr(obj, "__array_namespace__"):
            copies.append(repr(obj)[:60])
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(module, "asarray", spy)
    yield copies
    monkeypatch.setattr(module, "asarray", real)
    assert copies == [], f"host-to-device copies inside a transformation: {copies}"


def _ns(x):
    return x.__array_namespace__()


def test_setitem_of_a_python_float_is_a_fill(monkeypatch):
    def f(x):
        y = x * 1.0
        y[1] = 2.0
        y[...] = y * 3.0
        return _ns(y).sum(y * y)

    x = _strict([1.0, 2.0, 3.0])
    with _no_host_copies(monkeypatch):
        g = xd.grad(f)(x)
    assert g.device == DEV1
    np.testing.assert_allclose(_backend.to_host(g), [18.0, 0.0, 54.0])


def test_scatter_vjp_builds_its_mask_on_the_device(monkeypatch):
    idx = _strict([2, 0, 2], dtype=np.int64)

    def f(x, v):
        y = x * 1.0
        y[idx] = v  # repeated destination 2: the last write wins
        return _ns(y).sum(y * y)

    x, v = _strict([1.0, 2.0, 3.0]), _strict([5.0, 6.0, 7.0])
    with _no_host_copies(monkeypatch):
        gx, gv = xd.grad(f, argnums=(0, 1))(x, v)
    np.testing.assert_allclose(_backend.to_host(gx), [0.0, 4.0, 0.0])
    np.testing.assert_allclose(_backend.to_host(gv), [0.0, 12.0, 14.0])


@pytest.mark.parametrize("n", [6, 7])
def test_irfft_vjp_weights_built_on_the_device(monkeypatch, n):
    def f(x):
        xp = _ns(x)
        z = xp.fft.rfft(x)
        return xp.sum(xp.fft.irfft(z * z, n=n) ** 2)

    x0 = np.random.default_rng(0).standard_normal(n)
    with _no_host_copies(monkeypatch):
        g = xd.grad(f)(_strict(x0))
    eps = 1e-6
    num = [(f(xps.asarray(x0 + eps * e)) - f(xps.asarray(x0 - eps * e))) / (2 * eps)
           for e in np.eye(n)]
    np.testing.assert_allclose(_backend.to_host(g), [float(v) for v in num], rtol=1e-6)


def test_float_scalar_with_an_integer_array_is_a_fill(monkeypatch):
    """``k * 0.5`` with an integer ``k`` (NumPy promotes it to float64; array-api-strict
    refuses the mix, so NumPy's namespace is watched here)."""
    import array_api_compat.numpy as cnp

    k = np.arange(3)

    def f(x):
        xp = _ns(x)
        ks = xd.namespace("numpy").asarray(k)  # a constant
        return xp.sum(x * (ks * 0.5) + (ks > 0.5) * 1.0)

    with _no_host_copies(monkeypatch, cnp):
        g = xd.grad(f)(np.ones(3))
    np.testing.assert_allclose(g, [0.0, 0.5, 1.0])


def test_python_float_argument_takes_the_arrays_backend_device_and_dtype(monkeypatch):
    """``grad(f, argnums=1)(x, 2.0)`` with a strict float32 ``x`` on device1: the 2.0 becomes a
    float32 strict array on device1 (before: a float64 NumPy array, and a device mix)."""
    x = _strict([1.0, 2.0], dtype=np.float32)
    with _no_host_copies(monkeypatch):
        g = xd.grad(lambda x, s: _ns(s).sum(s * s * x), argnums=1)(x, 2.0)
    assert g.device == DEV1 and g.dtype == xps.float32 and g.shape == ()
    np.testing.assert_allclose(_backend.to_host(g), 12.0)
    # a tangent given as a Python number follows its primal
    _, t = xd.jvp(lambda s: s * s, (xps.asarray(3.0, dtype=xps.float32, device=DEV1),), (1.0,))
    assert t.device == DEV1 and t.dtype == xps.float32
    # with no array among the arguments: the default backend, float64 (as before)
    g = xd.grad(lambda s: s * s)(3.0)
    assert isinstance(g, np.ndarray) and g.dtype == np.float64


def test_transformations_run_under_the_inputs_device(monkeypatch):
    """Every transformation enters the backend layer's device scope with its inputs' device
    (CuPy: ``with device:``; torch CUDA: ``torch.cuda.device``); here a recording scope for
    array-api-strict stands in for CuPy's."""
    entered: list = []

    @contextlib.contextmanager
    def scope(dev):
        entered.append(dev)
        yield

    monkeypatch.setitem(_backend.DEVICE_SCOPES, "array_api_strict", scope)
    x = _strict([0.5, 1.5])
    xp = xd.namespace("array_api_strict")
    f = lambda v: xp.sum(xp.sin(v))  # noqa: E731
    calls = {
        "grad": lambda: xd.grad(f)(x),
        "value_and_grad": lambda: xd.value_and_grad(f)(x),
        "jacfwd": lambda: xd.jacfwd(xp.sin)(x),
        "jacrev": lambda: xd.jacrev(xp.sin)(x),
        "jacobian": lambda: xd.jacobian(xp.sin)(x),
        "hessian": lambda: xd.hessian(f)(x),
        "vmap": lambda: xd.vmap(xp.sin)(x),
        "jvp": lambda: xd.jvp(xp.sin, (x,), (x,)),
        "vjp": lambda: xd.vjp(xp.sin, x)[1](x),
    }
    for name, call in calls.items():
        entered.clear()
        call()
        assert entered and all(d == DEV1 for d in entered), name
    entered.clear()
    xd.grad(f)(np.ones(2))  # NumPy: no scope entry, nothing entered
    assert entered == []


def test_device_key_of_an_unhashable_device():
    class Dev:
        __hash__ = None

        def __init__(self, i):
            self.id = i

    assert _backend.device_key(Dev(1)) == _backend.device_key(Dev(1))
    assert _backend.device_key(Dev(1)) != _backend.device_key(Dev(2))
    hash(_backend.device_key(Dev(1)))


def _eager_grad(xp, d):
    return xp.sum(xp.exp(d) * 2.0).to(d).value


def test_float32_stays_float32_in_every_transformation(monkeypatch):
    """float32 inputs with Python float constants in ``f``: every transformation creates no
    float64 array (bases, zeros, seeds, scalar operands) and returns float32."""
    made64: list = []
    for name in ("zeros", "ones", "eye", "full", "asarray", "empty", "arange", "linspace",
                 "zeros_like", "ones_like", "full_like", "empty_like"):
        real = getattr(xps, name)

        def spy(*a, _real=real, _name=name, **k):
            out = _real(*a, **k)
            if getattr(out, "dtype", None) == xps.float64:
                made64.append(_name)
            return out

        monkeypatch.setattr(xps, name, spy)
    xp = xd.namespace("array_api_strict")
    x = xps.asarray(np.linspace(0.2, 0.9, 6).reshape(2, 3), dtype=xps.float32, device=DEV1)

    def f(v):
        return xp.sum(xp.exp(v) * 2.0 + v ** 2 - 1.5 * xp.sin(v) / 3.0, axis=-1)

    def s(v):
        return xp.sum(f(v))

    calls = {
        "grad": lambda: xd.grad(s)(x), "jacfwd": lambda: xd.jacfwd(f)(x),
        "jacrev": lambda: xd.jacrev(f)(x), "hessian": lambda: xd.hessian(s)(x),
        "per-sample": lambda: xd.jacobian(f, batch_ndim=1)(x),
        "per-sample hessian": lambda: xd.hessian(lambda v: xp.sum(v ** 3 * 0.5, axis=-1),
                                                 batch_ndim=1)(x),
        "chunked": lambda: xd.jacfwd(f, chunk_size=2)(x), "vmap": lambda: xd.vmap(f)(x),
        "jvp": lambda: xd.jvp(f, (x,), (x,))[1],
        "vjp": lambda: xd.vjp(f, x)[1](xp.ones((2,), dtype=xps.float32, device=DEV1))[0],
        "eager": lambda: _eager_grad(xp, xd.DiffArray(x)),
    }
    for name, call in calls.items():
        made64.clear()
        out = call()
        assert out.dtype == xps.float32, name
        assert made64 == [], (name, made64)


# --- native kernels ---------------------------------------------------------------------------

_SPECIAL = ["erf", "erfc", "ndtr", "log_ndtr", "expit", "logit", "gammaln", "digamma"]


def _grid(name):
    if name == "logit":
        return np.linspace(0.01, 0.99, 41)
    return np.concatenate([np.linspace(-6.0, 6.0, 49), [-40.0, -2.5, 1e-10, 0.5, 30.0, 171.0]])


def test_numpy_native_kernels_equal_the_strict_composites():
    pytest.importorskip("scipy.special")
    assert _backend.native_kernel("gammaln", xps) is None  # array-api-strict: the composite
    xn, xs = xd.namespace("numpy").special, xd.namespace("array_api_strict").special
    for name in _SPECIAL:
        x = _grid(name)
        with np.errstate(all="ignore"):
            native = getattr(xn, name)(x)
            composite = _backend.to_host(getattr(xs, name)(_strict(x)))
        # (absolute: gammaln near its zeros, x = -2.457...)
        np.testing.assert_allclose(native, composite, rtol=2e-13, atol=1e-14, err_msg=name)
        x32 = x.astype(np.float32)
        out32 = getattr(xn, name)(x32)
        assert out32.dtype == np.float32, name
    for n in (1, 2):
        x = np.linspace(0.3, 8.0, 25)
        np.testing.assert_allclose(xn.polygamma(n, x),
                                   _backend.to_host(xs.polygamma(n, _strict(x))), rtol=1e-13)
        assert xn.polygamma(n, x.astype(np.float32)).dtype == np.float32


def test_polygamma_with_an_array_order():
    """SciPy passes polygamma's order as an array: integer orders broadcast against x, a
    constant (a derivative with respect to n is refused, naming it)."""
    sc = pytest.importorskip("scipy.special")
    xn = xd.namespace("numpy")
    n, x = np.array([[0], [1], [3]]), np.linspace(0.4, 6.0, 5)
    np.testing.assert_allclose(xn.special.polygamma(n, x), sc.polygamma(n, x), rtol=1e-14)
    # SciPy's dtype (integer orders count as float64: with float32 x the result is float64)
    for nd, xdt in ((np.int64, np.float32), (np.int8, np.float32), (np.int64, np.float64),
                    (np.float32, np.float32)):
        got = xn.special.polygamma(n.astype(nd), x.astype(xdt))
        assert got.dtype == sc.polygamma(n.astype(nd), x.astype(xdt)).dtype, (nd, xdt)
    g = xd.grad(lambda x: xn.sum(xn.special.polygamma(n, x)))(x)
    np.testing.assert_allclose(g, sc.polygamma(n + 1, x).sum(axis=0), rtol=1e-13)
    J = xd.jacfwd(lambda x: xn.special.polygamma(np.array([1, 2, 3, 4, 5]), x))(x)
    np.testing.assert_allclose(J, np.diag(sc.polygamma(np.arange(2, 7), x)), rtol=1e-13)
    got = xd.vmap(lambda n, x: xn.special.polygamma(n, x))(np.array([0, 1, 2]), x[:3])
    np.testing.assert_allclose(got, sc.polygamma(np.array([0, 1, 2]), x[:3]), rtol=1e-14)
    for transform in (xd.grad, xd.jacfwd):
        with pytest.raises(TypeError, match="special.polygamma: the order n.*stop_gradient"):
            transform(lambda m: xn.sum(xn.special.polygamma(m, x[:2])))(np.array([1.0, 2.0]))
    with pytest.raises(NotImplementedError, match="polygamma: an array order n needs a native"):
        xd.namespace("array_api_strict").special.polygamma(xps.asarray([1]), xps.asarray([1.0]))


def test_native_kernels_make_one_backend_call_and_keep_the_derivative_rule(monkeypatch):
    """gammaln on NumPy: the composite makes well over a hundred calls into the backend
    namespace; the native kernel (SciPy) a handful (its edge fixes); derivatives (digamma,
    polygamma) come from the same rule either way."""
    pytest.importorskip("scipy.special")
    import array_api_compat.numpy as cnp

    calls = {"n": 0}
    for name in [n for n in dir(cnp) if not n.startswith("_")]:
        fn = getattr(cnp, name)
        if callable(fn) and not isinstance(fn, type):
            def counted(*a, _fn=fn, **k):
                calls["n"] += 1
                return _fn(*a, **k)

            monkeypatch.setattr(cnp, name, counted)
    xn = xd.namespace("numpy").special
    x = np.linspace(-4.75, 5.0, 8)  # both branches (reflection for x < 0)

    def count(fn):
        calls["n"] = 0
        out = fn()
        return calls["n"], out

    n_native, v_native = count(lambda: xn.gammaln(x))
    g_native = xd.vmap(xd.grad(xn.gammaln))(x)
    h_native = xd.vmap(xd.grad(xd.grad(xn.gammaln)))(x)
    monkeypatch.setattr(_backend, "NATIVE_KERNELS", {})
    monkeypatch.setattr(_backend, "_NATIVE", {})
    n_composite, v_composite = count(lambda: xn.gammaln(x))
    assert n_native <= 10 and n_composite >= 4 * n_native, (n_native, n_composite)
    np.testing.assert_allclose(v_native, v_composite, rtol=1e-14)
    np.testing.assert_allclose(g_native, xd.vmap(xd.grad(xn.gammaln))(x), rtol=1e-13)
    np.testing.assert_allclose(h_native, xd.vmap(xd.grad(xd.grad(xn.gammaln)))(x), rtol=1e-13)


# --- free memory on an array's device -------------------------------------------------------

class _SimCupy:
    """A stand-in for the parts of CuPy that the free-memory query uses, following CuPy's
    documented semantics: ``cuda.runtime.memGetInfo()`` and the default ``MemoryPool``'s
    ``free_bytes()`` answer for the *current* device (the pool keeps one single-device pool
    per device); ``with cuda.Device(i):`` makes device ``i`` current; blocks freed by arrays
    stay cached in the pool (``free_bytes``) until ``free_all_blocks``."""

    def __init__(self, free, cached):
        sim = self
        self.current = 0
        self.free, self.cached = free, cached  # per device id

        class Device:
            def __init__(self, i):
                self.id = i

            def __enter__(self):
                self.prev, sim.current = sim.current, self.id
                return self

            def __exit__(self, *exc):
                sim.current = self.prev

        class Pool:
            def free_bytes(self):
                return sim.cached[sim.current]

            def malloc(self, size):  # (only compared with the allocator)
                raise NotImplementedError

        self.pool = Pool()
        self.allocator = self.pool.malloc

        class Runtime:
            @staticmethod
            def memGetInfo():
                return sim.free[sim.current], 80 << 30

        class Cuda:
            runtime = Runtime

            @staticmethod
            def get_allocator():
                return sim.allocator

        Cuda.Device = Device
        self.cuda = Cuda
        self.Device = Device

    def get_default_memory_pool(self):
        return self.pool


def _sim_array(device):
    arr = type("ndarray", (), {"__module__": "cupy"})()
    arr.device = device
    return arr


def test_free_memory_on_the_arrays_device_with_a_simulated_cupy_pool(monkeypatch):
    import sys

    from xpdiff.transforms import chunking as _chunking

    sim = _SimCupy(free={0: 1000, 1: 50_000}, cached={0: 7, 1: 300})
    monkeypatch.setitem(sys.modules, "cupy", sim)
    x1 = _sim_array(sim.Device(1))
    assert sim.current == 0
    assert _backend.free_memory(x1) == 50_000 + 300  # device 1's, not the current device 0's
    assert sim.current == 0  # the current device is left as it was
    assert _backend.free_memory(_sim_array(sim.Device(0))) == 1000 + 7
    assert _chunking.free_memory(x1) == 50_300  # the automatic chunking budget asks the same
    sim.allocator = object()  # another allocator: the default pool's cached blocks serve nothing
    assert _backend.free_memory(x1) == 50_000


def test_host_memory_reading_is_reused_briefly(monkeypatch):
    """The host's available memory (psutil parses /proc/meminfo: tens of microseconds) is
    read at most once per HOST_MEMORY_TTL, so a small transformation does not pay it on
    every call; a later call reads it again."""
    reads = []
    monkeypatch.setattr(_backend, "_read_host_available", lambda: reads.append(1) or 12345)
    monkeypatch.setattr(_backend, "_host_reading", (-float("inf"), None))
    clock = {"t": 100.0}
    monkeypatch.setattr(_backend, "time", types.SimpleNamespace(monotonic=lambda: clock["t"]))
    assert _backend.free_memory(np.ones(2)) == 12345
    assert _backend.free_memory(np.ones(3)) == 12345 and len(reads) == 1
    clock["t"] += _backend.HOST_MEMORY_TTL * 1.01
    assert _backend.free_memory(np.ones(2)) == 12345 and len(reads) == 2


def test_free_memory_of_host_arrays():
    assert _backend.free_memory(np.ones(2)) > 0
    assert _backend.free_memory(_strict([1.0])) > 0  # array-api-strict's devices: the host
    assert _backend.free_memory(object()) is None
