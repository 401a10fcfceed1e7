"""The namespace against the standard: its public names equal the standard's name list
for each API version (written down from the spec, data-apis/array-api spec/2024.12),
signatures have the standard's parameter kinds, and the creation, data-type and
inspection functions behave as the standard says (also on traced arrays)."""

from __future__ import annotations

import inspect
from inspect import Parameter

import numpy as np
import pytest

import xpdiff as xd
from xpdiff import namespaces as _namespace

# --- the standard's names, 2024.12 (by chapter) -----------------------------------------------

ELEMENTWISE = """abs acos acosh add asin asinh atan atan2 atanh bitwise_and bitwise_left_shift
bitwise_invert bitwise_or bitwise_right_shift bitwise_xor ceil clip conj copysign cos cosh divide
equal exp expm1 floor floor_divide greater greater_equal hypot imag isfinite isinf isnan less
less_equal log log1p log2 log10 logaddexp logical_and logical_not logical_or logical_xor maximum
minimum multiply negative nextafter not_equal positive pow real reciprocal remainder round sign
signbit sin sinh square sqrt subtract tan tanh trunc""".split()
CREATION = """arange asarray empty empty_like eye from_dlpack full full_like linspace meshgrid ones
ones_like tril triu zeros zeros_like""".split()
DATA_TYPE_FUNCTIONS = "astype can_cast finfo iinfo isdtype result_type".split()
INDEXING = "take take_along_axis".split()
LINEAR_ALGEBRA = "matmul matrix_transpose tensordot vecdot".split()
MANIPULATION = """broadcast_arrays broadcast_to concat expand_dims flip moveaxis permute_dims repeat
reshape roll squeeze stack tile unstack""".split()
SEARCHING = "argmax argmin count_nonzero nonzero searchsorted where".split()
SET = "unique_all unique_counts unique_inverse unique_values".split()
SORTING = "argsort sort".split()
STATISTICAL = "cumulative_sum cumulative_prod max mean min prod std sum var".split()
UTILITY = "all any diff".split()
CONSTANTS = "e inf nan newaxis pi".split()
DTYPES = """bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64 complex64
complex128""".split()
LINALG = """cholesky cross det diagonal eigh eigvalsh inv matmul matrix_norm matrix_power matrix_rank
matrix_transpose outer pinv qr slogdet solve svd svdvals tensordot trace vecdot vector_norm""".split()
FFT = """fft ifft fftn ifftn rfft irfft rfftn irfftn hfft ihfft fftfreq rfftfreq fftshift
ifftshift""".split()
INFO = "capabilities default_device default_dtypes devices dtypes".split()

STANDARD_2024 = set(ELEMENTWISE + CREATION + DATA_TYPE_FUNCTIONS + INDEXING + LINEAR_ALGEBRA
                    + MANIPULATION + SEARCHING + SET + SORTING + STATISTICAL + UTILITY + CONSTANTS
                    + DTYPES + ["linalg", "fft"])
NEW_IN_2024 = {"count_nonzero", "cumulative_prod", "diff", "nextafter", "reciprocal",
               "take_along_axis"}
NEW_IN_2025 = {"broadcast_shapes", "isin"}
NEW_LINALG_IN_2025 = {"eig", "eigvals"}  # in the 2025.12 stubs (missing from their __all__)
STANDARD = {"2023.12": STANDARD_2024 - NEW_IN_2024, "2024.12": STANDARD_2024,
            "2025.12": STANDARD_2024 | NEW_IN_2025}
# xpdiff's own public names beside the standard's (documented in docs/namespace.md)
XPDIFF_EXTRAS = {"special", "stop_gradient"}
SPECIAL = """digamma entr erf erfc expit gammaln log_ndtr log_softmax logit logsumexp ndtr
polygamma softmax xlog1py xlogy""".split()


def _public(obj) -> set:
    return {n for n in vars(obj) if not n.startswith("_")}


@pytest.mark.parametrize("version", ["2023.12", "2024.12", "2025.12"])
def test_public_names_are_the_standards(version):
    ns = xd.namespace("numpy", api_version=version)
    assert ns.__array_api_version__ == version
    got = _public(ns)
    want = STANDARD[version] | XPDIFF_EXTRAS
    assert sorted(want - got) == [], "missing"
    assert sorted(got - want) == [], "not in the standard"
    assert _public(ns.linalg) - NEW_LINALG_IN_2025 == set(LINALG)
    assert _public(ns.fft) == set(FFT)
    assert _public(ns.special) == set(SPECIAL)
    assert callable(ns.__array_namespace_info__)
    info = ns.__array_namespace_info__()
    assert {n for n in dir(info) if not n.startswith("_")} == set(INFO)


@pytest.mark.parametrize("version", ["2023.12", "2024.12"])
def test_linalg_names_before_2025(version):
    assert _public(xd.namespace("numpy", api_version=version).linalg) == set(LINALG)


@pytest.mark.xfail(strict=True, reason="linalg.eig and linalg.eigvals (2025.12) are not "
                                       "implemented yet (rules/linalg.py)")
def test_linalg_names_2025():
    ns = xd.namespace("numpy", api_version="2025.12")
    assert _public(ns.linalg) == set(LINALG) | NEW_LINALG_IN_2025


def test_extras_and_versions_are_declared():
    assert set(_namespace.EXTRAS) | {"special"} == XPDIFF_EXTRAS
    assert {n for n, v in _namespace.INTRODUCED.items() if v == "2024.12"} == NEW_IN_2024
    assert {n for n, v in _namespace.INTRODUCED.items() if v == "2025.12"} == NEW_IN_2025 | {
        "linalg." + n for n in NEW_LINALG_IN_2025}


def test_array_namespace_of_traced_arrays():
    seen = {}

    def f(x):
        seen["default"] = x.__array_namespace__()
        seen["2025"] = x.__array_namespace__(api_version="2025.12")
        return x

    xd.jvp(f, (np.ones(2),), (np.ones(2),))
    assert seen["default"] is xd.namespace("numpy")
    assert seen["2025"] is xd.namespace("numpy", api_version="2025.12")
    with pytest.raises(ValueError, match="api_version='2019.01' is not supported"):
        xd.namespace("numpy", api_version="2019.01")


def test_namespace_is_hashable_and_named():
    ns = xd.namespace("numpy")
    assert {ns, ns} == {ns}
    assert ns.__name__ == "xpdiff.numpy"


def test_importable_module_is_the_namespace():
    import xpdiff.array_api as xa

    ns = xd.namespace("numpy")
    assert set(xa.__all__) == _public(ns)
    assert xa.__array_api_version__ == "2024.12"
    for n in xa.__all__:
        assert getattr(xa, n) is getattr(ns, n), n


# --- signatures: the standard's parameter kinds -----------------------------------------------
P, K, O, V = (Parameter.POSITIONAL_ONLY, Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY,
              Parameter.VAR_POSITIONAL)
SIGNATURES = {  # from the spec's stubs: (name, kind) of each parameter
    "arange": [("start", P), ("stop", K), ("step", K), ("dtype", O), ("device", O)],
    "asarray": [("obj", P), ("dtype", O), ("device", O), ("copy", O)],
    "empty": [("shape", K), ("dtype", O), ("device", O)],
    "eye": [("n_rows", P), ("n_cols", P), ("k", O), ("dtype", O), ("device", O)],
    "from_dlpack": [("x", P), ("device", O), ("copy", O)],
    "full": [("shape", K), ("fill_value", K), ("dtype", O), ("device", O)],
    "linspace": [("start", P), ("stop", P), ("num", K), ("dtype", O), ("device", O),
                 ("endpoint", O)],
    "meshgrid": [("arrays", V), ("indexing", O)],
    "ones": [("shape", K), ("dtype", O), ("device", O)],
    "zeros": [("shape", K), ("dtype", O), ("device", O)],
    "tril": [("x", P), ("k", O)],
    "can_cast": [("from_", P), ("to", P)],
    "finfo": [("type", P)],
    "iinfo": [("type", P)],
    "isdtype": [("dtype", K), ("kind", K)],
    "result_type": [("arrays_and_dtypes", V)],
    "add": [("x1", P), ("x2", P)],
    "sin": [("x", P)],
    "clip": [("x", P), ("min", K), ("max", K)],
    "where": [("condition", P), ("x1", P), ("x2", P)],
    "isin": [("x1", P), ("x2", P), ("invert", O)],
    "broadcast_shapes": [("shapes", V)],
}


def _kinds(fn):
    sig = inspect.signature(fn)
    return [(p.name if p.kind not in (P, V) else None, p.kind) for p in sig.parameters.values()]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_kinds(name):
    fn = getattr(xd.namespace("numpy", api_version="2025.12"), name)
    want = [(n if k not in (P, V) else None, k) for n, k in SIGNATURES[name]]
    assert _kinds(fn) == want


def test_info_signatures():
    info = xd.namespace("numpy").__array_namespace_info__()
    assert _kinds(info.default_dtypes) == [("device", O)]
    assert _kinds(info.dtypes) == [("device", O), ("kind", O)]
    assert _kinds(info.devices) == []


# --- behaviour ------------------------------------------------------------------------------


@pytest.fixture
def xp():
    return xd.namespace("numpy")


def test_creation_functions(xp):
    assert xp.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert xp.eye(2, 3, k=1, dtype=xp.float32).dtype == np.float32
    assert xp.linspace(0, 1, 5, endpoint=False)[-1] == 0.8
    assert xp.full((2,), 3, dtype=xp.int8).dtype == np.int8
    assert xp.empty((2, 0)).shape == (2, 0)
    assert xp.from_dlpack(np.arange(3.0)).tolist() == [0.0, 1.0, 2.0]
    a = np.arange(3.0)
    assert xp.asarray(a, copy=False) is a or np.shares_memory(xp.asarray(a, copy=False), a)
    assert not np.shares_memory(xp.asarray(a, copy=True), a)


def test_asarray_of_traced_arrays(xp):
    def f(x):
        same = xp.asarray(x)
        assert same is x
        y = xp.asarray(x, copy=True)
        assert y is not x
        y[0] = 0.0  # value semantics: x unchanged
        z = xp.asarray(x, dtype=xp.float32)
        assert z.dtype == np.float32
        with pytest.raises(ValueError, match="copy=False"):
            xp.asarray(x, dtype=xp.float32, copy=False)
        s = xp.asarray([x[0], 2.0 * x[1], 3.0])  # a sequence holding traced arrays: stacked
        return xp.sum(s * s) + xp.sum(y) + xp.sum(xp.astype(z, xp.float64))

    g = xd.grad(f)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g, [2 * 1.0 + 0 + 1, 8 * 2.0 + 1 + 1])


def test_asarray_refuses_dtypes_outside_the_standard(xp):
    """scikit-learn's label_binarize tells string classes apart by the namespace's
    asarray raising (array-api-strict and torch do), NumPy would make them; SciPy's
    ndimage tests match "Unsupported"."""
    for obj in (["yes", "no"], np.asarray(["bird"]), np.asarray([None])):
        with pytest.raises(TypeError, match="asarray: Unsupported dtype .*: the array API standard"):
            xp.asarray(obj)
    assert xp.asarray([True]).dtype == np.bool_ and xp.asarray(np.int8(3)).dtype == np.int8


def test_full_of_a_traced_scalar(xp):
    g = xd.grad(lambda s: xp.sum(xp.full((2, 3), s)))(np.asarray(2.0))
    assert float(g) == 6.0


def test_axis_out_of_bounds_in_numpys_words(xp):
    # SciPy's stats tests match NumPy's AxisError message
    with pytest.raises(ValueError, match="source: axis 10 is out of bounds for array of dimension 1"):
        xp.moveaxis(np.ones(3), 10, 0)
    with pytest.raises(ValueError, match="axis -3 is out of bounds for array of dimension 2"):
        xp.sum(np.ones((2, 2)), axis=-3)


def test_fft_zero_pads_an_empty_axis(xp):
    """``ifft(x, n=8)`` of an empty ``x`` (SciPy's envelope) is eight zeros, as NumPy
    pads it; the derivative is zero."""
    e = np.zeros((2, 0))
    np.testing.assert_array_equal(xp.fft.ifft(e.astype(np.complex128), n=8, axis=1),
                                  np.fft.ifft(e, n=8, axis=1))
    out, t = xd.jvp(lambda v: xp.fft.rfft(v, n=4, axis=0), (np.zeros(0),), (np.zeros(0),))
    np.testing.assert_array_equal(out, np.zeros(3))
    np.testing.assert_array_equal(t, np.zeros(3))


def test_full_of_a_traced_scalar_is_a_new_writable_array(xp):
    """SciPy's tanh-sinh writes into ``xp.full(shape, zero_0d)`` (NumPy's ``full``
    copies): the result is no read-only view of the fill value."""

    def f(s):
        z = xp.full((3,), s)
        z[xp.asarray([True, False, True])] = 5.0 * s
        z[1] = z[1] * 2.0
        return z

    x = np.asarray(2.0)
    np.testing.assert_array_equal(f(x), [10.0, 4.0, 10.0])
    np.testing.assert_array_equal(xd.jacfwd(f)(x), [5.0, 2.0, 5.0])
    np.testing.assert_array_equal(xd.jacrev(f)(x), [5.0, 2.0, 5.0])


@pytest.mark.parametrize("version, kind", [("2024.12", list), ("2025.12", tuple)])
def test_meshgrid(version, kind):
    xp = xd.namespace("numpy", api_version=version)
    a, b = np.arange(3.0), np.arange(2.0)
    out = xp.meshgrid(a, b)
    assert type(out) is kind
    for o, w in zip(out, np.meshgrid(a, b)):
        np.testing.assert_array_equal(o, w)
    ij = xp.meshgrid(a, b, indexing="ij")
    assert ij[0].shape == (3, 2)
    assert type(xp.broadcast_arrays(a, b[:1])) is kind

    def f(u, v):
        X, Y = xp.meshgrid(u, v)
        return xp.sum(X * Y)

    gu, gv = xd.grad(f, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(gu, np.full(3, b.sum()))
    np.testing.assert_allclose(gv, np.full(2, a.sum()))
    with pytest.raises(ValueError, match="meshgrid: indexing"):
        xp.meshgrid(a, indexing="xx")


def test_data_type_functions(xp):
    f = xp.finfo(xp.float32)
    assert type(f.eps) is float and type(f.max) is float and type(f.bits) is int
    assert xp.finfo(xp.complex64).dtype == np.float32
    assert xp.finfo(np.ones(2, dtype=np.float32)).bits == 32
    i = xp.iinfo(xp.uint8)
    assert (i.min, i.max, type(i.max)) == (0, 255, int)
    assert xp.isdtype(xp.float32, "real floating") and not xp.isdtype(xp.int8, "bool")
    assert xp.can_cast(xp.int8, xp.int16) and not xp.can_cast(xp.float64, xp.float32)
    assert xp.result_type(xp.int8, xp.int16) == np.int16
    # Python scalars are weak (2024.12)
    assert xp.result_type(xp.float32, 1.0) == np.float32
    assert xp.result_type(xp.int8, 1) == np.int8
    assert xp.result_type(xp.bool, True) == np.bool_
    assert xp.result_type(xp.int8, 1.0) == np.float64
    assert xp.result_type(xp.float32, 1j) == np.complex64
    # a ValueError, as array-api-strict and torch raise (SciPy's _logspace catches it)
    with pytest.raises(ValueError, match="at least one argument must be an array or a dtype"):
        xp.result_type(1, 2.0)

    def f(x):  # on traced arrays
        assert xp.result_type(x, xp.float32) == np.float64
        assert xp.finfo(x).bits == 64
        assert xp.can_cast(x, xp.complex128)
        return x

    xd.jvp(f, (np.ones(2),), (np.ones(2),))


@pytest.mark.parametrize("version, kind", [("2024.12", list), ("2025.12", tuple)])
def test_inspection(version, kind):
    info = xd.namespace("numpy", api_version=version).__array_namespace_info__()
    assert type(info.devices()) is kind
    assert info.default_device() == "cpu"
    assert info.default_dtypes()["real floating"] == np.float64
    assert set(info.dtypes(kind="real floating")) == {"float32", "float64"}
    assert {"boolean indexing", "data-dependent shapes", "max dimensions"} <= set(
        info.capabilities())


def test_broadcast_shapes():
    xp = xd.namespace("numpy", api_version="2025.12")
    assert xp.broadcast_shapes((2, 1), (3,), ()) == (2, 3)
    assert xp.broadcast_shapes() == ()
    with pytest.raises(ValueError, match="broadcast_shapes"):
        xp.broadcast_shapes((2,), (3,))


def test_isin():
    xp = xd.namespace("numpy", api_version="2025.12")
    x = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(xp.isin(x, np.array([4, 1])), [[True, False], [False, True]])
    np.testing.assert_array_equal(xp.isin(x, np.array([4, 1]), invert=True),
                                  [[False, True], [True, False]])
    assert xp.isin(2, x).shape == ()

    def f(v):  # traced: the comparison path, no derivative through the mask
        return v * xp.astype(xp.isin(v, np.array([2.0])), v.dtype)

    np.testing.assert_allclose(xd.jacobian(f)(np.array([1.0, 2.0])), [[0.0, 0.0], [0.0, 1.0]])


def test_python_scalar_operands(xp):
    x = np.arange(3, dtype=np.float32)
    assert xp.add(x, 1.0).dtype == np.float32
    assert xp.multiply(2, x).dtype == np.float32
    assert xp.pow(x, 2).dtype == np.float32
    assert xp.greater(x, 1).tolist() == [False, False, True]
    i = np.arange(3, dtype=np.int8)
    assert xp.subtract(i, 1).dtype == np.int8
    assert xp.logical_and(np.array([True, False]), True).tolist() == [True, False]
    assert xp.clip(i, 1, 100).dtype == np.int8
    g = xd.grad(lambda v: xp.sum(xp.add(xp.multiply(3.0, v), 1.0)))(np.ones(2))
    np.testing.assert_allclose(g, [3.0, 3.0])
    with pytest.raises(TypeError):
        xp.add(1.0, 2.0)


def test_special_cases_corrected(xp):
    inf = np.inf
    q = xp.floor_divide(np.array([inf, -inf, 1.0, -1.0]), np.array([2.0, 2.0, -inf, inf]))
    np.testing.assert_array_equal(q, [inf, -inf, -0.0, -0.0])
    assert np.signbit(q[2]) and np.signbit(q[3])
    with np.errstate(all="ignore"):
        e = xp.expm1(np.array([complex(-0.0, 0.0), complex(inf, 0.0), complex(-inf, inf)]))
    assert e[0] == 0 and not np.signbit(e[0].real)
    assert e[1] == complex(inf, 0.0) and e[2] == -1
    t = xp.tanh(np.array([complex(inf, 2.0)]))
    assert t[0] == 1 and not np.signbit(t[0].imag)
    assert xp.expm1(np.ones(2, dtype=np.complex64)).dtype == np.complex64
    assert xp.tanh(np.ones(2, dtype=np.complex64)).dtype == np.complex64


def test_traced_module_for_the_conformance_suite():
    # in a subprocess: the module's transformation stays open for the life of the process
    import subprocess
    import sys

    code = """
import numpy as np
import xpdiff.testing.array_api_traced as xp
from xpdiff.core import Zero, _STACK
assert not _STACK                                  # importing enters nothing
a = xp.asarray([1.0, 2.0])
assert type(a).__name__ == "ConformanceTracer" and len(_STACK) == 1
np.testing.assert_array_equal(a._tangent, [1.0, 1.0])    # floating arrays carry tangent ones
assert isinstance(xp.arange(3)._tangent, Zero)           # integer arrays: no tangent
y = xp.sin(a) * a                                   # runs the JVP rules
np.testing.assert_allclose(y._tangent, np.cos([1.0, 2.0]) * [1.0, 2.0] + np.sin([1.0, 2.0]))
assert float(y[0]) == np.sin(1.0) and bool(y[1] > 0) and int(xp.asarray(3)) == 3
assert np.asarray(y).shape == (2,) and type(xp.meshgrid(a, a)) is list
assert f"{xp.sum(a):g}" == "3" and f"{y[0]:.3f}" == f"{np.sin(1.0):.3f}"  # as a 0-d ndarray
np.testing.assert_allclose(np.corrcoef(a, y), np.corrcoef([1.0, 2.0], np.asarray(y)))  # on primals
assert type(np.sum(a)).__name__ == "ConformanceTracer"   # covered by the NumPy dispatch: traced
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_scalar_operand_cache_tells_signed_zeros_and_nans_apart(backend):
    # Python scalars become cached 0-d operands: -0.0 == 0.0, so a key on the value
    # alone gave back the +0.0 operand (x + -0.0 keeps the sign of -0.0, x + 0.0 does not)
    x = backend.asarray([-0.0])
    xp = xd.namespace(backend.name.split("-")[0])
    assert not np.signbit(backend.to_numpy(xp.add(x, 0.0))[0])
    assert np.signbit(backend.to_numpy(xp.add(x, -0.0))[0])
    c = backend.asarray([complex(-0.0, -0.0)], np.complex128)
    xp.add(c, complex(0.0, 0.0))
    r = backend.to_numpy(xp.add(c, complex(-0.0, -0.0)))[0]
    assert np.signbit(r.real) and np.signbit(r.imag)
    assert np.isnan(backend.to_numpy(xp.add(x, float("nan")))[0])
    # on traced arrays too (the tangent and the primal)
    y, t = xd.jvp(lambda v: v + -0.0, (x,), (x,))
    assert np.signbit(backend.to_numpy(y)[0]) and np.signbit(backend.to_numpy(t)[0])


class _UnhashableDevice:
    """Stands in for CuPy's devices, which are unhashable."""

    __hash__ = None

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, _UnhashableDevice) and other.name == self.name

    def __repr__(self):
        return f"_UnhashableDevice({self.name!r})"


def test_scalar_operand_cache_keys_unhashable_devices(monkeypatch):
    from types import SimpleNamespace

    from xpdiff.rules import _families

    made = []

    def fake(s, like, dt, dev):
        made.append((s, dev))
        return np.full((), s, dtype=dt)

    monkeypatch.setattr(_families, "_as_operand", fake)
    monkeypatch.setattr(_families, "_SCALAR_CACHE", {})
    a = SimpleNamespace(dtype=np.dtype(np.float64), device=_UnhashableDevice("gpu0"))
    b = SimpleNamespace(dtype=np.dtype(np.float64), device=_UnhashableDevice("gpu0"))
    c = SimpleNamespace(dtype=np.dtype(np.float64), device=_UnhashableDevice("gpu1"))
    _families.scalar_operand(2.0, a)
    _families.scalar_operand(2.0, b)  # an equal device object: a cache hit
    assert len(made) == 1
    _families.scalar_operand(2.0, c)  # another device: a new operand
    assert [d.name for _, d in made] == ["gpu0", "gpu1"]


def test_inplace_operators_keep_dtype_and_shape(backend):
    xp = xd.namespace(backend.name.split("-")[0])
    numpy = backend.name == "numpy"
    seen = {}

    def f(x):
        i = xp.astype(x, xp.int64)
        # (array-api-strict refuses int64 + 1.5 out of place already, with its own message)
        with pytest.raises(TypeError, match=r"x \+= y: x has dtype int64 .* float" if numpy
                           else "int64"):
            i += 1.5
        with pytest.raises(TypeError, match=r"x /= y: x has dtype int64" if numpy else None):
            i /= i
        assert i.dtype == xp.int64
        i += 2  # same kind: fine
        seen["i"] = i.dtype
        with pytest.raises(ValueError, match=r"x \*= y: the result has shape \(2, 2\)"):
            y = x * 1.0
            y *= xp.ones((2, 2), dtype=x.dtype, device=x.device)
        z = x * 1.0
        z -= 0.5
        return z

    y, t = xd.jvp(f, (backend.asarray([1.0, 2.0]),), (backend.asarray([1.0, 1.0]),))
    assert seen["i"] == xp.int64
    np.testing.assert_allclose(backend.to_numpy(y), [0.5, 1.5])
    np.testing.assert_allclose(backend.to_numpy(t), [1.0, 1.0])


def test_real_float32_times_python_complex_is_complex64(backend):
    # the standard: a Python complex with a real floating array gives the complex dtype of
    # the array's precision (float32 -> complex64), in value and tangent
    xp = xd.namespace(backend.name.split("-")[0])
    x = backend.asarray([1.0, 2.0], np.float32)
    assert xp.multiply(x, 1j).dtype == xp.complex64
    assert xp.add(2j, x).dtype == xp.complex64
    assert xp.multiply(backend.asarray([1.0], np.float64), 1j).dtype == xp.complex128
    y, t = xd.jvp(lambda v: v * (1 + 2j), (x,), (backend.asarray([1.0, 1.0], np.float32),))
    assert y.dtype == t.dtype == xp.complex64
    np.testing.assert_allclose(backend.to_numpy(t), [1 + 2j, 1 + 2j])
